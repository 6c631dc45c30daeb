//! Half storage of a symmetric sparse matrix: its upper triangle, and a
//! parallel symmetric product that reads every stored entry once.
//!
//! # Storage
//! Row `i` holds the entries `(i, j)`, `j > i`, columns ascending and
//! duplicates summed; the diagonal is a dense vector when most rows store one
//! (7-point stencils, Hessians: `n` values without indices are cheaper than
//! `n` indexed entries) and otherwise the first entry of its row. A product
//! moves `(n + 1)·s_i + nnz_strict·(s_i + s_v) [+ n·s_v]` bytes of matrix
//! instead of the full CSR's `(n + 1)·s_i + nnz·(s_i + s_v)`: 0.545x for a
//! 3D Laplacian with float64/int32, about 0.51x for a random matrix.
//!
//! # Product
//! `y = A x = U x + Uᵀ x + D x`. Each stored `u_ij` (i < j) is used twice:
//! gathered, `y_i += u_ij x_j`, and scattered, `y_j += u_ij x_i`. The scatter is
//! what a row-parallel CSR kernel avoids, and it is made parallel here without
//! atomics by a fixed schedule (a static form of "per-thread partial rows"):
//!
//! - Rows are cut at construction into parts `[a_p, b_p)` of balanced work.
//!   Part p writes only its own rows of `y` and a private buffer covering
//!   `[b_p, r_p)`, where `r_p − 1` is the largest column its rows store. On a
//!   banded matrix (stencils, ordered meshes) that buffer is one bandwidth
//!   long and stays in L2; on a matrix whose entries reach everywhere the
//!   schedule falls back to one part per thread, bounding the buffers by
//!   `(threads − 1)·n` (see `Schedule::build`).
//! - Scatters into a part's own rows go straight into `y`. Rows are zeroed just
//!   ahead of the first scatter that can reach them (a precomputed reach per
//!   block of rows), so `y` is written once, while it is in cache, as a plain
//!   CSR product writes it.
//! - A second parallel pass adds the buffers into `y`, part after part.
//!
//! Every `y_j` is summed in an order fixed by the schedule (its own part's
//! rows in order, then the buffers of earlier parts in part order), so products
//! are bit-for-bit reproducible for a given schedule, i.e. for the thread count
//! the operator was built with, however rayon runs the parts. Against full
//! storage the summation order differs, hence results differ by rounding
//! (≤ a few ulps of `Σ|a_ij x_j|` per entry).
//!
//! Block products `Y = A X` (row-major `n x k`) run the same kernel on up to
//! eight columns at a time, loading each entry once for all of them.

use std::sync::Mutex;

use faer::traits::pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use crate::core::error::Result;
use crate::core::op::SymOp;
use crate::core::sparse::csr::{
    balanced_chunks, check_block_len, check_len, CsrRef, Index, Value, CHUNKS_PER_THREAD,
};

/// Rows per block of the zeroing schedule: `y` is zeroed one block ahead of
/// the farthest scatter that block can make.
const ZERO_BLOCK: usize = 256;
/// Rows per task of the pass that adds the parts' buffers into `y`.
const REDUCE_ROWS: usize = 1 << 14;
/// Columns handled by one pass of the block kernel (accumulators in registers).
const MAX_WIDTH: usize = 8;
/// A finer schedule is taken only while its buffers cost at most this
/// fraction of the bytes one product reads from the matrix anyway (a buffer
/// entry is written, zeroed and read back: three touches).
const BUFFER_BUDGET: f64 = 0.125;

/// The upper triangle of a symmetric matrix, owned, with its product schedule.
#[derive(Debug)]
pub struct UpperCsr<T: Value, I: Index> {
    n: usize,
    indptr: Vec<I>,
    indices: Vec<I>,
    data: Vec<T>,
    /// `Some`: the whole diagonal, and rows hold only `j > i`. `None`: a row's
    /// diagonal entry, if stored, is its first.
    diagonal: Option<Vec<T>>,
    schedule: Schedule,
    /// Buffers of earlier products, reused: a fresh multi-megabyte buffer
    /// would fault in its pages on every product.
    buffers: Mutex<Vec<Vec<f64>>>,
}

/// Which rows each part of a product owns and how far its scatters reach.
#[derive(Debug, Clone)]
struct Schedule {
    /// `0 = a_0 < a_1 < ... < a_P = n`; part p owns rows `a_p..a_{p+1}`.
    bounds: Vec<usize>,
    /// `r_p`: part p scatters into rows `< r_p` (`r_p >= a_{p+1}`).
    reach: Vec<usize>,
    /// Start of part p's buffer (in rows) within one product's buffer.
    offsets: Vec<usize>,
    /// A cut finer than one part per thread kept its buffers within budget:
    /// the entries stay near the diagonal.
    local: bool,
    /// Per block of [`ZERO_BLOCK`] rows: one past the largest row any of
    /// its rows (or an earlier one) scatters into, at least the block's end.
    block_reach: Vec<usize>,
}

impl<T: Value, I: Index> UpperCsr<T, I> {
    /// The upper triangle of `a` (which the caller has checked, or vouches, to
    /// be symmetric: the strictly lower entries are dropped, unread). One
    /// parallel pass counts each row's entries, a second writes them.
    pub fn from_csr(a: &CsrRef<'_, T, I>) -> Self {
        let n = a.nrows();
        let bounds = a.chunk_bounds();
        let diagonal_rows: usize = bounds
            .par_windows(2)
            .map(|w| {
                (w[0]..w[1])
                    .filter(|&i| a.row(i).0.iter().any(|c| c.to_usize() == i))
                    .count()
            })
            .sum();
        let entry_bytes = std::mem::size_of::<T>() + std::mem::size_of::<I>();
        let dense_diagonal = diagonal_rows * entry_bytes > n * std::mem::size_of::<T>();

        // Pass 1: entries per row (distinct columns j > i, plus the diagonal
        // when it stays in the rows).
        let mut counts = vec![0usize; n];
        split_rows(&mut counts, bounds, 1)
            .into_par_iter()
            .for_each_init(Vec::new, |row, (rows, counts)| {
                for (i, count) in rows.zip(counts.iter_mut()) {
                    upper_row(a, i, row);
                    *count = row.len() - usize::from(dense_diagonal && starts_diagonal(row, i));
                }
            });
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(I::from_usize(0));
        let mut total = 0usize;
        for &c in &counts {
            total += c;
            indptr.push(I::from_usize(total));
        }
        drop(counts);

        // Pass 2: the entries themselves, each row chunk writing its own slice.
        let mut indices = vec![I::from_usize(0); total];
        let mut data = vec![T::from_f64(0.0); total];
        let mut diagonal = vec![T::from_f64(0.0); if dense_diagonal { n } else { 0 }];
        let mut pieces = Vec::with_capacity(bounds.len());
        {
            let (mut idx, mut val) = (&mut indices[..], &mut data[..]);
            let mut diag = &mut diagonal[..];
            for w in bounds.windows(2) {
                let len = indptr[w[1]].to_usize() - indptr[w[0]].to_usize();
                let (idx_head, idx_tail) = std::mem::take(&mut idx).split_at_mut(len);
                let (val_head, val_tail) = std::mem::take(&mut val).split_at_mut(len);
                let rows = if dense_diagonal { w[1] - w[0] } else { 0 };
                let (diag_head, diag_tail) = std::mem::take(&mut diag).split_at_mut(rows);
                pieces.push((w[0]..w[1], idx_head, val_head, diag_head));
                (idx, val, diag) = (idx_tail, val_tail, diag_tail);
            }
        }
        pieces
            .into_par_iter()
            .for_each_init(Vec::new, |row, (rows, idx, val, diag)| {
                let first = rows.start;
                let mut k = 0;
                for i in rows {
                    upper_row(a, i, row);
                    let mut entries = &row[..];
                    if dense_diagonal && starts_diagonal(row, i) {
                        diag[i - first] = T::from_f64(row[0].1);
                        entries = &row[1..];
                    }
                    for &(c, v) in entries {
                        idx[k] = I::from_usize(c);
                        val[k] = T::from_f64(v);
                        k += 1;
                    }
                }
            });
        let matrix_bytes = (n + 1 + total) * std::mem::size_of::<I>()
            + (total + diagonal.len()) * std::mem::size_of::<T>();
        let schedule = Schedule::build(
            &indptr,
            &indices,
            matrix_bytes,
            rayon::current_num_threads(),
        );
        UpperCsr {
            n,
            indptr,
            indices,
            data,
            diagonal: dense_diagonal.then_some(diagonal),
            schedule,
            buffers: Mutex::new(Vec::new()),
        }
    }

    /// Bytes of matrix storage (what one product reads of the matrix).
    pub fn nbytes(&self) -> usize {
        let diagonal = self.diagonal.as_ref().map_or(0, |d| d.len());
        (self.indptr.len() + self.indices.len()) * std::mem::size_of::<I>()
            + (self.data.len() + diagonal) * std::mem::size_of::<T>()
    }

    /// Stored entries of the triangle (the dense diagonal counts `n`).
    pub fn nnz(&self) -> usize {
        self.indices.len() + self.diagonal.as_ref().map_or(0, |d| d.len())
    }

    /// Whether the entries stay near the diagonal (a band, a stencil, an
    /// ordered mesh), so that products are cut finer than one part per
    /// thread with small buffers. Otherwise (entries reaching across the
    /// matrix) each scatter is a random read-modify-write, and the symmetric
    /// product is slower than a full-storage one reading twice the bytes
    /// (2.5x slower measured on a random 16-per-row matrix at 1M rows).
    pub fn is_local(&self) -> bool {
        self.schedule.local
    }

    /// Number of parts the products are cut into (one per thread or more).
    pub fn n_parts(&self) -> usize {
        self.schedule.bounds.len() - 1
    }

    /// The triangle as CSR arrays with the diagonal first in each row where
    /// stored (for export: SciPy, the inertia factorisation).
    pub fn to_csr_arrays(&self) -> (Vec<I>, Vec<I>, Vec<T>) {
        let Some(diagonal) = &self.diagonal else {
            return (self.indptr.clone(), self.indices.clone(), self.data.clone());
        };
        let mut indptr = Vec::with_capacity(self.n + 1);
        let mut indices = Vec::with_capacity(self.nnz());
        let mut data = Vec::with_capacity(self.nnz());
        indptr.push(I::from_usize(0));
        for (i, &d) in diagonal.iter().enumerate() {
            indices.push(I::from_usize(i));
            data.push(d);
            let (cols, vals) = self.row(i);
            indices.extend_from_slice(cols);
            data.extend_from_slice(vals);
            indptr.push(I::from_usize(indices.len()));
        }
        (indptr, indices, data)
    }

    /// `indptr[first..=end]`, the indices and values of those rows, and the
    /// position of the first (the rows' offsets are relative to it).
    #[inline(always)]
    fn rows_slices(&self, first: usize, end: usize) -> (&[I], &[I], &[T], usize) {
        let indptr = &self.indptr[first..=end];
        let base = indptr[0].to_usize();
        let indices = &self.indices[base..indptr[end - first].to_usize()];
        let data = &self.data[base..base + indices.len()];
        (indptr, indices, data, base)
    }

    #[inline(always)]
    fn row(&self, i: usize) -> (&[I], &[T]) {
        let range = self.indptr[i].to_usize()..self.indptr[i + 1].to_usize();
        (&self.indices[range.clone()], &self.data[range])
    }

    /// `Y[:, col0..col0 + W] = A X[:, col0..col0 + W]` for row-major blocks
    /// of `stride` columns.
    fn product<const W: usize>(&self, x: &[f64], y: &mut [f64], stride: usize, col0: usize) {
        let schedule = &self.schedule;
        let rows_buffered = *schedule.offsets.last().expect("offsets end");
        let mut buffer = self
            .buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        buffer.resize(rows_buffered * W, 0.0);

        // Phase 1: every part on its own rows of y and its own buffer.
        let mut tasks = Vec::with_capacity(self.n_parts());
        {
            let (mut y_rest, mut buf_rest) = (&mut *y, &mut buffer[..]);
            for p in 0..self.n_parts() {
                let rows = schedule.bounds[p]..schedule.bounds[p + 1];
                let buffered = schedule.reach[p] - rows.end;
                let (y_part, y_tail) =
                    std::mem::take(&mut y_rest).split_at_mut(rows.len() * stride);
                let (b_part, b_tail) = std::mem::take(&mut buf_rest).split_at_mut(buffered * W);
                tasks.push((rows, y_part, b_part));
                (y_rest, buf_rest) = (y_tail, b_tail);
            }
        }
        tasks.into_par_iter().for_each(|(rows, y_part, b_part)| {
            if W == 1 && stride == 1 {
                match &self.diagonal {
                    Some(d) => self.vector_part::<true>(rows, d, x, y_part, b_part),
                    None => self.vector_part::<false>(rows, &[], x, y_part, b_part),
                }
            } else {
                Arch::new().dispatch(PartProduct::<T, I, W> {
                    op: self,
                    rows,
                    x,
                    y: y_part,
                    buffer: b_part,
                    stride,
                    col0,
                })
            }
        });

        // Phase 2: add the buffers, earlier parts first, over fixed row blocks.
        if rows_buffered > 0 {
            let buffer = &buffer[..];
            y.par_chunks_mut(REDUCE_ROWS * stride)
                .enumerate()
                .for_each(|(block, y_block)| {
                    let start = block * REDUCE_ROWS;
                    let end = start + y_block.len() / stride;
                    for p in 0..self.n_parts() {
                        let (lo, hi) = (
                            schedule.bounds[p + 1].max(start),
                            schedule.reach[p].min(end),
                        );
                        let base = schedule.offsets[p] * W;
                        let first = schedule.bounds[p + 1];
                        for r in lo..hi {
                            let src = &buffer[base + (r - first) * W..][..W];
                            let dst = &mut y_block[(r - start) * stride + col0..][..W];
                            for c in 0..W {
                                dst[c] += src[c];
                            }
                        }
                    }
                });
        }
        self.buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer);
    }

    /// [`part_product`](Self::part_product) for one contiguous vector: the
    /// SpMV kernel, with the row's slices cut once and the diagonal's storage
    /// a compile-time choice, so the loop keeps its state in registers.
    #[inline(never)]
    fn vector_part<const DENSE_DIAGONAL: bool>(
        &self,
        rows: std::ops::Range<usize>,
        diagonal: &[T],
        x: &[f64],
        y: &mut [f64],
        buffer: &mut [f64],
    ) {
        let (first, end) = (rows.start, rows.end);
        buffer.fill(0.0);
        let (indptr, indices, data, base) = self.rows_slices(first, end);
        for (zero, block) in self.schedule.blocks(first, end) {
            y[zero.start - first..zero.end - first].fill(0.0);
            for i in block {
                let r = i - first;
                // Index loops, not zipped iterators: the ci profile left
                // `Zip::new` and `partition_point` as calls per row.
                let (mut k, e) = (indptr[r].to_usize() - base, indptr[r + 1].to_usize() - base);
                let xi = x[i];
                let mut acc = 0.0;
                if DENSE_DIAGONAL {
                    acc = diagonal[i].to_f64() * xi;
                } else if k < e && indices[k].to_usize() == i {
                    acc = data[k].to_f64() * xi;
                    k += 1;
                }
                // Columns ascend: the few reaching past the part come last.
                let mut local = e;
                while local > k && indices[local - 1].to_usize() >= end {
                    local -= 1;
                }
                while k < local {
                    let (j, v) = (indices[k].to_usize(), data[k].to_f64());
                    acc += v * x[j];
                    y[j - first] += v * xi;
                    k += 1;
                }
                while k < e {
                    let (j, v) = (indices[k].to_usize(), data[k].to_f64());
                    acc += v * x[j];
                    buffer[j - end] += v * xi;
                    k += 1;
                }
                y[r] += acc;
            }
        }
    }

    /// One part: rows `rows` of `y` (`y_part`, `stride` values per row, the
    /// columns `col0..col0 + W` written) and the part's buffer (`W` per row,
    /// rows `rows.end..reach`). Index loops as in [`vector_part`](Self::vector_part).
    #[inline(always)]
    fn part_product<const W: usize>(
        &self,
        rows: std::ops::Range<usize>,
        x: &[f64],
        y: &mut [f64],
        buffer: &mut [f64],
        stride: usize,
        col0: usize,
    ) {
        let (first, end) = (rows.start, rows.end);
        buffer.fill(0.0);
        let (indptr, indices, data, base) = self.rows_slices(first, end);
        let load = |i: usize| -> [f64; W] {
            let start = i * stride + col0;
            let mut row = [0.0; W];
            row.copy_from_slice(&x[start..start + W]);
            row
        };
        for (zero, block) in self.schedule.blocks(first, end) {
            for r in zero {
                let start = (r - first) * stride + col0;
                y[start..start + W].fill(0.0);
            }
            for i in block {
                let r = i - first;
                let (mut k, e) = (indptr[r].to_usize() - base, indptr[r + 1].to_usize() - base);
                let xi = load(i);
                let mut acc = [0.0f64; W];
                let d = match &self.diagonal {
                    Some(d) => d[i].to_f64(),
                    None if k < e && indices[k].to_usize() == i => {
                        k += 1;
                        data[k - 1].to_f64()
                    }
                    None => 0.0,
                };
                for c in 0..W {
                    acc[c] = d * xi[c];
                }
                let mut local = e;
                while local > k && indices[local - 1].to_usize() >= end {
                    local -= 1;
                }
                while k < local {
                    let (j, v) = (indices[k].to_usize(), data[k].to_f64());
                    let xj = load(j);
                    let start = (j - first) * stride + col0;
                    let yj = &mut y[start..start + W];
                    for c in 0..W {
                        acc[c] += v * xj[c];
                        yj[c] += v * xi[c];
                    }
                    k += 1;
                }
                while k < e {
                    let (j, v) = (indices[k].to_usize(), data[k].to_f64());
                    let xj = load(j);
                    let start = (j - end) * W;
                    let bj = &mut buffer[start..start + W];
                    for c in 0..W {
                        acc[c] += v * xj[c];
                        bj[c] += v * xi[c];
                    }
                    k += 1;
                }
                let start = r * stride + col0;
                let yi = &mut y[start..start + W];
                for c in 0..W {
                    yi[c] += acc[c];
                }
            }
        }
    }

    fn block_product(&self, x: &[f64], y: &mut [f64], ncols: usize) {
        let mut col0 = 0;
        while col0 < ncols {
            let width = (ncols - col0).min(MAX_WIDTH);
            match width {
                1 => self.product::<1>(x, y, ncols, col0),
                2 => self.product::<2>(x, y, ncols, col0),
                3 => self.product::<3>(x, y, ncols, col0),
                4 => self.product::<4>(x, y, ncols, col0),
                5 => self.product::<5>(x, y, ncols, col0),
                6 => self.product::<6>(x, y, ncols, col0),
                7 => self.product::<7>(x, y, ncols, col0),
                _ => self.product::<8>(x, y, ncols, col0),
            }
            col0 += width;
        }
    }
}

/// One part of a block product, compiled for the widest SIMD the CPU has
/// (runtime dispatch through faer's `pulp`, as the basis sweeps are): eight
/// accumulators and eight `x_i` need 16 SSE registers and spilled, but fit
/// AVX2's or AVX-512's.
struct PartProduct<'a, T: Value, I: Index, const W: usize> {
    op: &'a UpperCsr<T, I>,
    rows: std::ops::Range<usize>,
    x: &'a [f64],
    y: &'a mut [f64],
    buffer: &'a mut [f64],
    stride: usize,
    col0: usize,
}

impl<T: Value, I: Index, const W: usize> WithSimd for PartProduct<'_, T, I, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let PartProduct {
            op,
            rows,
            x,
            y,
            buffer,
            stride,
            col0,
        } = self;
        op.part_product::<W>(rows, x, y, buffer, stride, col0);
    }
}

/// The blocks of rows of one part, each with the rows of `y` to zero before
/// it (see [`Schedule::blocks`]).
struct Blocks<'s> {
    block_reach: &'s [usize],
    zeroed: usize,
    next: usize,
    end: usize,
}

impl Iterator for Blocks<'_> {
    type Item = (std::ops::Range<usize>, std::ops::Range<usize>);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let block = self.next / ZERO_BLOCK;
        let rows = self.next..((block + 1) * ZERO_BLOCK).min(self.end);
        let target = self.block_reach[block].max(rows.end).min(self.end);
        let zero = self.zeroed..target.max(self.zeroed);
        self.zeroed = zero.end;
        self.next = rows.end;
        Some((zero, rows))
    }
}

impl Schedule {
    /// Rows `first..end` in blocks of [`ZERO_BLOCK`], each with the rows of
    /// `y` that must be zeroed before it: those up to the farthest row the
    /// block scatters into (within the part) not zeroed before.
    #[inline(always)]
    fn blocks(&self, first: usize, end: usize) -> Blocks<'_> {
        Blocks {
            block_reach: &self.block_reach,
            zeroed: first,
            next: first,
            end,
        }
    }

    /// The finest cut (up to [`CHUNKS_PER_THREAD`] parts per thread, for load
    /// balance) whose buffers stay within [`BUFFER_BUDGET`] of the matrix
    /// bytes; one part per thread when none does.
    fn build<I: Index>(
        indptr: &[I],
        indices: &[I],
        matrix_bytes: usize,
        threads: usize,
    ) -> Schedule {
        let n = indptr.len() - 1;
        // The largest column stored in each row (the row itself if none).
        let last_column = |i: usize| {
            let end = indptr[i + 1].to_usize();
            if end > indptr[i].to_usize() {
                indices[end - 1].to_usize()
            } else {
                i
            }
        };
        let mut parts = threads.max(1) * CHUNKS_PER_THREAD;
        let local;
        let bounds = loop {
            let bounds = balanced_chunks(indptr, parts);
            let buffered: usize = bounds
                .par_windows(2)
                .map(|w| {
                    let reach = (w[0]..w[1]).map(|i| last_column(i) + 1).max().unwrap_or(0);
                    reach.saturating_sub(w[1])
                })
                .sum();
            let affordable = (buffered * 8 * 3) as f64 <= BUFFER_BUDGET * matrix_bytes as f64;
            if affordable || parts <= threads.max(1) {
                local = affordable && parts > threads.max(1);
                break bounds;
            }
            parts = (parts / 2).max(threads.max(1));
        };
        let reach: Vec<usize> = bounds
            .windows(2)
            .map(|w| {
                (w[0]..w[1])
                    .map(|i| last_column(i) + 1)
                    .max()
                    .unwrap_or(0)
                    .max(w[1])
            })
            .collect();
        let mut offsets = Vec::with_capacity(reach.len() + 1);
        offsets.push(0);
        for (p, r) in reach.iter().enumerate() {
            offsets.push(offsets[p] + (r - bounds[p + 1]));
        }
        let mut block_reach: Vec<usize> = (0..n.div_ceil(ZERO_BLOCK))
            .into_par_iter()
            .map(|b| {
                let rows = b * ZERO_BLOCK..((b + 1) * ZERO_BLOCK).min(n);
                let end = rows.end;
                rows.map(|i| last_column(i) + 1)
                    .max()
                    .unwrap_or(end)
                    .max(end)
            })
            .collect();
        for b in 1..block_reach.len() {
            block_reach[b] = block_reach[b].max(block_reach[b - 1]);
        }
        Schedule {
            bounds,
            reach,
            offsets,
            local,
            block_reach,
        }
    }
}

/// Row `i`'s entries with column `>= i`, columns ascending, duplicates summed
/// (in f64, the order stored), into `out`.
fn upper_row<T: Value, I: Index>(a: &CsrRef<'_, T, I>, i: usize, out: &mut Vec<(usize, f64)>) {
    out.clear();
    let (cols, vals) = a.row(i);
    let start = if a.sorted_indices() {
        cols.partition_point(|c| c.to_usize() < i)
    } else {
        0
    };
    out.extend(
        cols[start..]
            .iter()
            .zip(&vals[start..])
            .filter(|(c, _)| c.to_usize() >= i)
            .map(|(c, v)| (c.to_usize(), v.to_f64())),
    );
    if !a.sorted_indices() {
        out.sort_by_key(|e| e.0);
    }
    out.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
}

fn starts_diagonal(row: &[(usize, f64)], i: usize) -> bool {
    row.first().is_some_and(|e| e.0 == i)
}

/// `values` cut into the per-row slices of each row chunk (`width` per row).
fn split_rows<'v>(
    values: &'v mut [usize],
    bounds: &[usize],
    width: usize,
) -> Vec<(std::ops::Range<usize>, &'v mut [usize])> {
    let mut rest = values;
    let mut out = Vec::with_capacity(bounds.len());
    for w in bounds.windows(2) {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut((w[1] - w[0]) * width);
        out.push((w[0]..w[1], head));
        rest = tail;
    }
    out
}

impl<T: Value, I: Index> SymOp for UpperCsr<T, I> {
    fn dim(&self) -> usize {
        self.n
    }

    fn data_precision(&self) -> f64 {
        T::UNIT_ROUNDOFF
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        check_len("x", x.len(), self.n)?;
        check_len("y", y.len(), self.n)?;
        self.product::<1>(x, y, 1, 0);
        Ok(())
    }

    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        check_block_len(self.n, x, y, ncols)?;
        self.block_product(x, y, ncols);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
