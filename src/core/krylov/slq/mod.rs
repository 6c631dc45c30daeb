//! Stochastic Lanczos quadrature (SLQ) for the spectral measure of a symmetric
//! operator, with counting estimates whose standard error covers both the
//! sampling error of the probes and the quadrature error of finitely many
//! Lanczos steps.
//!
//! # Quadrature
//! For a unit probe `v = z / ‖z‖` (z Rademacher or Gaussian) the spectral
//! measure `μ_v = Σ_j (vᵀu_j)² δ_{λ_j}` satisfies `E[μ_v(S)] = #{λ_j ∈ S} / n`.
//! `m` steps of Lanczos from `v`,
//!
//! ```text
//! β_k q_{k+1} = A q_k − α_k q_k − β_{k−1} q_{k−1},   α_k = q_kᵀ A q_k,
//! ```
//!
//! give the Jacobi matrix `T_m = tridiag(β, α, β)` whose eigenpairs
//! `(θ_i, s_i)` are the nodes and weights `w_i = s_{1i}²` of the m-point Gauss
//! rule of `μ_v` (Golub & Meurant, *Matrices, Moments and Quadrature*, 2010;
//! Ubaru, Chen & Saad, SIAM J. Matrix Anal. Appl. 38, 2017).
//!
//! The Lanczos vectors are kept semi-orthogonal by *partial
//! reorthogonalisation* (Simon 1984): the inner products `q_iᵀ q_j` are
//! estimated from the coefficients by Simon's recurrence; when an estimate
//! passes √ε (√ε₃₂ for float32 products), on the step after a correction
//! whose estimate fell short, and every 10 steps regardless, the true inner
//! products `Qᵀ w` are measured (one sweep of the basis) and, if they matter,
//! removed by classical Gram–Schmidt against the columns that carry them
//! (the few holding converged Ritz directions; a column whose loss is below
//! what the pass leaves anyway is not read again).
//! Measurements also calibrate the estimate, so its pessimism (three orders of
//! magnitude for float32 network Hessians) does not turn into wasted sweeps.
//! Semi-orthogonality is what the error bars below need: Simon proved that
//! `T_m` is then, to working precision, the projection of `A` on an
//! orthonormal basis of the Krylov space, so its moments are those of `μ_v`
//! and its Ritz residuals are `β_m |s_{mi}|` up to rounding. Without any
//! reorthogonalisation, converged Ritz values reappear as "ghost" copies whose
//! weights are taken from the rest of the spectrum, counts near a converged
//! cluster (a Hessian's zeros) go wrong and both bounds lose their footing;
//! full reorthogonalisation at every step costs `O(m·n)` per step, which at
//! n = 10⁶ and m = 80 was 95 % of the time with a cheap operator. Now a step
//! costs one product and three vector passes, plus a sweep of the basis on
//! the steps that are measured.
//! For float32 operators the basis itself is stored in float32: the sweeps are
//! memory-bound, and rounding a stored vector to float32 perturbs the
//! recurrence by no more than each float32 product already does (the
//! operator rounds its input to float32 anyway); arithmetic stays float64.
//! A zero `β_k` (breakdown) means `v` lies in an invariant subspace: the Gauss
//! rule is then exact, and the recurrence stops early.
//!
//! # Parallelism
//! Probes run side by side, one per thread, each inside a single-thread pool
//! (`workers.rs`): for a network Hessian two sequential GEMMs outrun one split
//! over both cores, and one probe's memory-bound sweeps overlap the other's
//! products. Operators that call back into Python, and bases too large to
//! hold one per thread, run probe after probe with parallel vector work
//! instead. Both give the same bits (for operators whose products do not
//! depend on the thread count, as hessx's own do not): every reduction sums
//! fixed chunks in a fixed order.
//!
//! # Counting with an honest error bar
//! The fraction of eigenvalues in an interval `I` is `E[μ_v(I)]`. The naive
//! estimate per probe, the Gauss weight of the nodes inside `I`, has a
//! quadrature error that is *systematic*: all probes place their nodes at
//! nearly the same points, so averaging probes does not shrink it and the
//! probes' sample standard error misses it (30 probes × 100 steps on a shifted
//! 30³ Laplacian miss the positive fraction by 0.0055 while claiming 0.0005).
//! Instead each probe yields a *guaranteed* bracket `[L_p, U_p] ∋ μ_v(I)`, the
//! intersection of two bounds:
//!
//! 1. **Chebyshev–Markov–Krein (moment) bound.** Among all measures with the
//!    moments `T_m` and `β_m` pin down (degree ≤ 2m), the distribution function
//!    at a threshold t ranges over `[Σ_{τ_i<t} ω_i, Σ_{τ_i<t} ω_i + ω_t]`,
//!    where `(τ_i, ω_i)` is the (m+1)-point Gauss–Radau rule with a node fixed
//!    at t and `ω_t = 1 / Σ_{k=0}^{m} p_k(t)²` is the Christoffel function
//!    (Akhiezer, *The Classical Moment Problem*, 1965, §2.5; Szegő, Thm 3.41.1).
//!    This is the best any moment-based bound can do; it is sharp inside the
//!    bulk of a spectrum but useless next to a large cluster (a threshold just
//!    above 60 % of zero eigenvalues keeps ω_t ≈ 0.6).
//! 2. **Ritz residual bound.** A Ritz pair has `A y_i − θ_i y_i = r_i` with
//!    `‖r_i‖ = β_m |s_{mi}|`, so the part of `y_i` in the spectral subspace of
//!    the eigenvalues at distance ≥ d_i from θ_i has norm ≤ ‖r_i‖ / d_i. With
//!    the nodes split into G (inside I, at distance d_i from its complement),
//!    B (outside I, at distance d_i from it) and U (the rest), and `v = Σ s_{1i} y_i`,
//!    `‖(1−P)v‖ ≤ ε_G + √(W_U + W_B)` and `‖Pv‖ ≤ ε_B + √(W_G + W_U)` with
//!    `ε_X = Σ_{i∈X} |s_{1i}| ‖r_i‖ / d_i` and P the spectral projector on I.
//!    Every split gives valid bounds; the tightest over the splits by distance
//!    is kept. This certifies converged clusters that the moments cannot.
//!
//! The reported value is the mean of the bracket midpoints; the standard error
//! is `√(s²/n_probes + h̄²)`, where s is the sample standard deviation of the
//! midpoints and h̄ the mean bracket half-width (a hard bound on the
//! quadrature part of the error, which more probes do not reduce but more
//! steps do).

use crate::core::error::{Error, Result};
use crate::core::krylov::basis::{
    apply_to_column, store_divided, subtract_listed_columns, sweep, BasisElement,
};
use crate::core::krylov::orthogonality::{
    OrthogonalityEstimate, LOOKAHEAD, MEASURE_EVERY, RESTORE_FRACTION,
};
use crate::core::krylov::tridiag::tridiag_eig;
use crate::core::monitor::Monitor;
use crate::core::op::SymOp;
use crate::core::workers::run_tasks;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

mod bounds;
pub use bounds::{count_fraction, density, probe_brackets};

/// Rows per unit of vector work. Reductions sum per-chunk partials in chunk
/// order, so results are bit-identical whether chunks run in parallel or not.
const CHUNK: usize = 4096;

/// Memory the Lanczos bases of probes running at once may take together;
/// beyond it probes run one at a time (with parallel products).
const PROBE_WORKERS_MEMORY: usize = 2 << 30;

/// How probe vectors are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeKind {
    /// Entries ±1 with equal probability.
    #[default]
    Rademacher,
    /// Standard normal entries (the probe direction is uniform on the sphere).
    Gaussian,
}

#[derive(Debug, Clone)]
pub struct SlqParams {
    pub n_probes: usize,
    pub n_steps: usize,
    pub seed: u64,
    pub probe: ProbeKind,
    /// Index of the first probe: the run computes probes
    /// `first_probe..first_probe + n_probes` of the stream of `seed`. Runs over
    /// consecutive ranges, concatenated, equal one run over their union bit
    /// for bit (how probes are spread over machines).
    pub first_probe: usize,
}

/// Per probe p: the Gauss rule (`nodes[p]` ascending, `weights[p]` summing to
/// 1), the Jacobi matrix (`alpha[p]`, `beta[p]` of equal length; `beta[p][k]`
/// couples steps k and k+1, the last entry is the final residual norm β_m,
/// 0 after a breakdown) and the Ritz residual norms `β_m |s_{mi}|`.
#[derive(Debug, Clone)]
pub struct SlqOutput {
    pub n: usize,
    pub nodes: Vec<Vec<f64>>,
    pub weights: Vec<Vec<f64>>,
    pub alpha: Vec<Vec<f64>>,
    pub beta: Vec<Vec<f64>>,
    pub residuals: Vec<Vec<f64>>,
}

/// A fraction of the spectrum with its error bar: `value ± 2·stderr` covers
/// the truth with ≈95 % confidence. `lower`/`upper` average the per-probe
/// guaranteed brackets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FractionEstimate {
    pub value: f64,
    pub stderr: f64,
    pub sampling_stderr: f64,
    pub quadrature_halfwidth: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The random generator of probe `index`: the stream of `seed` advanced by
/// `index` jumps of 2¹²⁸ draws, so probes are independent and each one's
/// vector does not depend on how probes are scheduled.
pub(crate) fn probe_rng(seed: u64, index: usize) -> Xoshiro256PlusPlus {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for _ in 0..index {
        rng.jump();
    }
    rng
}

/// Fills `out` with ±1 entries (Rademacher) or standard normals.
pub(crate) fn fill_probe(rng: &mut Xoshiro256PlusPlus, kind: ProbeKind, out: &mut [f64]) {
    match kind {
        ProbeKind::Rademacher => {
            for block in out.chunks_mut(64) {
                let bits = rng.next_u64();
                for (b, x) in block.iter_mut().enumerate() {
                    *x = if (bits >> b) & 1 == 1 { 1.0 } else { -1.0 };
                }
            }
        }
        ProbeKind::Gaussian => {
            // Box–Muller; u1 in (0, 1] keeps the logarithm finite.
            let unit = |r: &mut Xoshiro256PlusPlus| {
                ((r.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
            };
            for pair in out.chunks_mut(2) {
                let radius = (-2.0 * unit(rng).ln()).sqrt();
                let angle = 2.0 * std::f64::consts::PI * unit(rng);
                pair[0] = radius * angle.cos();
                if pair.len() > 1 {
                    pair[1] = radius * angle.sin();
                }
            }
        }
    }
}

/// The unnormalised probe vector `z` of probe `index`.
pub fn probe_vector(seed: u64, index: usize, n: usize, kind: ProbeKind) -> Vec<f64> {
    let mut z = vec![0.0; n];
    fill_probe(&mut probe_rng(seed, index), kind, &mut z);
    z
}

fn dot_seq(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        acc[0] += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

fn dot(a: &[f64], b: &[f64], parallel: bool) -> f64 {
    let partials: Vec<f64> = if parallel {
        a.par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .map(|(x, y)| dot_seq(x, y))
            .collect()
    } else {
        a.chunks(CHUNK)
            .zip(b.chunks(CHUNK))
            .map(|(x, y)| dot_seq(x, y))
            .collect()
    };
    partials.into_iter().fold(0.0, |s, x| s + x)
}

/// Runs `f` on matching fixed chunks of `w` (mutable) in parallel or not,
/// returning the in-order sum of the per-chunk pairs.
fn update_chunks<F>(w: &mut [f64], parallel: bool, f: F) -> [f64; 2]
where
    F: Fn(usize, &mut [f64]) -> [f64; 2] + Sync,
{
    let partials: Vec<[f64; 2]> = if parallel {
        w.par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, chunk)| f(c * CHUNK, chunk))
            .collect()
    } else {
        w.chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, chunk)| f(c * CHUNK, chunk))
            .collect()
    };
    partials
        .into_iter()
        .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]])
}

/// m steps of Lanczos from `z / ‖z‖` with partial reorthogonalisation (module
/// docs); returns (α, β) with β of the same length as α (last entry the
/// residual norm, 0 on breakdown) and the number of Gram–Schmidt corrections. `storage` holds the basis; reusing it across probes
/// saves faulting in `n · n_steps` fresh pages per probe (12 % of a 1M-row
/// Laplacian's SLQ).
fn lanczos_probe<T: BasisElement>(
    op: &dyn SymOp,
    z: Vec<f64>,
    n_steps: usize,
    parallel: bool,
    check: &dyn Fn() -> Result<()>,
    storage: &mut Vec<T>,
) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let n = z.len();
    let norm = dot(&z, &z, parallel).sqrt();
    if norm.is_nan() || norm <= 0.0 {
        return Err(Error::invalid("probe", "the probe vector is zero"));
    }
    // Column-major: q_k = basis[k n .. (k + 1) n], written once, read only
    // when measured. Columns beyond k may hold an earlier probe's vectors;
    // nothing reads them before step k writes them.
    if storage.len() < n * n_steps {
        storage.resize(n * n_steps, T::default());
    }
    let basis = &mut storage[..n * n_steps];
    basis[..n]
        .iter_mut()
        .zip(&z)
        .for_each(|(q, &x)| *q = T::narrow(x / norm));
    // Operators that do not take a float32 basis column as it is get a
    // widened copy of q_k (exactly the stored vector, so the recurrence below
    // stays consistent with it).
    let mut q_wide = z;
    let mut w = vec![0.0; n];
    let mut alpha: Vec<f64> = Vec::with_capacity(n_steps);
    let mut beta: Vec<f64> = Vec::with_capacity(n_steps);
    let mut omega = OrthogonalityEstimate::new(n, n_steps, op.relative_precision(), T::ROUNDING);
    let (mut measured, mut partials) = (Vec::new(), Vec::new());
    let (mut listed, mut listed_coeffs) = (Vec::new(), Vec::new());
    let mut reorthogonalized = 0;
    let mut recheck_next = false;
    let (mut check_interval, mut next_check) = (MEASURE_EVERY, MEASURE_EVERY);
    let mut scale = 0.0f64;
    for k in 0..n_steps {
        check()?;
        let (done, rest) = basis.split_at_mut((k + 1) * n);
        let q = &done[k * n..];
        apply_to_column(op, q, &mut w, &mut q_wide, parallel)?;
        // Paige's ordering: remove β_{k−1} q_{k−1} before measuring α_k.
        let b_previous = if k > 0 { beta[k - 1] } else { 0.0 };
        let q_previous = if k > 0 { &done[(k - 1) * n..k * n] } else { q };
        let [a, _] = update_chunks(&mut w, parallel, |start, wc| {
            let qc = &q[start..start + wc.len()];
            let pc = &q_previous[start..start + wc.len()];
            let mut a = 0.0;
            for ((wi, &qi), &pi) in wc.iter_mut().zip(qc).zip(pc) {
                *wi -= b_previous * pi.widen();
                a += qi.widen() * *wi;
            }
            [a, 0.0]
        });
        let [_, norm2] = update_chunks(&mut w, parallel, |start, wc| {
            let qc = &q[start..start + wc.len()];
            let mut s = 0.0;
            for (wi, &qi) in wc.iter_mut().zip(qc) {
                *wi -= a * qi.widen();
                s += *wi * *wi;
            }
            [0.0, s]
        });
        let mut a = a;
        let mut b = norm2.sqrt();
        if !a.is_finite() || !b.is_finite() {
            return Err(Error::Operator(format!(
                "the operator returned NaN or Inf during Lanczos step {k}"
            )));
        }
        alpha.push(a);
        scale = scale.max(a.abs() + b + b_previous);
        let estimate = if b > 0.0 {
            omega.advance(k, &alpha, &beta, b, scale)
        } else {
            f64::INFINITY
        };
        let scheduled = k + 1 == next_check;
        let mut due = estimate > LOOKAHEAD * omega.threshold || recheck_next || scheduled;
        recheck_next = false;
        // Measure the true loss h = Q_kᵀ w (one sweep of the basis); remove it
        // by one Gram–Schmidt pass when it matters, a second after heavy
        // cancellation ("twice is enough").
        let mut underestimated = false;
        for pass in 0..2 {
            if !due || b == 0.0 {
                break;
            }
            measured.resize(k + 1, 0.0);
            sweep(done, n, k + 1, &mut w, None, &mut partials, &mut measured);
            let largest = measured.iter().fold(0.0f64, |m, x| m.max(x.abs())) / b;
            if pass == 0 {
                // (A second pass measures what the first left, not the estimate.)
                omega.calibrate(k, largest, estimate);
                underestimated = largest > estimate;
                check_interval = if largest <= estimate && scheduled {
                    2 * check_interval
                } else if largest > estimate {
                    MEASURE_EVERY
                } else {
                    check_interval
                };
                next_check = k + 1 + check_interval;
            }
            if largest <= RESTORE_FRACTION * omega.threshold {
                omega.set_measured(k, &measured, b);
                break;
            }
            // Columns whose loss is already below what one pass against a
            // semi-orthogonal basis leaves behind are not worth reading: the
            // loss sits on the few vectors that carry converged Ritz
            // directions (on a float32 MLP Hessian, 17-20 of up to 80).
            // q_k is always among the rest, as α_k absorbs its coefficient.
            let left = omega.left_after_pass(largest);
            listed.clear();
            listed.extend((0..=k).filter(|&i| i == k || measured[i].abs() > left * b));
            listed_coeffs.clear();
            listed_coeffs.extend(listed.iter().map(|&i| measured[i]));
            let norm2 =
                subtract_listed_columns(done, n, &listed, &listed_coeffs, &mut w, &mut partials);
            a += measured[k];
            alpha[k] = a;
            let before = b;
            b = norm2.sqrt();
            scale = scale.max(a.abs() + b + b_previous);
            omega.reset(k, largest, &measured, &listed, b);
            reorthogonalized += 1;
            // Simon: q_{k+2} inherits through the recurrence what q_{k+1}
            // lost. The estimate carries that inheritance (its row for q_k),
            // so the next step is measured regardless only when this step's
            // estimate fell short of the truth.
            recheck_next = underestimated;
            due = b < 0.5 * before;
        }
        // Breakdown: v lies (to working precision) in an invariant subspace.
        if b <= 1e-12 * scale || k + 1 == n || k + 1 == n_steps {
            beta.push(if b <= 1e-12 * scale { 0.0 } else { b });
            break;
        }
        beta.push(b);
        omega.shift();
        store_divided(&w, b, &mut rest[..n], parallel);
    }
    Ok((alpha, beta, reorthogonalized))
}

/// Stochastic Lanczos quadrature of `op`'s spectrum; see the module docs.
pub fn slq(op: &dyn SymOp, params: &SlqParams, monitor: &dyn Monitor) -> Result<SlqOutput> {
    let n = op.dim();
    if params.n_probes == 0 {
        return Err(Error::invalid(
            "n_probes",
            "n_probes must be at least 1, got 0",
        ));
    }
    if n == 0 {
        return Err(Error::invalid("A", "the operator has dimension 0"));
    }
    if params.n_steps == 0 || params.n_steps > n {
        return Err(Error::invalid(
            "n_steps",
            format!(
                "n_steps must be in 1..={n} (n = {n}), got {}",
                params.n_steps
            ),
        ));
    }
    // Operators accurate only to float32 get a float32 basis: the sweeps
    // that keep it semi-orthogonal are memory-bound, and rounding the stored
    // vectors to float32 adds no more than each product already does.
    let tridiagonals = if op.relative_precision() >= f64::from(f32::EPSILON) {
        run_probes::<f32>(op, params, monitor)?
    } else {
        run_probes::<f64>(op, params, monitor)?
    };
    let mut out = SlqOutput {
        n,
        nodes: Vec::with_capacity(params.n_probes),
        weights: Vec::with_capacity(params.n_probes),
        alpha: Vec::with_capacity(params.n_probes),
        beta: Vec::with_capacity(params.n_probes),
        residuals: Vec::with_capacity(params.n_probes),
    };
    for (alpha, beta) in tridiagonals {
        let k = alpha.len();
        let eig = tridiag_eig(&alpha, &beta[..k - 1])?;
        let last = beta[k - 1];
        out.weights
            .push((0..k).map(|i| eig.vector(i)[0].powi(2)).collect());
        out.residuals
            .push((0..k).map(|i| last * eig.vector(i)[k - 1].abs()).collect());
        out.nodes.push(eig.values);
        out.alpha.push(alpha);
        out.beta.push(beta);
    }
    Ok(out)
}

/// The (α, β) of every probe, run with a basis of `T` entries: on
/// [`probe_workers`] threads, each probe's work sequential; or, with one
/// worker, one probe after another with parallel vector work.
fn run_probes<T: BasisElement>(
    op: &dyn SymOp,
    params: &SlqParams,
    monitor: &dyn Monitor,
) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let n = op.dim();
    let run = |p: usize,
               parallel_ops: bool,
               check: &dyn Fn() -> Result<()>,
               storage: &mut Vec<T>|
     -> Result<(Vec<f64>, Vec<f64>)> {
        let index = params.first_probe.checked_add(p).ok_or_else(|| {
            Error::invalid("first_probe", "first_probe + n_probes overflows usize")
        })?;
        let z = probe_vector(params.seed, index, n, params.probe);
        let (alpha, beta, _) = lanczos_probe(op, z, params.n_steps, parallel_ops, check, storage)?;
        Ok((alpha, beta))
    };
    let workers = probe_workers(op, params, std::mem::size_of::<T>());
    if workers > 1 {
        return run_tasks(
            workers,
            params.n_probes,
            "slq",
            monitor,
            |p, check, storage| run(p, false, check, storage),
        );
    }
    let parallel_ops = n >= 2 * CHUNK;
    let mut storage = Vec::new();
    let mut tridiagonals = Vec::with_capacity(params.n_probes);
    for p in 0..params.n_probes {
        tridiagonals.push(run(p, parallel_ops, &|| monitor.check(), &mut storage)?);
        monitor.report("slq", p + 1, params.n_probes);
    }
    Ok(tridiagonals)
}

/// How many probes run at once: one per thread of the current pool, as long
/// as the operator allows concurrent products and their bases (`n · n_steps`
/// entries of `entry_bytes` each) fit in [`PROBE_WORKERS_MEMORY`] together.
fn probe_workers(op: &dyn SymOp, params: &SlqParams, entry_bytes: usize) -> usize {
    if !op.allows_concurrent_products() {
        return 1;
    }
    let basis_bytes = op
        .dim()
        .saturating_mul(params.n_steps)
        .saturating_mul(entry_bytes)
        .max(1);
    let affordable = (PROBE_WORKERS_MEMORY / basis_bytes).max(1);
    rayon::current_num_threads()
        .min(params.n_probes)
        .min(affordable)
        .max(1)
}

#[cfg(test)]
pub(crate) mod tests;
