"""Leaks and threads: repeated calls keep the resident memory flat; Python
threads sharing operators get the answers of serial calls; a SciPy matrix
mutated or dropped after an operator was built from it cannot crash the
process."""

import gc
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import hessx
from hessx.models import MLP
from hessx.problems import laplacian_3d, random_symmetric


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_repeated_calls_keep_memory_flat():
    A = laplacian_3d(12, weights=(1.0, 1.1, 1.2), shift=1.5)  # 1728 rows
    net = MLP([8, 16, 3], dtype=np.float64)
    rng = np.random.default_rng(0)
    params, X, y = net.init(rng=0), rng.standard_normal((20, 8)), rng.integers(0, 3, 20)
    v = rng.standard_normal(A.shape[0])
    p = rng.standard_normal(net.n_params)

    def round_of_calls():
        op = hessx.CsrOperator(A)
        op @ v
        hessx.eigsh(op, k=2, which="LA", tol=1e-6, return_eigenvectors=False, v0=v)
        hessx.spectral_density(op, n_probes=1, n_steps=8, rng=1)
        hessx.trace(A, n_probes=6, rng=1)
        H = net.hessian(params, X, y)
        H @ p
        net.hvp(params, X, y, p)
        hessx.CallableOperator(lambda x: 2.0 * x, n=50) @ np.ones(50)

    for _ in range(50):  # warm-up: pools, caches, allocator arenas
        round_of_calls()
    gc.collect()
    before = _rss_bytes()
    for _ in range(400):
        round_of_calls()
    gc.collect()
    grown = _rss_bytes() - before
    # 400 rounds of ~10 calls: a leak of even one 14 KB vector per call would
    # add ~45 MB.
    assert grown < 8 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB"


def test_threads_sharing_operators_get_the_serial_answers():
    A = random_symmetric(3000, 8, rng=3)
    op = hessx.CsrOperator(A)
    net = MLP([6, 12, 3], dtype=np.float64)
    rng = np.random.default_rng(1)
    params, X, y = net.init(rng=2), rng.standard_normal((30, 6)), rng.integers(0, 3, 30)
    H = net.hessian(params, X, y)
    v0 = rng.standard_normal(A.shape[0])
    p = rng.standard_normal(net.n_params)

    def work():
        w = hessx.eigsh(op, k=3, which="LA", tol=1e-10, v0=v0, return_eigenvectors=False)
        d = hessx.spectral_density(op, n_probes=2, n_steps=20, rng=4)
        return w, d.nodes, d.weights, H @ p, hessx.lanczos(H, k=1, which="LA", rng=5).eigenvalues

    serial = work()
    results: list = [None] * 8
    errors: list = []

    def run(i):
        try:
            results[i] = work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for result in results:
        for ours, reference in zip(result, serial, strict=True):
            np.testing.assert_array_equal(ours, reference)


def test_matrix_dropped_after_construction_stays_alive():
    A = laplacian_3d(6)
    op = hessx.CsrOperator(A)
    expected = A @ np.ones(A.shape[0])
    del A
    gc.collect()
    np.testing.assert_array_equal(op @ np.ones(op.shape[0]), expected)


def test_matrix_mutated_after_construction_cannot_crash():
    A = sp.csr_array(laplacian_3d(5))
    op = hessx.CsrOperator(A)
    x = np.ones(A.shape[0])
    A.data *= 2.0  # values: borrowed, so products follow them (documented)
    np.testing.assert_allclose(op @ x, A @ x)
    A.indices[3] = 10**6  # a column out of range: a clean error, never a crash
    with pytest.raises(ValueError, match="A"):
        op @ x
    A.indices[3] = -5
    with pytest.raises(ValueError, match="A"):
        hessx.eigsh(op, k=1, which="LA")
