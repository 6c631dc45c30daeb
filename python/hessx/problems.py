"""Test problems with known spectra, shared by the tests, the benchmarks and the CLI."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import as_generator

__all__ = ["laplacian_3d", "laplacian_3d_eigenvalues", "random_symmetric", "lecture_loss"]


def _laplacian_1d(m: int) -> sp.csr_array:
    return sp.diags_array(
        [-np.ones(m - 1), 2.0 * np.ones(m), -np.ones(m - 1)], offsets=[-1, 0, 1], format="csr"
    )


def laplacian_3d(
    m: int,
    *,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    shift: float = 0.0,
    index_dtype: Any = np.int32,
) -> sp.csr_array:
    """The 7-point Dirichlet Laplacian on an m x m x m grid, ``sum_d weights[d] * L_d - shift * I``.

    Unequal weights split the multiplicities; a shift inside the spectrum makes it indefinite.
    """
    lap = _laplacian_1d(m)
    eye = sp.identity(m, format="csr")
    a = (
        weights[0] * sp.kron(sp.kron(lap, eye), eye)
        + weights[1] * sp.kron(sp.kron(eye, lap), eye)
        + weights[2] * sp.kron(sp.kron(eye, eye), lap)
    )
    if shift:
        a = a - shift * sp.identity(m**3)
    a = sp.csr_array(a)
    a.sum_duplicates()
    a.indices = a.indices.astype(index_dtype)
    a.indptr = a.indptr.astype(index_dtype)
    return a


def laplacian_3d_eigenvalues(
    m: int, *, weights: tuple[float, float, float] = (1.0, 1.0, 1.0), shift: float = 0.0
) -> np.ndarray:
    """All eigenvalues of `laplacian_3d`, ascending: sums of ``w_d (2 - 2 cos(pi j / (m + 1)))``."""
    one = 2.0 - 2.0 * np.cos(np.pi * np.arange(1, m + 1) / (m + 1))
    total = (
        weights[0] * one[:, None, None]
        + weights[1] * one[None, :, None]
        + weights[2] * one[None, None, :]
    )
    return np.sort(total.ravel()) - shift


def random_symmetric(n: int, nnz_per_row: int = 16, *, rng: Any = None) -> sp.csr_array:
    """A random sparse symmetric matrix with about ``nnz_per_row`` entries per row (N(0,1) values)."""
    gen = as_generator(rng)
    half = n * nnz_per_row // 2
    rows = gen.integers(0, n, size=half)
    cols = gen.integers(0, n, size=half)
    vals = gen.standard_normal(half)
    upper = sp.coo_array((vals, (rows, cols)), shape=(n, n))
    a = sp.csr_array(upper + upper.T)
    a.sum_duplicates()
    return a


def lecture_loss(w: np.ndarray) -> float:
    """The lecture's one-neuron network: L(w1, w2) = (1 - w1 w2)^2."""
    return float((1.0 - w[0] * w[1]) ** 2)
