"""eigsh / lanczos against NumPy eigh, analytic spectra and SciPy eigsh."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from conftest import random_symmetric_dense

import hessx
from hessx.problems import laplacian_3d, laplacian_3d_eigenvalues, random_symmetric

WHICH = ["LA", "SA", "LM", "SM", "BE"]


def expected(w_all, k, which):
    w_all = np.sort(w_all)
    if which == "LA":
        return w_all[-k:]
    if which == "SA":
        return w_all[:k]
    if which == "LM":
        return np.sort(w_all[np.argsort(np.abs(w_all))[-k:]])
    if which == "SM":
        return np.sort(w_all[np.argsort(np.abs(w_all))[:k]])
    return np.sort(np.concatenate([w_all[: k // 2], w_all[len(w_all) - (k - k // 2) :]]))


def check_pairs(A_dense, w, v, tol, orth_tol=1e-10):
    scale = np.abs(A_dense).sum(axis=1).max()
    assert np.linalg.norm(A_dense @ v - v * w) <= tol * scale
    np.testing.assert_allclose(v.T @ v, np.eye(v.shape[1]), atol=orth_tol)


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_random_against_numpy(which, dtype, rng):
    M = random_symmetric_dense(200, rng, dtype)
    w_all = np.linalg.eigvalsh(M.astype(np.float64))
    w, v = hessx.eigsh(M, k=5, which=which, rng=1)
    assert w.dtype == dtype and v.shape == (200, 5)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(w, expected(w_all, 5, which), rtol=rtol, atol=rtol)
    f32 = dtype == np.float32
    check_pairs(
        M.astype(np.float64),
        w.astype(np.float64),
        v.astype(np.float64),
        1e-4 if f32 else 1e-9,
        1e-6 if f32 else 1e-10,
    )
    assert np.all(np.diff(w) >= 0)  # ascending, as SciPy


@pytest.mark.parametrize("which", WHICH)
def test_sparse_random_against_numpy(which, rng):
    A = random_symmetric(600, 8, rng=rng)
    w_all = np.linalg.eigvalsh(A.toarray())
    # Smallest magnitude is interior for this matrix: without shift-invert it
    # needs a large subspace (SciPy's ARPACK does not converge at default ncv either).
    ncv = 200 if which == "SM" else None
    w, v = hessx.eigsh(A, k=6, which=which, ncv=ncv, rng=2)
    np.testing.assert_allclose(w, expected(w_all, 6, which), rtol=1e-9, atol=1e-9)
    check_pairs(A.toarray(), w, v, 1e-8)


@pytest.mark.parametrize("which", ["LA", "SA", "BE", "LM", "SM"])
def test_shifted_anisotropic_laplacian_analytic(which):
    m, weights, shift = 14, (1.0, 1.37, 0.71), 3.1
    A = laplacian_3d(m, weights=weights, shift=shift)
    w_all = laplacian_3d_eigenvalues(m, weights=weights, shift=shift)
    # SM is interior here: give it the larger subspace it needs without shift-invert.
    ncv = 150 if which == "SM" else None
    res = hessx.lanczos(A, k=4, which=which, tol=1e-12, ncv=ncv, rng=3)
    assert res.all_converged
    np.testing.assert_allclose(res.eigenvalues, expected(w_all, 4, which), rtol=1e-9, atol=1e-9)
    assert np.all(res.residuals < 1e-8)
    assert res.n_matvec > 0 and res.ncv >= 9


def test_agrees_with_scipy_eigsh(rng):
    A = laplacian_3d(20, weights=(1.0, 1.2, 1.45), shift=2.0)
    v0 = rng.standard_normal(A.shape[0])
    for which in ("LA", "SA", "BE"):
        w_ref = spla.eigsh(A, k=6, which=which, v0=v0, tol=1e-10, return_eigenvectors=False)
        w = hessx.eigsh(A, k=6, which=which, v0=v0, tol=1e-10, return_eigenvectors=False)
        np.testing.assert_allclose(np.sort(w), np.sort(w_ref), rtol=1e-9, atol=1e-9)


def test_lanczos_result_fields(rng):
    M = np.diag(np.arange(-10.0, 30.0))
    res = hessx.lanczos(M, k=2, rng=0)
    np.testing.assert_allclose(res.eigenvalues, [-10.0, 29.0], atol=1e-9)
    assert res.eigenvectors.shape == (40, 2)
    assert res.converged.dtype == bool and res.converged.all()
    assert res.residuals.shape == (2,)
    # Residuals are true residuals of the returned pairs.
    true_res = np.linalg.norm(M @ res.eigenvectors - res.eigenvectors * res.eigenvalues, axis=0)
    assert np.all(true_res <= 1e-8)
    assert "LanczosResult" in repr(res)


def test_determinism_bit_for_bit():
    A = random_symmetric(2000, 10, rng=5)
    a = hessx.lanczos(A, k=4, which="BE", rng=42)
    b = hessx.lanczos(A, k=4, which="BE", rng=42)
    assert np.array_equal(a.eigenvalues, b.eigenvalues)
    assert np.array_equal(a.eigenvectors, b.eigenvectors)
    assert a.n_matvec == b.n_matvec


def test_identity_and_multiplicities():
    # Every vector is an eigenvector: Lanczos breaks down at once and must cope.
    w, v = hessx.eigsh(np.eye(30), k=4, which="LA", rng=0)
    np.testing.assert_allclose(w, np.ones(4), atol=1e-12)
    np.testing.assert_allclose(v.T @ v, np.eye(4), atol=1e-10)
    D = np.diag(np.repeat([1.0, 2.0, 3.0], 20))
    w = hessx.eigsh(D, k=5, which="LA", return_eigenvectors=False, rng=0)
    np.testing.assert_allclose(w, [3.0] * 5, atol=1e-10)


def test_forced_non_convergence_carries_partial_pairs():
    A = laplacian_3d(12)
    with pytest.raises(hessx.NoConvergence) as info:
        hessx.eigsh(A, k=6, which="SA", maxiter=1, ncv=8, tol=1e-14, rng=0)
    err = info.value
    assert isinstance(err, spla.ArpackNoConvergence)
    assert err.result is not None and not err.result.all_converged
    assert len(err.eigenvalues) == int(err.result.converged.sum())
    if len(err.eigenvalues):
        r = A @ err.eigenvectors - err.eigenvectors * err.eigenvalues
        assert np.linalg.norm(r) < 1e-8


def test_eigsh_k_at_least_n_uses_dense_like_scipy():
    M = np.diag([3.0, 1.0, 2.0])
    with pytest.warns(RuntimeWarning, match="k >= N"):
        w, v = hessx.eigsh(M, k=3)
    np.testing.assert_allclose(w, [1.0, 2.0, 3.0])
    with pytest.warns(RuntimeWarning), pytest.raises(TypeError, match="sparse"):
        hessx.eigsh(sp.csr_array(M), k=3)


def test_eigsh_errors():
    A = laplacian_3d(4)
    with pytest.raises(NotImplementedError, match="M must be None"):
        hessx.eigsh(A, M=sp.identity(64))
    with pytest.raises(NotImplementedError, match="sigma must be None"):
        hessx.eigsh(A, sigma=0.5)
    with pytest.raises(NotImplementedError, match="mode='normal'"):
        hessx.eigsh(A, mode="cayley")
    with pytest.raises(NotImplementedError, match="OPinv"):
        hessx.eigsh(A, OPinv=A)
    with pytest.raises(ValueError, match="which must be one of"):
        hessx.eigsh(A, which="XX")
    with pytest.raises(ValueError, match="k must be positive"):
        hessx.eigsh(A, k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        hessx.eigsh(A, k=2.5)
    with pytest.raises(ValueError, match="ncv must satisfy"):
        hessx.eigsh(A, k=6, ncv=6)
    with pytest.raises(ValueError, match="tol must be finite"):
        hessx.eigsh(A, tol=-1.0)
    with pytest.raises(ValueError, match="tol must be finite"):
        hessx.eigsh(A, tol=float("nan"))
    with pytest.raises(ValueError, match="v0 must have length 64"):
        hessx.eigsh(A, v0=np.ones(3))
    with pytest.raises(ValueError, match="v0 contains NaN"):
        hessx.eigsh(A, v0=np.full(64, np.nan))
    with pytest.raises(ValueError, match="v0 must not be the zero vector"):
        hessx.eigsh(A, v0=np.zeros(64))
    with pytest.raises(ValueError, match="maxiter must be positive"):
        hessx.eigsh(A, maxiter=0)
    with pytest.raises(ValueError, match="A must be square"):
        hessx.eigsh(sp.csr_array(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="complex"):
        hessx.eigsh(np.eye(3) * 1j, k=1)
    with pytest.raises(TypeError, match="rng must be"):
        hessx.eigsh(A, rng="seed")


def test_progress_bar_on_stderr(capfd):
    hessx.eigsh(laplacian_3d(10), k=3, which="LA", progress=True, rng=0)
    err = capfd.readouterr().err
    assert "lanczos" in err and "3/3" in err
    hessx.eigsh(laplacian_3d(10), k=3, which="LA", rng=0)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("storage", ["full", "upper"])
@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
def test_isotropic_laplacian_returns_every_copy(which, storage):
    # 12^3 isotropic Laplacian: its extreme eigenvalues repeat (multiplicity 1,
    # 3, 3, 3, 6, ... from permuted 1D indices). One Krylov space holds one
    # direction per eigenspace, so the copies need locking and a deflated
    # restart (ARPACK misses them).
    m = 12
    A = laplacian_3d(m)
    exact = laplacian_3d_eigenvalues(m)
    assert np.sum(np.isclose(exact, exact[-2])) == 3
    op = hessx.CsrOperator(A, storage=storage)
    for tol in (1e-8, 0):
        w, v = hessx.eigsh(op, k=6, which=which, tol=tol, rng=5)
        np.testing.assert_allclose(w, expected(exact, 6, which), rtol=1e-8, atol=1e-8)
        check_pairs(A.toarray(), w, v, 1e-7)


def test_anisotropic_shifted_laplacian_simple_eigenvalues_at_tol_zero():
    m, weights, shift = 11, (1.0, 1.21, 0.83), 2.2
    A = laplacian_3d(m, weights=weights, shift=shift)
    exact = laplacian_3d_eigenvalues(m, weights=weights, shift=shift)
    for which in ("LA", "SA", "BE", "LM"):
        w, v = hessx.eigsh(A, k=6, which=which, tol=0, rng=1)
        np.testing.assert_allclose(w, expected(exact, 6, which), rtol=1e-12, atol=1e-12)
        # Returned vectors orthonormal to rounding and residuals at tol.
        np.testing.assert_allclose(v.T @ v, np.eye(6), atol=1e-12)
        check_pairs(A.toarray(), w, v, 1e-12)


def test_check_multiplicities_is_a_bool_and_can_be_switched_off():
    A = laplacian_3d(8)
    with pytest.raises(TypeError, match="check_multiplicities must be a bool"):
        hessx.eigsh(A, k=2, check_multiplicities="yes")
    exact = laplacian_3d_eigenvalues(8)
    w = hessx.eigsh(A, k=4, which="LA", rng=0, return_eigenvectors=False)
    np.testing.assert_allclose(w, exact[-4:], rtol=1e-10)
    # Without the search the run may stop at one pair per eigenspace, but
    # what it returns are eigenvalues.
    res = hessx.lanczos(A, k=4, which="LA", rng=0, check_multiplicities=False)
    assert res.all_converged
    assert all(np.min(np.abs(exact - x)) < 1e-8 for x in res.eigenvalues)


@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
def test_float32_callable_matches_dense_eigh_with_copies_found(which, rng):
    """A float32 function's products are float32-accurate, so lanczos keeps
    its Krylov basis in float32 and hands the function its columns as they
    are: the extreme pairs must still agree with a dense solver to float32
    accuracy, a doubled extreme eigenvalue must come back twice, and the
    returned float64 vectors must be orthonormal to float64 rounding."""
    n = 500
    spectrum = np.linspace(-2.0, 3.0, n)
    spectrum[-2:] = spectrum[-1]
    spectrum[:2] = spectrum[0]
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = ((Q * spectrum) @ Q.T).astype(np.float32)
    M = (M + M.T) / 2
    seen = set()

    def matvec(x):
        seen.add(x.dtype)
        return M @ x

    op = hessx.CallableOperator(n, matvec, dtype=np.float32)
    res = hessx.lanczos(op, k=4, which=which, tol=1e-6, rng=3)
    assert seen == {np.dtype(np.float32)}
    w_all = np.linalg.eigvalsh(M.astype(np.float64))
    np.testing.assert_allclose(res.eigenvalues, expected(w_all, 4, which), atol=1e-5 * 3)
    v = res.eigenvectors.astype(np.float64)
    np.testing.assert_allclose(v.T @ v, np.eye(4), atol=1e-12)
    explicit = np.linalg.norm(M.astype(np.float64) @ v - v * res.eigenvalues, axis=0)
    assert np.all(explicit <= 1e-5 * 3), explicit
