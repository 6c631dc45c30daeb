"""hessx: Hessians of large models — saddle or minimum, and which way is down.

Rust does the heavy work (parallel sparse and matrix-free Hessian-vector
products, thick-restart Lanczos); this package is the thin Python face.
"""

from __future__ import annotations

from typing import Any

from . import _hessx, models
from .analysis import CriticalPoint, Fractions, MinimumRatio, classify, minimum_ratio
from .eigen import LanczosResult, NoConvergence, eigsh, lanczos
from .escape import EscapeStep, escape_step
from .operators import CallableOperator, CsrOperator, DenseOperator, HessxOperator, as_operator
from .spectrum import SpectralDensity, spectral_density, trace

__version__: str = _hessx.__version__

__all__ = [
    "CallableOperator",
    "CriticalPoint",
    "CsrOperator",
    "DenseOperator",
    "EscapeStep",
    "Fractions",
    "HessxOperator",
    "LanczosResult",
    "MinimumRatio",
    "NoConvergence",
    "as_operator",
    "classify",
    "eigsh",
    "escape_step",
    "get_num_threads",
    "lanczos",
    "minimum_ratio",
    "models",
    "set_num_threads",
    "SpectralDensity",
    "spectral_density",
    "trace",
]


def __getattr__(name: str) -> Any:
    # hessx.torch and hessx.jax import their framework, an optional extra:
    # loaded on first use, never by `import hessx`.
    if name in ("torch", "jax"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_num_threads(n: int) -> None:
    """Size the Rust thread pool (``n >= 1``; default: one thread per core)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _hessx.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads of the Rust pool."""
    return int(_hessx.get_num_threads())
