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


def size_label(rows):
    """1,000,000 -> "1m", 97,336 -> "97k": benchmark ids say the size they ran."""
    if rows >= 1_000_000:
        return f"{rows / 1e6:.3g}m"
    return f"{rows // 1000}k"


LARGE_ROWS, MEDIUM_ROWS = M_LARGE**3, M_MEDIUM**3
# Parametrisations by fixture name, with ids that carry the size (the smoke
# run's 27k-row problems are not called "1m").
LARGE = [
    pytest.param(name, id=f"{name}_{size_label(LARGE_ROWS)}") for name in ("laplacian", "random")
]
MEDIUM = [
    pytest.param(name, id=f"{name}_{size_label(MEDIUM_ROWS)}") for name in ("laplacian", "random")
]


@pytest.fixture(scope="session")
def problems():
    """Problems by (name, size), built once per session on first use."""
    cache = {}

    def get(name, size):
        if (name, size) not in cache:
            m, seed = (M_LARGE, 0) if size == "large" else (M_MEDIUM, 1)
            if name == "laplacian":
                cache[name, size] = laplacian_3d(m, weights=(1.0, 1.1, 1.2), shift=1.5)
            else:
                cache[name, size] = random_symmetric(m**3, 16, rng=seed)
        return cache[name, size]

    return get


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
