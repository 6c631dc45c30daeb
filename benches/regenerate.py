"""Regenerate the benchmark tables and figures of the documentation, in one command.

    python3 benches/regenerate.py            # everything (about an hour on 2 cores)
    python3 benches/regenerate.py --tables   # the benchmark tables only

Runs the pytest-benchmark suite into a JSON file, turns it into
docs/benchmark_tables.md (benches/report.py), and reruns the examples that
draw the figures in docs/. BENCHMARKS.md, which says what the numbers mean
on which machine, is curated by hand from these.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = [
    ["examples/mlp_hessian_spectrum.py", "30", "80", "docs/mlp_hessian_density.png"],
    ["examples/torch_cnn_spectrum.py", "12", "60", "docs/torch_cnn_density.png"],
    ["examples/minimum_ratio_vs_loss.py"],
]


def run(*args: str) -> str:
    print("$", " ".join(args), flush=True)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", action="store_true", help="only the benchmark tables")
    args = parser.parse_args()
    results = ROOT / "docs" / "_generated" / "bench.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    run("-m", "pytest", "benches", "--benchmark-only", f"--benchmark-json={results}", "-q")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tables = run("benches/report.py", str(results))
    (ROOT / "docs" / "benchmark_tables.md").write_text(
        f"Generated {stamp} by `python3 benches/regenerate.py`.\n\n{tables}"
    )
    if not args.tables:
        for figure in FIGURES:
            print(run(*figure))


if __name__ == "__main__":
    main()
