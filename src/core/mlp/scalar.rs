//! The element types a network is stored in: f32 and f64.
//!
//! Storage and GEMMs run in `T`; reductions (the loss, bias gradients, the
//! softmax normaliser) accumulate in f64 so that f32 storage does not mean f32
//! sums over a batch of thousands of examples.

use faer::traits::RealField;

/// A floating-point element type usable for network parameters and data.
pub trait Real:
    RealField + Copy + Default + Send + Sync + Into<f64> + std::fmt::Debug + 'static
{
    /// NumPy's name for the type ("float32", "float64").
    const DTYPE: &'static str;
    /// The unit roundoff of the type, as an f64.
    const EPSILON: f64;

    /// Rounds an f64 to this type.
    fn cast(value: f64) -> Self;

    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.into()
    }

    /// (tanh(x), 1 − tanh²(x)); the slope is computed without the cancellation
    /// of 1 − a² where tanh saturates.
    fn tanh_and_slope(self) -> (Self, Self);

    fn exp(self) -> Self;

    /// `values` as a slice of this type when it is f32 (no conversion needed).
    fn from_f32_slice(values: &[f32]) -> Option<&[Self]>;
}

impl Real for f32 {
    const DTYPE: &'static str = "float32";
    const EPSILON: f64 = f32::EPSILON as f64;

    #[inline(always)]
    fn cast(value: f64) -> Self {
        value as f32
    }

    #[inline(always)]
    fn tanh_and_slope(self) -> (Self, Self) {
        tanh_and_slope_f32(self)
    }

    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }

    fn from_f32_slice(values: &[f32]) -> Option<&[Self]> {
        Some(values)
    }
}

impl Real for f64 {
    const DTYPE: &'static str = "float64";
    const EPSILON: f64 = f64::EPSILON;

    #[inline(always)]
    fn cast(value: f64) -> Self {
        value
    }

    #[inline(always)]
    fn tanh_and_slope(self) -> (Self, Self) {
        let a = f64::tanh(self);
        (a, 1.0 - a * a)
    }

    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }

    fn from_f32_slice(_: &[f32]) -> Option<&[Self]> {
        None
    }
}

/// e^x for x in [−80, 0] (Cephes `expf`: x = n ln2 + r with |r| ≤ ln2/2, a
/// degree-7 polynomial for e^r, and 2ⁿ assembled from its exponent bits), in
/// branch-free arithmetic the compiler vectorises. Relative error ≈ 1e-7.
#[inline(always)]
fn exp_nonpositive_f32(x: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a
    // call to `roundf` (which the baseline x86-64 target cannot inline).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4f32 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let mantissa = p * r * r + r + 1.0;
    mantissa * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// tanh and its slope in f32, about 8x faster than libm's `tanhf` (which
/// dominated the forward pass) and vectorisable: |x| < 0.625 uses an odd
/// rational minimax fit (Eigen's `generic_fast_tanh_float`); larger |x| uses
/// tanh = 1 − 2e/(1+e), e = exp(−2|x|), whose 2e/(1+e) also gives the slope
/// (1 − a)(1 + a) accurately in saturation. Relative error ≤ 3e-7 (5 ulp).
#[inline(always)]
pub fn tanh_and_slope_f32(x: f32) -> (f32, f32) {
    let ax = x.abs().min(40.0);
    let x2 = ax * ax;
    let numerator = x2
        * (x2
            * (x2
                * (x2 * (x2 * (x2 * -2.760_768_5e-16f32 + 2.000_188e-13) + -8.604_672e-11)
                    + 5.122_297e-8)
                + 1.485_722_4e-5)
            + 6.372_619_3e-4)
        + 4.893_524_6e-3;
    let denominator =
        x2 * (x2 * (x2 * 1.198_258_4e-6f32 + 1.185_347_1e-4) + 2.268_434_6e-3) + 4.893_525e-3;
    let small = ax * numerator / denominator;
    let e = exp_nonpositive_f32(-2.0 * ax);
    let one_minus = 2.0 * e / (1.0 + e);
    let (a, slope) = if ax < 0.625 {
        (small, 1.0 - small * small)
    } else {
        (1.0 - one_minus, one_minus * (2.0 - one_minus))
    };
    (a.copysign(x), slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_f32_tanh_is_accurate() {
        let mut worst = (0.0f64, 0.0f64);
        for i in 0..400_000 {
            let x = (i as f32 - 200_000.0) * 1e-4 * (1.0 + (i % 7) as f32);
            let (a, slope) = tanh_and_slope_f32(x);
            let exact = (x as f64).tanh();
            let exact_slope = 1.0 / (x as f64).cosh().powi(2);
            worst.0 = worst
                .0
                .max((a as f64 - exact).abs() / exact.abs().max(1e-300));
            if exact_slope > 1e-30 {
                worst.1 = worst
                    .1
                    .max((slope as f64 - exact_slope).abs() / exact_slope);
            }
        }
        assert!(worst.0 < 4e-7, "tanh rel err {}", worst.0);
        assert!(worst.1 < 2e-6, "slope rel err {}", worst.1);
        assert_eq!(tanh_and_slope_f32(0.0), (0.0, 1.0));
        assert_eq!(tanh_and_slope_f32(100.0).0, 1.0);
        assert_eq!(tanh_and_slope_f32(-100.0).0, -1.0);
    }
}
