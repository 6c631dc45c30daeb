"""The steps of `hessx demo` (kept apart from argument parsing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def lecture_hessian(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form gradient and Hessian of L = (1 - w1 w2)^2."""
    w1, w2 = w
    r = 1.0 - w1 * w2
    grad = np.array([-2.0 * r * w2, -2.0 * r * w1])
    hess = np.array([[2.0 * w2 * w2, 4.0 * w1 * w2 - 2.0], [4.0 * w1 * w2 - 2.0, 2.0 * w1 * w1]])
    return grad, hess


def lecture_example(
    hessx: Any, loss: Callable[[np.ndarray], float], show: Callable[..., None]
) -> None:
    print("1. The explicit Hessian at the origin (closed form)")
    w0 = np.zeros(2)
    grad, hess = lecture_hessian(w0)
    print(f"  L(0, 0) = {loss(w0):.3f}, gradient = {grad}")
    show("H", hess)
    cp = hessx.classify(hess, grad=grad)
    print(f"  eigenvalues {cp.lambda_min:+.3f}, {cp.lambda_max:+.3f} -> {cp.kind}")
    print(
        f"  escape direction (eigenvector of {cp.lambda_min:+.3f}): {np.round(cp.escape_direction, 4)}"
    )
    step = hessx.escape_step(loss, w0, cp.escape_direction, grad=grad)
    print(
        f"  escape step: w = {np.round(step.params, 4)}, L {step.loss_before:.3f} -> "
        f"{step.loss_after:.3f} (step {step.step:+.3f})"
    )
    print(f"  minimum ratio: {hessx.minimum_ratio(hess).value:.2f}")
    print()
    print("2. The valley of minima w1*w2 = 1, at (1, 1)")
    w1 = np.ones(2)
    grad, hess = lecture_hessian(w1)
    show("H", hess)
    cp = hessx.classify(hess, grad=grad)
    print(
        f"  L = {loss(w1):.3f}, eigenvalues {cp.lambda_min:+.3f}, {cp.lambda_max:+.3f} -> "
        f"{cp.kind} ({cp.semidefinite} semidefinite: a minimum, but a degenerate one)"
    )
    print()


def lecture_through_mlp(hessx: Any, show: Callable[..., None]) -> None:
    from hessx.models import MLP

    print(
        "3. The same network through the MLP code path: y = w1 * w2 * x, one example x = 1, y = 1"
    )
    net = MLP([1, 1, 1], activation="identity", bias=False, loss="mse", dtype=np.float64)
    X, y = np.array([[1.0]]), np.array([[1.0]])
    w0 = np.zeros(2)
    loss, grad = net.loss_and_grad(w0, X, y)
    H = net.hessian(w0, X, y)
    dense = np.column_stack([H @ e for e in np.eye(2)])
    print(f"  MLP loss at (0, 0) = {loss:.3f}, gradient = {grad} (exact, from backpropagation)")
    show("H", dense)
    cp = hessx.classify(H, grad=grad)
    print(
        f"  classify: {cp.kind}, eigenvalues {cp.lambda_min:+.3f}, {cp.lambda_max:+.3f}, "
        f"escape direction {np.round(cp.escape_direction, 4)}"
    )
    step = hessx.escape_step(lambda w: net.loss(w, X, y), w0, cp.escape_direction, grad=grad)
    print(f"  escape step along (1, 1): L {step.loss_before:.3f} -> {step.loss_after:.3f}")
    w1 = np.ones(2)
    loss, grad = net.loss_and_grad(w1, X, y)
    cp = hessx.classify(net.hessian(w1, X, y), grad=grad)
    print(
        f"  at (1, 1): L = {loss:.3f}, {cp.kind} ({cp.semidefinite} semidefinite), "
        f"eigenvalues {cp.lambda_min:+.3f}, {cp.lambda_max:+.3f}"
    )
    print()


def trained_network(hessx: Any, show: Callable[..., None], *, quick: bool) -> None:
    import time

    from hessx.models import MLP, load_digits

    lecture_through_mlp(hessx, show)
    X, y = load_digits(np.float64)
    if quick:
        X, y = X[:300], y[:300]
    hidden = 8 if quick else 12
    net = MLP([64, hidden, 10], activation="tanh", loss="cross_entropy", dtype=np.float64)
    print(
        f"4. A small network trained on the 8x8 digits: {net} ({net.n_params} parameters, "
        f"{X.shape[0]} examples)"
    )
    params = net.init(rng=0)
    lr, gtol = 2.0, 3e-4
    max_steps = 1500 if quick else 6000
    start = time.perf_counter()
    for step in range(1, max_steps + 1):
        loss, grad = net.loss_and_grad(params, X, y)
        gnorm = float(np.linalg.norm(grad))
        if gnorm < gtol:
            break
        params = params - lr * grad
        if step % 500 == 0:
            print(f"  step {step:5d}: loss {loss:.5f}, |grad| {gnorm:.2e}", flush=True)
    print(
        f"  stopped after {step} gradient steps ({time.perf_counter() - start:.1f} s): "
        f"loss {loss:.5f}, |grad| {gnorm:.2e}"
    )
    H = net.hessian(params, X, y)
    # "Critical" up to the tolerance training was asked to reach (3x slack for
    # the runs that stop at max_steps just short of it).
    near_critical = 3 * gtol
    cp = hessx.classify(H, grad=grad, gtol=near_critical, rng=0)
    print(
        f"  classify (gtol = {near_critical:.0e}): {cp.kind}; lambda_min = {cp.lambda_min:+.3e}, "
        f"lambda_max = {cp.lambda_max:+.3e}, zero threshold {cp.tol:.1e}"
    )
    ratio = hessx.minimum_ratio(H)
    f = ratio.fractions
    print(
        f"  minimum ratio ({ratio.method}): {ratio.value:.3f}; eigenvalues below -tol {f.below[0]:.3f}, "
        f"within +-tol {f.within[0]:.3f}, above +tol {f.above[0]:.3f} (tol = {ratio.tol:.1e})"
    )
    if cp.escape_direction is not None:
        s = hessx.escape_step(
            lambda w: net.loss(w, X, y), params, cp.escape_direction, grad=grad, max_step=1.0
        )
        print(
            f"  escape step along the negative-curvature direction: loss {s.loss_before:.6f} -> "
            f"{s.loss_after:.6f} (step {s.step:+.3f})"
        )
    else:
        print("  no direction of negative curvature: nothing to escape along")
