//! The operator abstraction every solver works against.
//!
//! Solvers work in f64 (Lanczos recurrences lose too much in f32); an operator
//! stored in f32 converts on the fly and accumulates in f64, so "f32 operator"
//! means f32 storage, not f32 arithmetic in the solver.

use crate::core::error::Result;

/// A real symmetric linear operator of dimension `dim() x dim()`.
pub trait SymOp: Sync {
    fn dim(&self) -> usize;

    /// `y = A x`. `x.len() == y.len() == dim()` is the caller's promise.
    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()>;

    /// `Y = A X` for `ncols` vectors stored row-major (`x[i * ncols + c]`
    /// is entry i of vector c): the layout of a C-contiguous NumPy `(n, ncols)`
    /// array, and the one that lets a sparse kernel stream each row once.
    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        apply_block_by_columns(self, x, y, ncols)
    }

    /// The relative accuracy of a product, `‖fl(A x) − A x‖ ≈ precision · ‖A‖ ‖x‖`:
    /// the unit roundoff of the arithmetic the operator does (not of its storage).
    /// Solvers that skip work while rounding stays small scale their estimates by it.
    fn relative_precision(&self) -> f64 {
        f64::EPSILON
    }

    /// The unit roundoff of the operator's data: float32's for a float32
    /// matrix even though its products are computed in float64. The data's
    /// eigenvalues are only defined to about this times `‖A‖` (Weyl), so
    /// solvers stop refining residuals there.
    fn data_precision(&self) -> f64 {
        self.relative_precision()
    }

    /// `y = A x` for a float32 `x`, offered by operators that round their input
    /// to float32 anyway (a float32 network's Hessian), so a solver keeping its
    /// vectors in float32 hands them over without widening and re-narrowing
    /// them. `None`: not offered; the caller widens `x` and calls [`apply`](Self::apply).
    /// The result must equal `apply` on the widened `x`.
    fn apply_f32_input(&self, _x: &[f32], _y: &mut [f64]) -> Option<Result<()>> {
        None
    }

    /// Whether products may run on threads other than the caller's, several
    /// at once. False for operators that call back into Python: the user's
    /// function must run on the thread that called hessx.
    fn allows_concurrent_products(&self) -> bool {
        true
    }
}

/// `Y = A X` one column at a time through `apply`: the fallback for operators
/// with no faster block product.
pub fn apply_block_by_columns<A: SymOp + ?Sized>(
    op: &A,
    x: &[f64],
    y: &mut [f64],
    ncols: usize,
) -> Result<()> {
    let n = op.dim();
    let mut column = vec![0.0; n];
    let mut product = vec![0.0; n];
    for c in 0..ncols {
        for i in 0..n {
            column[i] = x[i * ncols + c];
        }
        op.apply(&column, &mut product)?;
        for i in 0..n {
            y[i * ncols + c] = product[i];
        }
    }
    Ok(())
}

impl<T: SymOp + ?Sized> SymOp for &T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        (**self).apply(x, y)
    }
    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        (**self).apply_block(x, y, ncols)
    }
    fn apply_f32_input(&self, x: &[f32], y: &mut [f64]) -> Option<Result<()>> {
        (**self).apply_f32_input(x, y)
    }
    fn relative_precision(&self) -> f64 {
        (**self).relative_precision()
    }
    fn data_precision(&self) -> f64 {
        (**self).data_precision()
    }
    fn allows_concurrent_products(&self) -> bool {
        (**self).allows_concurrent_products()
    }
}
