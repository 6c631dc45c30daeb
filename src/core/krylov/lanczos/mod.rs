//! Thick-restart Lanczos for a few extreme eigenpairs of a real symmetric operator.
//!
//! # Method
//!
//! The solver keeps the Krylov–Schur relation (Stewart 2001; in the symmetric
//! case it is the thick-restart Lanczos of Wu & Simon 2000, "TRLan")
//!
//! ```text
//!     A V_m = V_m T_m + β_m v_{m+1} e_mᵀ,      V_{m+1}ᵀ V_{m+1} = I,
//! ```
//!
//! where `T_m` is tridiagonal except for an "arrow": after a restart its
//! leading `p x p` block is `diag(θ_1..θ_p)` and its row/column `p+1` couples
//! the kept Ritz vectors to the continuation vector with `β_m s_i`.
//!
//! * **Expansion.** `w = A v_j`, then full reorthogonalization by blocked
//!   classical Gram–Schmidt. A first sweep over the basis gives `h = V_jᵀ w`
//!   and `‖w‖²`. In exact arithmetic only the columns the recurrence couples
//!   to `w` (`v_{j-1}, v_j`; all kept vectors on the first step after a
//!   restart) have nonzero `h_i`; when the others are measured to be below
//!   `ORTHOGONALITY_TOLERANCE · ‖w − V h‖`, which is the bound a
//!   reorthogonalized vector must meet anyway, only those two columns are
//!   subtracted, so such a step reads the basis once instead of twice (about
//!   half the steps on Laplacians and random sparse matrices). Otherwise
//!   `w -= V_j h` is fused in one sweep per row chunk with the *next*
//!   projection `V_jᵀ w` and `‖w‖²`. That second projection measures the loss
//!   of orthogonality of `w` directly; only when it exceeds
//!   `ORTHOGONALITY_TOLERANCE · ‖w‖` is it applied as a second Gram–Schmidt
//!   pass (the "twice is enough" refinement of Daniel, Gragg, Kaufman &
//!   Stewart 1976, but triggered by the measured loss rather than by the
//!   norm-drop proxy `‖w_new‖ < ‖w_old‖/√2`, which fires on nearly every step
//!   of a Laplacian and would cost a third sweep over the basis).
//!   `α_j = h_j`, `β_j = ‖w‖`, `v_{j+1} = w / β_j`.
//! * **Breakdown.** When `w` is numerically in `span(V_j)` (β_j tiny against
//!   `‖A v_j‖`, or still not orthogonal after two passes), an invariant
//!   subspace was found: the coupling is set to `β_j = 0` and the basis
//!   continues with a fresh random vector orthogonalized against `V_j`. When
//!   the basis spans the whole space (`j = n`), `β = 0` and the Ritz pairs are
//!   exact.
//! * **Restart.** When `m = ncv` vectors are built, `T_m = Y Θ Yᵀ` (dense, via
//!   `tridiag::sym_eig`); the `p` most wanted Ritz vectors are kept,
//!   `V_p ← V_m Y_p` (in place, a faer GEMM per row chunk), `v_{p+1} ← v_{m+1}`,
//!   and `T_p` becomes `diag(Θ_p)` with the arrow `β_m Y_{m,1..p}`. The
//!   number kept, `p`, follows ARPACK's adaptive rule plus a quarter of the
//!   spare basis (see `keep_count`).
//! * **Convergence** (ARPACK's `dsconv` rule): Ritz pair `i` has converged when
//!   `|β_m y_{m,i}| ≤ tol · max(ε^(2/3), |θ_i|)`, with `tol = ε` when the caller
//!   passes 0. `|β_m y_{m,i}| = ‖A x_i − θ_i x_i‖` exactly in exact arithmetic,
//!   and to rounding with full reorthogonalization, so it is also the residual
//!   reported for each pair (no extra operator products).
//!
//! Converged wanted pairs are never lost: they are always among the kept
//! vectors, and the returned pairs are the Ritz pairs of the final `T_m`.
//! Like every Krylov method started from one vector (ARPACK included), an
//! eigenvalue of multiplicity > 1 is found with all its copies only through
//! breakdowns (fresh random vectors) or rounding. A cycle that ends in a
//! breakdown has zero residuals everywhere, so convergence is then accepted
//! only after one more cycle leaves the wanted values unchanged.
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
//! * R. Lehoucq, D. Sorensen, C. Yang, "ARPACK Users' Guide", SIAM 1998
//!   (parameter semantics and the convergence rule).
//! * J. Daniel, W. Gragg, L. Kaufman, G. W. Stewart, "Reorthogonalization and
//!   stable algorithms for updating the Gram–Schmidt QR factorization",
//!   Math. Comp. 30, 1976.

use crate::core::error::{check_finite, Error, Result};
use crate::core::monitor::Monitor;
use crate::core::op::SymOp;

mod expand;
mod finish;
mod restart;

use expand::{fill_random, fresh_direction, norm_squared, scale, Expansion, Scratch};
use finish::rayleigh_ritz;
use restart::{combine_in_place, gather_columns, keep_count, ranked};

#[cfg(test)]
use crate::core::krylov::basis::{subtract_columns, sweep};
#[cfg(test)]
use crate::core::krylov::tridiag::sym_eig;
#[cfg(test)]
use rayon::prelude::*;

use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// `β ≤ BREAKDOWN_RATIO · ‖A v_j‖` means `w` is rounding noise: treat as an
/// invariant subspace and continue with a fresh random direction.
const BREAKDOWN_RATIO: f64 = 64.0 * f64::EPSILON;

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
    /// convergence once); default `10 n`.
    pub maxiter: Option<usize>,
    /// Relative accuracy of the Ritz pairs; 0 means machine precision.
    pub tol: f64,
    /// Starting vector (length n, finite, nonzero); random from `seed` if None.
    pub v0: Option<Vec<f64>>,
    pub seed: u64,
    pub want_vectors: bool,
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
    let n = op.dim();
    let setup = Setup::validate(n, params)?;
    let m = setup.ncv;
    let k = params.k;

    // Columns 0..m hold V_m; column m holds the continuation vector v_{m+1}.
    let mut basis = vec![0.0; (m + 1) * n];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
    match &params.v0 {
        Some(v0) => basis[..n].copy_from_slice(v0),
        None => fill_random(&mut basis[..n], &mut rng),
    }
    let start_norm = norm_squared(&basis[..n]).sqrt();
    scale(&mut basis[..n], 1.0 / start_norm);

    let mut scratch = Scratch::default();
    let mut expansion = Expansion::new(n, m, setup.threshold);
    let mut projected = vec![0.0; m * m];
    let mut start = 0;
    let mut n_matvec = 0;
    let mut n_restarts = 0;
    let mut cycles = 0;
    let mut previous_wanted: Vec<f64> = Vec::new();
    loop {
        cycles += 1;
        let mut beta_last = 0.0;
        let mut ended_in_breakdown = false;
        for j in start..m {
            let (v, rest) = basis.split_at_mut((j + 1) * n);
            let w = &mut rest[..n];
            op.apply(&v[j * n..], w)?;
            n_matvec += 1;
            monitor.check()?;
            let step = if j == start {
                // The arrow: A v_p couples to every kept Ritz vector.
                expansion.arrow_step(v, n, j, w, &projected, m, &mut scratch)?
            } else {
                expansion.recurrence_step(v, n, j, w, &projected, m, &mut scratch)?
            };
            projected[j * m + j] = step.alpha;
            let beta = if j + 1 == n {
                // The basis spans the whole space: A V = V T exactly.
                w.fill(0.0);
                0.0
            } else if step.in_span {
                fresh_direction(v, n, j + 1, w, &mut rng, &mut scratch)?;
                expansion.omega.orthogonalized(j);
                ended_in_breakdown = j + 1 == m;
                0.0
            } else {
                scale(w, 1.0 / step.beta);
                step.beta
            };
            expansion.omega.shift();
            if j + 1 < m {
                projected[j * m + j + 1] = beta;
                projected[(j + 1) * m + j] = beta;
            } else {
                beta_last = beta;
            }
        }

        let ritz = sym_eig_projected(&projected, m)?;
        let bounds: Vec<f64> = (0..m)
            .map(|i| (beta_last * ritz.vectors[i * m + m - 1]).abs())
            .collect();
        expansion.scale = ritz
            .values
            .iter()
            .fold(expansion.scale, |s, v| s.max(v.abs()));
        let is_converged =
            |i: usize| bounds[i] <= setup.tol * ritz.values[i].abs().max(setup.eps23);
        let mut wanted = ranked(&ritz.values, params.which, k);
        let n_converged = wanted.iter().filter(|&&i| is_converged(i)).count();
        monitor.report("lanczos", n_converged, k);
        // A cycle that ends in an invariant subspace has zero residuals, but
        // eigenvalues outside that subspace (further copies of a multiple
        // eigenvalue, say) are unseen: accept only once a further cycle, started
        // from the fresh random direction, leaves the wanted values unchanged.
        let mut wanted_values: Vec<f64> = wanted.iter().map(|&i| ritz.values[i]).collect();
        wanted_values.sort_by(f64::total_cmp);
        let stable = !ended_in_breakdown
            || (previous_wanted.len() == k
                && wanted_values
                    .iter()
                    .zip(&previous_wanted)
                    .all(|(a, b)| (a - b).abs() <= setup.tol * a.abs().max(setup.eps23)));
        previous_wanted = wanted_values;

        if (n_converged == k && stable) || cycles >= setup.maxiter {
            wanted.sort_unstable();
            let mut values: Vec<f64> = wanted.iter().map(|&i| ritz.values[i]).collect();
            let mut residuals: Vec<f64> = wanted.iter().map(|&i| bounds[i]).collect();
            let converged: Vec<bool> = wanted.iter().map(|&i| is_converged(i)).collect();
            let vectors = if params.want_vectors {
                let coefficients = gather_columns(&ritz.vectors, m, &wanted);
                combine_in_place(&mut basis, n, m, &coefficients, wanted.len());
                let q = wanted.len();
                (values, residuals) = rayleigh_ritz(op, &mut basis, n, q, monitor)?;
                n_matvec += q;
                basis
            } else {
                Vec::new()
            };
            return Ok(LanczosOutput {
                values,
                vectors,
                residuals,
                converged,
                n_matvec,
                n_restarts,
                all_converged: n_converged == k,
                ncv: m,
            });
        }

        let keep = ranked(&ritz.values, params.which, keep_count(k, n_converged, m));
        let p = keep.len();
        let coefficients = gather_columns(&ritz.vectors, m, &keep);
        combine_in_place(&mut basis, n, m, &coefficients, p);
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
        n_restarts += 1;
    }
}

/// The eigen-decomposition of the projected matrix `T` (column-major `m x m`).
fn sym_eig_projected(projected: &[f64], m: usize) -> Result<crate::core::krylov::tridiag::SymEig> {
    crate::core::krylov::tridiag::sym_eig(projected, m)
}

/// Validated parameters with defaults filled in.
struct Setup {
    ncv: usize,
    maxiter: usize,
    tol: f64,
    eps23: f64,
    /// Loss of orthogonality η allowed before a correction: `tol / 10`,
    /// between `16ε` and Simon's √ε. Semi-orthogonality (η = √ε) keeps the
    /// Ritz *values* accurate, but each correction subtracts basis columns
    /// that `T` does not record, so the Ritz *vectors* carry residuals of
    /// about `η ‖A‖` that the recurrence's `|β s_m|` does not see (measured:
    /// η = 1.2e-7 left 1.5e-7 on a norm-10 matrix); η below tol keeps them
    /// within it.
    threshold: f64,
}

impl Setup {
    fn validate(n: usize, params: &LanczosParams) -> Result<Setup> {
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
                format!("tol must be finite and >= 0, got {}", params.tol),
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
        let tol = if params.tol == 0.0 { eps } else { params.tol };
        Ok(Setup {
            ncv,
            maxiter,
            tol,
            eps23: eps.powf(2.0 / 3.0),
            threshold: (0.1 * tol).clamp(16.0 * eps, eps.sqrt()),
        })
    }
}

#[cfg(test)]
mod tests;
