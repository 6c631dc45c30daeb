"""Extreme eigenpairs: `eigsh` (a drop-in for SciPy's) and `lanczos` (richer result)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator

from . import _hessx
from ._validation import finite_vector, nonnegative_float, positive_int, seed_from
from .operators import HessxOperator, as_operator

__all__ = ["eigsh", "lanczos", "LanczosResult", "NoConvergence"]

WHICH = ("LA", "SA", "LM", "SM", "BE")


class NoConvergence(ArpackNoConvergence):
    """Not all requested eigenpairs converged within ``maxiter`` restarts.

    ``.eigenvalues`` / ``.eigenvectors`` hold the pairs that did converge
    (as SciPy's ``ArpackNoConvergence`` does); ``.result`` the full
    `LanczosResult`, unconverged pairs included.
    """

    def __init__(
        self,
        msg: str,
        eigenvalues: np.ndarray,
        eigenvectors: np.ndarray | None,
        result: LanczosResult | None = None,
    ) -> None:
        super().__init__(msg, eigenvalues, eigenvectors)
        self.result = result


@dataclass(frozen=True)
class LanczosResult:
    """Eigenpairs from `hessx.lanczos`.

    Attributes
    ----------
    eigenvalues : ndarray, shape (k,)
        Ascending.
    eigenvectors : ndarray, shape (n, k), or None
        Orthonormal columns, ``eigenvectors[:, i]`` belongs to ``eigenvalues[i]``.
    residuals : ndarray, shape (k,)
        ``||A v - lambda v||`` of each pair: the true eigenvalue nearest to
        ``eigenvalues[i]`` lies within ``residuals[i]`` of it, which is what
        certifies its sign.
    converged : ndarray of bool, shape (k,)
    n_matvec, n_restarts : int
    ncv : int
        The number of Lanczos vectors used.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None = field(repr=False)
    residuals: np.ndarray
    converged: np.ndarray
    n_matvec: int
    n_restarts: int
    ncv: int

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


def _solve(
    A: Any,
    k: Any,
    which: Any,
    *,
    v0: Any,
    ncv: Any,
    maxiter: Any,
    tol: Any,
    rng: Any,
    want_vectors: bool,
    progress: bool,
    check_multiplicities: bool,
    check_symmetric: bool,
) -> tuple[LanczosResult, np.dtype]:
    op = as_operator(A, check_symmetric=check_symmetric)
    n = op.shape[0]
    k = positive_int(k, "k")
    assert k is not None
    if k >= n:
        raise ValueError(f"k must be smaller than n = {n}, got k={k}")
    if not isinstance(which, str) or which.upper() not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    which = which.upper()
    ncv = positive_int(ncv, "ncv", allow_none=True)
    if ncv is not None and not (k < ncv <= n):
        raise ValueError(f"ncv must satisfy k < ncv <= n (k={k}, n={n}), got ncv={ncv}")
    maxiter = positive_int(maxiter, "maxiter", allow_none=True)
    tol = nonnegative_float(tol, "tol")
    dtype = np.dtype(op.dtype)
    if tol == 0.0:
        # SciPy: tol=0 means the machine precision of A's dtype.
        tol = float(np.finfo(dtype).eps)
    v0_arr = None
    if v0 is not None:
        v0_arr = finite_vector(v0, "v0", n)
        if not np.any(v0_arr):
            raise ValueError("v0 must not be the zero vector")
    seed = seed_from(rng)
    if not isinstance(check_multiplicities, (bool, np.bool_)):
        raise TypeError("check_multiplicities must be a bool")
    out = _hessx.lanczos_solve(
        op._rust,
        k,
        which,
        ncv,
        maxiter,
        tol,
        v0_arr,
        seed,
        bool(want_vectors),
        bool(progress),
        bool(check_multiplicities),
    )
    result = LanczosResult(
        eigenvalues=out["values"],
        eigenvectors=out["vectors"],
        residuals=out["residuals"],
        converged=out["converged"],
        n_matvec=int(out["n_matvec"]),
        n_restarts=int(out["n_restarts"]),
        ncv=int(out["ncv"]),
    )
    return result, dtype


def lanczos(
    A: Any,
    k: int = 6,
    which: str = "BE",
    *,
    tol: float = 1e-10,
    maxiter: int | None = None,
    ncv: int | None = None,
    v0: Any = None,
    rng: Any = None,
    return_eigenvectors: bool = True,
    progress: bool = False,
    check_multiplicities: bool = True,
    check_symmetric: bool = True,
) -> LanczosResult:
    """k extreme eigenpairs of a real symmetric operator by thick-restart Lanczos.

    Unlike `eigsh`, returns a `LanczosResult` with residuals, counts and
    convergence flags, and does not raise when some pairs did not converge.

    Parameters
    ----------
    A : ndarray, sparse matrix, LinearOperator or hessx operator
    k : int
        Number of eigenpairs, ``1 <= k < n``.
    which : {"BE", "LA", "SA", "LM", "SM"}
        Both ends (half from each, the extra one from the top), largest or
        smallest algebraic, largest or smallest magnitude.
    tol : float
        Relative accuracy: a pair is converged when its residual is at most
        ``tol * max(|lambda|, eps**(2/3) * scale)`` or ``4 * eps * scale``,
        whichever is larger, where ``scale`` estimates ``||A||`` and ``eps`` is
        the unit roundoff of ``A``'s dtype (float32's for float32 matrices and
        models: their eigenvalues are only defined to about ``eps * ||A||``);
        0 means ``eps``.
    maxiter : int, optional
        Maximum number of restarts (default ``10 * n``).
    ncv : int, optional
        Number of Lanczos vectors (default ``min(n, max(2k + 1, 20))``). They
        take ``(ncv + 1) * n`` floats: float32 when ``A``'s products are
        float32 (a float32 callable or model), else float64.
    v0 : array_like, optional
        Starting vector (default: random from ``rng``).
    rng : None, int or numpy.random.Generator
        The same int gives the same result, bit for bit.
    progress : bool
        Show a progress bar on stderr.
    check_multiplicities : bool, default True
        Once the ``k`` pairs have converged, lock them and search their
        orthogonal complement from a fresh random vector for pairs the
        Krylov space missed (further copies of a repeated eigenvalue, which
        a single-vector Krylov method such as ARPACK does not return): the
        result is the true extreme ``k``, multiplicities included. It costs
        the products of resolving one more eigenvalue per end (to ``sqrt(tol)``),
        typically 20-50 % more on matrices with simple eigenvalues. Not done
        for ``which="SM"``.
    check_symmetric : bool, default True
        Check an explicit matrix ``A`` (ndarray or sparse) for symmetry
        before solving; ``False`` skips the check (and trusts the caller).

    Examples
    --------
    >>> import numpy as np, hessx
    >>> res = hessx.lanczos(np.diag(np.arange(-5.0, 15.0)), k=2, rng=0)
    >>> res.eigenvalues
    array([-5., 14.])
    """
    result, _ = _solve(
        A,
        k,
        which,
        v0=v0,
        ncv=ncv,
        maxiter=maxiter,
        tol=tol,
        rng=rng,
        want_vectors=return_eigenvectors,
        progress=progress,
        check_multiplicities=check_multiplicities,
        check_symmetric=check_symmetric,
    )
    return result


def eigsh(
    A: Any,
    k: int = 6,
    M: Any = None,
    sigma: Any = None,
    which: str = "LM",
    v0: Any = None,
    ncv: int | None = None,
    maxiter: int | None = None,
    tol: float = 0,
    return_eigenvectors: bool = True,
    Minv: Any = None,
    OPinv: Any = None,
    mode: str = "normal",
    rng: Any = None,
    *,
    progress: bool = False,
    check_multiplicities: bool = True,
    check_symmetric: bool = True,
) -> Any:
    """Drop-in for `scipy.sparse.linalg.eigsh` on standard real symmetric problems.

    Same parameters in the same order and the same results: eigenvalues
    ascending, eigenvectors as columns. Generalized, shift-invert, buckling and
    Cayley modes (``M``, ``sigma``, ``Minv``, ``OPinv``, ``mode``) are not
    supported and raise ``NotImplementedError``. Non-convergence raises
    `hessx.NoConvergence` (a subclass of SciPy's ``ArpackNoConvergence``)
    carrying the converged pairs. Unlike ARPACK, every copy of a repeated
    extreme eigenvalue is returned (keyword-only ``check_multiplicities``,
    default True, see `lanczos`). An explicit matrix is checked for symmetry
    unless the keyword-only ``check_symmetric=False`` is passed.

    Examples
    --------
    >>> import numpy as np, hessx
    >>> w = hessx.eigsh(np.diag(np.arange(1.0, 21.0)), k=3, which="LA",
    ...                 return_eigenvectors=False, rng=0)
    >>> w
    array([18., 19., 20.])
    """
    for name, value in (("M", M), ("sigma", sigma), ("Minv", Minv), ("OPinv", OPinv)):
        if value is not None:
            raise NotImplementedError(
                f"hessx.eigsh solves standard problems only: {name} must be None "
                "(use scipy.sparse.linalg.eigsh for generalized or shift-invert problems)"
            )
    if mode != "normal":
        raise NotImplementedError(
            f"hessx.eigsh supports mode='normal' only, got mode={mode!r} "
            "(use scipy.sparse.linalg.eigsh for buckling and cayley modes)"
        )
    dtype = np.dtype(getattr(A, "dtype", np.float64) or np.float64)
    if dtype.kind == "c":
        raise TypeError(
            f"hessx.eigsh solves real symmetric problems, got complex dtype {dtype} "
            "(use scipy.sparse.linalg.eigsh for complex Hermitian matrices)"
        )
    shape = getattr(A, "shape", None)
    if shape is not None and len(shape) == 2 and shape[0] != shape[1]:
        raise ValueError(f"A must be square, got shape {tuple(shape)}")
    k_int = positive_int(k, "k")
    n = shape[0] if shape is not None else None
    if n is not None and k_int is not None and k_int >= n:
        return _dense_fallback(A, return_eigenvectors)
    result, dtype = _solve(
        A,
        k,
        which,
        v0=v0,
        ncv=ncv,
        maxiter=maxiter,
        tol=tol,
        rng=rng,
        want_vectors=return_eigenvectors,
        progress=progress,
        check_multiplicities=check_multiplicities,
        check_symmetric=check_symmetric,
    )
    values = result.eigenvalues.astype(dtype, copy=False)
    vectors = None if result.eigenvectors is None else result.eigenvectors.astype(dtype, copy=False)
    if not result.all_converged:
        done = result.converged
        raise NoConvergence(
            f"hessx.eigsh: {int(done.sum())} of {done.size} eigenpairs converged after "
            f"{result.n_restarts} restarts ({result.n_matvec} products); raise maxiter or ncv",
            values[done],
            None if vectors is None else vectors[:, done],
            result,
        )
    if return_eigenvectors:
        return values, vectors
    return values


def _dense_fallback(A: Any, return_eigenvectors: bool) -> Any:
    # SciPy's behaviour for k >= n: dense eigh on arrays, TypeError otherwise.
    warnings.warn(
        "k >= N for N * N square matrix. Attempting to use scipy.linalg.eigh instead.",
        RuntimeWarning,
        stacklevel=3,
    )
    if sp.issparse(A):
        raise TypeError(
            "Cannot use scipy.linalg.eigh for sparse A with k >= N. "
            "Use scipy.linalg.eigh(A.toarray()) or reduce k."
        )
    if isinstance(A, (LinearOperator, HessxOperator)):
        raise TypeError("Cannot use scipy.linalg.eigh for LinearOperator A with k >= N.")
    return scipy.linalg.eigh(A, eigvals_only=not return_eigenvectors)
