//! A borrowed CSR (compressed sparse row) matrix as a symmetric operator.
//!
//! Storage is SciPy's: row `i` holds the entries `data[k]` at columns
//! `indices[k]` for `k in indptr[i]..indptr[i + 1]`. Column indices may be
//! unsorted within a row and may repeat; repeated entries are summed, as SciPy
//! does. All invariants are checked once in [`CsrRef::new`], so the kernels
//! below never index out of bounds on valid input and never re-validate.
//!
//! Products:
//! - SpMV `y_i = sum_k data[k] * x[indices[k]]` over row i's entries, and the
//!   row-major SpMM `Y[i, :] = sum_k data[k] * X[indices[k], :]`, which reads
//!   the matrix once for all `ncols` vectors. Accumulation is always in f64.
//! - Parallelism: rows are cut once, at construction, into contiguous chunks of
//!   roughly equal work (`nnz + rows`, so power-law row lengths balance); each
//!   rayon task owns the disjoint slice of `y` for its chunk (split with
//!   `split_at_mut` in a `rayon::join` recursion, no `unsafe`, no allocation).
//!
//! Symmetry check: for every stored entry `(i, j)` the summed value `A[i, j]`
//! is compared with `A[j, i]`, found by binary search in row `j` (rows are
//! sorted first into a temporary copy if the input's are not). Every entry is
//! visited from its own row, so an entry whose mirror is missing (implicitly 0)
//! is caught too. Cost O(nnz log(max row length)), parallel over rows.
//!
//! Gershgorin: every eigenvalue lies in `[min_i (a_ii - r_i), max_i (a_ii + r_i)]`
//! with `r_i = sum_{j != i} |a_ij|` (Golub & Van Loan, Matrix Computations,
//! 4th ed., Thm. 7.2.1).

use std::ops::Range;

use rayon::prelude::*;

use crate::core::error::{python_float, Error, Result};
use crate::core::op::SymOp;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
}

/// A stored matrix value: f32 or f64. Products convert to f64 on load.
pub trait Value:
    Copy + Send + Sync + PartialEq + std::fmt::Debug + Into<f64> + sealed::Sealed + 'static
{
    /// Default relative tolerance for [`CsrRef::check_symmetric`] and the dense
    /// check: two entries pass when `|a - b| <= rtol * max(|a|, |b|)`.
    ///
    /// Symmetric matrices built by SciPy/NumPy (`A + A.T`, Kronecker sums,
    /// assembled Hessians) are usually exactly symmetric; when they are not,
    /// it is because mirrored entries were computed by different operation
    /// orders, which differs by a few hundred ulps at most. 1e-12 for f64 (~4500 ulp)
    /// and 1e-5 for f32 (~84 ulp) accept that rounding noise and reject any
    /// matrix that is asymmetric in a meaningful way.
    const SYMMETRY_RTOL: f64;
    /// The storage type's unit roundoff ([`SymOp::data_precision`]).
    const UNIT_ROUNDOFF: f64;
    fn to_f64(self) -> f64;
    /// Rounds to the storage type (duplicates summed in f64 when half
    /// storage merges them).
    fn from_f64(x: f64) -> Self;
    /// The slice itself when the storage is already f64 (lets dense
    /// products hand it to faer's GEMM without a copy).
    fn as_f64_slice(values: &[Self]) -> Option<&[f64]>;
}

impl Value for f32 {
    const SYMMETRY_RTOL: f64 = 1e-5;
    const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64_slice(_: &[Self]) -> Option<&[f64]> {
        None
    }
}

impl Value for f64 {
    const SYMMETRY_RTOL: f64 = 1e-12;
    const UNIT_ROUNDOFF: f64 = f64::EPSILON;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    fn as_f64_slice(values: &[Self]) -> Option<&[f64]> {
        Some(values)
    }
}

/// A stored index: i32 or i64 (SciPy's index dtypes).
pub trait Index:
    Copy + Send + Sync + Ord + std::fmt::Debug + std::fmt::Display + sealed::Sealed + 'static
{
    /// Conversion for validated indices (known to be in `0..=nnz`).
    fn to_usize(self) -> usize;
    /// `None` for negative values (or values beyond `usize`).
    fn try_to_usize(self) -> Option<usize>;
    /// For values known to fit (positions and counts of a matrix that
    /// already fits this index type).
    fn from_usize(x: usize) -> Self;
}

impl Index for i32 {
    #[inline(always)]
    fn to_usize(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn try_to_usize(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
    #[inline(always)]
    fn from_usize(x: usize) -> Self {
        x as i32
    }
}

impl Index for i64 {
    #[inline(always)]
    fn to_usize(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn try_to_usize(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
    #[inline(always)]
    fn from_usize(x: usize) -> Self {
        x as i64
    }
}

/// Work units (`nnz + rows`) below which a product runs on one thread:
/// spawning rayon tasks costs more than it saves on tiny matrices.
const MIN_CHUNK_WORK: usize = 1 << 15;
/// Chunks per rayon thread: enough that work stealing evens out chunks whose
/// memory traffic differs (cache hits in `x`), few enough that task overhead stays small.
pub(crate) const CHUNKS_PER_THREAD: usize = 8;

/// A validated, borrowed, square CSR matrix.
#[derive(Debug, Clone)]
pub struct CsrRef<'a, T: Value, I: Index> {
    n: usize,
    indptr: &'a [I],
    indices: &'a [I],
    data: &'a [T],
    /// Column indices are non-decreasing within every row.
    sorted: bool,
    /// Row boundaries of the parallel chunks: `0 = b_0 < b_1 < ... < b_k = n`.
    chunk_bounds: Vec<usize>,
}

impl<'a, T: Value, I: Index> CsrRef<'a, T, I> {
    /// Validates a SciPy-layout CSR matrix once; every later product trusts it.
    pub fn new(
        nrows: usize,
        ncols: usize,
        indptr: &'a [I],
        indices: &'a [I],
        data: &'a [T],
    ) -> Result<Self> {
        if nrows != ncols || nrows == 0 {
            return Err(Error::shape(
                "A",
                "a non-empty square matrix",
                format!("shape ({nrows}, {ncols})"),
            ));
        }
        let n = nrows;
        if indptr.len() != n + 1 {
            return Err(Error::shape(
                "A.indptr",
                format!("length {} (nrows + 1)", n + 1),
                format!("length {}", indptr.len()),
            ));
        }
        if data.len() != indices.len() {
            return Err(Error::shape(
                "A.data",
                format!("length {} (the length of A.indices)", indices.len()),
                format!("length {}", data.len()),
            ));
        }
        validate_indptr(indptr, indices.len())?;
        validate_indices(indptr, indices, n)?;
        if let Some(index) = par_position_first(data, |v| !v.to_f64().is_finite()) {
            return Err(Error::NonFinite {
                what: "A.data".to_string(),
                index,
            });
        }
        let sorted = indptr.par_windows(2).all(|w| {
            let row = &indices[w[0].to_usize()..w[1].to_usize()];
            row.windows(2).all(|p| p[0] <= p[1])
        });
        let chunk_bounds =
            balanced_chunks(indptr, rayon::current_num_threads() * CHUNKS_PER_THREAD);
        Ok(CsrRef {
            n,
            indptr,
            indices,
            data,
            sorted,
            chunk_bounds,
        })
    }

    pub fn nrows(&self) -> usize {
        self.n
    }

    /// Stored entries, duplicates counted separately (SciPy's `A.nnz`).
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Whether column indices are non-decreasing within every row.
    pub fn sorted_indices(&self) -> bool {
        self.sorted
    }

    /// `A[i, i]` for every row, duplicates summed; 0 where none is stored.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let (cols, vals) = self.row(i);
                cols.iter()
                    .zip(vals)
                    .filter(|(c, _)| c.to_usize() == i)
                    .map(|(_, v)| v.to_f64())
                    .sum()
            })
            .collect()
    }

    /// Gershgorin bounds `(lo, hi)` enclosing every eigenvalue. Duplicate
    /// off-diagonal entries add their absolute values separately, which can
    /// only widen the interval, so it stays a valid enclosure.
    pub fn gershgorin_bounds(&self) -> (f64, f64) {
        (0..self.n)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let (cols, vals) = self.row(i);
                let mut diagonal = 0.0;
                let mut radius = 0.0;
                for (&c, &v) in cols.iter().zip(vals) {
                    if c.to_usize() == i {
                        diagonal += v.to_f64();
                    } else {
                        radius += v.to_f64().abs();
                    }
                }
                (diagonal - radius, diagonal + radius)
            })
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            )
    }

    /// `Err(NotSymmetric)` at the first (row-major) entry whose mirror differs:
    /// `|A[i,j] - A[j,i]| > rtol * max(|A[i,j]|, |A[j,i]|)`, duplicates summed,
    /// a missing mirror counting as 0. `rtol = 0` demands exact equality;
    /// [`Value::SYMMETRY_RTOL`] is the recommended default.
    pub fn check_symmetric(&self, rtol: f64) -> Result<()> {
        if rtol.is_nan() || rtol < 0.0 {
            return Err(Error::invalid(
                "rtol",
                format!("must be a non-negative number, got {}", python_float(rtol)),
            ));
        }
        let violation = if self.sorted {
            first_asymmetry(
                self.indptr,
                self.indices,
                self.data,
                &self.chunk_bounds,
                rtol,
            )
        } else {
            let (indices, data) = self.sorted_copy();
            first_asymmetry(self.indptr, &indices, &data, &self.chunk_bounds, rtol)
        };
        match violation {
            None => Ok(()),
            Some((row, col, value, transpose_value)) => Err(Error::NotSymmetric {
                what: "A".to_string(),
                row,
                col,
                value,
                transpose_value,
            }),
        }
    }

    /// Indices and values with every row sorted by column (stable, so the
    /// summation order of duplicates is the stored one).
    fn sorted_copy(&self) -> (Vec<I>, Vec<T>) {
        let mut indices = self.indices.to_vec();
        let mut data = self.data.to_vec();
        let chunks = split_by_rows(self.indptr, &self.chunk_bounds, &mut indices, &mut data);
        chunks
            .into_par_iter()
            .for_each_init(Vec::new, |pairs, (rows, idx, vals)| {
                let base = self.indptr[rows.start].to_usize();
                for i in rows {
                    let range =
                        self.indptr[i].to_usize() - base..self.indptr[i + 1].to_usize() - base;
                    let cols = &mut idx[range.clone()];
                    if cols.windows(2).all(|p| p[0] <= p[1]) {
                        continue;
                    }
                    let vs = &mut vals[range];
                    pairs.clear();
                    pairs.extend(cols.iter().copied().zip(vs.iter().copied()));
                    pairs.sort_by_key(|p: &(I, T)| p.0);
                    for ((c, v), (pc, pv)) in cols.iter_mut().zip(vs.iter_mut()).zip(pairs.iter()) {
                        *c = *pc;
                        *v = *pv;
                    }
                }
            });
        (indices, data)
    }

    /// Row boundaries of the parallel chunks (balanced by `nnz + rows`).
    pub(crate) fn chunk_bounds(&self) -> &[usize] {
        &self.chunk_bounds
    }

    #[inline(always)]
    pub(crate) fn row(&self, i: usize) -> (&'a [I], &'a [T]) {
        let range = self.indptr[i].to_usize()..self.indptr[i + 1].to_usize();
        (&self.indices[range.clone()], &self.data[range])
    }

    /// SpMV over rows `rows`; `y` is exactly those rows of the output.
    fn spmv_rows(&self, rows: Range<usize>, x: &[f64], y: &mut [f64]) {
        let indptr = &self.indptr[rows.start..=rows.end];
        let base = indptr[0].to_usize();
        let indices = &self.indices[base..indptr[indptr.len() - 1].to_usize()];
        let data = &self.data[base..base + indices.len()];
        let mut start = 0;
        for (yi, end) in y.iter_mut().zip(&indptr[1..]) {
            let end = end.to_usize() - base;
            let cols = &indices[start..end];
            let vals = &data[start..end];
            // Two accumulators halve the dependent add chain on short rows
            // (7-point stencils); the memory stream is the same.
            let mut even = 0.0;
            let mut odd = 0.0;
            let mut pairs_c = cols.chunks_exact(2);
            let mut pairs_v = vals.chunks_exact(2);
            for (c, v) in (&mut pairs_c).zip(&mut pairs_v) {
                even += v[0].to_f64() * x[c[0].to_usize()];
                odd += v[1].to_f64() * x[c[1].to_usize()];
            }
            for (c, v) in pairs_c.remainder().iter().zip(pairs_v.remainder()) {
                even += v.to_f64() * x[c.to_usize()];
            }
            *yi = even + odd;
            start = end;
        }
    }

    /// SpMM for a fixed small number of columns: the accumulators live in
    /// registers and each matrix entry is loaded once for all `K` vectors.
    fn spmm_rows_fixed<const K: usize>(&self, rows: Range<usize>, x: &[f64], y: &mut [f64]) {
        let indptr = &self.indptr[rows.start..=rows.end];
        let base = indptr[0].to_usize();
        let indices = &self.indices[base..indptr[indptr.len() - 1].to_usize()];
        let data = &self.data[base..base + indices.len()];
        let mut start = 0;
        for (y_row, end) in y.chunks_exact_mut(K).zip(&indptr[1..]) {
            let end = end.to_usize() - base;
            let mut acc = [0.0f64; K];
            for (&c, &v) in indices[start..end].iter().zip(&data[start..end]) {
                let v = v.to_f64();
                let offset = c.to_usize() * K;
                let x_row: &[f64; K] = x[offset..offset + K].try_into().expect("K-wide row");
                for k in 0..K {
                    acc[k] += v * x_row[k];
                }
            }
            y_row.copy_from_slice(&acc);
            start = end;
        }
    }

    /// SpMM for any width: accumulate straight into `Y`'s row, which stays in L1.
    fn spmm_rows_any(&self, rows: Range<usize>, x: &[f64], y: &mut [f64], ncols: usize) {
        let indptr = &self.indptr[rows.start..=rows.end];
        let base = indptr[0].to_usize();
        let indices = &self.indices[base..indptr[indptr.len() - 1].to_usize()];
        let data = &self.data[base..base + indices.len()];
        let mut start = 0;
        for (y_row, end) in y.chunks_exact_mut(ncols).zip(&indptr[1..]) {
            let end = end.to_usize() - base;
            y_row.fill(0.0);
            for (&c, &v) in indices[start..end].iter().zip(&data[start..end]) {
                let v = v.to_f64();
                let offset = c.to_usize() * ncols;
                for (yk, xk) in y_row.iter_mut().zip(&x[offset..offset + ncols]) {
                    *yk += v * xk;
                }
            }
            start = end;
        }
    }

    fn spmm_rows(&self, rows: Range<usize>, x: &[f64], y: &mut [f64], ncols: usize) {
        match ncols {
            1 => self.spmv_rows(rows, x, y),
            2 => self.spmm_rows_fixed::<2>(rows, x, y),
            3 => self.spmm_rows_fixed::<3>(rows, x, y),
            4 => self.spmm_rows_fixed::<4>(rows, x, y),
            5 => self.spmm_rows_fixed::<5>(rows, x, y),
            6 => self.spmm_rows_fixed::<6>(rows, x, y),
            7 => self.spmm_rows_fixed::<7>(rows, x, y),
            8 => self.spmm_rows_fixed::<8>(rows, x, y),
            _ => self.spmm_rows_any(rows, x, y, ncols),
        }
    }

    /// Runs `kernel(rows, y_rows)` over the chunks in parallel; `y` has
    /// `width` values per row and each task gets exactly its rows' slice.
    fn for_each_chunk<F>(&self, y: &mut [f64], width: usize, kernel: &F)
    where
        F: Fn(Range<usize>, &mut [f64]) + Sync,
    {
        fn recurse<F: Fn(Range<usize>, &mut [f64]) + Sync>(
            bounds: &[usize],
            y: &mut [f64],
            width: usize,
            kernel: &F,
        ) {
            if bounds.len() == 2 {
                kernel(bounds[0]..bounds[1], y);
                return;
            }
            let mid = bounds.len() / 2;
            let (lo, hi) = y.split_at_mut((bounds[mid] - bounds[0]) * width);
            rayon::join(
                || recurse(&bounds[..=mid], lo, width, kernel),
                || recurse(&bounds[mid..], hi, width, kernel),
            );
        }
        recurse(&self.chunk_bounds, y, width, kernel);
    }
}

impl<T: Value, I: Index> SymOp for CsrRef<'_, T, I> {
    fn dim(&self) -> usize {
        self.n
    }

    fn data_precision(&self) -> f64 {
        T::UNIT_ROUNDOFF
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        check_len("x", x.len(), self.n)?;
        check_len("y", y.len(), self.n)?;
        self.for_each_chunk(y, 1, &|rows, y_rows| self.spmv_rows(rows, x, y_rows));
        Ok(())
    }

    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        check_block_len(self.n, x, y, ncols)?;
        if ncols == 0 {
            return Ok(());
        }
        self.for_each_chunk(y, ncols, &|rows, y_rows| {
            self.spmm_rows(rows, x, y_rows, ncols)
        });
        Ok(())
    }
}

/// `X` and `Y` both hold `n x ncols` values (row-major blocks).
pub(crate) fn check_block_len(n: usize, x: &[f64], y: &[f64], ncols: usize) -> Result<()> {
    let len = n
        .checked_mul(ncols)
        .ok_or_else(|| Error::invalid("ncols", format!("n * ncols overflows (ncols = {ncols})")))?;
    check_len("X", x.len(), len)?;
    check_len("Y", y.len(), len)
}

pub(crate) fn check_len(what: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(Error::shape(
            what,
            format!("length {expected}"),
            format!("length {got}"),
        ));
    }
    Ok(())
}

/// Elements per sequential scan in [`par_position_first`].
const SCAN_BLOCK: usize = 1 << 16;

/// `slice.iter().position(predicate)`, in parallel over blocks. (Rayon's own
/// `position_first` pays per-element synchronisation: ~30 ns per entry here.)
pub(crate) fn par_position_first<V: Sync, P: Fn(&V) -> bool + Sync>(
    slice: &[V],
    predicate: P,
) -> Option<usize> {
    slice
        .par_chunks(SCAN_BLOCK)
        .enumerate()
        .find_map_first(|(block, values)| {
            values
                .iter()
                .position(&predicate)
                .map(|k| block * SCAN_BLOCK + k)
        })
}

fn validate_indptr<I: Index>(indptr: &[I], nnz: usize) -> Result<()> {
    let first = indptr[0];
    if first.try_to_usize() != Some(0) {
        return Err(Error::structure(
            "A.indptr",
            format!("indptr[0] must be 0, got {first}"),
        ));
    }
    let rows = indptr.len() - 1;
    let decrease = (0..rows.div_ceil(SCAN_BLOCK))
        .into_par_iter()
        .find_map_first(|block| {
            let start = block * SCAN_BLOCK;
            let end = (start + SCAN_BLOCK).min(rows);
            indptr[start..=end]
                .windows(2)
                .position(|w| w[1] < w[0])
                .map(|k| start + k)
        });
    if let Some(i) = decrease {
        return Err(Error::structure(
            "A.indptr",
            format!(
                "must be non-decreasing, but indptr[{}] = {} < indptr[{i}] = {}",
                i + 1,
                indptr[i + 1],
                indptr[i]
            ),
        ));
    }
    let last = indptr[indptr.len() - 1];
    if last.try_to_usize() != Some(nnz) {
        return Err(Error::structure(
            "A.indptr",
            format!("indptr[nrows] = {last} must equal the number of stored entries, {nnz}"),
        ));
    }
    Ok(())
}

fn validate_indices<I: Index>(indptr: &[I], indices: &[I], n: usize) -> Result<()> {
    let bad = par_position_first(indices, |c| c.try_to_usize().is_none_or(|c| c >= n));
    if let Some(k) = bad {
        // indptr is valid here, so the row holding entry k is found by bisection.
        let row = indptr.partition_point(|p| p.to_usize() <= k) - 1;
        return Err(Error::structure(
            "A.indices",
            format!(
                "row {row} has column index {} outside 0..{n} (at A.indices[{k}])",
                indices[k]
            ),
        ));
    }
    Ok(())
}

/// Row boundaries cutting `nnz + rows` work into about `target` equal chunks.
pub(crate) fn balanced_chunks<I: Index>(indptr: &[I], target: usize) -> Vec<usize> {
    let n = indptr.len() - 1;
    let total = indptr[n].to_usize() + n;
    let chunks = (total / MIN_CHUNK_WORK).clamp(1, target.max(1));
    let mut bounds = Vec::with_capacity(chunks + 1);
    bounds.push(0);
    for c in 1..chunks {
        let goal = total / chunks * c;
        // indptr[r] + r is strictly increasing, so bisection finds the first
        // row boundary at or past the goal.
        let mut lo = 0;
        let mut hi = n;
        while lo < hi {
            let mid = (lo + hi) / 2;
            if indptr[mid].to_usize() + mid < goal {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo > *bounds.last().expect("non-empty") && lo < n {
            bounds.push(lo);
        }
    }
    bounds.push(n);
    bounds
}

type RowChunk<'s, I, T> = (Range<usize>, &'s mut [I], &'s mut [T]);

/// Cuts `indices`/`data` into the disjoint pieces belonging to each row chunk.
fn split_by_rows<'s, I: Index, T>(
    indptr: &[I],
    bounds: &[usize],
    mut indices: &'s mut [I],
    mut data: &'s mut [T],
) -> Vec<RowChunk<'s, I, T>> {
    let mut chunks = Vec::with_capacity(bounds.len());
    for w in bounds.windows(2) {
        let len = indptr[w[1]].to_usize() - indptr[w[0]].to_usize();
        let (idx_head, idx_tail) = std::mem::take(&mut indices).split_at_mut(len);
        let (val_head, val_tail) = std::mem::take(&mut data).split_at_mut(len);
        chunks.push((w[0]..w[1], idx_head, val_head));
        indices = idx_tail;
        data = val_tail;
    }
    chunks
}

/// Sum of the entries of the sorted row `(cols, vals)` at column `col`.
#[inline]
fn sorted_row_entry<I: Index, T: Value>(cols: &[I], vals: &[T], col: usize) -> f64 {
    let start = cols.partition_point(|c| c.to_usize() < col);
    cols[start..]
        .iter()
        .zip(&vals[start..])
        .take_while(|(c, _)| c.to_usize() == col)
        .map(|(_, v)| v.to_f64())
        .sum()
}

/// First `(row, col, A[row, col], A[col, row])` breaking symmetry, in row-major
/// order, for a matrix whose rows are sorted by column.
fn first_asymmetry<I: Index, T: Value>(
    indptr: &[I],
    indices: &[I],
    data: &[T],
    bounds: &[usize],
    rtol: f64,
) -> Option<(usize, usize, f64, f64)> {
    let row = |i: usize| {
        let range = indptr[i].to_usize()..indptr[i + 1].to_usize();
        (&indices[range.clone()], &data[range])
    };
    bounds.par_windows(2).find_map_first(|w| {
        for i in w[0]..w[1] {
            let (cols, vals) = row(i);
            let mut k = 0;
            while k < cols.len() {
                let col = cols[k].to_usize();
                let mut value = 0.0;
                while k < cols.len() && cols[k].to_usize() == col {
                    value += vals[k].to_f64();
                    k += 1;
                }
                if col == i {
                    continue;
                }
                let (mirror_cols, mirror_vals) = row(col);
                let mirror = sorted_row_entry(mirror_cols, mirror_vals, i);
                if (value - mirror).abs() > rtol * value.abs().max(mirror.abs()) {
                    return Some((i, col, value, mirror));
                }
            }
        }
        None
    })
}

/// What validation established about a CSR matrix, kept so that the same
/// buffers can be borrowed again later without re-validating them (the Python
/// operator borrows SciPy's arrays afresh for every product).
#[derive(Debug, Clone)]
pub struct CsrLayout {
    sorted: bool,
    chunk_bounds: Vec<usize>,
}

impl<'a, T: Value, I: Index> CsrRef<'a, T, I> {
    /// The facts established by [`CsrRef::new`], for [`CsrRef::from_layout`].
    pub fn layout(&self) -> CsrLayout {
        CsrLayout {
            sorted: self.sorted,
            chunk_bounds: self.chunk_bounds.clone(),
        }
    }

    /// Re-borrow buffers validated earlier. With `layout = None` this is
    /// [`CsrRef::new`]. With a layout only the O(1) length checks run: the
    /// caller vouches that the buffers were validated into that layout and not
    /// modified since. That promise is about correct results, not memory
    /// safety: every index is bounds-checked, so a buffer changed behind our
    /// back can at worst panic, never read out of bounds.
    pub fn from_layout(
        n: usize,
        indptr: &'a [I],
        indices: &'a [I],
        data: &'a [T],
        layout: Option<&CsrLayout>,
    ) -> Result<Self> {
        let Some(layout) = layout else {
            return Self::new(n, n, indptr, indices, data);
        };
        if indptr.len() != n + 1
            || indices.len() != data.len()
            || layout.chunk_bounds.last() != Some(&n)
        {
            return Err(Error::structure(
                "A",
                "its buffers changed size since the operator was built",
            ));
        }
        Ok(CsrRef {
            n,
            indptr,
            indices,
            data,
            sorted: layout.sorted,
            chunk_bounds: layout.chunk_bounds.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand_xoshiro::rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;
    use std::time::Instant;

    pub(crate) fn uniform(rng: &mut Xoshiro256PlusPlus) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// Random symmetric matrix in CSR form with shuffled rows, duplicate
    /// entries (a symmetric value split in two) and some empty rows.
    /// Returns (indptr, indices, data, dense row-major of the summed matrix).
    pub(crate) fn random_symmetric(
        n: usize,
        density: f64,
        seed: u64,
    ) -> (Vec<usize>, Vec<usize>, Vec<f64>, Vec<f64>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut dense = vec![0.0; n * n];
        let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        let empty_rows: Vec<bool> = (0..n).map(|_| n > 1 && rng.next_u64() % 5 == 0).collect();
        for i in 0..n {
            for j in i..n {
                if empty_rows[i] || empty_rows[j] {
                    continue;
                }
                let keep = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if keep > density && i != j {
                    continue;
                }
                let value = uniform(&mut rng);
                dense[i * n + j] = value;
                dense[j * n + i] = value;
                if rng.next_u64() % 4 == 0 {
                    // Stored twice in each triangle: duplicates must be summed.
                    let part = uniform(&mut rng);
                    rows[i].push((j, part));
                    rows[i].push((j, value - part));
                    if i != j {
                        rows[j].push((i, value - part));
                        rows[j].push((i, part));
                    }
                } else {
                    rows[i].push((j, value));
                    if i != j {
                        rows[j].push((i, value));
                    }
                }
            }
        }
        let mut indptr = vec![0];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for row in &mut rows {
            // Fisher-Yates shuffle: unsorted indices.
            for k in (1..row.len()).rev() {
                let swap = (rng.next_u64() % (k as u64 + 1)) as usize;
                row.swap(k, swap);
            }
            for &(c, v) in row.iter() {
                indices.push(c);
                data.push(v);
            }
            indptr.push(indices.len());
        }
        (indptr, indices, data, dense)
    }

    pub(crate) fn dense_product(dense: &[f64], n: usize, x: &[f64], ncols: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * ncols];
        for i in 0..n {
            for j in 0..n {
                for c in 0..ncols {
                    y[i * ncols + c] += dense[i * n + j] * x[j * ncols + c];
                }
            }
        }
        y
    }

    pub(crate) fn assert_close(got: &[f64], expected: &[f64], tol: f64) {
        assert_eq!(got.len(), expected.len());
        let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                (g - e).abs() <= tol * scale,
                "entry {k}: got {g}, expected {e}"
            );
        }
    }

    fn check_products<T: Value, I: Index>(
        indptr: &[I],
        indices: &[I],
        data: &[T],
        dense: &[f64],
        n: usize,
        tol: f64,
        seed: u64,
    ) {
        let a = CsrRef::new(n, n, indptr, indices, data).unwrap();
        assert_eq!(a.dim(), n);
        assert_eq!(a.nnz(), indices.len());
        a.check_symmetric(T::SYMMETRY_RTOL).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        for ncols in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 13] {
            let x: Vec<f64> = (0..n * ncols).map(|_| uniform(&mut rng)).collect();
            let expected = dense_product(dense, n, &x, ncols);
            let mut y = vec![f64::NAN; n * ncols];
            if ncols == 1 {
                a.apply(&x, &mut y).unwrap();
                assert_close(&y, &expected, tol);
                y.fill(f64::NAN);
            }
            a.apply_block(&x, &mut y, ncols).unwrap();
            assert_close(&y, &expected, tol);
        }
        let diag: Vec<f64> = (0..n).map(|i| dense[i * n + i]).collect();
        assert_close(&a.diagonal(), &diag, tol);
    }

    pub(crate) fn convert<I: TryFrom<usize>>(v: &[usize]) -> Vec<I>
    where
        I::Error: std::fmt::Debug,
    {
        v.iter().map(|&k| I::try_from(k).unwrap()).collect()
    }

    /// (seed, n, density) of the random matrices products are checked on.
    pub(crate) const PRODUCT_CASES: [(u64, usize, f64); 5] = [
        (1, 1, 1.0),
        (2, 2, 1.0),
        (3, 17, 0.3),
        (4, 60, 0.1),
        (5, 300, 0.05),
    ];

    #[test]
    fn products_match_dense_reference_for_all_types() {
        for (seed, n, density) in PRODUCT_CASES {
            let (indptr, indices, data, dense) = random_symmetric(n, density, seed);
            let data32: Vec<f32> = data.iter().map(|&v| v as f32).collect();
            // The f32 reference uses the same rounded values, summed as stored.
            let (ip32, ix32) = (convert::<i32>(&indptr), convert::<i32>(&indices));
            let (ip64, ix64) = (convert::<i64>(&indptr), convert::<i64>(&indices));
            check_products(&ip32, &ix32, &data, &dense, n, 1e-12, seed);
            check_products(&ip64, &ix64, &data, &dense, n, 1e-12, seed);
            check_products(&ip32, &ix32, &data32, &dense, n, 1e-6, seed);
            check_products(&ip64, &ix64, &data32, &dense, n, 1e-6, seed);
        }
    }

    #[test]
    fn products_are_parallel_and_correct_on_a_large_matrix() {
        // Large enough for several chunks, with a power-law-like heavy row.
        let n = 40_000;
        let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for i in 0..n {
            rows[i].push((i, 4.0));
            if i + 1 < n {
                rows[i].push((i + 1, -1.0));
                rows[i + 1].push((i, -1.0));
            }
        }
        for j in (1..n).step_by(3) {
            rows[0].push((j, 0.5));
            rows[j].push((0, 0.5));
        }
        let mut indptr = vec![0i64];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for row in &rows {
            for &(c, v) in row {
                indices.push(c as i64);
                data.push(v);
            }
            indptr.push(indices.len() as i64);
        }
        let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
        assert!(a.chunk_bounds.len() > 2 || rayon::current_num_threads() == 1);
        a.check_symmetric(0.0).unwrap();
        let x: Vec<f64> = (0..n * 3)
            .map(|k| ((k * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let mut expected = vec![0.0; n * 3];
        for (i, row) in rows.iter().enumerate() {
            for &(c, v) in row {
                for k in 0..3 {
                    expected[i * 3 + k] += v * x[c * 3 + k];
                }
            }
        }
        let mut y = vec![0.0; n * 3];
        a.apply_block(&x, &mut y, 3).unwrap();
        assert_close(&y, &expected, 1e-13);
        let column: Vec<f64> = (0..n).map(|i| x[i * 3]).collect();
        let mut y1 = vec![0.0; n];
        a.apply(&column, &mut y1).unwrap();
        let expected1: Vec<f64> = (0..n).map(|i| expected[i * 3]).collect();
        assert_close(&y1, &expected1, 1e-13);
    }

    #[test]
    fn gershgorin_bounds_enclose_the_spectrum() {
        // Tridiagonal [-1, 2, -1]: spectrum in (0, 4), Gershgorin gives [0, 4].
        let n = 10;
        let mut indptr = vec![0i32];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for i in 0..n {
            if i > 0 {
                indices.push(i as i32 - 1);
                data.push(-1.0f64);
            }
            indices.push(i as i32);
            data.push(2.0);
            if i + 1 < n {
                indices.push(i as i32 + 1);
                data.push(-1.0);
            }
            indptr.push(indices.len() as i32);
        }
        let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
        assert_eq!(a.gershgorin_bounds(), (0.0, 4.0));
        assert!(a.sorted_indices());
        assert_eq!(a.diagonal(), vec![2.0; n]);
    }

    #[test]
    fn symmetry_violations_are_reported_at_the_first_entry() {
        // [[1, 2, 0], [2, 1, 3], [0, 0, 1]]: A[1, 2] = 3 has no mirror.
        let indptr = [0i32, 2, 5, 6];
        let indices = [0i32, 1, 2, 0, 1, 2];
        let data = [1.0f64, 2.0, 3.0, 2.0, 1.0, 1.0];
        let a = CsrRef::new(3, 3, &indptr, &indices, &data).unwrap();
        assert!(!a.sorted_indices());
        assert_eq!(
            a.check_symmetric(0.0),
            Err(Error::NotSymmetric {
                what: "A".to_string(),
                row: 1,
                col: 2,
                value: 3.0,
                transpose_value: 0.0
            })
        );
        // A mirror that differs by rounding passes with a tolerance, not without.
        let data = [1.0f64, 2.0, 1.0, 2.0 * (1.0 + 1e-15), 1.0, 1.0];
        let indices = [0i32, 1, 1, 0, 2, 2];
        let indptr = [0i32, 2, 4, 6];
        // row 1: cols (1, 0); row 2: cols (2, 2) -> [[1,2,0],[2+,1,0],[0,0,2]]
        let a = CsrRef::new(3, 3, &indptr, &indices, &data).unwrap();
        a.check_symmetric(f64::SYMMETRY_RTOL).unwrap();
        match a.check_symmetric(0.0) {
            Err(Error::NotSymmetric { row: 0, col: 1, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // Duplicates are summed before comparing: 1 + 1 at (0, 1) mirrors 2 at (1, 0).
        let indptr = [0i64, 2, 3];
        let indices = [1i64, 1, 0];
        let data = [1.0f32, 1.0, 2.0];
        let a = CsrRef::new(2, 2, &indptr, &indices, &data).unwrap();
        a.check_symmetric(0.0).unwrap();
        let data = [1.0f32, 1.5, 2.0];
        let err = CsrRef::new(2, 2, &indptr, &indices, &data)
            .unwrap()
            .check_symmetric(f32::SYMMETRY_RTOL)
            .unwrap_err();
        assert!(
            err.to_string().contains("A[0, 1] = 2.5 but A[1, 0] = 2.0"),
            "{err}"
        );
        assert!(matches!(
            a.check_symmetric(-1.0),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn random_asymmetry_is_found_with_unsorted_and_sorted_rows() {
        let (indptr, indices, mut data, _) = random_symmetric(50, 0.2, 9);
        let (ip, ix) = (convert::<i32>(&indptr), convert::<i32>(&indices));
        let k = data.len() / 2;
        data[k] += 0.25;
        let row = indptr.partition_point(|&p| p <= k) - 1;
        let err = CsrRef::new(50, 50, &ip, &ix, &data)
            .unwrap()
            .check_symmetric(1e-12);
        match err {
            Err(Error::NotSymmetric { row: r, col: c, .. }) => {
                // The first violation in row-major order is either the
                // perturbed entry or its mirror, whichever comes first.
                let col = indices[k];
                assert_eq!((r, c), (row.min(col), row.max(col)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn expect_structure<T: Value, I: Index>(
        n: (usize, usize),
        indptr: &[I],
        indices: &[I],
        data: &[T],
        what: &str,
        needle: &str,
    ) {
        let err = CsrRef::new(n.0, n.1, indptr, indices, data).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with(what), "{message}");
        assert!(message.contains(needle), "{message}");
    }

    #[test]
    fn malformed_inputs_are_rejected_with_named_arguments() {
        let good_ptr = [0i32, 1, 2];
        let good_idx = [0i32, 1];
        let good_val = [1.0f64, 1.0];
        expect_structure(
            (2, 3),
            &good_ptr,
            &good_idx,
            &good_val,
            "A has the wrong shape",
            "square",
        );
        expect_structure(
            (0, 0),
            &[0i32],
            &[],
            &[] as &[f64],
            "A has the wrong shape",
            "square",
        );
        expect_structure(
            (2, 2),
            &[0i32, 2],
            &good_idx,
            &good_val,
            "A.indptr",
            "length 3",
        );
        expect_structure(
            (2, 2),
            &good_ptr,
            &good_idx,
            &[1.0f64],
            "A.data",
            "length 2",
        );
        expect_structure(
            (2, 2),
            &[1i32, 1, 2],
            &good_idx,
            &good_val,
            "A.indptr",
            "indptr[0] must be 0",
        );
        expect_structure(
            (2, 2),
            &[0i32, 2, 1],
            &good_idx,
            &good_val,
            "A.indptr",
            "non-decreasing",
        );
        expect_structure(
            (2, 2),
            &[0i32, 1, 1],
            &good_idx,
            &good_val,
            "A.indptr",
            "must equal",
        );
        expect_structure(
            (2, 2),
            &[0i64, 1, 2],
            &[0i64, -1],
            &good_val,
            "A.indices",
            "row 1",
        );
        expect_structure(
            (2, 2),
            &good_ptr,
            &[2i32, 1],
            &good_val,
            "A.indices",
            "row 0 has column index 2",
        );
        let err = CsrRef::new(2, 2, &good_ptr, &good_idx, &[1.0f32, f32::NAN]).unwrap_err();
        assert_eq!(
            err,
            Error::NonFinite {
                what: "A.data".to_string(),
                index: 1
            }
        );
        let a = CsrRef::new(2, 2, &good_ptr, &good_idx, &good_val).unwrap();
        let mut y = [0.0; 2];
        assert!(matches!(a.apply(&[1.0], &mut y), Err(Error::Shape { .. })));
        assert!(matches!(
            a.apply_block(&[1.0; 4], &mut y, 2),
            Err(Error::Shape { .. })
        ));
        a.apply_block(&[], &mut [], 0).unwrap();
    }

    pub(crate) fn laplacian_3d(m: usize) -> (Vec<i32>, Vec<i32>, Vec<f64>) {
        let n = m * m * m;
        let mut indptr = Vec::with_capacity(n + 1);
        let mut indices = Vec::with_capacity(7 * n);
        let mut data = Vec::with_capacity(7 * n);
        indptr.push(0);
        for i in 0..m {
            for j in 0..m {
                for k in 0..m {
                    let row = (i * m + j) * m + k;
                    let mut push = |col: usize, v: f64| {
                        indices.push(col as i32);
                        data.push(v);
                    };
                    if i > 0 {
                        push(row - m * m, -1.0);
                    }
                    if j > 0 {
                        push(row - m, -1.0);
                    }
                    if k > 0 {
                        push(row - 1, -1.0);
                    }
                    push(row, 6.0);
                    if k + 1 < m {
                        push(row + 1, -1.0);
                    }
                    if j + 1 < m {
                        push(row + m, -1.0);
                    }
                    if i + 1 < m {
                        push(row + m * m, -1.0);
                    }
                    indptr.push(indices.len() as i32);
                }
            }
        }
        (indptr, indices, data)
    }

    fn bench_one<T: Value>(label: &str, indptr: &[i32], indices: &[i32], data: &[T], ncols: usize) {
        let n = indptr.len() - 1;
        let start = Instant::now();
        let a = CsrRef::new(n, n, indptr, indices, data).unwrap();
        let validate = start.elapsed();
        let start = Instant::now();
        a.check_symmetric(T::SYMMETRY_RTOL).unwrap();
        let symmetric = start.elapsed();
        let x: Vec<f64> = (0..n * ncols).map(|k| (k % 17) as f64).collect();
        let mut y = vec![0.0; n * ncols];
        // The machine is shared: report the best of several rounds.
        let best_of = |product: &mut dyn FnMut()| {
            product();
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..10 {
                        product();
                    }
                    start.elapsed().as_secs_f64() / 10.0
                })
                .fold(f64::INFINITY, f64::min)
        };
        let parallel = best_of(&mut || a.apply_block(&x, &mut y, ncols).unwrap());
        let mut y_sequential = vec![0.0; n * ncols];
        let sequential = best_of(&mut || a.spmm_rows(0..n, &x, &mut y_sequential, ncols));
        assert_eq!(y, y_sequential, "parallel and sequential products differ");
        let bytes =
            (a.nnz() * (std::mem::size_of::<T>() + 4) + (n + 1) * 4 + 2 * n * 8 * ncols) as f64;
        println!(
            "{label}: n={n} nnz={} ncols={ncols}: {:.2} ms/product = {:.1} GB/s on {} threads \
             (one thread: {:.2} ms, {:.1} GB/s); new {:.1} ms, check_symmetric {:.1} ms",
            a.nnz(),
            parallel * 1e3,
            bytes / parallel / 1e9,
            rayon::current_num_threads(),
            sequential * 1e3,
            bytes / sequential / 1e9,
            validate.as_secs_f64() * 1e3,
            symmetric.as_secs_f64() * 1e3,
        );
    }

    fn spmv_simple(a: &CsrRef<f64, i32>, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate() {
            let (cols, vals) = a.row(i);
            let mut acc = 0.0;
            for (&c, &v) in cols.iter().zip(vals) {
                acc += v * x[c as usize];
            }
            *yi = acc;
        }
    }

    fn spmv_four(a: &CsrRef<f64, i32>, x: &[f64], y: &mut [f64]) {
        let indptr = a.indptr;
        let indices = a.indices;
        let data = a.data;
        let mut start = 0usize;
        for (yi, end) in y.iter_mut().zip(&indptr[1..]) {
            let end = *end as usize;
            let cols = &indices[start..end];
            let vals = &data[start..end];
            let mut acc = [0.0f64; 4];
            let mut c4 = cols.chunks_exact(4);
            let mut v4 = vals.chunks_exact(4);
            for (c, v) in (&mut c4).zip(&mut v4) {
                acc[0] += v[0] * x[c[0] as usize];
                acc[1] += v[1] * x[c[1] as usize];
                acc[2] += v[2] * x[c[2] as usize];
                acc[3] += v[3] * x[c[3] as usize];
            }
            for (c, v) in c4.remainder().iter().zip(v4.remainder()) {
                acc[0] += v * x[*c as usize];
            }
            *yi = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            start = end;
        }
    }

    #[test]
    #[ignore]
    fn bench_kernel_variants() {
        let (indptr, indices, data) = laplacian_3d(100);
        let n = indptr.len() - 1;
        let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
        let x: Vec<f64> = (0..n).map(|k| (k % 17) as f64).collect();
        let mut y = vec![0.0; n];
        for round in 0..3 {
            let time = |f: &mut dyn FnMut()| {
                f();
                let start = Instant::now();
                for _ in 0..20 {
                    f();
                }
                start.elapsed().as_secs_f64() / 20.0 * 1e3
            };
            let mut y_simple = vec![0.0; n];
            let mut y_four = vec![0.0; n];
            let mut y_parallel = vec![0.0; n];
            let two = time(&mut || a.spmv_rows(0..n, &x, &mut y));
            let simple = time(&mut || spmv_simple(&a, &x, &mut y_simple));
            let four = time(&mut || spmv_four(&a, &x, &mut y_four));
            let par = time(&mut || a.apply(&x, &mut y_parallel).unwrap());
            // Integer-valued data: every summation order is exact.
            assert!(y == y_simple && y == y_four && y == y_parallel);
            println!(
                "round {round}: two-acc {two:.2} ms, simple {simple:.2} ms, four {four:.2} ms, parallel {par:.2} ms"
            );
        }
    }

    #[test]
    #[ignore]
    fn bench_laplacian_100_cubed() {
        let (indptr, indices, data) = laplacian_3d(100);
        let data32: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        bench_one("f64/i32 SpMV", &indptr, &indices, &data, 1);
        bench_one("f32/i32 SpMV", &indptr, &indices, &data32, 1);
        bench_one("f64/i32 SpMM", &indptr, &indices, &data, 8);
        bench_one("f64/i32 SpMM", &indptr, &indices, &data, 16);
        // Unsorted rows (each row reversed): check_symmetric sorts a copy first.
        let mut reversed = indices.clone();
        let mut reversed_data = data.clone();
        for w in indptr.windows(2) {
            reversed[w[0] as usize..w[1] as usize].reverse();
            reversed_data[w[0] as usize..w[1] as usize].reverse();
        }
        let n = indptr.len() - 1;
        let a = CsrRef::new(n, n, &indptr, &reversed, &reversed_data).unwrap();
        assert!(!a.sorted_indices());
        let start = Instant::now();
        a.check_symmetric(0.0).unwrap();
        println!(
            "check_symmetric with unsorted rows: {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
