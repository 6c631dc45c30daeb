"""Matrix-free Hessians of a 1.13M-parameter MLP (64-1024-1024-10, float32, batch 1797,
tanh, cross-entropy on the 8x8 digits), side by side with JAX when it is installed.

Run: python3 -m pytest benches/bench_mlp.py --benchmark-only
"""

import numpy as np
import pytest
from conftest import SMALL

import hessx
from hessx.models import MLP, load_digits

# The smoke run (HESSX_BENCH_SMALL=1) checks the code on a 64-64-64-10 network.
SIZES = [64, 64, 64, 10] if SMALL else [64, 1024, 1024, 10]
GROUP = f"mlp {SIZES}"


@pytest.fixture(scope="module")
def problem():
    X, y = load_digits(np.float32)
    net = MLP(SIZES, activation="tanh", loss="cross_entropy", dtype=np.float32)
    params = net.init(rng=0)
    v = np.random.default_rng(1).standard_normal(net.n_params).astype(np.float32)
    return net, params, X, y, v


def test_loss_and_grad(benchmark, problem):
    net, params, X, y, _ = problem
    benchmark.group = GROUP
    loss, grad = benchmark(net.loss_and_grad, params, X, y)
    assert np.isfinite(loss) and grad.shape == (net.n_params,)


def test_hvp_uncached(benchmark, problem):
    net, params, X, y, v = problem
    benchmark.group = GROUP
    hv = benchmark(net.hvp, params, X, y, v)
    # Exactness spot check against the same network in float64 (float32 finite
    # differences are too coarse to check an exact product).
    net64 = MLP(SIZES, activation="tanh", loss="cross_entropy", dtype=np.float64)
    f64 = [a.astype(np.float64) for a in (params, X, v)]
    hv64 = net64.hvp(f64[0], f64[1], y, f64[2])
    assert np.linalg.norm(hv - hv64) <= 1e-3 * np.linalg.norm(hv64)


def test_hessian_product_warm(benchmark, problem):
    net, params, X, y, v = problem
    benchmark.group = GROUP
    H = net.hessian(params, X, y)
    v64 = v.astype(np.float64)
    out = benchmark(H.matvec, v64)
    np.testing.assert_allclose(
        out, net.hvp(params, X, y, v), rtol=1e-3, atol=1e-4 * np.abs(out).max()
    )


def test_lanczos_100_steps(benchmark, problem):
    net, params, X, y, _ = problem
    benchmark.group = GROUP + " lanczos"
    H = net.hessian(params, X, y)
    res = benchmark.pedantic(
        lambda: hessx.lanczos(H, k=1, which="BE", ncv=100, maxiter=1, rng=0), rounds=1, iterations=1
    )
    # At most 100 Lanczos steps (fewer when the pair converges earlier, as on
    # the smoke run's small network), then one product for the final
    # Rayleigh-Ritz step (maxiter=1 leaves no cycle for the multiplicity search).
    assert res.n_matvec <= 100 + 1
    benchmark.extra_info["n_matvec"] = res.n_matvec
    benchmark.extra_info["eigenvalues"] = res.eigenvalues.tolist()
    benchmark.extra_info["residuals"] = res.residuals.tolist()


def test_jax_hvp(benchmark, problem):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    net, params, X, y, v = problem
    layers = [(jnp.asarray(W), jnp.asarray(b)) for W, b in net.unflatten(params)]
    tangent = [(jnp.asarray(W), jnp.asarray(b)) for W, b in net.unflatten(v)]
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def loss(layers):
        h = Xj
        for W, b in layers[:-1]:
            h = jnp.tanh(h @ W + b)
        W, b = layers[-1]
        logits = h @ W + b
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(len(yj)), yj])

    hvp = jax.jit(lambda p, t: jax.jvp(jax.grad(loss), (p,), (t,))[1])
    grad = jax.jit(jax.grad(loss))
    jax.block_until_ready(hvp(layers, tangent))
    jax.block_until_ready(grad(layers))
    benchmark.group = GROUP
    out = benchmark(lambda: jax.block_until_ready(hvp(layers, tangent)))
    flat = np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)]) for W, b in out])
    ours = net.hvp(params, X, y, v)
    assert np.linalg.norm(flat - ours) <= 1e-3 * np.linalg.norm(ours)
    import time

    start = time.perf_counter()
    for _ in range(5):
        jax.block_until_ready(grad(layers))
    benchmark.extra_info["jax_grad_ms"] = (time.perf_counter() - start) / 5 * 1e3
