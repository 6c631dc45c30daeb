//! The final Rayleigh–Ritz step: returned eigenvectors orthonormal to
//! rounding, returned residuals measured.
//!
//! A semi-orthogonal basis (`|v_iᵀ v_j| ≤ η`) gives Ritz vectors `X = V S`
//! whose Gram matrix is `I + O(η)`. They are made orthonormal by a Cholesky
//! QR (`X ← X R⁻¹`, `XᵀX = RᵀR`; one pass suffices since `XᵀX` is within η
//! of `I`), then `H = Xᵀ A X` (one product per vector) is diagonalised,
//! `X ← X Y`, `AX ← AX Y`, and `‖A x_i − θ_i x_i‖` is computed from them.
//! The eigenvalues returned are these Rayleigh quotients.

use super::restart::combine_in_place;
use crate::core::error::Result;
use crate::core::krylov::basis::{dot, REDUCE_CHUNK};
use crate::core::krylov::tridiag::sym_eig;
use crate::core::monitor::Monitor;
use crate::core::op::SymOp;
use rayon::prelude::*;

/// `basis[..q n]` holds `q` column-major Ritz vectors; on return they are the
/// Rayleigh–Ritz vectors and the result is `(values ascending, residual
/// norms)`. Makes `q` operator products; `basis` ends with length `q n`.
pub(super) fn rayleigh_ritz(
    op: &dyn SymOp,
    basis: &mut Vec<f64>,
    n: usize,
    q: usize,
    monitor: &dyn Monitor,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if q == 0 {
        basis.truncate(0);
        return Ok((Vec::new(), Vec::new()));
    }
    basis.resize(basis.len().max(2 * q * n), 0.0);
    let (x, rest) = basis.split_at_mut(q * n);
    let ax = &mut rest[..q * n];
    if let Some(inverse) = cholesky_inverse(&cross_gram(x, x, n, q), q) {
        combine_in_place(x, n, q, &inverse, q);
    }
    for (xc, yc) in x.chunks_exact(n).zip(ax.chunks_exact_mut(n)) {
        op.apply(xc, yc)?;
        monitor.check()?;
    }
    let mut h = cross_gram(x, ax, n, q);
    for i in 0..q {
        for j in 0..i {
            let mean = 0.5 * (h[i * q + j] + h[j * q + i]);
            h[i * q + j] = mean;
            h[j * q + i] = mean;
        }
    }
    let eig = sym_eig(&h, q)?;
    combine_in_place(x, n, q, &eig.vectors, q);
    combine_in_place(ax, n, q, &eig.vectors, q);
    let residuals = (0..q)
        .map(|c| {
            let (xc, yc) = (&x[c * n..(c + 1) * n], &ax[c * n..(c + 1) * n]);
            let theta = eig.values[c];
            let partials: Vec<f64> = xc
                .par_chunks(REDUCE_CHUNK)
                .zip(yc.par_chunks(REDUCE_CHUNK))
                .map(|(xs, ys)| {
                    xs.iter()
                        .zip(ys)
                        .map(|(a, b)| (b - theta * a).powi(2))
                        .sum::<f64>()
                })
                .collect();
            partials.iter().sum::<f64>().sqrt()
        })
        .collect();
    basis.truncate(q * n);
    Ok((eig.values, residuals))
}

/// Makes the `q` column-major Ritz vectors in `basis[..q n]` orthonormal to
/// rounding (the Cholesky QR of `rayleigh_ritz`, without its products): what
/// locking needs when the caller wants eigenvalues only.
pub(super) fn orthonormalize(basis: &mut Vec<f64>, n: usize, q: usize) {
    basis.truncate(q * n);
    if q == 0 {
        return;
    }
    if let Some(inverse) = cholesky_inverse(&cross_gram(basis, basis, n, q), q) {
        combine_in_place(basis, n, q, &inverse, q);
    }
}

/// `G[i + q j] = a_iᵀ b_j` for column-major `n x q` blocks, summed over fixed
/// row chunks in order (deterministic for any thread count).
fn cross_gram(a: &[f64], b: &[f64], n: usize, q: usize) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = (0..n.div_ceil(REDUCE_CHUNK))
        .into_par_iter()
        .map(|c| {
            let rows = c * REDUCE_CHUNK..((c + 1) * REDUCE_CHUNK).min(n);
            let mut g = vec![0.0; q * q];
            for j in 0..q {
                let bj = &b[j * n + rows.start..j * n + rows.end];
                for i in 0..q {
                    g[j * q + i] = dot(&a[i * n + rows.start..i * n + rows.end], bj);
                }
            }
            g
        })
        .collect();
    let mut g = vec![0.0; q * q];
    for part in &partials {
        for (x, p) in g.iter_mut().zip(part) {
            *x += p;
        }
    }
    g
}

/// `R⁻¹` (column-major, upper triangular) for `G = RᵀR`; `None` when `G` is
/// not numerically positive definite (then the vectors are left as they are).
fn cholesky_inverse(g: &[f64], q: usize) -> Option<Vec<f64>> {
    // R column-major: r[j * q + i] = R[i, j], i <= j.
    let mut r = vec![0.0; q * q];
    for j in 0..q {
        for i in 0..=j {
            let mut s = g[j * q + i];
            for l in 0..i {
                s -= r[i * q + l] * r[j * q + l];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                r[j * q + j] = s.sqrt();
            } else {
                r[j * q + i] = s / r[i * q + i];
            }
        }
    }
    // Back substitution column by column: R · inv[:, j] = e_j.
    let mut inv = vec![0.0; q * q];
    for j in 0..q {
        for i in (0..=j).rev() {
            let mut s = if i == j { 1.0 } else { 0.0 };
            for l in i + 1..=j {
                s -= r[l * q + i] * inv[j * q + l];
            }
            inv[j * q + i] = s / r[i * q + i];
        }
    }
    Some(inv)
}
