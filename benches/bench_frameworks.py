"""PyTorch models through hessx.torch, side by side with torch's own products
and with the peers (curvlinops + SciPy eigsh, PyHessian), same model and data
in one run: the 1.13M-parameter MLP (64-1024-1024-10, tanh, cross-entropy,
float32) on the 1797 bundled digits.

Run: python3 -m pytest benches/bench_frameworks.py --benchmark-only
(HESSX_BENCH_SMALL=1 shrinks the network to 64-64-64-10 for a smoke run.)
"""

import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import SMALL  # noqa: E402
from torch.func import functional_call  # noqa: E402

import hessx  # noqa: E402
import hessx.torch  # noqa: E402
from hessx.models import MLP, load_digits  # noqa: E402

WIDTH = 64 if SMALL else 1024
SIZES = [64, WIDTH, WIDTH, 10]
GROUP = f"torch MLP {SIZES}"
TOP_K = 5
TOL = 1e-3


@pytest.fixture(scope="module")
def problem():
    """The network of bench_mlp.py (the Rust MLP's init(rng=0)) as a torch model."""
    X, y = load_digits(np.float32)
    net = MLP(SIZES, activation="tanh", loss="cross_entropy", dtype=np.float32)
    layers = []
    for i, (W, b) in enumerate(net.unflatten(net.init(rng=0))):
        linear = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear] if i == len(SIZES) - 2 else [linear, torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers)
    data = (torch.from_numpy(X), torch.from_numpy(y.astype(np.int64)))
    return model, data


def _loss_fn():
    return torch.nn.CrossEntropyLoss()


def _functional(model, data):
    names = [n for n, _ in model.named_parameters()]
    point = tuple(p.detach().clone() for p in model.parameters())

    def loss(params):
        return _loss_fn()(
            functional_call(model, dict(zip(names, params, strict=True)), (data[0],)), data[1]
        )

    return loss, point


def _interleaved(ours, theirs, rounds=7):
    """Median times of two functions timed alternately, and the median of the
    per-round ratios ours/theirs: both sides see the same load on a shared
    machine, so the ratio holds where absolute times swing."""
    ours(), theirs()
    a, b = [], []
    for _ in range(rounds):
        for times, function in ((a, ours), (b, theirs)):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    ratios = np.array(a) / np.array(b)
    return float(np.median(a)), float(np.median(b)), float(np.median(ratios))


# --- one product -------------------------------------------------------------------------


def test_gradient(benchmark, problem):
    model, data = problem
    loss, point = _functional(model, data)
    params = tuple(p.requires_grad_(True) for p in point)
    benchmark.group = GROUP + " product"
    benchmark(lambda: torch.autograd.grad(loss(params), params))


def test_torch_func_jvp_of_grad(benchmark, problem):
    model, data = problem
    loss, point = _functional(model, data)
    tangent = tuple(torch.randn_like(p) for p in point)
    benchmark.group = GROUP + " product"
    benchmark(lambda: torch.func.jvp(torch.func.grad(loss), (point,), (tangent,)))


def test_torch_double_backward(benchmark, problem):
    model, data = problem
    loss, point = _functional(model, data)
    tangent = tuple(torch.randn_like(p) for p in point)

    def product():
        params = tuple(p.detach().requires_grad_(True) for p in point)
        grads = torch.autograd.grad(loss(params), params, create_graph=True)
        return torch.autograd.grad(grads, params, grad_outputs=tangent)

    benchmark.group = GROUP + " product"
    benchmark(product)


def test_hessx_torch_product(benchmark, problem):
    """The cached-graph product against torch.func's in the same run (target <= 0.65x)."""
    model, data = problem
    op = hessx.torch.hessian(model, _loss_fn(), data)
    assert op.cached_batches == 1
    loss, point = _functional(model, data)
    v = np.random.default_rng(1).standard_normal(op.shape[0])
    tangent = tuple(
        t.view_as(p)
        for t, p in zip(
            torch.from_numpy(v.astype(np.float32)).split([p.numel() for p in point]),
            point,
            strict=True,
        )
    )
    reference = torch.cat(
        [t.reshape(-1) for t in torch.func.jvp(torch.func.grad(loss), (point,), (tangent,))[1]]
    ).numpy()
    ours = op @ v
    assert np.linalg.norm(ours - reference) <= 1e-4 * np.linalg.norm(reference)
    params = tuple(p.detach().requires_grad_(True) for p in point)

    def torch_func():
        return torch.func.jvp(torch.func.grad(loss), (point,), (tangent,))

    def gradient():
        return torch.autograd.grad(loss(params), params)

    hessx_s, torch_func_s, ratio = _interleaved(lambda: op.matvec(v), torch_func)
    _, gradient_s, per_gradient = _interleaved(lambda: op.matvec(v), gradient)
    benchmark.group = GROUP + " product"
    benchmark(op.matvec, v)
    benchmark.extra_info.update(
        graph_MB=op.graph_bytes / 2**20,
        hessx_ms=hessx_s * 1e3,
        torch_func_ms=torch_func_s * 1e3,
        gradient_ms=gradient_s * 1e3,
        ratio_to_torch_func=ratio,
        products_per_gradient=per_gradient,
    )


def test_hessx_torch_four_batches(benchmark, problem):
    """Four batches, graphs rebuilt per product: against the sum of torch.func's
    per-batch products in the same run (target <= 1.05x)."""
    model, (X, y) = problem
    batches = [(X[i : i + 450], y[i : i + 450]) for i in range(0, len(X), 450)]
    op = hessx.torch.hessian(model, _loss_fn(), batches, max_graph_memory=0)
    assert op.cached_batches == 0 and op.n_batches == 4
    v = np.random.default_rng(2).standard_normal(op.shape[0])
    sizes = [b[0].shape[0] for b in batches]
    functionals = [_functional(model, b) for b in batches]
    point = functionals[0][1]
    tangent = tuple(
        t.view_as(p)
        for t, p in zip(
            torch.from_numpy(v.astype(np.float32)).split([p.numel() for p in point]),
            point,
            strict=True,
        )
    )

    def per_batch_sum():
        total = None
        for (loss, _), size in zip(functionals, sizes, strict=True):
            part = torch.func.jvp(torch.func.grad(loss), (point,), (tangent,))[1]
            part = [t * (size / len(X)) for t in part]
            total = part if total is None else [a + b for a, b in zip(total, part, strict=True)]
        return torch.cat([t.reshape(-1) for t in total]).numpy()

    reference = per_batch_sum()
    assert np.linalg.norm(op @ v - reference) <= 1e-4 * np.linalg.norm(reference)
    hessx_s, baseline_s, ratio = _interleaved(lambda: op.matvec(v), per_batch_sum, rounds=3)
    benchmark.group = GROUP + " four batches"
    benchmark.pedantic(op.matvec, args=(v,), rounds=1, iterations=1)
    benchmark.extra_info.update(
        hessx_ms=hessx_s * 1e3,
        torch_func_sum_ms=baseline_s * 1e3,
        ratio_to_torch_func_sum=ratio,
    )


# --- top-5 eigenvalues, peers --------------------------------------------------------------


@pytest.fixture(scope="module")
def top_eigenvalues(problem):
    """The top 5 to ~1e-9, the reference every tool is scored against."""
    model, data = problem
    op = hessx.torch.hessian(model, _loss_fn(), data)
    return np.sort(hessx.eigsh(op, k=TOP_K, which="LA", tol=1e-9, return_eigenvectors=False))[::-1]


def _score(found, reference):
    return float(np.max(np.abs(np.sort(found)[::-1] - reference) / np.abs(reference)))


def test_top5_hessx(benchmark, problem, top_eigenvalues):
    model, data = problem
    counts = []

    def run():
        op = hessx.torch.hessian(model, _loss_fn(), data)
        w = hessx.eigsh(op, k=TOP_K, which="LA", tol=TOL, return_eigenvectors=False, rng=0)
        counts.append(op.n_products)
        return w

    benchmark.group = GROUP + f" top-{TOP_K} eigenvalues"
    w = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(products=counts[-1], max_rel_error=_score(w, top_eigenvalues))
    assert _score(w, top_eigenvalues) <= TOL


def test_top5_curvlinops_scipy(benchmark, problem, top_eigenvalues):
    curvlinops = pytest.importorskip("curvlinops")
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, data = problem
    counts = []

    def run():
        params = [p for p in model.parameters() if p.requires_grad]
        op = curvlinops.HessianLinearOperator(
            model, _loss_fn(), params, [data], check_deterministic=False
        ).to_scipy()
        calls = [0]

        def matvec(x):
            calls[0] += 1
            return op @ x

        counted = LinearOperator(op.shape, matvec=matvec, dtype=op.dtype)
        v0 = np.random.default_rng(0).standard_normal(op.shape[0]).astype(op.dtype)
        w = eigsh(counted, k=TOP_K, which="LA", tol=TOL, return_eigenvectors=False, v0=v0)
        counts.append(calls[0])
        return w

    benchmark.group = GROUP + f" top-{TOP_K} eigenvalues"
    w = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(products=counts[-1], max_rel_error=_score(w, top_eigenvalues))


@pytest.mark.parametrize("tol", [1e-3, 1e-4])
def test_top5_pyhessian(benchmark, problem, top_eigenvalues, tol, monkeypatch):
    pyhessian = pytest.importorskip("pyhessian")
    module = sys.modules["pyhessian.hessian"]  # pyhessian.hessian is also the class
    model, data = problem
    calls = [0]
    original = module.hessian_vector_product

    def counted(*args):
        calls[0] += 1
        return original(*args)

    monkeypatch.setattr(module, "hessian_vector_product", counted)
    counts = []

    def run():
        calls[0] = 0
        torch.manual_seed(0)
        peer = pyhessian.hessian(model, _loss_fn(), data=data, cuda=False)
        w, _ = peer.eigenvalues(top_n=TOP_K, tol=tol)
        model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph grads behind
        counts.append(calls[0])
        return np.asarray(w)

    benchmark.group = GROUP + f" top-{TOP_K} eigenvalues"
    w = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        tol=tol, products=counts[-1], max_rel_error=_score(w, top_eigenvalues)
    )


# --- solver overhead ----------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["lanczos", "spectral_density"])
def test_solver_time_over_its_products(benchmark, problem, solver):
    """A solve's wall time against the time spent inside its products, both
    measured in the same run (target <= 1.1x)."""
    model, data = problem
    op = hessx.torch.hessian(model, _loss_fn(), data)
    op @ np.ones(op.shape[0])  # warm-up
    runs = []

    def run():
        products, inside = op.n_products, op.product_seconds
        start = time.perf_counter()
        if solver == "lanczos":
            hessx.lanczos(op, k=1, which="BE", ncv=40, maxiter=1, rng=0)
        else:
            hessx.spectral_density(op, n_probes=2, n_steps=25, rng=0)
        wall = time.perf_counter() - start
        runs.append((op.n_products - products, wall, op.product_seconds - inside))

    benchmark.group = GROUP + " solver overhead"
    benchmark.pedantic(run, rounds=2, iterations=1)
    products, wall, inside = runs[-1]
    benchmark.extra_info.update(
        products=products,
        product_ms=inside / products * 1e3,
        wall_over_products=float(np.median([w / i for _, w, i in runs])),
    )
