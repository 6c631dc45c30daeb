//! `RustOperator`: the compiled half of every hessx operator. It keeps the
//! NumPy buffers it was built from alive and borrows them (no copy) for each
//! product; the Python class `hessx.operators.*Operator` wraps it.

use std::sync::Mutex;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::core::error::{first_non_finite, Error, Result};
use crate::core::op::SymOp;

use super::csr::{CsrArrays, CsrInput, UpperArrays};
use super::dense::DenseArrays;
use super::monitor::{run_detached, CallingThread, Driver, PyMonitor};

/// A Python function `x -> A x` (and optionally `X -> A X`), already wrapped on
/// the Python side to return a C-contiguous float32 or float64 array of the
/// right shape; it is handed vectors of its declared dtype.
pub struct CallableOp {
    n: usize,
    matvec: Py<PyAny>,
    matmat: Option<Py<PyAny>>,
    /// Unit roundoff of the arithmetic the function does (its declared dtype).
    precision: f64,
    /// The exception the user function raised, re-raised unchanged by the caller.
    raised: Mutex<Option<PyErr>>,
}

/// Entries per task when the pool narrows or copies a callable's vectors.
const PARALLEL_CHUNK: usize = 1 << 16;

/// The vector a callable's product is handed, in the function's declared
/// dtype and owned, so that NumPy adopts the buffer without copying it.
enum Input {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl CallableOp {
    fn fail(&self, err: PyErr) -> Error {
        let msg = err.to_string();
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
        Error::Operator(msg)
    }

    /// Whether the function computes in float32 (its declared dtype).
    fn declares_f32(&self) -> bool {
        self.precision >= f64::from(f32::EPSILON)
    }

    /// `x` narrowed (rounded to nearest, as NumPy's `astype`) or copied into
    /// the declared dtype: a float32 function gets half the bytes. `in_pool`:
    /// the caller runs in hessx's pool, so the narrowing may use both cores
    /// (never outside it: rayon's global pool must stay unused).
    fn input_from(&self, x: &[f64], in_pool: bool) -> Input {
        if !self.declares_f32() {
            Input::F64(x.to_vec())
        } else if in_pool {
            Input::F32(
                x.par_iter()
                    .with_min_len(PARALLEL_CHUNK)
                    .map(|&v| v as f32)
                    .collect(),
            )
        } else {
            Input::F32(x.iter().map(|&v| v as f32).collect())
        }
    }

    /// `y = A x` (`ncols` None) or `Y = A X` (`ncols` columns, row-major) by
    /// the Python function; the result (float32 or float64, as the function
    /// returned it) is widened into `y` and checked finite in the same pass.
    fn call_product(&self, input: Input, y: &mut [f64], ncols: Option<usize>) -> Result<()> {
        let (function, name, shape) = match (ncols, &self.matmat) {
            (Some(ncols), Some(matmat)) => (matmat, "matmat", vec![self.n, ncols]),
            _ => (&self.matvec, "matvec", vec![self.n]),
        };
        Python::attach(|py| {
            let array = match input {
                Input::F32(v) => PyArray1::from_vec(py, v)
                    .reshape(shape)
                    .map(Bound::into_any),
                Input::F64(v) => PyArray1::from_vec(py, v)
                    .reshape(shape)
                    .map(Bound::into_any),
            }
            .map_err(|e| self.fail(e))?;
            let output = function.call1(py, (array,)).map_err(|e| self.fail(e))?;
            let output = output.bind(py);
            let length = output
                .cast::<numpy::PyUntypedArray>()
                .map_err(|e| self.fail(e.into()))?
                .len();
            if length != y.len() {
                return Err(self.fail(PyValueError::new_err(format!(
                    "{name}(x) returned {length} values, expected {}",
                    y.len()
                ))));
            }
            let flat = output
                .call_method1("reshape", (length,))
                .map_err(|e| self.fail(e))?;
            let all_finite = if let Ok(values) = flat.extract::<PyReadonlyArray1<f64>>() {
                widen_checked(self.slice(&values)?, y)
            } else {
                let values = flat.extract::<PyReadonlyArray1<f32>>().map_err(|_| {
                    self.fail(PyValueError::new_err(format!(
                        "{name}(x) must return float32 or float64 values"
                    )))
                })?;
                widen_checked(self.slice(&values)?, y)
            };
            if !all_finite {
                let first = first_non_finite(y).unwrap_or(0);
                return Err(self.fail(PyValueError::new_err(format!(
                    "{name}(x) returned NaN or Inf (first at flat index {first})"
                ))));
            }
            Ok(())
        })
    }

    fn slice<'a, T: numpy::Element>(&self, values: &'a PyReadonlyArray1<'_, T>) -> Result<&'a [T]> {
        values
            .as_slice()
            .map_err(|e| self.fail(PyValueError::new_err(e.to_string())))
    }

    pub fn take_raised(&self) -> Option<PyErr> {
        self.raised.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// `y = x` widened to f64; false when a value is NaN or infinite.
fn widen_checked<T: Copy + Into<f64>>(x: &[T], y: &mut [f64]) -> bool {
    let mut all_finite = true;
    for (out, &value) in y.iter_mut().zip(x) {
        let value: f64 = value.into();
        all_finite &= value.is_finite();
        *out = value;
    }
    all_finite
}

impl SymOp for CallableOp {
    fn dim(&self) -> usize {
        self.n
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        self.call_product(self.input_from(x, false), y, None)
    }

    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        match &self.matmat {
            Some(_) => self.call_product(self.input_from(x, false), y, Some(ncols)),
            None => crate::core::op::apply_block_by_columns(self, x, y, ncols),
        }
    }

    fn apply_f32_input(&self, x: &[f32], y: &mut [f64]) -> Option<Result<()>> {
        self.declares_f32()
            .then(|| self.call_product(Input::F32(x.to_vec()), y, None))
    }

    fn relative_precision(&self) -> f64 {
        self.precision
    }

    fn allows_concurrent_products(&self) -> bool {
        false
    }
}

/// A [`CallableOp`] used from hessx's pool: each product is made on the
/// calling thread. The input is prepared here, in the pool; the result comes
/// back in a buffer kept between products (a fresh 9 MB buffer per product
/// costs its page faults every time).
struct OnCallingThread<'a, 'env> {
    callable: &'env CallableOp,
    caller: &'a CallingThread<'env>,
    result: Mutex<Vec<f64>>,
}

impl<'a, 'env> OnCallingThread<'a, 'env> {
    fn new(callable: &'env CallableOp, caller: &'a CallingThread<'env>) -> Self {
        OnCallingThread {
            callable,
            caller,
            result: Mutex::new(Vec::new()),
        }
    }

    /// `y = A x` (or `A X`) computed on the calling thread.
    fn on_caller(&self, input: Input, y: &mut [f64], ncols: Option<usize>) -> Result<()> {
        let callable = self.callable;
        let mut buffer =
            std::mem::take(&mut *self.result.lock().unwrap_or_else(|e| e.into_inner()));
        buffer.resize(y.len(), 0.0);
        let buffer = self.caller.run(move || {
            callable
                .call_product(input, &mut buffer, ncols)
                .map(|()| buffer)
        })??;
        y.par_chunks_mut(PARALLEL_CHUNK)
            .zip(buffer.par_chunks(PARALLEL_CHUNK))
            .for_each(|(out, part)| out.copy_from_slice(part));
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = buffer;
        Ok(())
    }
}

impl SymOp for OnCallingThread<'_, '_> {
    fn dim(&self) -> usize {
        self.callable.n
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        // This runs in hessx's pool; the calling thread waits meanwhile.
        self.on_caller(self.callable.input_from(x, true), y, None)
    }

    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        if self.callable.matmat.is_none() {
            return crate::core::op::apply_block_by_columns(self, x, y, ncols);
        }
        self.on_caller(self.callable.input_from(x, true), y, Some(ncols))
    }

    fn apply_f32_input(&self, x: &[f32], y: &mut [f64]) -> Option<Result<()>> {
        self.callable
            .declares_f32()
            .then(|| self.on_caller(Input::F32(x.to_vec()), y, None))
    }

    fn relative_precision(&self) -> f64 {
        self.callable.precision
    }

    fn allows_concurrent_products(&self) -> bool {
        false
    }
}

/// What a panic in a borrowed CSR matrix's product means. The index arrays
/// are SciPy's own (zero-copy), validated once at construction; a caller who
/// rewrites them afterwards makes a product index out of bounds. The kernels
/// are safe Rust, so that is a bounds-check panic (never undefined
/// behaviour), caught and reported as the caller's error. Unwind safety: a
/// product only writes its own output buffer, which the error discards.
fn structure_changed() -> Error {
    Error::structure(
        "A",
        "its indices or indptr were changed after the CsrOperator was built and no \
         longer describe a valid matrix: build a new operator after changing A's \
         structure (its values may change freely)",
    )
}

pub enum OpKind {
    Csr(CsrArrays),
    Upper(UpperArrays),
    Dense(DenseArrays),
    Callable(CallableOp),
    Model(super::models::ModelOp),
}

/// The compiled operator behind `hessx` operators.
#[pyclass(frozen, module = "hessx._hessx")]
pub struct RustOperator {
    kind: OpKind,
    n: usize,
}

impl RustOperator {
    pub fn new(kind: OpKind, n: usize) -> Self {
        RustOperator { kind, n }
    }

    /// Borrow the buffers and hand `f` a core operator view.
    pub fn with_op<R>(&self, py: Python<'_>, f: impl FnOnce(&dyn SymOp) -> R) -> PyResult<R> {
        match &self.kind {
            OpKind::Csr(csr) => {
                let outcome = csr.with_op(py, |op| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(op)))
                })?;
                outcome.map_err(|_| super::errors::to_py(structure_changed()))
            }
            OpKind::Upper(upper) => Ok(f(upper.as_op())),
            OpKind::Dense(dense) => dense.with_op(py, f),
            OpKind::Callable(callable) => Ok(f(callable)),
            OpKind::Model(model) => Ok(f(model.as_op())),
        }
    }

    /// Run `work` against this operator in hessx's pool (GIL released, Ctrl-C
    /// polled, errors mapped, see `monitor::run_detached`); a Python
    /// callable's products are made on the calling thread.
    pub fn run_detached<T, F>(&self, py: Python<'_>, progress: bool, work: F) -> PyResult<T>
    where
        F: FnOnce(&dyn SymOp, &PyMonitor) -> Result<T> + Send,
        T: Send,
    {
        let result = match &self.kind {
            OpKind::Callable(callable) => run_detached(py, progress, true, |monitor, caller| {
                work(&OnCallingThread::new(callable, caller), monitor)
            }),
            OpKind::Csr(_) => self.with_op(py, |op| {
                run_detached(py, progress, false, |monitor, _| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(op, monitor)))
                        .unwrap_or_else(|_| Err(structure_changed()))
                })
            })?,
            _ => self.with_op(py, |op| {
                run_detached(py, progress, false, |monitor, _| work(op, monitor))
            })?,
        };
        result.map_err(|e| self.reraise(e))
    }

    /// Where a single product on this operator runs.
    pub fn driver(&self) -> Driver {
        match self.kind {
            OpKind::Callable(_) => Driver::CallingThread,
            _ => Driver::Pool,
        }
    }

    /// Prefer the user callback's own exception over the generic one.
    pub fn reraise(&self, err: PyErr) -> PyErr {
        match &self.kind {
            OpKind::Callable(callable) => callable.take_raised().unwrap_or(err),
            _ => err,
        }
    }

    pub fn dim(&self) -> usize {
        self.n
    }
}

#[pymethods]
impl RustOperator {
    /// A dense symmetric matrix (C-contiguous float32 or float64, validated by the caller).
    #[staticmethod]
    #[pyo3(signature = (matrix, check_symmetric))]
    fn dense(py: Python<'_>, matrix: &Bound<'_, PyAny>, check_symmetric: bool) -> PyResult<Self> {
        let arrays = DenseArrays::new(py, matrix, check_symmetric)?;
        let n = arrays.n();
        Ok(RustOperator::new(OpKind::Dense(arrays), n))
    }

    /// A CSR matrix from its three arrays: borrowed as they are
    /// (`storage="full"`), or converted once to its upper triangle
    /// (`storage="upper"`, owned by Rust; the arrays are not kept), or
    /// whichever multiplies faster (`storage="auto"`: the triangle when its
    /// entries stay near the diagonal).
    #[staticmethod]
    #[pyo3(signature = (n, indptr, indices, data, check_symmetric, storage="full"))]
    fn csr(
        py: Python<'_>,
        n: usize,
        indptr: &Bound<'_, PyAny>,
        indices: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        check_symmetric: bool,
        storage: &str,
    ) -> PyResult<Self> {
        let input = CsrInput {
            n,
            indptr,
            indices,
            data,
            check_symmetric,
        };
        let kind = match storage {
            "full" => OpKind::Csr(CsrArrays::new(py, input)?),
            "upper" => OpKind::Upper(UpperArrays::new(py, input)?),
            "auto" => {
                let upper = UpperArrays::new(py, input)?;
                if upper.is_local() {
                    OpKind::Upper(upper)
                } else {
                    // Symmetry was checked on the way to the triangle.
                    let unchecked = CsrInput {
                        check_symmetric: false,
                        ..input
                    };
                    OpKind::Csr(CsrArrays::new(py, unchecked)?)
                }
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "storage must be 'full', 'upper' or 'auto', got {other:?}"
                )))
            }
        };
        Ok(RustOperator::new(kind, n))
    }

    /// "full" or "upper" for sparse operators (what "auto" chose), else None.
    #[getter]
    fn storage(&self) -> Option<&'static str> {
        match &self.kind {
            OpKind::Csr(_) => Some("full"),
            OpKind::Upper(_) => Some("upper"),
            _ => None,
        }
    }

    /// Bytes of matrix storage one product reads (sparse operators), else None.
    #[getter]
    fn nbytes(&self, py: Python<'_>) -> Option<usize> {
        match &self.kind {
            OpKind::Csr(csr) => Some(csr.nbytes(py)),
            OpKind::Upper(upper) => Some(upper.nbytes()),
            _ => None,
        }
    }

    /// The stored upper triangle as CSR arrays `(indptr, indices, data)`
    /// (copies; half-storage operators only).
    fn upper_triangle<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        match &self.kind {
            OpKind::Upper(upper) => upper.to_arrays(py),
            _ => Err(PyValueError::new_err(
                "upper_triangle: the operator does not use storage='upper'",
            )),
        }
    }

    /// A Python function computing `A @ x` (and optionally `A @ X`), in
    /// arithmetic of unit roundoff `precision` (float32's for float32 functions).
    #[staticmethod]
    #[pyo3(signature = (n, matvec, matmat=None, precision=f64::EPSILON))]
    fn callable(n: usize, matvec: Py<PyAny>, matmat: Option<Py<PyAny>>, precision: f64) -> Self {
        RustOperator::new(
            OpKind::Callable(CallableOp {
                n,
                matvec,
                matmat,
                precision: if precision.is_finite() && precision > 0.0 {
                    precision
                } else {
                    f64::EPSILON
                },
                raised: Mutex::new(None),
            }),
            n,
        )
    }

    #[getter]
    fn n(&self) -> usize {
        self.n
    }

    /// `A @ x` for a float64 vector.
    fn matvec<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let xs = x
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("x: {e}")))?;
        if xs.len() != self.n {
            return Err(PyValueError::new_err(format!(
                "x has length {}, expected {}",
                xs.len(),
                self.n
            )));
        }
        let out = PyArray1::<f64>::zeros(py, self.n, false);
        {
            let mut out_rw = out.readwrite();
            let ys = out_rw
                .as_slice_mut()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let driver = self.driver();
            let result = self.with_op(py, |op| match driver {
                Driver::CallingThread => op.apply(xs, ys),
                Driver::Pool => py.detach(|| super::pool::install(|| op.apply(xs, ys))),
            })?;
            result.map_err(|e| self.reraise(super::errors::to_py(e)))?;
        }
        Ok(out)
    }

    /// `A @ X` for a C-contiguous float64 `(n, k)` block.
    fn matmat<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let shape = x.shape();
        if shape[0] != self.n {
            return Err(PyValueError::new_err(format!(
                "X has {} rows, expected {}",
                shape[0], self.n
            )));
        }
        let ncols = shape[1];
        let xs = x
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("X: {e}")))?;
        let out = PyArray2::<f64>::zeros(py, [self.n, ncols], false);
        {
            let mut out_rw = out.readwrite();
            let ys = out_rw
                .as_slice_mut()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let driver = self.driver();
            let result = self.with_op(py, |op| match driver {
                Driver::CallingThread => op.apply_block(xs, ys, ncols),
                Driver::Pool => {
                    py.detach(|| super::pool::install(|| op.apply_block(xs, ys, ncols)))
                }
            })?;
            result.map_err(|e| self.reraise(super::errors::to_py(e)))?;
        }
        Ok(out)
    }
}
