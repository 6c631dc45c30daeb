"""Spectral densities by stochastic Lanczos quadrature (SLQ), and stochastic traces.

The numerics run in Rust (``hessx._hessx``): each probe's Lanczos run, the Gauss
quadrature, and the counts with their error bars, which bound the quadrature
error of finitely many steps as well as the probes' sampling error (see the
header of ``src/core/slq.rs``). This module validates arguments, shapes the
results, plots, and spreads probes over a ``concurrent.futures.Executor``.

Probes are independent and probe i's random vector depends only on the seed
drawn from ``rng`` and on i, so a run split into probe ranges on other
processes or machines gives exactly the result of one local run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _hessx
from ._framework import FrameworkHessian, _rebuild_framework
from ._validation import nonnegative_float, positive_int, seed_from
from .analysis import Fractions
from .operators import CallableOperator, CsrOperator, DenseOperator, HessxOperator, as_operator

__all__ = ["spectral_density", "SpectralDensity", "trace"]

PROBES = ("rademacher", "gaussian")
TRACE_METHODS = ("hutch++", "hutchinson")
DEFAULT_STEPS = 80


def _pad(rows: Sequence[np.ndarray], n_steps: int, fill: str) -> np.ndarray:
    """Rows of unequal length (a Lanczos breakdown ends a probe early) as one
    (n_probes, n_steps) array: nodes repeat their probe's last node, other
    arrays are padded with zeros, so weighted sums are unchanged."""
    out = np.zeros((len(rows), n_steps))
    for p, row in enumerate(rows):
        k = len(row)
        out[p, :k] = row
        if fill == "last" and k < n_steps:
            out[p, k:] = row[-1]
    return out


def _grid(grid: Any) -> np.ndarray:
    try:
        arr = np.asarray(grid)
    except Exception as exc:  # pragma: no cover - numpy's message is clear enough
        raise TypeError(f"grid must be array-like: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"grid must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"grid must be 1-D, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"grid contains NaN or Inf (first at index {bad})")
    return arr


def _sigma(sigma: Any) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"sigma must be a real number, got {type(sigma).__name__}")
    value = float(sigma)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    return value


@dataclass(frozen=True)
class SpectralDensity:
    """The spectrum of a symmetric operator by stochastic Lanczos quadrature.

    Each probe ``p`` (a random unit vector ``v``) gives an ``n_steps``-point
    Gauss rule for its spectral measure ``sum_j (v . u_j)^2 delta(lambda_j)``,
    whose average over probes estimates the eigenvalue distribution.

    Attributes
    ----------
    nodes : ndarray, shape (n_probes, n_steps)
        Gauss nodes (Ritz values) per probe, ascending.
    weights : ndarray, shape (n_probes, n_steps)
        Gauss weights per probe; each row sums to 1. A probe whose Krylov space
        closed early (an exact rule with fewer nodes) is padded with weight 0
        at its last node.
    residuals : ndarray, shape (n_probes, n_steps)
        Ritz residual norms ``||A y - theta y||`` per node (0 in padding).
    n : int
        The operator's dimension.
    n_probes, n_steps : int
    probe : str
        "rademacher" or "gaussian".
    """

    nodes: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    residuals: np.ndarray = field(repr=False)
    n: int
    n_probes: int
    n_steps: int
    probe: str
    _result: Any = field(repr=False, compare=False)

    @classmethod
    def _from_result(cls, result: Any, n_steps: int, probe: str) -> SpectralDensity:
        return cls(
            nodes=_pad(result.nodes, n_steps, "last"),
            weights=_pad(result.weights, n_steps, "zero"),
            residuals=_pad(result.residuals, n_steps, "zero"),
            n=int(result.n),
            n_probes=int(result.n_probes),
            n_steps=n_steps,
            probe=probe,
            _result=result,
        )

    @property
    def default_sigma(self) -> float:
        """The smoothing width ``evaluate`` uses by default: the spread of the
        nodes over ``n_steps`` (about the spacing of one probe's Gauss nodes,
        the resolution m Lanczos steps have in the bulk of a spectrum)."""
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        width = hi - lo
        if width > 0:
            return width / self.n_steps
        return 1e-3 * max(abs(lo), 1.0)

    def evaluate(self, grid: Any, sigma: float | None = None) -> np.ndarray:
        """The Gaussian-smoothed spectral density on ``grid``.

        Parameters
        ----------
        grid : 1-D array_like of finite floats
        sigma : float, optional
            The Gaussian's standard deviation; default `default_sigma`.

        Returns
        -------
        ndarray
            ``mean_p sum_i w_pi N(x; theta_pi, sigma^2)`` at each grid point: a
            probability density (it integrates to 1 over the real line).

        Examples
        --------
        >>> import numpy as np, hessx
        >>> d = hessx.spectral_density(np.diag(np.arange(100.0)), n_probes=4, rng=0)
        >>> x = np.linspace(-20, 120, 2001)
        >>> y = d.evaluate(x)
        >>> round(float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2), 6)  # trapezoidal rule
        1.0
        """
        points = _grid(grid)
        width = self.default_sigma if sigma is None else _sigma(sigma)
        return np.asarray(self._result.density(points, width))

    def fraction(self, lo: float, hi: float) -> tuple[float, float]:
        """The share of eigenvalues in ``[lo, hi]`` (either end may be infinite)
        as ``(value, stderr)``; ``stderr`` covers the probes' sampling error and
        a hard bound on the quadrature error (``value ± 2 stderr`` is a ≈95 %
        interval)."""
        for name, x in (("lo", lo), ("hi", hi)):
            if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
            if math.isnan(float(x)):
                raise ValueError(f"{name} must not be NaN")
        if float(lo) > float(hi):
            raise ValueError(f"lo must be <= hi, got lo={lo}, hi={hi}")
        e = self._result.count_fraction(float(lo), float(hi))
        return float(e["value"]), float(e["stderr"])

    def fraction_positive(self, tol: float = 0.0) -> tuple[float, float]:
        """The share of eigenvalues ``> tol`` as ``(value, stderr)``.

        Examples
        --------
        >>> import numpy as np, hessx
        >>> d = hessx.spectral_density(np.diag([-1.0, 2.0, 3.0, 4.0]), n_probes=3, rng=0)
        >>> value, stderr = d.fraction_positive()
        >>> round(value, 6), stderr < 1e-9
        (0.75, True)
        """
        tol = nonnegative_float(tol, "tol")
        return self.fraction(tol, math.inf)

    def fractions(self, tol: float = 0.0) -> Fractions:
        """Shares below ``-tol``, within ``±tol`` and above ``+tol``, each ``(value, stderr)``."""
        tol = nonnegative_float(tol, "tol")
        return Fractions(
            below=self.fraction(-math.inf, -tol),
            within=self.fraction(-tol, tol),
            above=self.fraction(tol, math.inf),
        )

    def plot(
        self, ax: Any = None, *, sigma: float | None = None, log: bool = False, **kwargs: Any
    ) -> Any:
        """Plot the smoothed density (matplotlib, ``pip install hessx[plot]``).

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Drawn into; default the current Axes.
        sigma : float, optional
            Smoothing width (default `default_sigma`).
        log : bool, default False
            Logarithmic density axis (a Hessian's spike at zero dwarfs the rest).
        **kwargs
            Passed to ``ax.plot``.

        Returns
        -------
        matplotlib Axes
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                "SpectralDensity.plot needs matplotlib: pip install hessx[plot]"
            ) from exc
        width = self.default_sigma if sigma is None else _sigma(sigma)
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        x = np.linspace(lo - 4 * width, hi + 4 * width, 2000)
        y = self.evaluate(x, width)
        if ax is None:
            ax = plt.gca()
        if log:
            y = np.maximum(y, 1e-12 * float(y.max()))
            ax.set_yscale("log")
        ax.plot(x, y, **kwargs)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        ax.set_title(f"SLQ spectral density (n={self.n}, {self.n_probes}x{self.n_steps})")
        return ax


# --- running on an executor -------------------------------------------------


def _portable(A: Any, op: HessxOperator) -> tuple[Any, ...]:
    """What a task needs to rebuild the operator (pickled for process executors)."""
    if isinstance(op, FrameworkHessian):
        return op._portable()
    if isinstance(op, CsrOperator):
        return ("csr", op.matrix, op.storage)
    if isinstance(op, DenseOperator):
        return ("dense", op.matrix)
    if isinstance(op, CallableOperator):
        if not isinstance(A, HessxOperator):
            return ("object", A, op.shape[0])
        return (
            "callable",
            op.shape[0],
            op.function,
            getattr(op, "matmat_function", None),
            op.dtype,
        )
    # Model Hessians and other compiled operators: usable by thread executors
    # only (they cannot be pickled).
    return ("operator", op)


def _ship(executor: Executor, payload: tuple[Any, ...]) -> Any:
    """The payload as the executor's tasks should receive it: a Dask client's
    executor gets it once per worker (scattered to all workers; its tasks are
    handed the worker's copy), other executors with every task."""
    client = getattr(executor, "_client", None)
    if payload[0] != "operator" and callable(getattr(client, "scatter", None)):
        assert client is not None
        return client.scatter([payload], broadcast=True, hash=False)[0]
    return payload


def _aligned(array: np.ndarray) -> bool:
    return bool(array.flags.aligned and array.flags.c_contiguous)


def _rebuild(payload: tuple[Any, ...]) -> HessxOperator:
    kind = payload[0]
    if kind == "csr":
        # Arrays deserialised from network frames (Dask) may be misaligned:
        # the Rust side borrows buffers only when aligned, so copy those.
        matrix = payload[1]
        if not all(_aligned(a) for a in (matrix.data, matrix.indices, matrix.indptr)):
            matrix = matrix.copy()
        return CsrOperator(matrix, check_symmetric=False, storage=payload[2])
    if kind == "dense":
        matrix = payload[1]
        if not _aligned(matrix):
            matrix = np.array(matrix, order="C", copy=True)
        return DenseOperator(matrix, check_symmetric=False)
    if kind == "object":
        return as_operator(payload[1], n=payload[2])
    if kind == "callable":
        return CallableOperator(payload[1], payload[2], matmat=payload[3], dtype=payload[4])
    if kind == "framework":
        return _rebuild_framework(payload[1], payload[2], payload[3])
    op: HessxOperator = payload[1]
    return op


def _slq_task(
    payload: tuple[Any, ...], first: int, count: int, n_steps: int, seed: int, probe: str
) -> tuple[list[np.ndarray], ...]:
    """Probes ``first..first + count`` (a top-level function, so it pickles)."""
    op = _rebuild(payload)
    r = _hessx.slq_run(op._rust, count, n_steps, seed, probe, first, False)
    return (r.nodes, r.weights, r.alpha, r.beta, r.residuals)


def _hutchinson_task(payload: tuple[Any, ...], first: int, count: int, seed: int) -> np.ndarray:
    op = _rebuild(payload)
    return np.asarray(_hessx.hutchinson_run(op._rust, count, seed, first, False))


def _hutchpp_task(payload: tuple[Any, ...], n_matvecs: int, seed: int) -> tuple[float, float]:
    op = _rebuild(payload)
    estimate, stderr = _hessx.hutchpp_run(op._rust, n_matvecs, seed, False)
    return float(estimate), float(stderr)


def _ranges(
    n_probes: int, executor: Executor, probes_per_task: int | None
) -> list[tuple[int, int]]:
    if probes_per_task is None:
        workers = getattr(executor, "_max_workers", None)
        per = math.ceil(n_probes / workers) if isinstance(workers, int) and workers > 0 else 1
    else:
        per = probes_per_task
    return [(first, min(per, n_probes - first)) for first in range(0, n_probes, per)]


def _gather(futures: list[Future[Any]]) -> list[Any]:
    """Results in submission order; the first failure cancels the rest and is re-raised."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _check_executor(executor: Any) -> None:
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor (with .submit), got {type(executor).__name__}"
        )


# --- public functions -------------------------------------------------------


def spectral_density(
    A: Any,
    *,
    n_probes: int = 30,
    n_steps: int | None = None,
    rng: Any = None,
    probe: str = "rademacher",
    progress: bool = False,
    executor: Executor | None = None,
    probes_per_task: int | None = None,
    check_symmetric: bool = True,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the eigenvalue distribution of ``A``.

    Parameters
    ----------
    A : ndarray, sparse matrix, LinearOperator or hessx operator
        Symmetric.
    n_probes : int, default 30
        Random probe vectors; the sampling error falls like ``1/sqrt(n_probes)``.
    n_steps : int, optional
        Lanczos steps per probe; the quadrature error falls with it. Default
        ``min(80, n)``; at most n. The Lanczos vectors are kept semi-orthogonal
        by partial reorthogonalisation (measured, corrected only when needed),
        which is what the error bars need, at a fraction of the cost of full
        Gram-Schmidt on every step.
    rng : None, int or numpy.random.Generator
        The same int gives the same result, bit for bit (with or without an executor).
    probe : {"rademacher", "gaussian"}
    progress : bool, default False
        A progress bar on stderr (local runs).
    executor : concurrent.futures.Executor, optional
        Spread the probes over it (threads, processes, or a Dask client's
        ``get_executor()``): each task rebuilds the operator from its matrix
        (SciPy sparse or NumPy, pickled) or from the user's callable (which
        must then pickle for process executors) and runs a range of probes.
        The result equals the local one exactly; a failing task's exception is
        re-raised. Process pools (forked or spawned) take explicit matrices
        and picklable matrix-free operators. PyTorch and JAX Hessians
        (`hessx.torch`, `hessx.jax`) travel as their model, loss and data,
        rebuilt once per process; a Dask client's executor receives them
        (and any other operator's data) once per worker, scattered, not with
        every task. Model Hessians (`hessx.models`) do not pickle: use
        threads, or ship the model and data in your own task. Locally,
        without an executor, probes already run side by side, one per core
        (Python callables excepted: they are always called from the calling
        thread).
    probes_per_task : int, optional
        Probes per submitted task; default an even split over the executor's
        ``_max_workers`` when it has one, else one probe per task.
    check_symmetric : bool, default True
        Check an explicit matrix ``A`` for symmetry (``False`` skips it).

    Returns
    -------
    SpectralDensity

    Examples
    --------
    >>> import hessx
    >>> from hessx.problems import laplacian_3d
    >>> d = hessx.spectral_density(laplacian_3d(10, shift=6.0), n_probes=10, rng=0)
    >>> d.nodes.shape
    (10, 80)
    >>> value, stderr = d.fraction_positive()
    >>> abs(value - 0.5) < 4 * stderr
    True
    """
    op = as_operator(A, check_symmetric=check_symmetric)
    n = int(op.shape[0])
    count = positive_int(n_probes, "n_probes")
    assert count is not None
    if n_steps is None:
        steps = min(DEFAULT_STEPS, n)
    else:
        steps_checked = positive_int(n_steps, "n_steps")
        assert steps_checked is not None
        steps = steps_checked
        if steps > n:
            raise ValueError(f"n_steps must be <= n = {n} (the operator's dimension), got {steps}")
    if probe not in PROBES:
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    per = positive_int(probes_per_task, "probes_per_task", allow_none=True)
    seed = seed_from(rng)
    if executor is None:
        result = _hessx.slq_run(op._rust, count, steps, seed, probe, 0, bool(progress))
    else:
        _check_executor(executor)
        payload = _ship(executor, _portable(A, op))
        futures = [
            executor.submit(_slq_task, payload, first, size, steps, seed, probe)
            for first, size in _ranges(count, executor, per)
        ]
        parts = _gather(futures)
        # Aligned copies where needed (arrays off the network may not be).
        columns = [
            [np.require(row, np.float64, ["C", "A"]) for part in parts for row in part[k]]
            for k in range(5)
        ]
        result = _hessx.SlqResult.from_arrays(n, *columns)
    return SpectralDensity._from_result(result, steps, probe)


def _mean_stderr(samples: np.ndarray) -> tuple[float, float]:
    """Exactly rounded sums (math.fsum), so the result does not depend on how
    the samples were computed or joined."""
    count = len(samples)
    mean = math.fsum(samples) / count
    if count < 2:
        return mean, math.inf
    var = math.fsum((samples - mean) ** 2) / (count - 1)
    return mean, math.sqrt(var / count)


def trace(
    A: Any,
    *,
    n_probes: int = 60,
    rng: Any = None,
    method: str = "hutch++",
    progress: bool = False,
    executor: Executor | None = None,
    probes_per_task: int | None = None,
    check_symmetric: bool = True,
) -> tuple[float, float]:
    """Stochastic estimate of ``trace(A)`` with its standard error.

    Parameters
    ----------
    A : ndarray, sparse matrix, LinearOperator or hessx operator
        Symmetric.
    n_probes : int, default 60
        The number of operator products. "hutchinson" uses them as Rademacher
        probes ``z^T A z``; "hutch++" (at least 3) spends a third on a sketch
        of the top eigenspace, traced exactly, and the rest on Hutchinson
        probes of the deflated remainder (error ~1/n_probes instead of
        1/sqrt(n_probes) when the spectrum decays; exact when n_probes >= n).
    rng : None, int or numpy.random.Generator
    method : {"hutch++", "hutchinson"}
    progress : bool, default False
    executor : concurrent.futures.Executor, optional
        "hutchinson" spreads its probes over it; "hutch++" (whose phases
        depend on each other) runs as one task on it. Results equal the local
        ones exactly.
    probes_per_task : int, optional
        For "hutchinson" with an executor (see `spectral_density`).
    check_symmetric : bool, default True
        Check an explicit matrix ``A`` for symmetry (``False`` skips it).

    Returns
    -------
    (estimate, stderr) : tuple of float
        ``stderr`` is the probes' sample standard error (infinite with a
        single residual probe; 0 when the trace was computed exactly).

    Examples
    --------
    >>> import numpy as np, hessx
    >>> A = np.diag(np.arange(1.0, 101.0))
    >>> est, err = hessx.trace(A, n_probes=30, rng=0, method="hutchinson")
    >>> est  # Rademacher probes are exact on diagonal matrices
    5050.0
    """
    op = as_operator(A, check_symmetric=check_symmetric)
    count = positive_int(n_probes, "n_probes")
    assert count is not None
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be 'hutch++' or 'hutchinson', got {method!r}")
    per = positive_int(probes_per_task, "probes_per_task", allow_none=True)
    if executor is not None:
        _check_executor(executor)
    seed = seed_from(rng)
    if method == "hutch++":
        if count < 3:
            raise ValueError(
                f"n_probes must be at least 3 for method='hutch++' (a sketch, its products and a residual probe), got {count}"
            )
        if executor is None:
            estimate, stderr = _hessx.hutchpp_run(op._rust, count, seed, bool(progress))
            return float(estimate), float(stderr)
        payload = _ship(executor, _portable(A, op))
        (remote,) = _gather([executor.submit(_hutchpp_task, payload, count, seed)])
        return float(remote[0]), float(remote[1])
    if executor is None:
        samples = np.asarray(_hessx.hutchinson_run(op._rust, count, seed, 0, bool(progress)))
    else:
        payload = _ship(executor, _portable(A, op))
        futures = [
            executor.submit(_hutchinson_task, payload, first, size, seed)
            for first, size in _ranges(count, executor, per)
        ]
        samples = np.concatenate(_gather(futures))
    return _mean_stderr(samples)
