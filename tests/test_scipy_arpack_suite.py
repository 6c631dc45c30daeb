"""SciPy's own eigsh tests (standard real symmetric cases) with hessx.eigsh swapped in.

The test module ships with SciPy; we import it and replace its ``eigsh`` by
ours, so these are SciPy's assertions, unmodified.
"""

import pytest

import hessx

arpack_tests = pytest.importorskip("scipy.sparse.linalg._eigen.arpack.tests.test_arpack")

import inspect  # noqa: E402

import numpy as np  # noqa: E402
from scipy.sparse import csr_array  # noqa: E402
from scipy.sparse.linalg import aslinearoperator  # noqa: E402

if "D" not in inspect.signature(arpack_tests.test_symmetric_modes).parameters:
    # SciPy < 1.16 loops over every case inside one test, shift-invert modes
    # included (which hessx.eigsh refuses): its tests cannot be reused as they are.
    pytest.skip("SciPy's own eigsh tests are reused from SciPy >= 1.16", allow_module_level=True)

REAL_CASES = arpack_tests.SymmetricParams().real_test_cases
STANDARD = [d for d in REAL_CASES if "bmat" not in d]


@pytest.fixture(autouse=True)
def swap_in_hessx(monkeypatch):
    monkeypatch.setattr(arpack_tests, "eigsh", hessx.eigsh)


@pytest.mark.parametrize("mattype", [csr_array, aslinearoperator, np.asarray])
@pytest.mark.parametrize("which", ["LM", "SM", "LA", "SA", "BE"])
@pytest.mark.parametrize("typ", ["f", "d"])
@pytest.mark.parametrize("D", STANDARD)
def test_symmetric_modes(D, typ, which, mattype):
    arpack_tests.test_symmetric_modes(D, typ, which, mattype, None, "normal")


@pytest.mark.parametrize("typ", ["f", "d"])
@pytest.mark.parametrize("D", STANDARD)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_symmetric_starting_vector(k, D, typ):
    arpack_tests.test_symmetric_starting_vector(k, D, typ)


def test_symmetric_no_convergence():
    arpack_tests.test_symmetric_no_convergence()


def test_reentering_and_threads():
    # A LinearOperator whose matvec itself calls eigsh must not deadlock or crash.
    from scipy.sparse import diags_array
    from scipy.sparse.linalg import LinearOperator

    inner = diags_array([1.0, -2.0, 1.0], offsets=[-1, 0, 1], shape=(50, 50))

    def matvec(x):
        w, v = hessx.eigsh(inner, k=1, rng=0)
        return x * abs(w[0])

    A = LinearOperator(matvec=matvec, dtype=float, shape=(50, 50))
    w = hessx.eigsh(A, k=1, rng=0, return_eigenvectors=False)
    assert np.isfinite(w).all()
