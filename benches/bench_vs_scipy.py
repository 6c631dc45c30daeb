"""hessx against SciPy, side by side in one run (pytest-benchmark).

Run: python3 -m pytest benches/bench_vs_scipy.py --benchmark-only
Each benchmark asserts that the two answers agree before it reports a time.
"""

import time

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from conftest import CountingOperator, max_residual

import hessx


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("impl", ["scipy", "hessx"])
@pytest.mark.parametrize("problem", ["laplacian_1m", "random_1m"])
def test_spmv(benchmark, request, problem, impl):
    A = request.getfixturevalue(problem)
    x = _x(A.shape[0])
    benchmark.group = f"spmv {problem}"
    if impl == "scipy":
        y = benchmark(lambda: A @ x)
    else:
        op = hessx.CsrOperator(A)
        y = benchmark(lambda: op @ x)
    np.testing.assert_allclose(y, A @ x, rtol=1e-12, atol=1e-12)
    # bytes one product must move: values + indices + indptr + x + y
    nbytes = A.nnz * (A.data.itemsize + A.indices.itemsize) + A.indptr.nbytes + 2 * x.nbytes
    benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("impl", ["scipy", "hessx"])
@pytest.mark.parametrize("problem", ["laplacian_1m", "random_1m"])
def test_spmm8(benchmark, request, problem, impl):
    A = request.getfixturevalue(problem)
    X = np.random.default_rng(1).standard_normal((A.shape[0], 8))
    benchmark.group = f"spmm8 {problem}"
    if impl == "scipy":
        Y = benchmark(lambda: A @ X)
    else:
        op = hessx.CsrOperator(A)
        Y = benchmark(lambda: op @ X)
    np.testing.assert_allclose(Y, A @ X, rtol=1e-12, atol=1e-12)


_REFERENCE: dict = {}


def _solve(impl, A, which, tol, v0, budget_s=None):
    if impl == "scipy":
        counter = CountingOperator(A, budget_s)
        w, v = spla.eigsh(counter, k=6, which=which, tol=tol, v0=v0)
        return w, v, counter.n_matvec
    res = hessx.lanczos(hessx.CsrOperator(A), k=6, which=which, tol=tol, v0=v0)
    assert res.all_converged
    return res.eigenvalues, res.eigenvectors, res.n_matvec


@pytest.mark.parametrize("impl", ["scipy", "hessx"])
@pytest.mark.parametrize("tol", [1e-8, 0.0])
@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
@pytest.mark.parametrize("problem", ["laplacian_100k", "random_100k"])
def test_eigsh_100k(benchmark, request, problem, which, tol, impl):
    A = request.getfixturevalue(problem)
    v0 = _x(A.shape[0], 2)
    benchmark.group = f"eigsh k=6 {which} tol={tol} {problem}"
    w, v, n_matvec = benchmark.pedantic(
        lambda: _solve(impl, A, which, tol, v0), rounds=1, iterations=1
    )
    key = (problem, which, tol)
    if key not in _REFERENCE:  # the SciPy run of the pair doubles as the reference
        _REFERENCE[key] = w if impl == "scipy" else _solve("scipy", A, which, tol, v0)[0]
    np.testing.assert_allclose(np.sort(w), np.sort(_REFERENCE[key]), rtol=1e-6, atol=1e-8)
    benchmark.extra_info["n_matvec"] = n_matvec
    benchmark.extra_info["max_rel_residual"] = max_residual(A, w, v)


@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
@pytest.mark.parametrize("problem", ["laplacian_1m", "random_1m"])
def test_eigsh_1m(benchmark, request, problem, which):
    """hessx at 1M rows; SciPy gets the same problem with a 25 s budget."""
    A = request.getfixturevalue(problem)
    v0 = _x(A.shape[0], 3)
    benchmark.group = f"eigsh k=6 {which} tol=1e-8 {problem}"
    op = hessx.CsrOperator(A)
    res = benchmark.pedantic(
        lambda: hessx.lanczos(op, k=6, which=which, tol=1e-8, v0=v0), rounds=1, iterations=1
    )
    assert res.all_converged
    # The cost of one product, to split solve time into products and the rest.
    x = _x(A.shape[0], 4)
    start = time.perf_counter()
    for _ in range(10):
        op @ x
    spmv_s = (time.perf_counter() - start) / 10
    benchmark.extra_info["n_matvec"] = res.n_matvec
    benchmark.extra_info["spmv_ms"] = spmv_s * 1e3
    benchmark.extra_info["time_over_matvec_time"] = benchmark.stats.stats.median / (
        res.n_matvec * spmv_s
    )
    benchmark.extra_info["max_rel_residual"] = max_residual(A, res.eigenvalues, res.eigenvectors)
    start = time.perf_counter()
    try:
        w_ref, _, n_ref = _solve("scipy", A, which, 1e-8, v0, budget_s=25.0)
        benchmark.extra_info["scipy_s"] = time.perf_counter() - start
        benchmark.extra_info["scipy_n_matvec"] = n_ref
        np.testing.assert_allclose(np.sort(res.eigenvalues), np.sort(w_ref), rtol=1e-6, atol=1e-8)
    except TimeoutError as exc:
        benchmark.extra_info["scipy_s"] = f">25 ({exc})"


def test_memory_bandwidth(benchmark):
    """The physical limit for SpMV on this machine: a 2 x 128 MiB streaming copy (NumPy)."""
    src = np.ones(16 * 1024 * 1024)
    dst = np.empty_like(src)
    benchmark.group = "memory bandwidth"
    benchmark(np.copyto, dst, src)
    benchmark.extra_info["copy GB/s (read + write)"] = (
        2 * src.nbytes / benchmark.stats.stats.median / 1e9
    )
