"""The command line: `hessx demo` reproduces the lecture's example; `hessx bench` runs."""

import subprocess
import sys


def run(*args, timeout=300):
    out = subprocess.run(
        [sys.executable, "-m", "hessx", *args], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_reproduces_the_lecture():
    out = run("demo", "--quick")
    # The explicit Hessian and the MLP path both give the lecture's numbers.
    assert out.count("H = [[ 0.000, -2.000]") == 2
    assert "eigenvalues -2.000, +2.000 -> saddle" in out
    assert "escape direction (eigenvector of -2.000): [0.7071 0.7071]" in out
    assert "L 1.000 -> 0.250" in out
    assert "degenerate (positive semidefinite" in out
    assert "gradient = [0. 0.]" in out
    assert "minimum ratio (exact):" in out
    assert "classify (gtol" in out


def test_bench_runs_small():
    out = run("bench", "--size", "12", "--repeat", "1")
    assert "SpMV" in out and "eigsh k=6 LA" in out
    assert "DISAGREE" not in out


def test_version_and_help_list_every_command():
    import hessx

    assert run("--version").strip() == f"hessx {hessx.__version__}"
    out = run("--help")
    for command in ("demo", "bench", "experiment"):
        assert command in out


def test_experiment_without_matplotlib_fails_before_training():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import importlib.util, hessx.cli\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'matplotlib' else 1\n"
        "sys.exit(hessx.cli.main(['experiment', '--n', '1000', '--output', 'x.png']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs matplotlib" in out.stderr
    assert "network" not in out.stdout  # no network was trained
