//! How far a Lanczos basis has drifted from orthogonality, estimated from
//! the recurrence's coefficients alone and checked against measurements.
//!
//! Shared by stochastic Lanczos quadrature and thick-restart Lanczos: both
//! keep their bases *semi-orthogonal* (`|q_iᵀ q_j| ≤ √ε`) by partial
//! reorthogonalisation instead of full Gram–Schmidt on every step; the
//! estimate says when the true inner products `Qᵀ w` need to be measured (one
//! sweep of the basis) and which columns a correction must read.

/// Steps between measurements of the true loss of orthogonality (one sweep
/// over the basis, `Qᵀ w`) even when the estimate stays low: a guard for
/// operators whose rounding is larger or less random than
/// [`SymOp::relative_precision`] says (a Python callable that computes in
/// float32, say). The interval doubles each time a measurement confirms the
/// estimate (the sweeps grow with the basis, and with a trustworthy operator
/// they were a third of a 1M-row Laplacian's SLQ) and falls back to this
/// after one that does not.
pub(crate) const MEASURE_EVERY: usize = 10;

/// A measured loss above this fraction of the threshold is removed (one pass
/// of classical Gram–Schmidt); below it, the measurement replaces the estimate.
pub(crate) const RESTORE_FRACTION: f64 = 0.1;

/// The loss is measured once its estimate reaches this fraction of the
/// threshold: a calibrated estimate can still be a few times below the truth,
/// and a vector must not enter the basis beyond semi-orthogonality. (A loss
/// that jumps within one step, when β_k is small, shows in the estimate of
/// that same step and is measured and removed before the vector is stored.)
pub(crate) const LOOKAHEAD: f64 = 1.0 / 8.0;

/// The least rounding unit a calibration may lower the estimate to. The
/// starting `ε √n` bounds the rounding of an inner product in the worst case;
/// measured inner products of a 1M-row basis sit orders of magnitude below it,
/// and an estimate held at `ε √n` crossed a 1e-11 threshold on every step, so
/// that every step measured `Vᵀ w` against the whole basis (39 of 39 steps
/// on a 1.13M-row diagonal operator, none of them needing a correction).
const CALIBRATED_UNIT_MIN: f64 = 4.0 * f64::EPSILON;

/// Simon's estimates `ω_{k+1,i} ≈ q_{k+1}ᵀ q_i` of the loss of orthogonality,
/// advanced from the Lanczos coefficients alone (H. Simon, "The Lanczos
/// algorithm with partial reorthogonalization", Math. Comp. 42, 1984):
///
/// ```text
/// β_k ω_{k+1,i} = β_i ω_{k,i+1} + (α_i − α_k) ω_{k,i} + β_{i−1} ω_{k,i−1} − β_{k−1} ω_{k−1,i} ± noise
/// ```
///
/// The rounding term `noise` is given the sign of the rest, so the estimate
/// grows at least as fast as the true inner products do. Its unit starts at
/// the larger of `ε √n` (rounding of the vector work) and the operator's own
/// relative precision (a float32 product is not symmetric beyond ~1e-7, and
/// that asymmetry enters every inner product directly), and is then
/// calibrated against the measured inner products: raised at once when a
/// measurement exceeds the estimate, lowered at most tenfold per measurement
/// while the estimate stays over 100 times too pessimistic (float32 MLP
/// Hessians measure ~500 times below the worst case).
pub(crate) struct OrthogonalityEstimate {
    previous: Vec<f64>,
    current: Vec<f64>,
    next: Vec<f64>,
    pub(crate) unit: f64,
    /// `ε √n`, the inner products of vectors orthogonalised in float64, or
    /// the storage's rounding when the basis is kept in float32 (calibrated
    /// with `unit`, within `[ε √n, that]`: a float32 column's rounding is
    /// `ε₃₂/2` against a vector concentrated where it is largest, but about
    /// `ε₃₂/√n` against the spread-out vectors of a real basis).
    floor: f64,
    /// The worst case of `floor` and the least a calibration may lower it to.
    floor_range: (f64, f64),
    /// Semi-orthogonality, `√(precision)`: √ε for float64 products (Simon's
    /// level), √ε₃₂ for float32 ones, whose products are no more accurate than
    /// what that level guarantees for `T_m`.
    pub(crate) threshold: f64,
}

impl OrthogonalityEstimate {
    /// `rounding` is the stored basis vectors' own ([`BasisElement::ROUNDING`]).
    pub(crate) fn new(n: usize, m: usize, precision: f64, rounding: f64) -> Self {
        Self::with_threshold(
            n,
            m,
            precision,
            rounding,
            precision.max(f64::EPSILON).sqrt(),
        )
    }

    /// As [`new`](Self::new) with the loss allowed before a correction set
    /// by the caller (thick-restart Lanczos ties it to its tolerance).
    pub(crate) fn with_threshold(
        n: usize,
        m: usize,
        precision: f64,
        rounding: f64,
        threshold: f64,
    ) -> Self {
        let precision = precision.max(f64::EPSILON);
        let vector_work = f64::EPSILON * (n as f64).sqrt();
        let floor = vector_work.max(2.0 * rounding);
        let mut current = vec![0.0; m + 1];
        current[0] = 1.0;
        OrthogonalityEstimate {
            previous: vec![0.0; m + 1],
            current,
            next: vec![0.0; m + 1],
            unit: floor.max(precision),
            floor,
            floor_range: (vector_work, floor),
            threshold,
        }
    }

    /// Estimates `ω_{k+1, 0..=k}` for the new vector `w / β_k` of a plain
    /// (tridiagonal) Lanczos run; returns their largest magnitude. `norm`
    /// bounds ‖A‖ (a Gershgorin bound on `T`).
    pub(crate) fn advance(
        &mut self,
        k: usize,
        alpha: &[f64],
        beta: &[f64],
        b: f64,
        norm: f64,
    ) -> f64 {
        let row = |i: usize, current: &[f64]| {
            let mut t = beta[i] * current[i + 1] + alpha[i] * current[i];
            if i > 0 {
                t += beta[i - 1] * current[i - 1];
            }
            t
        };
        let beta_previous = if k > 0 { beta[k - 1] } else { 0.0 };
        self.advance_with(k, row, alpha[k], beta_previous, b, norm)
    }

    /// The general form, for any projected matrix `T` (thick restart's arrow):
    ///
    /// ```text
    /// β_k ω_{k+1,i} = Σ_l T_{li} ω_{k,l} − α_k ω_{k,i} − β_{k−1} ω_{k−1,i} ± noise,
    /// ```
    ///
    /// valid when `A q_k = β_k q_{k+1} + α_k q_k + β_{k−1} q_{k−1}` (column
    /// k of T couples only to k−1) and column i of T holds the couplings of
    /// `A q_i`. `column_product(i, ω_k)` returns `Σ_l T_{li} ω_{k,l}`.
    pub(crate) fn advance_with(
        &mut self,
        k: usize,
        column_product: impl Fn(usize, &[f64]) -> f64,
        alpha_k: f64,
        beta_previous: f64,
        b: f64,
        norm: f64,
    ) -> f64 {
        let noise = 2.0 * self.unit * norm;
        let (previous, current) = (&self.previous, &self.current);
        let mut largest = 0.0f64;
        for i in 0..k {
            let t = column_product(i, current) - alpha_k * current[i] - beta_previous * previous[i];
            let estimate = (t + noise.copysign(t)) / b;
            self.next[i] = estimate;
            largest = largest.max(estimate.abs());
        }
        // Against q_k the recurrence subtracts α_k q_k explicitly, leaving
        // only the rounding of one product.
        self.next[k] = self.unit * norm / b;
        self.next[k + 1] = 1.0;
        largest.max(self.next[k].abs())
    }

    /// A new cycle of thick-restart Lanczos whose first new vector is column
    /// `k`: its inner products with the kept columns `0..k` and the row
    /// before it are taken to be `level` (the loss carried over).
    pub(crate) fn restart(&mut self, k: usize, level: f64) {
        self.current.fill(0.0);
        self.previous.fill(0.0);
        self.current[..k].fill(level);
        self.previous[..k].fill(level);
        self.current[k] = 1.0;
    }

    /// The new vector `q_{k+1}` was orthogonalised against the whole basis:
    /// its inner products are at rounding level.
    pub(crate) fn orthogonalized(&mut self, k: usize) {
        self.next[..=k].fill(self.floor);
        self.next[k + 1] = 1.0;
    }

    /// The largest `|ω_{k,i}|`, `i < k`, of the current row.
    pub(crate) fn current_level(&self, k: usize) -> f64 {
        self.current[..k].iter().fold(0.0f64, |m, x| m.max(x.abs()))
    }

    /// The estimates of the next vector (for listing the columns to measure).
    pub(crate) fn next_row(&self) -> &[f64] {
        &self.next
    }

    /// Adjusts the rounding unit to a measurement of the largest `|q_iᵀ w| / β`.
    pub(crate) fn calibrate(&mut self, k: usize, measured: f64, estimated: f64) {
        if !(estimated > 0.0 && estimated.is_finite()) {
            return;
        }
        let ratio = measured / estimated;
        let factor = if ratio > 1.0 {
            2.0 * ratio
        } else if ratio < 0.01 {
            (10.0 * ratio).max(0.1)
        } else {
            return;
        };
        self.unit = (self.unit * factor).max(CALIBRATED_UNIT_MIN);
        let (least, worst) = self.floor_range;
        self.floor = (self.floor * factor).clamp(least, worst);
        for row in [&mut self.previous[..k], &mut self.current[..k]] {
            row.iter_mut().for_each(|x| *x *= factor);
        }
    }

    /// The measured inner products `q_iᵀ w / β` become the estimates.
    pub(crate) fn set_measured(&mut self, k: usize, measured: &[f64], b: f64) {
        let floor = self.floor;
        for (e, &h) in self.next[..=k].iter_mut().zip(measured) {
            *e = h / b + floor.copysign(h);
        }
    }

    /// The loss `|q_iᵀ w| / β` left against every column after one
    /// Gram–Schmidt pass that removed a largest loss of `largest`: the basis
    /// is itself only semi-orthogonal, so about `threshold · largest` remains.
    pub(crate) fn left_after_pass(&self, largest: f64) -> f64 {
        self.floor + self.threshold * largest
    }

    /// After a Gram–Schmidt pass against the `subtracted` columns (ascending)
    /// of the measured `Qᵀ w`, with `b` the new norm: those are down to
    /// [`left_after_pass`](Self::left_after_pass), the others keep their
    /// measured loss on top of it.
    pub(crate) fn reset(
        &mut self,
        k: usize,
        largest: f64,
        measured: &[f64],
        subtracted: &[usize],
        b: f64,
    ) {
        let level = self.left_after_pass(largest);
        self.next[..=k].fill(level);
        let mut subtracted = subtracted.iter().peekable();
        for (i, (e, &h)) in self.next[..=k].iter_mut().zip(measured).enumerate() {
            if subtracted.next_if_eq(&&i).is_none() {
                *e = h / b + level.copysign(h);
            }
        }
    }

    /// Moves to the next step: ω_{k+1} becomes the current row.
    pub(crate) fn shift(&mut self) {
        std::mem::swap(&mut self.previous, &mut self.current);
        std::mem::swap(&mut self.current, &mut self.next);
    }
}
