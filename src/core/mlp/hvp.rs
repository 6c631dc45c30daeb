//! Exact Hessian- and Gauss–Newton-vector products by Pearlmutter's R-operator.
//!
//! R{f} = d/dε f(θ + εv)|₀ applied to the forward and backward recurrences of
//! `forward.rs` gives Hv = R{∇L} (B. A. Pearlmutter, "Fast exact multiplication
//! by the Hessian", Neural Computation 6(1), 1994). With V_l, c_l the parts of v:
//!
//! R-forward (R{a₀} = 0):
//!   R{z_l} = R{a_{l−1}} W_l + a_{l−1} V_l + 1 c_lᵀ,   R{a_l} = σ'(z_l) ⊙ R{z_l};
//! R-backward, from R{δ_L} = H_z R{z_L} (`loss.rs`):
//!   (Hv)_{W_l} = R{a_{l−1}}ᵀ δ_l + a_{l−1}ᵀ R{δ_l},   (Hv)_{b_l} = 1ᵀ R{δ_l},
//!   R{δ_{l−1}} = (R{δ_l} W_lᵀ + δ_l V_lᵀ) ⊙ σ'(z_{l−1}) + (g_{l−1} ⊙ σ''(z_{l−1})) ⊙ R{z_{l−1}},
//! where g_{l−1} = δ_l W_lᵀ. Everything not depending on v (a_l, σ', g ⊙ σ'',
//! δ_l, the softmax probabilities) is computed once in [`HessianState`], so a
//! product costs the R-passes alone: two GEMMs per layer forward and four
//! backward (two each for the first layer), about twice one gradient.
//!
//! The generalized Gauss–Newton product Gv = Jᵀ H_z J v (N. N. Schraudolph,
//! "Fast curvature matrix-vector products for second-order gradient descent",
//! Neural Computation 14(7), 2002) runs the same R-forward (Jv = R{z_L}), then
//! back-propagates H_z Jv as an ordinary gradient, dropping the δ_l V_lᵀ and
//! σ'' terms; H_z is positive semidefinite for both losses, hence so is G.

use std::sync::{Arc, Mutex, PoisonError};

use super::activation::Activation;
use super::forward::{backward, forward, layer_input, transposed_inputs, Backward, Layer};
use super::kernels::{
    add_scaled_with_column_sums, cast_from_f64, cast_to_f64, column_sums, fill_rows, gemm,
    scale_by, scale_rows_with_bias, tangent_with_curvature, transpose, view, view_mut, write_sums,
    Derivatives,
};
use super::loss::{apply_output_hessian, evaluate, Loss, Targets};
use super::scalar::Real;
use crate::core::error::{check_finite, Error, Result};
use crate::core::op::SymOp;

/// Outputs of a layer from which R{a_{l−1}}ᵀ δ_l multiplies a contiguous copy
/// of R{a_{l−1}}ᵀ rather than a transposed view ([`transpose`]: faer runs the
/// 1797 x 1024 x 1024 product twice as fast from the copy). For a narrow
/// output layer the view wins: with 10 outputs it costs 1.9 ms against 1 ms
/// for the product plus 4 ms for the copy (1797 x 1024 input, one core).
const COPY_TRANSPOSE_MIN_OUTPUTS: usize = 32;

/// Per-product buffers: one batch x width pair per hidden layer plus the
/// outputs' tangent. Pooled so repeated products do not re-allocate.
struct Workspace<T> {
    /// R{a_l}; reused for R{δ_{l+1}} W_{l+1}ᵀ + δ_{l+1} V_{l+1}ᵀ on the way back.
    r_act: Vec<Vec<T>>,
    /// R{z_l}, then (g_l ⊙ σ'') ⊙ R{z_l}, then R{δ_l}.
    r_pre: Vec<Vec<T>>,
    /// R{z_L}, then R{δ_L}.
    r_out: Vec<T>,
    /// R{a_{l−1}} transposed, the left factor of R{a_{l−1}}ᵀ δ_l.
    r_act_t: Vec<T>,
    /// The operator's input narrowed to `T`, and its product before widening
    /// (n_params each; allocated on first use by [`SymOp`] products only).
    input: Vec<T>,
    product: Vec<T>,
}

/// Everything a Hessian-vector product at fixed (params, X, y) reuses.
pub struct HessianState<T: Real> {
    layers: Vec<Layer>,
    loss: Loss,
    batch: usize,
    n_params: usize,
    params: Vec<T>,
    x: Vec<T>,
    hidden: Vec<Vec<T>>,
    /// Each layer's input transposed (x first), for the weight-gradient GEMMs.
    inputs_t: Vec<Vec<T>>,
    slope: Vec<Vec<T>>,
    /// g_l ⊙ σ''(z_l) per hidden layer (empty for piecewise-linear activations).
    weighted_curvature: Vec<Vec<T>>,
    /// δ_l per layer (entry 0 unused).
    deltas: Vec<Vec<T>>,
    /// Softmax probabilities (cross-entropy), empty for mse.
    probabilities: Vec<T>,
    loss_value: f64,
    grad: Vec<T>,
    workspaces: Mutex<Vec<Workspace<T>>>,
}

impl<T: Real> HessianState<T> {
    /// Runs the forward and backward passes. Inputs are validated by the caller.
    pub(crate) fn build(
        layers: Vec<Layer>,
        activation: Activation,
        loss: Loss,
        params: &[T],
        x: &[T],
        targets: Targets<'_, T>,
        batch: usize,
    ) -> Self {
        let n_params = layers.iter().map(Layer::n_params).sum();
        let mut fwd = forward(&layers, activation, params, x, batch, Derivatives::Second);
        let n_out = layers[layers.len() - 1].n_out;
        let mut delta = vec![T::default(); fwd.outputs.len()];
        let loss_value = evaluate(&mut fwd.outputs, targets, n_out, Some(&mut delta));
        let mut grad = vec![T::default(); n_params];
        let inputs_t = transposed_inputs(&layers, x, &fwd.hidden);
        let deltas = backward(
            &layers,
            params,
            x,
            Backward::State {
                inputs_t: &inputs_t,
            },
            &mut fwd,
            delta,
            &mut grad,
        );
        let probabilities = match loss {
            Loss::CrossEntropy => std::mem::take(&mut fwd.outputs),
            Loss::Mse => Vec::new(),
        };
        let mut weighted_curvature = fwd.curvature;
        if activation.is_piecewise_linear() {
            // σ'' = 0: no curvature term, and no memory spent on zeros.
            weighted_curvature.iter_mut().for_each(Vec::clear);
        }
        HessianState {
            layers,
            loss,
            batch,
            n_params,
            params: params.to_vec(),
            x: x.to_vec(),
            hidden: fwd.hidden,
            inputs_t,
            slope: fwd.slope,
            weighted_curvature,
            deltas,
            probabilities,
            loss_value,
            grad,
            workspaces: Mutex::new(Vec::new()),
        }
    }

    pub fn n_params(&self) -> usize {
        self.n_params
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The loss at the state's point.
    pub fn loss(&self) -> f64 {
        self.loss_value
    }

    /// The gradient at the state's point.
    pub fn grad(&self) -> &[T] {
        &self.grad
    }

    pub fn params(&self) -> &[T] {
        &self.params
    }

    fn check_vectors(&self, v: &[T], out: &[T]) -> Result<()> {
        if v.len() != self.n_params {
            return Err(Error::shape(
                "v",
                format!("length {} (n_params)", self.n_params),
                v.len(),
            ));
        }
        if out.len() != self.n_params {
            return Err(Error::shape(
                "out",
                format!("length {} (n_params)", self.n_params),
                out.len(),
            ));
        }
        check_finite("v", v)
    }

    fn take_workspace(&self) -> Workspace<T> {
        let pooled = self
            .workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        pooled.unwrap_or_else(|| {
            let hidden_sizes = || self.hidden.iter().map(|h| vec![T::default(); h.len()]);
            Workspace {
                r_act: hidden_sizes().collect(),
                r_pre: hidden_sizes().collect(),
                r_out: vec![T::default(); self.batch * self.layers[self.layers.len() - 1].n_out],
                r_act_t: vec![T::default(); self.hidden.iter().map(Vec::len).max().unwrap_or(0)],
                input: Vec::new(),
                product: Vec::new(),
            }
        })
    }

    fn return_workspace(&self, workspace: Workspace<T>) {
        self.workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(workspace);
    }

    /// `r_z ← R{a_{l−1}} W_l + a_{l−1} V_l`, plus `1 c_lᵀ` when `with_bias`
    /// (`r_input` None for the first layer). Hidden layers leave c_l to the
    /// elementwise pass that follows ([`tangent_with_curvature`]).
    fn tangent_affine(
        &self,
        l: usize,
        v: &[T],
        r_input: Option<&[T]>,
        with_bias: bool,
        r_z: &mut [T],
    ) {
        let layer = &self.layers[l];
        let batch = self.batch;
        let bias = layer.bias_of(v).filter(|_| with_bias);
        if let Some(c) = bias {
            fill_rows(r_z, c);
        }
        gemm(
            view_mut(r_z, batch, layer.n_out),
            bias.is_some(),
            view(layer_input(&self.x, &self.hidden, l), batch, layer.n_in),
            view(layer.weights_of(v), layer.n_in, layer.n_out),
        );
        if let Some(r_input) = r_input {
            gemm(
                view_mut(r_z, batch, layer.n_out),
                true,
                view(r_input, batch, layer.n_in),
                view(layer.weights_of(&self.params), layer.n_in, layer.n_out),
            );
        }
    }

    /// `out = H v`, the exact Hessian of the loss times `v`.
    pub fn hvp(&self, v: &[T], out: &mut [T]) -> Result<()> {
        self.check_vectors(v, out)?;
        let mut workspace = self.take_workspace();
        self.hvp_in(v, out, &mut workspace);
        self.return_workspace(workspace);
        Ok(())
    }

    fn hvp_in(&self, v: &[T], out: &mut [T], workspace: &mut Workspace<T>) {
        let Workspace {
            r_act,
            r_pre,
            r_out,
            r_act_t,
            ..
        } = workspace;
        let batch = self.batch;
        let last = self.layers.len() - 1;

        let mut r_input: Option<&[T]> = None;
        for (l, (r_a, r_z)) in r_act.iter_mut().zip(r_pre.iter_mut()).enumerate() {
            self.tangent_affine(l, v, r_input, false, r_z);
            tangent_with_curvature(
                r_z,
                r_a,
                &self.slope[l],
                &self.weighted_curvature[l],
                self.layers[l].bias_of(v),
                self.layers[l].n_out,
            );
            r_input = Some(r_a);
        }
        self.tangent_affine(last, v, r_input, true, r_out);
        apply_output_hessian(
            self.loss,
            &self.probabilities,
            r_out,
            self.layers[last].n_out,
        );

        // Column sums of R{δ_l} for layer l's bias part, computed by the step
        // that formed R{δ_l} (all but the last layer's).
        let mut bias_sums: Option<Vec<Vec<f64>>> = None;
        for l in (0..=last).rev() {
            let layer = &self.layers[l];
            let (lower, upper) = r_pre.split_at_mut(l);
            let r_delta: &[T] = if l == last { r_out } else { &upper[0] };
            let (out_w, out_b) = layer.split_mut(out);
            gemm(
                view_mut(out_w, layer.n_in, layer.n_out),
                false,
                view(&self.inputs_t[l], layer.n_in, batch),
                view(r_delta, batch, layer.n_out),
            );
            if layer.has_bias {
                match bias_sums.take() {
                    Some(partials) => write_sums(&partials, out_b),
                    None => column_sums(r_delta, layer.n_out, out_b),
                }
            }
            if l == 0 {
                break;
            }
            let delta = &self.deltas[l];
            let r_input = &mut r_act[l - 1];
            let r_input_t = if layer.n_out >= COPY_TRANSPOSE_MIN_OUTPUTS {
                let r_input_t = &mut r_act_t[..batch * layer.n_in];
                transpose(r_input, batch, layer.n_in, r_input_t);
                view(r_input_t, layer.n_in, batch)
            } else {
                view(r_input, batch, layer.n_in).transpose()
            };
            gemm(
                view_mut(out_w, layer.n_in, layer.n_out),
                true,
                r_input_t,
                view(delta, batch, layer.n_out),
            );
            // R{a_{l−1}} has been used; its buffer takes R{δ_l} W_lᵀ + δ_l V_lᵀ.
            gemm(
                view_mut(r_input, batch, layer.n_in),
                false,
                view(r_delta, batch, layer.n_out),
                view(layer.weights_of(&self.params), layer.n_in, layer.n_out).transpose(),
            );
            gemm(
                view_mut(r_input, batch, layer.n_in),
                true,
                view(delta, batch, layer.n_out),
                view(layer.weights_of(v), layer.n_in, layer.n_out).transpose(),
            );
            let partials = add_scaled_with_column_sums(
                &mut lower[l - 1],
                r_input,
                &self.slope[l - 1],
                layer.n_in,
            );
            bias_sums = Some(partials);
        }
    }

    /// `out = G v`, the generalized Gauss–Newton matrix Jᵀ H_z J times `v`.
    pub fn ggn_vp(&self, v: &[T], out: &mut [T]) -> Result<()> {
        self.check_vectors(v, out)?;
        let mut workspace = self.take_workspace();
        self.ggn_in(v, out, &mut workspace);
        self.return_workspace(workspace);
        Ok(())
    }

    fn ggn_in(&self, v: &[T], out: &mut [T], workspace: &mut Workspace<T>) {
        // r_pre[l] holds R{a_l} going forward and the back-propagated H_z Jv going back.
        let Workspace { r_pre, r_out, .. } = workspace;
        let batch = self.batch;
        let last = self.layers.len() - 1;

        let mut r_input: Option<&[T]> = None;
        for (l, r_a) in r_pre.iter_mut().enumerate() {
            self.tangent_affine(l, v, r_input, false, r_a);
            scale_rows_with_bias(
                r_a,
                &self.slope[l],
                self.layers[l].bias_of(v),
                self.layers[l].n_out,
            );
            r_input = Some(r_a);
        }
        self.tangent_affine(last, v, r_input, true, r_out);
        apply_output_hessian(
            self.loss,
            &self.probabilities,
            r_out,
            self.layers[last].n_out,
        );

        for l in (0..=last).rev() {
            let layer = &self.layers[l];
            let (lower, upper) = r_pre.split_at_mut(l);
            let u: &[T] = if l == last { r_out } else { &upper[0] };
            let (out_w, out_b) = layer.split_mut(out);
            gemm(
                view_mut(out_w, layer.n_in, layer.n_out),
                false,
                view(&self.inputs_t[l], layer.n_in, batch),
                view(u, batch, layer.n_out),
            );
            if layer.has_bias {
                column_sums(u, layer.n_out, out_b);
            }
            if l == 0 {
                break;
            }
            let previous = &mut lower[l - 1];
            gemm(
                view_mut(previous, batch, layer.n_in),
                false,
                view(u, batch, layer.n_out),
                view(layer.weights_of(&self.params), layer.n_in, layer.n_out).transpose(),
            );
            scale_by(previous, &self.slope[l - 1]);
        }
    }
}

/// Which curvature matrix an operator applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curvature {
    Hessian,
    GaussNewton,
}

/// The operator's input: f64 (narrowed to `T` into the workspace) or already `T`.
enum Input<'a, T> {
    Wide(&'a [f64]),
    Native(&'a [T]),
}

/// `y = A x` in `T`, widened into `y`: the shared body of the operators' products.
fn apply_in<T: Real>(
    state: &HessianState<T>,
    kind: Curvature,
    x: Input<'_, T>,
    y: &mut [f64],
) -> Result<()> {
    let n = state.n_params;
    let x_len = match x {
        Input::Wide(x) => x.len(),
        Input::Native(x) => x.len(),
    };
    if x_len != n {
        return Err(Error::shape("x", format!("length {n}"), x_len));
    }
    if y.len() != n {
        return Err(Error::shape("y", format!("length {n}"), y.len()));
    }
    let mut workspace = state.take_workspace();
    // Pooled like the rest of the workspace: fresh n_params buffers per
    // product would fault in their pages every time.
    let mut input = std::mem::take(&mut workspace.input);
    let mut product = std::mem::take(&mut workspace.product);
    product.resize(n, T::default());
    let v = match x {
        Input::Wide(x) => {
            input.resize(n, T::default());
            cast_from_f64(&mut input, x);
            &input[..]
        }
        Input::Native(x) => x,
    };
    let result = check_finite("x", v).map(|()| {
        match kind {
            Curvature::Hessian => state.hvp_in(v, &mut product, &mut workspace),
            Curvature::GaussNewton => state.ggn_in(v, &mut product, &mut workspace),
        }
        cast_to_f64(y, &product);
    });
    workspace.input = input;
    workspace.product = product;
    state.return_workspace(workspace);
    result
}

/// The Hessian of an MLP's loss at a fixed point as a [`SymOp`] (f64 in and out,
/// products in the network's element type).
#[derive(Clone)]
pub struct HessianOp<T: Real> {
    state: Arc<HessianState<T>>,
}

impl<T: Real> HessianOp<T> {
    pub fn new(state: Arc<HessianState<T>>) -> Self {
        HessianOp { state }
    }

    pub fn state(&self) -> &HessianState<T> {
        &self.state
    }
}

impl<T: Real> SymOp for HessianOp<T> {
    fn dim(&self) -> usize {
        self.state.n_params
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        apply_in(&self.state, Curvature::Hessian, Input::Wide(x), y)
    }

    fn apply_f32_input(&self, x: &[f32], y: &mut [f64]) -> Option<Result<()>> {
        let x = T::from_f32_slice(x)?;
        Some(apply_in(
            &self.state,
            Curvature::Hessian,
            Input::Native(x),
            y,
        ))
    }

    fn relative_precision(&self) -> f64 {
        T::EPSILON
    }
}

/// The generalized Gauss–Newton matrix of an MLP's loss as a [`SymOp`].
#[derive(Clone)]
pub struct GgnOp<T: Real> {
    state: Arc<HessianState<T>>,
}

impl<T: Real> GgnOp<T> {
    pub fn new(state: Arc<HessianState<T>>) -> Self {
        GgnOp { state }
    }

    pub fn state(&self) -> &HessianState<T> {
        &self.state
    }
}

impl<T: Real> SymOp for GgnOp<T> {
    fn dim(&self) -> usize {
        self.state.n_params
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        apply_in(&self.state, Curvature::GaussNewton, Input::Wide(x), y)
    }

    fn apply_f32_input(&self, x: &[f32], y: &mut [f64]) -> Option<Result<()>> {
        let x = T::from_f32_slice(x)?;
        Some(apply_in(
            &self.state,
            Curvature::GaussNewton,
            Input::Native(x),
            y,
        ))
    }

    fn relative_precision(&self) -> f64 {
        T::EPSILON
    }
}
