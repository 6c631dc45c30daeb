"""Benchmark ids say the size they run: the smoke run's 27,000-row problems
must not be reported as "1m" (they were)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"


def collected_ids(small):
    env = dict(os.environ, HESSX_BENCH_SMALL="1" if small else "0")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            str(BENCHES / "bench_vs_scipy.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=BENCHES.parent,
        check=False,
    )
    if "No module named 'pytest_benchmark'" in out.stdout + out.stderr:
        pytest.skip("pytest-benchmark is not installed")
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize(("small", "large", "medium"), [(True, "27k", "8k"), (False, "1m", "97k")])
def test_benchmark_ids_carry_the_rows_they_run(small, large, medium):
    ids = collected_ids(small)
    spmv = [i for i in ids if "test_spmv[" in i]
    eigsh = [i for i in ids if "test_eigsh_medium[" in i]
    assert spmv and all(f"_{large}-" in i for i in spmv), spmv
    assert eigsh and all(f"_{medium}-" in i for i in eigsh), eigsh
    wrong = "1m" if small else "27k"
    assert not any(wrong in i for i in ids)
