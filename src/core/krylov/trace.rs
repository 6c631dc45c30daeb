//! Stochastic trace estimation.
//!
//! - Hutchinson (1989): `tr A ≈ (1/N) Σ_i z_iᵀ A z_i` with Rademacher `z_i`;
//!   unbiased, variance `2 (‖A‖_F² − Σ_i A_ii²) / N`; the standard error is the
//!   probes' sample standard deviation over √N. Probe i draws from its own
//!   random stream, so probe ranges can be computed apart (other machines)
//!   and concatenated ([`hutchinson_samples`]).
//! - Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021): with a budget of m
//!   products, k = ⌊m/3⌋ go to a sketch `Q = qr(A S)` (S Rademacher, n x k)
//!   whose top-eigenspace part is traced exactly, `tr(QᵀAQ)` (k more
//!   products), and the remaining r = m − 2k to Hutchinson on the deflated
//!   `(I − QQᵀ) A (I − QQᵀ)`. The error falls like 1/m instead of 1/√m when
//!   the spectrum decays, and vanishes when rank A ≤ k (then range A ⊆ range Q).
//!   The standard error comes from the deflated Hutchinson sample. A budget of
//!   m ≥ n products is spent on the unit vectors instead, giving the exact trace.
//!
//! Products go through `apply_block` in blocks of `BLOCK` vectors (a sparse
//! kernel streams the matrix once per block); the monitor is checked between
//! blocks. With a single residual probe the sampling error cannot be
//! estimated and the standard error is reported as infinite.

use crate::core::error::{Error, Result};
use crate::core::krylov::slq::{fill_probe, probe_rng, ProbeKind};
use crate::core::monitor::Monitor;
use crate::core::op::SymOp;
use faer::Mat;

/// Vectors per `apply_block` call.
const BLOCK: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEstimate {
    pub estimate: f64,
    pub stderr: f64,
}

fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    if values.len() < 2 {
        return (mean, f64::INFINITY);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0);
    (mean, (var / count).sqrt())
}

/// `Y = A X` for the row-major `n x ncols` block X, in sub-blocks of at most
/// [`BLOCK`] columns with a monitor check before each.
fn apply_columns(
    op: &dyn SymOp,
    x: &[f64],
    ncols: usize,
    monitor: &dyn Monitor,
) -> Result<Vec<f64>> {
    let n = op.dim();
    let mut y = vec![0.0; n * ncols];
    let mut start = 0;
    while start < ncols {
        monitor.check()?;
        let width = BLOCK.min(ncols - start);
        let mut xb = vec![0.0; n * width];
        for i in 0..n {
            xb[i * width..(i + 1) * width]
                .copy_from_slice(&x[i * ncols + start..i * ncols + start + width]);
        }
        let mut yb = vec![0.0; n * width];
        op.apply_block(&xb, &mut yb, width)?;
        crate::core::error::check_finite("operator product", &yb)
            .map_err(|_| Error::Operator("the operator returned NaN or Inf".into()))?;
        for i in 0..n {
            y[i * ncols + start..i * ncols + start + width]
                .copy_from_slice(&yb[i * width..(i + 1) * width]);
        }
        start += width;
    }
    Ok(y)
}

/// Column sums of the entrywise product of two row-major `n x ncols` blocks.
fn column_dots(x: &[f64], y: &[f64], ncols: usize) -> Vec<f64> {
    let mut out = vec![0.0; ncols];
    for (xr, yr) in x.chunks_exact(ncols).zip(y.chunks_exact(ncols)) {
        for c in 0..ncols {
            out[c] += xr[c] * yr[c];
        }
    }
    out
}

/// Hutchinson's estimator with `n_probes` Rademacher probes: the mean and
/// standard error of [`hutchinson_samples`] over probes `0..n_probes`.
pub fn hutchinson(
    op: &dyn SymOp,
    n_probes: usize,
    seed: u64,
    monitor: &dyn Monitor,
) -> Result<TraceEstimate> {
    let values = hutchinson_samples(op, 0, n_probes, seed, monitor)?;
    let (estimate, stderr) = mean_and_stderr(&values);
    Ok(TraceEstimate { estimate, stderr })
}

/// The per-probe values `z_iᵀ A z_i` of Hutchinson's estimator for probes
/// `first_probe..first_probe + n_probes`. Probe i draws from its own stream
/// (that of `seed` advanced by i jumps, as SLQ's probes do), so ranges computed
/// separately (on other machines) concatenate to the samples of one run.
pub fn hutchinson_samples(
    op: &dyn SymOp,
    first_probe: usize,
    n_probes: usize,
    seed: u64,
    monitor: &dyn Monitor,
) -> Result<Vec<f64>> {
    let n = op.dim();
    if n_probes == 0 {
        return Err(Error::invalid(
            "n_probes",
            "n_probes must be at least 1, got 0",
        ));
    }
    first_probe
        .checked_add(n_probes)
        .ok_or_else(|| Error::invalid("first_probe", "first_probe + n_probes overflows usize"))?;
    let mut rng = probe_rng(seed, first_probe);
    let mut column = vec![0.0; n];
    let mut values = Vec::with_capacity(n_probes);
    let mut done = 0;
    while done < n_probes {
        let width = BLOCK.min(n_probes - done);
        let mut x = vec![0.0; n * width];
        for c in 0..width {
            let mut stream = rng.clone();
            fill_probe(&mut stream, ProbeKind::Rademacher, &mut column);
            for (i, &z) in column.iter().enumerate() {
                x[i * width + c] = z;
            }
            rng.jump();
        }
        let y = apply_columns(op, &x, width, monitor)?;
        values.extend(column_dots(&x, &y, width));
        done += width;
        monitor.report("trace", done, n_probes);
    }
    Ok(values)
}

/// Hutch++ with a budget of `n_matvecs` operator products.
pub fn hutchpp(
    op: &dyn SymOp,
    n_matvecs: usize,
    seed: u64,
    monitor: &dyn Monitor,
) -> Result<TraceEstimate> {
    let n = op.dim();
    if n_matvecs < 3 {
        return Err(Error::invalid(
            "n_matvecs",
            format!("n_matvecs must be at least 3 (a sketch, its products and a residual probe), got {n_matvecs}"),
        ));
    }
    if n_matvecs >= n {
        return exact_trace(op, monitor);
    }
    let k = n_matvecs / 3;
    let r = n_matvecs - 2 * k;
    let mut sketch = vec![0.0; n * k];
    fill_probe(&mut probe_rng(seed, 0), ProbeKind::Rademacher, &mut sketch);
    let range = apply_columns(op, &sketch, k, monitor)?;
    let q = Mat::<f64>::from_fn(n, k, |i, j| range[i * k + j])
        .qr()
        .compute_thin_Q();
    crate::core::simd_state::clear_upper_state_all_threads();
    let q_rows: Vec<f64> = (0..n)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| q[(i, j)])
        .collect();
    let aq = apply_columns(op, &q_rows, k, monitor)?;
    let top: f64 = column_dots(&q_rows, &aq, k).iter().sum();
    monitor.report("trace", 2 * k, n_matvecs);

    let mut probes = vec![0.0; n * r];
    fill_probe(&mut probe_rng(seed, 1), ProbeKind::Rademacher, &mut probes);
    let g = Mat::<f64>::from_fn(n, r, |i, j| probes[i * r + j]);
    let deflated = &g - &q * (q.transpose() * &g);
    let deflated_rows: Vec<f64> = (0..n)
        .flat_map(|i| (0..r).map(move |j| (i, j)))
        .map(|(i, j)| deflated[(i, j)])
        .collect();
    let a_deflated = apply_columns(op, &deflated_rows, r, monitor)?;
    let residual = column_dots(&deflated_rows, &a_deflated, r);
    monitor.report("trace", n_matvecs, n_matvecs);
    let (rest, stderr) = mean_and_stderr(&residual);
    Ok(TraceEstimate {
        estimate: top + rest,
        stderr,
    })
}

/// `Σ_j e_jᵀ A e_j` in blocks of unit vectors.
fn exact_trace(op: &dyn SymOp, monitor: &dyn Monitor) -> Result<TraceEstimate> {
    let n = op.dim();
    let mut total = 0.0;
    let mut start = 0;
    while start < n {
        let width = BLOCK.min(n - start);
        let mut x = vec![0.0; n * width];
        for c in 0..width {
            x[(start + c) * width + c] = 1.0;
        }
        let y = apply_columns(op, &x, width, monitor)?;
        total += (0..width).map(|c| y[(start + c) * width + c]).sum::<f64>();
        start += width;
        monitor.report("trace", start, n);
    }
    Ok(TraceEstimate {
        estimate: total,
        stderr: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::monitor::Silent;
    use rand_xoshiro::rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    struct Dense {
        n: usize,
        a: Vec<f64>,
    }

    impl SymOp for Dense {
        fn dim(&self) -> usize {
            self.n
        }
        fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi = self.a[i * self.n..(i + 1) * self.n]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum();
            }
            Ok(())
        }
    }

    fn gaussian_matrix(n: usize, m: usize, seed: u64) -> Mat<f64> {
        let mut g = vec![0.0; n * m];
        fill_probe(&mut probe_rng(seed, 0), ProbeKind::Gaussian, &mut g);
        Mat::from_fn(n, m, |i, j| g[i * m + j])
    }

    /// `U diag(values) Uᵀ` with a random orthogonal U.
    fn with_spectrum(values: &[f64], seed: u64) -> Dense {
        let n = values.len();
        let u = gaussian_matrix(n, n, seed).qr().compute_Q();
        let d = Mat::from_fn(n, n, |i, j| if i == j { values[i] } else { 0.0 });
        let a = &u * d * u.transpose();
        Dense {
            n,
            a: (0..n * n).map(|k| a[(k / n, k % n)]).collect(),
        }
    }

    fn random_symmetric(n: usize, seed: u64) -> Dense {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                    + if i == j { 0.3 } else { 0.0 };
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        Dense { n, a }
    }

    fn trace_of(d: &Dense) -> f64 {
        (0..d.n).map(|i| d.a[i * d.n + i]).sum()
    }

    #[test]
    fn hutchinson_is_exact_on_diagonal_matrices() {
        let values: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
        let d = Dense {
            n: 100,
            a: (0..10_000)
                .map(|k| {
                    if k / 100 == k % 100 {
                        values[k / 100]
                    } else {
                        0.0
                    }
                })
                .collect(),
        };
        let t = hutchinson(&d, 5, 1, &Silent).unwrap();
        assert!(
            (t.estimate - values.iter().sum::<f64>()).abs() < 1e-12 && t.stderr < 1e-12,
            "{t:?}"
        );
    }

    #[test]
    fn estimates_lie_within_a_few_stderr_of_dense_traces() {
        for seed in 0..5 {
            let a = random_symmetric(200, seed);
            let exact = trace_of(&a);
            let h = hutchinson(&a, 40, seed, &Silent).unwrap();
            assert!(
                (h.estimate - exact).abs() < 4.0 * h.stderr,
                "{h:?} vs {exact}"
            );
            let p = hutchpp(&a, 60, seed, &Silent).unwrap();
            assert!(
                (p.estimate - exact).abs() < 4.0 * p.stderr,
                "{p:?} vs {exact}"
            );
        }
    }

    #[test]
    fn hutchpp_beats_hutchinson_on_a_decaying_spectrum() {
        let values: Vec<f64> = (1..=300).map(|i| 1.0 / (i as f64).powi(2)).collect();
        let exact: f64 = values.iter().sum();
        let a = with_spectrum(&values, 3);
        let (mut err_h, mut err_p) = (0.0, 0.0);
        for seed in 0..20 {
            err_h += (hutchinson(&a, 60, seed, &Silent).unwrap().estimate - exact).abs();
            err_p += (hutchpp(&a, 60, seed, &Silent).unwrap().estimate - exact).abs();
        }
        println!(
            "decaying spectrum, 60 products: mean |error| Hutchinson {:.2e}, Hutch++ {:.2e}",
            err_h / 20.0,
            err_p / 20.0
        );
        assert!(err_p * 5.0 < err_h);
    }

    #[test]
    fn hutchpp_is_exact_for_low_rank_and_large_budgets() {
        let mut values = vec![0.0; 150];
        for (i, v) in values.iter_mut().take(6).enumerate() {
            *v = 1.0 + i as f64;
        }
        let a = with_spectrum(&values, 8);
        let p = hutchpp(&a, 30, 2, &Silent).unwrap();
        assert!((p.estimate - 21.0).abs() < 1e-9 && p.stderr < 1e-9, "{p:?}");
        let b = random_symmetric(40, 1);
        let p = hutchpp(&b, 40, 2, &Silent).unwrap();
        assert!((p.estimate - trace_of(&b)).abs() < 1e-12 && p.stderr == 0.0);
    }

    #[test]
    fn hutchinson_sample_ranges_concatenate() {
        let a = random_symmetric(50, 4);
        let whole = hutchinson_samples(&a, 0, 37, 9, &Silent).unwrap();
        let mut joined = hutchinson_samples(&a, 0, 20, 9, &Silent).unwrap();
        joined.extend(hutchinson_samples(&a, 20, 17, 9, &Silent).unwrap());
        assert_eq!(joined, whole);
        let t = hutchinson(&a, 37, 9, &Silent).unwrap();
        assert_eq!(t.estimate, mean_and_stderr(&whole).0);
    }

    #[test]
    fn invalid_budgets_name_themselves() {
        let b = random_symmetric(10, 1);
        assert!(hutchinson(&b, 0, 0, &Silent)
            .unwrap_err()
            .to_string()
            .contains("n_probes"));
        assert!(hutchpp(&b, 2, 0, &Silent)
            .unwrap_err()
            .to_string()
            .contains("n_matvecs"));
    }
}
