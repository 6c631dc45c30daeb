"""hessx.torch: exact Hessians of PyTorch models against torch.autograd.functional.hessian."""

import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from framework_models import (  # noqa: E402
    AttentionBlock,
    ScaledDotProductBlock,
    batchnorm_net,
    classification_data,
    cnn,
    dense_hessian,
    dense_of,
    layernorm_net,
    lecture_net,
    mlp,
    seeded,
    warm_batchnorm,
)
from torch import nn  # noqa: E402

import hessx  # noqa: E402
import hessx.torch  # noqa: E402

CE = nn.CrossEntropyLoss()


def _models():
    """(name, model, x, y) in float64; BatchNorm with warmed running statistics."""
    out = []
    x, y = classification_data(12, (5,))
    out.append(("mlp", seeded(mlp), x, y))
    x, y = classification_data(6, (1, 8, 8))
    out.append(("cnn", seeded(cnn), x, y))
    x, y = classification_data(10, (5,))
    bn = seeded(batchnorm_net)
    warm_batchnorm(bn, x)
    out.append(("batchnorm", bn, x, y))
    x, y = classification_data(5, (3, 4))
    out.append(("attention", seeded(AttentionBlock), x, y))
    x, y = classification_data(5, (3, 6), classes=2)
    out.append(("sdpa", seeded(ScaledDotProductBlock), x, y))
    x, y = classification_data(9, (4,))
    out.append(("layernorm", seeded(layernorm_net), x, y))
    return out


MODELS = _models()


@pytest.mark.parametrize("name, model, x, y", MODELS, ids=[m[0] for m in MODELS])
def test_float64_products_equal_the_dense_hessian(name, model, x, y):
    reference = dense_hessian(model, CE, x, y)
    op = hessx.torch.hessian(model, CE, (x, y))
    assert op.shape == reference.shape and op.dtype == np.float64
    H = dense_of(op)
    scale = np.abs(reference).max()
    assert np.abs(H - reference).max() <= 1e-12 * scale
    # The same with the graph rebuilt on every product.
    rebuilt = hessx.torch.hessian(model, CE, (x, y), max_graph_memory=0)
    assert rebuilt.cached_batches == 0
    assert np.abs(dense_of(rebuilt) - reference).max() <= 1e-12 * scale


@pytest.mark.parametrize("name, model, x, y", MODELS, ids=[m[0] for m in MODELS])
def test_float32_products_match_to_float32_precision(name, model, x, y):
    reference = dense_hessian(model, CE, x, y)
    model32 = copy.deepcopy(model).float()
    op = hessx.torch.hessian(model32, CE, (x.float(), y))
    assert op.dtype == np.float32
    H = dense_of(op)
    assert np.abs(H - reference).max() <= 2e-5 * np.abs(reference).max()


def test_lecture_network_is_a_saddle_with_the_known_escape():
    net = lecture_net()
    x, y = torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    op = hessx.torch.hessian(net, nn.MSELoss(), (x, y))
    np.testing.assert_array_equal(dense_of(op), [[0.0, -2.0], [-2.0, 0.0]])
    assert op.loss() == 1.0
    np.testing.assert_array_equal(op.gradient(), [0.0, 0.0])
    cp = hessx.classify(op, grad=op.gradient())
    assert cp.kind == "saddle"
    assert (cp.lambda_min, cp.lambda_max) == pytest.approx((-2.0, 2.0), abs=1e-12)
    np.testing.assert_allclose(np.abs(cp.escape_direction), [2**-0.5, 2**-0.5], atol=1e-12)
    assert cp.escape_direction[0] * cp.escape_direction[1] > 0  # along +-(1, 1)
    step = hessx.escape_step(op.loss_at, op.parameters_vector(), cp.escape_direction)
    assert step.loss_after < step.loss_before == 1.0
    # loss_at is the lecture's (1 - w1 w2)^2 and leaves the model alone.
    assert op.loss_at(np.array([0.5, 0.5])) == pytest.approx(0.5625)
    assert all(float(p.detach()) == 0.0 for p in net.parameters())
    op.load(step.params)
    np.testing.assert_allclose([float(p.detach()) for p in net.parameters()], step.params)


def test_float32_model_takes_float64_vectors_for_the_escape_step():
    net = lecture_net(torch.float32)
    x, y = torch.ones(1, 1), torch.ones(1, 1)
    op = hessx.torch.hessian(net, nn.MSELoss(), (x, y))
    assert op.dtype == np.float32 and op.parameters_vector().dtype == np.float32
    cp = hessx.classify(op, grad=op.gradient())
    step = hessx.escape_step(op.loss_at, op.parameters_vector(), cp.escape_direction)
    assert step.loss_after < 1.0
    op.load(step.params)  # float64 into a float32 model
    assert next(net.parameters()).dtype == torch.float32


def test_dataloader_gives_the_products_of_one_batch_of_everything():
    model = seeded(mlp)
    x, y = classification_data(23, (5,))
    whole = hessx.torch.hessian(model, CE, (x, y))
    dataset = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(dataset, batch_size=7)  # 7, 7, 7, 2: unequal
    batched = hessx.torch.hessian(model, CE, loader)
    rebuilt = hessx.torch.hessian(model, CE, loader, max_graph_memory=0)
    assert (batched.n_batches, batched.n_examples, batched.cached_batches) == (4, 23, 4)
    H = dense_of(whole)
    scale = np.abs(H).max()
    for op in (batched, rebuilt):
        assert np.abs(dense_of(op) - H).max() <= 1e-13 * scale
        assert op.loss() == pytest.approx(whole.loss(), rel=1e-14)
        np.testing.assert_allclose(op.gradient(), whole.gradient(), rtol=1e-12, atol=1e-15)
        assert op.loss_at(op.parameters_vector() + 0.1) == pytest.approx(
            whole.loss_at(whole.parameters_vector() + 0.1), rel=1e-14
        )


def test_graph_budget_keeps_a_prefix_of_batches():
    model = seeded(mlp)
    x, y = classification_data(40, (5,))
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 40, 10)]
    full = hessx.torch.hessian(model, CE, batches)
    per_batch = full.graph_bytes / 4
    partial = hessx.torch.hessian(model, CE, batches, max_graph_memory=int(2.5 * per_batch))
    assert partial.cached_batches == 2
    v = np.random.default_rng(0).standard_normal(full.shape[0])
    np.testing.assert_allclose(partial @ v, full @ v, rtol=1e-13, atol=1e-15)


def test_sum_reduction_weights_batches_by_one():
    model = seeded(mlp)
    x, y = classification_data(9, (5,))
    loss = nn.CrossEntropyLoss(reduction="sum")
    whole = hessx.torch.hessian(model, loss, (x, y))
    split = hessx.torch.hessian(model, loss, [(x[:4], y[:4]), (x[4:], y[4:])])
    assert whole.reduction == split.reduction == "sum"
    np.testing.assert_allclose(dense_of(split), dense_of(whole), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dense_of(whole), dense_hessian(model, loss, x, y), atol=1e-12)


def test_ggn_equals_jacobian_transpose_loss_hessian_jacobian():
    model = seeded(mlp)
    x, y = classification_data(8, (5,))
    op = hessx.torch.hessian(model, CE, [(x[:3], y[:3]), (x[3:], y[3:])], curvature="ggn")
    rebuilt = hessx.torch.hessian(model, CE, (x, y), curvature="ggn", max_graph_memory=0)
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    sizes = [p.numel() for p in model.parameters()]
    shapes = [p.shape for p in model.parameters()]

    def outputs(theta):
        parts = [t.view(s) for t, s in zip(torch.split(theta, sizes), shapes, strict=True)]
        return torch.func.functional_call(
            model, dict(zip(names, parts, strict=True)), (x,)
        ).reshape(-1)

    J = torch.autograd.functional.jacobian(outputs, flat).numpy()
    z = outputs(flat).detach()
    HL = torch.autograd.functional.hessian(lambda o: CE(o.view(8, 3), y), z).numpy()
    reference = J.T @ HL @ J
    for ggn in (op, rebuilt):
        G = dense_of(ggn)
        assert np.abs(G - reference).max() <= 1e-12 * np.abs(reference).max()
    assert np.linalg.eigvalsh(reference).min() > -1e-12  # PSD, unlike the Hessian


def test_mse_ggn_is_twice_jtj_over_the_batch():
    model = seeded(mlp)
    x = classification_data(6, (5,))[0]
    target = torch.randn(6, 3, dtype=torch.float64)
    op = hessx.torch.hessian(model, nn.MSELoss(), (x, target), curvature="ggn")
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    sizes = [p.numel() for p in model.parameters()]
    shapes = [p.shape for p in model.parameters()]

    def outputs(theta):
        parts = [t.view(s) for t, s in zip(torch.split(theta, sizes), shapes, strict=True)]
        return torch.func.functional_call(
            model, dict(zip(names, parts, strict=True)), (x,)
        ).reshape(-1)

    J = torch.autograd.functional.jacobian(outputs, flat).numpy()
    np.testing.assert_allclose(dense_of(op), 2.0 / 18 * J.T @ J, atol=1e-13)


def test_eval_mode_modes_restored_buffers_unchanged():
    model = seeded(batchnorm_net)
    x, y = classification_data(10, (5,))
    warm_batchnorm(model, x)
    model.train()
    model[3].eval()  # a submodule in its own mode
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    op = hessx.torch.hessian(model, CE, [(x[:5], y[:5]), (x[5:], y[5:])], max_graph_memory=0)
    v = np.random.default_rng(1).standard_normal(op.shape[0])
    first = op @ v
    np.testing.assert_array_equal(op @ v, first)  # dropout is off: deterministic
    hessx.eigsh(op, k=2, which="LA", tol=1e-8)
    op.loss_at(op.parameters_vector() * 1.01)
    assert model.training and not model[3].training and model[1].training
    for k, b in model.named_buffers():
        assert torch.equal(b, buffers[k]), k
    for k, p in model.named_parameters():
        assert torch.equal(p, params[k]), k
    assert all(p.grad is None for p in model.parameters())
    # Products are those of the eval-mode model (running statistics, no dropout).
    np.testing.assert_allclose(dense_of(op), dense_hessian(model, CE, x, y), atol=1e-12)


def test_operator_is_a_snapshot_of_its_point():
    model = seeded(mlp)
    x, y = classification_data(10, (5,))
    op = hessx.torch.hessian(model, CE, (x, y))
    before = dense_of(op)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    np.testing.assert_array_equal(dense_of(op), before)
    op.load(op.parameters_vector())
    np.testing.assert_allclose(dense_hessian(model, CE, x, y), before, atol=1e-13)


def test_params_subset_list_and_dict_and_frozen_parameters():
    model = seeded(mlp)
    x, y = classification_data(10, (5,))
    full = dense_of(hessx.torch.hessian(model, CE, (x, y)))
    last = list(model[2].parameters())  # weight (3x8) and bias (3): the last 27 entries
    by_list = hessx.torch.hessian(model, CE, (x, y), params=last)
    by_dict = hessx.torch.hessian(
        model, CE, (x, y), params=dict(list(model.named_parameters())[2:])
    )
    assert by_list.names == by_dict.names == ["2.weight", "2.bias"]
    np.testing.assert_allclose(dense_of(by_list), full[-27:, -27:], atol=1e-14)
    np.testing.assert_allclose(dense_of(by_dict), full[-27:, -27:], atol=1e-14)
    for p in model[0].parameters():
        p.requires_grad_(False)
    frozen = hessx.torch.hessian(model, CE, (x, y))
    assert frozen.shape == (27, 27) and frozen.names == ["2.weight", "2.bias"]
    shapes = frozen.unflatten(np.arange(27.0))
    assert shapes["2.weight"].shape == (3, 8) and shapes["2.bias"].tolist() == [24.0, 25.0, 26.0]


def test_tied_and_unused_parameters():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight  # tied
            self.unused = nn.Linear(4, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))

    model = seeded(Tied)
    x, y = classification_data(7, (4,))
    op = hessx.torch.hessian(model, CE, (x, y))
    assert "unused.weight" in op.names
    H = dense_of(op)
    reference = dense_hessian(model, CE, x, y)
    assert np.abs(H - reference).max() <= 1e-12 * np.abs(reference).max()
    assert op.names == ["a.weight", "unused.weight", "unused.bias", "head.weight", "head.bias"]
    assert np.all(H[:, 16:36] == 0.0) and np.all(H[16:36] == 0.0)


def test_inputs_as_tuple_and_dict():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(2, 3)

        def forward(self, u, w):
            return torch.tanh(self.a(u)) * self.b(w)

    model = seeded(TwoInputs)
    u, w = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    by_tuple = hessx.torch.hessian(model, CE, ((u, w), y))
    by_dict = hessx.torch.hessian(model, CE, ({"u": u, "w": w}, y))
    np.testing.assert_array_equal(dense_of(by_tuple), dense_of(by_dict))


def test_solvers_accept_the_operator():
    model = seeded(mlp)
    x, y = classification_data(30, (5,))
    op = hessx.torch.hessian(model, CE, (x, y))
    H = dense_of(op)
    w = np.linalg.eigvalsh(H)
    top = hessx.eigsh(op, k=3, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), w[-3:], rtol=1e-9)
    res = hessx.lanczos(op, k=2, which="BE", rng=0)
    np.testing.assert_allclose(res.eigenvalues, [w[0], w[-1]], rtol=1e-8, atol=1e-12)
    ratio = hessx.minimum_ratio(op, method="exact")
    assert ratio.value == np.count_nonzero(w > ratio.tol) / len(w)
    density = hessx.spectral_density(op, n_probes=4, n_steps=op.shape[0], rng=0)
    value, stderr = density.fraction_positive(ratio.tol)
    assert abs(value - ratio.value) <= 4 * stderr + 1e-9
    est, err = hessx.trace(op, n_probes=op.shape[0], rng=0)
    assert est == pytest.approx(np.trace(H), rel=1e-9)
    assert op.n_products > 0


def test_progress_reports_on_stderr(capsys):
    model = seeded(mlp)
    x, y = classification_data(10, (5,))
    op = hessx.torch.hessian(model, CE, [(x[:5], y[:5]), (x[5:], y[5:])], progress=True)
    op @ np.ones(op.shape[0])
    err = capsys.readouterr().err
    assert "batch 2/2" in err and "1 products" in err


def test_pickles_and_rebuilds_with_the_same_products():
    model = seeded(mlp)
    x, y = classification_data(10, (5,))
    op = hessx.torch.hessian(model, CE, [(x[:5], y[:5]), (x[5:], y[5:])])
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # the copy keeps the operator's point
    build, kwargs = pickle.loads(pickle.dumps(op._recipe()))
    clone = build(**kwargs)
    assert pickle.loads(pickle.dumps(op)) is op  # in its own process: the original
    v = np.random.default_rng(2).standard_normal(op.shape[0])
    np.testing.assert_array_equal(clone @ v, op @ v)


# --- bad input --------------------------------------------------------------------------


def _unchanged(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    return lambda: (
        all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        and modes == [m.training for m in model.modules()]
    )


def test_bad_input_names_the_argument_and_leaves_the_model_alone():
    model = seeded(batchnorm_net)
    x, y = classification_data(10, (5,))
    model.train()
    same = _unchanged(model)
    H = hessx.torch.hessian
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        H(lambda t: t, CE, (x, y))
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        H(model, "ce", (x, y))
    with pytest.raises(ValueError, match="curvature must be 'hessian' or 'ggn'"):
        H(model, CE, (x, y), curvature="fisher")
    with pytest.raises(ValueError, match="loss_fn.reduction is 'none'"):
        H(model, nn.CrossEntropyLoss(reduction="none"), (x, y))
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        H(model, lambda out, t: nn.functional.cross_entropy(out, t, reduction="none"), (x, y))
    with pytest.raises(ValueError, match="loss_fn returned nan on batch 0"):
        H(model, lambda out, t: CE(out, t) * float("nan"), (x, y))
    with pytest.raises(TypeError, match="loss_fn must return a scalar tensor"):
        H(model, lambda out, t: 1.0, (x, y))
    with pytest.raises(ValueError, match="data is empty"):
        H(model, CE, [])
    with pytest.raises(ValueError, match="batch 1 has 3 inputs but 4 targets"):
        H(model, CE, [(x[:5], y[:5]), (x[5:8], y[5:9])])
    with pytest.raises(ValueError, match="batch 0 is empty"):
        H(model, CE, (x[:0], y[:0]))
    with pytest.raises(TypeError, match="data must be an"):
        H(model, CE, x)
    with pytest.raises(TypeError, match=r"batch 0 must be an \(inputs, targets\) pair"):
        H(model, CE, [(x, y, y)])
    with pytest.raises(ValueError, match="params\\[0\\] is not a parameter of model"):
        H(model, CE, (x, y), params=[nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="params: 'nope' is not the name"):
        H(model, CE, (x, y), params={"nope": next(model.parameters())})
    with pytest.raises(ValueError, match="params names the parameter '0.weight' twice"):
        H(model, CE, (x, y), params=[model[0].weight, model[0].weight])
    with pytest.raises(ValueError, match="params is empty"):
        H(model, CE, (x, y), params=[])
    with pytest.raises(TypeError, match="max_graph_memory must be an int"):
        H(model, CE, (x, y), max_graph_memory=1.5)
    with pytest.raises(ValueError, match="reduction must be"):
        H(model, CE, (x, y), reduction="max")
    frozen = seeded(mlp)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="model has no trainable parameters"):
        H(frozen, CE, (x, y))
    mixed = seeded(mlp)
    mixed[2].float()
    with pytest.raises(TypeError, match="params must all be float32 or all float64"):
        H(mixed, CE, (x, y))
    assert same()

    op = H(model, CE, (x, y))
    n = op.shape[0]
    for method in (op.load, op.loss_at):
        with pytest.raises(ValueError, match=f"theta must have length {n}"):
            method(np.zeros(n + 1))
        with pytest.raises(TypeError, match="theta must be a float32 or float64 vector"):
            method(np.zeros(n, dtype=np.int64))
        with pytest.raises(TypeError, match="theta must be a float32 or float64 vector"):
            method(np.zeros(n, dtype=np.complex128))
        with pytest.raises(ValueError, match="theta must be a flat"):
            method(np.zeros((n, 1)))
        with pytest.raises(ValueError, match="theta contains NaN"):
            method(np.full(n, np.nan))
    with pytest.raises(ValueError, match=f"v must have length {n}"):
        op.unflatten(np.zeros(3))
    assert same()


def test_changing_data_between_passes_is_an_error():
    model = seeded(mlp)
    x, y = classification_data(10, (5,))
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    op = hessx.torch.hessian(model, CE, batches, max_graph_memory=0)
    batches.append((x[:2], y[:2]))
    with pytest.raises(
        RuntimeError, match="data gave different batches than when the operator was built"
    ):
        op @ np.ones(op.shape[0])


def test_import_hessx_does_not_import_frameworks():
    import subprocess
    import sys

    code = (
        "import sys, hessx; "
        "assert 'torch' not in sys.modules and 'jax' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_framework_names_the_extra():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['jax'] = None\n"
        "import hessx\n"
        "for name, extra in (('torch', 'hessx[torch]'), ('jax', 'hessx[jax]')):\n"
        "    try:\n"
        "        getattr(hessx, name)\n"
        "    except ImportError as e:\n"
        "        assert extra in str(e), e\n"
        "    else:\n"
        "        raise SystemExit('no ImportError for ' + name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dask_workers_build_the_model_once_and_match_the_local_run():
    distributed = pytest.importorskip("dask.distributed")
    from hessx import _framework

    model = seeded(mlp)
    x, y = classification_data(20, (5,))
    op = hessx.torch.hessian(model, CE, [(x[:10], y[:10]), (x[10:], y[10:])])
    local = hessx.spectral_density(op, n_probes=4, n_steps=20, rng=3)
    local_trace = hessx.trace(op, n_probes=8, rng=3, method="hutchinson")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, timeout="60s") as client,
    ):
        executor = client.get_executor()
        remote = hessx.spectral_density(
            op, n_probes=4, n_steps=20, rng=3, executor=executor, probes_per_task=1
        )
        remote_trace = hessx.trace(
            op, n_probes=8, rng=3, method="hutchinson", executor=executor, probes_per_task=2
        )
        builds = client.run(_framework.rebuilt_count)
    np.testing.assert_allclose(remote.nodes, local.nodes, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(remote.weights, local.weights, rtol=1e-10, atol=1e-14)
    assert remote_trace[0] == pytest.approx(local_trace[0], rel=1e-12)
    # Four SLQ tasks and four trace tasks: each worker built each operator at most once.
    assert 1 <= sum(builds.values()) and all(count <= 1 for count in builds.values()), builds


class _Cube(torch.autograd.Function):
    """x**3 with a hand-written backward: double backward works, forward mode
    (torch.func.jvp) does not."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


class _CubeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, 3)

    def forward(self, x):
        return self.b(_Cube.apply(self.a(x)))


def test_rebuilt_products_fall_back_to_double_backward_without_forward_mode():
    model = seeded(_CubeNet)
    x, y = classification_data(6, (4,))
    op = hessx.torch.hessian(model, CE, (x, y), max_graph_memory=0)
    H = dense_of(op)
    assert not op._forward_mode
    cached = dense_of(hessx.torch.hessian(model, CE, (x, y)))
    np.testing.assert_allclose(H, cached, rtol=1e-12, atol=1e-14)
    # Against finite differences of the exact gradient (autograd.functional
    # cannot double-differentiate through torch.func here either way).
    plain = hessx.torch.hessian(model, CE, (x, y))
    theta = plain.parameters_vector()
    probe = hessx.torch.hessian
    h = 1e-6
    for i in (0, 7, 30):
        e = np.zeros_like(theta)
        e[i] = h
        plus = probe(_loaded(model, theta + e), CE, (x, y)).gradient()
        minus = probe(_loaded(model, theta - e), CE, (x, y)).gradient()
        np.testing.assert_allclose(H[:, i], (plus - minus) / (2 * h), atol=1e-7)
    plain.load(theta)


def _loaded(model, theta):
    copy_ = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(torch.from_numpy(theta), copy_.parameters())
    return copy_
