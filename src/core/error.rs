//! Core errors are data: each variant names the argument at fault and says what
//! was wrong, so the binding layer can map it to a Python exception unchanged.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An argument has the wrong length or shape.
    Shape {
        what: String,
        expected: String,
        got: String,
    },
    /// An argument contains NaN or Inf.
    NonFinite { what: String, index: usize },
    /// A matrix that must be symmetric is not (entry (row, col) differs from (col, row)).
    NotSymmetric {
        what: String,
        row: usize,
        col: usize,
        value: f64,
        transpose_value: f64,
    },
    /// An argument has a value outside its domain (k too large, bad `which`, ...).
    InvalidArgument { what: String, reason: String },
    /// A structural invariant of an input is broken (CSR indptr not monotone, ...).
    InvalidStructure { what: String, reason: String },
    /// The computation was stopped by the caller's monitor (Ctrl-C).
    Interrupted,
    /// A user-supplied operator failed; the binding layer keeps the original exception.
    Operator(String),
}

impl Error {
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn shape(
        what: impl Into<String>,
        expected: impl fmt::Display,
        got: impl fmt::Display,
    ) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }

    pub fn structure(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidStructure {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { what, expected, got } => {
                write!(f, "{what} has the wrong shape: expected {expected}, got {got}")
            }
            Error::NonFinite { what, index } => {
                write!(f, "{what} contains NaN or Inf (first at index {index})")
            }
            Error::NotSymmetric {
                what,
                row,
                col,
                value,
                transpose_value,
            } => write!(
                f,
                "{what} is not symmetric: A[{row}, {col}] = {value:e} but A[{col}, {row}] = {transpose_value:e} \
                 (pass check_symmetric=False to skip this check)"
            ),
            Error::InvalidArgument { what, reason } => write!(f, "{what}: {reason}"),
            Error::InvalidStructure { what, reason } => write!(f, "{what} is malformed: {reason}"),
            Error::Interrupted => write!(f, "interrupted"),
            Error::Operator(msg) => write!(f, "operator failed: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// The index of the first non-finite entry, if any.
pub fn first_non_finite<T: Copy + Into<f64>>(values: &[T]) -> Option<usize> {
    values.iter().position(|&v| !v.into().is_finite())
}

/// `Err(NonFinite)` naming `what` when `values` holds NaN or Inf.
pub fn check_finite<T: Copy + Into<f64>>(what: &str, values: &[T]) -> Result<()> {
    match first_non_finite(values) {
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
        }),
        None => Ok(()),
    }
}
