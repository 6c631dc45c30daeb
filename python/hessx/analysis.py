"""Critical points: classification by the second-order test, and the minimum ratio."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _hessx
from ._dense import DENSE_LIMIT, to_dense
from ._validation import finite_vector, nonnegative_float
from .eigen import NoConvergence, lanczos
from .operators import CsrOperator, DenseOperator, as_operator

__all__ = ["classify", "CriticalPoint", "minimum_ratio", "MinimumRatio", "Fractions"]

KINDS = ("not_critical", "saddle", "local_min", "local_max", "degenerate")


def default_rtol(dtype: Any) -> float:
    """Half the digits of the operator's dtype: rounding in products stays far below it."""
    return float(np.sqrt(np.finfo(np.dtype(dtype)).eps))


@dataclass(frozen=True)
class CriticalPoint:
    """The second-order test at a point.

    Attributes
    ----------
    kind : str
        One of "not_critical", "saddle", "local_min", "local_max", "degenerate".
    lambda_min, lambda_max : float
        The extreme Hessian eigenvalues.
    tol : float
        Absolute threshold under which an eigenvalue counts as zero.
    grad_norm : float or None
        ``||grad||`` when a gradient was given.
    escape_direction : ndarray or None
        Unit eigenvector of ``lambda_min`` when ``lambda_min < -tol``.
    semidefinite : str or None
        For "degenerate": "positive" or "negative" (which sign the non-zero
        eigenvalues have).
    residuals : tuple of float
        ``||H v - lambda v||`` of the two extreme pairs: each eigenvalue is exact
        to within its residual, and a sign is reported only when certified.
    method : str
        "dense" (exact eigen-decomposition) or "lanczos".
    """

    kind: str
    lambda_min: float
    lambda_max: float
    tol: float
    grad_norm: float | None
    escape_direction: np.ndarray | None = field(repr=False)
    semidefinite: str | None = None
    residuals: tuple[float, float] = (0.0, 0.0)
    method: str = "dense"

    @property
    def is_critical(self) -> bool:
        return self.kind != "not_critical"


def _extremes(
    A: Any, op: Any, rng: Any, dense_limit: int
) -> tuple[float, float, np.ndarray, float, float, str]:
    n = op.shape[0]
    if n <= dense_limit:
        w, v = np.linalg.eigh(to_dense(A, op))
        scale = max(abs(w[0]), abs(w[-1]))
        res = float(np.finfo(np.float64).eps * scale * n)
        return float(w[0]), float(w[-1]), v[:, 0], res, res, "dense"
    result = lanczos(op, k=2, which="BE", tol=1e-10, rng=rng)
    if not result.all_converged:
        raise NoConvergence(
            "classify: the extreme eigenvalues did not converge; pass a larger maxiter or ncv "
            "to hessx.lanczos and classify its result by hand",
            result.eigenvalues[result.converged],
            None,
            result,
        )
    assert result.eigenvectors is not None
    return (
        float(result.eigenvalues[0]),
        float(result.eigenvalues[-1]),
        result.eigenvectors[:, 0],
        float(result.residuals[0]),
        float(result.residuals[-1]),
        "lanczos",
    )


def classify(
    A: Any,
    *,
    grad: Any = None,
    rtol: float | None = None,
    gtol: float = 1e-6,
    rng: Any = None,
    dense_limit: int = 200,
    check_symmetric: bool = True,
) -> CriticalPoint:
    """Classify a point by its Hessian ``A`` (and gradient ``grad``).

    Parameters
    ----------
    A : ndarray, sparse matrix, LinearOperator or hessx operator
        The Hessian at the point (symmetric).
    grad : array_like, optional
        The gradient; if ``||grad|| > gtol`` the point is "not_critical".
    rtol : float, optional
        An eigenvalue counts as zero when ``|lambda| <= tol`` with
        ``tol = rtol * max(|lambda_min|, |lambda_max|)``. Default: the square
        root of the operator dtype's machine epsilon (1.5e-8 for float64,
        3.5e-4 for float32).
    gtol : float, default 1e-6
        Absolute gradient-norm threshold for a critical point.
    rng : None, int or Generator
        For the Lanczos start vector.
    dense_limit : int, default 200
        Up to this size the Hessian is densified and solved exactly.
    check_symmetric : bool, default True
        Check an explicit matrix ``A`` for symmetry (``False`` skips it).

    Examples
    --------
    >>> import numpy as np, hessx
    >>> cp = hessx.classify(np.array([[0.0, -2.0], [-2.0, 0.0]]), grad=[0.0, 0.0])
    >>> cp.kind, cp.lambda_min, cp.lambda_max
    ('saddle', -2.0, 2.0)
    """
    op = as_operator(A, check_symmetric=check_symmetric)
    n = op.shape[0]
    rtol = default_rtol(op.dtype) if rtol is None else nonnegative_float(rtol, "rtol")
    gtol = nonnegative_float(gtol, "gtol")
    grad_norm = None
    if grad is not None:
        grad_norm = float(np.linalg.norm(finite_vector(grad, "grad", n)))
    lam_min, lam_max, v_min, res_min, res_max, method = _extremes(A, op, rng, dense_limit)
    tol = rtol * max(abs(lam_min), abs(lam_max))
    # A sign counts only when certified: the true eigenvalue is within its residual.
    certainly_negative = lam_min + res_min < -tol
    max_positive = lam_max - res_max > tol
    min_positive = lam_min - res_min > tol
    max_negative = lam_max + res_max < -tol

    semidefinite = None
    if grad_norm is not None and grad_norm > gtol:
        kind = "not_critical"
    elif certainly_negative and max_positive:
        kind = "saddle"
    elif min_positive:
        kind = "local_min"
    elif max_negative:
        kind = "local_max"
    else:
        kind = "degenerate"
        semidefinite = "negative" if lam_max <= tol and lam_min < -tol else "positive"

    escape = None
    if certainly_negative:
        escape = np.asarray(v_min, dtype=np.float64)
        escape = escape / np.linalg.norm(escape)
        # A deterministic sign: the largest component positive.
        if escape[np.argmax(np.abs(escape))] < 0:
            escape = -escape
    return CriticalPoint(
        kind=kind,
        lambda_min=lam_min,
        lambda_max=lam_max,
        tol=float(tol),
        grad_norm=grad_norm,
        escape_direction=escape,
        semidefinite=semidefinite,
        residuals=(res_min, res_max),
        method=method,
    )


@dataclass(frozen=True)
class Fractions:
    """Shares of eigenvalues below ``-tol``, within ``±tol`` and above ``+tol``,
    each as ``(value, stderr)``."""

    below: tuple[float, float]
    within: tuple[float, float]
    above: tuple[float, float]


@dataclass(frozen=True)
class MinimumRatio:
    """The share of positive Hessian eigenvalues.

    Attributes
    ----------
    value : float
        (number of eigenvalues > tol) / n.
    stderr : float
        0 when exact.
    method : str
        "exact" (dense eigenvalues), "inertia" (exact, sparse LDLᵀ) or "slq".
    n : int
    tol : float
        Eigenvalues within ``±tol`` count as zero, not positive.
    fractions : Fractions
        The banded shares: a network's Hessian has most eigenvalues near zero,
        and the raw ratio alone misleads.
    """

    value: float
    stderr: float
    method: str
    n: int
    tol: float
    fractions: Fractions


# SLQ cannot place a threshold closer to an eigenvalue cluster than the
# cluster's Ritz residuals (~1e-5 of the spectrum's scale after 80 steps for a
# converged cluster at zero): its error bar there is honest but wide. Its
# default tol is therefore relative 1e-4 (or the dtype's sqrt(eps), if larger).
SLQ_RTOL = 1e-4
# Peak memory allowed for the sparse LDLᵀ of method "inertia" (symbolic estimate).
DEFAULT_MAX_MEMORY = 4 * 2**30
MINIMUM_RATIO_METHODS = ("auto", "exact", "inertia", "slq")


def _csr_arrays(matrix: Any) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(n, indptr, indices, data) of a square matrix in the dtypes the Rust side takes."""
    csr = sp.csr_array(matrix)
    data = csr.data
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    indptr, indices = csr.indptr, csr.indices
    if indptr.dtype != indices.dtype or indices.dtype not in (np.int32, np.int64):
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)
    return (
        int(csr.shape[0]),
        np.ascontiguousarray(indptr),
        np.ascontiguousarray(indices),
        np.ascontiguousarray(data),
    )


def _explicit_sparse(A: Any, op: Any) -> Any:
    """The sparse matrix behind A, or None for dense and matrix-free operators."""
    if sp.issparse(A):
        return A
    if isinstance(op, CsrOperator):
        return op.matrix
    return None


def _spectral_scale(op: Any, matrix: Any, rng: Any) -> float:
    """max |lambda| (two extreme Ritz values; a Gershgorin bound if they do not converge)."""
    try:
        result = lanczos(op, k=2, which="BE", tol=1e-6, rng=rng)
        if result.all_converged:
            return float(np.max(np.abs(result.eigenvalues)))
    except NoConvergence:
        pass
    row_sums = np.asarray(abs(sp.csr_array(matrix)).sum(axis=1), dtype=np.float64)
    return float(row_sums.max()) if row_sums.size else 0.0


def minimum_ratio(
    A: Any,
    *,
    method: str = "auto",
    tol: float | None = None,
    rng: Any = None,
    dense_limit: int = DENSE_LIMIT,
    max_memory: int = DEFAULT_MAX_MEMORY,
    n_probes: int = 30,
    n_steps: int | None = None,
    progress: bool = False,
    executor: Any = None,
    check_symmetric: bool = True,
) -> MinimumRatio:
    """The minimum ratio: the share of eigenvalues of ``A`` that are > tol.

    Parameters
    ----------
    A : ndarray, sparse matrix, LinearOperator or hessx operator
    method : {"auto", "exact", "inertia", "slq"}
        "exact" computes all eigenvalues densely. "inertia" counts them exactly
        for an explicit sparse matrix by Sylvester's law of inertia (the pivot
        signs of sparse LDLᵀ factorisations of ``A - tol I`` and ``A + tol I``).
        "slq" estimates the counts by stochastic Lanczos quadrature
        (`hessx.spectral_density`), with a standard error that covers both the
        sampling and the quadrature error. "auto" picks "exact" up to
        ``dense_limit`` rows, else "inertia" for a sparse matrix whose factor
        fits in ``max_memory`` bytes (and falls back to "slq" should the
        factorisation grow too much to be trusted, which "inertia" reports as
        ``ValueError``), else "slq"; ``.method`` says which ran.
    tol : float, optional
        Eigenvalues within ``±tol`` count as zero. Default, relative to the
        spectrum's scale ``max|lambda|`` (so rounding noise around exact
        zeros, which a network's symmetries give many of, is not counted as
        positive): ``sqrt(eps) * max|lambda|`` for the operator's dtype
        ("exact", "inertia"; the inertia counts are reliable from about
        ``1e-8 * max|A|``: where ``A -/+ tol I`` is exactly singular, the
        eigenvalues within ``2**-26 * (max|A| + tol)`` of the threshold count
        as zero); ``max(sqrt(eps), 1e-4) * max|lambda|`` for "slq",
        whose error bar is wide for thresholds closer to an eigenvalue cluster
        than the cluster's Ritz residuals (about ``1e-5 * max|lambda|`` after
        80 steps). Pass ``tol`` to compare methods at one threshold.
    rng : None, int or Generator
    dense_limit : int, default 2000
    max_memory : int, default 4 GiB
        Bytes the inertia method's factorisation may take (symbolic estimate).
    n_probes, n_steps, progress, executor
        For "slq": see `hessx.spectral_density`.
    check_symmetric : bool, default True
        Check an explicit matrix ``A`` for symmetry (``False`` skips it).

    Examples
    --------
    >>> import numpy as np, hessx
    >>> r = hessx.minimum_ratio(np.diag([3.0, 1.0, 0.0, -2.0]))
    >>> r.value, r.fractions.within
    (0.5, (0.25, 0.0))
    >>> from hessx.problems import laplacian_3d
    >>> r = hessx.minimum_ratio(laplacian_3d(20, shift=6.0), method="inertia", tol=1e-6)
    >>> r.method, r.value
    ('inertia', 0.49775)
    """
    op = as_operator(A, check_symmetric=check_symmetric)
    n = op.shape[0]
    if method not in MINIMUM_RATIO_METHODS:
        raise ValueError(f"method must be 'auto', 'exact', 'inertia' or 'slq', got {method!r}")
    if tol is not None:
        tol = nonnegative_float(tol, "tol")
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)):
        raise TypeError(f"max_memory must be an int (bytes), got {type(max_memory).__name__}")
    if max_memory <= 0:
        raise ValueError(f"max_memory must be positive, got {max_memory}")
    eps = float(np.finfo(np.dtype(op.dtype)).eps)

    chosen = method
    csr = None
    matrix = None
    if method in ("auto", "inertia"):
        matrix = _explicit_sparse(A, op)
        if matrix is None and method == "inertia":
            if isinstance(A, np.ndarray) or isinstance(op, DenseOperator):
                matrix = sp.csr_array(to_dense(A, op))
            else:
                raise ValueError(
                    "method='inertia' needs an explicit matrix (SciPy sparse, ndarray or "
                    f"CsrOperator), got {type(A).__name__}; use method='slq' for operators"
                )
        if method == "auto" and n <= dense_limit:
            chosen = "exact"
        elif matrix is not None:
            csr = _csr_arrays(matrix)
            _, needed = _hessx.factor_size(*csr)
            if needed <= max_memory:
                chosen = "inertia"
            elif method == "inertia":
                raise ValueError(
                    f"method='inertia': the factorisation needs about {needed / 2**30:.2f} GiB, "
                    f"above max_memory={max_memory} bytes; raise max_memory or use method='slq'"
                )
            else:
                chosen = "slq"
        else:
            chosen = "slq"

    if chosen == "inertia":
        assert csr is not None
        if tol is None:
            tol = float(np.sqrt(eps) * _spectral_scale(op, matrix, rng))
        try:
            below_count, within_count, above_count = _hessx.inertia_counts(*csr, tol)
        except ValueError:
            # The factorisation broke down or grew too much to be trusted
            # (the error says which); "auto" estimates instead.
            if method == "inertia":
                raise
            chosen = "slq"
        else:
            return _exact_ratio(
                "inertia", n, tol, below_count / n, within_count / n, above_count / n
            )
    if chosen == "slq":
        from .spectrum import spectral_density

        density = spectral_density(
            op,
            n_probes=n_probes,
            n_steps=n_steps,
            rng=rng,
            progress=progress,
            executor=executor,
        )
        if tol is None:
            scale = float(np.max(np.abs(density.nodes)))
            tol = max(float(np.sqrt(eps)), SLQ_RTOL) * scale
        fractions = density.fractions(tol)
        return MinimumRatio(
            value=fractions.above[0],
            stderr=fractions.above[1],
            method="slq",
            n=n,
            tol=tol,
            fractions=fractions,
        )
    w = np.linalg.eigvalsh(to_dense(A, op))
    if tol is None:
        scale = float(np.max(np.abs(w))) if n else 0.0
        tol = float(np.sqrt(eps) * scale)
    below = float(np.count_nonzero(w < -tol)) / n
    above = float(np.count_nonzero(w > tol)) / n
    return _exact_ratio("exact", n, tol, below, 1.0 - below - above, above)


def _exact_ratio(
    method: str, n: int, tol: float, below: float, within: float, above: float
) -> MinimumRatio:
    """A minimum ratio from exact counts: no sampling or quadrature error."""
    return MinimumRatio(
        value=above,
        stderr=0.0,
        method=method,
        n=n,
        tol=tol,
        fractions=Fractions(below=(below, 0.0), within=(within, 0.0), above=(above, 0.0)),
    )
