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


def lecture_example(hessx: Any, loss: Callable[[np.ndarray], float], show: Callable[..., None]) -> None:
    print("1. The explicit Hessian at the origin (closed form)")
    w0 = np.zeros(2)
    grad, hess = lecture_hessian(w0)
    print(f"  L(0, 0) = {loss(w0):.3f}, gradient = {grad}")
    show("H", hess)
    cp = hessx.classify(hess, grad=grad)
    print(f"  eigenvalues {cp.lambda_min:+.3f}, {cp.lambda_max:+.3f} -> {cp.kind}")
    print(f"  escape direction (eigenvector of {cp.lambda_min:+.3f}): {np.round(cp.escape_direction, 4)}")
    step = hessx.escape_step(loss, w0, cp.escape_direction, grad=grad)
    print(f"  escape step: w = {np.round(step.params, 4)}, L {step.loss_before:.3f} -> "
          f"{step.loss_after:.3f} (step {step.step:+.3f})")
    print(f"  minimum ratio: {hessx.minimum_ratio(hess).value:.2f}")
    print()
    print("2. The valley of minima w1*w2 = 1, at (1, 1)")
    w1 = np.ones(2)
    grad, hess = lecture_hessian(w1)
    show("H", hess)
    cp = hessx.classify(hess, grad=grad)
    print(f"  L = {loss(w1):.3f}, eigenvalues {cp.lambda_min:+.3f}, {cp.lambda_max:+.3f} -> "
          f"{cp.kind} ({cp.semidefinite} semidefinite: a minimum, but a degenerate one)")
    print()


def trained_network(hessx: Any, show: Callable[..., None], *, quick: bool) -> None:
    models = getattr(hessx, "models", None)
    if models is None:
        print("3. (the MLP models arrive with hessx.models)")
        return
    models.run_demo(hessx, show, quick=quick)
