"""Turn a pytest-benchmark JSON file into the Markdown tables of BENCHMARKS.md.

python3 -m pytest benches --benchmark-only --benchmark-json=bench.json
python3 benches/report.py bench.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    data = json.load(open(path))
    machine = data.get("machine_info", {})
    print(
        f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores; Python {machine.get('python_version')}"
    )
    pairs: dict[tuple, dict] = defaultdict(dict)
    singles = []
    for b in data["benchmarks"]:
        params = dict(b.get("params") or {})
        impl = params.pop("impl", None)
        key = (b["group"], tuple(sorted(params.items())))
        entry = (b["stats"]["median"], b.get("extra_info", {}))
        if impl:
            pairs[key][impl] = entry
        else:
            singles.append((b["group"], b["name"], entry))
    print("\n| benchmark | hessx | SciPy (median) | hessx (median) | speed-up | details |")
    print("|---|---|---|---|---|---|")
    for (group, _), impls in sorted(pairs.items()):
        if "scipy" not in impls:
            continue
        ts, es = impls["scipy"]
        for impl in ("hessx", "hessx_upper", "hessx_nocheck"):
            if impl not in impls:
                continue
            th, eh = impls[impl]
            details = []
            if "n_matvec" in es:
                details.append(f"matvecs {es['n_matvec']} vs {eh['n_matvec']}")
                details.append(
                    f"max rel. residual {es['max_rel_residual']:.1e} vs "
                    f"{eh['max_rel_residual']:.1e}"
                )
            if "orthogonality" in es:
                details.append(
                    f"max abs(VᵀV − I) {es['orthogonality']:.1e} vs {eh['orthogonality']:.1e}"
                )
            if "true_extreme_found" in es:
                details.append(
                    f"true extreme six found {es['true_extreme_found']} vs "
                    f"{eh['true_extreme_found']}"
                )
            if "time_over_matvec_time" in eh:
                details.append(f"hessx time / its products' time {eh['time_over_matvec_time']:.2f}")
            if "GB/s" in eh:
                details.append(f"{es['GB/s']:.1f} vs {eh['GB/s']:.1f} GB/s")
            storage = "upper" if impl == "hessx_upper" else "full"
            if "n_matvec" in es:
                storage = eh.get("storage", "auto")
                if impl == "hessx_nocheck":
                    storage += ", no multiplicity check"
            print(
                f"| {group} | {storage} | {fmt(ts)} | {fmt(th)} | {ts / th:.2f}x | "
                f"{'; '.join(details)} |"
            )
    print("\n| benchmark | median | details |")
    print("|---|---|---|")
    for _group, name, (t, extra) in singles:
        info = "; ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in extra.items()
            if k not in ("eigenvalues", "residuals")
        )
        print(f"| {name} | {fmt(t)} | {info} |")


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main(sys.argv[1])
