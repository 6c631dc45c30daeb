"""Dense copies of small operators, for exact answers where they are affordable."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .operators import CsrOperator, DenseOperator, HessxOperator

# Above this size the operator is not densified by default.
DENSE_LIMIT = 2000


def to_dense(A: Any, op: HessxOperator) -> np.ndarray:
    """The float64 matrix of `op` (A is the object the user passed)."""
    if isinstance(A, np.ndarray):
        return np.asarray(A, dtype=np.float64)
    if sp.issparse(A):
        return A.toarray().astype(np.float64, copy=False)
    if isinstance(op, DenseOperator):
        return np.asarray(op.matrix, dtype=np.float64)
    if isinstance(op, CsrOperator):
        return op.matrix.toarray().astype(np.float64, copy=False)
    n = op.shape[0]
    dense = np.empty((n, n))
    block = 256
    for start in range(0, n, block):
        stop = min(n, start + block)
        basis = np.zeros((n, stop - start))
        basis[np.arange(start, stop), np.arange(stop - start)] = 1.0
        dense[:, start:stop] = op._rust.matmat(basis)
    # Products of a symmetric operator are symmetric only to rounding.
    return 0.5 * (dense + dense.T)
