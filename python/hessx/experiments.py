"""The lecture's experiment: loss against minimum ratio at the critical points of small networks.

Many small MLPs are trained from random initialisations on the 8x8 digits, each
stopped at a different stage, and then driven to a nearby critical point by
minimising the squared gradient norm ``½‖∇L‖²`` (whose gradient is the exact
Hessian-vector product ``H ∇L``). Gradient-norm minimisation converges to
critical points of every kind, saddles included, which is what the experiment
needs. At each point the Hessian is small enough to be diagonalised exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import minimum_ratio
from .models import MLP, load_digits

__all__ = ["CriticalPointSample", "minimum_ratio_vs_loss", "plot_minimum_ratio_vs_loss"]


@dataclass(frozen=True)
class CriticalPointSample:
    """One trained network at a (near-)critical point."""

    loss: float
    grad_norm: float
    minimum_ratio: float
    below: float
    within: float
    above: float
    gd_steps: int


def _minimise_gradient_norm(
    net: MLP, params: np.ndarray, X: np.ndarray, y: np.ndarray, steps: int, gtol: float
) -> tuple[np.ndarray, float, float]:
    """Drive ∇L to zero: Newton steps ``H d = ∇L`` solved by MINRES (H may be
    indefinite, so Newton is attracted by saddles as much as by minima), each
    accepted only if it lowers ``½‖∇L‖²``; otherwise a backtracking step along
    that objective's own gradient ``H ∇L``."""
    from scipy.sparse.linalg import minres

    loss, grad = net.loss_and_grad(params, X, y)
    objective = 0.5 * float(grad @ grad)
    for _ in range(steps):
        if np.sqrt(2 * objective) < gtol:
            break
        H = net.hessian(params, X, y)
        newton, _ = minres(H, grad, rtol=1e-8, maxiter=300)
        moved = False
        for direction in (newton, H @ grad):
            step = 1.0
            while step > 1e-10 and not moved:
                trial = params - step * direction
                trial_loss, trial_grad = net.loss_and_grad(trial, X, y)
                trial_objective = 0.5 * float(trial_grad @ trial_grad)
                if trial_objective < objective:
                    params, loss, grad, objective = trial, trial_loss, trial_grad, trial_objective
                    moved = True
                step *= 0.5
            if moved:
                break
        if not moved:
            break
    return params, loss, float(np.sqrt(2 * objective))


def minimum_ratio_vs_loss(
    n_networks: int = 40,
    *,
    hidden: int = 8,
    n_examples: int = 300,
    rng: Any = 0,
    norm_steps: int = 60,
    gtol: float = 1e-6,
    progress: bool = True,
) -> list[CriticalPointSample]:
    """Train `n_networks` MLPs ``[64, hidden, 10]`` to near-critical points and
    measure each one's loss and exact minimum ratio."""
    gen = np.random.default_rng(rng)
    X, y = load_digits(np.float64)
    pick = gen.choice(X.shape[0], size=n_examples, replace=False)
    X, y = X[pick], y[pick]
    net = MLP([64, hidden, 10], activation="tanh", loss="cross_entropy", dtype=np.float64)
    samples = []
    start = time.perf_counter()
    for i in range(n_networks):
        params = net.init(rng=gen) * gen.uniform(0.5, 2.0)
        gd_steps = int(gen.choice([0, 10, 30, 100, 300, 1000, 3000]))
        for _ in range(gd_steps):
            _, grad = net.loss_and_grad(params, X, y)
            params = params - 0.5 * grad
        params, loss, gnorm = _minimise_gradient_norm(net, params, X, y, norm_steps, gtol)
        ratio = minimum_ratio(net.hessian(params, X, y))
        f = ratio.fractions
        samples.append(
            CriticalPointSample(
                loss, gnorm, ratio.value, f.below[0], f.within[0], f.above[0], gd_steps
            )
        )
        if progress:
            print(
                f"  network {i + 1:3d}/{n_networks}: {gd_steps:4d} GD steps, loss {loss:.4g}, "
                f"|grad| {gnorm:.1e}, minimum ratio {ratio.value:.3f} "
                f"(below {f.below[0]:.3f}, near zero {f.within[0]:.3f}) "
                f"[{time.perf_counter() - start:.0f} s]",
                flush=True,
            )
    return samples


def plot_minimum_ratio_vs_loss(samples: list[CriticalPointSample], path: str) -> None:
    """Scatter loss against minimum ratio (matplotlib, Agg) and save it to `path`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("plotting needs matplotlib: pip install 'hessx[plot]'") from exc
    ratio = np.array([s.minimum_ratio for s in samples])
    loss = np.array([s.loss for s in samples])
    within = np.array([s.within for s in samples])
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    points = ax.scatter(ratio, loss, c=within, cmap="viridis", edgecolor="k", linewidth=0.4)
    fig.colorbar(points, ax=ax, label="share of eigenvalues within ±tol of 0")
    ax.set_xlabel("minimum ratio (share of eigenvalues > tol)")
    ax.set_ylabel("training loss at the critical point")
    ax.set_yscale("log")
    ax.set_title(f"{len(samples)} small MLPs [64, h, 10] at near-critical points")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
