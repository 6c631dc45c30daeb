//! hessx: Hessians of large models.
//!
//! `core` is pure Rust (operators, Lanczos, stochastic Lanczos quadrature, MLP
//! Hessian-vector products) and builds without Python
//! (`cargo test --no-default-features`); `py` is the thin PyO3 binding.

pub mod core;

#[cfg(feature = "python")]
mod py;
