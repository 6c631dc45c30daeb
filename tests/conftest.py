import importlib.util
import os

import numpy as np
import pytest

# .ci/run sets this: the framework and peer tests must run there, never be skipped.
REQUIRE_FRAMEWORKS = os.environ.get("HESSX_REQUIRE_FRAMEWORKS") == "1"
if REQUIRE_FRAMEWORKS:
    # Found, not imported: importing JAX or PyTorch starts threads, and some
    # tests fork.
    for module in ("torch", "jax", "curvlinops", "pyhessian", "distributed", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"HESSX_REQUIRE_FRAMEWORKS=1 but {module} is not installed")


def pytest_sessionfinish(session, exitstatus):
    if not REQUIRE_FRAMEWORKS:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(f"HESSX_REQUIRE_FRAMEWORKS=1: {len(skipped)} test(s) skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


def random_symmetric_dense(n, rng, dtype=np.float64):
    a = rng.standard_normal((n, n))
    return ((a + a.T) / 2).astype(dtype)
