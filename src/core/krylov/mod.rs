//! Krylov machinery and the solvers built on it.
//!
//! - `basis`: Gram–Schmidt sweeps over a column-major basis (projections,
//!   updates, both fused), deterministic for any thread count.
//! - [`orthogonality`](self): Simon's estimate of the loss of orthogonality,
//!   shared by Lanczos and SLQ.
//! - [`tridiag`]: the small projected eigenproblems.
//! - [`lanczos`]: thick-restart Lanczos for extreme eigenpairs.
//! - [`slq`]: stochastic Lanczos quadrature with honest error bars.
//! - [`trace`]: Hutchinson and Hutch++ trace estimators.

pub(crate) mod basis;
pub mod lanczos;
pub(crate) mod orthogonality;
pub mod slq;
pub mod trace;
pub mod tridiag;
