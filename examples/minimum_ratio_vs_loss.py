"""The lecture's experiment: loss against minimum ratio at critical points of small MLPs.

    python3 examples/minimum_ratio_vs_loss.py [n_networks] [output.png]

(also `hessx experiment`). Writes docs/minimum_ratio_vs_loss.png by default.
"""

import sys

from hessx.experiments import minimum_ratio_vs_loss, plot_minimum_ratio_vs_loss

n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
out = sys.argv[2] if len(sys.argv) > 2 else "docs/minimum_ratio_vs_loss.png"
samples = minimum_ratio_vs_loss(n)
plot_minimum_ratio_vs_loss(samples, out)
ratios = [s.minimum_ratio for s in samples]
print(
    f"minimum ratio: min {min(ratios):.3f}, median {sorted(ratios)[len(ratios) // 2]:.3f}, "
    f"max {max(ratios):.3f}; figure written to {out}"
)
