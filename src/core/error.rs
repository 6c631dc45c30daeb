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
            Error::Shape {
                what,
                expected,
                got,
            } => {
                write!(
                    f,
                    "{what} has the wrong shape: expected {expected}, got {got}"
                )
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
                "{what} is not symmetric: {what}[{row}, {col}] = {} but {what}[{col}, {row}] = {} \
                 (pass check_symmetric=False to skip this check)",
                python_float(*value),
                python_float(*transpose_value)
            ),
            Error::InvalidArgument { what, reason } => write!(f, "{what}: {reason}"),
            Error::InvalidStructure { what, reason } => write!(f, "{what} is malformed: {reason}"),
            Error::Interrupted => write!(f, "interrupted"),
            Error::Operator(msg) => write!(f, "operator failed: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// `x` as Python's `repr(float)` writes it (`2.0`, `-0.0`, `0.25`,
/// `1e-05`, `2.5857254547e+20`): messages reach Python users, who should
/// not have to read Rust's `2e0` or `-2.5e-1`.
pub fn python_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".to_string()
        } else if x > 0.0 {
            "inf".to_string()
        } else {
            "-inf".to_string()
        };
    }
    let magnitude = x.abs();
    if x == 0.0 || (1e-4..1e16).contains(&magnitude) {
        // Shortest round-trip digits, with Python's ".0" on integral values.
        let plain = format!("{x}");
        return if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        };
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_writes_them() {
        for (x, python) in [
            (2.0, "2.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.25, "0.25"),
            (-0.258572545473924, "-0.258572545473924"),
            (1e-5, "1e-05"),
            (-2.5e-300, "-2.5e-300"),
            (1e16, "1e+16"),
            (123456.5, "123456.5"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(python_float(x), python);
        }
    }

    #[test]
    fn asymmetry_names_the_argument_in_both_entries() {
        let error = Error::NotSymmetric {
            what: "A".to_string(),
            row: 0,
            col: 1,
            value: 2.0,
            transpose_value: -0.0,
        };
        assert_eq!(
            error.to_string(),
            "A is not symmetric: A[0, 1] = 2.0 but A[1, 0] = -0.0 \
             (pass check_symmetric=False to skip this check)"
        );
    }
}
