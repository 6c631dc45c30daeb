"""hessx.models.MLP: gradients and HVPs against finite differences and closed forms,
dense Hessians through eigsh/classify/minimum_ratio, and bad input."""

import numpy as np
import pytest

import hessx
from hessx.models import MLP, load_digits

ACTIVATIONS = ["tanh", "relu", "gelu", "sigmoid", "identity"]


def small_problem(activation, loss, bias=True, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    net = MLP([3, 5, 4, 3], activation=activation, loss=loss, bias=bias, dtype=dtype)
    X = rng.standard_normal((7, 3)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, 3, size=7)
    else:
        y = rng.standard_normal((7, 3)).astype(dtype)
    params = (0.7 * rng.standard_normal(net.n_params)).astype(dtype)
    return net, X, y, params


def dense_hessian(net, params, X, y):
    H = net.hessian(params, X, y)
    n = net.n_params
    return np.column_stack([H @ e for e in np.eye(n)])


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradient_and_hvp_match_finite_differences(activation, loss):
    net, X, y, p = small_problem(activation, loss)
    _, g = net.loss_and_grad(p, X, y)
    h = 1e-6
    fd_grad = np.array(
        [(net.loss(p + h * e, X, y) - net.loss(p - h * e, X, y)) / (2 * h) for e in np.eye(p.size)]
    )
    np.testing.assert_allclose(g, fd_grad, rtol=1e-6, atol=1e-8)
    v = np.random.default_rng(1).standard_normal(p.size)
    eps = 1e-5
    fd_hvp = (net.loss_and_grad(p + eps * v, X, y)[1] - net.loss_and_grad(p - eps * v, X, y)[1]) / (
        2 * eps
    )
    hv = net.hvp(p, X, y, v)
    np.testing.assert_allclose(hv, fd_hvp, rtol=1e-5, atol=1e-7 * np.abs(hv).max())
    # The cached operator gives the same product, and the Hessian is symmetric.
    np.testing.assert_allclose(net.hessian(p, X, y) @ v, hv, rtol=1e-12, atol=1e-14)
    u = np.random.default_rng(2).standard_normal(p.size)
    assert u @ net.hvp(p, X, y, v) == pytest.approx(v @ net.hvp(p, X, y, u), rel=1e-10)


def test_ggn_is_psd_and_differs_from_hessian_away_from_zero_residual():
    net, X, y, p = small_problem("tanh", "cross_entropy")
    G = np.column_stack([net.ggn_vp(p, X, y, e) for e in np.eye(net.n_params)])
    np.testing.assert_allclose(G, G.T, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() > -1e-10
    H = dense_hessian(net, p, X, y)
    assert np.linalg.eigvalsh(H).min() < -1e-6  # the true Hessian sees negative curvature
    Gop = net.ggn(p, X, y)
    e0 = np.eye(net.n_params)[0]
    np.testing.assert_allclose(Gop @ e0, G[:, 0], rtol=1e-12)


@pytest.mark.parametrize("w", [(0.0, 0.0), (1.0, 1.0), (0.3, -1.7), (2.0, 0.25), (-0.6, 0.9)])
def test_lecture_network_closed_forms(w):
    net = MLP([1, 1, 1], activation="identity", bias=False, loss="mse", dtype=np.float64)
    X, y = np.array([[1.0]]), np.array([[1.0]])
    w1, w2 = w
    p = np.array(w)
    loss, grad = net.loss_and_grad(p, X, y)
    assert loss == pytest.approx((1 - w1 * w2) ** 2, abs=1e-15)
    np.testing.assert_allclose(grad, [-2 * (1 - w1 * w2) * w2, -2 * (1 - w1 * w2) * w1], atol=1e-14)
    H = dense_hessian(net, p, X, y)
    expected = np.array([[2 * w2**2, 4 * w1 * w2 - 2], [4 * w1 * w2 - 2, 2 * w1**2]])
    np.testing.assert_allclose(H, expected, atol=1e-14)


def test_lecture_network_classification_and_escape():
    net = MLP([1, 1, 1], activation="identity", bias=False, loss="mse", dtype=np.float64)
    X, y = np.array([[1.0]]), np.array([[1.0]])
    cp = hessx.classify(
        net.hessian(np.zeros(2), X, y), grad=net.loss_and_grad(np.zeros(2), X, y)[1]
    )
    assert cp.kind == "saddle"
    np.testing.assert_allclose(cp.escape_direction, [2**-0.5, 2**-0.5], atol=1e-12)
    step = hessx.escape_step(lambda w: net.loss(w, X, y), np.zeros(2), cp.escape_direction)
    assert step.loss_after < 1.0
    cp = hessx.classify(net.hessian(np.ones(2), X, y))
    assert cp.kind == "degenerate" and cp.semidefinite == "positive"


def test_tiny_mlp_dense_hessian_through_solvers():
    net, X, y, p = small_problem("tanh", "cross_entropy", seed=3)
    H = dense_hessian(net, p, X, y)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    w_all = np.linalg.eigvalsh(H)
    op = net.hessian(p, X, y)
    w = hessx.eigsh(op, k=4, which="BE", return_eigenvectors=False, rng=0)
    np.testing.assert_allclose(w, np.concatenate([w_all[:2], w_all[-2:]]), atol=1e-9)
    cp = hessx.classify(op, dense_limit=0, rng=0)  # force the Lanczos path
    assert cp.lambda_min == pytest.approx(w_all[0], abs=1e-8)
    assert cp.lambda_max == pytest.approx(w_all[-1], abs=1e-8)
    r = hessx.minimum_ratio(op)
    assert r.value == pytest.approx(np.mean(w_all > r.tol))


def test_float32_agrees_with_float64():
    net64, X, y, p = small_problem("gelu", "mse")
    net32 = MLP([3, 5, 4, 3], activation="gelu", loss="mse", dtype=np.float32)
    p32, X32, y32 = p.astype(np.float32), X.astype(np.float32), y.astype(np.float32)
    v = np.random.default_rng(4).standard_normal(p.size)
    l64, g64 = net64.loss_and_grad(
        p32.astype(np.float64), X32.astype(np.float64), y32.astype(np.float64)
    )
    l32, g32 = net32.loss_and_grad(p32, X32, y32)
    assert g32.dtype == np.float32
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)
    h64 = net64.hvp(
        p32.astype(np.float64),
        X32.astype(np.float64),
        y32.astype(np.float64),
        v.astype(np.float32).astype(np.float64),
    )
    h32 = net32.hvp(p32, X32, y32, v.astype(np.float32))
    np.testing.assert_allclose(h32, h64, rtol=1e-3, atol=1e-4 * np.abs(h64).max())


def test_unflatten_layout_and_init():
    net = MLP([4, 3, 2], dtype=np.float64)
    assert net.n_params == 4 * 3 + 3 + 3 * 2 + 2
    p = np.arange(net.n_params, dtype=np.float64)
    (W1, b1), (W2, b2) = net.unflatten(p)
    np.testing.assert_array_equal(W1, np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(b1, [12, 13, 14])
    np.testing.assert_array_equal(W2, np.arange(15, 21).reshape(3, 2))
    np.testing.assert_array_equal(b2, [21, 22])
    a, b = net.init(rng=5), net.init(rng=5)
    np.testing.assert_array_equal(a, b)
    (W1, b1), _ = net.unflatten(a)
    assert np.all(b1 == 0) and 0 < np.abs(W1).max() <= np.sqrt(6 / 7) + 1e-12
    assert MLP([2, 2], bias=False).unflatten(np.zeros(4, dtype=np.float32))[0][1] is None


def test_load_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and y.shape == (1797,)
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(
        np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )


def test_bad_input():
    with pytest.raises(ValueError, match="sizes must have at least two"):
        MLP([3])
    with pytest.raises(ValueError, match="sizes must all be positive"):
        MLP([3, 0, 2])
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP([3, 2], activation="swish")
    with pytest.raises(ValueError, match="loss must be one of"):
        MLP([3, 2], loss="hinge")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        MLP([3, 2], dtype=np.int32)
    net, X, y, p = small_problem("tanh", "cross_entropy")
    with pytest.raises(ValueError, match="params must be a vector of length"):
        net.loss(p[:-1], X, y)
    with pytest.raises(ValueError, match=r"X must have shape \(batch, 3\)"):
        net.loss(p, X[:, :2], y)
    with pytest.raises(ValueError, match="class labels must be in 0..2"):
        net.loss(p, X, np.full(7, 3))
    with pytest.raises(ValueError, match="integer class labels"):
        net.loss(p, X, np.full(7, 0.5))
    with pytest.raises(ValueError, match=r"y must have shape \(7,\)"):
        net.loss(p, X, y[:5])
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        net.loss(p, bad, y)
    with pytest.raises(ValueError, match="params contains NaN"):
        net.loss(np.full_like(p, np.inf), X, y)
    with pytest.raises(ValueError, match="v must be a vector of length"):
        net.hvp(p, X, y, np.ones(3))
    with pytest.raises(ValueError, match="v contains NaN"):
        net.hvp(p, X, y, np.full_like(p, np.nan))
    net_mse, Xm, ym, pm = small_problem("tanh", "mse")
    with pytest.raises(ValueError, match=r"y must have shape \(7, 3\) for mse"):
        net_mse.loss(pm, Xm, ym[:, :2])
    net32 = MLP([3, 5, 4, 3], dtype=np.float32)
    with pytest.raises(ValueError, match="params is float64 but the model is float32"):
        net32.loss(p + 1e-9, X.astype(np.float32), y)
    # A lossless conversion is accepted.
    net32.loss(np.zeros(net32.n_params), X.astype(np.float32), y)
