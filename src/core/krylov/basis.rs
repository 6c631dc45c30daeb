//! Gram–Schmidt sweeps over a column-major Krylov basis: projections `Vᵀ w`,
//! updates `w -= V h`, and both fused in one pass over the basis.
//!
//! The basis may be stored in float64 or, for operators that are themselves
//! only float32-accurate, in float32 ([`BasisElement`]): the sweeps are
//! memory-bound, so narrower columns halve their time. Arithmetic is float64
//! throughout (a float32 entry widens exactly).
//!
//! Every reduction sums fixed row chunks of [`REDUCE_CHUNK`] in parallel and
//! then the chunk sums in order, so results are bit-for-bit reproducible
//! whatever the thread count. The kernels are compiled for the widest SIMD the
//! CPU has (via faer's `pulp` dispatch) but use no fused multiply-adds, so they
//! also give the same bits on every x86-64 instruction set.

use crate::core::error::Result;
use crate::core::op::SymOp;
use faer::traits::pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Rows per reduction chunk: the unit of parallel work and of the fixed
/// summation order that makes reductions deterministic.
pub(crate) const REDUCE_CHUNK: usize = 8192;
/// Rows per sub-block inside a chunk: the update `w -= V h` and the following
/// projection `Vᵀ w` of one sub-block run back to back while its slices of the
/// basis (≤ a few hundred KiB for typical `ncv`) are still in L1/L2.
const FUSE_BLOCK: usize = 1024;

/// How a basis column's entries are stored; computed with as float64.
pub(crate) trait BasisElement: Copy + Default + Send + Sync + 'static {
    /// Half the spacing of stored values near 1: a stored unit vector is off
    /// by at most this in norm, hence in any inner product with a unit vector.
    const ROUNDING: f64;
    fn widen(self) -> f64;
    fn narrow(x: f64) -> Self;
    /// The column itself when it is already float64 (no copy needed to hand
    /// it to an operator).
    fn as_f64(column: &[Self]) -> Option<&[f64]>;
    /// The column itself when it is float32 (for operators that take float32 input).
    fn as_f32(column: &[Self]) -> Option<&[f32]>;
    /// The first `len` entries as float64 (no copy when already float64).
    fn into_f64(columns: Vec<Self>, len: usize) -> Vec<f64>;
}

impl BasisElement for f64 {
    const ROUNDING: f64 = f64::EPSILON / 2.0;
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
    #[inline(always)]
    fn narrow(x: f64) -> Self {
        x
    }
    fn as_f64(column: &[Self]) -> Option<&[f64]> {
        Some(column)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn into_f64(mut columns: Vec<Self>, len: usize) -> Vec<f64> {
        columns.truncate(len);
        columns
    }
}

impl BasisElement for f32 {
    const ROUNDING: f64 = f32::EPSILON as f64 / 2.0;
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn narrow(x: f64) -> Self {
        x as f32
    }
    fn as_f64(_: &[Self]) -> Option<&[f64]> {
        None
    }
    fn as_f32(column: &[Self]) -> Option<&[f32]> {
        Some(column)
    }
    fn into_f64(columns: Vec<Self>, len: usize) -> Vec<f64> {
        let mut wide = vec![0.0; len];
        widen_into(&columns[..len], &mut wide, true);
        wide
    }
}

/// `out = column` widened to float64.
pub(crate) fn widen_into<T: BasisElement>(column: &[T], out: &mut [f64], parallel: bool) {
    for_each_chunk_pair(out, column, parallel, |o, c| {
        o.iter_mut().zip(c).for_each(|(o, &c)| *o = c.widen())
    });
}

/// `column = w / divisor`, rounded to the basis' element type: a new basis
/// vector stored in the same pass that normalises it.
pub(crate) fn store_divided<T: BasisElement>(
    w: &[f64],
    divisor: f64,
    column: &mut [T],
    parallel: bool,
) {
    for_each_chunk_pair(column, w, parallel, |c, w| {
        c.iter_mut()
            .zip(w)
            .for_each(|(c, &x)| *c = T::narrow(x / divisor))
    });
}

/// `f` on matching [`REDUCE_CHUNK`] pieces of `out` and `input`, on the
/// pool's threads when `parallel`, else on this one.
fn for_each_chunk_pair<A: Send, B: Sync>(
    out: &mut [A],
    input: &[B],
    parallel: bool,
    f: impl Fn(&mut [A], &[B]) + Sync,
) {
    if parallel {
        out.par_chunks_mut(REDUCE_CHUNK)
            .zip(input.par_chunks(REDUCE_CHUNK))
            .for_each(|(o, i)| f(o, i));
    } else {
        out.chunks_mut(REDUCE_CHUNK)
            .zip(input.chunks(REDUCE_CHUNK))
            .for_each(|(o, i)| f(o, i));
    }
}

/// `w = A q` for a stored basis column: handed over as it is when the
/// operator takes its element type, else through a widened copy in `wide`
/// (exactly the stored vector, so a recurrence stays consistent with it).
pub(crate) fn apply_to_column<T: BasisElement>(
    op: &dyn SymOp,
    q: &[T],
    w: &mut [f64],
    wide: &mut Vec<f64>,
    parallel: bool,
) -> Result<()> {
    if let Some(q) = T::as_f64(q) {
        return op.apply(q, w);
    }
    if let Some(result) = T::as_f32(q).and_then(|q| op.apply_f32_input(q, w)) {
        return result;
    }
    wide.resize(q.len(), 0.0);
    widen_into(q, wide, parallel);
    op.apply(wide, w)
}

/// `w -= Σ_i coeffs[i] v_{first + i}`; returns `‖w‖²` (deterministic chunk order).
pub(crate) fn subtract_columns<T: BasisElement>(
    v: &[T],
    n: usize,
    first: usize,
    coeffs: &[f64],
    w: &mut [f64],
    partials: &mut Vec<f64>,
) -> f64 {
    subtract(v, n, Columns::From(first), coeffs, w, partials)
}

/// `w -= Σ_i coeffs[i] v_{columns[i]}`: [`subtract_columns`] reading only the
/// listed columns.
pub(crate) fn subtract_listed_columns<T: BasisElement>(
    v: &[T],
    n: usize,
    columns: &[usize],
    coeffs: &[f64],
    w: &mut [f64],
    partials: &mut Vec<f64>,
) -> f64 {
    debug_assert_eq!(columns.len(), coeffs.len());
    subtract(v, n, Columns::Listed(columns), coeffs, w, partials)
}

/// Which basis columns the coefficients of a subtraction refer to.
#[derive(Clone, Copy)]
enum Columns<'a> {
    /// `first`, `first + 1`, ...
    From(usize),
    Listed(&'a [usize]),
}

impl Columns<'_> {
    #[inline(always)]
    fn index(self, i: usize) -> usize {
        match self {
            Columns::From(first) => first + i,
            Columns::Listed(columns) => columns[i],
        }
    }
}

fn subtract<T: BasisElement>(
    v: &[T],
    n: usize,
    columns: Columns<'_>,
    coeffs: &[f64],
    w: &mut [f64],
    partials: &mut Vec<f64>,
) -> f64 {
    partials.clear();
    partials.resize(n.div_ceil(REDUCE_CHUNK), 0.0);
    w.par_chunks_mut(REDUCE_CHUNK)
        .zip(partials.par_iter_mut())
        .enumerate()
        .for_each(|(c, (w_chunk, norm2))| {
            *norm2 = Arch::new().dispatch(SubtractChunk {
                v,
                n,
                columns,
                chunk_start: c * REDUCE_CHUNK,
                coeffs,
                w_chunk,
            });
        });
    partials.iter().sum()
}

/// One sweep over fixed row chunks: optionally `w -= V update` first, then
/// `out = Vᵀ w`; returns `‖w‖²` (after the update). `V` is the first `ncols`
/// length-`n` columns of `v`.
pub(crate) fn sweep<T: BasisElement>(
    v: &[T],
    n: usize,
    ncols: usize,
    w: &mut [f64],
    update: Option<&[f64]>,
    partials: &mut Vec<f64>,
    out: &mut [f64],
) -> f64 {
    sweep_columns(v, n, Columns::From(0), ncols, w, update, partials, out)
}

/// `out[i] = v_{columns[i]} · w`; returns `‖w‖²`: [`sweep`]'s projection
/// reading only the listed columns (those whose loss of orthogonality the
/// estimate says may matter).
pub(crate) fn project_listed_columns<T: BasisElement>(
    v: &[T],
    n: usize,
    columns: &[usize],
    w: &mut [f64],
    partials: &mut Vec<f64>,
    out: &mut [f64],
) -> f64 {
    let listed = Columns::Listed(columns);
    sweep_columns(v, n, listed, columns.len(), w, None, partials, out)
}

#[allow(clippy::too_many_arguments)]
fn sweep_columns<T: BasisElement>(
    v: &[T],
    n: usize,
    columns: Columns<'_>,
    ncols: usize,
    w: &mut [f64],
    update: Option<&[f64]>,
    partials: &mut Vec<f64>,
    out: &mut [f64],
) -> f64 {
    let stride = ncols + 1;
    let n_chunks = n.div_ceil(REDUCE_CHUNK);
    partials.clear();
    partials.resize(n_chunks * stride, 0.0);
    w.par_chunks_mut(REDUCE_CHUNK)
        .zip(partials.par_chunks_mut(stride))
        .enumerate()
        .for_each(|(c, (w_chunk, part))| {
            Arch::new().dispatch(SweepChunk {
                v,
                n,
                columns,
                chunk_start: c * REDUCE_CHUNK,
                w_chunk,
                update,
                part,
            })
        });
    out.fill(0.0);
    let mut norm2 = 0.0;
    for part in partials.chunks_exact(stride) {
        for (o, p) in out.iter_mut().zip(part) {
            *o += p;
        }
        norm2 += part[ncols];
    }
    norm2
}

/// One [`REDUCE_CHUNK`] of [`sweep`]; `part` receives `Vᵀ w` and `‖w‖²`.
///
/// Run through `pulp`'s dispatch so that the inlined loops below are compiled
/// for the widest SIMD the CPU offers (AVX2 where present), not just the
/// baseline SSE2 of a portable build. The loops do not use fused
/// multiply-adds, so every instruction set gives bit-identical results.
struct SweepChunk<'a, T> {
    v: &'a [T],
    n: usize,
    columns: Columns<'a>,
    chunk_start: usize,
    w_chunk: &'a mut [f64],
    update: Option<&'a [f64]>,
    part: &'a mut [f64],
}

impl<T: BasisElement> WithSimd for SweepChunk<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let SweepChunk {
            v,
            n,
            columns,
            chunk_start,
            w_chunk,
            update,
            part,
        } = self;
        let (projections, norm2) = part.split_at_mut(part.len() - 1);
        for (b, w_block) in w_chunk.chunks_mut(FUSE_BLOCK).enumerate() {
            let lo = chunk_start + b * FUSE_BLOCK;
            let hi = lo + w_block.len();
            let column = |i: usize| {
                let c = columns.index(i);
                &v[c * n + lo..c * n + hi]
            };
            if let Some(h) = update {
                add_combination(w_block, &column, h, -1.0);
            }
            accumulate_projections(w_block, &column, projections);
            norm2[0] += dot(w_block, w_block);
        }
    }
}

/// One [`REDUCE_CHUNK`] of [`subtract_columns`], SIMD-dispatched like [`SweepChunk`].
struct SubtractChunk<'a, T> {
    v: &'a [T],
    n: usize,
    columns: Columns<'a>,
    chunk_start: usize,
    coeffs: &'a [f64],
    w_chunk: &'a mut [f64],
}

impl<T: BasisElement> WithSimd for SubtractChunk<'_, T> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> f64 {
        let SubtractChunk {
            v,
            n,
            columns,
            chunk_start,
            coeffs,
            w_chunk,
        } = self;
        let hi = chunk_start + w_chunk.len();
        let column = |i: usize| {
            let c = columns.index(i);
            &v[c * n + chunk_start..c * n + hi]
        };
        add_combination(w_chunk, &column, coeffs, -1.0);
        dot(w_chunk, w_chunk)
    }
}

/// `w += sign · Σ_i coeffs[i] column(i)`, four columns per pass over `w`.
#[inline(always)]
fn add_combination<'a, T: BasisElement>(
    w: &mut [f64],
    column: &impl Fn(usize) -> &'a [T],
    coeffs: &[f64],
    sign: f64,
) {
    // Index loops over slices cut to `w.len()` up front: the bounds checks
    // hoist out of the loop and LLVM vectorizes it. (Deeply zipped iterators
    // were left as out-of-line `Zip::next` calls inside pulp's dispatched
    // function, a quarter of the solver's time at n = 1e5.)
    let len = w.len();
    let mut i = 0;
    while i + 4 <= coeffs.len() {
        let (c0, c1, c2, c3) = (coeffs[i], coeffs[i + 1], coeffs[i + 2], coeffs[i + 3]);
        let (x0, x1, x2, x3) = (
            &column(i)[..len],
            &column(i + 1)[..len],
            &column(i + 2)[..len],
            &column(i + 3)[..len],
        );
        for r in 0..len {
            w[r] += sign
                * (c0 * x0[r].widen()
                    + c1 * x1[r].widen()
                    + c2 * x2[r].widen()
                    + c3 * x3[r].widen());
        }
        i += 4;
    }
    for (j, &c) in coeffs.iter().enumerate().skip(i) {
        let x = &column(j)[..len];
        for r in 0..len {
            w[r] += sign * (c * x[r].widen());
        }
    }
}

/// `out[i] += column(i) · w` for every `i < out.len()`, four columns per pass.
#[inline(always)]
fn accumulate_projections<'a, T: BasisElement>(
    w: &[f64],
    column: &impl Fn(usize) -> &'a [T],
    out: &mut [f64],
) {
    let mut i = 0;
    while i + 4 <= out.len() {
        let d = dot4([column(i), column(i + 1), column(i + 2), column(i + 3)], w);
        for (o, x) in out[i..i + 4].iter_mut().zip(d) {
            *o += x;
        }
        i += 4;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        *o += dot(column(j), w);
    }
}

const LANES: usize = 4;

/// Dot product with `LANES` independent accumulators (vectorizable, fixed order).
#[inline(always)]
pub(crate) fn dot<T: BasisElement>(a: &[T], b: &[f64]) -> f64 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let full = len - len % LANES;
    let mut acc = [0.0; LANES];
    let mut i = 0;
    while i < full {
        for l in 0..LANES {
            acc[l] += a[i + l].widen() * b[i + l];
        }
        i += LANES;
    }
    let mut tail = 0.0;
    for r in full..len {
        tail += a[r].widen() * b[r];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Four dot products against one `w`, reading `w` once.
#[inline(always)]
fn dot4<T: BasisElement>(columns: [&[T]; 4], w: &[f64]) -> [f64; 4] {
    let len = w.len();
    let [c0, c1, c2, c3] = columns;
    let (c0, c1, c2, c3) = (&c0[..len], &c1[..len], &c2[..len], &c3[..len]);
    let full = len - len % LANES;
    let mut acc = [[0.0; LANES]; 4];
    let mut i = 0;
    while i < full {
        for l in 0..LANES {
            let wr = w[i + l];
            acc[0][l] += c0[i + l].widen() * wr;
            acc[1][l] += c1[i + l].widen() * wr;
            acc[2][l] += c2[i + l].widen() * wr;
            acc[3][l] += c3[i + l].widen() * wr;
        }
        i += LANES;
    }
    let mut result = [0.0; 4];
    for (c, col) in [c0, c1, c2, c3].iter().enumerate() {
        let mut tail = 0.0;
        for r in full..len {
            tail += col[r].widen() * w[r];
        }
        let a = acc[c];
        result[c] = (a[0] + a[1]) + (a[2] + a[3]) + tail;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ncols` columns of length `n` with entries in (-1, 1), column-major.
    fn basis(n: usize, ncols: usize) -> Vec<f64> {
        (0..n * ncols)
            .map(|i| ((i as f64 * 0.618_033_988_75).fract() - 0.5) * 2.0)
            .collect()
    }

    fn naive_projections(v: &[f64], n: usize, ncols: usize, w: &[f64]) -> Vec<f64> {
        (0..ncols)
            .map(|c| {
                v[c * n..(c + 1) * n]
                    .iter()
                    .zip(w)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn sweeps_match_naive_sums_and_float32_columns_widen_exactly() {
        // n spans several reduction chunks plus a ragged tail; 7 columns
        // exercise both the four-column kernels and the remainder.
        let (n, ncols) = (3 * REDUCE_CHUNK + 1234, 7);
        let narrow: Vec<f32> = basis(n, ncols).iter().map(|&x| x as f32).collect();
        let wide: Vec<f64> = narrow.iter().map(|&x| f64::from(x)).collect();
        let w0: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let update = [0.5, -0.25, 0.125, 1.0, -1.0, 0.75, 0.3];
        let mut partials = Vec::new();

        let mut expected = w0.clone();
        for (c, h) in update.iter().enumerate() {
            for (e, x) in expected.iter_mut().zip(&wide[c * n..(c + 1) * n]) {
                *e -= h * x;
            }
        }
        let expected_projections = naive_projections(&wide, n, ncols, &expected);

        let mut results = Vec::new();
        for run in 0..2 {
            let (mut w, mut out) = (w0.clone(), vec![0.0; ncols]);
            let norm2 = if run == 0 {
                sweep(
                    &wide,
                    n,
                    ncols,
                    &mut w,
                    Some(&update),
                    &mut partials,
                    &mut out,
                )
            } else {
                sweep(
                    &narrow,
                    n,
                    ncols,
                    &mut w,
                    Some(&update),
                    &mut partials,
                    &mut out,
                )
            };
            for (a, b) in w.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-12, "{a} {b}");
            }
            for (a, b) in out.iter().zip(&expected_projections) {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} {b}");
            }
            let exact2: f64 = expected.iter().map(|x| x * x).sum();
            assert!((norm2 - exact2).abs() <= 1e-12 * exact2);
            results.push((w, out, norm2));
        }
        assert_eq!(results[0], results[1], "float32 columns must widen exactly");

        let mut by_subtraction = Vec::new();
        for run in 0..2 {
            let mut w = w0.clone();
            let norm2 = if run == 0 {
                subtract_columns(&wide, n, 0, &update, &mut w, &mut partials)
            } else {
                subtract_columns(&narrow, n, 0, &update, &mut w, &mut partials)
            };
            by_subtraction.push((w, norm2));
        }
        assert_eq!(by_subtraction[0], by_subtraction[1]);
        assert_eq!(by_subtraction[0].0, results[0].0);

        // Listing every column is the same subtraction; listing some equals
        // a subtraction with the others' coefficients zero.
        let all: Vec<usize> = (0..ncols).collect();
        let mut w = w0.clone();
        let norm2 = subtract_listed_columns(&narrow, n, &all, &update, &mut w, &mut partials);
        assert_eq!((w, norm2), by_subtraction[1]);
        let some = [1, 4, 6];
        let some_coeffs: Vec<f64> = some.iter().map(|&c| update[c]).collect();
        let mut zeroed = [0.0; 7];
        some.iter().for_each(|&c| zeroed[c] = update[c]);
        let (mut listed, mut full) = (w0.clone(), w0.clone());
        let listed_norm2 =
            subtract_listed_columns(&wide, n, &some, &some_coeffs, &mut listed, &mut partials);
        let full_norm2 = subtract_columns(&wide, n, 0, &zeroed, &mut full, &mut partials);
        for (a, b) in listed.iter().zip(&full) {
            assert!((a - b).abs() <= 1e-14, "{a} {b}");
        }
        assert!((listed_norm2 - full_norm2).abs() <= 1e-12 * full_norm2);
        let mut offset = w0.clone();
        subtract_columns(&wide, n, 4, &update[4..6], &mut offset, &mut partials);
        let mut by_list = w0.clone();
        subtract_listed_columns(
            &wide,
            n,
            &[4, 5],
            &update[4..6],
            &mut by_list,
            &mut partials,
        );
        assert_eq!(offset, by_list);
    }
}
