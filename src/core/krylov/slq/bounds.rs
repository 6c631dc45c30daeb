//! Per-probe guaranteed brackets on a spectral count (moment and Ritz
//! residual bounds, see the module docs of `slq`), their average with an
//! honest standard error, and the smoothed density.

use super::{FractionEstimate, SlqOutput};
use crate::core::error::{python_float, Error, Result};
use crate::core::krylov::tridiag::sym_eig;
use rayon::prelude::*;

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
            format!(
                "sigma must be positive and finite, got {}",
                python_float(sigma)
            ),
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
