//! The element types a network is stored in: f32 and f64.
//!
//! Storage and GEMMs run in `T`; reductions (the loss, bias gradients, the
//! softmax normaliser) accumulate in f64 so that f32 storage does not mean f32
//! sums over a batch of thousands of examples.

use faer::traits::RealField;

/// A floating-point element type usable for network parameters and data.
pub trait Real: RealField + Copy + Default + Send + Sync + Into<f64> + std::fmt::Debug + 'static {
    /// NumPy's name for the type ("float32", "float64").
    const DTYPE: &'static str;

    /// Rounds an f64 to this type.
    fn cast(value: f64) -> Self;

    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.into()
    }

    fn tanh(self) -> Self;

    fn exp(self) -> Self;
}

impl Real for f32 {
    const DTYPE: &'static str = "float32";

    #[inline(always)]
    fn cast(value: f64) -> Self {
        value as f32
    }

    #[inline(always)]
    fn tanh(self) -> Self {
        f32::tanh(self)
    }

    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }
}

impl Real for f64 {
    const DTYPE: &'static str = "float64";

    #[inline(always)]
    fn cast(value: f64) -> Self {
        value
    }

    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }

    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
}
