//! The mathematics of hessx, free of Python: operators, eigensolvers, models.

pub mod error;
pub mod monitor;
pub mod op;
pub mod tridiag;
