//! Thick-restart Lanczos for a few extreme eigenpairs of a real symmetric operator.
//!
//! # Method
//!
//! The solver keeps the Krylov–Schur relation (Stewart 2001; in the symmetric
//! case it is the thick-restart Lanczos of Wu & Simon 2000, "TRLan")
//!
//! ```text
//!     A V_m = V_m T_m + β_m v_{m+1} e_mᵀ,      V_{m+1}ᵀ V_{m+1} ≈ I,
//! ```
//!
//! where `T_m` is tridiagonal except for an "arrow": after a restart its
//! leading `p x p` block is `diag(θ_1..θ_p)` and its row/column `p+1` couples
//! the kept Ritz vectors to the continuation vector with `β_m s_i`.
//!
//! * **Expansion** (`expand.rs`). `w = A v_j`; the first step of a cycle
//!   subtracts the arrow's known couplings to the kept Ritz vectors and
//!   measures `Vᵀ w` in the same pass; later steps run the three-term
//!   recurrence in two fused passes. The basis is kept *semi-orthogonal* by
//!   partial reorthogonalisation (Simon 1984): the loss of orthogonality is
//!   estimated from `T` (the estimate shared with SLQ,
//!   `krylov::orthogonality`), and only when it nears the threshold η is
//!   `Vᵀ w` measured, against the columns the estimate blames (the converged
//!   kept Ritz vectors, where Paige's theory says the loss goes: selective
//!   orthogonalisation) or, periodically, all of them, and removed from the
//!   columns that carry it. η is tied to `tol` (`tol/10` within
//!   `[16ε, √ε]`, ε the basis' unit): corrections subtract columns `T` does
//!   not record, so Ritz vectors carry residuals of about `η‖A‖` beyond
//!   `|β_m s_{m,i}|`. `α_j`, `β_j = ‖w‖`, `v_{j+1} = w / β_j`.
//! * **Storage.** The basis is float64, or float32 for an operator whose
//!   products are only float32-accurate (a float32 network's Hessian): the
//!   passes over it are memory-bound, so half the bytes is nearly half
//!   their time, and a stored column's rounding is no larger than the
//!   product's own. `w` and all arithmetic stay float64; returned vectors
//!   are float64 (the final Rayleigh–Ritz orthonormalises them to float64
//!   rounding).
//! * **Breakdown.** When `w` is numerically in `span(V_j)` (β_j tiny against
//!   `‖A v_j‖`), an invariant subspace was found: the coupling is set to
//!   `β_j = 0` and the basis continues with a fresh random vector
//!   orthogonalized against `V_j`. When the basis spans the whole space,
//!   `β = 0` and the Ritz pairs are exact.
//! * **Restart** (`restart.rs`). When `m = ncv` vectors are built,
//!   `T_m = Y Θ Yᵀ` (dense, via `tridiag::sym_eig`); the `p` most wanted
//!   Ritz vectors are kept, `V_p ← V_m Y_p` (in place, a faer GEMM per row
//!   chunk), `v_{p+1} ← v_{m+1}`, and `T_p` becomes `diag(Θ_p)` with the
//!   arrow `β_m Y_{m,1..p}`. The number kept, `p`, follows ARPACK's adaptive
//!   rule plus a quarter of the spare basis (see `keep_count`).
//! * **Convergence** (ARPACK's `dsconv` rule): Ritz pair `i` has converged when
//!   `|β_m y_{m,i}| ≤ tol · max(ε^(2/3) ‖A‖, |θ_i|)` (‖A‖ estimated by the
//!   largest Ritz value seen), with `tol = ε` when the caller
//!   passes 0.
//! * **Locking** (multiplicities). A Krylov space of one vector holds one
//!   direction per eigenspace, so copies of a repeated eigenvalue appear only
//!   through rounding, and a solver that stops when k Ritz values converge
//!   (ARPACK) returns k values that are not the k extreme ones. Once the k
//!   wanted pairs have converged they are locked, and the search goes on from
//!   a fresh random vector in their orthogonal complement (one Gram–Schmidt
//!   pass against the locked vectors per product): a pair beyond the worst
//!   wanted one that converges there was missed and is added (and the search
//!   repeats); the search ends when every wanted Ritz interval of the
//!   deflated run lies on the unwanted side, or after a few cycles without a
//!   Ritz value nearing the wanted region. Not done for smallest magnitude
//!   (interior).
//! * **Final Rayleigh–Ritz** (`finish.rs`). The returned vectors are made
//!   orthonormal (Cholesky QR), `Xᵀ A X` is diagonalised (one product per
//!   vector) and the reported residuals `‖A x − θ x‖` are measured, not
//!   estimated.
//!
//! # Determinism
//!
//! Every reduction (dot products, norms) sums fixed row chunks of
//! `REDUCE_CHUNK` (`basis.rs`) in parallel and then
//! the chunk sums in order, and the restart GEMM runs sequentially inside
//! fixed row chunks, so results are
//! bit-for-bit reproducible for a given seed whatever the thread count
//! (provided the operator is itself deterministic). The hand-written
//! kernels are compiled for the widest SIMD the CPU has (via faer's `pulp`
//! dispatch) but use no fused multiply-adds, so they also give the same bits
//! on every x86-64 instruction set; faer's GEMM in the restart may differ in
//! the last bits between instruction sets.
//!
//! # References
//!
//! * K. Wu, H. Simon, "Thick-restart Lanczos method for large symmetric
//!   eigenvalue problems", SIAM J. Matrix Anal. Appl. 22(2), 2000.
//! * G. W. Stewart, "A Krylov–Schur algorithm for large eigenproblems",
//!   SIAM J. Matrix Anal. Appl. 23(3), 2001.
//! * H. Simon, "The Lanczos algorithm with partial reorthogonalization",
//!   Math. Comp. 42, 1984.
//! * B. Parlett, D. Scott, "The Lanczos algorithm with selective
//!   orthogonalization", Math. Comp. 33, 1979.
//! * R. Lehoucq, D. Sorensen, C. Yang, "ARPACK Users' Guide", SIAM 1998
//!   (parameter semantics and the convergence rule).
//! * J. Daniel, W. Gragg, L. Kaufman, G. W. Stewart, "Reorthogonalization and
//!   stable algorithms for updating the Gram–Schmidt QR factorization",
//!   Math. Comp. 30, 1976.

use crate::core::error::{check_finite, python_float, Error, Result};
use crate::core::monitor::Monitor;
use crate::core::op::SymOp;

mod expand;
mod finish;
mod restart;
mod scaled;

use expand::{fill_random, fresh_direction, norm_squared, scale, Expansion, Krylov, Scratch};
use finish::{orthonormalize, rayleigh_ritz};
use restart::{combine_in_place, gather_columns, keep_count, ranked};

use crate::core::krylov::basis::{
    apply_to_column, dot, store_divided, subtract_columns, sweep, widen_into, BasisElement,
    REDUCE_CHUNK,
};
#[cfg(test)]
use crate::core::krylov::tridiag::sym_eig;
use crate::core::krylov::tridiag::SymEig;
use rayon::prelude::*;

use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// `β ≤ BREAKDOWN_RATIO · ‖A v_j‖` means `w` is rounding noise: treat as an
/// invariant subspace and continue with a fresh random direction.
const BREAKDOWN_RATIO: f64 = 64.0 * f64::EPSILON;

/// Residuals within this many unit roundoffs of the operator's scale count as
/// converged whatever `tol` asks: neither the products nor the data resolve more.
const ROUNDING_MULTIPLE: f64 = 4.0;

/// Which end(s) of the spectrum to compute (SciPy's `which` for `eigsh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    LargestAlgebraic,
    SmallestAlgebraic,
    LargestMagnitude,
    SmallestMagnitude,
    /// `k/2` from each end, the extra one from the high end when `k` is odd.
    BothEnds,
}

impl Which {
    /// SciPy's spelling: "LA", "SA", "LM", "SM", "BE".
    pub fn parse(s: &str) -> Result<Which> {
        match s {
            "LA" => Ok(Which::LargestAlgebraic),
            "SA" => Ok(Which::SmallestAlgebraic),
            "LM" => Ok(Which::LargestMagnitude),
            "SM" => Ok(Which::SmallestMagnitude),
            "BE" => Ok(Which::BothEnds),
            other => Err(Error::invalid(
                "which",
                format!("must be one of 'LA', 'SA', 'LM', 'SM', 'BE', got {other:?}"),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LanczosParams {
    /// Number of eigenpairs, `1 <= k < n`.
    pub k: usize,
    pub which: Which,
    /// Basis size, `k < ncv <= n`; default `min(n, max(2k + 1, 20))`.
    pub ncv: Option<usize>,
    /// Maximum number of restart cycles (each cycle fills the basis and tests
    /// convergence once), the multiplicity search included; default `10 n`.
    pub maxiter: Option<usize>,
    /// Relative accuracy of the Ritz pairs; 0 means the operator's unit
    /// roundoff ([`SymOp::data_precision`]). Residuals within a few
    /// roundoffs of the operator's scale count as converged whatever `tol`.
    pub tol: f64,
    /// Starting vector (length n, finite, nonzero); random from `seed` if None.
    pub v0: Option<Vec<f64>>,
    pub seed: u64,
    pub want_vectors: bool,
    /// Lock the converged pairs and search their complement for missed
    /// copies of repeated eigenvalues (module docs, "Locking"). Costs the
    /// products of converging one more Ritz pair per end to `√tol`.
    pub check_multiplicities: bool,
}

impl Default for LanczosParams {
    fn default() -> Self {
        LanczosParams {
            k: 6,
            which: Which::LargestMagnitude,
            ncv: None,
            maxiter: None,
            tol: 0.0,
            v0: None,
            seed: 0,
            want_vectors: true,
            check_multiplicities: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LanczosOutput {
    /// The `k` wanted Ritz values, ascending (converged or not: see `converged`).
    pub values: Vec<f64>,
    /// Column-major `n x values.len()` Ritz vectors (empty unless `want_vectors`).
    pub vectors: Vec<f64>,
    /// `‖A x_i − θ_i x_i‖` per pair, from the recurrence (`|β_m y_{m,i}|`).
    pub residuals: Vec<f64>,
    pub converged: Vec<bool>,
    /// Every application of the operator.
    pub n_matvec: usize,
    /// Thick restarts performed (cycles − 1 when it stops on convergence).
    pub n_restarts: usize,
    pub all_converged: bool,
    /// Basis size used.
    pub ncv: usize,
}

/// The `k` eigenpairs of `op` selected by `params.which`.
///
/// Non-convergence within `maxiter` cycles is not an error: the output then
/// has `all_converged == false` and per-pair `converged` flags.
pub fn lanczos(
    op: &dyn SymOp,
    params: &LanczosParams,
    monitor: &dyn Monitor,
) -> Result<LanczosOutput> {
    let scaled = scaled::PowerOfTwoScaled::new(op);
    let mut output = lanczos_unscaled(&scaled, params, monitor)?;
    // Exact: the factor is a power of two.
    let undo = 1.0 / scaled.factor();
    if undo != 1.0 {
        output.values.iter_mut().for_each(|v| *v *= undo);
        output.residuals.iter_mut().for_each(|r| *r *= undo);
    }
    Ok(output)
}

/// [`lanczos`] on an operator of ordinary scale. An operator whose products
/// are only float32-accurate gets a float32 Krylov basis: every sweep over
/// it moves half the bytes, and the rounding of its columns is no larger
/// than the products' own (SLQ does the same).
fn lanczos_unscaled(
    op: &dyn SymOp,
    params: &LanczosParams,
    monitor: &dyn Monitor,
) -> Result<LanczosOutput> {
    if float32_basis(op) {
        lanczos_with_basis::<f32>(op, params, monitor)
    } else {
        lanczos_with_basis::<f64>(op, params, monitor)
    }
}

/// Whether [`lanczos`] keeps `op`'s Krylov basis in float32.
pub(crate) fn float32_basis(op: &dyn SymOp) -> bool {
    op.relative_precision() >= f64::from(f32::EPSILON)
}

/// [`lanczos_unscaled`] with the Krylov basis stored as `T`; the vectors
/// returned (and the locked ones) are float64.
fn lanczos_with_basis<T: BasisElement>(
    op: &dyn SymOp,
    params: &LanczosParams,
    monitor: &dyn Monitor,
) -> Result<LanczosOutput> {
    let n = op.dim();
    let precision = op.data_precision().max(op.relative_precision());
    let setup = Setup::validate(n, params, precision, T::ROUNDING)?;
    let m = setup.ncv;
    let k = params.k;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
    let mut counts = Counts::default();
    // Columns 0..m hold V_m; column m holds the continuation vector v_{m+1}.
    let mut basis = vec![T::default(); (m + 1) * n];
    let mut start = match &params.v0 {
        Some(v0) => v0.clone(),
        None => {
            let mut random = vec![0.0; n];
            fill_random(&mut random, &mut rng);
            random
        }
    };
    let start_norm = norm_squared(&start).sqrt();
    store_divided(&start, start_norm, &mut basis[..n], true);
    let main = Cycles {
        op,
        setup: &setup,
        which: params.which,
        wanted: k,
        locked: &[],
        shift: None,
        stop: Stop::Converged,
    }
    .run(&mut basis, &mut rng, &mut counts, monitor)?;
    let q = main.values.len();
    let verifying = main.all_converged && setup.verify;
    let skip_vectors = !(params.want_vectors || verifying);
    if skip_vectors {
        return Ok(main.into_output(Vec::new(), counts, m));
    }
    let mut vectors = T::into_f64(basis, q * n);
    let (values, residuals) = if params.want_vectors {
        let measured = rayleigh_ritz(op, &mut vectors, n, q, monitor)?;
        counts.n_matvec += q;
        measured
    } else {
        // Eigenvalues only: the locked directions must be orthonormal, but
        // polishing them costs k products the caller does not need (the
        // values and estimates are the run's, as ARPACK returns them).
        orthonormalize(&mut vectors, n, q);
        (main.values.clone(), main.residuals.clone())
    };
    let mut found = Found {
        vectors,
        values,
        residuals,
        converged: main.converged.clone(),
    };
    if verifying {
        // Locking: the converged pairs are deflated and the search goes on
        // from a fresh random vector for anything the wanted set missed
        // (further copies of a multiple eigenvalue, above all).
        let mut verify_basis = vec![T::default(); (m + 1) * n];
        // The search shares `maxiter` with the main run.
        let mut cycles_left = setup.maxiter.saturating_sub(main.cycles);
        let mut scale_seen = main.scale;
        for _ in 0..k {
            if cycles_left == 0 {
                break;
            }
            // Values within rounding (and tol) of the worst wanted one are
            // ties, not missed pairs: the locked directions themselves sit
            // at the shift, on the bound, and rounding moves them across.
            let margin = 64.0 * setup.precision * scale_seen;
            let Some(bounds) = Bounds::of(&found.values, params.which, k, margin) else {
                break;
            };
            fill_random(&mut start, &mut rng);
            let mut scratch = Scratch::default();
            project_out(&found.vectors, n, &mut start, &mut scratch);
            let norm = norm_squared(&start).sqrt();
            // The deflated space must hold a basis of a few vectors.
            let room = n - found.values.len();
            let wanted = if bounds.low.is_some() && bounds.high.is_some() {
                2
            } else {
                1
            };
            if norm == 0.0 || room < wanted + 2 {
                break;
            }
            store_divided(&start, norm, &mut verify_basis[..n], true);
            let small = Setup {
                ncv: m.min(room - 1),
                maxiter: cycles_left,
                ..setup
            };
            let extra = Cycles {
                op,
                setup: &small,
                which: params.which,
                wanted,
                locked: &found.vectors,
                shift: Some(bounds.unwanted()),
                stop: Stop::Beyond(bounds),
            }
            .run(&mut verify_basis, &mut rng, &mut counts, monitor)?;
            cycles_left = cycles_left.saturating_sub(extra.cycles);
            scale_seen = scale_seen.max(extra.scale);
            if extra.values.is_empty() {
                break;
            }
            // Orthogonal to the locked vectors to rounding (the deflated
            // run kept it so only to its own loss threshold), then measured.
            let mut candidate = vec![0.0; n];
            widen_into(&verify_basis[..n], &mut candidate, true);
            for _ in 0..2 {
                project_out(&found.vectors, n, &mut candidate, &mut scratch);
            }
            let norm = norm_squared(&candidate).sqrt();
            if norm.is_nan() || norm <= 0.5 {
                // A unit vector mostly in the locked span (rounding that
                // re-entered it): not a new pair, and its remainder would
                // not be orthogonal to the locked vectors.
                break;
            }
            scale(&mut candidate, 1.0 / norm);
            let (value, residual) = rayleigh_ritz(op, &mut candidate, n, 1, monitor)?;
            counts.n_matvec += 1;
            found.vectors.truncate(found.values.len() * n);
            found.vectors.extend_from_slice(&candidate[..n]);
            found.values.push(value[0]);
            found.residuals.push(residual[0]);
            found.converged.push(true);
        }
    }
    Ok(found.select(
        params.which,
        k,
        n,
        main.all_converged,
        counts,
        m,
        params.want_vectors,
    ))
}

/// Operator products and restarts made so far (all runs).
#[derive(Default)]
struct Counts {
    n_matvec: usize,
    n_restarts: usize,
}

/// When a run of cycles stops.
#[derive(Clone, Copy)]
enum Stop {
    /// All wanted Ritz pairs have converged.
    Converged,
    /// A Ritz pair beyond the bounds has converged (returned), or the run is
    /// confident there is none (nothing returned).
    Beyond(Bounds),
}

/// The wanted region beyond the worst pair found, per end.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// Values above this (when given) would be wanted.
    high: Option<f64>,
    /// Values below this (when given) would be wanted.
    low: Option<f64>,
    /// How far beyond a bound a value must be to count as missed (relative
    /// tolerance `tol` is added per bound).
    margin: f64,
}

impl Bounds {
    /// The worst wanted value at each end `which` draws from; `None` for
    /// smallest magnitude (an interior problem: nothing to verify cheaply).
    /// `margin`: see [`Bounds::margin`].
    fn of(values: &[f64], which: Which, k: usize, margin: f64) -> Option<Bounds> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let picked: Vec<f64> = ranked(&sorted, which, k)
            .iter()
            .map(|&i| sorted[i])
            .collect();
        let (lo, hi) = picked
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        match which {
            Which::LargestAlgebraic => Some(Bounds {
                high: Some(lo),
                low: None,
                margin,
            }),
            Which::SmallestAlgebraic => Some(Bounds {
                high: None,
                low: Some(hi),
                margin,
            }),
            Which::LargestMagnitude => {
                let worst = picked.iter().fold(f64::INFINITY, |a, x| a.min(x.abs()));
                Some(Bounds {
                    high: Some(worst),
                    low: Some(-worst),
                    margin,
                })
            }
            Which::BothEnds => {
                let high_count = k - k / 2;
                let low_top = sorted[..k / 2].last().copied();
                let high_bottom = sorted[sorted.len() - high_count..].first().copied();
                Some(Bounds {
                    high: high_bottom,
                    low: low_top,
                    margin,
                })
            }
            Which::SmallestMagnitude => None,
        }
    }

    /// A value that is not beyond either bound.
    fn unwanted(&self) -> f64 {
        match (self.low, self.high) {
            (Some(l), Some(h)) => 0.5 * (l + h),
            (Some(l), None) => l,
            (None, Some(h)) => h,
            (None, None) => 0.0,
        }
    }

    /// Beyond a bound by more than the margin plus `tol` relative to it.
    fn beyond(&self, x: f64, tol: f64) -> bool {
        let margin = |b: f64| self.margin + tol * b.abs();
        self.high.is_some_and(|h| x > h + margin(h)) || self.low.is_some_and(|l| x < l - margin(l))
    }
}

/// The converged pairs, locked: orthonormal vectors (column-major).
struct Found {
    vectors: Vec<f64>,
    values: Vec<f64>,
    residuals: Vec<f64>,
    converged: Vec<bool>,
}

impl Found {
    /// The `k` wanted among the pairs found, ascending.
    #[allow(clippy::too_many_arguments)]
    fn select(
        self,
        which: Which,
        k: usize,
        n: usize,
        all_converged: bool,
        counts: Counts,
        m: usize,
        want_vectors: bool,
    ) -> LanczosOutput {
        let mut order: Vec<usize> = (0..self.values.len()).collect();
        order.sort_by(|&a, &b| self.values[a].total_cmp(&self.values[b]));
        let sorted: Vec<f64> = order.iter().map(|&i| self.values[i]).collect();
        let mut picked: Vec<usize> = ranked(&sorted, which, k)
            .iter()
            .map(|&r| order[r])
            .collect();
        picked.sort_by(|&a, &b| self.values[a].total_cmp(&self.values[b]));
        let vectors = if want_vectors {
            picked
                .iter()
                .flat_map(|&i| self.vectors[i * n..(i + 1) * n].iter().copied())
                .collect()
        } else {
            Vec::new()
        };
        LanczosOutput {
            values: picked.iter().map(|&i| self.values[i]).collect(),
            vectors,
            residuals: picked.iter().map(|&i| self.residuals[i]).collect(),
            converged: picked.iter().map(|&i| self.converged[i]).collect(),
            n_matvec: counts.n_matvec,
            n_restarts: counts.n_restarts,
            all_converged,
            ncv: m,
        }
    }
}

/// What a run of cycles returns: its wanted Ritz pairs, ascending, their
/// vectors in the first columns of the basis.
struct Ritz {
    /// Cycles the run made (restarts + 1).
    cycles: usize,
    /// Estimate of ‖A‖ from the run.
    scale: f64,
    values: Vec<f64>,
    residuals: Vec<f64>,
    converged: Vec<bool>,
    all_converged: bool,
}

impl Ritz {
    fn into_output(self, vectors: Vec<f64>, counts: Counts, m: usize) -> LanczosOutput {
        LanczosOutput {
            values: self.values,
            vectors,
            residuals: self.residuals,
            converged: self.converged,
            n_matvec: counts.n_matvec,
            n_restarts: counts.n_restarts,
            all_converged: self.all_converged,
            ncv: m,
        }
    }
}

/// `w ← (I − X Xᵀ) w` for the locked orthonormal vectors `X` (column-major):
/// one classical Gram–Schmidt pass, enough because the locked vectors are
/// nearly invariant (`Xᵀ A v` is of the order of their residuals).
fn project_out(locked: &[f64], n: usize, w: &mut [f64], scratch: &mut Scratch) {
    deflate::<f64>(locked, n, None, w, scratch);
}

/// `w ← (I − X Xᵀ) w + σ X Xᵀ v`: the product `w = A v` of the deflated
/// operator `(I − XXᵀ) A (I − XXᵀ) + σ XXᵀ`. Without the shift the locked
/// directions would have eigenvalue 0, which rounding lets into the basis
/// and which is *wanted* when it lies beyond the worst wanted value (the
/// smallest of a positive spectrum): σ is put where nothing is wanted.
fn deflate<T: BasisElement>(
    locked: &[f64],
    n: usize,
    shifted: Option<(f64, &[T])>,
    w: &mut [f64],
    scratch: &mut Scratch,
) {
    let count = locked.len() / n;
    if count == 0 {
        return;
    }
    let mut h = std::mem::take(&mut scratch.h);
    h.resize(count, 0.0);
    sweep(locked, n, count, w, None, &mut scratch.partials, &mut h);
    if let Some((sigma, v)) = shifted {
        for (c, hc) in h.iter_mut().enumerate() {
            *hc -= sigma * chunked_dot(v, &locked[c * n..(c + 1) * n]);
        }
    }
    subtract_columns(locked, n, 0, &h, w, &mut scratch.partials);
    scratch.h = h;
}

/// `a · b` summed over fixed chunks in order (deterministic).
fn chunked_dot<T: BasisElement>(a: &[T], b: &[f64]) -> f64 {
    let partials: Vec<f64> = a
        .par_chunks(REDUCE_CHUNK)
        .zip(b.par_chunks(REDUCE_CHUNK))
        .map(|(x, y)| dot(x, y))
        .collect();
    partials.iter().sum()
}

/// Thick-restart cycles on `op` restricted to the complement of `locked`.
struct Cycles<'a> {
    op: &'a dyn SymOp,
    setup: &'a Setup,
    which: Which,
    wanted: usize,
    locked: &'a [f64],
    /// The value the locked directions take in the deflated operator.
    shift: Option<f64>,
    stop: Stop,
}

impl Cycles<'_> {
    /// Runs from the unit vector in `basis[..n]`; on return the wanted
    /// Ritz vectors (ascending values) are the first columns of `basis`.
    fn run<T: BasisElement>(
        &self,
        basis: &mut [T],
        rng: &mut Xoshiro256PlusPlus,
        counts: &mut Counts,
        monitor: &dyn Monitor,
    ) -> Result<Ritz> {
        let (op, setup) = (self.op, self.setup);
        let n = op.dim();
        let m = setup.ncv;
        let k = self.wanted;
        let mut scratch = Scratch::default();
        let mut expansion =
            Expansion::new(n, m, op.relative_precision(), T::ROUNDING, setup.threshold);
        // The product of the current column, made orthogonal in float64
        // before it is stored as the next column; `wide` holds a float32
        // column widened for an operator that takes float64 input only.
        let (mut w, mut wide) = (vec![0.0; n], Vec::new());
        let mut projected = vec![0.0; m * m];
        let mut start = 0;
        let mut cycles = 0;
        let mut previous_wanted: Vec<f64> = Vec::new();
        // About ten looks per cycle: a look solves the projected problem,
        // O(ncv^3), small beside ncv / 10 products on any large operator.
        let check_every = (m / 10).max(1);
        loop {
            cycles += 1;
            let mut beta_last = 0.0;
            let mut ended_in_breakdown = false;
            let mut broke_down = false;
            for j in start..m {
                let (v, rest) = basis.split_at_mut((j + 1) * n);
                let next = &mut rest[..n];
                apply_to_column(op, &v[j * n..(j + 1) * n], &mut w, &mut wide, true)?;
                counts.n_matvec += 1;
                monitor.check()?;
                let shifted = self.shift.map(|sigma| (sigma, &v[j * n..]));
                deflate(self.locked, n, shifted, &mut w, &mut scratch);
                let krylov = Krylov {
                    v,
                    n,
                    projected: &projected,
                    m,
                };
                let step = if j == start {
                    // The arrow: A v_p couples to every kept Ritz vector.
                    expansion.arrow_step(krylov, j, &mut w, &mut scratch)?
                } else {
                    expansion.recurrence_step(krylov, j, &mut w, &mut scratch)?
                };
                projected[j * m + j] = step.alpha;
                let beta = if j + 1 + self.locked.len() / n >= n {
                    // The basis spans the whole space: A V = V T exactly.
                    next.fill(T::default());
                    0.0
                } else if step.in_span {
                    broke_down = true;
                    fresh_direction(v, n, j + 1, self.locked, &mut w, rng, &mut scratch)?;
                    store_divided(&w, 1.0, next, true);
                    expansion.omega.orthogonalized(j);
                    ended_in_breakdown = j + 1 == m;
                    0.0
                } else {
                    store_divided(&w, step.beta, next, true);
                    step.beta
                };
                expansion.omega.shift();
                if j + 1 < m {
                    projected[j * m + j + 1] = beta;
                    projected[(j + 1) * m + j] = beta;
                } else {
                    beta_last = beta;
                }
                // Within a cycle, every few steps: the run may be done
                // before the basis is full (a cycle of ncv products is
                // wasted work once the wanted pairs have converged).
                let size = j + 1;
                if size < m && !broke_down && size >= k + 2 && (size - start) % check_every == 0 {
                    let decision = self.decide(
                        &projected,
                        m,
                        size,
                        beta,
                        None,
                        &mut expansion.scale,
                        monitor,
                    )?;
                    if let Some(done) = decision.done {
                        return Ok(self.finish(basis, n, size, cycles, done));
                    }
                }
            }

            let decision = self.decide(
                &projected,
                m,
                m,
                beta_last,
                Some(CycleEnd {
                    ended_in_breakdown,
                    previous_wanted: &mut previous_wanted,
                    out_of_cycles: cycles >= setup.maxiter,
                }),
                &mut expansion.scale,
                monitor,
            );
            let Decision {
                ritz,
                n_converged,
                done,
            } = decision?;
            if let Some(done) = done {
                return Ok(self.finish(basis, n, m, cycles, done));
            }

            let keep = ranked(&ritz.values, self.which, keep_count(k, n_converged, m));
            let p = keep.len();
            let coefficients = gather_columns(&ritz.vectors, m, &keep);
            combine_in_place(basis, n, m, &coefficients, p);
            basis.copy_within(m * n..(m + 1) * n, p * n);
            projected.fill(0.0);
            for (q, &i) in keep.iter().enumerate() {
                let coupling = beta_last * ritz.vectors[i * m + m - 1];
                projected[q * m + q] = ritz.values[i];
                projected[q * m + p] = coupling;
                projected[p * m + q] = coupling;
            }
            expansion.restart(p, m);
            start = p;
            counts.n_restarts += 1;
        }
    }
}

/// The eigen-decomposition of the projected matrix `T` (column-major `m x m`).
/// What a look at the Ritz pairs of the basis built so far decides.
struct Decision {
    ritz: SymEig,
    n_converged: usize,
    /// The pairs to return, when the run is done.
    done: Option<Done>,
}

/// The pairs a finished run returns: their coefficients in the basis
/// (column-major, one column per pair, ascending values) and what is known
/// of them.
struct Done {
    /// The operator's scale seen by the run (largest |Ritz value| or
    /// recurrence coefficient sum).
    scale: f64,
    coefficients: Vec<f64>,
    values: Vec<f64>,
    residuals: Vec<f64>,
    converged: Vec<bool>,
    all_converged: bool,
}

/// What only a cycle's end decides: the breakdown rule (which compares with
/// the previous cycle) and running out of cycles.
struct CycleEnd<'a> {
    ended_in_breakdown: bool,
    previous_wanted: &'a mut Vec<f64>,
    out_of_cycles: bool,
}

impl Cycles<'_> {
    /// Looks at the Ritz pairs of the first `size` basis vectors (`beta`
    /// couples the last of them to the next): done or not, and with which
    /// pairs. Within a cycle (`end` None) only the plain stopping rules apply.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        projected: &[f64],
        m: usize,
        size: usize,
        beta: f64,
        end: Option<CycleEnd<'_>>,
        scale: &mut f64,
        monitor: &dyn Monitor,
    ) -> Result<Decision> {
        let (setup, k) = (self.setup, self.wanted);
        let ritz = if size == m {
            sym_eig_projected(projected, m)?
        } else {
            sym_eig_projected(&leading_block(projected, m, size), size)?
        };
        let bounds: Vec<f64> = (0..size)
            .map(|i| (beta * ritz.vectors[i * size + size - 1]).abs())
            .collect();
        *scale = ritz.values.iter().fold(*scale, |s, v| s.max(v.abs()));
        // ARPACK's floor ε^(2/3) for eigenvalues near zero, relative to the
        // operator's scale so that the rule is the same for A and 2^e A.
        let floor = setup.eps23 * *scale;
        // A residual within the rounding of the data (or of one product) is
        // as small as the operator can tell: a float32 matrix's cluster of
        // zero eigenvalues, spread ~1e-8 wide by its rounding, holds Ritz
        // residuals near 0.5 ε₃₂‖A‖ for hundreds of restarts otherwise.
        let noise = ROUNDING_MULTIPLE * setup.precision * *scale;
        let accuracy = |tol: f64, value: f64| (tol * value.abs().max(floor)).max(noise);
        let is_converged = |i: usize| bounds[i] <= accuracy(setup.tol, ritz.values[i]);
        let mut wanted = ranked(&ritz.values, self.which, k);
        let n_converged = wanted.iter().filter(|&&i| is_converged(i)).count();
        let out_of_cycles = end.as_ref().is_some_and(|e| e.out_of_cycles);
        let finished = match self.stop {
            Stop::Converged => match end {
                Some(end) => {
                    monitor.report("lanczos", n_converged, k);
                    // A cycle that ends in an invariant subspace has zero
                    // residuals, but eigenvalues outside it are unseen: accept
                    // only once a further cycle, started from the fresh random
                    // direction, leaves the wanted values unchanged.
                    let mut wanted_values: Vec<f64> =
                        wanted.iter().map(|&i| ritz.values[i]).collect();
                    wanted_values.sort_by(f64::total_cmp);
                    let stable = !end.ended_in_breakdown
                        || (end.previous_wanted.len() == k
                            && wanted_values
                                .iter()
                                .zip(end.previous_wanted.iter())
                                .all(|(a, b)| (a - b).abs() <= accuracy(setup.tol, *a)));
                    *end.previous_wanted = wanted_values;
                    (n_converged == k && stable) || out_of_cycles
                }
                // Within a cycle that has not broken down.
                None => {
                    let done = n_converged == k;
                    if done {
                        monitor.report("lanczos", n_converged, k);
                    }
                    done
                }
            },
            Stop::Beyond(limits) => {
                // The deflated run's extreme Ritz pairs (one per end
                // searched) must converge: then they are the extremes of
                // the complement of the locked pairs, with the same
                // assurance as any converged Lanczos pair. One beyond the
                // worst wanted was missed and is returned; else none was.
                // (A Ritz interval clear of the wanted region is not
                // enough: on a Laplacian's tiny gaps an unconverged Ritz
                // value sits between eigenvalues with a residual below
                // the gap while a missed copy lies beyond it.)
                // A pair not beyond need only be resolved from the
                // wanted region, not converged to tol: its residual
                // within √tol (an eigenvalue error of ~tol/gap).
                let loose = |i: usize| bounds[i] <= accuracy(setup.tol.sqrt(), ritz.values[i]);
                let miss = wanted
                    .iter()
                    .copied()
                    .find(|&i| limits.beyond(ritz.values[i], setup.tol) && is_converged(i));
                let pending = wanted
                    .iter()
                    .any(|&i| limits.beyond(ritz.values[i], setup.tol));
                let resolved = wanted.iter().all(|&i| loose(i));
                if miss.is_some() || (resolved && !pending) || out_of_cycles {
                    wanted = miss.into_iter().collect();
                    true
                } else {
                    false
                }
            }
        };
        let done = finished.then(|| {
            wanted.sort_by(|&a, &b| ritz.values[a].total_cmp(&ritz.values[b]));
            Done {
                scale: *scale,
                coefficients: gather_columns(&ritz.vectors, size, &wanted),
                values: wanted.iter().map(|&i| ritz.values[i]).collect(),
                residuals: wanted.iter().map(|&i| bounds[i]).collect(),
                converged: wanted.iter().map(|&i| is_converged(i)).collect(),
                all_converged: n_converged == k,
            }
        });
        Ok(Decision {
            ritz,
            n_converged,
            done,
        })
    }

    /// The returned pairs' vectors into the first columns of the basis.
    fn finish<T: BasisElement>(
        &self,
        basis: &mut [T],
        n: usize,
        size: usize,
        cycles: usize,
        done: Done,
    ) -> Ritz {
        combine_in_place(basis, n, size, &done.coefficients, done.values.len());
        Ritz {
            cycles,
            scale: done.scale,
            values: done.values,
            residuals: done.residuals,
            converged: done.converged,
            all_converged: done.all_converged,
        }
    }
}

/// The leading `size x size` block of the `m x m` row-major `projected`.
fn leading_block(projected: &[f64], m: usize, size: usize) -> Vec<f64> {
    (0..size)
        .flat_map(|r| projected[r * m..r * m + size].iter().copied())
        .collect()
}

fn sym_eig_projected(projected: &[f64], m: usize) -> Result<SymEig> {
    crate::core::krylov::tridiag::sym_eig(projected, m)
}

/// Validated parameters with defaults filled in.
#[derive(Clone, Copy)]
struct Setup {
    ncv: usize,
    maxiter: usize,
    tol: f64,
    /// The coarser of the operator's arithmetic and data unit roundoffs
    /// ([`SymOp::relative_precision`], [`SymOp::data_precision`]).
    precision: f64,
    eps23: f64,
    /// Loss of orthogonality η allowed before a correction: `tol / 10` (tol
    /// no finer than the rounding floor), between 16 ulps of the basis'
    /// storage and Simon's √ε of the operator's precision. Semi-orthogonality (η = √ε) keeps the
    /// Ritz *values* accurate, but each correction subtracts basis columns
    /// that `T` does not record, so the Ritz *vectors* carry residuals of
    /// about `η ‖A‖` that the recurrence's `|β s_m|` does not see (measured:
    /// η = 1.2e-7 left 1.5e-7 on a norm-10 matrix); η below tol keeps them
    /// within it.
    threshold: f64,
    /// Whether converged pairs are locked and the search goes on for missed
    /// copies (every `which` but smallest magnitude).
    verify: bool,
}

impl Setup {
    /// `rounding`: the unit roundoff of the Krylov basis' storage.
    fn validate(n: usize, params: &LanczosParams, precision: f64, rounding: f64) -> Result<Setup> {
        let k = params.k;
        if n < 2 {
            return Err(Error::invalid(
                "k",
                format!("the operator must have dimension >= 2 for k in 1..=n-1, got n = {n}"),
            ));
        }
        if k == 0 || k >= n {
            return Err(Error::invalid(
                "k",
                format!("k must be in 1..={} (n = {n}), got {k}", n - 1),
            ));
        }
        let ncv = match params.ncv {
            None => n.min((2 * k + 1).max(20)),
            Some(ncv) if ncv > k && ncv <= n => ncv,
            Some(ncv) => {
                return Err(Error::invalid(
                    "ncv",
                    format!(
                        "ncv must be in {}..={n} (k = {k}, n = {n}), got {ncv}",
                        k + 1
                    ),
                ))
            }
        };
        let maxiter = match params.maxiter {
            None => n.saturating_mul(10),
            Some(0) => return Err(Error::invalid("maxiter", "maxiter must be >= 1, got 0")),
            Some(maxiter) => maxiter,
        };
        if !(params.tol.is_finite() && params.tol >= 0.0) {
            return Err(Error::invalid(
                "tol",
                format!(
                    "tol must be finite and >= 0, got {}",
                    python_float(params.tol)
                ),
            ));
        }
        if let Some(v0) = &params.v0 {
            if v0.len() != n {
                return Err(Error::shape(
                    "v0",
                    format!("length {n}"),
                    format!("length {}", v0.len()),
                ));
            }
            check_finite("v0", v0)?;
            if v0.iter().all(|&x| x == 0.0) {
                return Err(Error::invalid("v0", "v0 must be nonzero"));
            }
        }
        let eps = f64::EPSILON;
        // Callers' operators may claim any precision; none is finer than f64's.
        let precision = if precision.is_finite() {
            precision.max(eps)
        } else {
            eps
        };
        let tol = if params.tol == 0.0 {
            precision
        } else {
            params.tol
        };
        Ok(Setup {
            ncv,
            maxiter,
            tol,
            precision,
            eps23: precision.powf(2.0 / 3.0),
            // Residuals are only resolved to the rounding floor (`decide`), so
            // the basis need not be kept more orthogonal than that either: a
            // float32 operator at tol 1e-10 was otherwise held to 1e-11, ten
            // thousand times below what its products can resolve.
            // Nor more orthogonal than its stored columns can be: sixteen
            // ulps of the storage (of float32 for a float32 basis).
            threshold: (0.1 * tol.max(ROUNDING_MULTIPLE * precision))
                .min(precision.sqrt())
                .max(32.0 * rounding),
            verify: params.check_multiplicities && params.which != Which::SmallestMagnitude,
        })
    }
}

#[cfg(test)]
mod tests;
