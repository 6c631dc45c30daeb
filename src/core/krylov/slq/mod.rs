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
use crate::core::monitor::Monitor;
use crate::core::op::SymOp;
use crate::core::sweep::{subtract_listed_columns, sweep, BasisElement};
use crate::core::tridiag::{sym_eig, tridiag_eig};
use crate::core::workers::run_tasks;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

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

/// `out = column` widened to float64.
fn widen_into<T: BasisElement>(column: &[T], out: &mut [f64], parallel: bool) {
    let widen = |(o, c): (&mut [f64], &[T])| o.iter_mut().zip(c).for_each(|(o, &c)| *o = c.widen());
    if parallel {
        out.par_chunks_mut(CHUNK)
            .zip(column.par_chunks(CHUNK))
            .for_each(widen);
    } else {
        out.chunks_mut(CHUNK)
            .zip(column.chunks(CHUNK))
            .for_each(widen);
    }
}

/// `w = A q` for a stored basis column: handed over as it is when the
/// operator takes its element type, else through a widened copy in `wide`.
fn apply_to_column<T: BasisElement>(
    op: &dyn SymOp,
    q: &[T],
    w: &mut [f64],
    wide: &mut [f64],
    parallel: bool,
) -> Result<()> {
    if let Some(q) = T::as_f64(q) {
        return op.apply(q, w);
    }
    if let Some(result) = T::as_f32(q).and_then(|q| op.apply_f32_input(q, w)) {
        return result;
    }
    widen_into(q, wide, parallel);
    op.apply(wide, w)
}

/// Steps between measurements of the true loss of orthogonality (one sweep
/// over the basis, `Qᵀ w`) even when the estimate stays low: a guard for
/// operators whose rounding is larger or less random than
/// [`SymOp::relative_precision`] says (a Python callable that computes in
/// float32, say). The interval doubles each time a measurement confirms the
/// estimate (the sweeps grow with the basis, and with a trustworthy operator
/// they were a third of a 1M-row Laplacian's SLQ) and falls back to this
/// after one that does not.
const MEASURE_EVERY: usize = 10;

/// A measured loss above this fraction of the threshold is removed (one pass
/// of classical Gram–Schmidt); below it, the measurement replaces the estimate.
const RESTORE_FRACTION: f64 = 0.1;

/// The loss is measured once its estimate reaches this fraction of the
/// threshold: a calibrated estimate can still be a few times below the truth,
/// and a vector must not enter the basis beyond semi-orthogonality. (A loss
/// that jumps within one step, when β_k is small, shows in the estimate of
/// that same step and is measured and removed before the vector is stored.)
const LOOKAHEAD: f64 = 1.0 / 8.0;

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
struct OrthogonalityEstimate {
    previous: Vec<f64>,
    current: Vec<f64>,
    next: Vec<f64>,
    unit: f64,
    /// `ε √n`, the inner products of vectors orthogonalised in float64, or
    /// the storage's rounding when the basis is kept in float32.
    floor: f64,
    /// Semi-orthogonality, `√(precision)`: √ε for float64 products (Simon's
    /// level), √ε₃₂ for float32 ones, whose products are no more accurate than
    /// what that level guarantees for `T_m`.
    threshold: f64,
}

impl OrthogonalityEstimate {
    /// `rounding` is the stored basis vectors' own ([`BasisElement::ROUNDING`]).
    fn new(n: usize, m: usize, precision: f64, rounding: f64) -> Self {
        let precision = precision.max(f64::EPSILON);
        let floor = (f64::EPSILON * (n as f64).sqrt()).max(2.0 * rounding);
        let mut current = vec![0.0; m + 1];
        current[0] = 1.0;
        OrthogonalityEstimate {
            previous: vec![0.0; m + 1],
            current,
            next: vec![0.0; m + 1],
            unit: floor.max(precision),
            floor,
            threshold: precision.sqrt(),
        }
    }

    /// Estimates `ω_{k+1, 0..=k}` for the new vector `w / β_k`; returns their
    /// largest magnitude. `norm` bounds ‖A‖ (a Gershgorin bound on `T`).
    fn advance(&mut self, k: usize, alpha: &[f64], beta: &[f64], b: f64, norm: f64) -> f64 {
        let noise = 2.0 * self.unit * norm;
        let (previous, current) = (&self.previous, &self.current);
        let mut largest = 0.0f64;
        for i in 0..k {
            let mut t = beta[i] * current[i + 1] + (alpha[i] - alpha[k]) * current[i];
            if i > 0 {
                t += beta[i - 1] * current[i - 1];
            }
            if k > 0 {
                t -= beta[k - 1] * previous[i];
            }
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

    /// Adjusts the rounding unit to a measurement of the largest `|q_iᵀ w| / β`.
    fn calibrate(&mut self, k: usize, measured: f64, estimated: f64) {
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
        self.unit = (self.unit * factor).max(self.floor);
        for row in [&mut self.previous[..k], &mut self.current[..k]] {
            row.iter_mut().for_each(|x| *x *= factor);
        }
    }

    /// The measured inner products `q_iᵀ w / β` become the estimates.
    fn set_measured(&mut self, k: usize, measured: &[f64], b: f64) {
        let floor = self.floor;
        for (e, &h) in self.next[..=k].iter_mut().zip(measured) {
            *e = h / b + floor.copysign(h);
        }
    }

    /// The loss `|q_iᵀ w| / β` left against every column after one
    /// Gram–Schmidt pass that removed a largest loss of `largest`: the basis
    /// is itself only semi-orthogonal, so about `threshold · largest` remains.
    fn left_after_pass(&self, largest: f64) -> f64 {
        self.floor + self.threshold * largest
    }

    /// After a Gram–Schmidt pass against the `subtracted` columns (ascending)
    /// of the measured `Qᵀ w`, with `b` the new norm: those are down to
    /// [`left_after_pass`](Self::left_after_pass), the others keep their
    /// measured loss on top of it.
    fn reset(&mut self, k: usize, largest: f64, measured: &[f64], subtracted: &[usize], b: f64) {
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
    fn shift(&mut self) {
        std::mem::swap(&mut self.previous, &mut self.current);
        std::mem::swap(&mut self.current, &mut self.next);
    }
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
        let next = &mut rest[..n];
        if parallel {
            next.par_chunks_mut(CHUNK)
                .zip(w.par_chunks(CHUNK))
                .for_each(|(qc, wc)| {
                    qc.iter_mut()
                        .zip(wc)
                        .for_each(|(q, &x)| *q = T::narrow(x / b))
                });
        } else {
            next.iter_mut()
                .zip(&w)
                .for_each(|(q, &x)| *q = T::narrow(x / b));
        }
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

/// Bounds on F(t) = μ((−∞, t]) (and on F(t⁻)) from the moments of one probe.
fn moment_bracket(
    alpha: &[f64],
    beta: &[f64],
    nodes: &[f64],
    weights: &[f64],
    t: f64,
) -> Result<(f64, f64)> {
    let m = alpha.len();
    // Chebyshev–Markov–Stieltjes for the Gauss rule itself: with
    // θ_k ≤ t < θ_{k+1}, F(t) ∈ [W_{k−1}, W_{k+1}] (W_j = Σ_{i≤j} w_i).
    let below = nodes.partition_point(|&x| x <= t);
    let cumulative = |j: usize| weights[..j.min(m)].iter().sum::<f64>();
    let mut lower = cumulative(below.saturating_sub(1));
    let mut upper = cumulative(below + 1).min(1.0);
    if t.is_infinite() {
        return Ok(if t > 0.0 { (1.0, 1.0) } else { (0.0, 0.0) });
    }
    // Gauss–Radau rule with a node at t: the last diagonal entry makes t an
    // eigenvalue of the extended Jacobi matrix, α' = t − β_m p_{m−1}(t)/p_m(t),
    // evaluated through ratios r_k = p_k/p_{k−1} to avoid overflow.
    let mut ratio = 0.0f64;
    for k in 0..m {
        let previous = if k == 0 { 0.0 } else { beta[k - 1] / ratio };
        ratio = ((t - alpha[k]) - previous) / beta[k];
    }
    let last_diagonal = t - beta[m - 1] / ratio;
    let scale = alpha
        .iter()
        .chain(beta)
        .fold(t.abs(), |s, x| s.max(x.abs()));
    if last_diagonal.is_finite() && last_diagonal.abs() <= 1e6 * scale {
        let size = m + 1;
        let mut jacobi = vec![0.0; size * size];
        for k in 0..m {
            jacobi[k * size + k] = alpha[k];
            jacobi[k * size + k + 1] = beta[k];
            jacobi[(k + 1) * size + k] = beta[k];
        }
        jacobi[m * size + m] = last_diagonal;
        let eig = sym_eig(&jacobi, size)?;
        let fixed = (0..size)
            .min_by(|&a, &b| {
                (eig.values[a] - t)
                    .abs()
                    .total_cmp(&(eig.values[b] - t).abs())
            })
            .unwrap_or(0);
        let radau_lower: f64 = (0..size)
            .filter(|&i| i != fixed && eig.values[i] < t)
            .map(|i| eig.vector(i)[0].powi(2))
            .sum();
        let radau_upper = radau_lower + eig.vector(fixed)[0].powi(2);
        lower = lower.max(radau_lower);
        upper = upper.min(radau_upper);
    }
    Ok((lower, upper.max(lower)))
}

/// Bounds on μ_v(I) from the Ritz residuals (module docs, bound 2).
fn residual_bracket(
    nodes: &[f64],
    weights: &[f64],
    residuals: &[f64],
    lo: f64,
    hi: f64,
) -> (f64, f64) {
    let m = nodes.len();
    // (distance to the boundary of I, inside I, weight, |s_1i| ‖r_i‖)
    let mut entries: Vec<(f64, bool, f64, f64)> = (0..m)
        .map(|i| {
            let x = nodes[i];
            let inside = x >= lo && x <= hi;
            let distance = if inside {
                (x - lo).min(hi - x)
            } else if x < lo {
                lo - x
            } else {
                x - hi
            };
            (
                distance,
                inside,
                weights[i],
                weights[i].sqrt() * residuals[i],
            )
        })
        .collect();
    entries.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut lower, mut upper) = (0.0f64, 1.0f64);
    let (mut w_in, mut w_out, mut eps_in, mut eps_out) = (0.0, 0.0, 0.0, 0.0);
    for &(distance, inside, weight, coupling) in &entries {
        if distance.is_nan() || distance <= 0.0 {
            break;
        }
        if inside {
            w_in += weight;
            eps_in += coupling / distance;
        } else {
            w_out += weight;
            eps_out += coupling / distance;
        }
        let uncertain = (1.0 - w_in - w_out).max(0.0);
        lower = lower.max(1.0 - (eps_in + (uncertain + w_out).sqrt()).powi(2));
        upper = upper.min((eps_out + (w_in + uncertain).sqrt()).powi(2));
    }
    (lower.max(0.0), upper.min(1.0))
}

/// The guaranteed bracket `[lower, upper] ∋ μ_v([lo, hi])` of each probe.
pub fn probe_brackets(out: &SlqOutput, lo: f64, hi: f64) -> Result<Vec<(f64, f64)>> {
    let n_probes = out.nodes.len();
    let mut brackets = Vec::with_capacity(n_probes);
    for p in 0..n_probes {
        let (nodes, weights) = (&out.nodes[p], &out.weights[p]);
        let exact = *out.beta[p].last().unwrap_or(&0.0) == 0.0;
        if exact {
            let inside: f64 = nodes
                .iter()
                .zip(weights)
                .filter(|(&x, _)| x >= lo && x <= hi)
                .map(|(_, &w)| w)
                .sum();
            brackets.push((inside, inside));
            continue;
        }
        let (alpha, beta) = (&out.alpha[p], &out.beta[p]);
        let (hi_lower, hi_upper) = moment_bracket(alpha, beta, nodes, weights, hi)?;
        let (lo_lower, lo_upper) = moment_bracket(alpha, beta, nodes, weights, lo)?;
        let (res_lower, res_upper) = residual_bracket(nodes, weights, &out.residuals[p], lo, hi);
        let lower = (hi_lower - lo_upper).max(0.0).max(res_lower);
        let upper = (hi_upper - lo_lower).min(1.0).min(res_upper);
        // An empty intersection can only come from rounding: keep its middle.
        let (lower, upper) = if lower <= upper {
            (lower, upper)
        } else {
            (0.5 * (lower + upper), 0.5 * (lower + upper))
        };
        brackets.push((lower, upper));
    }
    Ok(brackets)
}

/// The fraction of eigenvalues in `[lo, hi]` (either end may be infinite;
/// whether an end is open or closed does not change the estimate or its bound).
pub fn count_fraction(out: &SlqOutput, lo: f64, hi: f64) -> Result<FractionEstimate> {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::invalid(
            "interval",
            format!("the interval must satisfy lo <= hi without NaN, got [{lo}, {hi}]"),
        ));
    }
    let n_probes = out.nodes.len();
    if n_probes == 0 {
        return Err(Error::invalid("slq output", "it holds no probes"));
    }
    let brackets = probe_brackets(out, lo, hi)?;
    let count = n_probes as f64;
    let mid: Vec<f64> = brackets.iter().map(|(l, u)| 0.5 * (l + u)).collect();
    let value = mid.iter().sum::<f64>() / count;
    let halfwidth = brackets.iter().map(|(l, u)| 0.5 * (u - l)).sum::<f64>() / count;
    // A single probe cannot estimate its own spread: use the largest standard
    // deviation a quantity in [0, 1] can have.
    let sampling = if n_probes > 1 {
        let var = mid.iter().map(|x| (x - value).powi(2)).sum::<f64>() / (count - 1.0);
        (var / count).sqrt()
    } else {
        0.5
    };
    Ok(FractionEstimate {
        value,
        stderr: (sampling * sampling + halfwidth * halfwidth).sqrt(),
        sampling_stderr: sampling,
        quadrature_halfwidth: halfwidth,
        lower: brackets.iter().map(|b| b.0).sum::<f64>() / count,
        upper: brackets.iter().map(|b| b.1).sum::<f64>() / count,
    })
}

/// The Gaussian-smoothed spectral density on `grid`: the probes' average of
/// `Σ_i w_i N(x; θ_i, σ²)`, a density that integrates to 1 over the real line.
pub fn density(out: &SlqOutput, grid: &[f64], sigma: f64) -> Result<Vec<f64>> {
    if !(sigma > 0.0 && sigma.is_finite()) {
        return Err(Error::invalid(
            "sigma",
            format!("sigma must be positive and finite, got {sigma}"),
        ));
    }
    crate::core::error::check_finite("grid", grid)?;
    let n_probes = out.nodes.len().max(1) as f64;
    let norm = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt() * n_probes);
    Ok(grid
        .par_iter()
        .map(|&x| {
            let mut total = 0.0;
            for (nodes, weights) in out.nodes.iter().zip(&out.weights) {
                for (&theta, &w) in nodes.iter().zip(weights) {
                    let u = (x - theta) / sigma;
                    total += w * (-0.5 * u * u).exp();
                }
            }
            total * norm
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::monitor::Silent;

    /// `c_0 L_{d0} ⊗ I ⊗ I + c_1 I ⊗ L_{d1} ⊗ I + c_2 I ⊗ I ⊗ L_{d2} − shift·I`
    /// with Dirichlet 1D Laplacians L_d = tridiag(−1, 2, −1), applied matrix-free.
    pub(crate) struct Laplacian3 {
        pub dims: [usize; 3],
        pub coef: [f64; 3],
        pub shift: f64,
    }

    impl Laplacian3 {
        pub fn eigenvalues(&self) -> Vec<f64> {
            let one_d = |d: usize, c: f64| -> Vec<f64> {
                (1..=d)
                    .map(|a| {
                        c * (2.0 - 2.0 * (std::f64::consts::PI * a as f64 / (d + 1) as f64).cos())
                    })
                    .collect()
            };
            let (e0, e1, e2) = (
                one_d(self.dims[0], self.coef[0]),
                one_d(self.dims[1], self.coef[1]),
                one_d(self.dims[2], self.coef[2]),
            );
            let mut out = Vec::with_capacity(e0.len() * e1.len() * e2.len());
            for a in &e0 {
                for b in &e1 {
                    for c in &e2 {
                        out.push(a + b + c - self.shift);
                    }
                }
            }
            out
        }

        /// Coefficients of x in the eigenbasis (tensor products of sine vectors),
        /// in the order of `eigenvalues`.
        pub fn to_eigenbasis(&self, x: &[f64]) -> Vec<f64> {
            let [d0, d1, d2] = self.dims;
            let sine = |d: usize| -> Vec<f64> {
                let s = (2.0 / (d + 1) as f64).sqrt();
                let mut m = vec![0.0; d * d];
                for a in 0..d {
                    for i in 0..d {
                        m[a * d + i] = s
                            * (std::f64::consts::PI * ((a + 1) * (i + 1)) as f64 / (d + 1) as f64)
                                .sin();
                    }
                }
                m
            };
            let (s0, s1, s2) = (sine(d0), sine(d1), sine(d2));
            let mut t = vec![0.0; x.len()];
            for i in 0..d0 {
                for j in 0..d1 {
                    for c in 0..d2 {
                        t[(i * d1 + j) * d2 + c] = (0..d2)
                            .map(|k| s2[c * d2 + k] * x[(i * d1 + j) * d2 + k])
                            .sum();
                    }
                }
            }
            let mut u = vec![0.0; x.len()];
            for i in 0..d0 {
                for b in 0..d1 {
                    for c in 0..d2 {
                        u[(i * d1 + b) * d2 + c] = (0..d1)
                            .map(|j| s1[b * d1 + j] * t[(i * d1 + j) * d2 + c])
                            .sum();
                    }
                }
            }
            let mut v = vec![0.0; x.len()];
            for a in 0..d0 {
                for b in 0..d1 {
                    for c in 0..d2 {
                        v[(a * d1 + b) * d2 + c] = (0..d0)
                            .map(|i| s0[a * d0 + i] * u[(i * d1 + b) * d2 + c])
                            .sum();
                    }
                }
            }
            v
        }
    }

    impl SymOp for Laplacian3 {
        fn dim(&self) -> usize {
            self.dims.iter().product()
        }
        fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
            let [d0, d1, d2] = self.dims;
            let [c0, c1, c2] = self.coef;
            let diagonal = 2.0 * (c0 + c1 + c2) - self.shift;
            let plane = d1 * d2;
            y.par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
                for j in 0..d1 {
                    for k in 0..d2 {
                        let idx = (i * d1 + j) * d2 + k;
                        let mut v = diagonal * x[idx];
                        if i > 0 {
                            v -= c0 * x[idx - plane];
                        }
                        if i + 1 < d0 {
                            v -= c0 * x[idx + plane];
                        }
                        if j > 0 {
                            v -= c1 * x[idx - d2];
                        }
                        if j + 1 < d1 {
                            v -= c1 * x[idx + d2];
                        }
                        if k > 0 {
                            v -= c2 * x[idx - 1];
                        }
                        if k + 1 < d2 {
                            v -= c2 * x[idx + 1];
                        }
                        out[j * d2 + k] = v;
                    }
                }
            });
            Ok(())
        }
    }

    pub(crate) struct Diagonal(pub Vec<f64>);

    impl SymOp for Diagonal {
        fn dim(&self) -> usize {
            self.0.len()
        }
        fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
            for ((yi, xi), d) in y.iter_mut().zip(x).zip(&self.0) {
                *yi = d * xi;
            }
            Ok(())
        }
    }

    fn params(n_probes: usize, n_steps: usize, seed: u64) -> SlqParams {
        SlqParams {
            n_probes,
            n_steps,
            seed,
            probe: ProbeKind::Rademacher,
            first_probe: 0,
        }
    }

    /// The naive estimate: mean Gauss weight inside, with the probes' sample stderr.
    fn naive(out: &SlqOutput, lo: f64, hi: f64) -> (f64, f64) {
        let per: Vec<f64> = out
            .nodes
            .iter()
            .zip(&out.weights)
            .map(|(x, w)| {
                x.iter()
                    .zip(w)
                    .filter(|(&t, _)| t >= lo && t <= hi)
                    .map(|(_, &w)| w)
                    .sum()
            })
            .collect();
        let c = per.len() as f64;
        let mean = per.iter().sum::<f64>() / c;
        let var = per.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (c - 1.0);
        (mean, (var / c).sqrt())
    }

    fn fraction(values: &[f64], lo: f64, hi: f64) -> f64 {
        values.iter().filter(|&&x| x >= lo && x <= hi).count() as f64 / values.len() as f64
    }

    /// 60 % zeros (±1e-10 noise), 25 % positive, 15 % negative.
    fn planted_spectrum(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (0..n)
            .map(|i| {
                let f = i as f64 / n as f64;
                if f < 0.6 {
                    (2.0 * unit() - 1.0) * 1e-10
                } else if f < 0.85 {
                    0.1 + unit().powi(2)
                } else {
                    -0.1 - 0.5 * unit()
                }
            })
            .collect()
    }

    #[test]
    fn full_krylov_space_gives_exact_quadrature() {
        let diag: Vec<f64> = (0..40).map(|i| (i as f64 - 13.5) * 0.37).collect();
        let op = Diagonal(diag.clone());
        let out = slq(&op, &params(3, 40, 7), &Silent).unwrap();
        for p in 0..3 {
            let z = probe_vector(7, p, 40, ProbeKind::Rademacher);
            let zz: f64 = z.iter().map(|x| x * x).sum();
            let w: &Vec<f64> = &out.weights[p];
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            for power in 1..6 {
                let exact: f64 = z
                    .iter()
                    .zip(&diag)
                    .map(|(zi, d)| zi * zi * d.powi(power))
                    .sum::<f64>()
                    / zz;
                let quad: f64 = out.nodes[p]
                    .iter()
                    .zip(w)
                    .map(|(x, w)| w * x.powi(power))
                    .sum();
                assert!(
                    (exact - quad).abs() < 1e-10 * 10f64.powi(power),
                    "{exact} {quad}"
                );
            }
            let mut nodes = out.nodes[p].clone();
            nodes.sort_by(f64::total_cmp);
            for (a, b) in nodes.iter().zip(&diag) {
                assert!((a - b).abs() < 1e-10);
            }
        }
        // Exact brackets collapse.
        let e = count_fraction(&out, 0.0, f64::INFINITY).unwrap();
        assert!((e.value - fraction(&diag, 0.0, f64::INFINITY)).abs() < 1e-12 && e.stderr < 1e-12);
    }

    #[test]
    fn breakdown_stops_early_and_is_exact() {
        // Three distinct eigenvalues: the Krylov space has dimension 3.
        let diag: Vec<f64> = (0..300).map(|i| [-1.0, 0.5, 2.0][i % 3]).collect();
        let out = slq(&Diagonal(diag), &params(4, 20, 1), &Silent).unwrap();
        for p in 0..4 {
            assert_eq!(out.nodes[p].len(), 3);
            assert_eq!(*out.beta[p].last().unwrap(), 0.0);
        }
        let e = count_fraction(&out, 0.0, f64::INFINITY).unwrap();
        assert!((e.value - 2.0 / 3.0).abs() < 1e-12, "{e:?}");
    }

    /// `n` eigenvalues spread over [0, 1) with the first and last replaced by
    /// the isolated outliers −5 and 8.
    /// One probe's (α, β, corrections) with a fresh basis of `T`, never stopped.
    fn probe<T: BasisElement>(
        op: &dyn SymOp,
        z: &[f64],
        steps: usize,
        parallel: bool,
    ) -> (Vec<f64>, Vec<f64>, usize) {
        lanczos_probe(
            op,
            z.to_vec(),
            steps,
            parallel,
            &|| Ok(()),
            &mut Vec::<T>::new(),
        )
        .unwrap()
    }

    /// The largest `|q_iᵀ q_j|`, i ≠ j, over the first `k` stored basis
    /// vectors of a probe: what partial reorthogonalisation must keep below √precision.
    fn largest_inner_product<T: BasisElement>(basis: &[T], n: usize, k: usize) -> f64 {
        let column = |i: usize| basis[i * n..(i + 1) * n].iter().map(|x| x.widen());
        let mut largest = 0.0f64;
        for i in 0..k {
            for j in 0..i {
                let d: f64 = column(i).zip(column(j)).map(|(a, b)| a * b).sum();
                largest = largest.max(d.abs());
            }
        }
        largest
    }

    #[test]
    fn stored_basis_stays_semi_orthogonal() {
        // Corrections subtract only the columns that carry the loss; whatever
        // they leave, the stored vectors must stay within √precision of
        // orthogonal (Simon's condition behind the error bars).
        fn check<T: BasisElement>(op: &dyn SymOp, label: &str) {
            let n = op.dim();
            let z = probe_vector(5, 0, n, ProbeKind::Rademacher);
            let steps = 150;
            let mut basis = Vec::<T>::new();
            let (alpha, _, corrections) =
                lanczos_probe(op, z, steps, false, &|| Ok(()), &mut basis).unwrap();
            assert_eq!(alpha.len(), steps, "{label}");
            assert!(corrections > 0, "{label}: nothing to correct");
            let largest = largest_inner_product(&basis, n, steps);
            let bound = op.relative_precision().sqrt();
            assert!(
                largest <= bound,
                "{label}: |q_iᵀq_j| up to {largest:e} > {bound:e}"
            );
        }
        let n = 3000;
        check::<f64>(&Diagonal(spectrum_with_outliers(n)), "float64 diagonal");
        let float32_like = Perturbed {
            diag: spectrum_with_outliers(n),
            delta: 8e-6,
            precision: f32::EPSILON as f64,
        };
        check::<f32>(&float32_like, "float32-like operator, float32 basis");
    }

    fn spectrum_with_outliers(n: usize) -> Vec<f64> {
        let mut diag: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        diag[0] = -5.0;
        diag[n - 1] = 8.0;
        diag
    }

    /// The Gauss rule of a probe `z` on [`spectrum_with_outliers`] has exactly
    /// one node near each outlier (no ghost copies), weighted `z_i² / ‖z‖²` to
    /// within `weight_tolerance`; returns the rule's eigen-decomposition.
    fn assert_no_ghosts(
        alpha: &[f64],
        beta: &[f64],
        z: &[f64],
        weight_tolerance: f64,
        context: &str,
    ) -> crate::core::tridiag::SymEig {
        let (n, steps) = (z.len(), alpha.len());
        let zz: f64 = z.iter().map(|x| x * x).sum();
        let eig = tridiag_eig(alpha, &beta[..steps - 1]).unwrap();
        for (outlier, index) in [(-5.0, 0), (8.0, n - 1)] {
            let near: Vec<usize> = (0..steps)
                .filter(|&i| (eig.values[i] - outlier).abs() < 0.5)
                .collect();
            assert_eq!(
                near.len(),
                1,
                "ghost copies of {outlier} ({context}): {:?}",
                eig.values
            );
            let weight = eig.vector(near[0])[0].powi(2);
            assert!((weight - z[index].powi(2) / zz).abs() < weight_tolerance);
        }
        eig
    }

    #[test]
    fn partial_reorthogonalization_prevents_ghosts_and_skips_steps() {
        // Two isolated outliers converge within a few steps; afterwards plain
        // Lanczos would lose orthogonality against them and produce "ghost"
        // copies that steal weight from the bulk.
        let n = 3000;
        let diag = spectrum_with_outliers(n);
        let op = Diagonal(diag.clone());
        let z = probe_vector(11, 0, n, ProbeKind::Rademacher);
        let zz: f64 = z.iter().map(|x| x * x).sum();
        let steps = 150;
        let (alpha, beta, reorthogonalized) = probe::<f64>(&op, &z, steps, false);
        assert_eq!(alpha.len(), steps);
        assert!(
            reorthogonalized > 0 && reorthogonalized < steps / 2,
            "{reorthogonalized} of {steps} steps reorthogonalised"
        );
        let eig = assert_no_ghosts(&alpha, &beta, &z, 1e-12, "float64 diagonal");
        // The quadrature's low moments are those of the probe's measure.
        for power in 1..8 {
            let exact: f64 = z
                .iter()
                .zip(&diag)
                .map(|(zi, d)| zi * zi * d.powi(power))
                .sum::<f64>()
                / zz;
            let quad: f64 = (0..steps)
                .map(|i| eig.vector(i)[0].powi(2) * eig.values[i].powi(power))
                .sum();
            assert!(
                (exact - quad).abs() < 1e-11 * 8f64.powi(power),
                "{exact} {quad}"
            );
        }
    }

    /// `diag(d) + δ·S` with S the cyclic shift: a nonsymmetric perturbation
    /// like the rounding of a float32 product, declaring `precision`.
    struct Perturbed {
        diag: Vec<f64>,
        delta: f64,
        precision: f64,
    }

    impl SymOp for Perturbed {
        fn dim(&self) -> usize {
            self.diag.len()
        }
        fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
            let n = x.len();
            for i in 0..n {
                y[i] = self.diag[i] * x[i] + self.delta * x[(i + 1) % n];
            }
            Ok(())
        }
        fn relative_precision(&self) -> f64 {
            self.precision
        }
    }

    #[test]
    fn operators_less_accurate_than_float64_keep_the_full_recurrence() {
        // A float32-like operator (asymmetry 1e-6 relative), declared as such
        // (with the float32 basis `slq` then uses, and with a float64 one) and
        // passing itself off as float64: every way, the basis must stay
        // semi-orthogonal (no false breakdown, no ghosts).
        fn check<T: BasisElement>(precision: f64, label: &str) {
            let n = 3000;
            let op = Perturbed {
                diag: spectrum_with_outliers(n),
                delta: 8e-6,
                precision,
            };
            let z = probe_vector(5, 0, n, ProbeKind::Rademacher);
            let steps = 150;
            let (alpha, beta, reorthogonalized) = probe::<T>(&op, &z, steps, false);
            assert_eq!(alpha.len(), steps, "premature breakdown: {label}");
            assert!(reorthogonalized < steps, "{reorthogonalized}: {label}");
            assert_no_ghosts(&alpha, &beta, &z, 1e-6, label);
        }
        check::<f32>(f32::EPSILON as f64, "float32 precision, float32 basis");
        check::<f64>(f32::EPSILON as f64, "float32 precision, float64 basis");
        check::<f64>(f64::EPSILON, "float32 passing as float64");
    }

    #[test]
    fn probe_workers_and_one_probe_at_a_time_agree_bitwise() {
        let op = Laplacian3 {
            dims: [15, 16, 17],
            coef: [1.0, 0.8, 0.6],
            shift: 3.0,
        };
        let p = params(5, 30, 7);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| (probe_workers(&op, &p, 8), slq(&op, &p, &Silent).unwrap()))
        };
        let ((one_worker, alone), (two_workers, side_by_side)) = (run(1), run(2));
        assert_eq!((one_worker, two_workers), (1, 2));
        assert_eq!(alone.alpha, side_by_side.alpha);
        assert_eq!(alone.beta, side_by_side.beta);
    }

    #[test]
    fn float32_columns_handed_over_as_they_are_give_the_same_run() {
        // A float32 network's Hessian takes the float32 basis columns as they
        // are; hiding that path (the operator then gets widened copies) must
        // change no bit of the run.
        use crate::core::mlp::{Activation, Loss, Mlp, Targets};
        struct WidenedOnly<'a>(&'a dyn SymOp);
        impl SymOp for WidenedOnly<'_> {
            fn dim(&self) -> usize {
                self.0.dim()
            }
            fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
                self.0.apply(x, y)
            }
            fn relative_precision(&self) -> f64 {
                self.0.relative_precision()
            }
        }
        let net = Mlp::new(
            vec![6, 40, 30, 3],
            Activation::Tanh,
            Loss::CrossEntropy,
            true,
        )
        .unwrap();
        let weights: Vec<f32> = net.init(4).iter().map(|&p| p as f32).collect();
        let x: Vec<f32> = (0..50 * 6)
            .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let labels: Vec<i64> = (0..50).map(|i| (i % 3) as i64).collect();
        let op = net
            .hessian_op(&weights, &x, Targets::Labels(&labels))
            .unwrap();
        let mut probe = vec![0.0f32; 10];
        assert!(op
            .apply_f32_input(&probe, &mut [0.0; 10])
            .is_some_and(|r| r.is_err()));
        probe.resize(op.dim(), 1.0);
        assert!(op
            .apply_f32_input(&probe, &mut vec![0.0; op.dim()])
            .is_some());
        let p = params(3, 40, 11);
        let direct = slq(&op, &p, &Silent).unwrap();
        let widened = slq(&WidenedOnly(&op), &p, &Silent).unwrap();
        assert_eq!(direct.alpha, widened.alpha);
        assert_eq!(direct.beta, widened.beta);
    }

    #[test]
    fn sequential_and_parallel_vector_work_agree_bitwise() {
        let op = Laplacian3 {
            dims: [21, 22, 23],
            coef: [1.0, 0.8, 0.6],
            shift: 3.0,
        };
        let z = probe_vector(3, 0, op.dim(), ProbeKind::Gaussian);
        assert_eq!(
            probe::<f64>(&op, &z, 60, false),
            probe::<f64>(&op, &z, 60, true)
        );
        assert_eq!(
            probe::<f32>(&op, &z, 60, false),
            probe::<f32>(&op, &z, 60, true)
        );
        let again = slq(&op, &params(2, 10, 5), &Silent).unwrap();
        let once_more = slq(&op, &params(2, 10, 5), &Silent).unwrap();
        assert_eq!(again.alpha, once_more.alpha);
    }

    #[test]
    fn probe_ranges_concatenate_to_the_whole_run() {
        let op = Laplacian3 {
            dims: [9, 10, 11],
            coef: [1.0, 0.8, 0.6],
            shift: 2.0,
        };
        let whole = slq(&op, &params(5, 25, 8), &Silent).unwrap();
        let mut parts = Vec::new();
        for (first, count) in [(0, 2), (2, 1), (3, 2)] {
            let p = SlqParams {
                first_probe: first,
                ..params(count, 25, 8)
            };
            parts.push(slq(&op, &p, &Silent).unwrap());
        }
        let joined: Vec<Vec<f64>> = parts.iter().flat_map(|o| o.alpha.clone()).collect();
        assert_eq!(joined, whole.alpha);
        let joined: Vec<Vec<f64>> = parts.iter().flat_map(|o| o.nodes.clone()).collect();
        assert_eq!(joined, whole.nodes);
    }

    #[test]
    fn invalid_arguments_name_themselves() {
        let op = Diagonal(vec![1.0; 5]);
        let e = slq(&op, &params(0, 3, 0), &Silent).unwrap_err();
        assert!(e.to_string().contains("n_probes"), "{e}");
        let e = slq(&op, &params(1, 6, 0), &Silent).unwrap_err();
        assert!(
            e.to_string().contains("n_steps") && e.to_string().contains("got 6"),
            "{e}"
        );
        let e = slq(&op, &params(1, 0, 0), &Silent).unwrap_err();
        assert!(e.to_string().contains("n_steps"), "{e}");
        let out = slq(&op, &params(2, 3, 0), &Silent).unwrap();
        assert!(count_fraction(&out, 1.0, 0.0).is_err());
        assert!(count_fraction(&out, f64::NAN, 0.0).is_err());
        assert!(density(&out, &[0.0], 0.0).is_err());
    }

    #[test]
    fn every_probe_bracket_contains_the_exact_probe_value() {
        let op = Laplacian3 {
            dims: [12, 14, 16],
            coef: [1.0, 0.7, 0.45],
            shift: 3.1,
        };
        let eigenvalues = op.eigenvalues();
        for (kind, steps) in [
            (ProbeKind::Rademacher, 40),
            (ProbeKind::Gaussian, 15),
            (ProbeKind::Rademacher, 90),
        ] {
            let p = SlqParams {
                n_probes: 6,
                n_steps: steps,
                seed: 11,
                probe: kind,
                first_probe: 0,
            };
            let out = slq(&op, &p, &Silent).unwrap();
            for (lo, hi) in [
                (1e-9, f64::INFINITY),
                (-0.5, 0.7),
                (f64::NEG_INFINITY, -2.0),
                (0.0, 0.0),
            ] {
                let brackets = probe_brackets(&out, lo, hi).unwrap();
                for (probe, &(lower, upper)) in brackets.iter().enumerate() {
                    let z = probe_vector(11, probe, op.dim(), kind);
                    let c = op.to_eigenbasis(&z);
                    let total: f64 = c.iter().map(|x| x * x).sum();
                    let exact: f64 = c
                        .iter()
                        .zip(&eigenvalues)
                        .filter(|(_, &l)| l >= lo && l <= hi)
                        .map(|(x, _)| x * x)
                        .sum::<f64>()
                        / total;
                    assert!(
                        exact >= lower - 1e-9 && exact <= upper + 1e-9,
                        "steps {steps} [{lo}, {hi}] probe {probe}: {exact} not in [{lower}, {upper}]"
                    );
                }
            }
        }
        // And on a planted spectrum with a large cluster at zero.
        let diag = planted_spectrum(3000, 4);
        let out = slq(&Diagonal(diag.clone()), &params(8, 60, 2), &Silent).unwrap();
        for (lo, hi) in [
            (1e-6, f64::INFINITY),
            (-1e-6, 1e-6),
            (f64::NEG_INFINITY, -1e-6),
            (1e-12, f64::INFINITY),
        ] {
            for (probe, &(lower, upper)) in probe_brackets(&out, lo, hi).unwrap().iter().enumerate()
            {
                let z = probe_vector(2, probe, diag.len(), ProbeKind::Rademacher);
                let total: f64 = z.iter().map(|x| x * x).sum();
                let exact = z
                    .iter()
                    .zip(&diag)
                    .filter(|(_, &l)| l >= lo && l <= hi)
                    .map(|(x, _)| x * x)
                    .sum::<f64>()
                    / total;
                assert!(
                    exact >= lower - 1e-9 && exact <= upper + 1e-9,
                    "{exact} not in [{lower}, {upper}]"
                );
            }
        }
    }

    /// Seeds per coverage experiment: 20 by default, more through
    /// HESSX_COVERAGE_SEEDS for the full study.
    fn coverage_seeds() -> u64 {
        std::env::var("HESSX_COVERAGE_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20)
    }

    #[derive(Default)]
    struct Coverage {
        covered: usize,
        naive_covered: usize,
        runs: usize,
        mean_stderr: f64,
        mean_abs_error: f64,
        mean_naive_stderr: f64,
        mean_naive_abs_error: f64,
        max_stderr: f64,
    }

    /// One SLQ run per seed, every interval judged on it.
    fn coverage(
        op: &dyn SymOp,
        intervals: &[(f64, f64, f64)],
        seeds: u64,
        probes: usize,
        steps: usize,
    ) -> Vec<Coverage> {
        let mut all: Vec<Coverage> = intervals.iter().map(|_| Coverage::default()).collect();
        for seed in 0..seeds {
            let out = slq(op, &params(probes, steps, 1000 + seed), &Silent).unwrap();
            for (c, &(lo, hi, truth)) in all.iter_mut().zip(intervals) {
                let e = count_fraction(&out, lo, hi).unwrap();
                let (nv, ns) = naive(&out, lo, hi);
                let s = seeds as f64;
                c.runs += 1;
                c.covered += usize::from((e.value - truth).abs() <= 2.0 * e.stderr);
                c.naive_covered += usize::from((nv - truth).abs() <= 2.0 * ns);
                c.mean_stderr += e.stderr / s;
                c.max_stderr = c.max_stderr.max(e.stderr);
                c.mean_abs_error += (e.value - truth).abs() / s;
                c.mean_naive_stderr += ns / s;
                c.mean_naive_abs_error += (nv - truth).abs() / s;
            }
        }
        all
    }

    fn report(name: &str, c: &Coverage) {
        println!(
            "{name}: covered {}/{} (naive {}/{}), mean stderr {:.5} (max {:.5}), mean |err| {:.5}; naive stderr {:.5}, naive |err| {:.5}",
            c.covered, c.runs, c.naive_covered, c.runs, c.mean_stderr, c.max_stderr, c.mean_abs_error, c.mean_naive_stderr, c.mean_naive_abs_error
        );
    }

    #[test]
    fn stderr_covers_truth_on_anisotropic_laplacian() {
        let op = Laplacian3 {
            dims: [20, 20, 20],
            coef: [1.0, 0.7, 0.45],
            shift: 3.1,
        };
        let eigenvalues = op.eigenvalues();
        let intervals = [
            (
                1e-8,
                f64::INFINITY,
                fraction(&eigenvalues, 1e-8, f64::INFINITY),
            ),
            (-0.3, 0.3, fraction(&eigenvalues, -0.3, 0.3)),
        ];
        let results = coverage(&op, &intervals, coverage_seeds(), 30, 80);
        for (c, name) in results.iter().zip(["positive", "in [-0.3, 0.3]"]) {
            report(&format!("laplacian 20^3 {name}, 30x80"), c);
            assert!(c.covered * 10 >= c.runs * 9);
            assert!(c.max_stderr < 0.05);
        }
    }

    #[test]
    fn stderr_covers_truth_on_planted_zero_cluster() {
        // The cluster's Ritz value converges to ~1e-10 but its residual only to
        // ~1e-5 in 80 steps, so no moment-based bound can place it relative to a
        // threshold of 1e-6 (the bracket there is honestly [0.25, 0.84]); from
        // 1e-4 on the residual bound certifies it.
        let tol = 1e-3;
        let seeds = coverage_seeds();
        for kind in [ProbeKind::Rademacher, ProbeKind::Gaussian] {
            let diag = planted_spectrum(4000, 9);
            let intervals = [
                (tol, f64::INFINITY, fraction(&diag, tol, f64::INFINITY)),
                (-tol, tol, fraction(&diag, -tol, tol)),
                (
                    f64::NEG_INFINITY,
                    -tol,
                    fraction(&diag, f64::NEG_INFINITY, -tol),
                ),
            ];
            let op = Diagonal(diag);
            let mut results = Vec::new();
            for seed in 0..seeds {
                let p = SlqParams {
                    n_probes: 30,
                    n_steps: 80,
                    seed,
                    probe: kind,
                    first_probe: 0,
                };
                let out = slq(&op, &p, &Silent).unwrap();
                results.push(intervals.map(|(lo, hi, _)| {
                    (count_fraction(&out, lo, hi).unwrap(), naive(&out, lo, hi))
                }));
            }
            for (i, name) in ["positive", "near zero", "negative"].iter().enumerate() {
                let truth = intervals[i].2;
                let covered = results
                    .iter()
                    .filter(|r| (r[i].0.value - truth).abs() <= 2.0 * r[i].0.stderr)
                    .count();
                let naive_covered = results
                    .iter()
                    .filter(|r| (r[i].1 .0 - truth).abs() <= 2.0 * r[i].1 .1)
                    .count();
                let runs = seeds as f64;
                let mean_stderr = results.iter().map(|r| r[i].0.stderr).sum::<f64>() / runs;
                let max_stderr = results.iter().map(|r| r[i].0.stderr).fold(0.0, f64::max);
                let err = results
                    .iter()
                    .map(|r| (r[i].0.value - truth).abs())
                    .sum::<f64>()
                    / runs;
                let naive_err = results
                    .iter()
                    .map(|r| (r[i].1 .0 - truth).abs())
                    .sum::<f64>()
                    / runs;
                let naive_stderr = results.iter().map(|r| r[i].1 .1).sum::<f64>() / runs;
                println!(
                    "planted {kind:?} {name} (truth {truth:.4}), 30x80: covered {covered}/{seeds} (naive {naive_covered}/{seeds}), stderr {mean_stderr:.5} (max {max_stderr:.5}), |err| {err:.5}; naive stderr {naive_stderr:.5}, |err| {naive_err:.5}"
                );
                // Gaussian probes leave only sampling error here (the brackets
                // are ~1e-5 wide), whose 2σ coverage with 30 probes is ~94 % in
                // expectation (90-95 % over 100 seeds); 20 seeds need slack.
                let required = if kind == ProbeKind::Gaussian { 8 } else { 9 };
                assert!(covered * 10 >= seeds as usize * required);
                assert!(max_stderr < 0.05);
            }
        }
    }

    /// The issue's example of a naive error bar that lies (27,000 rows,
    /// indefinite, 30 probes x 100 steps): the naive probe stderr must miss the
    /// truth while the bracketed one covers it.
    #[test]
    fn known_failure_30_cubed() {
        let op = Laplacian3 {
            dims: [30, 30, 30],
            coef: [1.0, 1.0, 1.0],
            shift: 5.0,
        };
        let truth = fraction(&op.eigenvalues(), 1e-8, f64::INFINITY);
        let start = std::time::Instant::now();
        let out = slq(&op, &params(30, 100, 0), &Silent).unwrap();
        let elapsed = start.elapsed();
        let e = count_fraction(&out, 1e-8, f64::INFINITY).unwrap();
        let (nv, ns) = naive(&out, 1e-8, f64::INFINITY);
        println!(
            "30^3 shift 5, 30x100 in {elapsed:?}: truth {truth:.5}; naive {nv:.5} ± {ns:.5} (err {:.5}); bracketed {:.5} ± {:.5} (sampling {:.5}, quadrature {:.5}, err {:.5})",
            (nv - truth).abs(),
            e.value,
            e.stderr,
            e.sampling_stderr,
            e.quadrature_halfwidth,
            (e.value - truth).abs()
        );
        assert!((e.value - truth).abs() <= 2.0 * e.stderr);
        assert!(
            (nv - truth).abs() > 3.0 * ns,
            "the naive bar no longer fails here"
        );
    }

    #[test]
    fn density_integrates_to_one() {
        let op = Laplacian3 {
            dims: [8, 9, 10],
            coef: [1.0, 0.5, 0.25],
            shift: 1.0,
        };
        let out = slq(&op, &params(5, 30, 3), &Silent).unwrap();
        let grid: Vec<f64> = (0..4001).map(|i| -4.0 + 12.0 * i as f64 / 4000.0).collect();
        let d = density(&out, &grid, 0.1).unwrap();
        let h = 12.0 / 4000.0;
        let integral: f64 = d.iter().sum::<f64>() * h;
        assert!((integral - 1.0).abs() < 1e-6, "{integral}");
    }
}
