"""Operators whose products run in Rust, each a `scipy.sparse.linalg.LinearOperator`.

A hessx solver handed one of these never goes back through Python per product;
SciPy code accepts them like any other LinearOperator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from . import _hessx

__all__ = [
    "HessxOperator",
    "CsrOperator",
    "DenseOperator",
    "CallableOperator",
    "as_operator",
]

_REAL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class HessxOperator(LinearOperator):
    """A real symmetric operator whose products run in Rust with the GIL released."""

    _rust: Any

    def __init__(self, rust: Any, dtype: Any) -> None:
        self._rust = rust
        super().__init__(dtype=np.dtype(dtype), shape=(rust.n, rust.n))

    # Products run in float64 (the solvers' precision) and are returned in the
    # operator's dtype, as SciPy's LinearOperator contract expects.
    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind == "c":
            return self._matvec(x.real) + 1j * self._matvec(x.imag)
        y = self._rust.matvec(np.ascontiguousarray(x.reshape(-1), dtype=np.float64))
        return y.astype(self.dtype, copy=False)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype.kind == "c":
            return self._matmat(X.real) + 1j * self._matmat(X.imag)
        Y = self._rust.matmat(np.ascontiguousarray(X, dtype=np.float64))
        return Y.astype(self.dtype, copy=False)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._matmat(X)

    def _adjoint(self) -> HessxOperator:
        return self

    def _transpose(self) -> HessxOperator:
        return self

    def __repr__(self) -> str:
        n = self.shape[0]
        return f"<{type(self).__name__} {n}x{n} dtype={self.dtype}>"


STORAGES = ("full", "upper", "auto")


class CsrOperator(HessxOperator):
    """A sparse symmetric matrix with parallel SpMV/SpMM in Rust.

    Parameters
    ----------
    A : scipy sparse matrix or array
        Any format; CSR with float32/float64 values and int32/int64 indices is
        used without a copy: the operator keeps A alive and reads its buffers
        at every product. Values changed in place change the operator;
        indices or indptr changed in place make the next product raise
        ``ValueError`` (build a new operator instead).
    check_symmetric : bool, default True
        Verify that A equals its transpose; raise ``ValueError`` if not.
    storage : {"full", "upper", "auto"}, default "full"
        ``"full"`` borrows A's CSR arrays as they are: no copy, no extra
        memory. ``"upper"`` converts A once (two parallel passes) to its upper
        triangle with the diagonal and keeps only that, owned by Rust (A is
        not referenced afterwards): ``(n + 1) * s_i + nnz_strict * (s_i + s_v)``
        bytes, plus ``n * s_v`` for the diagonal, stored densely when most
        rows have one (``s_i``/``s_v`` the index and value sizes,
        ``nnz_strict`` the entries above the diagonal). That is 0.55x the full
        CSR bytes for a 3D 7-point Laplacian and ~0.51x for a matrix with few
        diagonal entries, and every product reads that many fewer bytes. The
        symmetric product uses each stored entry twice, runs in parallel
        without atomics, and is bit-for-bit reproducible for the thread count
        the operator was built with (`set_num_threads`); it differs from the
        full product by rounding only. With ``check_symmetric=False`` and a
        non-symmetric A, "upper" multiplies by the symmetric matrix whose
        upper triangle is A's. ``"auto"`` converts, then keeps the triangle
        when its entries stay near the diagonal (stencils, meshes, banded
        Hessians: products cut into many parts with small private buffers,
        bound by memory bandwidth, so half the bytes is the win) and falls
        back to borrowing A otherwise (entries across the whole matrix, as in
        random graphs, make every scatter a random read-modify-write: 2.5x
        slower than full storage measured at 1M rows, 16 per row).

    Attributes
    ----------
    storage : str
        "full" or "upper" (for "auto", the one chosen).
    nbytes : int
        Bytes of matrix storage one product reads.
    matrix : scipy.sparse.csr_array
        A as CSR (for ``storage="upper"``, rebuilt from the triangle on each
        access: a new array).

    Examples
    --------
    >>> import scipy.sparse as sp, hessx
    >>> A = sp.diags_array([[-1.0] * 4, [2.0] * 5, [-1.0] * 4], offsets=[-1, 0, 1]).tocsr()
    >>> op = hessx.CsrOperator(A)
    >>> op @ [1.0, 1.0, 1.0, 1.0, 1.0]
    array([1., 0., 0., 0., 1.])
    >>> half = hessx.CsrOperator(A, storage="upper")
    >>> half @ [1.0, 1.0, 1.0, 1.0, 1.0]
    array([1., 0., 0., 0., 1.])
    >>> half.nbytes < op.nbytes
    True
    """

    def __init__(self, A: Any, *, check_symmetric: bool = True, storage: str = "full") -> None:
        if not sp.issparse(A):
            raise TypeError(f"A must be a SciPy sparse matrix or array, got {type(A).__name__}")
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square, got shape {A.shape}")
        if not isinstance(check_symmetric, (bool, np.bool_)):
            raise TypeError("check_symmetric must be a bool")
        if not isinstance(storage, str):
            raise TypeError(f"storage must be a str, got {type(storage).__name__}")
        if storage not in STORAGES:
            raise ValueError(f"storage must be 'full', 'upper' or 'auto', got {storage!r}")
        dtype = np.dtype(A.dtype)
        if dtype.kind == "c":
            raise TypeError(f"A must be real, got complex dtype {dtype}")
        if dtype.kind not in "fiub":
            raise TypeError(f"A must have a real numeric dtype, got {dtype}")
        csr = A if A.format == "csr" else A.tocsr()
        data = csr.data
        if data.dtype not in _REAL_DTYPES:
            data = data.astype(np.float64)
        indices, indptr = csr.indices, csr.indptr
        if indices.dtype != indptr.dtype or indices.dtype not in (np.int32, np.int64):
            indices = indices.astype(np.int64)
            indptr = indptr.astype(np.int64)
        rust = _hessx.RustOperator.csr(
            int(A.shape[0]),
            np.ascontiguousarray(indptr),
            np.ascontiguousarray(indices),
            np.ascontiguousarray(data),
            bool(check_symmetric),
            storage,
        )
        self.storage: str = str(rust.storage)
        self._full = csr if self.storage == "full" else None
        super().__init__(rust, data.dtype)

    @property
    def matrix(self) -> Any:
        if self._full is not None:
            return self._full
        n = self.shape[0]
        indptr, indices, data = self._rust.upper_triangle()
        upper = sp.csr_array((data, indices, indptr), shape=(n, n))
        strict = sp.triu(upper, k=1, format="csr")
        return sp.csr_array(upper + strict.T)

    @property
    def nbytes(self) -> int:
        return int(self._rust.nbytes)

    @property
    def nnz(self) -> int:
        if self._full is not None:
            return int(self._full.nnz)
        return int(self.matrix.nnz)


class DenseOperator(HessxOperator):
    """A dense symmetric NumPy matrix with a parallel matvec in Rust.

    Parameters
    ----------
    M : (n, n) array_like of float32 or float64
        Symmetric (checked, to a relative tolerance of 1000 machine epsilons).
    """

    def __init__(self, M: Any, *, check_symmetric: bool = True) -> None:
        arr = np.asarray(M)
        if arr.dtype.kind == "c":
            raise TypeError(f"M must be real, got complex dtype {arr.dtype}")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"M must be a real numeric array, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise ValueError(f"M must be a square 2-D matrix, got shape {arr.shape}")
        if arr.dtype not in _REAL_DTYPES:
            arr = arr.astype(np.float64)
        arr = np.ascontiguousarray(arr)
        self.matrix = arr
        rust = _hessx.RustOperator.dense(arr, bool(check_symmetric))
        super().__init__(rust, arr.dtype)


class CallableOperator(HessxOperator):
    """A symmetric operator given by a user function ``x -> A @ x``.

    ``CallableOperator(matvec, n=...)`` (as `as_operator` spells it) and
    ``CallableOperator(n, matvec)`` are the same.

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` with x of shape (n,) returns ``A @ x`` (shape (n,) or (n, 1)).
        An exception raised inside reaches the caller unchanged; a result of the
        wrong shape or with NaN/Inf raises ``ValueError`` naming the call.
    n : int
        The dimension.
    matmat : callable, optional
        ``matmat(X)`` with X of shape (n, k) returns ``A @ X``; otherwise
        products of blocks call ``matvec`` column by column.
    dtype : numpy dtype, default float64
        The dtype the function expects and returns; x is passed in it. It also
        tells the solvers how accurate the products are (float32 products lose
        the Lanczos vectors' orthogonality sooner, and stochastic Lanczos
        quadrature checks them more often).

    Examples
    --------
    >>> import numpy as np, hessx
    >>> op = hessx.CallableOperator(lambda x: 2.0 * x, n=3)
    >>> op @ np.ones(3)
    array([2., 2., 2.])
    """

    def __init__(
        self,
        first: Any = None,
        second: Any = None,
        /,
        *,
        n: Any = None,
        matvec: Callable[[np.ndarray], Any] | None = None,
        matmat: Callable[[np.ndarray], Any] | None = None,
        dtype: Any = np.float64,
    ) -> None:
        # (matvec, n) when the first is callable, else (n, matvec).
        given_n, given_matvec = (second, first) if callable(first) else (first, second)
        if given_n is not None:
            if n is not None:
                raise TypeError("n given twice")
            n = given_n
        if given_matvec is not None:
            if matvec is not None:
                raise TypeError("matvec given twice")
            matvec = given_matvec
        if n is None:
            raise TypeError("n (the dimension) is required: CallableOperator(matvec, n=...)")
        if matvec is None:
            raise TypeError("matvec is required: CallableOperator(matvec, n=...)")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        if not callable(matvec):
            raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
        if matmat is not None and not callable(matmat):
            raise TypeError(f"matmat must be callable, got {type(matmat).__name__}")
        dtype = np.dtype(dtype)
        if dtype not in _REAL_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        n = int(n)
        self.function = matvec
        self.matmat_function = matmat
        rust = _hessx.RustOperator.callable(
            n,
            _checked_product(matvec, "matvec", (n,), dtype),
            None if matmat is None else _checked_product(matmat, "matmat", None, dtype),
            float(np.finfo(dtype).eps),
        )
        super().__init__(rust, dtype)


def _checked_product(
    function: Callable[[np.ndarray], Any], name: str, shape: tuple[int, ...] | None, dtype: np.dtype
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a user product so a wrong shape or complex values are a ValueError naming the call.

    The result stays float32 or float64 as the function returned it: the
    compiled side widens it and rejects NaN/Inf in one pass (no float64 copy
    and no separate ``isfinite`` pass here, which cost a float32 model's
    products milliseconds each).
    """

    def call(x: np.ndarray) -> np.ndarray:
        y = np.asarray(function(x.astype(dtype, copy=False)))
        expected = shape if shape is not None else x.shape
        if y.shape != expected and not (y.ndim == 2 and y.shape == (*expected, 1)):
            raise ValueError(f"{name}(x) returned an array of shape {y.shape}, expected {expected}")
        if y.dtype.kind == "c":
            raise ValueError(f"{name}(x) returned complex values; the operator must be real")
        if y.dtype not in _REAL_DTYPES:
            y = y.astype(np.float64)
        return np.ascontiguousarray(y.reshape(expected))

    return call


def as_operator(
    obj: Any, n: int | None = None, *, check_symmetric: bool = True, name: str = "A"
) -> HessxOperator:
    """Turn an ndarray, SciPy sparse matrix, LinearOperator, hessx operator or
    callable (with ``n``) into a hessx operator.

    ``check_symmetric`` applies to explicit matrices (ndarrays and sparse
    matrices), which are checked entry by entry; operators are taken as
    given. ``name`` is the argument's name in error messages.
    """
    if isinstance(obj, HessxOperator):
        return obj
    if not isinstance(check_symmetric, (bool, np.bool_)):
        raise TypeError(f"check_symmetric must be a bool, got {type(check_symmetric).__name__}")
    if sp.issparse(obj):
        return _named(name, "A", lambda: CsrOperator(obj, check_symmetric=bool(check_symmetric)))
    if isinstance(obj, LinearOperator):
        if obj.shape[0] != obj.shape[1]:
            raise ValueError(f"{name} must be square, got shape {obj.shape}")
        dtype = np.dtype(obj.dtype) if obj.dtype is not None else np.dtype(np.float64)
        if dtype.kind == "c":
            raise TypeError(f"{name} must be real, got complex dtype {dtype}")
        if dtype not in _REAL_DTYPES:
            dtype = np.dtype(np.float64)
        return CallableOperator(int(obj.shape[0]), obj.matvec, matmat=obj.matmat, dtype=dtype)
    if isinstance(obj, np.ndarray) or isinstance(obj, (list, tuple)):
        return _named(name, "M", lambda: DenseOperator(obj, check_symmetric=bool(check_symmetric)))
    if callable(obj):
        if n is None:
            raise TypeError(
                "n is required to turn a callable into an operator: as_operator(f, n=...)"
            )
        return CallableOperator(n, obj)
    raise TypeError(
        f"{name} must be an ndarray, a SciPy sparse matrix, a LinearOperator, a hessx operator "
        f"or a callable with n, got {type(obj).__name__}"
    )


_Built = TypeVar("_Built")


def _named(name: str, internal: str, build: Callable[[], _Built]) -> _Built:
    """``build()``, its errors speaking of the caller's argument ``name``
    instead of the constructor's parameter ``internal``."""
    try:
        return build()
    except (ValueError, TypeError) as error:
        if name == internal:
            raise
        message = re.sub(rf"\b{internal}(?=[\s\[.:,])", name, str(error))
        raise type(error)(message) from None
