//! The mathematics of hessx, free of Python: operators, eigensolvers, models.

pub mod csr;
pub mod dense;
pub mod error;
pub mod inertia;
pub mod lanczos;
pub mod mlp;
pub mod monitor;
pub mod op;
pub mod simd_state;
pub mod slq;
pub(crate) mod sweep;
pub mod trace;
pub mod tridiag;
pub(crate) mod workers;
