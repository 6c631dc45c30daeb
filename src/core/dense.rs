//! A borrowed dense row-major symmetric matrix as an operator.
//!
//! Products (all accumulate in f64):
//! - `y = A x`: a matvec reads each matrix entry once and is memory-bandwidth
//!   bound. f64 storage uses faer's parallel GEMV (1.3 ms against 2.0 ms for
//!   the row loop below at n = 2000 on 2 cores, see `bench_dense_2000`); f32
//!   storage runs rayon over row blocks, each row a dot product widened to f64
//!   with eight independent accumulators so the loop vectorises.
//! - `Y = A X` (row-major `n x ncols`): f64 storage goes straight to faer's
//!   parallel GEMM; f32 storage is widened panel by panel (`PANEL_ROWS` rows
//!   at a time, per thread) and each panel multiplied by a sequential GEMM,
//!   so arithmetic stays in f64 without copying the whole matrix.
//!
//! Symmetry check: `|a_ij - a_ji| <= rtol * max(|a_ij|, |a_ji|)` for `i < j`,
//! visited in `TILE x TILE` tiles so the transposed reads stay in cache; the
//! violation reported is the first in row-major order (always in the upper
//! triangle).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::core::error::{python_float, Error, Result};
use crate::core::op::SymOp;
use crate::core::sparse::csr::{check_len, par_position_first, Value};

/// Rows per rayon task in the matvec: 16 rows of n = 2000 is 256 KB of f64.
const MATVEC_ROWS: usize = 16;
/// Rows widened to f64 at once for the f32 block product.
const PANEL_ROWS: usize = 64;
/// Side of the square tiles compared by the symmetry check.
const TILE: usize = 64;

/// A validated, borrowed, square row-major matrix.
#[derive(Debug, Clone, Copy)]
pub struct DenseRef<'a, T: Value> {
    n: usize,
    data: &'a [T],
}

impl<'a, T: Value> DenseRef<'a, T> {
    /// `data` is the C-contiguous `nrows x ncols` matrix; it must be square,
    /// non-empty and finite.
    pub fn new(nrows: usize, ncols: usize, data: &'a [T]) -> Result<Self> {
        if nrows != ncols || nrows == 0 {
            return Err(Error::shape(
                "M",
                "a non-empty square matrix",
                format!("shape ({nrows}, {ncols})"),
            ));
        }
        let len = nrows
            .checked_mul(ncols)
            .ok_or_else(|| Error::invalid("M", format!("shape ({nrows}, {ncols}) is too large")))?;
        check_len("M", data.len(), len)?;
        if let Some(index) = par_position_first(data, |v| !v.to_f64().is_finite()) {
            return Err(Error::NonFinite {
                what: "M".to_string(),
                index,
            });
        }
        Ok(DenseRef { n: nrows, data })
    }

    pub fn nrows(&self) -> usize {
        self.n
    }

    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.data[i * self.n + i].to_f64())
            .collect()
    }

    /// `Err(NotSymmetric)` at the first (row-major) pair with
    /// `|M[i,j] - M[j,i]| > rtol * max(|M[i,j]|, |M[j,i]|)`; `rtol = 0` demands
    /// exact equality, [`Value::SYMMETRY_RTOL`] is the recommended default.
    pub fn check_symmetric(&self, rtol: f64) -> Result<()> {
        if rtol.is_nan() || rtol < 0.0 {
            return Err(Error::invalid(
                "rtol",
                format!("must be a non-negative number, got {}", python_float(rtol)),
            ));
        }
        let n = self.n;
        let a = self.data;
        let tiles = n.div_ceil(TILE);
        let violation = (0..tiles).into_par_iter().find_map_first(|tile_row| {
            let rows = tile_row * TILE..((tile_row + 1) * TILE).min(n);
            // Tiles of one tile-row are visited left to right, so the
            // row-major minimum has to be taken over all of them.
            let mut first: Option<(usize, usize)> = None;
            for tile_col in tile_row..tiles {
                let cols = tile_col * TILE..((tile_col + 1) * TILE).min(n);
                for i in rows.clone() {
                    if first.is_some_and(|(r, _)| r < i) {
                        break;
                    }
                    let start = cols.start.max(i + 1);
                    let found = (start..cols.end).find(|&j| {
                        let (u, l) = (a[i * n + j].to_f64(), a[j * n + i].to_f64());
                        (u - l).abs() > rtol * u.abs().max(l.abs())
                    });
                    if let Some(j) = found {
                        if first.is_none_or(|f| (i, j) < f) {
                            first = Some((i, j));
                        }
                        break;
                    }
                }
            }
            first
        });
        match violation {
            None => Ok(()),
            Some((row, col)) => Err(Error::NotSymmetric {
                what: "M".to_string(),
                row,
                col,
                value: a[row * n + col].to_f64(),
                transpose_value: a[col * n + row].to_f64(),
            }),
        }
    }

    fn matvec(&self, x: &[f64], y: &mut [f64]) {
        let n = self.n;
        match T::as_f64_slice(self.data) {
            Some(a) => matmul(
                MatMut::from_column_major_slice_mut(y, n, 1),
                Accum::Replace,
                MatRef::from_row_major_slice(a, n, n),
                MatRef::from_column_major_slice(x, n, 1),
                1.0,
                Par::rayon(0),
            ),
            None => self.matvec_rows(x, y),
        }
    }

    fn matvec_rows(&self, x: &[f64], y: &mut [f64]) {
        let n = self.n;
        y.par_chunks_mut(MATVEC_ROWS)
            .zip(self.data.par_chunks(MATVEC_ROWS * n))
            .for_each(|(y_rows, a_rows)| {
                for (yi, row) in y_rows.iter_mut().zip(a_rows.chunks_exact(n)) {
                    *yi = dot(row, x);
                }
            });
    }

    fn block_product_widened(&self, x: &[f64], y: &mut [f64], ncols: usize) {
        let n = self.n;
        let x_mat = MatRef::from_row_major_slice(x, n, ncols);
        y.par_chunks_mut(PANEL_ROWS * ncols)
            .zip(self.data.par_chunks(PANEL_ROWS * n))
            .for_each_init(Vec::new, |panel: &mut Vec<f64>, (y_rows, a_rows)| {
                panel.clear();
                panel.extend(a_rows.iter().map(|v| v.to_f64()));
                let rows = a_rows.len() / n;
                matmul(
                    MatMut::from_row_major_slice_mut(y_rows, rows, ncols),
                    Accum::Replace,
                    MatRef::from_row_major_slice(panel, rows, n),
                    x_mat,
                    1.0,
                    Par::Seq,
                );
            });
    }
}

/// `sum_k a[k] * x[k]` in f64 with eight independent partial sums, which
/// lets the compiler keep several vector accumulators in flight.
#[inline]
fn dot<T: Value>(a: &[T], x: &[f64]) -> f64 {
    let a_chunks = a.chunks_exact(8);
    let x_chunks = x.chunks_exact(8);
    let tail: f64 = a_chunks
        .remainder()
        .iter()
        .zip(x_chunks.remainder())
        .map(|(&a, &x)| a.to_f64() * x)
        .sum();
    let mut acc = [0.0f64; 8];
    for (a8, x8) in a_chunks.zip(x_chunks) {
        for k in 0..8 {
            acc[k] += a8[k].to_f64() * x8[k];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

impl<T: Value> SymOp for DenseRef<'_, T> {
    fn dim(&self) -> usize {
        self.n
    }

    fn data_precision(&self) -> f64 {
        T::UNIT_ROUNDOFF
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        check_len("x", x.len(), self.n)?;
        check_len("y", y.len(), self.n)?;
        self.matvec(x, y);
        crate::core::simd_state::clear_upper_state_all_threads();
        Ok(())
    }

    fn apply_block(&self, x: &[f64], y: &mut [f64], ncols: usize) -> Result<()> {
        let n = self.n;
        let len = n.checked_mul(ncols).ok_or_else(|| {
            Error::invalid("ncols", format!("n * ncols overflows (ncols = {ncols})"))
        })?;
        check_len("X", x.len(), len)?;
        check_len("Y", y.len(), len)?;
        if ncols == 0 {
            return Ok(());
        }
        if ncols == 1 {
            self.matvec(x, y);
            crate::core::simd_state::clear_upper_state_all_threads();
            return Ok(());
        }
        match T::as_f64_slice(self.data) {
            Some(a) => matmul(
                MatMut::from_row_major_slice_mut(y, n, ncols),
                Accum::Replace,
                MatRef::from_row_major_slice(a, n, n),
                MatRef::from_row_major_slice(x, n, ncols),
                1.0,
                Par::rayon(0),
            ),
            None => self.block_product_widened(x, y, ncols),
        }
        crate::core::simd_state::clear_upper_state_all_threads();
        Ok(())
    }
}

impl<'a, T: Value> DenseRef<'a, T> {
    /// Re-borrow a matrix validated earlier by [`DenseRef::new`]: only the shape
    /// is checked (finiteness and symmetry were established then).
    pub fn new_trusted(nrows: usize, ncols: usize, data: &'a [T]) -> Result<Self> {
        if nrows != ncols || nrows == 0 || nrows.checked_mul(ncols) != Some(data.len()) {
            return Err(Error::shape(
                "M",
                "a non-empty square matrix",
                format!("shape ({nrows}, {ncols}) with {} values", data.len()),
            ));
        }
        Ok(DenseRef { n: nrows, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_xoshiro::rand_core::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;
    use std::time::Instant;

    fn uniform(rng: &mut Xoshiro256PlusPlus) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in i..n {
                let v = uniform(&mut rng);
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        a
    }

    fn naive(a: &[f64], n: usize, x: &[f64], ncols: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * ncols];
        for i in 0..n {
            for j in 0..n {
                for c in 0..ncols {
                    y[i * ncols + c] += a[i * n + j] * x[j * ncols + c];
                }
            }
        }
        y
    }

    fn assert_close(got: &[f64], expected: &[f64], tol: f64) {
        let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                (g - e).abs() <= tol * scale,
                "entry {k}: got {g}, expected {e}"
            );
        }
    }

    fn check<T: Value>(data: &[T], reference: &[f64], n: usize, seed: u64) {
        let a = DenseRef::new(n, n, data).unwrap();
        a.check_symmetric(0.0).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        for ncols in [1usize, 2, 3, 8, 17] {
            let x: Vec<f64> = (0..n * ncols).map(|_| uniform(&mut rng)).collect();
            let expected = naive(reference, n, &x, ncols);
            let mut y = vec![f64::NAN; n * ncols];
            a.apply_block(&x, &mut y, ncols).unwrap();
            assert_close(&y, &expected, 1e-12);
            if ncols == 1 {
                y.fill(f64::NAN);
                a.apply(&x, &mut y).unwrap();
                assert_close(&y, &expected, 1e-12);
            }
        }
    }

    #[test]
    fn products_match_naive_reference() {
        for (n, seed) in [(1usize, 1u64), (2, 2), (7, 3), (65, 4), (150, 5)] {
            let a = random_symmetric(n, seed);
            check(&a, &a, n, seed);
            // f32 storage: the reference is the widened f32 matrix, products in f64.
            let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            let widened: Vec<f64> = a32.iter().map(|&v| v as f64).collect();
            check(&a32, &widened, n, seed);
        }
    }

    #[test]
    fn validation_and_symmetry_errors() {
        let err = DenseRef::new(2, 3, &[0.0f64; 6]).unwrap_err();
        assert!(err.to_string().contains("square"), "{err}");
        assert!(matches!(
            DenseRef::new(2, 2, &[0.0f64; 3]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            DenseRef::new(0, 0, &[] as &[f64]),
            Err(Error::Shape { .. })
        ));
        assert_eq!(
            DenseRef::new(2, 2, &[1.0f32, 0.0, f32::INFINITY, 1.0]).unwrap_err(),
            Error::NonFinite {
                what: "M".to_string(),
                index: 2
            }
        );

        // Two violations in different tiles: the row-major first is reported.
        let n = 150;
        let mut a = random_symmetric(n, 7);
        a[3 * n + 140] += 1.0;
        a[3 * n + 100] += 1.0;
        a[120 * n + 2] += 1.0;
        let m = DenseRef::new(n, n, &a).unwrap();
        match m.check_symmetric(1e-12) {
            Err(Error::NotSymmetric {
                row: 2,
                col: 120,
                value,
                transpose_value,
                ..
            }) => {
                assert_eq!(value, a[2 * n + 120]);
                assert_eq!(transpose_value, a[120 * n + 2]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut b = random_symmetric(n, 8);
        b[5 * n + 6] *= 1.0 + 1e-14;
        let m = DenseRef::new(n, n, &b).unwrap();
        m.check_symmetric(f64::SYMMETRY_RTOL).unwrap();
        assert!(matches!(
            m.check_symmetric(0.0),
            Err(Error::NotSymmetric { row: 5, col: 6, .. })
        ));
        let mut y = [0.0; 150];
        assert!(matches!(
            m.apply(&[0.0; 3], &mut y),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    #[ignore]
    fn bench_dense_2000() {
        let n = 2000;
        let a = random_symmetric(n, 11);
        let x: Vec<f64> = (0..n).map(|k| (k % 13) as f64).collect();
        let mut y = vec![0.0; n];
        let start = Instant::now();
        let m = DenseRef::new(n, n, &a).unwrap();
        m.check_symmetric(0.0).unwrap();
        println!(
            "dense n={n}: new + check_symmetric {:.2} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        let reps = 50;
        let bytes = (n * n * 8 + 2 * n * 8) as f64;
        let start = Instant::now();
        for _ in 0..reps {
            m.matvec_rows(&x, &mut y);
        }
        let rows = start.elapsed().as_secs_f64() / reps as f64;
        let mut y_faer = vec![0.0; n];
        let start = Instant::now();
        for _ in 0..reps {
            matmul(
                MatMut::from_column_major_slice_mut(&mut y_faer, n, 1),
                Accum::Replace,
                MatRef::from_row_major_slice(&a, n, n),
                MatRef::from_column_major_slice(&x, n, 1),
                1.0,
                Par::rayon(0),
            );
        }
        let faer_time = start.elapsed().as_secs_f64() / reps as f64;
        assert_close(&y, &y_faer, 1e-12);
        println!(
            "dense n={n} matvec: rayon rows {:.3} ms ({:.1} GB/s), faer matmul {:.3} ms ({:.1} GB/s)",
            rows * 1e3,
            bytes / rows / 1e9,
            faer_time * 1e3,
            bytes / faer_time / 1e9
        );
        let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let m32 = DenseRef::new(n, n, &a32).unwrap();
        for round in 0..3 {
            let start = Instant::now();
            for _ in 0..reps {
                m32.matvec_rows(&x, &mut y);
            }
            let t32 = start.elapsed().as_secs_f64() / reps as f64;
            let start = Instant::now();
            for _ in 0..reps {
                m32.block_product_widened(&x, &mut y, 1);
            }
            let t32w = start.elapsed().as_secs_f64() / reps as f64;
            println!(
                "round {round} dense f32 matvec: rows {:.3} ms ({:.1} GB/s), widened panels {:.3} ms ({:.1} GB/s)",
                t32 * 1e3,
                (n * n * 4 + 2 * n * 8) as f64 / t32 / 1e9,
                t32w * 1e3,
                (n * n * 4 + 2 * n * 8) as f64 / t32w / 1e9
            );
        }
        for ncols in [8usize, 64] {
            let xb: Vec<f64> = (0..n * ncols).map(|k| (k % 13) as f64).collect();
            let mut yb = vec![0.0; n * ncols];
            for (label, op) in [("f64", &m as &dyn SymOp), ("f32", &m32 as &dyn SymOp)] {
                let start = Instant::now();
                for _ in 0..10 {
                    op.apply_block(&xb, &mut yb, ncols).unwrap();
                }
                let t = start.elapsed().as_secs_f64() / 10.0;
                println!(
                    "dense {label} apply_block ncols={ncols}: {:.2} ms ({:.1} GFLOP/s)",
                    t * 1e3,
                    2.0 * (n * n * ncols) as f64 / t / 1e9
                );
            }
        }
    }
}
