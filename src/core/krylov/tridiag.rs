//! Small symmetric eigenproblems (the projected matrices of Lanczos and SLQ),
//! solved by faer's self-adjoint eigensolver rather than a hand-written QR.

use crate::core::error::{Error, Result};
use faer::{Mat, Side};

/// Eigen-decomposition of a small symmetric matrix: values ascending, vectors
/// as the columns of a column-major `n x n` buffer (`vectors[j * n + i]` is
/// component i of vector j).
#[derive(Debug, Clone)]
pub struct SymEig {
    pub values: Vec<f64>,
    pub vectors: Vec<f64>,
    pub n: usize,
}

impl SymEig {
    pub fn vector(&self, j: usize) -> &[f64] {
        &self.vectors[j * self.n..(j + 1) * self.n]
    }
}

/// Eigen-decomposition of the dense symmetric `n x n` matrix `a` (column-major;
/// only the lower triangle is read).
pub fn sym_eig(a: &[f64], n: usize) -> Result<SymEig> {
    if a.len() != n * n {
        return Err(Error::shape("projected matrix", n * n, a.len()));
    }
    if n == 0 {
        return Ok(SymEig {
            values: vec![],
            vectors: vec![],
            n,
        });
    }
    let m = Mat::<f64>::from_fn(n, n, |i, j| a[j * n + i]);
    let eig = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Operator(format!("symmetric eigensolver did not converge: {e:?}")))?;
    crate::core::simd_state::clear_upper_state_all_threads();
    let s = eig.S();
    let u = eig.U();
    let values: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let mut vectors = vec![0.0; n * n];
    for j in 0..n {
        for i in 0..n {
            vectors[j * n + i] = u[(i, j)];
        }
    }
    Ok(SymEig { values, vectors, n })
}

/// Eigen-decomposition of the symmetric tridiagonal matrix with diagonal
/// `alpha` and off-diagonal `beta` (`beta.len() == alpha.len() - 1`).
pub fn tridiag_eig(alpha: &[f64], beta: &[f64]) -> Result<SymEig> {
    let n = alpha.len();
    if n > 0 && beta.len() + 1 != n {
        return Err(Error::shape("tridiagonal off-diagonal", n - 1, beta.len()));
    }
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i * n + i] = alpha[i];
        if i + 1 < n {
            a[i * n + i + 1] = beta[i];
            a[(i + 1) * n + i] = beta[i];
        }
    }
    sym_eig(&a, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tridiagonal_laplacian_has_cosine_spectrum() {
        let n = 12;
        let alpha = vec![2.0; n];
        let beta = vec![-1.0; n - 1];
        let eig = tridiag_eig(&alpha, &beta).unwrap();
        for (k, &value) in eig.values.iter().enumerate() {
            let exact = 2.0 - 2.0 * (std::f64::consts::PI * (k + 1) as f64 / (n + 1) as f64).cos();
            assert!((value - exact).abs() < 1e-13, "{value} vs {exact}");
        }
        // Residual of each pair.
        for j in 0..n {
            let v = eig.vector(j);
            for i in 0..n {
                let mut av = alpha[i] * v[i];
                if i > 0 {
                    av += beta[i - 1] * v[i - 1];
                }
                if i + 1 < n {
                    av += beta[i] * v[i + 1];
                }
                assert!((av - eig.values[j] * v[i]).abs() < 1e-12);
            }
        }
    }
}
