"""hessx's three model paths agree: the Rust MLP, the same network written in
PyTorch (hessx.torch) and in JAX (hessx.jax) give the same Hessian and
Gauss-Newton products in float64."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import hessx.jax  # noqa: E402
import hessx.torch  # noqa: E402
from hessx.models import MLP  # noqa: E402

SIZES = [6, 9, 7, 4]
CASES = [("tanh", "cross_entropy"), ("gelu", "mse"), ("sigmoid", "cross_entropy")]


def _torch_activation(name):
    return {"tanh": torch.nn.Tanh(), "gelu": torch.nn.GELU(), "sigmoid": torch.nn.Sigmoid()}[name]


def _jax_activation(name):
    return {
        "tanh": jnp.tanh,
        "gelu": lambda h: jax.nn.gelu(h, approximate=False),
        "sigmoid": jax.nn.sigmoid,
    }[name]


def _torch_loss(loss):
    if loss == "cross_entropy":
        return torch.nn.CrossEntropyLoss()
    return lambda out, y: ((out - y) ** 2).sum(dim=1).mean()  # hessx's MSE: no 1/2


def _jax_output_loss(loss):
    if loss == "cross_entropy":
        return lambda z, y: jnp.mean(jax.nn.logsumexp(z, axis=1) - z[jnp.arange(y.shape[0]), y])
    return lambda z, y: jnp.mean(jnp.sum((z - y) ** 2, axis=1))


def _problem(activation, loss):
    rng = np.random.default_rng(11)
    net = MLP(SIZES, activation=activation, loss=loss, dtype=np.float64)
    params = net.init(rng=5)
    X = rng.standard_normal((13, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 13) if loss == "cross_entropy" else rng.standard_normal((13, 4))
    return net, params, X, y


def _torch_model(net, params, activation):
    layers = []
    for i, (W, b) in enumerate(net.unflatten(params)):
        linear = torch.nn.Linear(W.shape[0], W.shape[1]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(SIZES) - 2:
            layers.append(_torch_activation(activation))
    return torch.nn.Sequential(*layers)


def _torch_order(net):
    """Indices taking the Rust MLP's flat order (W as (in, out), then b) to
    torch's (weight as (out, in), then bias)."""
    return np.concatenate(
        [np.concatenate([W.T.ravel(), b]) for W, b in net.unflatten(np.arange(net.n_params))]
    ).astype(np.int64)


def _jax_apply(activation):
    act = _jax_activation(activation)

    def apply(layers, X):
        h = X
        for W, b in layers[:-1]:
            h = act(h @ W + b)
        W, b = layers[-1]
        return h @ W + b

    return apply


@pytest.mark.parametrize("activation, loss", CASES)
def test_rust_torch_and_jax_products_agree(activation, loss):
    net, params, X, y = _problem(activation, loss)
    order = _torch_order(net)
    model = _torch_model(net, params, activation)
    targets = torch.from_numpy(y if loss == "cross_entropy" else y.copy())
    if loss == "cross_entropy":
        targets = targets.long()
    jax_layers = [(jnp.asarray(W), jnp.asarray(b)) for W, b in net.unflatten(params)]
    model_loss = hessx.jax.ModelLoss(_jax_apply(activation), _jax_output_loss(loss))
    rng = np.random.default_rng(2)
    for curvature in ("hessian", "ggn"):
        rust = net.hessian(params, X, y) if curvature == "hessian" else net.ggn(params, X, y)
        torch_op = hessx.torch.hessian(
            model, _torch_loss(loss), (torch.from_numpy(X), targets), curvature=curvature
        )
        jax_op = hessx.jax.hessian(model_loss, jax_layers, (X, y), curvature=curvature)
        np.testing.assert_array_equal(torch_op.parameters_vector(), params[order])
        np.testing.assert_array_equal(jax_op.parameters_vector(), params)
        assert torch_op.loss() == pytest.approx(net.loss(params, X, y), rel=1e-12)
        assert jax_op.loss() == pytest.approx(net.loss(params, X, y), rel=1e-12)
        for _ in range(3):
            v = rng.standard_normal(net.n_params)
            reference = rust @ v
            scale = np.linalg.norm(reference)
            assert np.linalg.norm(torch_op @ v[order] - reference[order]) <= 1e-10 * scale
            assert np.linalg.norm(jax_op @ v - reference) <= 1e-10 * scale
