"""What the PyTorch and JAX Hessians (`hessx.torch`, `hessx.jax`) share.

A framework Hessian is a `CallableOperator` whose product runs the framework's
own exact Hessian-vector product on the calling thread; hessx's Rust solvers
drive it. This module holds the parts that do not depend on the framework:
the flat-vector checks, the weights of batches, the progress line, and the
registry that lets executor tasks rebuild an operator once per worker process.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .operators import CallableOperator

CURVATURES = ("hessian", "ggn")
REDUCTIONS = ("mean", "sum")


def check_curvature(curvature: Any) -> str:
    if curvature not in CURVATURES:
        raise ValueError(f"curvature must be 'hessian' or 'ggn', got {curvature!r}")
    return str(curvature)


def batch_weights(sizes: Sequence[int], reduction: str) -> list[float]:
    """The weight of each batch's loss in the loss over all of the data.

    A mean-reduced loss over N examples is ``sum_b (n_b / N) * loss_b``; a
    summed one is ``sum_b loss_b``. With these weights a data set split into
    batches has the same loss, gradient and Hessian as one batch of all of it.
    """
    if reduction == "sum":
        return [1.0] * len(sizes)
    total = float(sum(sizes))
    return [size / total for size in sizes]


def float_vector(theta: Any, name: str, n: int) -> np.ndarray:
    """A flat float64 copy of a parameter vector, checked: floating dtype,
    length ``n``, finite. float32 and float64 are both accepted whatever the
    model's dtype (the escape step works in float64 on float32 models)."""
    try:
        arr = np.asarray(theta)
    except Exception as exc:
        raise TypeError(f"{name} must be a flat NumPy array or tensor: {exc}") from exc
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 vector, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat (1-D) vector, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(
            f"{name} must have length {n} (the number of parameters), got {arr.shape[0]}"
        )
    out = np.array(arr, dtype=np.float64, copy=True)
    finite = np.isfinite(out)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} contains NaN or Inf (first at index {bad})")
    return out


class ProductProgress:
    """A one-line progress report on stderr: passes over the data, then a
    running count of products with the last one's time."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = bool(enabled)
        self.label = label
        self.count = 0
        self.seconds = 0.0
        self._open_line = False

    def batches(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        of = f"/{total}" if total is not None else ""
        sys.stderr.write(f"\r{self.label}: pass over the data, batch {done}{of}   ")
        sys.stderr.flush()
        self._open_line = True

    def product(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        if not self.enabled:
            return
        sys.stderr.write(f"\r{self.label}: {self.count} products, last {seconds:.3f} s   ")
        sys.stderr.flush()
        self._open_line = True

    def end_line(self) -> None:
        """End the line a pass over the data left open."""
        if self.enabled and self._open_line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open_line = False


class FrameworkHessian(CallableOperator):
    """Base of the PyTorch and JAX Hessians: a hessx operator (``P x P``, the
    parameters' dtype) whose products are the framework's exact ones.

    Subclasses implement `_product` (flat vector in the parameters' dtype ->
    flat product), `_loss_at`, `_load`, `unflatten` and `_recipe`.
    """

    framework = "?"

    def __init__(
        self,
        n_params: int,
        dtype: Any,
        *,
        curvature: str,
        loss: float,
        gradient: np.ndarray,
        point: np.ndarray,
        n_examples: int,
        n_batches: int,
        progress: ProductProgress,
    ) -> None:
        self.curvature = curvature
        self.n_examples = int(n_examples)
        self.n_batches = int(n_batches)
        self._loss = float(loss)
        self._gradient = gradient
        self._point = point
        self._progress = progress
        # One product at a time: cached graphs are shared state.
        self._lock = threading.Lock()
        self._token = uuid.uuid4().hex
        super().__init__(n_params, self._timed_product, dtype=dtype)
        _LIVE[self._token] = self

    @property
    def n_products(self) -> int:
        """Products made so far (``matvec`` calls, by hessx's solvers or anyone)."""
        return self._progress.count

    @property
    def product_seconds(self) -> float:
        """Wall time spent inside products so far: what a solver's run cost
        beyond its products is its wall time minus the change in this."""
        return self._progress.seconds

    def _timed_product(self, v: np.ndarray) -> np.ndarray:
        with self._lock:
            start = time.perf_counter()
            out = self._product(v)
            self._progress.product(time.perf_counter() - start)
        return out

    def _product(self, v: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- the point and its loss ------------------------------------------------

    def loss(self) -> float:
        """The loss over all of ``data`` at the operator's point."""
        return self._loss

    def gradient(self) -> np.ndarray:
        """The gradient of the loss over all of ``data`` at the operator's point
        (flat, the parameters' dtype)."""
        return self._gradient.copy()

    def parameters_vector(self) -> np.ndarray:
        """The operator's point: the parameters, flattened in the operator's
        order (the parameters' dtype)."""
        return self._point.copy()

    def loss_at(self, theta: Any) -> float:
        """The loss over all of ``data`` with the parameters set to the flat
        vector ``theta`` (float32 or float64); the model is left unchanged.
        ``hessx.escape_step(op.loss_at, op.parameters_vector(), direction)``
        steps along a direction of negative curvature."""
        return float(self._loss_at(float_vector(theta, "theta", self.shape[0])))

    def load(self, theta: Any) -> None:
        """Write the flat vector ``theta`` into the model's parameters (after an
        escape step, say). This operator stays the Hessian at its own point:
        build a new one to look at the new point."""
        self._load(float_vector(theta, "theta", self.shape[0]))

    def _loss_at(self, theta: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, theta: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def unflatten(self, v: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- executors -------------------------------------------------------------

    def _recipe(self) -> tuple[Callable[..., FrameworkHessian], dict[str, Any]]:
        """A picklable way to build this operator again in another process."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _portable(self) -> tuple[str, str, Callable[..., FrameworkHessian], dict[str, Any]]:
        build, kwargs = self._recipe()
        return ("framework", self._token, build, kwargs)

    def __reduce__(self) -> Any:
        build, kwargs = self._recipe()
        return (_rebuild_framework, (self._token, build, kwargs))

    def __repr__(self) -> str:
        n = self.shape[0]
        return (
            f"<hessx.{self.framework} {self.curvature} {n}x{n} dtype={self.dtype}, "
            f"{self.n_examples} examples in {self.n_batches} batch(es)>"
        )


# Operators of this process by token: a task run by a thread executor uses the
# original; tasks in other processes build one from its recipe, once per
# process (the few most recent are kept).
_LIVE: weakref.WeakValueDictionary[str, FrameworkHessian] = weakref.WeakValueDictionary()
_REBUILT: OrderedDict[str, FrameworkHessian] = OrderedDict()
_REBUILT_LOCK = threading.Lock()
_KEEP_REBUILT = 2
_BUILDS = 0


def _rebuild_framework(
    token: str, build: Callable[..., FrameworkHessian], kwargs: dict[str, Any]
) -> FrameworkHessian:
    with _REBUILT_LOCK:
        live = _LIVE.get(token)
        if live is not None:
            if token in _REBUILT:
                _REBUILT.move_to_end(token)
            return live
    op = build(**kwargs)
    _LIVE.pop(op._token, None)
    op._token = token
    with _REBUILT_LOCK:
        global _BUILDS
        _BUILDS += 1
        _REBUILT[token] = op
        _LIVE[token] = op
        while len(_REBUILT) > _KEEP_REBUILT:
            _REBUILT.popitem(last=False)
    return op


def rebuilt_count() -> int:
    """How many framework operators this process has built from recipes (an
    executor's tasks ship the model and data once per worker, not per task)."""
    with _REBUILT_LOCK:
        return _BUILDS
