"""Type stubs for the compiled module hessx._hessx (private: use the hessx package)."""

from collections.abc import Callable
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str

@final
class RustOperator:
    @staticmethod
    def dense(matrix: npt.NDArray[Any], check_symmetric: bool) -> RustOperator: ...
    @staticmethod
    def csr(
        n: int,
        indptr: npt.NDArray[Any],
        indices: npt.NDArray[Any],
        data: npt.NDArray[Any],
        check_symmetric: bool,
    ) -> RustOperator: ...
    @staticmethod
    def callable(
        n: int,
        matvec: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
        matmat: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | None = None,
    ) -> RustOperator: ...
    @property
    def n(self) -> int: ...
    def matvec(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
    def matmat(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...

def lanczos_solve(
    op: RustOperator,
    k: int,
    which: str,
    ncv: int | None,
    maxiter: int | None,
    tol: float,
    v0: npt.NDArray[np.float64] | None,
    seed: int,
    want_vectors: bool,
    progress: bool,
) -> dict[str, Any]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

@final
class MlpCore:
    def __init__(self, sizes: list[int], activation: str, loss: str, bias: bool) -> None: ...
    @property
    def n_params(self) -> int: ...
    def layer_offsets(self) -> list[tuple[int, int, int]]: ...
    def init(self, seed: int) -> npt.NDArray[np.float64]: ...
    def loss(self, params: npt.NDArray[Any], x: npt.NDArray[Any], y: npt.NDArray[Any]) -> float: ...
    def loss_and_grad(
        self, params: npt.NDArray[Any], x: npt.NDArray[Any], y: npt.NDArray[Any]
    ) -> tuple[float, npt.NDArray[Any]]: ...
    def product(
        self,
        params: npt.NDArray[Any],
        x: npt.NDArray[Any],
        y: npt.NDArray[Any],
        v: npt.NDArray[Any],
        gauss_newton: bool = False,
    ) -> npt.NDArray[Any]: ...
    def operator(
        self,
        params: npt.NDArray[Any],
        x: npt.NDArray[Any],
        y: npt.NDArray[Any],
        gauss_newton: bool = False,
    ) -> RustOperator: ...
