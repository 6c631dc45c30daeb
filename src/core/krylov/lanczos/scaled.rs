//! Power-of-two scaling of the operator, so that the solver's arithmetic
//! neither underflows nor overflows for operators whose entries lie near the
//! ends of the f64 range (squared norms of vectors with entries of 1e-200
//! are 0, of 1e160 infinite). Multiplying by `2^e` is exact, so the solver
//! sees `2^e A` with exactly the eigenvectors of `A` and eigenvalues scaled
//! by `2^e`, which the caller divides out exactly.

use crate::core::error::Result;
use crate::core::op::SymOp;
use std::sync::OnceLock;

/// Outputs of this size or nearer to 1 (in binary orders of magnitude) are
/// left alone: no extra pass over the product in the common case.
const SAFE_EXPONENT: i32 = 64;

/// `2^e A`, with `e` chosen from the first product (of the unit start
/// vector) so that its largest entry is of order 1.
pub(super) struct PowerOfTwoScaled<'a> {
    op: &'a dyn SymOp,
    factor: OnceLock<f64>,
}

impl<'a> PowerOfTwoScaled<'a> {
    pub(super) fn new(op: &'a dyn SymOp) -> Self {
        PowerOfTwoScaled {
            op,
            factor: OnceLock::new(),
        }
    }

    /// `y ← 2^e y`, `e` fixed by the first product.
    fn scale_product(&self, y: &mut [f64]) {
        let factor = *self.factor.get_or_init(|| factor_for(y));
        if factor != 1.0 {
            y.iter_mut().for_each(|v| *v *= factor);
        }
    }

    /// The `2^e` applied (1 until the first product).
    pub(super) fn factor(&self) -> f64 {
        self.factor.get().copied().unwrap_or(1.0)
    }
}

fn factor_for(product: &[f64]) -> f64 {
    let largest = product.iter().fold(
        0.0f64,
        |a, x| if x.is_finite() { a.max(x.abs()) } else { a },
    );
    if largest == 0.0 {
        return 1.0;
    }
    // Clamped so that 2^-e itself is a normal, finite number.
    let exponent = (largest.log2().round() as i32).clamp(-1000, 1000);
    if exponent.abs() <= SAFE_EXPONENT {
        1.0
    } else {
        2f64.powi(-exponent)
    }
}

impl SymOp for PowerOfTwoScaled<'_> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        self.op.apply(x, y)?;
        self.scale_product(y);
        Ok(())
    }
    fn apply_f32_input(&self, x: &[f32], y: &mut [f64]) -> Option<Result<()>> {
        let result = self.op.apply_f32_input(x, y)?;
        if result.is_ok() {
            self.scale_product(y);
        }
        Some(result)
    }
    fn relative_precision(&self) -> f64 {
        self.op.relative_precision()
    }
    fn data_precision(&self) -> f64 {
        self.op.data_precision()
    }
    fn allows_concurrent_products(&self) -> bool {
        self.op.allows_concurrent_products()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_are_exact_powers_of_two_and_leave_ordinary_scales_alone() {
        assert_eq!(factor_for(&[0.0, 0.0]), 1.0);
        assert_eq!(factor_for(&[1e10, -3.0]), 1.0);
        assert_eq!(factor_for(&[f64::NAN, 1.0]), 1.0);
        let small = factor_for(&[1e-200, 0.0]);
        assert_eq!(small, 2f64.powi(664));
        assert!((1e-200 * small - 1.0).abs() < 0.5);
        let large = factor_for(&[-1e200]);
        assert!((1e200 * large - 1.0).abs() < 0.5);
        assert_eq!(factor_for(&[f64::MIN_POSITIVE * 1e-10]), 2f64.powi(1000));
    }
}
