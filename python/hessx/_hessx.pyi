"""Type stubs for the compiled module hessx._hessx (private: use the hessx package)."""

from collections.abc import Callable
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "RustOperator",
    "MlpCore",
    "lanczos_solve",
    "SlqResult",
    "slq_run",
    "hutchinson_run",
    "hutchpp_run",
    "inertia_counts",
    "inertia_of",
    "factor_size",
    "set_num_threads",
    "get_num_threads",
]

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
        storage: str = "full",
    ) -> RustOperator: ...
    @staticmethod
    def callable(
        n: int,
        matvec: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
        matmat: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | None = None,
        precision: float = ...,
    ) -> RustOperator: ...
    @property
    def n(self) -> int: ...
    @property
    def nbytes(self) -> int | None: ...
    @property
    def storage(self) -> str | None: ...
    def upper_triangle(
        self,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]: ...
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
    check_multiplicities: bool = True,
) -> dict[str, Any]: ...

@final
class SlqResult:
    @staticmethod
    def from_arrays(
        n: int,
        nodes: list[npt.NDArray[np.float64]],
        weights: list[npt.NDArray[np.float64]],
        alpha: list[npt.NDArray[np.float64]],
        beta: list[npt.NDArray[np.float64]],
        residuals: list[npt.NDArray[np.float64]],
    ) -> SlqResult: ...
    @property
    def n(self) -> int: ...
    @property
    def n_probes(self) -> int: ...
    @property
    def nodes(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def weights(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def alpha(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def beta(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def residuals(self) -> list[npt.NDArray[np.float64]]: ...
    def count_fraction(self, lo: float, hi: float) -> dict[str, float]: ...
    def density(self, grid: npt.NDArray[np.float64], sigma: float) -> npt.NDArray[np.float64]: ...

def slq_run(
    op: RustOperator,
    n_probes: int,
    n_steps: int,
    seed: int,
    probe: str,
    first_probe: int,
    progress: bool,
) -> SlqResult: ...
def hutchinson_run(
    op: RustOperator, n_probes: int, seed: int, first_probe: int, progress: bool
) -> npt.NDArray[np.float64]: ...
def hutchpp_run(
    op: RustOperator, n_matvecs: int, seed: int, progress: bool
) -> tuple[float, float]: ...
def inertia_counts(
    n: int,
    indptr: npt.NDArray[Any],
    indices: npt.NDArray[Any],
    data: npt.NDArray[Any],
    tol: float,
) -> tuple[int, int, int]: ...
def inertia_of(
    n: int,
    indptr: npt.NDArray[Any],
    indices: npt.NDArray[Any],
    data: npt.NDArray[Any],
    shift: float,
) -> tuple[int, int, int]: ...
def factor_size(
    n: int, indptr: npt.NDArray[Any], indices: npt.NDArray[Any], data: npt.NDArray[Any]
) -> tuple[int, int]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

@final
class MlpCore:
    def __new__(cls, sizes: list[int], activation: str, loss: str, bias: bool) -> MlpCore: ...
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
