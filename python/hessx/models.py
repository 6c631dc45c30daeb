"""Models whose exact Hessian-vector products run in Rust, matrix-free.

`MLP` is a fully connected network. Its Hessian is never formed: `hessian`
returns an operator whose products (Pearlmutter's R-operator, forward over
reverse) reuse the cached forward/backward state, so `eigsh`, `lanczos`,
`classify` and `minimum_ratio` run on a million-parameter model with no Python
per product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _hessx
from ._validation import seed_from
from .operators import HessxOperator

__all__ = ["MLP", "ModelOperator", "load_digits"]

ACTIVATIONS = ("tanh", "relu", "gelu", "sigmoid", "identity")
LOSSES = ("cross_entropy", "mse")


class ModelOperator(HessxOperator):
    """The Hessian (or Gauss–Newton matrix) of a model's loss at fixed (params, X, y).

    Products run in Rust on the cached forward/backward state (the model's
    dtype; the solvers' vectors are float64 and converted per product).
    """

    def __init__(self, rust: Any, dtype: Any, kind: str) -> None:
        super().__init__(rust, dtype)
        self.kind = kind

    def __repr__(self) -> str:
        n = self.shape[0]
        return f"<ModelOperator {self.kind} {n}x{n} dtype={self.dtype}>"

    def __reduce__(self) -> Any:
        # Its state lives in Rust memory of this process; say so (and what to
        # do) instead of a bare "cannot pickle RustOperator".
        raise TypeError(
            "A: a model Hessian (hessx.models) lives in this process and cannot be sent "
            "to another one; use a thread executor, or build the model in your own task"
        )


def _lossless(array: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """`array` in `dtype`, C-contiguous; a cast that would change values is an error."""
    arr = np.asarray(array)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype != dtype:
        cast = arr.astype(dtype)
        with np.errstate(invalid="ignore"):
            same = np.array_equal(cast.astype(arr.dtype), arr, equal_nan=True)
        if not same:
            raise ValueError(
                f"{name} is {arr.dtype} but the model is {dtype}: converting would lose precision. "
                f"Pass {name}.astype(np.{dtype}) to accept the rounding, or build the model "
                f"with dtype=np.{arr.dtype}"
            )
        arr = cast
    arr = np.ascontiguousarray(arr)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.reshape(-1))[0])
        raise ValueError(f"{name} contains NaN or Inf (first at flat index {bad})")
    return arr


class MLP:
    """A fully connected network with exact gradients and Hessian-vector products in Rust.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``[64, 1024, 1024, 10]``. At least two.
    activation : {"tanh", "relu", "gelu", "sigmoid", "identity"}
        Applied after every hidden layer (the last layer is linear). "gelu" is
        the exact, erf-based one.
    loss : {"cross_entropy", "mse"}
        "cross_entropy": softmax with integer labels 0..K-1, mean over examples.
        "mse": mean over examples of the summed squared error, with no 1/2.
    bias : bool, default True
    dtype : numpy.float32 or numpy.float64, default float32
        Storage and arithmetic of the network. Inputs in another dtype are
        accepted only when converting them loses nothing.

    Notes
    -----
    Parameters are one flat vector, layer by layer: W (shape (in, out),
    row-major) then b. The one-neuron network of the lecture is
    ``MLP([1, 1, 1], activation="identity", bias=False, loss="mse")``; on x = 1,
    y = 1 its loss is exactly ``(1 - w1 * w2) ** 2``.

    The Gauss–Newton matrix (`ggn`, `ggn_vp`) is positive semidefinite by
    construction (``Jᵀ H_L J`` with a convex loss), so it cannot see saddle
    points: use the true Hessian (`hessian`, `hvp`) to classify a point.

    Examples
    --------
    >>> import numpy as np, hessx
    >>> net = hessx.models.MLP([1, 1, 1], activation="identity", bias=False, loss="mse",
    ...                        dtype=np.float64)
    >>> X, y = np.array([[1.0]]), np.array([[1.0]])
    >>> net.loss(np.array([0.5, 0.5]), X, y)
    0.5625
    >>> H = net.hessian(np.zeros(2), X, y)
    >>> H @ np.array([1.0, 0.0])
    array([ 0., -2.])
    """

    def __init__(
        self,
        sizes: Any,
        *,
        activation: str = "tanh",
        loss: str = "cross_entropy",
        bias: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        try:
            sizes_list = [int(s) for s in sizes]
        except (TypeError, ValueError) as exc:
            raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}") from exc
        if any(isinstance(s, bool) or int(s) != s for s in sizes):
            raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}")
        if len(sizes_list) < 2:
            raise ValueError(
                f"sizes must have at least two layers (input and output), got {sizes_list}"
            )
        if any(s <= 0 for s in sizes_list):
            raise ValueError(f"sizes must all be positive, got {sizes_list}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self.sizes = tuple(sizes_list)
        self.activation = activation
        self.loss_name = loss
        self.bias = bool(bias)
        self.dtype = dt
        self._core = _hessx.MlpCore(sizes_list, activation, loss, bool(bias))

    def __repr__(self) -> str:
        return (
            f"MLP({list(self.sizes)}, activation={self.activation!r}, loss={self.loss_name!r}, "
            f"bias={self.bias}, dtype=np.{self.dtype})"
        )

    @property
    def n_params(self) -> int:
        return int(self._core.n_params)

    # ---------------------------------------------------------------- checks
    def _params(self, params: Any, name: str = "params") -> np.ndarray:
        p = _lossless(params, self.dtype, name)
        if p.ndim != 1 or p.shape[0] != self.n_params:
            raise ValueError(
                f"{name} must be a vector of length n_params = {self.n_params}, got shape {p.shape}"
            )
        return p

    def _data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        n_in, n_out = self.sizes[0], self.sizes[-1]
        Xa = _lossless(X, self.dtype, "X")
        if Xa.ndim == 1 and n_in == 1:
            Xa = Xa.reshape(-1, 1)
        if Xa.ndim != 2 or Xa.shape[1] != n_in or Xa.shape[0] == 0:
            raise ValueError(f"X must have shape (batch, {n_in}) with batch >= 1, got {Xa.shape}")
        batch = Xa.shape[0]
        ya = np.asarray(y)
        if self.loss_name == "cross_entropy":
            if ya.dtype.kind == "f":
                if not np.all(np.isfinite(ya)) or not np.all(ya == np.round(ya)):
                    raise ValueError("y must hold integer class labels for cross_entropy")
            elif ya.dtype.kind not in "iub":
                raise ValueError(
                    f"y must hold integer class labels for cross_entropy, got dtype {ya.dtype}"
                )
            if ya.shape != (batch,):
                raise ValueError(
                    f"y must have shape ({batch},) (one label per row of X), got {ya.shape}"
                )
            if ya.size and (ya.min() < 0 or ya.max() >= n_out):
                raise ValueError(
                    f"y: class labels must be in 0..{n_out - 1}, got range {ya.min()}..{ya.max()}"
                )
            return Xa, np.ascontiguousarray(ya, dtype=np.int64)
        ya = _lossless(ya, self.dtype, "y")
        if ya.ndim == 1 and n_out == 1:
            ya = ya.reshape(-1, 1)
        if ya.shape != (batch, n_out):
            raise ValueError(f"y must have shape ({batch}, {n_out}) for mse, got {ya.shape}")
        return Xa, ya

    # ------------------------------------------------------------ public API
    def init(self, rng: Any = None) -> np.ndarray:
        """Scaled random parameters (Glorot uniform; He for relu/gelu; biases zero)."""
        return self._core.init(seed_from(rng)).astype(self.dtype)

    def loss(self, params: Any, X: Any, y: Any) -> float:
        """The mean loss over the rows of X."""
        Xa, ya = self._data(X, y)
        return float(self._core.loss(self._params(params), Xa, ya))

    def loss_and_grad(self, params: Any, X: Any, y: Any) -> tuple[float, np.ndarray]:
        """The loss and its gradient (in the model's dtype)."""
        Xa, ya = self._data(X, y)
        loss, grad = self._core.loss_and_grad(self._params(params), Xa, ya)
        return float(loss), grad

    def hvp(self, params: Any, X: Any, y: Any, v: Any) -> np.ndarray:
        """The exact Hessian-vector product ``H v`` (R-operator, not a finite difference)."""
        Xa, ya = self._data(X, y)
        return self._core.product(self._params(params), Xa, ya, self._params(v, "v"), False)

    def ggn_vp(self, params: Any, X: Any, y: Any, v: Any) -> np.ndarray:
        """The generalized Gauss–Newton product ``G v`` (positive semidefinite; blind to saddles)."""
        Xa, ya = self._data(X, y)
        return self._core.product(self._params(params), Xa, ya, self._params(v, "v"), True)

    def hessian(self, params: Any, X: Any, y: Any) -> ModelOperator:
        """The Hessian at (params, X, y) as an operator; products stay in Rust."""
        Xa, ya = self._data(X, y)
        return ModelOperator(
            self._core.operator(self._params(params), Xa, ya, False), self.dtype, "hessian"
        )

    def ggn(self, params: Any, X: Any, y: Any) -> ModelOperator:
        """The Gauss–Newton matrix at (params, X, y) as an operator."""
        Xa, ya = self._data(X, y)
        return ModelOperator(
            self._core.operator(self._params(params), Xa, ya, True), self.dtype, "ggn"
        )

    def unflatten(self, params: Any) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per-layer ``(W, b)`` views of the flat vector (W of shape (in, out); b None without bias)."""
        p = self._params(params)
        layers = []
        for start, n_in, n_out in self._core.layer_offsets():
            W = p[start : start + n_in * n_out].reshape(n_in, n_out)
            b = p[start + n_in * n_out : start + n_in * n_out + n_out] if self.bias else None
            layers.append((W, b))
        return layers


def load_digits(dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits shipped with hessx: X scaled to [0, 1], labels 0..9."""
    from importlib.resources import files

    with files("hessx").joinpath("data/digits.npz").open("rb") as fh:
        data = np.load(fh)
        X = data["images"].astype(np.dtype(dtype)) / 16
        y = data["labels"].astype(np.int64)
    return np.ascontiguousarray(X, dtype=np.dtype(dtype)), y
