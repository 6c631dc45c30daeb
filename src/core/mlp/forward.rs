//! The forward pass and back-propagation of a fully connected network.
//!
//! Row-major activations, one row per example: with a₀ = X,
//!   z_l = a_{l−1} W_l + 1 b_lᵀ,   a_l = σ(z_l) (hidden layers),   z_L = outputs;
//! and backwards from δ_L = ∂L/∂z_L,
//!   ∂L/∂W_l = a_{l−1}ᵀ δ_l,   ∂L/∂b_l = 1ᵀ δ_l,   g_{l−1} = δ_l W_lᵀ,   δ_{l−1} = g_{l−1} ⊙ σ'(z_{l−1}).
//! Each layer costs one GEMM forward and two backward (one for the first layer).

use super::activation::Activation;
use super::kernels::{
    activate, backprop_with_curvature, column_sums, fill_rows, gemm, scale_by, transpose, view,
    view_mut, Derivatives,
};
use super::scalar::Real;

/// Where one dense layer's parameters sit in the flat vector: W (n_in x n_out,
/// row-major) at `weights`, then b (n_out) right after it when the net has biases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    pub n_in: usize,
    pub n_out: usize,
    pub weights: usize,
    pub has_bias: bool,
}

impl Layer {
    pub fn n_weights(&self) -> usize {
        self.n_in * self.n_out
    }

    pub fn n_params(&self) -> usize {
        self.n_weights() + if self.has_bias { self.n_out } else { 0 }
    }

    pub fn weights_of<'a, T>(&self, flat: &'a [T]) -> &'a [T] {
        &flat[self.weights..self.weights + self.n_weights()]
    }

    pub fn bias_of<'a, T>(&self, flat: &'a [T]) -> Option<&'a [T]> {
        let start = self.weights + self.n_weights();
        self.has_bias.then(|| &flat[start..start + self.n_out])
    }

    /// Mutable (W, b) blocks of a flat vector; b is empty without biases.
    pub fn split_mut<'a, T>(&self, flat: &'a mut [T]) -> (&'a mut [T], &'a mut [T]) {
        let block = &mut flat[self.weights..self.weights + self.n_params()];
        block.split_at_mut(self.n_weights())
    }
}

/// The activations of one forward pass.
pub struct Forward<T> {
    /// a_l for the hidden layers, batch x n_l each.
    pub hidden: Vec<Vec<T>>,
    /// σ'(z_l) (empty when not requested).
    pub slope: Vec<Vec<T>>,
    /// σ''(z_l) (empty when not requested); [`backward`] with `keep` turns it into g_l ⊙ σ''(z_l).
    pub curvature: Vec<Vec<T>>,
    /// z_L, batch x n_out.
    pub outputs: Vec<T>,
}

/// Layer input a_{l−1}: the data for the first layer.
pub fn layer_input<'a, T>(x: &'a [T], hidden: &'a [Vec<T>], l: usize) -> &'a [T] {
    if l == 0 {
        x
    } else {
        &hidden[l - 1]
    }
}

pub fn forward<T: Real>(
    layers: &[Layer],
    activation: Activation,
    params: &[T],
    x: &[T],
    batch: usize,
    want: Derivatives,
) -> Forward<T> {
    let n_hidden = layers.len() - 1;
    let mut hidden = Vec::with_capacity(n_hidden);
    let mut slope = Vec::with_capacity(n_hidden);
    let mut curvature = Vec::with_capacity(n_hidden);
    for (l, layer) in layers[..n_hidden].iter().enumerate() {
        let mut z = vec![T::default(); batch * layer.n_out];
        affine(layer, params, layer_input(x, &hidden, l), batch, &mut z);
        let size = |needed: bool| if needed { z.len() } else { 0 };
        let mut d1 = vec![T::default(); size(want != Derivatives::None)];
        let mut d2 = vec![T::default(); size(want == Derivatives::Second)];
        activate(activation, &mut z, &mut d1, &mut d2, want);
        hidden.push(z);
        slope.push(d1);
        curvature.push(d2);
    }
    let last = &layers[n_hidden];
    let mut outputs = vec![T::default(); batch * last.n_out];
    affine(
        last,
        params,
        layer_input(x, &hidden, n_hidden),
        batch,
        &mut outputs,
    );
    Forward {
        hidden,
        slope,
        curvature,
        outputs,
    }
}

/// `z = input · W + 1 bᵀ` with (W, b) read from the flat vector `params`.
pub fn affine<T: Real>(layer: &Layer, params: &[T], input: &[T], batch: usize, z: &mut [T]) {
    if let Some(b) = layer.bias_of(params) {
        fill_rows(z, b);
    }
    gemm(
        view_mut(z, batch, layer.n_out),
        layer.has_bias,
        view(input, batch, layer.n_in),
        view(layer.weights_of(params), layer.n_in, layer.n_out),
    );
}

/// What [`backward`] is for.
pub enum Backward<'a, T> {
    /// The gradient alone; `fwd.hidden` is consumed as scratch.
    Gradient,
    /// The gradient and what the R-backward pass reuses, given each layer's
    /// input transposed (from [`transposed_inputs`]).
    State { inputs_t: &'a [Vec<T>] },
}

/// Back-propagates `delta` = δ_L, writing ∂L/∂θ into `grad`. For a state,
/// returns δ_l for every layer but the first (index l; entry 0 empty) and
/// leaves g_l ⊙ σ''(z_l) in `fwd.curvature`: what the R-backward pass reuses.
pub fn backward<T: Real>(
    layers: &[Layer],
    params: &[T],
    x: &[T],
    mode: Backward<'_, T>,
    fwd: &mut Forward<T>,
    mut delta: Vec<T>,
    grad: &mut [T],
) -> Vec<Vec<T>> {
    let (keep, transposed_inputs) = match mode {
        Backward::Gradient => (false, None),
        Backward::State { inputs_t } => (true, Some(inputs_t)),
    };
    let batch = x.len() / layers[0].n_in;
    let mut kept: Vec<Vec<T>> = (0..layers.len()).map(|_| Vec::new()).collect();
    let widest = layers.iter().map(|layer| layer.n_in).max().unwrap_or(0);
    let mut scratch = Vec::new();
    for (l, layer) in layers.iter().enumerate().rev() {
        let (grad_w, grad_b) = layer.split_mut(grad);
        let input_t: &[T] = match transposed_inputs {
            Some(stored) => &stored[l],
            None => {
                scratch.resize(batch * widest, T::default());
                let buffer = &mut scratch[..batch * layer.n_in];
                transpose(layer_input(x, &fwd.hidden, l), batch, layer.n_in, buffer);
                buffer
            }
        };
        gemm(
            view_mut(grad_w, layer.n_in, layer.n_out),
            false,
            view(input_t, layer.n_in, batch),
            view(&delta, batch, layer.n_out),
        );
        if layer.has_bias {
            column_sums(&delta, layer.n_out, grad_b);
        }
        if l == 0 {
            break;
        }
        // Without `keep`, a_{l−1} is dead once ∂L/∂W_l is formed: its buffer takes g_{l−1}.
        let mut g = if keep {
            vec![T::default(); batch * layer.n_in]
        } else {
            std::mem::take(&mut fwd.hidden[l - 1])
        };
        gemm(
            view_mut(&mut g, batch, layer.n_in),
            false,
            view(&delta, batch, layer.n_out),
            view(layer.weights_of(params), layer.n_in, layer.n_out).transpose(),
        );
        if keep {
            backprop_with_curvature(&mut g, &fwd.slope[l - 1], &mut fwd.curvature[l - 1]);
            kept[l] = std::mem::replace(&mut delta, g);
        } else {
            scale_by(&mut g, &fwd.slope[l - 1]);
            delta = g;
        }
    }
    kept
}

/// Each layer's input a_{l−1} transposed (n_{l−1} x batch, row-major): the left
/// factor of the weight-gradient GEMMs.
pub fn transposed_inputs<T: Real>(layers: &[Layer], x: &[T], hidden: &[Vec<T>]) -> Vec<Vec<T>> {
    let batch = x.len() / layers[0].n_in;
    layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let mut t = vec![T::default(); batch * layer.n_in];
            transpose(layer_input(x, hidden, l), batch, layer.n_in, &mut t);
            t
        })
        .collect()
}
