//! One expansion step of thick-restart Lanczos: `w = A v_j`, made
//! orthogonal to the basis as far as it must be.
//!
//! * The first step of a cycle couples `A v_p` to every kept Ritz vector (the
//!   arrow of `T`): it is orthogonalised against the whole basis by classical
//!   Gram–Schmidt with a measured second pass ([`orthogonalize`]).
//! * Every later step runs the three-term recurrence in two fused passes
//!   (`w −= β_{j−1} v_{j−1}` with `α_j = v_jᵀ w`, then `w −= α_j v_j` with
//!   `‖w‖²`), and keeps the basis *semi-orthogonal* by partial
//!   reorthogonalisation (Simon 1984) with the estimate shared with SLQ
//!   (`krylov::orthogonality`), advanced through the arrow of `T`: when the
//!   estimated loss nears the threshold, `Vᵀ w` is measured, against only the
//!   columns the estimate blames unless a periodic check is due, and removed
//!   from the columns that carry it. Those are, as Paige's theory says, the
//!   converged Ritz directions, which thick restart keeps at the front of
//!   the basis: this is selective orthogonalisation against the converged
//!   kept Ritz vectors (Parlett & Scott 1979) falling out of the estimate,
//!   without reading the rest of the basis on every step.

use super::BREAKDOWN_RATIO;
use crate::core::error::{first_non_finite, Error, Result};
use crate::core::krylov::basis::{
    dot, project_listed_columns, subtract_columns, subtract_listed_columns, sweep, BasisElement,
    REDUCE_CHUNK,
};
use crate::core::krylov::orthogonality::{
    OrthogonalityEstimate, LOOKAHEAD, MEASURE_EVERY, RESTORE_FRACTION,
};
use rand_xoshiro::rand_core::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

/// A second Gram–Schmidt pass is applied when the measured `‖Vᵀw‖ / ‖w‖`
/// after the first exceeds this many unit roundoffs of the basis (a few
/// hundred ulps: a first pass alone leaves about `ε ‖A v‖ / β`, so the
/// second pass runs only after real cancellation).
const ORTHOGONALITY_ROUNDINGS: f64 = 512.0;

/// What one step produced: the recurrence's coefficients and whether `w`
/// lay in the span of the basis (an invariant subspace was found).
pub(super) struct Step {
    pub(super) alpha: f64,
    pub(super) beta: f64,
    pub(super) in_span: bool,
}

/// `Err(NonFinite)` when the product `w` (whose squared norm after the first
/// pass is `norm2`) holds NaN or Inf.
fn finite_product(norm2: f64, w: &[f64]) -> Result<()> {
    if norm2.is_finite() {
        return Ok(());
    }
    Err(Error::NonFinite {
        what: "operator output A @ v".to_string(),
        index: first_non_finite(w).unwrap_or(0),
    })
}

/// The basis built so far (column-major, `n` rows) and the projected
/// matrix `T` (column-major `m x m`) a step reads.
#[derive(Clone, Copy)]
pub(super) struct Krylov<'a, T> {
    pub(super) v: &'a [T],
    pub(super) n: usize,
    pub(super) projected: &'a [f64],
    pub(super) m: usize,
}

/// The state partial reorthogonalisation carries from step to step.
pub(super) struct Expansion {
    pub(super) omega: OrthogonalityEstimate,
    /// Bound on ‖A‖ seen so far (Ritz values and recurrence coefficients).
    pub(super) scale: f64,
    check_interval: usize,
    next_check: usize,
    recheck_next: bool,
    /// Measurements of `Vᵀ w` and corrections made (for tests and tuning).
    pub(super) n_measured: usize,
    pub(super) n_corrected: usize,
    pair: [f64; 2],
    /// Recurrence steps so far (all cycles): the schedule's clock.
    steps: usize,
}

impl Expansion {
    /// `precision`: the operator's relative accuracy
    /// ([`SymOp::relative_precision`](crate::core::op::SymOp::relative_precision)),
    /// the unit of the estimate's rounding term; `rounding`: the basis'
    /// ([`BasisElement::ROUNDING`]).
    pub(super) fn new(n: usize, m: usize, precision: f64, rounding: f64, threshold: f64) -> Self {
        Expansion {
            omega: OrthogonalityEstimate::with_threshold(n, m, precision, rounding, threshold),
            scale: 0.0,
            check_interval: MEASURE_EVERY,
            next_check: MEASURE_EVERY,
            recheck_next: false,
            n_measured: 0,
            n_corrected: 0,
            pair: [0.0; 2],
            steps: 0,
        }
    }

    /// A new cycle starts at column `p`: the kept vectors' loss carries over.
    pub(super) fn restart(&mut self, p: usize, m: usize) {
        let level = (self.omega.current_level(m) * (m as f64).sqrt()).min(self.omega.threshold);
        self.omega.restart(p, level);
    }

    /// The first step of a cycle, `j = p`: `A v_p` couples to every kept Ritz
    /// vector with the coefficients the restart recorded in column `p` of
    /// `projected` (`β_m s_{m,i}`). One fused pass subtracts them and
    /// measures `Vᵀ w` against all `p + 1` columns (`α_p` and the loss
    /// against the kept vectors for free); a second removes `α_p v_p`; the
    /// measured loss is removed too if it matters. On the first cycle (no
    /// kept vectors) this is an ordinary first step.
    pub(super) fn arrow_step<T: BasisElement>(
        &mut self,
        krylov: Krylov<'_, T>,
        j: usize,
        w: &mut [f64],
        scratch: &mut Scratch,
    ) -> Result<Step> {
        let Krylov { v, n, projected, m } = krylov;
        let Scratch {
            partials,
            h,
            listed,
            coeffs,
            ..
        } = scratch;
        coeffs.clear();
        coeffs.extend((0..=j).map(|i| if i < j { projected[j * m + i] } else { 0.0 }));
        h.resize(j + 1, 0.0);
        let input2 = sweep(v, n, j + 1, w, Some(coeffs), partials, h);
        finite_product(input2, w)?;
        let coupled2: f64 = coeffs.iter().map(|c| c * c).sum();
        let input_norm = (input2 + coupled2).sqrt();
        let mut alpha = h[j];
        let mut beta = subtract_columns(&v[j * n..], n, 0, &[alpha], w, partials).sqrt();
        // The loss against the kept vectors, measured by the fused pass.
        let largest = h[..j].iter().fold(0.0f64, |a, x| a.max(x.abs()));
        if largest > RESTORE_FRACTION * self.omega.threshold * beta {
            listed.clear();
            listed.extend(0..=j);
            h[j] = 0.0;
            let correction = h.clone();
            beta = sweep(v, n, j + 1, w, Some(&correction), partials, h).sqrt();
            alpha += h[j];
            let after = h.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            if after > ORTHOGONALITY_ROUNDINGS * T::ROUNDING * beta {
                let second = h.clone();
                beta = subtract_columns(v, n, 0, &second, w, partials).sqrt();
                alpha += second[j];
            }
            self.n_corrected += 1;
        }
        self.omega.orthogonalized(j);
        self.scale = self.scale.max(alpha.abs() + beta);
        Ok(Step {
            alpha,
            beta,
            in_span: beta <= BREAKDOWN_RATIO * input_norm.max(self.scale),
        })
    }

    /// A step `j > p` of the three-term recurrence with partial
    /// reorthogonalisation. `projected` is `T` so far (column-major `m x m`).
    pub(super) fn recurrence_step<T: BasisElement>(
        &mut self,
        krylov: Krylov<'_, T>,
        j: usize,
        w: &mut [f64],
        scratch: &mut Scratch,
    ) -> Result<Step> {
        let Krylov { v, n, projected, m } = krylov;
        let beta_previous = projected[(j - 1) * m + j];
        // Paige's ordering: remove β_{j−1} v_{j−1} before measuring α_j.
        let local = &v[(j - 1) * n..(j + 1) * n];
        let input2 = sweep(
            local,
            n,
            2,
            w,
            Some(&[beta_previous, 0.0]),
            &mut scratch.partials,
            &mut self.pair,
        );
        finite_product(input2, w)?;
        let mut alpha = self.pair[1];
        let norm2 = subtract_columns(&v[j * n..], n, 0, &[alpha], w, &mut scratch.partials);
        let mut beta = norm2.sqrt();
        self.scale = self.scale.max(alpha.abs() + beta + beta_previous);
        let input_norm = (input2 + beta_previous * beta_previous).sqrt();
        // Against the operator's scale as well as this product's: a `v_j`
        // (nearly) in the null space gives a product that is all rounding
        // noise, of which `w` is no better a direction than its input.
        let breakdown = BREAKDOWN_RATIO * input_norm.max(self.scale);
        if beta <= breakdown {
            return Ok(Step {
                alpha,
                beta,
                in_span: true,
            });
        }
        let column_product = |i: usize, current: &[f64]| -> f64 {
            let column = &projected[i * m..(i + 1) * m];
            (0..=j.min(m - 1)).map(|l| column[l] * current[l]).sum()
        };
        let estimate =
            self.omega
                .advance_with(j, column_product, alpha, beta_previous, beta, self.scale);
        let threshold = self.omega.threshold;
        self.steps += 1;
        let scheduled = self.steps >= self.next_check;
        let due = estimate > LOOKAHEAD * threshold || self.recheck_next || scheduled;
        self.recheck_next = false;
        if due {
            // Measure Vᵀw: every column when a periodic check is due, else
            // the columns whose estimate is within reach of the threshold
            // (the converged kept Ritz vectors, in practice) and v_j.
            let Scratch {
                partials,
                h,
                listed,
                coeffs,
                ..
            } = scratch;
            listed.clear();
            if scheduled || self.recheck_next {
                listed.extend(0..=j);
            } else {
                let row = self.omega.next_row();
                let blame = LOOKAHEAD * LOOKAHEAD * threshold;
                listed.extend((0..j).filter(|&i| row[i].abs() > blame));
                listed.push(j);
            }
            h.resize(listed.len(), 0.0);
            project_listed_columns(v, n, listed, w, partials, h);
            self.n_measured += 1;
            let largest = h.iter().fold(0.0f64, |a, x| a.max(x.abs())) / beta;
            self.omega.calibrate(j, largest, estimate);
            let underestimated = largest > estimate;
            self.check_interval = if underestimated {
                MEASURE_EVERY
            } else if scheduled {
                2 * self.check_interval
            } else {
                self.check_interval
            };
            if scheduled || underestimated {
                self.next_check = self.steps + self.check_interval;
            }
            // Columns not measured keep their estimate.
            let row = self.omega.next_row();
            let mut measured: Vec<f64> = (0..=j).map(|i| row[i] * beta).collect();
            for (&i, &x) in listed.iter().zip(h.iter()) {
                measured[i] = x;
            }
            if largest > RESTORE_FRACTION * threshold {
                let left = self.omega.left_after_pass(largest);
                coeffs.clear();
                let keep: Vec<usize> = listed
                    .iter()
                    .copied()
                    .filter(|&i| i == j || measured[i].abs() > left * beta)
                    .collect();
                coeffs.extend(keep.iter().map(|&i| measured[i]));
                let norm2 = subtract_listed_columns(v, n, &keep, coeffs, w, partials);
                alpha += measured[j];
                beta = norm2.sqrt();
                self.omega.reset(j, largest, &measured, &keep, beta);
                self.n_corrected += 1;
                self.recheck_next = underestimated;
            } else {
                self.omega.set_measured(j, &measured, beta);
            }
        }
        let in_span = beta <= breakdown;
        Ok(Step {
            alpha,
            beta,
            in_span,
        })
    }
}

#[derive(Default)]
pub(super) struct Scratch {
    pub(super) partials: Vec<f64>,
    pub(super) h: Vec<f64>,
    listed: Vec<usize>,
    coeffs: Vec<f64>,
}

/// Replace `w` by a random unit vector orthogonal to the `ncols < n` columns
/// of `v` and to the `locked` columns (column-major, may be empty).
#[allow(clippy::too_many_arguments)]
pub(super) fn fresh_direction<T: BasisElement>(
    v: &[T],
    n: usize,
    ncols: usize,
    locked: &[f64],
    w: &mut [f64],
    rng: &mut Xoshiro256PlusPlus,
    scratch: &mut Scratch,
) -> Result<()> {
    let n_locked = locked.len() / n;
    // A random vector has a component of relative size ~sqrt(room / n)
    // outside both spans; failing four times in a row has probability ~0
    // unless there is no room (then the caller has a bug, reported).
    for _ in 0..4 {
        fill_random(w, rng);
        let input_norm = norm_squared(w).sqrt();
        let mut norm = input_norm;
        // Two classical Gram–Schmidt passes against each block: after the
        // second, what is left is orthogonal to both to rounding.
        for _ in 0..2 {
            if let Some(after) = project_out_block(locked, n, n_locked, w, scratch) {
                norm = after;
            }
            if let Some(after) = project_out_block(v, n, ncols, w, scratch) {
                norm = after;
            }
        }
        if norm > 1e-6 * input_norm {
            scale(w, 1.0 / norm);
            return Ok(());
        }
    }
    Err(Error::Operator(
        "lanczos could not extend the Krylov basis with a random vector".to_string(),
    ))
}

/// One classical Gram–Schmidt pass of `w` against the first `count` columns
/// of `columns`; `‖w‖` after it, `None` when there are no columns.
fn project_out_block<T: BasisElement>(
    columns: &[T],
    n: usize,
    count: usize,
    w: &mut [f64],
    scratch: &mut Scratch,
) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let Scratch { partials, h, .. } = scratch;
    h.resize(count, 0.0);
    sweep(columns, n, count, w, None, partials, h);
    Some(subtract_columns(columns, n, 0, h, w, partials).sqrt())
}

/// `‖x‖²`, summed deterministically over fixed chunks.
pub(super) fn norm_squared(x: &[f64]) -> f64 {
    let partials: Vec<f64> = x.par_chunks(REDUCE_CHUNK).map(|c| dot(c, c)).collect();
    partials.iter().sum()
}

pub(super) fn scale(x: &mut [f64], factor: f64) {
    x.par_chunks_mut(REDUCE_CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v *= factor));
}

/// Uniform entries in [-1, 1) (ARPACK's choice for a random start).
pub(super) fn fill_random(x: &mut [f64], rng: &mut Xoshiro256PlusPlus) {
    const UNIT: f64 = 1.0 / (1u64 << 53) as f64;
    for v in x.iter_mut() {
        *v = 2.0 * ((rng.next_u64() >> 11) as f64 * UNIT) - 1.0;
    }
}
