"""The `hessx` command: the lecture's example, the speed comparison, the experiment."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

__all__ = ["main"]


def _print_matrix(name: str, m: np.ndarray) -> None:
    rows = ["[" + ", ".join(f"{v:6.3f}" for v in row) + "]" for row in np.atleast_2d(m)]
    print(f"  {name} = [" + ("\n" + " " * (len(name) + 6)).join(rows) + "]")


def demo(args: argparse.Namespace) -> int:
    """Reproduce the lecture's worked example, then analyse a trained network."""
    import hessx
    from hessx.problems import lecture_loss

    print("hessx demo — the lecture's worked example: L(w1, w2) = (1 - w1*w2)^2")
    print()
    from hessx import _demo

    _demo.lecture_example(hessx, lecture_loss, _print_matrix)
    _demo.trained_network(hessx, _print_matrix, quick=args.quick)
    return 0


def _timeit(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def bench(args: argparse.Namespace) -> int:
    """Time hessx against SciPy on the same problems, in the same process."""
    import scipy.sparse.linalg as spla

    import hessx
    from hessx.problems import laplacian_3d, random_symmetric

    m = args.size
    print(f"hessx bench — {hessx.get_num_threads()} threads; median of {args.repeat} runs")
    print("hessx with storage='full' (SciPy's arrays, borrowed) and 'upper' (half the bytes)")
    problems = [
        (f"3D Laplacian {m}^3", laplacian_3d(m, weights=(1.0, 1.1, 1.2), shift=1.0)),
        (f"random 16/row n={m**3}", random_symmetric(m**3, 16, rng=0)),
    ]
    header = f"{'problem':28s} {'operation':22s} {'scipy':>10s} {'hessx':>10s} {'speed-up':>9s}"
    print(header)
    print("-" * len(header))
    for name, A in problems:
        full = hessx.CsrOperator(A)
        half = hessx.CsrOperator(A, storage="upper")
        x = np.random.default_rng(0).standard_normal(A.shape[0])
        X = np.random.default_rng(1).standard_normal((A.shape[0], 8))
        rows = [
            ("SpMV", lambda A=A, x=x: A @ x, [("full", full, x), ("upper", half, x)]),
            ("SpMM (8 vectors)", lambda A=A, X=X: A @ X, [("full", full, X), ("upper", half, X)]),
        ]
        for label, ref, ours in rows:
            t_ref, y_ref = _timeit(ref, args.repeat)
            for storage, op, arg in ours:
                t_ours, y_ours = _timeit(partial(op.__matmul__, arg), args.repeat)
                assert np.allclose(y_ref, y_ours, rtol=1e-10, atol=1e-10), "results disagree"
                print(
                    f"{name:28s} {label + ' ' + storage:22s} {t_ref * 1e3:8.2f}ms "
                    f"{t_ours * 1e3:8.2f}ms {t_ref / t_ours:8.2f}x"
                )
        for which in ("LA", "SA"):
            v0 = np.random.default_rng(2).standard_normal(A.shape[0])
            t_ref, (w_ref, _) = _timeit(
                partial(spla.eigsh, A, k=6, which=which, tol=1e-8, v0=v0), 1
            )
            t_ours, (w_ours, _) = _timeit(
                partial(hessx.eigsh, half, k=6, which=which, tol=1e-8, v0=v0), 1
            )
            agree = np.allclose(np.sort(w_ref), np.sort(w_ours), rtol=1e-6, atol=1e-6)
            mark = "" if agree else "  (eigenvalues DISAGREE)"
            print(
                f"{name:28s} {'eigsh k=6 ' + which + ' upper':22s} "
                f"{t_ref:9.3f}s {t_ours:9.3f}s {t_ref / t_ours:8.2f}x{mark}"
            )
    return 0


def experiment(args: argparse.Namespace) -> int:
    """The lecture's experiment: loss against minimum ratio for many small networks."""
    from hessx.experiments import minimum_ratio_vs_loss, plot_minimum_ratio_vs_loss

    if args.output:
        # Checked before minutes of training, not after them.
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            print(
                "hessx experiment --output needs matplotlib: pip install 'hessx[plot]' "
                "(or leave out --output)",
                file=sys.stderr,
            )
            return 2
    print(f"hessx experiment — {args.n} small MLPs driven to near-critical points")
    samples = minimum_ratio_vs_loss(args.n, rng=args.seed)
    ratios = np.array([s.minimum_ratio for s in samples])
    print(
        f"minimum ratio over {len(samples)} networks: min {ratios.min():.3f}, "
        f"median {np.median(ratios):.3f}, max {ratios.max():.3f}"
    )
    if args.output:
        plot_minimum_ratio_vs_loss(samples, args.output)
        print(f"figure written to {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from hessx import __version__

    parser = argparse.ArgumentParser(
        prog="hessx",
        description="Hessians of large models: saddle or minimum, and which way is down.",
    )
    parser.add_argument("--version", action="version", version=f"hessx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,bench,experiment}")
    p_demo = sub.add_parser("demo", help="the lecture's worked example and a trained network")
    p_demo.add_argument("--quick", action="store_true", help="a smaller network (for tests)")
    p_demo.set_defaults(func=demo)
    p_bench = sub.add_parser("bench", help="speed comparison against SciPy")
    p_bench.add_argument("--size", type=int, default=60, help="grid side m (n = m^3), default 60")
    p_bench.add_argument("--repeat", type=int, default=5)
    p_bench.set_defaults(func=bench)
    p_exp = sub.add_parser("experiment", help="the lecture's loss vs minimum ratio experiment")
    p_exp.add_argument("--n", type=int, default=40, help="number of networks (default 40)")
    p_exp.add_argument("--seed", type=int, default=0)
    p_exp.add_argument("--output", default=None, help="PNG path for the figure")
    p_exp.set_defaults(func=experiment)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
