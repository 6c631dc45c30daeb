"""Small PyTorch models and an independent dense-Hessian reference, shared by
the framework tests (test_torch.py, test_peers.py, test_model_paths.py)."""

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

# These models are tiny: torch's threads only add synchronisation, which on a
# loaded 2-core machine made products 10x slower. (Benches keep the default.)
torch.set_num_threads(1)


class AttentionBlock(nn.Module):
    """LayerNorm -> multi-head self-attention (fused kernel when it may) ->
    residual -> LayerNorm -> Linear, pooled over the sequence."""

    def __init__(self, dim=4, heads=2, classes=3):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.norm1(x)
        a, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm2(x + a)
        return self.head(torch.tanh(h).mean(dim=1))


class ScaledDotProductBlock(nn.Module):
    """Attention written with F.scaled_dot_product_attention (CPU flash kernel by default)."""

    def __init__(self, dim=6, classes=2):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        h = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(h.mean(dim=1))


def seeded(build, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return build().to(dtype)


def mlp():
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.SiLU(),
        nn.AvgPool2d(3),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def batchnorm_net():
    return nn.Sequential(
        nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3)
    )


def layernorm_net():
    return nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3))


def lecture_net(dtype=torch.float64):
    """y = w2 * (w1 * x): the lecture's one-neuron network, at (w1, w2) = (0, 0)."""
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def classification_data(n, shape, classes=3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def warm_batchnorm(model, x):
    """Give BatchNorm running statistics that differ from the defaults."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x + 0.3)
    model.eval()


def trainable(model):
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def dense_hessian(model, loss_fn, x, y):
    """The Hessian of loss_fn(model(x), y) in eval mode by
    torch.autograd.functional.hessian, in the model's dtype (float64 advised)."""
    named = trainable(model)
    names = [name for name, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    buffers = dict(model.named_buffers())
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    was_training = model.training
    model.eval()

    def loss(theta):
        parts = [t.view(s) for t, s in zip(torch.split(theta, sizes), shapes, strict=True)]
        return loss_fn(
            functional_call(model, {**dict(zip(names, parts, strict=True)), **buffers}, (x,)), y
        )

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            h = torch.autograd.functional.hessian(loss, flat)
    finally:
        model.train(was_training)
    return h.detach().numpy()


def dense_of(op):
    """An operator's matrix, column by column, in float64."""
    n = op.shape[0]
    return np.column_stack([op.matvec(e).astype(np.float64) for e in np.eye(n)])
