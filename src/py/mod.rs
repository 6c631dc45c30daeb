//! The PyO3 boundary: array conversion, GIL release, Ctrl-C, error mapping.
//! No numerics here.

use pyo3::prelude::*;

mod csr;
mod dense;
mod errors;
mod models;
mod monitor;
mod operators;
mod pool;
mod solvers;
mod spectrum;

#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    pool::set_num_threads(n).map_err(pyo3::exceptions::PyRuntimeError::new_err)
}

#[pyfunction]
fn get_num_threads() -> usize {
    pool::num_threads()
}

#[pymodule]
fn _hessx(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<operators::RustOperator>()?;
    m.add_class::<models::MlpCore>()?;
    m.add_function(wrap_pyfunction!(solvers::lanczos_solve, m)?)?;
    m.add_class::<spectrum::SlqResult>()?;
    m.add_function(wrap_pyfunction!(spectrum::slq_run, m)?)?;
    m.add_function(wrap_pyfunction!(spectrum::hutchinson_run, m)?)?;
    m.add_function(wrap_pyfunction!(spectrum::hutchpp_run, m)?)?;
    m.add_function(wrap_pyfunction!(spectrum::inertia_counts, m)?)?;
    m.add_function(wrap_pyfunction!(spectrum::inertia_of, m)?)?;
    m.add_function(wrap_pyfunction!(spectrum::factor_size, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    Ok(())
}
