//! The CSR operator's buffers: SciPy's own `indptr`/`indices`/`data` arrays,
//! kept alive and borrowed read-only for every product (no copy). Validation
//! (structure, finiteness, symmetry) runs once, at construction.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::core::op::SymOp;
use crate::core::sparse::csr::{CsrLayout, CsrRef};

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

impl CsrArrays {
    pub fn new(
        py: Python<'_>,
        n: usize,
        indptr: &Bound<'_, PyAny>,
        indices: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        check_symmetric: bool,
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
        let layout = with_csr!(py, n, &buffers, None, |csr| {
            let rtol = if data_f32 {
                SYMMETRY_RTOL_F32
            } else {
                SYMMETRY_RTOL_F64
            };
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
