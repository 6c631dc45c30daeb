//! The dense operator's buffer: the user's C-contiguous matrix, borrowed.

use numpy::{PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::core::dense::DenseRef;
use crate::core::op::SymOp;

use super::errors::to_py;

/// Relative symmetry tolerance (1000 machine epsilons of the storage type).
const SYMMETRY_RTOL_F64: f64 = 1000.0 * f64::EPSILON;
const SYMMETRY_RTOL_F32: f64 = 1000.0 * f32::EPSILON as f64;

enum Buffer {
    F64(Py<PyArray2<f64>>),
    F32(Py<PyArray2<f32>>),
}

pub struct DenseArrays {
    n: usize,
    buffer: Buffer,
}

macro_rules! with_dense {
    ($py:expr, $buffer:expr, |$dense:ident, $n:ident| $body:expr) => {
        match $buffer {
            Buffer::F64(m) => with_dense!(@one $py, m, |$dense, $n| $body),
            Buffer::F32(m) => with_dense!(@one $py, m, |$dense, $n| $body),
        }
    };
    (@one $py:expr, $m:expr, |$dense:ident, $n:ident| $body:expr) => {{
        let m = $m.bind($py).readonly();
        let shape = m.shape();
        let ($n, cols) = (shape[0], shape[1]);
        let data = m
            .as_slice()
            .map_err(|e| PyTypeError::new_err(format!("M must be C-contiguous: {e}")))?;
        let $dense = DenseRef::new_trusted($n, cols, data).map_err(to_py)?;
        $body
    }};
}

impl DenseArrays {
    pub fn new(py: Python<'_>, matrix: &Bound<'_, PyAny>, check_symmetric: bool) -> PyResult<Self> {
        let buffer = if let Ok(m) = matrix.cast::<PyArray2<f64>>() {
            Buffer::F64(m.clone().unbind())
        } else if let Ok(m) = matrix.cast::<PyArray2<f32>>() {
            Buffer::F32(m.clone().unbind())
        } else {
            return Err(PyTypeError::new_err(
                "M must be a float32 or float64 2-D NumPy array",
            ));
        };
        let rtol = match buffer {
            Buffer::F64(_) => SYMMETRY_RTOL_F64,
            Buffer::F32(_) => SYMMETRY_RTOL_F32,
        };
        // The Python side passes a square 2-D array; DenseRef::new checks it again.
        let n = matrix.cast::<numpy::PyUntypedArray>()?.shape()[0];
        // Full validation (finite values, symmetry) once.
        match &buffer {
            Buffer::F64(m) => validate(
                py,
                m.bind(py).readonly().as_slice(),
                n,
                check_symmetric,
                rtol,
            )?,
            Buffer::F32(m) => validate(
                py,
                m.bind(py).readonly().as_slice(),
                n,
                check_symmetric,
                rtol,
            )?,
        }
        Ok(DenseArrays { n, buffer })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn with_op<R>(&self, py: Python<'_>, f: impl FnOnce(&dyn SymOp) -> R) -> PyResult<R> {
        Ok(with_dense!(py, &self.buffer, |dense, _n| f(&dense)))
    }
}

fn validate<T: crate::core::sparse::csr::Value>(
    py: Python<'_>,
    data: Result<&[T], numpy::AsSliceError>,
    n: usize,
    check_symmetric: bool,
    rtol: f64,
) -> PyResult<()> {
    let data = data.map_err(|e| PyTypeError::new_err(format!("M must be C-contiguous: {e}")))?;
    py.detach(|| {
        super::pool::install(|| {
            let dense = DenseRef::new(n, data.len() / n.max(1), data)?;
            if check_symmetric {
                dense.check_symmetric(rtol)?;
            }
            Ok(())
        })
    })
    .map_err(to_py)
}
