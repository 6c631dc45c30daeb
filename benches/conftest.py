"""Shared problems for the side-by-side benchmarks.

HESSX_BENCH_SMALL=1 shrinks every problem (a smoke run of the benchmark code).
"""

import os
import time

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
    """SciPy's view of A with a matvec counter and a wall-clock budget."""

    def __init__(self, A, budget_s=None):
        super().__init__(dtype=A.dtype, shape=A.shape)
        self.A = A
        self.n_matvec = 0
        self.budget_s = budget_s
        self.start = time.perf_counter()

    def _matvec(self, x):
        if self.budget_s is not None and time.perf_counter() - self.start > self.budget_s:
            raise TimeoutError(f"over budget after {self.n_matvec} products")
        self.n_matvec += 1
        return self.A @ x


def max_residual(A, w, v):
    return float(np.max(np.linalg.norm(A @ v - v * w, axis=0) / np.maximum(np.abs(w), 1e-300)))
