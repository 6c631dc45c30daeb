//! Explicit sparse symmetric matrices: SciPy-layout CSR borrowed as it is
//! ([`csr`]), half storage of the upper triangle with a symmetric product
//! ([`upper`]), and exact eigenvalue counts by Sylvester's inertia ([`inertia`]).

pub mod csr;
pub mod inertia;
pub mod upper;
