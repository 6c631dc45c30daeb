"""The lecture's experiment machinery, on a tiny run."""

import numpy as np

from hessx.experiments import _minimise_gradient_norm, minimum_ratio_vs_loss
from hessx.models import MLP, load_digits


def test_gradient_norm_minimisation_reaches_a_critical_point():
    X, y = load_digits(np.float64)
    X, y = X[:60], y[:60]
    net = MLP([64, 4, 10], dtype=np.float64)
    params = net.init(rng=1)
    g0 = np.linalg.norm(net.loss_and_grad(params, X, y)[1])
    _, _, gnorm = _minimise_gradient_norm(net, params, X, y, steps=30, gtol=1e-9)
    assert gnorm < 1e-6 * g0


def test_samples_are_consistent():
    samples = minimum_ratio_vs_loss(2, hidden=3, n_examples=40, norm_steps=50, progress=False)
    assert len(samples) == 2
    for s in samples:
        assert abs(s.below + s.within + s.above - 1.0) < 1e-12
        assert s.minimum_ratio == s.above and 0.0 <= s.minimum_ratio <= 1.0
        assert np.isfinite(s.loss) and s.grad_norm >= 0
