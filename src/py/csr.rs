//! The CSR operator's buffers: SciPy's own `indptr`/`indices`/`data` arrays,
//! kept alive and borrowed read-only for every product (no copy). Validation
//! (structure, finiteness, symmetry) runs once, at construction. With
//! `storage="upper"` the arrays are validated the same way, converted once to
//! the upper triangle (Rust-owned) and not kept.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::core::op::SymOp;
use crate::core::sparse::csr::{CsrLayout, CsrRef};
use crate::core::sparse::upper::UpperCsr;

use super::errors::to_py;

/// Symmetry tolerance relative to the entries compared (documented in csr.rs).
const SYMMETRY_RTOL_F64: f64 = 1e-12;
const SYMMETRY_RTOL_F32: f64 = 1e-6;

enum Buffers {
    F64I32(Py<PyArray1<i32>>, Py<PyArray1<i32>>, Py<PyArray1<f64>>),
    F64I64(Py<PyArray1<i64>>, Py<PyArray1<i64>>, Py<PyArray1<f64>>),
    F32I32(Py<PyArray1<i32>>, Py<PyArray1<i32>>, Py<PyArray1<f32>>),
    F32I64(Py<PyArray1<i64>>, Py<PyArray1<i64>>, Py<PyArray1<f32>>),
}

pub struct CsrArrays {
    n: usize,
    buffers: Buffers,
    layout: CsrLayout,
}

/// Borrow the three arrays read-only and bind `$csr` to a `CsrRef` over them.
macro_rules! with_csr {
    ($py:expr, $n:expr, $buffers:expr, $layout:expr, |$csr:ident| $body:expr) => {
        match $buffers {
            Buffers::F64I32(p, i, d) => with_csr!(@one $py, $n, p, i, d, $layout, |$csr| $body),
            Buffers::F64I64(p, i, d) => with_csr!(@one $py, $n, p, i, d, $layout, |$csr| $body),
            Buffers::F32I32(p, i, d) => with_csr!(@one $py, $n, p, i, d, $layout, |$csr| $body),
            Buffers::F32I64(p, i, d) => with_csr!(@one $py, $n, p, i, d, $layout, |$csr| $body),
        }
    };
    (@one $py:expr, $n:expr, $p:expr, $i:expr, $d:expr, $layout:expr, |$csr:ident| $body:expr) => {{
        let (p, i, d) = ($p.bind($py).readonly(), $i.bind($py).readonly(), $d.bind($py).readonly());
        let (p, i, d) = (
            p.as_slice().map_err(|e| PyTypeError::new_err(format!("A.indptr: {e}")))?,
            i.as_slice().map_err(|e| PyTypeError::new_err(format!("A.indices: {e}")))?,
            d.as_slice().map_err(|e| PyTypeError::new_err(format!("A.data: {e}")))?,
        );
        // Inside hessx's pool: its checks are parallel, and rayon's global pool
        // is dead in a process forked after it started.
        let $csr = super::pool::install(|| CsrRef::from_layout($n, p, i, d, $layout))
            .map_err(to_py)?;
        $body
    }};
}

impl Buffers {
    /// Keeps the three arrays (references, no copy) with their dtypes known.
    fn new(
        indptr: &Bound<'_, PyAny>,
        indices: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let index_i32 =
            indptr.cast::<PyArray1<i32>>().is_ok() && indices.cast::<PyArray1<i32>>().is_ok();
        let index_i64 =
            indptr.cast::<PyArray1<i64>>().is_ok() && indices.cast::<PyArray1<i64>>().is_ok();
        let data_f64 = data.cast::<PyArray1<f64>>().is_ok();
        let data_f32 = data.cast::<PyArray1<f32>>().is_ok();
        let typed = |e: pyo3::CastError<'_, '_>| PyTypeError::new_err(e.to_string());
        let buffers = match (data_f64, data_f32, index_i32, index_i64) {
            (true, _, true, _) => Buffers::F64I32(
                indptr.cast::<PyArray1<i32>>().map_err(typed)?.clone().unbind(),
                indices.cast::<PyArray1<i32>>().map_err(typed)?.clone().unbind(),
                data.cast::<PyArray1<f64>>().map_err(typed)?.clone().unbind(),
            ),
            (true, _, _, true) => Buffers::F64I64(
                indptr.cast::<PyArray1<i64>>().map_err(typed)?.clone().unbind(),
                indices.cast::<PyArray1<i64>>().map_err(typed)?.clone().unbind(),
                data.cast::<PyArray1<f64>>().map_err(typed)?.clone().unbind(),
            ),
            (_, true, true, _) => Buffers::F32I32(
                indptr.cast::<PyArray1<i32>>().map_err(typed)?.clone().unbind(),
                indices.cast::<PyArray1<i32>>().map_err(typed)?.clone().unbind(),
                data.cast::<PyArray1<f32>>().map_err(typed)?.clone().unbind(),
            ),
            (_, true, _, true) => Buffers::F32I64(
                indptr.cast::<PyArray1<i64>>().map_err(typed)?.clone().unbind(),
                indices.cast::<PyArray1<i64>>().map_err(typed)?.clone().unbind(),
                data.cast::<PyArray1<f32>>().map_err(typed)?.clone().unbind(),
            ),
            _ => {
                return Err(PyTypeError::new_err(
                    "A: CSR data must be float32 or float64 and indptr/indices both int32 or both int64",
                ))
            }
        };
        Ok(buffers)
    }

    fn symmetry_rtol(&self) -> f64 {
        match self {
            Buffers::F32I32(..) | Buffers::F32I64(..) => SYMMETRY_RTOL_F32,
            _ => SYMMETRY_RTOL_F64,
        }
    }
}

/// SciPy's CSR arrays of an `n x n` matrix as Python handed them over,
/// with whether to check symmetry.
#[derive(Clone, Copy)]
pub struct CsrInput<'a, 'py> {
    pub n: usize,
    pub indptr: &'a Bound<'py, PyAny>,
    pub indices: &'a Bound<'py, PyAny>,
    pub data: &'a Bound<'py, PyAny>,
    pub check_symmetric: bool,
}

impl CsrArrays {
    pub fn new(py: Python<'_>, input: CsrInput<'_, '_>) -> PyResult<Self> {
        let CsrInput {
            n, check_symmetric, ..
        } = input;
        let buffers = Buffers::new(input.indptr, input.indices, input.data)?;
        let rtol = buffers.symmetry_rtol();
        let layout = with_csr!(py, n, &buffers, None, |csr| {
            py.detach(|| {
                super::pool::install(|| {
                    if check_symmetric {
                        csr.check_symmetric(rtol)?;
                    }
                    Ok(csr.layout())
                })
            })
            .map_err(to_py)?
        });
        Ok(CsrArrays { n, buffers, layout })
    }

    /// Bytes of the three borrowed arrays (what one product reads of the matrix).
    pub fn nbytes(&self, py: Python<'_>) -> usize {
        fn bytes<T: numpy::Element>(a: &Py<PyArray1<T>>, py: Python<'_>) -> usize {
            numpy::PyUntypedArrayMethods::len(a.bind(py)) * std::mem::size_of::<T>()
        }
        match &self.buffers {
            Buffers::F64I32(p, i, d) => bytes(p, py) + bytes(i, py) + bytes(d, py),
            Buffers::F64I64(p, i, d) => bytes(p, py) + bytes(i, py) + bytes(d, py),
            Buffers::F32I32(p, i, d) => bytes(p, py) + bytes(i, py) + bytes(d, py),
            Buffers::F32I64(p, i, d) => bytes(p, py) + bytes(i, py) + bytes(d, py),
        }
    }

    pub fn with_op<R>(&self, py: Python<'_>, f: impl FnOnce(&dyn SymOp) -> R) -> PyResult<R> {
        Ok(with_csr!(
            py,
            self.n,
            &self.buffers,
            Some(&self.layout),
            |csr| f(&csr)
        ))
    }
}

/// Half storage: the upper triangle, converted once from SciPy's arrays (which
/// are not kept) and owned by Rust.
pub enum UpperArrays {
    F64I32(UpperCsr<f64, i32>),
    F64I64(UpperCsr<f64, i64>),
    F32I32(UpperCsr<f32, i32>),
    F32I64(UpperCsr<f32, i64>),
}

macro_rules! upper_from {
    ($($variant:ident: $t:ty, $i:ty;)*) => {$(
        impl From<UpperCsr<$t, $i>> for UpperArrays {
            fn from(upper: UpperCsr<$t, $i>) -> Self {
                UpperArrays::$variant(upper)
            }
        }
    )*};
}

upper_from! {
    F64I32: f64, i32;
    F64I64: f64, i64;
    F32I32: f32, i32;
    F32I64: f32, i64;
}

/// Bind `$u` to the `UpperCsr` inside, whatever its types.
macro_rules! with_upper {
    ($arrays:expr, |$u:ident| $body:expr) => {
        match $arrays {
            UpperArrays::F64I32($u) => $body,
            UpperArrays::F64I64($u) => $body,
            UpperArrays::F32I32($u) => $body,
            UpperArrays::F32I64($u) => $body,
        }
    };
}

impl UpperArrays {
    /// Validates SciPy's full CSR arrays as `CsrArrays::new` does (structure,
    /// finiteness, symmetry when asked), then keeps only the upper triangle.
    pub fn new(py: Python<'_>, input: CsrInput<'_, '_>) -> PyResult<Self> {
        let CsrInput {
            n, check_symmetric, ..
        } = input;
        let buffers = Buffers::new(input.indptr, input.indices, input.data)?;
        let rtol = buffers.symmetry_rtol();
        Ok(with_csr!(py, n, &buffers, None, |csr| {
            py.detach(|| {
                super::pool::install(|| {
                    if check_symmetric {
                        csr.check_symmetric(rtol)?;
                    }
                    Ok(UpperArrays::from(UpperCsr::from_csr(&csr)))
                })
            })
            .map_err(to_py)?
        }))
    }

    pub fn as_op(&self) -> &dyn SymOp {
        with_upper!(self, |u| u)
    }

    pub fn nbytes(&self) -> usize {
        with_upper!(self, |u| u.nbytes())
    }

    /// Entries near the diagonal: the symmetric product beats full storage.
    pub fn is_local(&self) -> bool {
        with_upper!(self, |u| u.is_local())
    }

    /// The triangle as SciPy CSR arrays (indptr, indices, data), copies.
    pub fn to_arrays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        with_upper!(self, |u| {
            let (indptr, indices, data) = u.to_csr_arrays();
            (
                PyArray1::from_vec(py, indptr),
                PyArray1::from_vec(py, indices),
                PyArray1::from_vec(py, data),
            )
                .into_pyobject(py)
                .map_err(|e| PyValueError::new_err(e.to_string()))
        })
    }
}
