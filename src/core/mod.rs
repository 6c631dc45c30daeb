//! The mathematics of hessx, free of Python: operators, eigensolvers, models.
//!
//! - [`sparse`]: explicit sparse matrices (full CSR, half storage, inertia).
//! - [`krylov`]: Krylov machinery (basis sweeps, loss-of-orthogonality
//!   estimate, tridiagonal eigenproblems) and the solvers built on it
//!   (thick-restart Lanczos, stochastic Lanczos quadrature, trace estimators).
//! - [`dense`], [`mlp`]: the other operators; [`op`] the trait they share.

pub mod dense;
pub mod error;
pub mod krylov;
pub mod mlp;
pub mod monitor;
pub mod op;
pub mod simd_state;
pub mod sparse;
pub(crate) mod workers;
