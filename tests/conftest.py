import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


def random_symmetric_dense(n, rng, dtype=np.float64):
    a = rng.standard_normal((n, n))
    return ((a + a.T) / 2).astype(dtype)
