"""Saddle or minimum? The Hessian of a 1.08M-parameter PyTorch CNN, end to end.

    python3 examples/torch_cnn_spectrum.py [n_probes] [n_steps] [output.png]

A CNN (two 3x3 convolutions, max-pooling, two linear layers; tanh) trained
briefly with Adam on the 1797 bundled 8x8 digits (no download). hessx then
looks at the Hessian of the loss over all of them through `hessx.torch`:
the top-5 eigenvalues, the trace with its standard error, the minimum ratio
with its banded fractions and error bars, the classification of the point,
an escape step along negative curvature if there is any, and the spectral
density (saved as a figure). About 5-8 minutes on 2 cores; needs
`pip install 'hessx[torch,plot]'`.
"""

import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import hessx  # noqa: E402
import hessx.torch  # noqa: E402
from hessx.models import load_digits  # noqa: E402

n_probes = int(sys.argv[1]) if len(sys.argv) > 1 else 12
n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
out = sys.argv[3] if len(sys.argv) > 3 else "docs/torch_cnn_density.png"
clock = time.perf_counter()


def stage(what: str) -> None:
    print(f"[{time.perf_counter() - clock:6.1f} s] {what}", flush=True)


torch.manual_seed(0)
X, y = load_digits(np.float32)
images = torch.from_numpy(X).view(-1, 1, 8, 8)
labels = torch.from_numpy(y.astype(np.int64))
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1),
    torch.nn.Tanh(),
    torch.nn.Conv2d(16, 32, 3, padding=1),
    torch.nn.Tanh(),
    torch.nn.MaxPool2d(2),
    torch.nn.Flatten(),
    torch.nn.Linear(32 * 4 * 4, 2048),
    torch.nn.Tanh(),
    torch.nn.Linear(2048, 10),
)
loss_fn = torch.nn.CrossEntropyLoss()
n_params = sum(p.numel() for p in model.parameters())

optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(images, labels), batch_size=128, shuffle=True
)
for _epoch in range(8):  # brief training: the point is not a minimum yet
    for xb, yb in loader:
        optimizer.zero_grad()
        loss_fn(model(xb), yb).backward()
        optimizer.step()
stage(f"CNN with {n_params:,} parameters trained for 8 epochs")

# The Hessian of the loss over all 1797 digits (one batch: its gradient graph
# is kept between products, about 1.5 gradients per product).
H = hessx.torch.hessian(model, loss_fn, (images, labels))
grad = H.gradient()
stage(
    f"operator {H.shape}, loss {H.loss():.4f}, |grad| {np.linalg.norm(grad):.2e}, "
    f"graph {H.graph_bytes / 2**20:.0f} MiB"
)

top = np.sort(hessx.eigsh(H, k=5, which="LA", tol=1e-3, return_eigenvectors=False, rng=0))[::-1]
stage(f"top-5 eigenvalues {np.array2string(top, precision=4)} ({H.n_products} products so far)")

estimate, stderr = hessx.trace(H, n_probes=90, rng=0)
stage(f"trace {estimate:.4f} ± {stderr:.4f} (Hutch++, 90 products)")

density = hessx.spectral_density(H, n_probes=n_probes, n_steps=n_steps, rng=0)
scale = float(np.max(np.abs(density.nodes)))
tol = 1e-3 * scale  # eigenvalues within ±tol count as zero
f = density.fractions(tol)
stage(
    f"SLQ {n_probes} probes x {n_steps} steps; eigenvalues in "
    f"[{density.nodes.min():.3e}, {density.nodes.max():.3e}]"
)
print(
    f"  minimum ratio (share > +{tol:.1e}) {f.above[0]:.4f} ± {f.above[1]:.4f};  "
    f"below -tol {f.below[0]:.4f} ± {f.below[1]:.4f};  within ±tol {f.within[0]:.4f} ± {f.within[1]:.4f}"
)

point = hessx.classify(H, grad=grad, gtol=1e-3)
stage(
    f"classify: {point.kind} (lambda_min {point.lambda_min:.4e}, lambda_max {point.lambda_max:.4e}, "
    f"zero threshold {point.tol:.1e})"
)
if point.escape_direction is not None:
    step = hessx.escape_step(
        H.loss_at, H.parameters_vector(), point.escape_direction, grad=grad, max_step=1.0
    )
    stage(
        f"escape step of length {step.step:+.3f} along the most negative curvature: "
        f"loss {step.loss_before:.5f} -> {step.loss_after:.5f}"
    )
    H.load(step.params)  # the model now sits at the new point
else:
    stage("no direction of negative curvature beyond the threshold: no escape step")

fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
density.plot(ax=ax, log=True)
ax.set_title(f"Hessian density, PyTorch CNN ({n_params / 1e6:.2f}M params, digits)")
fig.tight_layout()
fig.savefig(out)
stage(f"density figure written to {out}; {H.n_products} Hessian-vector products in all")
