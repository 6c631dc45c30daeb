"""Shared problems for the side-by-side benchmarks.

HESSX_BENCH_SMALL=1 shrinks every problem (a smoke run of the benchmark code).
"""

import os

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator

from hessx.problems import laplacian_3d, random_symmetric

SMALL = os.environ.get("HESSX_BENCH_SMALL") == "1"
M_LARGE = 30 if SMALL else 100  # 100^3 = 1,000,000 rows
M_MEDIUM = 20 if SMALL else 46  # 46^3 = 97,336 rows


@pytest.fixture(scope="session")
def laplacian_1m():
    return laplacian_3d(M_LARGE, weights=(1.0, 1.1, 1.2), shift=1.5)


@pytest.fixture(scope="session")
def random_1m():
    return random_symmetric(M_LARGE**3, 16, rng=0)


@pytest.fixture(scope="session")
def laplacian_100k():
    return laplacian_3d(M_MEDIUM, weights=(1.0, 1.1, 1.2), shift=1.5)


@pytest.fixture(scope="session")
def random_100k():
    return random_symmetric(M_MEDIUM**3, 16, rng=1)


class CountingOperator(LinearOperator):
    """SciPy's view of A with a matvec counter (SciPy's own product)."""

    def __init__(self, A):
        super().__init__(dtype=A.dtype, shape=A.shape)
        self.A = A
        self.n_matvec = 0

    def _matvec(self, x):
        self.n_matvec += 1
        return self.A @ x


def max_residual(A, w, v):
    """The largest ``||A v - w v|| / |w|`` of the returned pairs."""
    return float(np.max(np.linalg.norm(A @ v - v * w, axis=0) / np.maximum(np.abs(w), 1e-300)))


def orthogonality(v):
    """``max |V^T V - I|`` of the returned vectors."""
    return float(np.max(np.abs(v.T @ v - np.eye(v.shape[1]))))
