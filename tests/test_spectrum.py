"""spectral_density, trace and minimum_ratio's inertia/SLQ methods, against known spectra."""

import math
import multiprocessing
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

import hessx
from hessx import _hessx
from hessx.problems import laplacian_3d, laplacian_3d_eigenvalues, random_symmetric

WEIGHTS, SHIFT = (1.0, 1.3, 0.7), 2.5


def planted(n, seed=0):
    """60 % zeros (with 1e-12 noise), 25 % in [0.1, 1.1], 15 % in [-0.6, -0.1]."""
    rng = np.random.default_rng(seed)
    k0, k1 = int(0.6 * n), int(0.85 * n)
    d = np.empty(n)
    d[:k0] = rng.uniform(-1e-12, 1e-12, k0)
    d[k0:k1] = 0.1 + rng.uniform(0, 1, k1 - k0) ** 2
    d[k1:] = -0.1 - 0.5 * rng.uniform(0, 1, n - k1)
    return d


def diag_matvec(x):
    """A picklable matrix-free operator: diag(planted(500)) @ x."""
    return _PLANTED_500 * x


_PLANTED_500 = planted(500, 1)


def failing_matvec(x):
    raise ArithmeticError("boom from the worker")


# --- densities ---------------------------------------------------------------


def test_evaluate_integrates_to_one_and_shapes():
    A = laplacian_3d(8, weights=WEIGHTS, shift=SHIFT)
    d = hessx.spectral_density(A, n_probes=6, n_steps=30, rng=0)
    assert d.nodes.shape == d.weights.shape == d.residuals.shape == (6, 30)
    assert d.n == 512 and d.n_probes == 6 and d.n_steps == 30 and d.probe == "rademacher"
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-12)
    w = laplacian_3d_eigenvalues(8, weights=WEIGHTS, shift=SHIFT)
    assert d.nodes.min() >= w[0] - 1e-9 and d.nodes.max() <= w[-1] + 1e-9
    x = np.linspace(w[0] - 3, w[-1] + 3, 4001)
    for sigma in (None, 0.05, 0.5):
        assert _integral(d.evaluate(x, sigma), x) == pytest.approx(1.0, abs=1e-6)
    assert d.default_sigma == pytest.approx((d.nodes.max() - d.nodes.min()) / 30)
    # The smoothed density follows the true one (smoothed alike).
    sigma = 0.4
    exact = np.exp(-0.5 * ((x[:, None] - w[None, :]) / sigma) ** 2).sum(1)
    exact /= len(w) * sigma * math.sqrt(2 * math.pi)
    assert np.max(np.abs(d.evaluate(x, sigma) - exact)) < 0.25 * exact.max()


def test_breakdown_pads_rows():
    d = hessx.spectral_density(np.diag([-1.0, 0.5, 2.0] * 20), n_probes=3, n_steps=10, rng=1)
    assert d.nodes.shape == (3, 10)
    # Three distinct eigenvalues: three nodes, then padding at the last with weight 0.
    np.testing.assert_allclose(d.nodes[:, :3], [[-1.0, 0.5, 2.0]] * 3, atol=1e-12)
    assert np.all(d.nodes[:, 3:] == d.nodes[:, 2:3]) and np.all(d.weights[:, 3:] == 0)
    value, stderr = d.fraction_positive()
    assert value == pytest.approx(2 / 3) and stderr < 1e-12


def test_counts_cover_the_analytic_laplacian():
    m = 12
    A = laplacian_3d(m, weights=WEIGHTS, shift=SHIFT)
    w = laplacian_3d_eigenvalues(m, weights=WEIGHTS, shift=SHIFT)
    covered, runs = 0, 0
    for seed in range(8):
        d = hessx.spectral_density(A, n_probes=20, n_steps=40, rng=seed)
        for lo, hi in [(0.0, math.inf), (-0.5, 0.5), (-math.inf, -1.0)]:
            truth = np.mean((w >= lo) & (w <= hi))
            value, stderr = d.fraction(lo, hi)
            assert stderr < 0.06
            covered += abs(value - truth) <= 2 * stderr
            runs += 1
    assert covered >= 0.85 * runs


def test_counts_cover_a_planted_zero_cluster():
    d_true = planted(3000, 3)
    tol = 1e-3
    truths = {
        "below": np.mean(d_true < -tol),
        "within": np.mean(np.abs(d_true) <= tol),
        "above": np.mean(d_true > tol),
    }
    covered, runs = 0, 0
    A = sp.diags_array(d_true).tocsr()
    for seed in range(5):
        d = hessx.spectral_density(A, n_probes=24, rng=seed)
        fr = d.fractions(tol)
        for name, truth in truths.items():
            value, stderr = getattr(fr, name)
            assert stderr < 0.05
            covered += abs(value - truth) <= 2 * stderr
            runs += 1
        assert d.fraction_positive(tol) == fr.above
    assert covered >= 0.85 * runs
    # Right at the cluster (tol below its Ritz residuals) the bar widens honestly.
    d = hessx.spectral_density(A, n_probes=10, rng=0)
    value, stderr = d.fraction_positive(1e-9)
    assert abs(value - np.mean(d_true > 1e-9)) <= 2 * stderr


def test_determinism_and_probe_kinds():
    A = laplacian_3d(7, shift=3.0)
    a = hessx.spectral_density(A, n_probes=4, n_steps=20, rng=5)
    b = hessx.spectral_density(A, n_probes=4, n_steps=20, rng=5)
    c = hessx.spectral_density(A, n_probes=4, n_steps=20, rng=6)
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.fraction_positive() == b.fraction_positive()
    assert not np.array_equal(a.weights, c.weights)
    g = hessx.spectral_density(A, n_probes=4, n_steps=20, rng=5, probe="gaussian")
    assert g.probe == "gaussian" and not np.array_equal(g.weights, a.weights)
    # A Generator is consumed like SciPy's: same state, same result.
    r1 = hessx.spectral_density(A, n_probes=2, n_steps=5, rng=np.random.default_rng(1))
    r2 = hessx.spectral_density(A, n_probes=2, n_steps=5, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(r1.nodes, r2.nodes)


def test_default_steps_fit_small_operators():
    d = hessx.spectral_density(np.diag(np.arange(1.0, 11.0)), n_probes=2, rng=0)
    assert d.n_steps == 10
    assert d.fraction(2.5, 5.5) == pytest.approx((0.3, 0.0), abs=1e-12)


def test_plot_renders_with_agg(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = hessx.spectral_density(laplacian_3d(6, shift=2.0), n_probes=3, n_steps=20, rng=0)
    fig, ax = plt.subplots()
    assert d.plot(ax) is ax
    assert len(ax.lines) == 1
    d.plot(ax, log=True, sigma=0.1, color="k")
    assert ax.get_yscale() == "log"
    fig.savefig(tmp_path / "density.png")
    assert (tmp_path / "density.png").stat().st_size > 1000
    plt.close(fig)


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    d = hessx.spectral_density(np.diag([1.0, 2.0, 3.0]), n_probes=1, rng=0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install hessx\[plot\]"):
        d.plot()


# --- trace ---------------------------------------------------------------------


def test_trace_against_exact():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    values = 1.0 / np.arange(1, 301) ** 2
    A = (Q * values) @ Q.T
    A = (A + A.T) / 2
    exact = float(values.sum())
    errors = {"hutch++": [], "hutchinson": []}
    for seed in range(10):
        for method in errors:
            est, err = hessx.trace(A, n_probes=60, rng=seed, method=method)
            assert abs(est - exact) <= 5 * err
            errors[method].append(abs(est - exact))
    assert np.mean(errors["hutch++"]) * 5 < np.mean(errors["hutchinson"])
    # Exact on diagonal matrices (Hutchinson) and for budgets >= n (Hutch++).
    D = np.diag(np.arange(1.0, 51.0))
    assert hessx.trace(D, n_probes=3, rng=0, method="hutchinson") == (1275.0, 0.0)
    assert hessx.trace(D, n_probes=50, rng=0) == (pytest.approx(1275.0), 0.0)
    sparse = laplacian_3d(6, shift=1.0)
    est, err = hessx.trace(sparse, n_probes=30, rng=1)
    assert abs(est - sparse.diagonal().sum()) <= 5 * err
    assert math.isinf(hessx.trace(D, n_probes=1, method="hutchinson", rng=0)[1])


# --- inertia and minimum_ratio ----------------------------------------------------


@pytest.mark.parametrize("index_dtype, dtype", [(np.int32, np.float64), (np.int64, np.float32)])
def test_inertia_counts_match_dense(index_dtype, dtype):
    A = random_symmetric(300, 8, rng=4).astype(dtype)
    A.indices, A.indptr = A.indices.astype(index_dtype), A.indptr.astype(index_dtype)
    w = np.linalg.eigvalsh(A.toarray().astype(np.float64))
    gaps = np.diff(w)
    for tol in [0.0, 0.3, 1.7]:
        # Thresholds well away from an eigenvalue (float32 rounding is ~1e-6 relative).
        if tol and np.min(np.abs(np.abs(w) - tol)) < 1e-4:
            continue
        below, within, above = _hessx.inertia_counts(300, A.indptr, A.indices, A.data, float(tol))
        assert (below, within, above) == (
            int(np.sum(w < -tol)),
            int(np.sum(np.abs(w) <= tol)),
            int(np.sum(w > tol)),
        )
    assert gaps.min() >= 0
    neg, zero, pos = _hessx.inertia_of(300, A.indptr, A.indices, A.data, 0.5)
    assert (neg, pos) == (int(np.sum(w < 0.5)), int(np.sum(w > 0.5))) and zero == 0
    nnz_l, nbytes = _hessx.factor_size(300, A.indptr, A.indices, A.data)
    assert 0 < nnz_l <= 300 * 301 // 2 and nbytes > 8 * nnz_l


def test_minimum_ratio_methods_agree_with_exact():
    m = 10
    A = laplacian_3d(m, weights=WEIGHTS, shift=SHIFT)
    w = laplacian_3d_eigenvalues(m, weights=WEIGHTS, shift=SHIFT)
    tol = 1e-3
    exact = hessx.minimum_ratio(A, method="exact", tol=tol)
    inertia = hessx.minimum_ratio(A, method="inertia", tol=tol)
    slq = hessx.minimum_ratio(A, method="slq", tol=tol, rng=0)
    assert exact.method == "exact" and inertia.method == "inertia" and slq.method == "slq"
    assert exact.value == inertia.value == np.mean(w > tol)
    assert inertia.fractions == exact.fractions and inertia.stderr == 0.0
    assert 0 < slq.stderr < 0.05 and abs(slq.value - exact.value) <= 3 * slq.stderr
    for band in ("below", "within", "above"):
        value, stderr = getattr(slq.fractions, band)
        assert abs(value - getattr(exact.fractions, band)[0]) <= 3 * stderr
    # Default tolerances: relative to the spectrum's scale.
    scale = np.max(np.abs(w))
    assert hessx.minimum_ratio(A, method="inertia").tol == pytest.approx(
        math.sqrt(np.finfo(float).eps) * scale, rel=1e-4
    )
    assert 0.9e-4 * scale <= hessx.minimum_ratio(A, method="slq", rng=0).tol <= 1.01e-4 * scale


def test_minimum_ratio_zero_cluster_inertia_and_slq():
    d = planted(2500, 7)
    A = sp.diags_array(d).tocsr()
    r = hessx.minimum_ratio(A, method="inertia")
    assert r.value == np.mean(d > r.tol) and r.fractions.within[0] == pytest.approx(0.6)
    s = hessx.minimum_ratio(A, method="slq", rng=2)
    assert abs(s.value - np.mean(d > s.tol)) <= 2 * s.stderr and s.stderr < 0.03
    assert abs(s.fractions.within[0] - 0.6) <= 2 * s.fractions.within[1]


def test_minimum_ratio_auto_choices():
    A = laplacian_3d(9, shift=4.0)
    assert hessx.minimum_ratio(A).method == "exact"
    assert hessx.minimum_ratio(A, dense_limit=100).method == "inertia"
    assert hessx.minimum_ratio(hessx.CsrOperator(A), dense_limit=100).method == "inertia"
    small_memory = hessx.minimum_ratio(A, dense_limit=100, max_memory=1000, rng=0)
    assert small_memory.method == "slq"
    matrix_free = hessx.CallableOperator(A.shape[0], lambda x: A @ x)
    assert hessx.minimum_ratio(matrix_free, dense_limit=100, rng=0).method == "slq"
    # Dense input with method="inertia" is factored as a sparse matrix.
    dense = hessx.minimum_ratio(np.diag([2.0, -1.0, 0.0, 3.0]), method="inertia", tol=0.5)
    assert dense.value == 0.5 and dense.fractions.within == (0.25, 0.0)


# --- executors ---------------------------------------------------------------------


def _assert_same(a, b):
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.residuals, b.residuals)
    assert a.fractions(1e-3) == b.fractions(1e-3)


def test_callables_run_on_the_calling_thread_while_compiled_probes_run_side_by_side():
    # Compiled operators run several probes at once on worker threads; a user
    # function (JAX and PyTorch keep per-thread state) must still only ever be
    # called from the thread that called hessx, and give the same spectrum.
    d = planted(500, 1)
    callers = set()

    def matvec(x):
        callers.add(threading.get_ident())
        return d * x

    via_callable = hessx.spectral_density(
        hessx.CallableOperator(500, matvec), n_probes=6, n_steps=30, rng=4
    )
    assert callers == {threading.get_ident()}
    compiled = hessx.spectral_density(sp.diags(d).tocsr(), n_probes=6, n_steps=30, rng=4)
    np.testing.assert_allclose(via_callable.nodes, compiled.nodes, rtol=0, atol=1e-12)
    np.testing.assert_allclose(via_callable.weights, compiled.weights, rtol=0, atol=1e-12)


def test_thread_executor_equals_local():
    A = laplacian_3d(9, weights=WEIGHTS, shift=SHIFT)
    local = hessx.spectral_density(A, n_probes=7, n_steps=25, rng=3)
    with ThreadPoolExecutor(3) as ex:
        for per in (None, 1, 3, 7):
            _assert_same(
                local,
                hessx.spectral_density(
                    A, n_probes=7, n_steps=25, rng=3, executor=ex, probes_per_task=per
                ),
            )
        for method in ("hutchinson", "hutch++"):
            assert hessx.trace(A, n_probes=40, rng=2, method=method, executor=ex) == hessx.trace(
                A, n_probes=40, rng=2, method=method
            )
        op = hessx.CallableOperator(500, diag_matvec)
        _assert_same(
            hessx.spectral_density(op, n_probes=4, n_steps=20, rng=1),
            hessx.spectral_density(op, n_probes=4, n_steps=20, rng=1, executor=ex),
        )


def test_process_executor_equals_local():
    A = laplacian_3d(9, weights=WEIGHTS, shift=SHIFT)
    dense = planted(300, 2)
    with ProcessPoolExecutor(2) as ex:
        _assert_same(
            hessx.spectral_density(A, n_probes=5, n_steps=25, rng=4),
            hessx.spectral_density(A, n_probes=5, n_steps=25, rng=4, executor=ex),
        )
        _assert_same(
            hessx.spectral_density(np.diag(dense), n_probes=3, rng=4),
            hessx.spectral_density(np.diag(dense), n_probes=3, rng=4, executor=ex),
        )
        assert hessx.trace(A, n_probes=33, rng=2, method="hutchinson", executor=ex) == hessx.trace(
            A, n_probes=33, rng=2, method="hutchinson"
        )
        r = hessx.minimum_ratio(A, method="slq", rng=0, n_steps=30, executor=ex)
        assert r == hessx.minimum_ratio(A, method="slq", rng=0, n_steps=30)
        # Matrix-free operators too, in a pool that forks on Linux: the
        # child's rayon global pool has no threads, and hessx must not use it.
        op = hessx.CallableOperator(500, diag_matvec)
        _assert_same(
            hessx.spectral_density(op, n_probes=4, n_steps=20, rng=1),
            hessx.spectral_density(op, n_probes=4, n_steps=20, rng=1, executor=ex),
        )
        assert hessx.trace(op, n_probes=8, rng=2, executor=ex) == hessx.trace(op, n_probes=8, rng=2)


def test_model_hessians_refused_by_process_pools_with_a_message():
    from hessx.models import MLP, load_digits

    X, y = load_digits(np.float32)
    net = MLP([64, 8, 10], dtype=np.float32)
    H = net.hessian(net.init(rng=0), X, y)
    with ProcessPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="A: a model Hessian.*thread executor"):
            hessx.spectral_density(H, n_probes=2, n_steps=5, rng=0, executor=ex)


def test_spawned_process_executor_runs_matrix_free_operators():
    # A matrix-free operator travels as its (picklable) function.
    op = hessx.CallableOperator(500, diag_matvec)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        _assert_same(
            hessx.spectral_density(op, n_probes=3, n_steps=20, rng=1),
            hessx.spectral_density(op, n_probes=3, n_steps=20, rng=1, executor=ex),
        )
        assert hessx.trace(op, n_probes=10, rng=1, executor=ex) == hessx.trace(
            op, n_probes=10, rng=1
        )
        with pytest.raises(ArithmeticError, match="boom from the worker"):
            hessx.spectral_density(hessx.CallableOperator(50, failing_matvec), executor=ex, rng=0)


def test_failing_task_reraises_on_threads():
    op = hessx.CallableOperator(50, failing_matvec)
    with ThreadPoolExecutor(2) as ex:
        with pytest.raises(ArithmeticError, match="boom from the worker"):
            hessx.spectral_density(op, n_probes=4, executor=ex, rng=0)
        with pytest.raises(ArithmeticError, match="boom"):
            hessx.trace(op, n_probes=4, method="hutchinson", executor=ex, rng=0)


def test_dask_local_cluster_equals_local():
    distributed = pytest.importorskip("dask.distributed")
    A = laplacian_3d(8, weights=WEIGHTS, shift=SHIFT)
    local = hessx.spectral_density(A, n_probes=4, n_steps=20, rng=9)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, timeout="30s") as client,
    ):
        ex = client.get_executor()
        remote = hessx.spectral_density(A, n_probes=4, n_steps=20, rng=9, executor=ex)
        _assert_same(local, remote)
        assert hessx.trace(A, n_probes=20, rng=1, method="hutchinson", executor=ex) == hessx.trace(
            A, n_probes=20, rng=1, method="hutchinson"
        )


# --- bad input -----------------------------------------------------------------------


def test_bad_input_names_the_argument():
    A = np.diag(np.arange(1.0, 21.0))
    with pytest.raises(ValueError, match="n_probes must be positive"):
        hessx.spectral_density(A, n_probes=0)
    with pytest.raises(ValueError, match="n_steps must be positive"):
        hessx.spectral_density(A, n_steps=-1)
    with pytest.raises(ValueError, match=r"n_steps must be <= n = 20.*got 21"):
        hessx.spectral_density(A, n_steps=21)
    with pytest.raises(TypeError, match="n_probes must be an int"):
        hessx.spectral_density(A, n_probes=2.5)
    with pytest.raises(ValueError, match="probe must be"):
        hessx.spectral_density(A, probe="uniform")
    with pytest.raises(ValueError, match="probes_per_task must be positive"):
        hessx.spectral_density(A, probes_per_task=0, executor=ThreadPoolExecutor(1))
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        hessx.spectral_density(A, executor=object())
    d = hessx.spectral_density(A, n_probes=2, rng=0)
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tol must be finite and >= 0"):
            d.fraction_positive(bad)
        with pytest.raises(ValueError, match="tol"):
            d.fractions(bad)
        with pytest.raises(ValueError, match="tol"):
            hessx.minimum_ratio(A, tol=bad)
    with pytest.raises(ValueError, match="grid must be 1-D"):
        d.evaluate(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"grid contains NaN or Inf \(first at index 1\)"):
        d.evaluate([0.0, np.nan])
    for sigma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma must be positive and finite"):
            d.evaluate([0.0, 1.0], sigma=sigma)
    with pytest.raises(ValueError, match="lo must be <= hi"):
        d.fraction(1.0, 0.0)
    with pytest.raises(ValueError, match="hi must not be NaN"):
        d.fraction(0.0, float("nan"))
    with pytest.raises(ValueError, match="n_probes must be positive"):
        hessx.trace(A, n_probes=0)
    with pytest.raises(ValueError, match="n_probes must be at least 3 for method='hutch\\+\\+'"):
        hessx.trace(A, n_probes=2)
    with pytest.raises(ValueError, match="method must be 'hutch\\+\\+' or 'hutchinson'"):
        hessx.trace(A, method="exact")
    with pytest.raises(ValueError, match="method must be 'auto', 'exact', 'inertia' or 'slq'"):
        hessx.minimum_ratio(A, method="lanczos")
    with pytest.raises(ValueError, match="method='inertia' needs an explicit matrix"):
        hessx.minimum_ratio(hessx.CallableOperator(20, lambda x: x), method="inertia")
    with pytest.raises(ValueError, match="above max_memory"):
        hessx.minimum_ratio(laplacian_3d(5), method="inertia", max_memory=10)
    with pytest.raises(ValueError, match="max_memory must be positive"):
        hessx.minimum_ratio(A, max_memory=0)
    with pytest.raises(ValueError, match="n_steps must be <= n"):
        hessx.minimum_ratio(A, method="slq", n_steps=50)


def test_slq_result_from_arrays_validates():
    r = _hessx.slq_run(
        hessx.as_operator(np.diag([1.0, 2.0, 3.0]))._rust, 2, 2, 0, "rademacher", 0, False
    )
    parts = [r.nodes, r.weights, r.alpha, r.beta, r.residuals]
    again = _hessx.SlqResult.from_arrays(3, *parts)
    assert again.count_fraction(1.5, math.inf) == r.count_fraction(1.5, math.inf)
    with pytest.raises(ValueError, match="weights has 1 probes, nodes has 2"):
        _hessx.SlqResult.from_arrays(3, parts[0], parts[1][:1], *parts[2:])
    with pytest.raises(ValueError, match=r"nodes\[0\] contains NaN"):
        _hessx.SlqResult.from_arrays(3, [np.array([np.nan, 1.0]), parts[0][1]], *parts[1:])
    with pytest.raises(ValueError, match="interval"):
        r.count_fraction(2.0, 1.0)
    with pytest.raises(ValueError, match="probe must be"):
        _hessx.slq_run(hessx.as_operator(np.eye(3))._rust, 1, 1, 0, "sobol", 0, False)


# --- float32 model Hessians ----------------------------------------------------


@pytest.mark.parametrize("wrap", ["model", "callable_float32", "callable_float64"])
def test_float32_model_hessian_runs_every_step_and_covers_dense_truth(wrap):
    """A float32 MLP Hessian is asymmetric at ~1e-5: the partial reorthogonalisation
    must account for it (no false breakdown, which would also collapse the error bar),
    whether the operator says so (the model, a float32 callable) or not (a callable
    that computes in float32 but declares float64: the measurements must catch it)."""
    from hessx.models import MLP, load_digits

    X, y = load_digits(np.float32)
    X, y = X[:200], y[:200]
    net = MLP([64, 16, 10], activation="tanh", loss="cross_entropy", dtype=np.float32)
    params = net.init(rng=3)
    model_hessian = net.hessian(params, X, y)
    n = net.n_params
    dense = np.column_stack([model_hessian @ e for e in np.eye(n)])
    eigenvalues = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    H = model_hessian
    if wrap != "model":
        dtype = np.float32 if wrap == "callable_float32" else np.float64
        H = hessx.CallableOperator(
            n, lambda x: model_hessian.matvec(x.astype(np.float64)), dtype=dtype
        )
    n_steps = 60
    density = hessx.spectral_density(H, n_probes=12, n_steps=n_steps, rng=0)
    assert all(len(a) == n_steps for a in density._result.alpha)
    assert all(b[-1] > 0 for b in density._result.beta)
    tol = 1e-2 * np.abs(eigenvalues).max()
    value, stderr = density.fraction_positive(tol)
    truth = np.mean(eigenvalues > tol)
    assert abs(value - truth) <= 3 * stderr + 1e-3, (value, stderr, truth)


def _integral(y, x):
    """The trapezoidal rule (numpy.trapezoid is NumPy >= 2 only)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)
