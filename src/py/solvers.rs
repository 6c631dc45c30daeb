//! Eigensolver entry points: argument conversion only; the work is in core.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::krylov::lanczos::{lanczos, LanczosParams, Which};

use super::errors::to_py;
use super::operators::RustOperator;

/// Thick-restart Lanczos on a hessx operator. Returns a dict with `values`
/// (ascending), `vectors` ((n, k) or None), `residuals`, `converged`,
/// `n_matvec`, `n_restarts`, `all_converged`, `ncv`.
#[pyfunction]
#[pyo3(signature = (op, k, which, ncv, maxiter, tol, v0, seed, want_vectors, progress, check_multiplicities=true))]
#[allow(clippy::too_many_arguments)]
pub fn lanczos_solve<'py>(
    py: Python<'py>,
    op: &RustOperator,
    k: usize,
    which: &str,
    ncv: Option<usize>,
    maxiter: Option<usize>,
    tol: f64,
    v0: Option<PyReadonlyArray1<'py, f64>>,
    seed: u64,
    want_vectors: bool,
    progress: bool,
    check_multiplicities: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let which = Which::parse(which).map_err(to_py)?;
    let v0 = match v0 {
        Some(v) => Some(
            v.as_slice()
                .map_err(|e| PyValueError::new_err(format!("v0: {e}")))?
                .to_vec(),
        ),
        None => None,
    };
    let params = LanczosParams {
        k,
        which,
        ncv,
        maxiter,
        tol,
        v0,
        seed,
        want_vectors,
        check_multiplicities,
    };
    let output = op.run_detached(py, progress, |sym, monitor| lanczos(sym, &params, monitor))?;

    let n = op.dim();
    let n_values = output.values.len();
    let result = PyDict::new(py);
    result.set_item("values", PyArray1::from_vec(py, output.values))?;
    if want_vectors {
        // Core vectors are column-major (each eigenvector contiguous): expose them
        // as a Fortran-ordered (n, k) array without reordering.
        let flat = PyArray1::from_vec(py, output.vectors);
        let vectors: Bound<'py, PyArray2<f64>> =
            flat.reshape_with_order([n, n_values], numpy::npyffi::NPY_ORDER::NPY_FORTRANORDER)?;
        result.set_item("vectors", vectors)?;
    } else {
        result.set_item("vectors", py.None())?;
    }
    result.set_item("residuals", PyArray1::from_vec(py, output.residuals))?;
    result.set_item("converged", PyArray1::from_vec(py, output.converged))?;
    result.set_item("n_matvec", output.n_matvec)?;
    result.set_item("n_restarts", output.n_restarts)?;
    result.set_item("all_converged", output.all_converged)?;
    result.set_item("ncv", output.ncv)?;
    Ok(result)
}
