"""hessx against SciPy, side by side in one run (pytest-benchmark).

Run: python3 -m pytest benches/bench_vs_scipy.py --benchmark-only
Each benchmark asserts that the two answers agree before it reports a time.
Products run with both storages: "full" borrows SciPy's CSR arrays, "upper"
keeps the upper triangle (about half the bytes); the solvers use
storage="auto" (the triangle for the banded Laplacian, full storage for the
random matrix, whose scattered entries make the symmetric product slower).
"""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from conftest import LARGE, MEDIUM, SMALL, CountingOperator, max_residual, orthogonality, size_label

import hessx
from hessx.problems import laplacian_3d, laplacian_3d_eigenvalues


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def _product(impl, A):
    """The callable `x -> A x` of one implementation, built outside the timing."""
    if impl == "scipy":
        return A.__matmul__
    op = hessx.CsrOperator(A, storage="upper" if impl == "hessx_upper" else "full")
    return op.__matmul__


def _matrix_bytes(impl, A):
    if impl == "hessx_upper":
        return hessx.CsrOperator(A, storage="upper").nbytes
    return A.data.nbytes + A.indices.nbytes + A.indptr.nbytes


IMPLS = ["scipy", "hessx", "hessx_upper"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("problem", LARGE)
def test_spmv(benchmark, problems, problem, impl):
    A = problems(problem, "large")
    label = f"{problem}_{size_label(A.shape[0])}"
    x = _x(A.shape[0])
    benchmark.group = f"spmv {label}"
    product = _product(impl, A)
    y = benchmark(product, x)
    np.testing.assert_allclose(y, A @ x, rtol=1e-12, atol=1e-12 * np.abs(y).max())
    # Bytes one product must move: the matrix as stored, x and y.
    nbytes = _matrix_bytes(impl, A) + 2 * x.nbytes
    benchmark.extra_info["matrix_bytes"] = _matrix_bytes(impl, A)
    benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("problem", LARGE)
def test_spmm8(benchmark, problems, problem, impl):
    A = problems(problem, "large")
    label = f"{problem}_{size_label(A.shape[0])}"
    X = np.random.default_rng(1).standard_normal((A.shape[0], 8))
    benchmark.group = f"spmm8 {label}"
    product = _product(impl, A)
    Y = benchmark(product, X)
    np.testing.assert_allclose(Y, A @ X, rtol=1e-12, atol=1e-12 * np.abs(Y).max())
    nbytes = _matrix_bytes(impl, A) + 2 * X.nbytes
    benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("problem", LARGE)
def test_copy_of_the_same_bytes(benchmark, problems, problem):
    """The physical floor for an SpMV: a NumPy copy of the bytes one
    upper-storage product moves (read them, write as many)."""
    A = problems(problem, "large")
    label = f"{problem}_{size_label(A.shape[0])}"
    nbytes = hessx.CsrOperator(A, storage="upper").nbytes + 2 * A.shape[0] * 8
    src = np.ones(nbytes // 16)
    dst = np.empty_like(src)
    benchmark.group = f"spmv {label}"
    benchmark(np.copyto, dst, src)
    benchmark.extra_info["bytes read"] = src.nbytes
    benchmark.extra_info["copy GB/s (read + write)"] = (
        2 * src.nbytes / benchmark.stats.stats.median / 1e9
    )


_REFERENCE: dict = {}


def _solve(impl, A, which, tol, v0, k=6, details=None):
    if impl == "scipy":
        counter = CountingOperator(A)
        w, v = spla.eigsh(counter, k=k, which=which, tol=tol, v0=v0)
        return w, v, counter.n_matvec
    op = hessx.CsrOperator(A, storage="auto")
    # "hessx_nocheck": without the search for missed copies (as ARPACK).
    check = impl != "hessx_nocheck"
    res = hessx.lanczos(op, k=k, which=which, tol=tol, v0=v0, check_multiplicities=check)
    assert res.all_converged
    if details is not None:
        details.update(ncv=res.ncv, n_restarts=res.n_restarts)
    return res.eigenvalues, res.eigenvectors, res.n_matvec


def _record(benchmark, A, w, v, n_matvec):
    benchmark.extra_info["n_matvec"] = n_matvec
    benchmark.extra_info["max_rel_residual"] = max_residual(A, w, v)
    benchmark.extra_info["orthogonality"] = orthogonality(v)


@pytest.mark.parametrize("impl", ["scipy", "hessx", "hessx_nocheck"])
@pytest.mark.parametrize("tol", [1e-8, 0.0])
@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
@pytest.mark.parametrize("problem", MEDIUM)
def test_eigsh_medium(benchmark, problems, problem, which, tol, impl):
    A = problems(problem, "medium")
    label = f"{problem}_{size_label(A.shape[0])}"
    v0 = _x(A.shape[0], 2)
    benchmark.group = f"eigsh k=6 {which} tol={tol} {label}"
    w, v, n_matvec = benchmark.pedantic(
        lambda: _solve(impl, A, which, tol, v0), rounds=1, iterations=1
    )
    key = (problem, which, tol)
    if key not in _REFERENCE:  # the SciPy run of the pair doubles as the reference
        _REFERENCE[key] = w if impl == "scipy" else _solve("scipy", A, which, tol, v0)[0]
    np.testing.assert_allclose(np.sort(w), np.sort(_REFERENCE[key]), rtol=1e-6, atol=1e-8)
    _record(benchmark, A, w, v, n_matvec)


@pytest.mark.parametrize("impl", ["scipy", "hessx"])
@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
@pytest.mark.parametrize("problem", LARGE)
def test_eigsh_large(benchmark, problems, problem, which, impl):
    """k=6, tol=1e-8 at 1M rows, SciPy uncapped, the same v0 for both."""
    A = problems(problem, "large")
    label = f"{problem}_{size_label(A.shape[0])}"
    v0 = _x(A.shape[0], 3)
    benchmark.group = f"eigsh k=6 {which} tol=1e-8 {label}"
    details: dict = {}
    w, v, n_matvec = benchmark.pedantic(
        lambda: _solve(impl, A, which, 1e-8, v0, details=details), rounds=1, iterations=1
    )
    key = (problem, which, "large")
    if key in _REFERENCE:
        np.testing.assert_allclose(np.sort(w), np.sort(_REFERENCE[key]), rtol=1e-6, atol=1e-8)
    else:
        _REFERENCE[key] = w
    _record(benchmark, A, w, v, n_matvec)
    if impl == "hessx":
        # The cost of one product, to split solve time into products and the rest.
        op = hessx.CsrOperator(A, storage="auto")
        benchmark.extra_info["storage"] = op.storage
        x = _x(A.shape[0], 4)
        op @ x
        start = time.perf_counter()
        for _ in range(10):
            op @ x
        spmv_s = (time.perf_counter() - start) / 10
        benchmark.extra_info["spmv_ms"] = spmv_s * 1e3
        products_s = n_matvec * spmv_s
        benchmark.extra_info["time_over_matvec_time"] = benchmark.stats.stats.median / products_s
        benchmark.extra_info["floor_over_matvec_time"] = (
            products_s + _vector_floor_s(A.shape[0], n_matvec, **details)
        ) / products_s


def _vector_floor_s(n, n_matvec, ncv, n_restarts, k=6):
    """The least time a thick-restart Lanczos run's vector work can take at
    this machine's copy bandwidth, measured now: per step, read v_{j-1} and
    v_j, read and rewrite the product w, write v_{j+1} (5 vectors); per
    restart, read the ncv basis vectors and write the k kept (the arrow
    step's sweep and every measurement of orthogonality come on top)."""
    vectors = 5 * n_matvec + n_restarts * (ncv + k)
    # Eight vectors each way, beyond any cache as the basis is, on two
    # threads as the solver's passes run (NumPy's copy releases the GIL).
    src = np.ones(8 * n)
    dst = np.empty_like(src)
    halves = [(dst[: 4 * n], src[: 4 * n]), (dst[4 * n :], src[4 * n :])]
    with ThreadPoolExecutor(2) as pool:

        def copy():
            list(pool.map(lambda pair: np.copyto(*pair), halves))

        copy()
        start = time.perf_counter()
        for _ in range(5):
            copy()
        copy_s = (time.perf_counter() - start) / 5
    return vectors * copy_s / 16


M_ISOTROPIC = 16 if SMALL else 40


@pytest.mark.parametrize("impl", ["scipy", "hessx"])
@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
def test_eigsh_isotropic_multiplicities(benchmark, which, impl):
    """Isotropic 3D Laplacian: extreme eigenvalues of multiplicity 3 and 6.
    hessx must return the true extreme six; SciPy's count of them is recorded."""
    m = M_ISOTROPIC
    A = laplacian_3d(m)
    exact = laplacian_3d_eigenvalues(m)
    v0 = _x(A.shape[0], 5)
    benchmark.group = f"eigsh k=6 {which} isotropic {m}^3"
    w, v, n_matvec = benchmark.pedantic(
        lambda: _solve(impl, A, which, 1e-8, v0), rounds=1, iterations=1
    )
    picked = {
        "LA": exact[-6:],
        "SA": exact[:6],
        "BE": np.concatenate([exact[:3], exact[-3:]]),
    }[which]
    correct = int(np.sum(np.isclose(np.sort(w), picked, rtol=1e-7, atol=1e-7)))
    benchmark.extra_info["true_extreme_found"] = f"{correct}/6"
    _record(benchmark, A, w, v, n_matvec)
    if impl == "hessx":
        assert correct == 6, (w, picked)
