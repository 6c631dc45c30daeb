//! One table from core errors to Python exceptions.

use crate::core::error::Error;
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::PyErr;

pub fn to_py(err: Error) -> PyErr {
    match err {
        Error::Interrupted => PyKeyboardInterrupt::new_err("hessx computation interrupted"),
        Error::Operator(msg) => PyRuntimeError::new_err(msg),
        other => PyValueError::new_err(other.to_string()),
    }
}
