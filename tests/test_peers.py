"""Peer parity, same model and data in one process: curvlinops-for-pytorch and
PyHessian against hessx.torch, each first checked against an independent
dense Hessian (torch.autograd.functional.hessian). Costs are in
benches/bench_frameworks.py."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
curvlinops = pytest.importorskip("curvlinops")
pyhessian = pytest.importorskip("pyhessian")

from framework_models import (  # noqa: E402
    AttentionBlock,
    batchnorm_net,
    classification_data,
    cnn,
    dense_hessian,
    dense_of,
    layernorm_net,
    mlp,
    seeded,
    warm_batchnorm,
)
from torch import nn  # noqa: E402

import hessx  # noqa: E402
import hessx.torch  # noqa: E402

CE = nn.CrossEntropyLoss()


def _curvlinops_dense(operator_class, model, loss, x, y):
    params = [p for p in model.parameters() if p.requires_grad]
    op = operator_class(model, loss, params, [(x, y)]).to_scipy()
    return np.column_stack([op @ e for e in np.eye(op.shape[0], dtype=np.float64)])


def _cases():
    out = []
    for name, build, shape in (
        ("mlp", mlp, (5,)),
        ("cnn", cnn, (1, 8, 8)),
        ("batchnorm", batchnorm_net, (5,)),
        ("layernorm", layernorm_net, (4,)),
        ("attention", AttentionBlock, (3, 4)),
    ):
        model = seeded(build)
        x, y = classification_data(9, shape)
        if name == "batchnorm":
            warm_batchnorm(model, x)
        model.eval()
        out.append((name, model, x, y))
    return out


CASES = _cases()


def test_hessian_products_equal_curvlinops_where_curvlinops_is_right():
    agreed = []
    for name, model, x, y in CASES:
        reference = dense_hessian(model, CE, x, y)
        scale = np.abs(reference).max()
        ours = dense_of(hessx.torch.hessian(model, CE, (x, y)))
        assert np.abs(ours - reference).max() <= 1e-12 * scale, name  # hessx: always exact
        try:
            theirs = _curvlinops_dense(curvlinops.HessianLinearOperator, model, CE, x, y)
        except NotImplementedError:  # forward-mode AD missing for an op (SiLU's backward)
            continue
        if np.abs(theirs - reference).max() > 1e-10 * scale:
            continue  # curvlinops is off here (LayerNorm): no parity to check
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * scale)
        agreed.append(name)
    assert "mlp" in agreed and "batchnorm" in agreed, agreed


def test_hessx_is_exact_on_linear_layernorm_linear():
    """torch.func's jacrev-based Hessians are wrong on LayerNorm with torch 2.15;
    double backward and autograd.functional.hessian agree, and so does hessx,
    in float64 and float32."""
    name, model, x, y = next(c for c in CASES if c[0] == "layernorm")
    reference = dense_hessian(model, CE, x, y)
    scale = np.abs(reference).max()
    assert np.abs(dense_of(hessx.torch.hessian(model, CE, (x, y))) - reference).max() <= (
        1e-12 * scale
    )
    model32 = copy.deepcopy(model).float()
    op32 = hessx.torch.hessian(model32, CE, (x.float(), y))
    assert np.abs(dense_of(op32) - reference).max() <= 1e-5 * scale


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_ggn_products_equal_curvlinops(loss_name):
    model = seeded(mlp)
    x, labels = classification_data(11, (5,))
    if loss_name == "cross_entropy":
        loss, y = CE, labels
    else:
        loss, y = nn.MSELoss(), torch.randn(11, 3, dtype=torch.float64)
    ours = dense_of(hessx.torch.hessian(model, loss, (x, y), curvature="ggn"))
    theirs = _curvlinops_dense(curvlinops.GGNLinearOperator, model, loss, x, y)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13 * np.abs(theirs).max())


@pytest.fixture(scope="module")
def float32_problem():
    """A float32 MLP small enough for an exact dense spectrum (P = 147)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = classification_data(60, (5,), dtype=torch.float32, seed=5)
    reference = dense_hessian(copy.deepcopy(model).double(), CE, x.double(), y)
    return model, x, y, np.linalg.eigvalsh(reference), np.trace(reference)


def test_top_eigenvalues_against_pyhessian(float32_problem):
    model, x, y, exact, _ = float32_problem
    top5 = exact[np.argsort(-np.abs(exact))[:5]]  # PyHessian's power iteration: largest |lambda|
    ours = hessx.eigsh(hessx.torch.hessian(model, CE, (x, y)), k=5, which="LM", tol=1e-6)[0]
    np.testing.assert_allclose(sorted(ours), sorted(top5), rtol=1e-5)
    torch.manual_seed(0)
    peer = pyhessian.hessian(model, CE, data=(x, y), cuda=False)
    theirs, _ = peer.eigenvalues(top_n=5, tol=1e-4)
    # Power iteration with deflation at its tolerance: the top one within a per cent.
    assert theirs[0] == pytest.approx(top5[0], rel=1e-2)
    assert np.max(np.abs(np.sort(theirs) - np.sort(top5)) / np.abs(top5).max()) < 0.1


def test_trace_against_pyhessian_and_error_bar_coverage(float32_problem):
    model, x, y, _, exact_trace = float32_problem
    op = hessx.torch.hessian(model, CE, (x, y))
    torch.manual_seed(0)
    peer = pyhessian.hessian(model, CE, data=(x, y), cuda=False)
    samples = peer.trace(maxIter=200, tol=1e-3)
    spread = np.std(samples) / np.sqrt(len(samples))
    assert abs(np.mean(samples) - exact_trace) <= 5 * spread  # PyHessian gives no error bar
    # hessx's error bar covers the exact trace about as often as it says.
    covered = 0
    for seed in range(60):
        estimate, stderr = hessx.trace(op, n_probes=12, rng=seed, method="hutchinson")
        covered += abs(estimate - exact_trace) <= 2 * stderr
    assert covered >= 48, covered  # ~95 % nominal; >= 80 % of 60 fails by chance < 1e-4
    estimate, stderr = hessx.trace(op, n_probes=op.shape[0], rng=0)  # Hutch++, all products
    assert estimate == pytest.approx(exact_trace, rel=1e-5) and stderr == 0.0


def _removed_torch_eig(matrix, eigenvectors=False):
    """torch.eig (removed in torch 2.x), which PyHessian's density() still
    calls: eigenvalues as (real, imaginary) rows, and eigenvectors."""
    values, vectors = torch.linalg.eigh(matrix)
    return torch.stack([values, torch.zeros_like(values)], dim=1), vectors


def test_density_against_pyhessian(float32_problem, monkeypatch):
    monkeypatch.setattr(torch, "eig", _removed_torch_eig, raising=False)
    model, x, y, exact, _ = float32_problem
    op = hessx.torch.hessian(model, CE, (x, y))
    steps = 100  # of n = 147: the extreme Ritz values have converged
    ours = hessx.spectral_density(op, n_probes=3, n_steps=steps, rng=0)
    torch.manual_seed(0)
    peer = pyhessian.hessian(model, CE, data=(x, y), cuda=False)
    nodes, weights = peer.density(iter=steps, n_v=2)
    scale = np.abs(exact).max()
    # Both quadratures span the spectrum: the extreme nodes are its ends.
    for probe_nodes in list(ours.nodes) + [np.asarray(v) for v in nodes]:
        assert abs(np.min(probe_nodes) - exact[0]) <= 1e-3 * scale
        assert abs(np.max(probe_nodes) - exact[-1]) <= 1e-3 * scale
    for probe_weights in list(ours.weights) + [np.asarray(w) for w in weights]:
        assert np.sum(probe_weights) == pytest.approx(1.0, abs=1e-4)
    # And the same mass on each side of zero as the exact spectrum.
    tol = 1e-3 * scale
    value, stderr = ours.fraction_positive(tol)
    assert abs(value - np.mean(exact > tol)) <= 4 * stderr + 0.02
