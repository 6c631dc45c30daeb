//! Hidden-layer nonlinearities σ with their first and second derivatives.
//!
//! The R-operator needs σ'(z) (to push a tangent through a layer) and σ''(z)
//! (the curvature term of the backward pass). For tanh and sigmoid both come
//! from the activation value itself; GELU is the exact x·Φ(x), Φ(x) =
//! erfc(−x/√2)/2, with σ' = Φ + xφ and σ'' = φ·(2 − x²), φ the normal density.

use std::fmt;
use std::str::FromStr;

use super::erf::erfc;
use super::scalar::Real;
use crate::core::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Tanh,
    Relu,
    Gelu,
    Sigmoid,
    Identity,
}

impl Activation {
    pub const ALL: [Activation; 5] = [
        Activation::Tanh,
        Activation::Relu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Identity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
        }
    }

    /// True when σ'' vanishes everywhere (almost everywhere for relu), so the
    /// Hessian's curvature term through this activation is zero.
    pub fn is_piecewise_linear(self) -> bool {
        matches!(self, Activation::Relu | Activation::Identity)
    }

    /// (σ(z), σ'(z), σ''(z)). Callers that need fewer outputs inline this and
    /// let the optimiser drop the unused ones.
    #[inline(always)]
    pub fn eval<T: Real>(self, z: T) -> (T, T, T) {
        let zero = T::cast(0.0);
        let one = T::cast(1.0);
        match self {
            Activation::Tanh => {
                let (a, slope) = z.tanh_and_slope();
                (a, slope, T::cast(-2.0) * a * slope)
            }
            Activation::Relu => {
                if z > zero {
                    (z, one, zero)
                } else {
                    (zero, zero, zero)
                }
            }
            Activation::Sigmoid => {
                let s = one / (one + (-z).exp());
                let slope = s * (one - s);
                (s, slope, slope * (one - T::cast(2.0) * s))
            }
            Activation::Gelu => {
                let x: f64 = z.into();
                let cdf = 0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
                let pdf = (-0.5 * x * x).exp()
                    * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
                (
                    T::cast(x * cdf),
                    T::cast(cdf + x * pdf),
                    T::cast(pdf * (2.0 - x * x)),
                )
            }
            Activation::Identity => (z, one, zero),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                Error::invalid(
                    "activation",
                    format!("must be one of \"tanh\", \"relu\", \"gelu\", \"sigmoid\", \"identity\", got {name:?}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        let h = 1e-5;
        for act in Activation::ALL {
            for i in 0..81 {
                let z = -4.0 + 0.1 * i as f64 + 0.013;
                let (value, slope, curvature) = act.eval(z);
                let (plus, slope_plus, _) = act.eval(z + h);
                let (minus, slope_minus, _) = act.eval(z - h);
                assert!(
                    ((plus - minus) / (2.0 * h) - slope).abs() < 1e-8,
                    "{act} σ' at {z}"
                );
                assert!(
                    ((slope_plus - slope_minus) / (2.0 * h) - curvature).abs() < 1e-8,
                    "{act} σ'' at {z}"
                );
                let f32_value = act.eval(z as f32).0 as f64;
                assert!(
                    (f32_value - value).abs() < 1e-6 * (1.0 + value.abs()),
                    "{act} f32 at {z}"
                );
            }
        }
    }

    #[test]
    fn gelu_reference_values() {
        // x·Φ(x) from mpmath.
        let cases: [(f64, f64); 3] = [
            (1.0, 0.8413447460685429),
            (-1.0, -0.15865525393145705),
            (3.0, 2.99595030590511),
        ];
        for (x, expected) in cases {
            let value = Activation::Gelu.eval(x).0;
            assert!(
                (value - expected).abs() <= 1e-15 * expected.abs().max(1.0),
                "gelu({x}) = {value}"
            );
        }
        assert!(Activation::Gelu.eval(-40.0f64).0.abs() < 1e-300);
    }

    #[test]
    fn parses_names() {
        for act in Activation::ALL {
            assert_eq!(act.name().parse::<Activation>(), Ok(act));
        }
        let err = "softplus".parse::<Activation>().unwrap_err().to_string();
        assert!(
            err.contains("activation") && err.contains("softplus"),
            "{err}"
        );
    }
}
