//! The error function and its complement in f64, for the exact GELU x·Φ(x).
//!
//! Rust's std has no `erf`. This is the FreeBSD/fdlibm `s_erf.c` algorithm
//! (the one musl and the `libm` crate ship), which is accurate to within one
//! ulp. With s = |x|:
//!
//! - s < 0.84375: erf(x) = x + x·P(x²)/Q(x²) (odd rational fit of erf(x)/x − 1);
//! - 0.84375 ≤ s < 1.25: erf(s) = c + P₁(s−1)/Q₁(s−1), c = erf(1) rounded to 24 bits;
//! - 1.25 ≤ s < 28: erfc(s) = exp(−s² − 0.5625 + R(1/s²)/S(1/s²)) / s, with two
//!   rational fits split at 1/0.35. −s² is evaluated as −z² + (z−s)(z+s), z = s
//!   with its low 32 bits cleared, so that z² is exact and the large exponent
//!   loses no bits.
//!
//! Reference: W. J. Cody, "Rational Chebyshev approximations for the error
//! function", Math. Comp. 23 (1969); coefficients from Sun Microsystems' fdlibm:
//!
//! Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//! Developed at SunPro, a Sun Microsystems, Inc. business.
//! Permission to use, copy, modify, and distribute this software is freely
//! granted, provided that this notice is preserved.

// The coefficients keep fdlibm's published digits so they can be checked against the source.
#![allow(clippy::excessive_precision)]

const ERX: f64 = 8.45062911510467529297e-01;
// erf on [0, 0.84375].
const EFX8: f64 = 1.02703333676410069053e+00;
const PP: [f64; 5] = [
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
];
const QQ: [f64; 5] = [
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
];
// erf on [0.84375, 1.25].
const PA: [f64; 7] = [
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
];
const QA: [f64; 6] = [
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
];
// erfc on [1.25, 1/0.35].
const RA: [f64; 8] = [
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e+01,
    -6.23753324503260060396e+01,
    -1.62396669462573470355e+02,
    -1.84605092906711035994e+02,
    -8.12874355063065934246e+01,
    -9.81432934416914548592e+00,
];
const SA: [f64; 8] = [
    1.96512716674392571292e+01,
    1.37657754143519042600e+02,
    4.34565877475229228821e+02,
    6.45387271733267880336e+02,
    4.29008140027567833386e+02,
    1.08635005541779435134e+02,
    6.57024977031928170135e+00,
    -6.04244152148580987438e-02,
];
// erfc on [1/0.35, 28].
const RB: [f64; 7] = [
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e+01,
    -1.60636384855821916062e+02,
    -6.37566443368389627722e+02,
    -1.02509513161107724954e+03,
    -4.83519191608651397019e+02,
];
const SB: [f64; 7] = [
    3.03380607434824582924e+01,
    3.25792512996573918826e+02,
    1.53672958608443695994e+03,
    3.19985821950859553908e+03,
    2.55305040643316442583e+03,
    4.74528541206955367215e+02,
    -2.24409524465858183362e+01,
];

/// Horner evaluation of c[0] + c[1] t + ... .
#[inline(always)]
fn poly(coefficients: &[f64], t: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |acc, &c| acc * t + c)
}

/// Horner evaluation of 1 + c[0] t + c[1] t² + ... .
#[inline(always)]
fn poly_one(coefficients: &[f64], t: f64) -> f64 {
    1.0 + t * poly(coefficients, t)
}

/// (erf(x) − x) / x for |x| < 0.84375.
#[inline(always)]
fn small_ratio(x: f64) -> f64 {
    let z = x * x;
    poly(&PP, z) / poly_one(&QQ, z)
}

/// erf(s) − ERX for s = |x| in [0.84375, 1.25].
#[inline(always)]
fn near_one(s: f64) -> f64 {
    let t = s - 1.0;
    poly(&PA, t) / poly_one(&QA, t)
}

/// erfc(s) for s in [1.25, 28).
#[inline(always)]
fn tail(s: f64) -> f64 {
    let t = 1.0 / (s * s);
    let ratio = if s < 1.0 / 0.35 {
        poly(&RA, t) / poly_one(&SA, t)
    } else {
        poly(&RB, t) / poly_one(&SB, t)
    };
    let z = f64::from_bits(s.to_bits() & 0xffff_ffff_0000_0000);
    (-z * z - 0.5625).exp() * ((z - s) * (z + s) + ratio).exp() / s
}

/// The error function erf(x) = 2/√π ∫₀ˣ e^{−t²} dt.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let s = x.abs();
    let magnitude = if s < 0.84375 {
        if s < 2f64.powi(-28) {
            // 2/√π = 1 + EFX8/8, scaled to avoid underflow for subnormal x.
            return 0.125 * (8.0 * x + EFX8 * x);
        }
        return x + x * small_ratio(x);
    } else if s < 1.25 {
        ERX + near_one(s)
    } else if s < 6.0 {
        1.0 - tail(s)
    } else {
        1.0
    };
    magnitude.copysign(x)
}

/// The complementary error function erfc(x) = 1 − erf(x), accurate in the tails.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let s = x.abs();
    if s < 0.84375 {
        if s < 2f64.powi(-56) {
            return 1.0 - x;
        }
        let r = small_ratio(x);
        // Splitting 1 − erf(x) as 0.5 + (0.5 − erf(x)) keeps the last bits when erf(x) > 1/4.
        return if x < 0.25 {
            1.0 - (x + x * r)
        } else {
            0.5 - (x - 0.5 + x * r)
        };
    }
    if s < 1.25 {
        let e = near_one(s);
        return if x > 0.0 {
            1.0 - ERX - e
        } else {
            1.0 + (ERX + e)
        };
    }
    if s < 28.0 {
        let upper = tail(s);
        return if x > 0.0 { upper } else { 2.0 - upper };
    }
    if x > 0.0 {
        0.0
    } else {
        2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (x, erf(x), erfc(x)) from mpmath at 30 digits, rounded to f64.
    const TABLE: [(f64, f64, f64); 14] = [
        (0.0, 0.0, 1.0),
        (1e-10, 1.1283791670955126e-10, 0.999999999887162),
        (0.1, 0.1124629160182849, 0.887537083981715),
        (0.3, 0.3286267594591274, 0.6713732405408726),
        (0.5, 0.5204998778130465, 0.4795001221869535),
        (0.8, 0.7421009647076605, 0.2578990352923395),
        (1.0, 0.8427007929497149, 0.15729920705028513),
        (1.2, 0.9103139782296353, 0.08968602177036464),
        (2.0, 0.9953222650189527, 0.004677734981047266),
        (2.5, 0.999593047982555, 0.0004069520174449589),
        (3.5, 0.9999992569016276, 7.430983723414128e-07),
        (5.0, 0.9999999999984626, 1.537459794428035e-12),
        (10.0, 1.0, 2.088487583762545e-45),
        (26.0, 1.0, 5.663192408856143e-296),
    ];

    fn rel(a: f64, b: f64) -> f64 {
        if b == 0.0 {
            a.abs()
        } else {
            ((a - b) / b).abs()
        }
    }

    #[test]
    fn matches_reference_values() {
        for &(x, e, c) in &TABLE {
            assert!(rel(erf(x), e) <= 2e-16, "erf({x}) = {} vs {e}", erf(x));
            assert!(rel(erf(-x), -e) <= 2e-16, "erf(-{x})");
            let tol = 4e-16;
            assert!(rel(erfc(x), c) <= tol, "erfc({x}) = {} vs {c}", erfc(x));
            assert!(rel(erfc(-x), 2.0 - c) <= 2e-16, "erfc(-{x})");
        }
    }

    #[test]
    fn special_values() {
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert!(erf(f64::NAN).is_nan() && erfc(f64::NAN).is_nan());
        assert_eq!(erfc(30.0), 0.0);
    }

    #[test]
    fn derivative_is_gaussian() {
        // d/dx erf = 2/√π e^{−x²}: a central difference checks every branch boundary region.
        let h = 1e-6;
        for i in 0..400 {
            let x = -6.0 + 0.03 * i as f64;
            let numeric = (erf(x + h) - erf(x - h)) / (2.0 * h);
            let exact = 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp();
            assert!(
                (numeric - exact).abs() <= 1e-9,
                "x = {x}: {numeric} vs {exact}"
            );
            assert!((erf(x) + erfc(x) - 1.0).abs() <= 2e-16, "x = {x}");
        }
    }
}
