//! `hessx.models.MLP`: a fully connected network with its loss, gradient and
//! exact Hessian-vector products (Pearlmutter's R-operator, see `hvp.rs`).
//!
//! Layers l = 1..L map a_{l−1} (batch x n_{l−1}) to z_l = a_{l−1} W_l + 1 b_lᵀ;
//! hidden layers apply the activation, the last is linear (logits for
//! cross-entropy, predictions for mse). Parameters are one flat vector, layer by
//! layer, W_l (n_{l−1} x n_l, row-major) followed by b_l. Data and parameters are
//! stored in f32 or f64 ([`Real`]); dense layers run on faer's GEMM and
//! elementwise work on rayon; memory is a few batch x width matrices per layer.

mod activation;
mod erf;
mod forward;
mod hvp;
mod kernels;
mod loss;
mod scalar;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub use activation::Activation;
pub use erf::{erf, erfc};
pub use hvp::{GgnOp, HessianOp, HessianState};
pub use loss::{Loss, Targets};
pub use scalar::Real;

use crate::core::error::{check_finite, Error, Result};
use forward::{backward, forward, Backward, Layer};
use kernels::Derivatives;

/// A fully connected network's architecture (it holds no parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mlp {
    sizes: Vec<usize>,
    activation: Activation,
    loss: Loss,
    bias: bool,
    layers: Vec<Layer>,
    n_params: usize,
}

impl Mlp {
    /// `sizes` = [n_inputs, hidden..., n_outputs], at least two, all positive.
    pub fn new(sizes: Vec<usize>, activation: Activation, loss: Loss, bias: bool) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(Error::invalid(
                "sizes",
                format!(
                    "needs at least 2 layer sizes (inputs and outputs), got {}",
                    sizes.len()
                ),
            ));
        }
        if let Some(i) = sizes.iter().position(|&s| s == 0) {
            return Err(Error::invalid(
                "sizes",
                format!("every size must be positive, got 0 at index {i}"),
            ));
        }
        let too_many = || Error::invalid("sizes", "the network has too many parameters to index");
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        let mut offset = 0usize;
        for pair in sizes.windows(2) {
            let layer = Layer {
                n_in: pair[0],
                n_out: pair[1],
                weights: offset,
                has_bias: bias,
            };
            let n = pair[0]
                .checked_mul(pair[1])
                .and_then(|w| w.checked_add(if bias { pair[1] } else { 0 }))
                .ok_or_else(too_many)?;
            offset = offset.checked_add(n).ok_or_else(too_many)?;
            layers.push(layer);
        }
        Ok(Mlp {
            sizes,
            activation,
            loss,
            bias,
            layers,
            n_params: offset,
        })
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub fn loss_kind(&self) -> Loss {
        self.loss
    }

    pub fn bias(&self) -> bool {
        self.bias
    }

    pub fn n_params(&self) -> usize {
        self.n_params
    }

    pub fn n_inputs(&self) -> usize {
        self.sizes[0]
    }

    pub fn n_outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// The (start, n_in, n_out) of each layer's W in the flat vector; b_l (when
    /// present) follows at start + n_in·n_out.
    pub fn layer_offsets(&self) -> Vec<(usize, usize, usize)> {
        self.layers
            .iter()
            .map(|l| (l.weights, l.n_in, l.n_out))
            .collect()
    }

    /// Random parameters: W uniform in ±√(6/(n_in+n_out)) (Glorot) or, for
    /// relu and gelu, ±√(6/n_in) (He); biases zero. Same seed, same vector.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut params = vec![0.0; self.n_params];
        for layer in &self.layers {
            let fan = match self.activation {
                Activation::Relu | Activation::Gelu => layer.n_in,
                _ => layer.n_in + layer.n_out,
            };
            let limit = (6.0 / fan as f64).sqrt();
            for w in &mut params[layer.weights..layer.weights + layer.n_weights()] {
                // 53 random bits to a uniform in [0, 1).
                let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                *w = limit * (2.0 * unit - 1.0);
            }
        }
        params
    }

    /// Checks params, x and y; returns the batch size.
    fn check_inputs<T: Real>(&self, params: &[T], x: &[T], y: Targets<'_, T>) -> Result<usize> {
        if params.len() != self.n_params {
            return Err(Error::shape(
                "params",
                format!("length {} (n_params)", self.n_params),
                params.len(),
            ));
        }
        let n_in = self.n_inputs();
        if x.is_empty() {
            return Err(Error::invalid("x", "needs at least one example"));
        }
        if (x.len() / n_in) * n_in != x.len() {
            return Err(Error::shape(
                "x",
                format!("(batch, {n_in}) row-major, a multiple of {n_in} values"),
                format!("{} values", x.len()),
            ));
        }
        let batch = x.len() / n_in;
        let n_out = self.n_outputs();
        match (self.loss, y) {
            (Loss::CrossEntropy, Targets::Labels(labels)) => {
                if labels.len() != batch {
                    return Err(Error::shape(
                        "y",
                        format!("{batch} labels (one per example)"),
                        labels.len(),
                    ));
                }
                if let Some(i) = labels.iter().position(|&c| c < 0 || c >= n_out as i64) {
                    return Err(Error::invalid(
                        "y",
                        format!("class labels must be in 0..{n_out} (n_outputs = {n_out}), got {} at index {i}", labels[i]),
                    ));
                }
            }
            (Loss::Mse, Targets::Values(values)) => {
                if values.len() != batch * n_out {
                    return Err(Error::shape(
                        "y",
                        format!(
                            "(batch, n_outputs) = ({batch}, {n_out}), {} values",
                            batch * n_out
                        ),
                        format!("{} values", values.len()),
                    ));
                }
                check_finite("y", values)?;
            }
            (Loss::CrossEntropy, Targets::Values(_)) => {
                return Err(Error::invalid(
                    "y",
                    "cross_entropy loss needs integer class labels",
                ));
            }
            (Loss::Mse, Targets::Labels(_)) => {
                return Err(Error::invalid(
                    "y",
                    "mse loss needs real-valued targets of shape (batch, n_outputs)",
                ));
            }
        }
        check_finite("params", params)?;
        check_finite("x", x)?;
        Ok(batch)
    }

    fn check_output<T>(&self, what: &str, out: &[T]) -> Result<()> {
        if out.len() != self.n_params {
            return Err(Error::shape(
                what,
                format!("length {} (n_params)", self.n_params),
                out.len(),
            ));
        }
        Ok(())
    }

    /// The mean loss over the batch.
    pub fn loss<T: Real>(&self, params: &[T], x: &[T], y: Targets<'_, T>) -> Result<f64> {
        let batch = self.check_inputs(params, x, y)?;
        let mut fwd = forward(
            &self.layers,
            self.activation,
            params,
            x,
            batch,
            Derivatives::None,
        );
        Ok(loss::evaluate(&mut fwd.outputs, y, self.n_outputs(), None))
    }

    /// The mean loss, with its gradient written into `grad_out`.
    pub fn loss_and_grad<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        y: Targets<'_, T>,
        grad_out: &mut [T],
    ) -> Result<f64> {
        let batch = self.check_inputs(params, x, y)?;
        self.check_output("grad_out", grad_out)?;
        let mut fwd = forward(
            &self.layers,
            self.activation,
            params,
            x,
            batch,
            Derivatives::First,
        );
        let mut delta = vec![T::default(); fwd.outputs.len()];
        let value = loss::evaluate(&mut fwd.outputs, y, self.n_outputs(), Some(&mut delta));
        backward(
            &self.layers,
            params,
            x,
            Backward::Gradient,
            &mut fwd,
            delta,
            grad_out,
        );
        Ok(value)
    }

    /// The network's outputs (logits for cross-entropy), row-major batch x n_outputs.
    pub fn outputs<T: Real>(&self, params: &[T], x: &[T]) -> Result<Vec<T>> {
        if params.len() != self.n_params {
            return Err(Error::shape(
                "params",
                format!("length {} (n_params)", self.n_params),
                params.len(),
            ));
        }
        let n_in = self.n_inputs();
        if x.is_empty() || (x.len() / n_in) * n_in != x.len() {
            return Err(Error::shape(
                "x",
                format!("(batch, {n_in}) row-major with batch >= 1"),
                format!("{} values", x.len()),
            ));
        }
        check_finite("params", params)?;
        check_finite("x", x)?;
        let fwd = forward(
            &self.layers,
            self.activation,
            params,
            x,
            x.len() / n_in,
            Derivatives::None,
        );
        Ok(fwd.outputs)
    }

    /// Everything repeated products at (params, x, y) share; see [`HessianState`].
    pub fn hessian_state<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        y: Targets<'_, T>,
    ) -> Result<HessianState<T>> {
        let batch = self.check_inputs(params, x, y)?;
        Ok(HessianState::build(
            self.layers.clone(),
            self.activation,
            self.loss,
            params,
            x,
            y,
            batch,
        ))
    }

    /// The loss's Hessian at (params, x, y) as an operator.
    pub fn hessian_op<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        y: Targets<'_, T>,
    ) -> Result<HessianOp<T>> {
        Ok(HessianOp::new(Arc::new(self.hessian_state(params, x, y)?)))
    }

    /// `out = H v`, the exact Hessian-vector product (one-off; for repeated
    /// products build a [`HessianState`]).
    pub fn hvp<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        y: Targets<'_, T>,
        v: &[T],
        out: &mut [T],
    ) -> Result<()> {
        self.check_vector_pair(v, out)?;
        self.hessian_state(params, x, y)?.hvp(v, out)
    }

    /// `out = G v`, the generalized Gauss–Newton product (positive semidefinite).
    pub fn ggn_vp<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        y: Targets<'_, T>,
        v: &[T],
        out: &mut [T],
    ) -> Result<()> {
        self.check_vector_pair(v, out)?;
        self.hessian_state(params, x, y)?.ggn_vp(v, out)
    }

    /// v and out checked before the (expensive) state is built.
    fn check_vector_pair<T: Real>(&self, v: &[T], out: &[T]) -> Result<()> {
        self.check_output("v", v)?;
        self.check_output("out", out)?;
        check_finite("v", v)
    }
}
