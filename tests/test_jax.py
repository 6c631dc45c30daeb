"""hessx.jax: exact Hessians of JAX losses against jax.hessian."""

import pickle

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import hessx  # noqa: E402
import hessx.jax  # noqa: E402


def cross_entropy(logits, labels):
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(labels.shape[0]), labels])


def mlp_apply(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def cnn_apply(p, x):
    h = jax.lax.conv_general_dilated(
        x, p["k"], (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    h = jnp.tanh(h + p["kb"][None, :, None, None])
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return h.reshape(h.shape[0], -1) @ p["w"] + p["b"]


def norm_apply(p, x):
    """Linear -> BatchNorm with fixed running statistics (eval) -> tanh -> Linear."""
    h = x @ p["w1"]
    h = (h - p["mean"]) / jnp.sqrt(p["var"] + 1e-5) * p["gamma"] + p["beta"]
    return jnp.tanh(h) @ p["w2"]


def attention_apply(p, x):
    """LayerNorm -> single-head self-attention -> residual -> pooled Linear."""
    mu = x.mean(-1, keepdims=True)
    h = (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * p["g"] + p["c"]
    q, k, v = h @ p["q"], h @ p["k"], h @ p["v"]
    a = jax.nn.softmax(q @ jnp.swapaxes(k, 1, 2) / jnp.sqrt(q.shape[-1]), axis=-1) @ v
    return jnp.tanh(x + a).mean(1) @ p["o"]


def _params(shapes, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(0.5 * rng.standard_normal(s), dtype=dtype) for k, s in shapes.items()}


def _cases():
    rng = np.random.default_rng(3)
    mlp = _params({"w1": (5, 7), "b1": (7,), "w2": (7, 3), "b2": (3,)}, 0)
    cnn = _params({"k": (2, 1, 3, 3), "kb": (2,), "w": (2 * 3 * 3, 3), "b": (3,)}, 1)
    norm = _params({"w1": (5, 6), "gamma": (6,), "beta": (6,), "w2": (6, 3)}, 2)
    norm["mean"], norm["var"] = (
        jnp.asarray(rng.standard_normal(6)),
        jnp.asarray(rng.random(6) + 0.5),
    )
    att = _params({"g": (6,), "c": (6,), "q": (6, 6), "k": (6, 6), "v": (6, 6), "o": (6, 3)}, 3)
    labels = rng.integers(0, 3, 8)
    return [
        ("mlp", mlp_apply, mlp, rng.standard_normal((8, 5)), labels),
        ("cnn", cnn_apply, cnn, rng.standard_normal((8, 1, 6, 6)), labels),
        ("batchnorm", norm_apply, norm, rng.standard_normal((8, 5)), labels),
        ("attention", attention_apply, att, rng.standard_normal((8, 4, 6)), labels),
    ]


CASES = _cases()
TRAINABLE = {"batchnorm": ("w1", "gamma", "beta", "w2")}


def _split(name, params):
    keep = TRAINABLE.get(name)
    if keep is None:
        return params, {}
    return {k: params[k] for k in keep}, {k: v for k, v in params.items() if k not in keep}


def _dense(op):
    return np.column_stack([op.matvec(e) for e in np.eye(op.shape[0])])


@pytest.mark.parametrize("name, apply, params, x, y", CASES, ids=[c[0] for c in CASES])
def test_float64_products_equal_jax_hessian(name, apply, params, x, y):
    trainable, fixed = _split(name, params)

    def loss(p, batch):
        return cross_entropy(apply({**p, **fixed}, batch[0]), batch[1])

    op = hessx.jax.hessian(loss, trainable, (x, y))
    flat, unravel = ravel_pytree(trainable)
    reference = np.asarray(jax.hessian(lambda t: loss(unravel(t), (x, y)))(flat))
    assert op.shape == reference.shape and op.dtype == np.float64
    assert np.abs(_dense(op) - reference).max() <= 1e-12 * np.abs(reference).max()
    np.testing.assert_allclose(
        op.gradient(), jax.grad(lambda t: loss(unravel(t), (x, y)))(flat), atol=1e-14
    )
    assert op.loss() == pytest.approx(float(loss(trainable, (x, y))), rel=1e-14)

    # float32 parameters and data: the same to float32 precision.
    p32 = jax.tree_util.tree_map(lambda a: a.astype(np.float32), trainable)
    fixed32 = jax.tree_util.tree_map(lambda a: a.astype(np.float32), fixed)
    op32 = hessx.jax.hessian(
        lambda p, b: cross_entropy(apply({**p, **fixed32}, b[0]), b[1]),
        p32,
        (x.astype(np.float32), y),
    )
    assert op32.dtype == np.float32
    assert np.abs(_dense(op32) - reference).max() <= 2e-5 * np.abs(reference).max()


def test_lecture_network():
    def loss(p, batch):
        x, y = batch
        return jnp.mean((y - p["w2"] * p["w1"] * x) ** 2)

    params = {"w1": jnp.zeros(()), "w2": jnp.zeros(())}
    op = hessx.jax.hessian(loss, params, (np.ones(1), np.ones(1)))
    np.testing.assert_array_equal(_dense(op), [[0.0, -2.0], [-2.0, 0.0]])
    cp = hessx.classify(op, grad=op.gradient())
    assert cp.kind == "saddle"
    np.testing.assert_allclose(cp.escape_direction, [2**-0.5, 2**-0.5], atol=1e-12)
    step = hessx.escape_step(op.loss_at, op.parameters_vector(), cp.escape_direction)
    assert step.loss_after < step.loss_before == 1.0
    moved = op.load(step.params)
    assert float(moved["w1"]) == pytest.approx(step.params[0])
    assert float(params["w1"]) == 0.0


def test_batches_combine_as_the_mean_implies():
    _, apply, params, x, y = CASES[0]

    def loss(p, b):
        return cross_entropy(apply(p, b[0]), b[1])

    whole = hessx.jax.hessian(loss, params, (x, y))
    split = hessx.jax.hessian(loss, params, [(x[:3], y[:3]), (x[3:], y[3:])])
    assert (split.n_batches, split.n_examples) == (2, 8)
    np.testing.assert_allclose(_dense(split), _dense(whole), rtol=1e-12, atol=1e-14)
    assert split.loss() == pytest.approx(whole.loss(), rel=1e-14)
    theta = whole.parameters_vector() + 0.05
    assert split.loss_at(theta) == pytest.approx(whole.loss_at(theta), rel=1e-14)
    # A summed loss weights batches by one.
    summed = lambda p, b: cross_entropy(apply(p, b[0]), b[1]) * b[1].shape[0]  # noqa: E731
    s_whole = hessx.jax.hessian(summed, params, (x, y), reduction="sum")
    s_split = hessx.jax.hessian(summed, params, [(x[:3], y[:3]), (x[3:], y[3:])], reduction="sum")
    np.testing.assert_allclose(_dense(s_split), _dense(s_whole), rtol=1e-12, atol=1e-13)
    # Dict batches and generators of batches.
    as_dicts = hessx.jax.hessian(
        lambda p, b: cross_entropy(apply(p, b["x"]), b["y"]),
        params,
        ({"x": x[i : i + 4], "y": y[i : i + 4]} for i in (0, 4)),
    )
    np.testing.assert_allclose(_dense(as_dicts), _dense(whole), rtol=1e-12, atol=1e-14)


def test_ggn_is_jt_hl_j():
    _, apply, params, x, y = CASES[0]
    op = hessx.jax.hessian(
        hessx.jax.ModelLoss(apply, cross_entropy),
        params,
        [(x[:5], y[:5]), (x[5:], y[5:])],
        curvature="ggn",
    )
    flat, unravel = ravel_pytree(params)
    J = np.asarray(jax.jacobian(lambda t: apply(unravel(t), x).reshape(-1))(flat))
    z = apply(params, x)
    HL = np.asarray(jax.hessian(lambda o: cross_entropy(o.reshape(z.shape), y))(z.reshape(-1)))
    reference = J.T @ HL @ J
    assert np.abs(_dense(op) - reference).max() <= 1e-12 * np.abs(reference).max()


def mlp_loss(p, batch):
    return cross_entropy(mlp_apply(p, batch[0]), batch[1])


def test_unflatten_and_pickle():
    _, _, params, x, y = CASES[0]
    op = hessx.jax.hessian(mlp_loss, params, (x, y))
    tree = op.unflatten(np.arange(op.shape[0], dtype=np.float64))
    assert set(tree) == set(params) and tree["w1"].shape == (5, 7)
    build, kwargs = pickle.loads(pickle.dumps(op._recipe()))
    clone = build(**kwargs)
    v = np.random.default_rng(0).standard_normal(op.shape[0])
    np.testing.assert_array_equal(clone @ v, op @ v)


def test_bad_input_names_the_argument():
    _, apply, params, x, y = CASES[0]

    def loss(p, b):
        return cross_entropy(apply(p, b[0]), b[1])

    H = hessx.jax.hessian
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        H(3, params, (x, y))
    with pytest.raises(ValueError, match="curvature must be"):
        H(loss, params, (x, y), curvature="fisher")
    with pytest.raises(TypeError, match="curvature='ggn' needs the model and the loss"):
        H(loss, params, (x, y), curvature="ggn")
    with pytest.raises(ValueError, match="loss_fn must return a scalar, got shape \\(8,\\)"):
        H(lambda p, b: apply(p, b[0])[:, 0], params, (x, y))
    with pytest.raises(ValueError, match="loss_fn returned nan on batch 0"):
        H(lambda p, b: loss(p, b) * jnp.nan, params, (x, y))
    with pytest.raises(ValueError, match="data is empty"):
        H(loss, params, [])
    with pytest.raises(ValueError, match="batch 1 has arrays with different leading dimensions"):
        H(loss, params, [(x[:4], y[:4]), (x[4:], y[5:])])
    with pytest.raises(TypeError, match="data must be one batch"):
        H(loss, params, x)
    with pytest.raises(ValueError, match="params has no arrays"):
        H(loss, {}, (x, y))
    with pytest.raises(TypeError, match="params must be all float32 or all float64"):
        H(loss, {**params, "b2": jnp.zeros(3, dtype=jnp.int32)}, (x, y))
    with pytest.raises(ValueError, match="reduction must be"):
        H(loss, params, (x, y), reduction="max")
    op = H(loss, params, (x, y))
    n = op.shape[0]
    for method in (op.load, op.loss_at):
        with pytest.raises(ValueError, match=f"theta must have length {n}"):
            method(np.zeros(n - 1))
        with pytest.raises(TypeError, match="theta must be a float32 or float64 vector"):
            method(np.zeros(n, dtype=np.int32))
