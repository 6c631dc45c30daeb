"""classify, minimum_ratio and escape_step, against the lecture and dense references."""

import numpy as np
import pytest
from conftest import random_symmetric_dense

import hessx
from hessx._demo import lecture_hessian
from hessx.problems import laplacian_3d, laplacian_3d_eigenvalues, lecture_loss


def test_lecture_saddle_at_origin():
    grad, H = lecture_hessian(np.zeros(2))
    np.testing.assert_array_equal(H, [[0.0, -2.0], [-2.0, 0.0]])
    cp = hessx.classify(H, grad=grad)
    assert cp.kind == "saddle"
    assert cp.lambda_min == pytest.approx(-2.0) and cp.lambda_max == pytest.approx(2.0)
    assert cp.grad_norm == 0.0
    np.testing.assert_allclose(cp.escape_direction, np.array([1.0, 1.0]) / np.sqrt(2), atol=1e-12)
    step = hessx.escape_step(lecture_loss, np.zeros(2), cp.escape_direction, grad=grad)
    assert step.loss_before == 1.0 and step.loss_after < 1.0
    assert lecture_loss(step.params) == pytest.approx(step.loss_after)
    # Along (1, 1) either sign descends; the point moved along the direction.
    np.testing.assert_allclose(step.params, step.step * cp.escape_direction)


def test_lecture_valley_is_degenerate():
    grad, H = lecture_hessian(np.ones(2))
    np.testing.assert_allclose(grad, 0.0)
    cp = hessx.classify(H, grad=grad)
    assert cp.kind == "degenerate" and cp.semidefinite == "positive"
    assert cp.lambda_min == pytest.approx(0.0, abs=1e-12) and cp.lambda_max == pytest.approx(4.0)
    assert cp.escape_direction is None
    assert cp.tol > 0


def test_all_kinds():
    assert hessx.classify(np.diag([1.0, 2.0])).kind == "local_min"
    assert hessx.classify(np.diag([-1.0, -2.0])).kind == "local_max"
    cp = hessx.classify(np.diag([-1.0, 0.0]))
    assert cp.kind == "degenerate" and cp.semidefinite == "negative"
    assert hessx.classify(np.diag([1.0, 2.0]), grad=[1e-3, 0.0]).kind == "not_critical"
    assert hessx.classify(np.diag([1.0, 2.0]), grad=[1e-3, 0.0], gtol=1e-2).kind == "local_min"
    # An eigenvalue within rtol of zero counts as zero.
    assert hessx.classify(np.diag([1e-9, 1.0])).kind == "degenerate"
    assert hessx.classify(np.diag([1e-9, 1.0]), rtol=1e-12).kind == "local_min"


def test_classify_large_sparse_uses_lanczos_and_matches_analytic():
    m, weights, shift = 12, (1.0, 1.3, 0.8), 2.5
    A = laplacian_3d(m, weights=weights, shift=shift)
    w = laplacian_3d_eigenvalues(m, weights=weights, shift=shift)
    cp = hessx.classify(A, rng=0)
    assert cp.method == "lanczos" and cp.kind == "saddle"
    assert cp.lambda_min == pytest.approx(w[0], rel=1e-8)
    assert cp.lambda_max == pytest.approx(w[-1], rel=1e-8)
    v = cp.escape_direction
    assert np.linalg.norm(A @ v - w[0] * v) < 1e-6
    assert hessx.classify(laplacian_3d(m), rng=0).kind == "local_min"


def test_minimum_ratio_exact_against_eigvalsh(rng):
    M = random_symmetric_dense(120, rng)
    w = np.linalg.eigvalsh(M)
    r = hessx.minimum_ratio(M)
    assert r.method == "exact" and r.stderr == 0.0 and r.n == 120
    assert r.value == pytest.approx(np.mean(w > r.tol))
    below, within, above = r.fractions.below[0], r.fractions.within[0], r.fractions.above[0]
    assert below + within + above == pytest.approx(1.0)
    assert above == r.value


def test_minimum_ratio_zero_cluster_not_counted():
    # A network-like spectrum: many exact zeros, hidden by rounding after a rotation.
    rng = np.random.default_rng(0)
    d = np.concatenate([np.zeros(60), np.linspace(0.5, 2, 25), -np.linspace(0.1, 1, 15)])
    Q, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    H = Q @ np.diag(d) @ Q.T
    H = (H + H.T) / 2
    r = hessx.minimum_ratio(H)
    assert r.value == pytest.approx(0.25)
    assert r.fractions.within[0] == pytest.approx(0.60)
    assert r.fractions.below[0] == pytest.approx(0.15)
    # tol=0 counts the rounding noise, which is what the default avoids.
    assert hessx.minimum_ratio(H, tol=0.0).value > 0.25


def test_minimum_ratio_errors():
    with pytest.raises(ValueError, match="method must be"):
        hessx.minimum_ratio(np.eye(3), method="magic")
    with pytest.raises(ValueError, match="tol must be finite"):
        hessx.minimum_ratio(np.eye(3), tol=-1.0)
    with pytest.raises(ValueError, match="tol must be finite"):
        hessx.minimum_ratio(np.eye(3), tol=float("nan"))


def test_classify_errors():
    with pytest.raises(ValueError, match="grad must have length 2"):
        hessx.classify(np.eye(2), grad=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="grad contains NaN"):
        hessx.classify(np.eye(2), grad=[np.nan, 0.0])
    with pytest.raises(ValueError, match="rtol must be finite"):
        hessx.classify(np.eye(2), rtol=-1.0)


def test_escape_step_descends_and_never_returns_higher_loss():
    grad, _ = lecture_hessian(np.array([0.3, 0.2]))
    x0 = np.array([0.3, 0.2])
    s = hessx.escape_step(lecture_loss, x0, [1.0, 1.0], grad=grad)
    assert s.loss_after < s.loss_before
    step_vector = s.params - x0
    assert grad @ step_vector <= 0
    # A direction along which the loss only rises: a ValueError, not a worse point.
    with pytest.raises(ValueError, match="no decrease"):
        hessx.escape_step(lambda w: float(w @ w), np.zeros(3), [1.0, 0.0, 0.0])


def test_escape_step_expands_and_backtracks():
    # Minimum along the line at t = 3 (max_step 4): expansion must get near it.
    f = lambda w: float((w[0] - 3.0) ** 2)  # noqa: E731
    s = hessx.escape_step(f, [0.0], [1.0], max_step=4.0)
    assert s.step == pytest.approx(2.0) or s.step == pytest.approx(4.0)
    assert s.loss_after < 9.0
    # A narrow well: the first trial overshoots and the step must shrink.
    g = lambda w: float(-np.exp(-((w[0] - 0.01) ** 2) / 1e-4) + 1.0)  # noqa: E731
    s = hessx.escape_step(g, [0.0], [1.0], max_step=1.0)
    assert s.loss_after < s.loss_before and 0 < s.step < 0.1


def test_escape_step_errors():
    f = lambda w: float(w @ w)  # noqa: E731
    with pytest.raises(ValueError, match="direction must not be the zero vector"):
        hessx.escape_step(f, [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="direction must have length 2"):
        hessx.escape_step(f, [1.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="max_step must be positive"):
        hessx.escape_step(f, [1.0, 1.0], [1.0, 0.0], max_step=0.0)
    with pytest.raises(TypeError, match="loss must be callable"):
        hessx.escape_step(None, [1.0], [1.0])
    with pytest.raises(TypeError, match="loss must return a real number"):
        hessx.escape_step(lambda w: "x", [1.0], [1.0])
    with pytest.raises(ValueError, match="params contains NaN"):
        hessx.escape_step(f, [np.nan], [1.0])
