//! Dense building blocks of the passes: faer GEMMs on row-major views and
//! chunked, rayon-parallel elementwise loops.
//!
//! Elementwise work is split into fixed-size chunks (not rayon's adaptive
//! splits) and every reduction sums its per-chunk partials in chunk order, so
//! results are bit-for-bit reproducible whatever the thread count.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::activation::Activation;
use super::scalar::Real;

/// Elements per parallel task: large enough to amortise a rayon task, small
/// enough to balance two to dozens of threads on batch x width matrices.
const CHUNK: usize = 1 << 14;

/// Multiply-adds below which a GEMM runs on the calling thread.
const PARALLEL_GEMM_WORK: usize = 1 << 21;

pub fn view<T>(data: &[T], nrows: usize, ncols: usize) -> MatRef<'_, T> {
    MatRef::from_row_major_slice(data, nrows, ncols)
}

pub fn view_mut<T>(data: &mut [T], nrows: usize, ncols: usize) -> MatMut<'_, T> {
    MatMut::from_row_major_slice_mut(data, nrows, ncols)
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`).
pub fn gemm<T: Real>(dst: MatMut<'_, T>, accumulate: bool, lhs: MatRef<'_, T>, rhs: MatRef<'_, T>) {
    let work = dst.nrows() * dst.ncols() * lhs.ncols();
    let par = if work >= PARALLEL_GEMM_WORK && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    let beta = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    let parallel = matches!(par, Par::Rayon(_));
    matmul(dst, beta, lhs, rhs, T::cast(1.0), par);
    if parallel {
        crate::core::simd_state::clear_upper_state_all_threads();
    } else {
        crate::core::simd_state::clear_upper_state();
    }
}

/// Every row of the row-major `dst` (width `row.len()`) set to `row`.
pub fn fill_rows<T: Real>(dst: &mut [T], row: &[T]) {
    let width = row.len();
    dst.par_chunks_mut(rows_per_chunk(width) * width)
        .for_each(|chunk| {
            for dst_row in chunk.chunks_exact_mut(width) {
                dst_row.copy_from_slice(row);
            }
        });
}

/// Column sums of the row-major `rows x width` matrix `data`, accumulated in f64.
pub fn column_sums<T: Real>(data: &[T], width: usize, out: &mut [T]) {
    let partials: Vec<Vec<f64>> = data
        .par_chunks(rows_per_chunk(width) * width)
        .map(|chunk| {
            let mut sums = vec![0.0f64; width];
            for row in chunk.chunks_exact(width) {
                add_row(&mut sums, row);
            }
            sums
        })
        .collect();
    write_sums(&partials, out);
}

/// Rows per parallel task for row-wise loops over `width`-wide rows; also
/// fixes the order of column-sum reductions.
fn rows_per_chunk(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

#[inline(always)]
fn add_row<T: Real>(sums: &mut [f64], row: &[T]) {
    for (s, &value) in sums.iter_mut().zip(row) {
        *s += value.to_f64();
    }
}

/// `out` = the per-chunk partial column sums added in chunk order.
pub fn write_sums<T: Real>(partials: &[Vec<f64>], out: &mut [T]) {
    let mut total = vec![0.0f64; out.len()];
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    for (o, t) in out.iter_mut().zip(total) {
        *o = T::cast(t);
    }
}

/// Which derivatives [`activate`] stores next to the activation values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Derivatives {
    None,
    First,
    Second,
}

/// `z ← σ(z)`, with `slope ← σ'(z)` and `curvature ← σ''(z)` when asked for.
pub fn activate<T: Real>(
    act: Activation,
    z: &mut [T],
    slope: &mut [T],
    curvature: &mut [T],
    want: Derivatives,
) {
    // One monomorphised loop per (activation, outputs) pair, so the unused
    // derivatives are never computed and each loop body inlines `eval`.
    fn run<T: Real, F: Fn(T) -> (T, T, T) + Sync>(
        f: F,
        z: &mut [T],
        slope: &mut [T],
        curvature: &mut [T],
        want: Derivatives,
    ) {
        match want {
            Derivatives::None => z.par_chunks_mut(CHUNK).for_each(|zc| {
                for v in zc {
                    *v = f(*v).0;
                }
            }),
            Derivatives::First => z
                .par_chunks_mut(CHUNK)
                .zip(slope.par_chunks_mut(CHUNK))
                .for_each(|(zc, sc)| {
                    for (v, s) in zc.iter_mut().zip(sc) {
                        let (a, d1, _) = f(*v);
                        *v = a;
                        *s = d1;
                    }
                }),
            Derivatives::Second => z
                .par_chunks_mut(CHUNK)
                .zip(slope.par_chunks_mut(CHUNK))
                .zip(curvature.par_chunks_mut(CHUNK))
                .for_each(|((zc, sc), cc)| {
                    for ((v, s), c) in zc.iter_mut().zip(sc).zip(cc) {
                        let (a, d1, d2) = f(*v);
                        *v = a;
                        *s = d1;
                        *c = d2;
                    }
                }),
        }
    }
    match act {
        Activation::Tanh => run(|v| Activation::Tanh.eval(v), z, slope, curvature, want),
        Activation::Relu => run(|v| Activation::Relu.eval(v), z, slope, curvature, want),
        Activation::Gelu => run(|v| Activation::Gelu.eval(v), z, slope, curvature, want),
        Activation::Sigmoid => run(|v| Activation::Sigmoid.eval(v), z, slope, curvature, want),
        Activation::Identity => run(|v| Activation::Identity.eval(v), z, slope, curvature, want),
    }
}

/// `a ⊙= b`.
pub fn scale_by<T: Real>(a: &mut [T], b: &[T]) {
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .for_each(|(ac, bc)| {
            for (x, &y) in ac.iter_mut().zip(bc) {
                *x *= y;
            }
        });
}

/// Backward step through a hidden layer from g = ∂L/∂a:
/// `curvature ← g ⊙ σ''` (kept for the R-backward pass), then `g ← g ⊙ σ'` (= δ).
pub fn backprop_with_curvature<T: Real>(g: &mut [T], slope: &[T], curvature: &mut [T]) {
    g.par_chunks_mut(CHUNK)
        .zip(slope.par_chunks(CHUNK))
        .zip(curvature.par_chunks_mut(CHUNK))
        .for_each(|((gc, sc), cc)| {
            for ((x, &s), c) in gc.iter_mut().zip(sc).zip(cc) {
                *c *= *x;
                *x *= s;
            }
        });
}

/// R-forward through a hidden layer, from the GEMM part of R{z} in `r_z`
/// (rows of `width`) and the bias direction `c` (None without biases): with
/// t = R{z} + c, `r_act ← σ' ⊙ t` and `r_z ← (g ⊙ σ'') ⊙ t`, the curvature
/// term R-backward adds to R{δ} (zero when `weighted_curvature` is empty:
/// σ'' = 0). Adding c here, not broadcast into r_z before the GEMMs, saves a
/// pass over r_z and lets the first GEMM overwrite instead of accumulate.
pub fn tangent_with_curvature<T: Real>(
    r_z: &mut [T],
    r_act: &mut [T],
    slope: &[T],
    weighted_curvature: &[T],
    bias: Option<&[T]>,
    width: usize,
) {
    let zeros;
    let c = match bias {
        Some(c) => c,
        None => {
            zeros = vec![T::default(); width];
            &zeros[..]
        }
    };
    let block = rows_per_chunk(width) * width;
    let rows = r_z
        .par_chunks_mut(block)
        .zip(r_act.par_chunks_mut(block))
        .zip(slope.par_chunks(block));
    if weighted_curvature.is_empty() {
        rows.for_each(|((zc, ac), sc)| {
            for ((zr, ar), sr) in zc
                .chunks_exact_mut(width)
                .zip(ac.chunks_exact_mut(width))
                .zip(sc.chunks_exact(width))
            {
                for (((rz, ra), &s), &ci) in zr.iter_mut().zip(ar).zip(sr).zip(c) {
                    *ra = s * (*rz + ci);
                    *rz = T::default();
                }
            }
        });
    } else {
        rows.zip(weighted_curvature.par_chunks(block))
            .for_each(|(((zc, ac), sc), cc)| {
                for (((zr, ar), sr), cr) in zc
                    .chunks_exact_mut(width)
                    .zip(ac.chunks_exact_mut(width))
                    .zip(sc.chunks_exact(width))
                    .zip(cc.chunks_exact(width))
                {
                    for ((((rz, ra), &s), &w), &ci) in zr.iter_mut().zip(ar).zip(sr).zip(cr).zip(c)
                    {
                        let t = *rz + ci;
                        *ra = s * t;
                        *rz = w * t;
                    }
                }
            });
    }
}

/// `r ← σ' ⊙ (r + c)` row by row (rows of `width`; `bias` None: c = 0): the
/// Gauss–Newton R-forward through a hidden layer, bias added as in
/// [`tangent_with_curvature`].
pub fn scale_rows_with_bias<T: Real>(r: &mut [T], slope: &[T], bias: Option<&[T]>, width: usize) {
    let Some(c) = bias else {
        return scale_by(r, slope);
    };
    let block = rows_per_chunk(width) * width;
    r.par_chunks_mut(block)
        .zip(slope.par_chunks(block))
        .for_each(|(rc, sc)| {
            for (rr, sr) in rc.chunks_exact_mut(width).zip(sc.chunks_exact(width)) {
                for ((x, &s), &ci) in rr.iter_mut().zip(sr).zip(c) {
                    *x = s * (*x + ci);
                }
            }
        });
}

/// `acc += t ⊙ slope` (rows of `width`), returning the partial column sums
/// of the new `acc` per row chunk, in the order [`write_sums`] adds them:
/// the bias part of the layer below, without another pass over `acc`.
pub fn add_scaled_with_column_sums<T: Real>(
    acc: &mut [T],
    t: &[T],
    slope: &[T],
    width: usize,
) -> Vec<Vec<f64>> {
    let block = rows_per_chunk(width) * width;
    acc.par_chunks_mut(block)
        .zip(t.par_chunks(block).zip(slope.par_chunks(block)))
        .map(|(ac, (tc, sc))| {
            let mut sums = vec![0.0f64; width];
            for ((ar, tr), sr) in ac
                .chunks_exact_mut(width)
                .zip(tc.chunks_exact(width))
                .zip(sc.chunks_exact(width))
            {
                for ((a, &x), &s) in ar.iter_mut().zip(tr).zip(sr) {
                    *a += x * s;
                }
                add_row(&mut sums, ar);
            }
            sums
        })
        .collect()
}

/// `dst ← src` converting f64 → T.
pub fn cast_from_f64<T: Real>(dst: &mut [T], src: &[f64]) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (x, &y) in d.iter_mut().zip(s) {
                *x = T::cast(y);
            }
        });
}

/// `dst ← src` converting T → f64.
pub fn cast_to_f64<T: Real>(dst: &mut [f64], src: &[T]) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (x, &y) in d.iter_mut().zip(s) {
                *x = y.to_f64();
            }
        });
}

/// `dst` (cols x rows, row-major) = the transpose of `src` (rows x cols, row-major).
///
/// faer's GEMM runs about twice as fast on aᵀδ when aᵀ is stored contiguously
/// than through a transposed view of a (measured on the 1797 x 1024 layers), so
/// the weight-gradient GEMMs transpose their left factor first; the copy costs
/// a few percent of the GEMM.
pub fn transpose<T: Real>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 32;
    if rows == 0 || cols == 0 {
        return;
    }
    dst.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(block, chunk)| {
            let first_col = block * TILE;
            let n_cols = chunk.len() / rows;
            for row_start in (0..rows).step_by(TILE) {
                let row_end = (row_start + TILE).min(rows);
                for c in 0..n_cols {
                    let dst_row = &mut chunk[c * rows..(c + 1) * rows];
                    for r in row_start..row_end {
                        dst_row[r] = src[r * cols + first_col + c];
                    }
                }
            }
        });
}
