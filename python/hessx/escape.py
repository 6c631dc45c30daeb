"""A step out of a saddle along a direction of negative curvature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import finite_vector, nonnegative_float, positive_int

__all__ = ["escape_step", "EscapeStep"]


@dataclass(frozen=True)
class EscapeStep:
    """The result of `escape_step`.

    Attributes
    ----------
    params : ndarray
        The new point ``params + step * direction / ||direction||``.
    step : float
        Signed step length along the unit direction.
    loss_before, loss_after : float
        ``loss_after < loss_before`` always.
    n_evaluations : int
        Calls of ``loss`` made.
    """

    params: np.ndarray = field(repr=False)
    step: float
    loss_before: float
    loss_after: float
    n_evaluations: int = 0


def _evaluate(loss: Callable[[np.ndarray], Any], x: np.ndarray) -> float:
    value = loss(x)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"loss must return a real number, got {type(value).__name__}") from exc


def escape_step(
    loss: Callable[[np.ndarray], Any],
    params: Any,
    direction: Any,
    *,
    grad: Any = None,
    max_step: float = 1.0,
    initial_step: float | None = None,
    shrink: float = 0.5,
    max_evaluations: int = 60,
) -> EscapeStep:
    """Step from ``params`` along ``direction`` so that the loss decreases.

    The sign is chosen to descend: against the gradient's component along the
    direction when ``grad`` is given (so ``grad @ step_vector <= 0``), else
    whichever side is lower. The length starts at ``initial_step`` (default
    ``max_step / 16``); while the loss keeps decreasing it doubles, up to
    ``max_step``, and otherwise it is multiplied by ``shrink`` until the loss is
    below ``loss(params)``. The best point found is returned, never a higher
    one.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> float`` on flat parameter vectors.
    params : array_like, shape (n,)
    direction : array_like, shape (n,)
        Typically ``classify(...).escape_direction``; normalised here.
    grad : array_like, optional
        The gradient at ``params``.
    max_step : float, default 1.0
        Largest step length along the unit direction.

    Raises
    ------
    ValueError
        If no decrease is found along either sign of ``direction`` within
        ``max_evaluations`` evaluations.

    Examples
    --------
    >>> import numpy as np, hessx
    >>> loss = lambda w: (1.0 - w[0] * w[1]) ** 2
    >>> s = hessx.escape_step(loss, [0.0, 0.0], [1.0, 1.0])
    >>> s.loss_before, s.loss_after
    (1.0, 0.25)
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    x0 = finite_vector(params, "params")
    n = x0.shape[0]
    d = finite_vector(direction, "direction", n)
    norm = float(np.linalg.norm(d))
    if norm == 0.0:
        raise ValueError("direction must not be the zero vector")
    d = d / norm
    max_step = nonnegative_float(max_step, "max_step")
    if max_step == 0.0:
        raise ValueError("max_step must be positive")
    step0 = (
        max_step / 16 if initial_step is None else nonnegative_float(initial_step, "initial_step")
    )
    if not 0.0 < step0 <= max_step:
        raise ValueError(f"initial_step must be in (0, max_step={max_step}], got {step0}")
    shrink = nonnegative_float(shrink, "shrink")
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"shrink must be in (0, 1), got {shrink}")
    budget = positive_int(max_evaluations, "max_evaluations")
    assert budget is not None

    f0 = _evaluate(loss, x0)
    if not np.isfinite(f0):
        raise ValueError(f"loss(params) is not finite ({f0})")
    evaluations = 1

    signs: list[float]
    if grad is not None:
        g = finite_vector(grad, "grad", n)
        slope = float(g @ d)
        signs = [-1.0 if slope > 0 else 1.0] if slope != 0.0 else [1.0, -1.0]
    else:
        signs = [1.0, -1.0]

    best: tuple[float, float] | None = None  # (loss, signed step)
    per_sign = max(1, (budget - 1) // len(signs))
    for sign in signs:
        alpha = step0
        found: tuple[float, float] | None = None
        for _ in range(per_sign):
            value = _evaluate(loss, x0 + sign * alpha * d)
            evaluations += 1
            decreased = np.isfinite(value) and value < f0
            if decreased and (found is None or value < found[0]):
                found = (value, sign * alpha)
                if alpha >= max_step:
                    break
                alpha = min(max_step, 2.0 * alpha)  # expand while it keeps paying
            elif found is not None:
                break  # the last expansion overshot: keep the best so far
            else:
                alpha *= shrink
                if alpha < 1e-14 * max(1.0, float(np.linalg.norm(x0))):
                    break
        if found is not None and (best is None or found[0] < best[0]):
            best = found
        if best is not None and grad is not None:
            break
    if best is None:
        raise ValueError(
            "escape_step: no decrease of the loss found along either sign of direction "
            f"(loss(params) = {f0!r}, {evaluations} evaluations); the point may be a "
            "local minimum along this direction"
        )
    value, step = best
    return EscapeStep(
        params=x0 + step * d,
        step=float(step),
        loss_before=f0,
        loss_after=float(value),
        n_evaluations=evaluations,
    )
