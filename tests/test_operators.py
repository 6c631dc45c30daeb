"""Operators: products against NumPy/SciPy, zero-copy borrowing, validation messages."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_symmetric_dense
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import hessx
from hessx.problems import laplacian_3d, random_symmetric


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csr_products_match_scipy(dtype, index_dtype, rng):
    A = random_symmetric(3000, 12, rng=rng).astype(dtype)
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    op = hessx.CsrOperator(A)
    assert op.shape == A.shape and op.dtype == dtype
    x = rng.standard_normal(3000)
    X = rng.standard_normal((3000, 5))
    ref = A.astype(np.float64) @ x
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(op @ x, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_allclose(op.matmat(X), A.astype(np.float64) @ X, rtol=tol, atol=tol * 10)
    # LinearOperator protocol: matvec on (n, 1), adjoint is itself
    np.testing.assert_allclose(op.matvec(x[:, None]).ravel(), ref, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(op.H @ x, ref, rtol=tol, atol=tol * 10)


def test_csr_borrows_scipy_buffers_without_copy():
    A = laplacian_3d(8)
    op = hessx.CsrOperator(A)
    assert op.matrix is A
    assert np.shares_memory(op.matrix.data, A.data)
    assert np.shares_memory(op.matrix.indices, A.indices)


def test_csr_unsorted_indices_and_duplicates(rng):
    # hand-built CSR with unsorted column indices and duplicate (0,1)/(1,0) entries
    indptr = np.array([0, 3, 6, 6])
    indices = np.array([1, 0, 1, 0, 2, 0])
    data = np.array([1.0, 4.0, 2.0, 1.0, 3.0, 2.0])
    B = sp.csr_array((data, indices, indptr), shape=(3, 3))
    B_dense = B.toarray()
    # B is not symmetric (row 2 is empty): the check catches it
    assert not np.allclose(B_dense, B_dense.T)
    with pytest.raises(ValueError, match="not symmetric"):
        hessx.CsrOperator(B)
    op = hessx.CsrOperator(B, check_symmetric=False)
    x = rng.standard_normal(3)
    np.testing.assert_allclose(op @ x, B_dense @ x, rtol=1e-14)
    S = B + B.T  # symmetric with unsorted input
    np.testing.assert_allclose(hessx.CsrOperator(S) @ x, S.toarray() @ x, rtol=1e-14)


def test_csr_other_formats_and_integer_values():
    A = laplacian_3d(4)
    for fmt in ("coo", "csc", "lil", "dok"):
        B = A.asformat(fmt)
        op = hessx.CsrOperator(B)
        x = np.arange(64.0)
        np.testing.assert_allclose(op @ x, A @ x)
    I = sp.identity(5, dtype=np.int64, format="csr")  # noqa: E741
    assert hessx.CsrOperator(I).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_products(dtype, rng):
    M = random_symmetric_dense(300, rng, dtype)
    op = hessx.DenseOperator(M)
    x = rng.standard_normal(300)
    X = rng.standard_normal((300, 4))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(op @ x, M.astype(np.float64) @ x, rtol=tol, atol=tol)
    np.testing.assert_allclose(op @ X, M.astype(np.float64) @ X, rtol=tol, atol=tol)


def test_callable_operator_and_as_operator(rng):
    M = random_symmetric_dense(50, rng)
    calls = []

    def mv(x):
        calls.append(x.dtype)
        return M @ x

    op = hessx.CallableOperator(50, mv)
    x = rng.standard_normal(50)
    np.testing.assert_allclose(op @ x, M @ x, rtol=1e-13)
    assert calls == [np.float64]
    assert isinstance(hessx.as_operator(M), hessx.DenseOperator)
    assert isinstance(hessx.as_operator(sp.csr_array(M)), hessx.CsrOperator)
    lin = hessx.as_operator(aslinearoperator(M))
    assert isinstance(lin, hessx.CallableOperator)
    np.testing.assert_allclose(lin @ x, M @ x, rtol=1e-13)
    f = hessx.as_operator(lambda v: M @ v, n=50)
    np.testing.assert_allclose(f @ x, M @ x, rtol=1e-13)
    assert hessx.as_operator(op) is op
    assert isinstance(op, LinearOperator)


def test_callable_exception_reaches_caller_unchanged():
    class Boom(RuntimeError):
        pass

    def mv(x):
        raise Boom("from inside the user's HVP")

    op = hessx.CallableOperator(10, mv)
    with pytest.raises(Boom, match="user's HVP"):
        op @ np.ones(10)
    with pytest.raises(Boom, match="user's HVP"):
        hessx.eigsh(op, k=2)


def test_callable_bad_results_are_value_errors():
    op = hessx.CallableOperator(10, lambda x: np.ones(9))
    with pytest.raises(ValueError, match=r"matvec\(x\) returned an array of shape \(9,\)"):
        op @ np.ones(10)
    op = hessx.CallableOperator(10, lambda x: np.full(10, np.nan))
    with pytest.raises(ValueError, match=r"matvec\(x\) returned NaN"):
        hessx.eigsh(op, k=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver", ["matvec", "eigsh", "spectral_density", "matmat"])
def test_callable_sees_its_dtype_and_its_bad_values_are_found(dtype, solver):
    """The function gets its declared dtype; a float32 or float64 result is
    widened and checked for NaN/Inf on the compiled side, which names the
    first bad index; integer results are accepted as float64."""
    n = 40
    d = np.linspace(1.0, 2.0, n)
    seen = set()

    def product(x, bad_at=None):
        seen.add(x.dtype)
        y = (d.reshape(-1, *([1] * (x.ndim - 1))) * x).astype(dtype)
        if bad_at is not None:
            y.reshape(-1)[bad_at] = np.inf
        return y

    def run(op):
        if solver == "matvec":
            return op @ np.ones(n)
        if solver == "matmat":
            return op.matmat(np.ones((n, 3)))
        if solver == "eigsh":
            return hessx.eigsh(op, k=2, which="LA", return_eigenvectors=False, rng=0)
        return hessx.spectral_density(op, n_probes=2, n_steps=8, rng=0)

    good = hessx.CallableOperator(product, n=n, matmat=product, dtype=dtype)
    result = run(good)
    assert seen == {np.dtype(dtype)}
    if solver == "matvec":
        np.testing.assert_allclose(result, d.astype(dtype), rtol=1e-6)
    if solver == "eigsh":
        np.testing.assert_allclose(result, d[-2:], rtol=1e-5)
    bad = hessx.CallableOperator(
        lambda x: product(x, 7), n=n, matmat=lambda x: product(x, 7), dtype=dtype
    )
    name = "matmat" if solver == "matmat" else "matvec"
    with pytest.raises(
        ValueError, match=rf"{name}\(x\) returned NaN or Inf \(first at flat index 7\)"
    ):
        run(bad)
    integers = hessx.CallableOperator(lambda x: np.round(x).astype(np.int64), n=n, dtype=dtype)
    np.testing.assert_array_equal(integers @ np.full(n, 2.0), np.full(n, 2.0))


def test_operator_errors():
    with pytest.raises(ValueError, match="A must be square"):
        hessx.CsrOperator(sp.csr_array(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="A must be a SciPy sparse"):
        hessx.CsrOperator(np.eye(3))
    with pytest.raises(ValueError, match="not symmetric"):
        hessx.CsrOperator(sp.csr_array(np.array([[1.0, 2.0], [0.0, 1.0]])))
    bad = sp.csr_array(np.eye(3))
    bad.data[1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        hessx.CsrOperator(bad)
    with pytest.raises(TypeError, match="complex"):
        hessx.CsrOperator(sp.csr_array(np.eye(3) * 1j))
    with pytest.raises(ValueError, match="M must be a square"):
        hessx.DenseOperator(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not symmetric"):
        hessx.DenseOperator(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        hessx.DenseOperator(np.array([[1.0, np.inf], [np.inf, 1.0]]))
    with pytest.raises(TypeError, match="matvec must be callable"):
        hessx.CallableOperator(3, "not a function")
    with pytest.raises(ValueError, match="n must be positive"):
        hessx.CallableOperator(0, lambda x: x)
    with pytest.raises(TypeError, match="n is required"):
        hessx.as_operator(lambda x: x)
    with pytest.raises(TypeError, match="A must be an ndarray"):
        hessx.as_operator("matrix")
    op = hessx.CsrOperator(laplacian_3d(3))
    with pytest.raises(ValueError, match="dimension mismatch|length"):
        op @ np.ones(5)


def test_malformed_csr_structure_is_rejected():
    A = sp.csr_array(np.eye(4))
    A.indices = A.indices.copy()
    A.indices[2] = 7  # out of range
    with pytest.raises(ValueError, match="A.indices"):
        hessx.CsrOperator(A)
    B = sp.csr_array(np.eye(4))
    B.indptr = np.array([0, 2, 1, 3, 4], dtype=B.indptr.dtype)
    with pytest.raises(ValueError, match="A.indptr"):
        hessx.CsrOperator(B, check_symmetric=False)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    density=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
    use_f32=st.booleans(),
    ncols=st.integers(1, 9),
)
def test_csr_property_matches_dense(n, density, seed, use_f32, ncols):
    gen = np.random.default_rng(seed)
    M = sp.random_array((n, n), density=density, rng=gen)
    M = sp.csr_array(M + M.T)
    if use_f32:
        M = M.astype(np.float32)
    op = hessx.CsrOperator(M)
    dense = M.toarray().astype(np.float64)
    X = gen.standard_normal((n, ncols))
    tol = 1e-5 if use_f32 else 1e-12
    np.testing.assert_allclose(op @ X, dense @ X, rtol=tol, atol=tol)
    np.testing.assert_allclose(op @ X[:, 0], dense @ X[:, 0], rtol=tol, atol=tol)


def test_threads_setting():
    before = hessx.get_num_threads()
    try:
        hessx.set_num_threads(1)
        assert hessx.get_num_threads() == 1
        A = laplacian_3d(10)
        x = np.ones(1000)
        np.testing.assert_allclose(hessx.CsrOperator(A) @ x, A @ x)
    finally:
        hessx.set_num_threads(before)
    with pytest.raises(ValueError, match="n must be >= 1"):
        hessx.set_num_threads(0)


def test_callable_operator_takes_both_spellings(rng):
    A = random_symmetric_dense(12, rng)
    x = rng.standard_normal(12)
    spellings = [
        hessx.CallableOperator(12, lambda v: A @ v),
        hessx.CallableOperator(lambda v: A @ v, 12),
        hessx.CallableOperator(lambda v: A @ v, n=12),
        hessx.CallableOperator(n=12, matvec=lambda v: A @ v),
        hessx.as_operator(lambda v: A @ v, n=12),
    ]
    for op in spellings:
        np.testing.assert_allclose(op @ x, A @ x, rtol=1e-14)
    with pytest.raises(TypeError, match="n \\(the dimension\\) is required"):
        hessx.CallableOperator(lambda v: v)
    with pytest.raises(TypeError, match="matvec is required"):
        hessx.CallableOperator(12)
    with pytest.raises(TypeError, match="n given twice"):
        hessx.CallableOperator(12, lambda v: v, n=12)
    with pytest.raises(TypeError, match="n must be an int"):
        hessx.CallableOperator(lambda v: v, n=2.5)


# --- half storage (storage="upper") ------------------------------------------


def _with_diagonal(A, rng):
    n = A.shape[0]
    return sp.csr_array(A + sp.diags_array(rng.standard_normal(n)))


def _row_scale(A, X):
    """|A| @ |X|: the scale a product's rounding is relative to, per entry."""
    return abs(A).astype(np.float64) @ np.abs(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_upper_storage_products_match_full_storage(dtype, index_dtype, rng):
    A = _with_diagonal(random_symmetric(3000, 12, rng=rng), rng).astype(dtype)
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    full = hessx.CsrOperator(A)
    half = hessx.CsrOperator(A, storage="upper")
    assert half.storage == "upper" and full.storage == "full"
    assert half.shape == A.shape and half.dtype == dtype
    X = rng.standard_normal((3000, 13))
    # float64: rounding of two summation orders; float32: duplicates were
    # summed once and rounded to float32 in the triangle.
    tol = 1e-14 if dtype == np.float64 else 1e-6
    for width in (1, 2, 8, 13):
        Xw = np.ascontiguousarray(X[:, :width])
        diff = np.abs(half @ Xw - full @ Xw)
        assert np.all(diff <= tol * _row_scale(A, Xw)), width
    x = X[:, 0]
    assert np.all(np.abs(half @ x - full @ x) <= tol * _row_scale(A, x))


def test_upper_storage_holds_at_most_055_of_the_bytes(rng):
    for A in (
        laplacian_3d(20, weights=(1.0, 1.1, 1.2), shift=1.5),
        random_symmetric(20000, 16, rng=rng),
    ):
        full = hessx.CsrOperator(A)
        half = hessx.CsrOperator(A, storage="upper")
        assert full.nbytes == A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
        assert half.nbytes <= 0.55 * full.nbytes, half.nbytes / full.nbytes


def test_upper_storage_unsorted_duplicates_and_the_matrix_back(rng):
    indptr = np.array([0, 3, 6, 6])
    indices = np.array([1, 0, 1, 0, 2, 0])
    data = np.array([1.0, 4.0, 2.0, 1.0, 3.0, 2.0])
    B = sp.csr_array((data, indices, indptr), shape=(3, 3))
    S = B + B.T  # symmetric, unsorted rows, duplicates
    half = hessx.CsrOperator(S, storage="upper")
    x = rng.standard_normal(3)
    np.testing.assert_allclose(half @ x, S.toarray() @ x, rtol=1e-14)
    np.testing.assert_array_equal(half.matrix.toarray(), S.toarray())
    assert half.nnz == sp.csr_array(S.toarray()).nnz
    # Unchecked and not symmetric: the symmetric matrix of A's upper triangle.
    loose = hessx.CsrOperator(B, check_symmetric=False, storage="upper")
    U = np.triu(B.toarray())
    np.testing.assert_allclose(loose @ x, (U + np.triu(U, 1).T) @ x, rtol=1e-14)


def test_upper_storage_products_are_reproducible_for_a_thread_count():
    A = laplacian_3d(40, weights=(1.0, 1.3, 0.7), shift=0.3)
    x = np.random.default_rng(3).standard_normal(A.shape[0])
    half = hessx.CsrOperator(A, storage="upper")
    first = half @ x
    assert np.array_equal(first, half @ x)
    before = hessx.get_num_threads()
    try:
        hessx.set_num_threads(1)
        one = hessx.CsrOperator(A, storage="upper")
        np.testing.assert_allclose(one @ x, first, rtol=1e-14, atol=1e-14 * np.abs(first).max())
        assert np.array_equal(one @ x, one @ x)
    finally:
        hessx.set_num_threads(before)


def test_auto_storage_keeps_the_triangle_only_for_banded_matrices(rng):
    banded = hessx.CsrOperator(laplacian_3d(40), storage="auto")
    assert banded.storage == "upper"
    R = random_symmetric(200_000, 16, rng=rng)
    scattered = hessx.CsrOperator(R, storage="auto")
    assert scattered.storage == "full"
    assert np.shares_memory(scattered.matrix.data, R.data)
    x = rng.standard_normal(R.shape[0])
    np.testing.assert_allclose(scattered @ x, R @ x, rtol=1e-12, atol=1e-12)


def test_upper_storage_errors_name_the_argument():
    A = laplacian_3d(3)
    with pytest.raises(ValueError, match="storage must be 'full', 'upper' or 'auto'"):
        hessx.CsrOperator(A, storage="lower")
    with pytest.raises(TypeError, match="storage must be a str"):
        hessx.CsrOperator(A, storage=1)
    with pytest.raises(ValueError, match="not symmetric"):
        hessx.CsrOperator(sp.csr_array(np.array([[1.0, 2.0], [0.0, 1.0]])), storage="upper")
    bad = sp.csr_array(np.eye(3))
    bad.data[1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        hessx.CsrOperator(bad, storage="upper")
    with pytest.raises(ValueError, match="dimension mismatch|length"):
        hessx.CsrOperator(A, storage="upper") @ np.ones(5)


def test_every_solver_accepts_upper_storage():
    m, weights, shift = 12, (1.0, 1.37, 0.71), 3.1
    A = laplacian_3d(m, weights=weights, shift=shift)
    half = hessx.CsrOperator(A, storage="upper")
    exact = np.sort(np.linalg.eigvalsh(A.toarray()))
    w, v = hessx.eigsh(half, k=4, which="BE", rng=0)
    np.testing.assert_allclose(w, np.concatenate([exact[:2], exact[-2:]]), rtol=1e-10)
    res = hessx.lanczos(half, k=2, which="SA", rng=0)
    np.testing.assert_allclose(res.eigenvalues, exact[:2], rtol=1e-9)
    density = hessx.spectral_density(half, n_probes=4, n_steps=30, rng=0)
    value, stderr = density.fraction_positive()
    assert abs(value - np.mean(exact > 0)) <= 3 * stderr + 1e-3
    estimate, _ = hessx.trace(half, n_probes=40, rng=0)
    assert abs(estimate - A.diagonal().sum()) <= 0.05 * abs(A.diagonal().sum())
    assert hessx.classify(half, rng=0).kind == "saddle"
    ratio = hessx.minimum_ratio(half, method="inertia", tol=1e-6)
    assert ratio.value == pytest.approx(np.mean(exact > 1e-6))


NOT_SYMMETRIC = np.array([[1.0, -0.258572545473924], [0.0, 1.0]])


@pytest.mark.parametrize(
    "call",
    [
        lambda A, **kw: hessx.eigsh(A, k=1, **kw),
        lambda A, **kw: hessx.lanczos(A, k=1, **kw),
        lambda A, **kw: hessx.classify(A, **kw),
        lambda A, **kw: hessx.minimum_ratio(A, **kw),
        lambda A, **kw: hessx.spectral_density(A, n_probes=2, rng=0, **kw),
        lambda A, **kw: hessx.trace(A, n_probes=4, rng=0, **kw),
        lambda A, **kw: hessx.as_operator(A, **kw),
    ],
    ids=[
        "eigsh",
        "lanczos",
        "classify",
        "minimum_ratio",
        "spectral_density",
        "trace",
        "as_operator",
    ],
)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_a_non_symmetric_matrix_is_reported_under_the_callers_name(call, sparse):
    """Every function that takes a matrix names it A (not the DenseOperator's
    M), writes numbers as Python does, and accepts the check_symmetric=False
    its message suggests."""
    A = sp.csr_array(NOT_SYMMETRIC) if sparse else NOT_SYMMETRIC
    with pytest.raises(ValueError) as caught:
        call(A)
    message = str(caught.value)
    assert message.startswith("A is not symmetric: A[0, 1] = -0.258572545473924 but A[1, 0] = ")
    assert "check_symmetric=False" in message
    assert "M" not in message and "e-1" not in message and "e0" not in message
    call(A, check_symmetric=False)


def test_check_symmetric_must_be_a_bool():
    with pytest.raises(TypeError, match="check_symmetric"):
        hessx.as_operator(np.eye(3), check_symmetric="no")
