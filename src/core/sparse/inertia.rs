//! Exact eigenvalue counts of an explicit sparse symmetric matrix by
//! Sylvester's law of inertia.
//!
//! A congruence `A − σI = P L B Lᵀ Pᵀ` (L unit lower triangular, B block
//! diagonal with 1x1 and 2x2 blocks) preserves inertia, so the numbers of
//! negative, zero and positive eigenvalues of `A − σI` are those of B: a 1x1
//! block counts by its sign, a 2x2 block `[[a, b], [b, c]]` by its determinant
//! (`ac − b² < 0`: one of each sign; `> 0`: two of the sign of a).
//!
//! The factorisation is faer's supernodal *intranode* Bunch–Kaufman LBLᵀ after
//! an approximate-minimum-degree ordering (`faer::sparse::linalg::cholesky`,
//! forced supernodal: faer's simplicial path for this API is a plain LDLᵀ).
//! Bunch–Kaufman pivoting acts only inside each supernode's diagonal block,
//! with no delayed pivots across supernodes, so a tiny pivot in a narrow
//! supernode cannot always be avoided; that is the price of a sparse
//! factorisation without dynamic fill. The computed inertia is the exact
//! inertia of a nearby matrix: counts can be wrong only for eigenvalues
//! within the backward error of σ (checked against dense eigenvalues in the
//! tests, including shifts between close eigenvalues). An exactly zero pivot,
//! or a breakdown that leaves non-finite values, means `A − σI` is (nearly)
//! singular: the counts are then taken at `σ ∓ δ` with `δ = 2⁻²⁶ · (max|A| + |σ|)`
//! and the eigenvalues in between are reported as `zero`.
//!
//! Accuracy, measured: on the 15³ Laplacian shifted to its 43-fold eigenvalue
//! 6, the counts at `6 ± δ` are exact for δ ≥ 1e-8 (≈ 1e-9 · ‖A‖) and off by up
//! to 22 below that, so thresholds (`tol` of [`banded_counts`]) should exceed
//! about `1e-8 · max|A|`; hence also the δ above. A matrix that is singular
//! only in exact arithmetic (a graph Laplacian) usually factors without a zero
//! pivot: its null space then shows up in the `within` band of
//! [`banded_counts`], not in `zero`.
//!
//! The matrix comes as CSR arrays of the full symmetric matrix; its upper
//! triangle (entries with column ≥ row, duplicates summed) is read, which is
//! the lower triangle of the CSC transpose that faer factors.

use crate::core::error::{check_finite, python_float, Error, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, SymbolicCholesky, SymbolicCholeskyRaw,
    SymmetricOrdering,
};
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::{SparseColMat, Triplet};
use faer::{Par, Side};

/// Numbers of negative, zero and positive eigenvalues of `A − shift·I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inertia {
    pub negative: usize,
    pub zero: usize,
    pub positive: usize,
}

/// Numbers of eigenvalues below −tol, within [−tol, tol] and above tol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandCounts {
    pub below: usize,
    pub within: usize,
    pub above: usize,
}

/// Size of the factor the symbolic analysis predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorSize {
    /// Stored entries of L (supernodal: dense diagonal blocks included).
    pub nnz_l: usize,
    /// Estimated peak bytes of one numeric factorisation (values of L plus
    /// the permuted copy of A and integer workspaces).
    pub bytes: usize,
}

/// CSR arrays of a symmetric matrix, validated.
struct Csr<'a, I, T> {
    n: usize,
    indptr: &'a [I],
    indices: &'a [I],
    data: &'a [T],
}

fn to_index<I: Copy + TryInto<usize>>(value: I, what: &str) -> Result<usize> {
    value
        .try_into()
        .map_err(|_| Error::structure(what, "holds a negative or oversized index"))
}

impl<'a, I: Copy + TryInto<usize>, T: Copy + Into<f64>> Csr<'a, I, T> {
    fn new(n: usize, indptr: &'a [I], indices: &'a [I], data: &'a [T]) -> Result<Self> {
        if indptr.len() != n + 1 {
            return Err(Error::shape("indptr", n + 1, indptr.len()));
        }
        if indices.len() != data.len() {
            return Err(Error::shape("indices", data.len(), indices.len()));
        }
        let mut previous = 0usize;
        for (row, &p) in indptr.iter().enumerate() {
            let p = to_index(p, "indptr")?;
            if (row == 0 && p != 0) || p < previous {
                return Err(Error::structure(
                    "indptr",
                    "must start at 0 and never decrease",
                ));
            }
            previous = p;
        }
        if previous != indices.len() {
            return Err(Error::structure(
                "indptr",
                format!("ends at {previous} but there are {} entries", indices.len()),
            ));
        }
        for &i in indices {
            if to_index(i, "indices")? >= n {
                return Err(Error::structure(
                    "indices",
                    format!("holds a column index >= n = {n}"),
                ));
            }
        }
        check_finite("data", data)?;
        Ok(Csr {
            n,
            indptr,
            indices,
            data,
        })
    }

    fn max_abs(&self) -> f64 {
        self.data.iter().fold(0.0f64, |m, &v| m.max(v.into().abs()))
    }

    /// The lower triangle of `A − shift·I` as a faer CSC matrix.
    fn shifted_lower(&self, shift: f64) -> Result<SparseColMat<usize, f64>> {
        let mut triplets = Vec::with_capacity(self.indices.len() / 2 + 2 * self.n);
        for j in 0..self.n {
            let begin = to_index(self.indptr[j], "indptr")?;
            let end = to_index(self.indptr[j + 1], "indptr")?;
            for p in begin..end {
                let i = to_index(self.indices[p], "indices")?;
                if i >= j {
                    triplets.push(Triplet {
                        row: i,
                        col: j,
                        val: self.data[p].into(),
                    });
                }
            }
            triplets.push(Triplet {
                row: j,
                col: j,
                val: -shift,
            });
        }
        SparseColMat::try_new_from_triplets(self.n, self.n, &triplets)
            .map_err(|e| Error::structure("A", format!("cannot build the sparse matrix: {e:?}")))
    }
}

fn symbolic_of(a: &SparseColMat<usize, f64>) -> Result<SymbolicCholesky<usize>> {
    factorize_symbolic_cholesky(
        a.symbolic(),
        Side::Lower,
        SymmetricOrdering::Amd,
        CholeskySymbolicParams {
            supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
            ..Default::default()
        },
    )
    .map_err(|e| Error::invalid("A", format!("symbolic factorisation failed: {e:?}")))
}

/// Growth `max_i (|L| |B| |Lᵀ|)_ii / max|A − σI|` beyond which a
/// factorisation is not trusted. The backward error bound `ε · growth` is
/// pessimistic: near a singular shift the pivots are legitimately ~δ and the
/// growth ~1e8 while the counts stay exact (the 15³ Laplacian at its 6-fold
/// eigenvalue, a test), whereas a pivot made tiny by rounding-level entries
/// (the fuzzer's counterexample, entries of 1e-23 beside a zero diagonal)
/// grows the factor by 1e40 and more. 2^40 separates the two.
const GROWTH_LIMIT: f64 = 1_099_511_627_776.0; // 2^40

/// What one factorisation of `A − σI` says.
enum Factored {
    /// The inertia of B, trustworthy.
    Clean(Inertia),
    /// A zero or non-finite pivot: `A − σI` is (nearly) singular.
    Singular,
    /// Pivots so small that the factor grew by this factor (pivoting within
    /// supernodes could not avoid them): the counts cannot be trusted.
    Unstable(f64),
}

/// Factors `a` and reads the inertia of B off the pivots.
fn factor_inertia(
    a: &SparseColMat<usize, f64>,
    symbolic: &SymbolicCholesky<usize>,
) -> Result<Factored> {
    let n = a.nrows();
    let par = Par::rayon(0);
    let mut values = Vec::new();
    values
        .try_reserve_exact(symbolic.len_val())
        .map_err(|_| Error::invalid("A", "not enough memory for the factor"))?;
    values.resize(symbolic.len_val(), 0.0);
    let mut subdiag = vec![0.0; n];
    let mut perm_forward = vec![0usize; n];
    let mut perm_inverse = vec![0usize; n];
    let mut scratch = MemBuffer::try_new(
        symbolic.factorize_numeric_intranode_lblt_scratch::<f64>(par, Default::default()),
    )
    .map_err(|_| Error::invalid("A", "not enough memory for the factorisation workspace"))?;
    symbolic.factorize_numeric_intranode_lblt(
        &mut values,
        &mut subdiag,
        &mut perm_forward,
        &mut perm_inverse,
        a.as_ref(),
        Side::Lower,
        par,
        MemStack::new(&mut scratch),
        Default::default(),
    );
    crate::core::simd_state::clear_upper_state_all_threads();
    let mut inertia = Inertia {
        negative: 0,
        zero: 0,
        positive: 0,
    };
    let mut count_pivot = |d: f64| -> bool {
        if !d.is_finite() || d == 0.0 {
            return false;
        }
        if d > 0.0 {
            inertia.positive += 1;
        } else {
            inertia.negative += 1;
        }
        true
    };
    // Per row of the factor, Σ_j L_ij² |B_j| (supernodal only: the
    // simplicial layout has L = I).
    let mut growth = vec![0.0f64; n];
    let clean = match symbolic.raw() {
        // faer picks the simplicial layout only when the factor needs no
        // floating-point work beyond its diagonal (L = I): each column then
        // starts with its pivot.
        SymbolicCholeskyRaw::Simplicial(simplicial) => simplicial.col_ptr()[..n]
            .iter()
            .all(|&start| count_pivot(values[start])),
        SymbolicCholeskyRaw::Supernodal(supernodal) => {
            let col_ptr = supernodal.col_ptr_for_val();
            let mut clean = true;
            for s in 0..supernodal.n_supernodes() {
                let start = supernodal.supernode_begin()[s];
                let ncols = supernodal.supernode_end()[s] - start;
                let block = &values[col_ptr[s]..col_ptr[s + 1]];
                let nrows = block.len() / ncols;
                let pattern = supernodal.supernode(s).pattern();
                let diagonal = |j: usize| block[j * nrows + j];
                // (|L| |B| |Lᵀ|)_ii = Σ_j L_ij² |B_j|, with a 2x2 block's
                // largest entry standing for |B_j| of both its columns.
                let mut j = 0;
                while j < ncols {
                    let off = subdiag[start + j];
                    let pair = off != 0.0 && j + 1 < ncols;
                    let width = if pair { 2 } else { 1 };
                    let mut pivot = (0..width).fold(off.abs(), |m, c| m.max(diagonal(j + c).abs()));
                    if !pivot.is_finite() {
                        pivot = f64::INFINITY;
                    }
                    for c in j..j + width {
                        growth[start + c] += pivot;
                        for (i, l) in block[c * nrows..(c + 1) * nrows]
                            .iter()
                            .enumerate()
                            .skip(j + width)
                        {
                            let row = if i < ncols {
                                start + i
                            } else {
                                pattern[i - ncols]
                            };
                            growth[row] += l * l * pivot;
                        }
                    }
                    j += width;
                }
                let mut j = 0;
                while clean && j < ncols {
                    let off = subdiag[start + j];
                    if off == 0.0 || j + 1 == ncols {
                        clean = count_pivot(diagonal(j));
                        j += 1;
                    } else {
                        let (a11, a22) = (diagonal(j), diagonal(j + 1));
                        let det = a11 * a22 - off * off;
                        // det < 0: one eigenvalue of each sign; det > 0: both
                        // of the sign of the trace.
                        clean = if det < 0.0 {
                            count_pivot(1.0) && count_pivot(-1.0)
                        } else {
                            let trace = a11 + a22;
                            count_pivot(det * trace) && count_pivot(det * trace)
                        };
                        j += 2;
                    }
                }
            }
            clean
        }
    };
    if !clean {
        return Ok(Factored::Singular);
    }
    // Non-finite entries below the diagonal mean a breakdown the pivots hid.
    if values.iter().any(|v| !v.is_finite()) {
        return Ok(Factored::Singular);
    }
    let scale = a.val().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let largest = growth.iter().fold(0.0f64, |m, g| m.max(*g));
    if scale > 0.0 && largest > GROWTH_LIMIT * scale {
        return Ok(Factored::Unstable(largest / scale));
    }
    Ok(Factored::Clean(inertia))
}

fn inertia_of<I: Copy + TryInto<usize>, T: Copy + Into<f64>>(
    csr: &Csr<'_, I, T>,
    shift: f64,
) -> Result<Inertia> {
    let a = csr.shifted_lower(shift)?;
    let symbolic = symbolic_of(&a)?;
    let first = factor_inertia(&a, &symbolic)?;
    if let Factored::Clean(found) = first {
        return Ok(found);
    }
    // Singular (or unstable) at the shift: count on both sides of it, where
    // the tiny pivots are ±δ instead of 0.
    let delta = (csr.max_abs() + shift.abs()).max(f64::MIN_POSITIVE) * (-26f64).exp2();
    let side = |s: f64| -> Result<Inertia> {
        let a = csr.shifted_lower(s)?;
        match factor_inertia(&a, &symbolic)? {
            Factored::Clean(found) => Ok(found),
            Factored::Singular => Err(Error::invalid(
                "A",
                format!("the LBLᵀ factorisation broke down at shifts {} and {}; the matrix is too ill-conditioned there", python_float(shift), python_float(s)),
            )),
            Factored::Unstable(growth) => Err(Error::invalid(
                "A",
                format!(
                    "the sparse LBLᵀ factorisation at shift {} grew by a factor of {} (tiny pivots that \
                     pivoting within supernodes could not avoid), so its inertia cannot be trusted; \
                     use method='exact' (dense eigenvalues) or method='slq'",
                    python_float(s),
                    python_float(growth)
                ),
            )),
        }
    };
    let below = side(shift - delta)?;
    let above = side(shift + delta)?;
    let n = csr.n;
    Ok(Inertia {
        negative: below.negative,
        positive: above.positive,
        zero: n.saturating_sub(below.negative + above.positive),
    })
}

/// Inertia of `A − shift·I` for the symmetric n x n matrix A given as CSR.
pub fn inertia<I: Copy + TryInto<usize>, T: Copy + Into<f64>>(
    n: usize,
    indptr: &[I],
    indices: &[I],
    data: &[T],
    shift: f64,
) -> Result<Inertia> {
    if !shift.is_finite() {
        return Err(Error::invalid(
            "shift",
            format!("shift must be finite, got {}", python_float(shift)),
        ));
    }
    inertia_of(&Csr::new(n, indptr, indices, data)?, shift)
}

/// Counts of eigenvalues below −tol, within [−tol, tol] and above tol, from
/// the inertia of `A − tol·I` (above) and `A + tol·I` (below).
pub fn banded_counts<I: Copy + TryInto<usize>, T: Copy + Into<f64>>(
    n: usize,
    indptr: &[I],
    indices: &[I],
    data: &[T],
    tol: f64,
) -> Result<BandCounts> {
    if !(tol >= 0.0 && tol.is_finite()) {
        return Err(Error::invalid(
            "tol",
            format!("tol must be finite and >= 0, got {}", python_float(tol)),
        ));
    }
    let csr = Csr::new(n, indptr, indices, data)?;
    let upper = inertia_of(&csr, tol)?;
    let lower = if tol == 0.0 {
        upper
    } else {
        inertia_of(&csr, -tol)?
    };
    // #λ > tol = positives of A − tol·I; #λ < −tol = negatives of A + tol·I.
    let above = upper.positive;
    let below = lower.negative;
    Ok(BandCounts {
        below,
        within: n.saturating_sub(above + below),
        above,
    })
}

/// The factor size the symbolic analysis predicts, without factoring.
pub fn symbolic_nnz<I: Copy + TryInto<usize>, T: Copy + Into<f64>>(
    n: usize,
    indptr: &[I],
    indices: &[I],
    data: &[T],
) -> Result<FactorSize> {
    let csr = Csr::new(n, indptr, indices, data)?;
    let a = csr.shifted_lower(0.0)?;
    let symbolic = symbolic_of(&a)?;
    let nnz_l = symbolic.len_val();
    let nnz_a = a.compute_nnz();
    Ok(FactorSize {
        nnz_l,
        bytes: 8 * nnz_l + 16 * nnz_a + 64 * n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::krylov::tridiag::sym_eig;
    use rand_xoshiro::rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Full symmetric CSR from a dense row-major matrix.
    fn dense_to_csr(a: &[f64], n: usize) -> (Vec<usize>, Vec<usize>, Vec<f64>) {
        let (mut indptr, mut indices, mut data) = (vec![0], vec![], vec![]);
        for i in 0..n {
            for j in 0..n {
                if a[i * n + j] != 0.0 {
                    indices.push(j);
                    data.push(a[i * n + j]);
                }
            }
            indptr.push(indices.len());
        }
        (indptr, indices, data)
    }

    fn dense_counts(values: &[f64], shift: f64) -> (usize, usize) {
        (
            values.iter().filter(|&&l| l < shift).count(),
            values.iter().filter(|&&l| l > shift).count(),
        )
    }

    fn random_sparse_symmetric(n: usize, per_row: usize, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            a[i * n + i] = 2.0 * unit() - 1.0;
            for _ in 0..per_row / 2 {
                let j = ((unit() * n as f64) as usize).min(n - 1);
                let v = 2.0 * unit() - 1.0;
                a[i * n + j] += v;
                if i != j {
                    a[j * n + i] += v;
                }
            }
        }
        a
    }

    #[test]
    fn matches_dense_eigenvalues_on_random_sparse_indefinite_matrices() {
        for (seed, n) in [(1u64, 200usize), (2, 350), (3, 500), (4, 300)] {
            let a = random_sparse_symmetric(n, 6, seed);
            let mut col_major = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    col_major[j * n + i] = a[i * n + j];
                }
            }
            let values = sym_eig(&col_major, n).unwrap().values;
            let (indptr, indices, data) = dense_to_csr(&a, n);
            for k in [0usize, n / 7, n / 3, n / 2, 2 * n / 3, n - 1] {
                // Shifts midway between consecutive eigenvalues, and the origin.
                let shift = if k + 1 < n {
                    0.5 * (values[k] + values[k + 1])
                } else {
                    0.0
                };
                let got = inertia(n, &indptr, &indices, &data, shift).unwrap();
                let (neg, pos) = dense_counts(&values, shift);
                assert_eq!(
                    (got.negative, got.zero, got.positive),
                    (neg, 0, pos),
                    "seed {seed} shift {shift}"
                );
            }
            let tol = 0.05;
            let bands = banded_counts(n, &indptr, &indices, &data, tol).unwrap();
            assert_eq!(bands.below, values.iter().filter(|&&l| l < -tol).count());
            assert_eq!(bands.above, values.iter().filter(|&&l| l > tol).count());
        }
    }

    /// 7-point Dirichlet Laplacian on a d³ grid as full CSR (i32 indices, f32 values).
    fn laplacian_csr(d: usize) -> (Vec<i32>, Vec<i32>, Vec<f32>) {
        let (mut indptr, mut indices, mut data) = (vec![0i32], vec![], vec![]);
        let id = |i: usize, j: usize, k: usize| ((i * d + j) * d + k) as i32;
        for i in 0..d {
            for j in 0..d {
                for k in 0..d {
                    let mut row = vec![(id(i, j, k), 6.0f32)];
                    if i > 0 {
                        row.push((id(i - 1, j, k), -1.0));
                    }
                    if i + 1 < d {
                        row.push((id(i + 1, j, k), -1.0));
                    }
                    if j > 0 {
                        row.push((id(i, j - 1, k), -1.0));
                    }
                    if j + 1 < d {
                        row.push((id(i, j + 1, k), -1.0));
                    }
                    if k > 0 {
                        row.push((id(i, j, k - 1), -1.0));
                    }
                    if k + 1 < d {
                        row.push((id(i, j, k + 1), -1.0));
                    }
                    for (c, v) in row {
                        indices.push(c);
                        data.push(v);
                    }
                    indptr.push(indices.len() as i32);
                }
            }
        }
        (indptr, indices, data)
    }

    fn laplacian_eigenvalues(d: usize) -> Vec<f64> {
        let one: Vec<f64> = (1..=d)
            .map(|a| 2.0 - 2.0 * (std::f64::consts::PI * a as f64 / (d + 1) as f64).cos())
            .collect();
        let mut out = vec![];
        for a in &one {
            for b in &one {
                for c in &one {
                    out.push(a + b + c);
                }
            }
        }
        out.sort_by(f64::total_cmp);
        out
    }

    #[test]
    fn matches_analytic_laplacian_spectrum() {
        let d = 15;
        let n = d * d * d;
        let (indptr, indices, data) = laplacian_csr(d);
        let values = laplacian_eigenvalues(d);
        let mut distinct = values.clone();
        distinct.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        for k in [
            10,
            distinct.len() / 4,
            distinct.len() / 2,
            3 * distinct.len() / 4,
        ] {
            let shift = 0.5 * (distinct[k] + distinct[k + 1]);
            let got = inertia(n, &indptr, &indices, &data, shift).unwrap();
            let (neg, pos) = dense_counts(&values, shift);
            assert_eq!(
                (got.negative, got.zero, got.positive),
                (neg, 0, pos),
                "shift {shift}"
            );
        }
        // Exactly at the 6-fold eigenvalue 6 (center of the spectrum, by symmetry).
        let tol = 1e-6;
        let bands = banded_counts(n, &indptr, &indices, &data, tol).unwrap();
        assert_eq!(bands.above, n);
        let shifted: Vec<f32> = data.clone();
        let shift = 6.0;
        let got = inertia(n, &indptr, &indices, &shifted, shift).unwrap();
        let within = values.iter().filter(|&&l| (l - shift).abs() < 1e-9).count();
        assert_eq!(got.zero, within);
        assert_eq!(
            got.negative,
            values.iter().filter(|&&l| l < shift - 1e-9).count()
        );
    }

    /// Found by the fuzzer: entries of 2e-23 beside zero diagonals gave a
    /// pivot of rounding size and counted (3, 0, 3) for eigenvalues
    /// [-6.45, -6.39, 0.51, 1.74, 2.42, 10.98]. The factor's growth now
    /// exposes it: the counts come from shifts ±δ, or a clean error.
    #[test]
    fn rounding_sized_pivots_do_not_give_wrong_counts() {
        let indptr = [0i64, 3, 6, 10, 13, 17, 19];
        let indices = [0i64, 2, 5, 2, 3, 4, 0, 1, 4, 5, 1, 3, 4, 1, 2, 3, 4, 0, 2];
        let tiny = 2.1219355282769465e-23;
        let data = [
            -5.9375, 0.0, -1.8125, 2.375, 0.0, 3.4375, 0.0, 2.375, -6.125, tiny, 0.0, 2.5, 2.75,
            3.4375, -6.125, 2.75, 6.25, -1.8125, tiny,
        ];
        for shift in [0.0, 1.741489790896152e-140, 1e-20] {
            match inertia(6, &indptr, &indices, &data, shift) {
                Ok(got) => assert_eq!((got.negative, got.zero, got.positive), (2, 0, 4)),
                Err(e) => assert!(e.to_string().contains("cannot be trusted"), "{e}"),
            }
        }
    }

    #[test]
    fn singular_matrices_report_their_zero_eigenvalues() {
        // Path-graph Laplacian: one exact zero eigenvalue.
        let n = 50;
        let mut a = vec![0.0; n * n];
        for i in 0..n - 1 {
            a[i * n + i] += 1.0;
            a[(i + 1) * n + i + 1] += 1.0;
            a[i * n + i + 1] -= 1.0;
            a[(i + 1) * n + i] -= 1.0;
        }
        let (indptr, indices, data) = dense_to_csr(&a, n);
        let bands = banded_counts(n, &indptr, &indices, &data, 1e-6).unwrap();
        assert_eq!(
            bands,
            BandCounts {
                below: 0,
                within: 1,
                above: n - 1
            }
        );
        // A diagonal with exact zeros and an empty row.
        let indptr = [0usize, 1, 2, 2, 3, 4];
        let indices = [0usize, 1, 3, 4];
        let data = [0.0, -2.0, 3.0, 0.0];
        let got = inertia(5, &indptr, &indices, &data, 0.0).unwrap();
        assert_eq!(
            got,
            Inertia {
                negative: 1,
                zero: 3,
                positive: 1
            }
        );
        let bands = banded_counts(5, &indptr, &indices, &data, 1e-3).unwrap();
        assert_eq!(
            bands,
            BandCounts {
                below: 1,
                within: 3,
                above: 1
            }
        );
    }

    #[test]
    fn duplicates_are_summed_and_bad_input_is_named() {
        // [[1, 2], [2, 1]] with the off-diagonal split in two: eigenvalues 3, −1.
        let indptr = [0usize, 3, 5];
        let indices = [0usize, 1, 1, 0, 1];
        let data = [1.0, 1.5, 0.5, 2.0, 1.0];
        assert_eq!(
            inertia(2, &indptr, &indices, &data, 0.0).unwrap(),
            Inertia {
                negative: 1,
                zero: 0,
                positive: 1
            }
        );
        assert!(inertia(2, &[0usize, 1], &[0usize], &[1.0], 0.0)
            .unwrap_err()
            .to_string()
            .contains("indptr"));
        assert!(inertia(2, &[0usize, 1, 1], &[5usize], &[1.0], 0.0)
            .unwrap_err()
            .to_string()
            .contains("indices"));
        assert!(inertia(2, &[0i64, 1, 1], &[-1i64], &[1.0], 0.0)
            .unwrap_err()
            .to_string()
            .contains("indices"));
        assert!(inertia(1, &[0usize, 1], &[0usize], &[f64::NAN], 0.0)
            .unwrap_err()
            .to_string()
            .contains("data"));
        assert!(inertia(1, &[0usize, 1], &[0usize], &[1.0], f64::NAN)
            .unwrap_err()
            .to_string()
            .contains("shift"));
        assert!(banded_counts(1, &[0usize, 1], &[0usize], &[1.0], -1.0)
            .unwrap_err()
            .to_string()
            .contains("tol"));
    }

    #[test]
    #[ignore = "large: factor timing of the shifted 3D Laplacian"]
    fn timing_3d_laplacian() {
        for d in [40usize, 60, 80, 100] {
            let n = d * d * d;
            let (indptr, indices, data) = laplacian_csr(d);
            let start = std::time::Instant::now();
            let size = symbolic_nnz(n, &indptr, &indices, &data).unwrap();
            let symbolic_time = start.elapsed();
            println!(
                "{d}^3 (n = {n}): symbolic {symbolic_time:?}, nnz(L) = {} ({:.2} GB factor, ~{:.2} GB peak)",
                size.nnz_l,
                size.nnz_l as f64 * 8e-9,
                size.bytes as f64 * 1e-9
            );
            if size.bytes > 12_000_000_000
                || std::env::var("HESSX_FACTOR_MAX_D")
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|m| d > m)
            {
                println!("  skipping the numeric factorisation");
                continue;
            }
            let start = std::time::Instant::now();
            let got = inertia(n, &indptr, &indices, &data, 5.0).unwrap();
            println!("  inertia at shift 5: {got:?} in {:?}", start.elapsed());
        }
    }
}
