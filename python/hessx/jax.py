"""Hessians of JAX losses, driven by hessx's solvers.

``hessx.jax.hessian(loss_fn, params, data)`` is a hessx operator over the
flattened ``params`` pytree: ``eigsh``, ``lanczos``, ``classify``,
``minimum_ratio``, ``spectral_density`` and ``trace`` take it. Its products
are jitted forward-over-reverse (``jvp`` of ``grad``) Hessian-vector
products, run on the calling thread.

Needs JAX: ``pip install 'hessx[jax]'``. float64 parameters need
``jax.config.update("jax_enable_x64", True)`` before they are created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
except ImportError as exc:  # pragma: no cover - exercised in an environment without jax
    raise ImportError(
        "hessx.jax needs JAX, which is an optional extra: pip install 'hessx[jax]'"
    ) from exc

from ._framework import (
    REDUCTIONS,
    FrameworkHessian,
    ProductProgress,
    batch_weights,
    check_curvature,
    float_vector,
)

__all__ = ["hessian", "JaxHessian", "ModelLoss"]


class ModelLoss:
    """A loss made of a model and a loss of its outputs, which the
    generalized Gauss-Newton matrix (``curvature="ggn"``) needs apart.

    ``ModelLoss(apply, output_loss)(params, (inputs, targets))`` is
    ``output_loss(apply(params, inputs), targets)``.

    Parameters
    ----------
    apply : callable
        ``apply(params, inputs) -> outputs`` (a Flax ``model.apply``, say).
    output_loss : callable
        ``output_loss(outputs, targets) -> scalar``, convex in ``outputs``
        for a positive semidefinite Gauss-Newton matrix (cross-entropy, MSE).
    """

    def __init__(self, apply: Callable[..., Any], output_loss: Callable[..., Any]) -> None:
        if not callable(apply):
            raise TypeError(f"apply must be callable, got {type(apply).__name__}")
        if not callable(output_loss):
            raise TypeError(f"output_loss must be callable, got {type(output_loss).__name__}")
        self.apply = apply
        self.output_loss = output_loss

    def __call__(self, params: Any, batch: Any) -> Any:
        inputs, targets = _pair(batch)
        return self.output_loss(self.apply(params, inputs), targets)


def _pair(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            "a ModelLoss takes batches of (inputs, targets), got "
            f"{type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    return batch[0], batch[1]


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, jax.Array))


def _is_batch(data: Any) -> bool:
    """One batch: a tuple or dict whose leaves are all arrays."""
    if not isinstance(data, (tuple, Mapping)):
        return False
    leaves = jax.tree_util.tree_leaves(data)
    return bool(leaves) and all(_is_array(leaf) for leaf in leaves)


def _batch_size(batch: Any, index: int) -> int:
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves:
        raise ValueError(f"data: batch {index} holds no arrays")
    sizes = set()
    for leaf in leaves:
        if not _is_array(leaf):
            raise TypeError(
                f"data: batch {index} must hold arrays, got a {type(leaf).__name__} leaf"
            )
        if np.ndim(leaf) == 0:
            raise ValueError(
                f"data: batch {index} has a 0-dimensional array; every array needs a leading "
                "batch dimension"
            )
        sizes.add(int(np.shape(leaf)[0]))
    if len(sizes) != 1:
        raise ValueError(
            f"data: batch {index} has arrays with different leading dimensions {sorted(sizes)} "
            "(inputs and targets must agree)"
        )
    size = sizes.pop()
    if size == 0:
        raise ValueError(f"data: batch {index} is empty (0 examples)")
    return size


def _batches(data: Any) -> list[Any] | Iterable[Any]:
    if _is_batch(data):
        return [data]
    if isinstance(data, (str, bytes, Mapping)) or _is_array(data) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data must be one batch (a tuple or dict of arrays) or a list / re-iterable of "
            f"batches, got {type(data).__name__}"
        )
    if iter(data) is data:
        return list(data)
    return data


def _flat_params(params: Any) -> tuple[Any, Callable[[Any], Any]]:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params has no arrays: the Hessian needs at least one parameter")
    dtypes = set()
    for leaf in leaves:
        if not _is_array(leaf):
            raise TypeError(f"params must be a pytree of arrays, got a {type(leaf).__name__} leaf")
        dtypes.add(np.dtype(leaf.dtype))
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise TypeError(
            f"params must be all float32 or all float64, got dtypes {sorted(map(str, dtypes))}"
        )
    if next(iter(dtypes)) == np.float64 and not jax.config.read("jax_enable_x64"):
        raise TypeError(
            "params are float64 but JAX runs in float32: call "
            "jax.config.update('jax_enable_x64', True) first, or pass float32 params"
        )
    flat, unravel = ravel_pytree(params)
    return flat, unravel


class JaxHessian(FrameworkHessian):
    """The Hessian (or generalized Gauss-Newton matrix) of a JAX loss over a
    data set, as a hessx operator. Build it with `hessian`.

    Attributes
    ----------
    curvature, reduction : str
    n_examples, n_batches : int
    """

    framework = "jax"

    def __init__(
        self,
        loss_fn: Callable[..., Any],
        params: Any,
        data: Any,
        *,
        curvature: str,
        reduction: str,
        progress: bool,
    ) -> None:
        self._loss_fn = loss_fn
        self._params = params
        self.reduction = reduction
        flat, self._unravel = _flat_params(params)
        self._flat = flat
        self._jnp_dtype = flat.dtype
        self._data = _batches(data)
        sizes = [_batch_size(batch, index) for index, batch in enumerate(self._data)]
        if not sizes:
            raise ValueError("data is empty: it gave no batches")
        self._sizes = sizes
        self._weights = batch_weights(sizes, reduction)
        if curvature == "ggn" and not isinstance(loss_fn, ModelLoss):
            raise TypeError(
                "curvature='ggn' needs the model and the loss of its outputs apart: pass "
                "loss_fn=hessx.jax.ModelLoss(apply, output_loss)"
            )

        def scalar_loss(theta: Any, batch: Any) -> Any:
            return jnp.reshape(loss_fn(self._unravel(theta), batch), ())

        self._scalar_loss = scalar_loss
        self._value_and_grad = jax.jit(jax.value_and_grad(scalar_loss))
        self._loss_only = jax.jit(scalar_loss)
        if curvature == "hessian":
            self._product_fn = jax.jit(
                lambda theta, v, batch: jax.jvp(
                    lambda t: jax.grad(scalar_loss)(t, batch), (theta,), (v,)
                )[1]
            )
        else:
            assert isinstance(loss_fn, ModelLoss)
            self._product_fn = jax.jit(_ggn_product(loss_fn, self._unravel))

        progress_line = ProductProgress(progress, "hessx.jax")
        loss_total = 0.0
        gradient = np.zeros(flat.shape[0])
        for index, batch in enumerate(self._data):
            progress_line.batches(index + 1, len(sizes))
            self._check_scalar(flat, batch, index)
            value, grad = self._value_and_grad(flat, batch)
            value = float(value)
            if not np.isfinite(value):
                raise ValueError(
                    f"loss_fn returned {value} on batch {index}: the loss must be finite"
                )
            loss_total += self._weights[index] * value
            gradient += self._weights[index] * np.asarray(grad, dtype=np.float64)
        dtype = np.dtype(self._jnp_dtype)
        super().__init__(
            int(flat.shape[0]),
            dtype,
            curvature=curvature,
            loss=loss_total,
            gradient=gradient.astype(dtype),
            point=np.asarray(flat),
            n_examples=sum(sizes),
            n_batches=len(sizes),
            progress=progress_line,
        )
        self._progress.end_line()

    def _check_scalar(self, flat: Any, batch: Any, index: int) -> None:
        shape = jax.eval_shape(lambda t, b: self._loss_fn(self._unravel(t), b), flat, batch).shape
        if int(np.prod(shape)) != 1:
            raise ValueError(
                f"loss_fn must return a scalar, got shape {tuple(shape)} on batch {index}"
            )

    def _batches_checked(self) -> Iterable[tuple[int, Any]]:
        count = 0
        for index, batch in enumerate(self._data):
            if index >= len(self._sizes) or _batch_size(batch, index) != self._sizes[index]:
                raise RuntimeError(
                    "data gave different batches than when the operator was built "
                    f"(batch {index}); it must give the same batches on every pass"
                )
            count += 1
            yield index, batch
        if count != len(self._sizes):
            raise RuntimeError(
                f"data gave {count} batches, but {len(self._sizes)} when the operator was built"
            )

    def _product(self, v: np.ndarray) -> np.ndarray:
        vector = jnp.asarray(v, dtype=self._jnp_dtype)
        total = None
        for index, batch in self._batches_checked():
            part = self._product_fn(self._flat, vector, batch)
            weighted = part * self._weights[index] if self._weights[index] != 1.0 else part
            total = weighted if total is None else total + weighted
        return np.asarray(total)

    def _loss_at(self, theta: np.ndarray) -> float:
        flat = jnp.asarray(theta, dtype=self._jnp_dtype)
        return float(
            sum(
                self._weights[index] * float(self._loss_only(flat, batch))
                for index, batch in self._batches_checked()
            )
        )

    def _load(self, theta: np.ndarray) -> Any:
        return self._unravel(jnp.asarray(theta, dtype=self._jnp_dtype))

    def load(self, theta: Any) -> Any:
        """JAX arrays cannot be written to: returns ``theta`` as a new params
        pytree (checked like `loss_at`'s argument), to use in place of the old one."""
        return self._load(float_vector(theta, "theta", self.shape[0]))

    def unflatten(self, v: Any) -> Any:
        """A flat vector (length P) as a pytree shaped like ``params``."""
        return self._unravel(
            jnp.asarray(float_vector(np.asarray(v), "v", self.shape[0]), dtype=self._jnp_dtype)
        )

    def _recipe(self) -> tuple[Callable[..., FrameworkHessian], dict[str, Any]]:
        return (
            JaxHessian,
            {
                "loss_fn": self._loss_fn,
                "params": jax.tree_util.tree_map(np.asarray, self._params),
                "data": [jax.tree_util.tree_map(np.asarray, b) for b in self._data],
                "curvature": self.curvature,
                "reduction": self.reduction,
                "progress": False,
            },
        )


def _ggn_product(loss: ModelLoss, unravel: Callable[[Any], Any]) -> Callable[..., Any]:
    """``v -> J^T H_L J v`` for one batch: J the Jacobian of the model's outputs
    in the flat parameters, H_L the Hessian of the output loss."""

    def product(theta: Any, v: Any, batch: Any) -> Any:
        inputs, targets = _pair(batch)

        def outputs_of(t: Any) -> Any:
            return loss.apply(unravel(t), inputs)

        def loss_of(z: Any) -> Any:
            return jnp.reshape(loss.output_loss(z, targets), ())

        outputs, jv = jax.jvp(outputs_of, (theta,), (v,))
        _, hjv = jax.jvp(jax.grad(loss_of), (outputs,), (jv,))
        _, pullback = jax.vjp(outputs_of, theta)
        (out,) = pullback(hjv)
        return out

    return product


def hessian(
    loss_fn: Callable[..., Any],
    params: Any,
    data: Any,
    *,
    curvature: str = "hessian",
    reduction: str = "mean",
    progress: bool = False,
) -> JaxHessian:
    """The Hessian of a JAX loss over ``data``, as a hessx operator.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, batch) -> scalar``. For ``curvature="ggn"`` a
        `ModelLoss` (the model and the loss of its outputs apart).
    params : pytree of float32 or float64 arrays
        The point. Flat vectors follow ``jax.flatten_util.ravel_pytree``'s order.
    data : one batch, or a list / re-iterable of batches
        A batch is a tuple or dict of arrays with one leading (example)
        dimension, passed to ``loss_fn`` as ``batch``.
    curvature : {"hessian", "ggn"}
    reduction : {"mean", "sum"}, default "mean"
        How ``loss_fn`` reduces over a batch: "mean" weights batch b by
        ``n_b / N``, "sum" by 1, so that batches give the operator of one
        batch of all the data.
    progress : bool, default False

    Returns
    -------
    JaxHessian
        With ``.loss()``, ``.gradient()``, ``.parameters_vector()``,
        ``.unflatten(v)`` (the pytree), ``.loss_at(theta)`` and ``.load(theta)``
        (which returns the new pytree: JAX arrays are immutable).

    Examples
    --------
    >>> import jax.numpy as jnp, numpy as np, hessx, hessx.jax
    >>> loss = lambda p, b: jnp.mean((b[1] - p["w1"] * p["w2"] * b[0]) ** 2)
    >>> params = {"w1": jnp.zeros(()), "w2": jnp.zeros(())}
    >>> H = hessx.jax.hessian(loss, params, (np.ones(1, np.float32), np.ones(1, np.float32)))
    >>> H @ [1.0, 0.0]
    array([ 0., -2.], dtype=float32)
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    curvature = check_curvature(curvature)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return JaxHessian(
        loss_fn,
        params,
        data,
        curvature=curvature,
        reduction=str(reduction),
        progress=bool(progress),
    )
