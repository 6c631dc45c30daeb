use super::*;
use crate::core::error::Error;
use crate::core::sparse::csr::tests::{
    assert_close, convert, dense_product, laplacian_3d, random_symmetric, uniform, PRODUCT_CASES,
};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn block(n: usize, ncols: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n * ncols).map(|_| uniform(&mut rng)).collect()
}

/// Half storage against the full CSR product and a dense reference, for
/// every block width, built and run in pools of several sizes.
fn check_against_full<T: Value, I: Index>(a: &CsrRef<'_, T, I>, dense: &[f64], tol: f64) {
    let n = a.nrows();
    for threads in [1, 2, 3] {
        let pool = pool(threads);
        let upper = pool.install(|| UpperCsr::from_csr(a));
        for ncols in [1usize, 2, 3, 5, 8, 9, 13] {
            let x = block(n, ncols, ncols as u64);
            let expected = dense_product(dense, n, &x, ncols);
            let (mut y_full, mut y_half) = (vec![0.0; n * ncols], vec![f64::NAN; n * ncols]);
            pool.install(|| {
                a.apply_block(&x, &mut y_full, ncols).unwrap();
                upper.apply_block(&x, &mut y_half, ncols).unwrap();
            });
            assert_close(&y_half, &expected, tol);
            assert_close(&y_half, &y_full, tol);
            if ncols == 1 {
                let mut y = vec![f64::NAN; n];
                pool.install(|| upper.apply(&x, &mut y).unwrap());
                assert_eq!(y, y_half, "apply and a one-column block differ");
            }
        }
    }
}

#[test]
fn half_storage_products_match_full_storage_for_all_types() {
    for (seed, n, density) in PRODUCT_CASES {
        // Unsorted rows, split duplicates, empty rows (see `random_symmetric`).
        let (indptr, indices, data, dense) = random_symmetric(n, density, seed);
        let data32: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        let (ip32, ix32) = (convert::<i32>(&indptr), convert::<i32>(&indices));
        let (ip64, ix64) = (convert::<i64>(&indptr), convert::<i64>(&indices));
        let f64_i32 = CsrRef::new(n, n, &ip32, &ix32, &data).unwrap();
        check_against_full(&f64_i32, &dense, 1e-14);
        let f64_i64 = CsrRef::new(n, n, &ip64, &ix64, &data).unwrap();
        check_against_full(&f64_i64, &dense, 1e-14);
        // float32 storage: duplicates are summed once, in f64, then rounded.
        let f32_i32 = CsrRef::new(n, n, &ip32, &ix32, &data32).unwrap();
        check_against_full(&f32_i32, &dense, 1e-6);
        let f32_i64 = CsrRef::new(n, n, &ip64, &ix64, &data32).unwrap();
        check_against_full(&f32_i64, &dense, 1e-6);
    }
}

#[test]
fn banded_matrices_get_many_parts_and_scattered_ones_one_per_thread() {
    // 30^3 Laplacian: bandwidth 900 rows, parts of ~3400 rows each.
    let (indptr, indices, data) = laplacian_3d(30);
    let n = indptr.len() - 1;
    let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
    let pool = pool(2);
    let upper = pool.install(|| UpperCsr::from_csr(&a));
    assert!(upper.n_parts() > 2, "{} parts", upper.n_parts());
    assert!(upper.is_local());
    assert!(
        upper.diagonal.is_some(),
        "a full diagonal is stored densely"
    );
    let x = block(n, 1, 7);
    let (mut y_full, mut y_half) = (vec![0.0; n], vec![0.0; n]);
    pool.install(|| {
        a.apply(&x, &mut y_full).unwrap();
        upper.apply(&x, &mut y_half).unwrap();
    });
    assert_close(&y_half, &y_full, 1e-14);

    // Entries everywhere: finer parts would need buffers of most of n each.
    let n = 50_000;
    let (indptr, indices, data) = scattered(n, 8, 3);
    let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
    a.check_symmetric(0.0).unwrap();
    let upper = pool.install(|| UpperCsr::from_csr(&a));
    assert_eq!(upper.n_parts(), 2);
    assert!(
        upper.diagonal.is_none(),
        "no diagonal stored: none kept densely"
    );
    let x = block(n, 4, 9);
    let (mut y_full, mut y_half) = (vec![0.0; n * 4], vec![0.0; n * 4]);
    pool.install(|| {
        a.apply_block(&x, &mut y_full, 4).unwrap();
        upper.apply_block(&x, &mut y_half, 4).unwrap();
    });
    assert_close(&y_half, &y_full, 1e-14);
}

/// A symmetric matrix with `2 per_row` random off-diagonal entries per row
/// (no diagonal), rows sorted.
fn scattered(n: usize, per_row: usize, seed: u64) -> (Vec<i32>, Vec<i32>, Vec<f64>) {
    use rand_xoshiro::rand_core::Rng;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut entries = Vec::with_capacity(2 * n * per_row);
    for i in 0..n {
        for _ in 0..per_row {
            let j = (rng.next_u64() % n as u64) as usize;
            if j != i {
                let v = uniform(&mut rng);
                entries.push((i, j, v));
                entries.push((j, i, v));
            }
        }
    }
    entries.sort_by_key(|e| (e.0, e.1));
    let mut indptr = vec![0i32; n + 1];
    for e in &entries {
        indptr[e.0 + 1] += 1;
    }
    for i in 0..n {
        indptr[i + 1] += indptr[i];
    }
    let indices = entries.iter().map(|e| e.1 as i32).collect();
    let data = entries.iter().map(|e| e.2).collect();
    (indptr, indices, data)
}

#[test]
fn half_storage_takes_at_most_055_of_the_bytes() {
    let full_bytes = |nnz: usize, n: usize| (n + 1) * 4 + nnz * 12;
    let (indptr, indices, data) = laplacian_3d(20);
    let n = indptr.len() - 1;
    let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
    let upper = UpperCsr::from_csr(&a);
    let ratio = upper.nbytes() as f64 / full_bytes(a.nnz(), n) as f64;
    assert!(ratio <= 0.55, "Laplacian: {ratio}");
    // No stored diagonal to speak of: it stays in the rows.
    let (indptr, indices, data) = scattered(2000, 8, 4);
    let a = CsrRef::new(2000, 2000, &indptr, &indices, &data).unwrap();
    let upper = UpperCsr::from_csr(&a);
    assert!(upper.diagonal.is_none());
    let ratio = upper.nbytes() as f64 / full_bytes(a.nnz(), 2000) as f64;
    assert!(ratio <= 0.55, "random: {ratio}");
}

#[test]
fn products_are_reproducible_bit_for_bit_for_a_thread_count() {
    let (indptr, indices, data) = laplacian_3d(24);
    let n = indptr.len() - 1;
    let perturbed: Vec<f64> = data
        .iter()
        .enumerate()
        .map(|(k, v)| v * (1.0 + 1e-3 * ((k * 7919 % 101) as f64)))
        .collect();
    // Symmetrise the perturbation: entry (i, j) and (j, i) get the same factor.
    let mut symmetric = perturbed.clone();
    for i in 0..n {
        for k in indptr[i] as usize..indptr[i + 1] as usize {
            let j = indices[k] as usize;
            if j < i {
                let mirror = (indptr[j] as usize..indptr[j + 1] as usize)
                    .find(|&m| indices[m] as usize == i)
                    .unwrap();
                symmetric[k] = symmetric[mirror];
            }
        }
    }
    let a = CsrRef::new(n, n, &indptr, &indices, &symmetric).unwrap();
    a.check_symmetric(0.0).unwrap();
    let x = block(n, 3, 11);
    let run = |threads: usize| {
        let pool = pool(threads);
        let upper = pool.install(|| UpperCsr::from_csr(&a));
        let mut y = vec![0.0; n * 3];
        pool.install(|| upper.apply_block(&x, &mut y, 3).unwrap());
        let mut again = vec![0.0; n * 3];
        pool.install(|| upper.apply_block(&x, &mut again, 3).unwrap());
        assert_eq!(y, again);
        y
    };
    let two = run(2);
    assert_eq!(two, run(2));
    assert_close(&run(1), &two, 1e-14);
}

#[test]
fn exported_triangle_holds_the_diagonal_first() {
    let (indptr, indices, data, dense) = random_symmetric(40, 0.3, 8);
    let (ip, ix) = (convert::<i64>(&indptr), convert::<i64>(&indices));
    let a = CsrRef::new(40, 40, &ip, &ix, &data).unwrap();
    for dense_diagonal in [false, true] {
        let mut upper = UpperCsr::from_csr(&a);
        if dense_diagonal && upper.diagonal.is_none() {
            continue;
        }
        let (p, c, v) = upper.to_csr_arrays();
        let mut rebuilt = vec![0.0; 40 * 40];
        for i in 0..40 {
            for k in p[i] as usize..p[i + 1] as usize {
                let j = c[k] as usize;
                assert!(j >= i);
                rebuilt[i * 40 + j] += v[k];
                if j != i {
                    rebuilt[j * 40 + i] += v[k];
                }
            }
        }
        assert_close(&rebuilt, &dense, 1e-15);
        upper.buffers = Mutex::new(Vec::new());
    }
}

#[test]
fn wrong_lengths_are_shape_errors() {
    let (indptr, indices, data) = laplacian_3d(3);
    let a = CsrRef::new(27, 27, &indptr, &indices, &data).unwrap();
    let upper = UpperCsr::from_csr(&a);
    let mut y = vec![0.0; 27];
    assert!(matches!(
        upper.apply(&[1.0; 3], &mut y),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        upper.apply_block(&[1.0; 27], &mut y, 2),
        Err(Error::Shape { .. })
    ));
    upper.apply_block(&[], &mut [], 0).unwrap();
}

/// `cargo test --profile ci --no-default-features -- --ignored --nocapture bench_half_storage`
#[test]
#[ignore]
fn bench_half_storage() {
    use std::time::Instant;
    let best = |f: &mut dyn FnMut()| {
        f();
        (0..7)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..5 {
                    f();
                }
                start.elapsed().as_secs_f64() / 5.0 * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (lp, li, ld) = laplacian_3d(100);
    let (rp, ri, rd) = scattered(1_000_000, 8, 1);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let widths: Vec<usize> = match std::env::var("BENCH_WIDTH") {
        Ok(w) => vec![w.parse().unwrap()],
        Err(_) => vec![1, 8],
    };
    for (name, (indptr, indices, data)) in [
        ("laplacian 100^3", (lp, li, ld)),
        ("random 16/row", (rp, ri, rd)),
    ] {
        if !name.starts_with(only.as_str()) {
            continue;
        }
        let n = indptr.len() - 1;
        let a = CsrRef::new(n, n, &indptr, &indices, &data).unwrap();
        let start = Instant::now();
        let upper = UpperCsr::from_csr(&a);
        let convert = start.elapsed().as_secs_f64() * 1e3;
        for &ncols in &widths {
            let x = block(n, ncols, 1);
            let offset: usize = std::env::var("BENCH_OFFSET").map_or(0, |s| s.parse().unwrap());
            let mut y_buffer = vec![0.0; n * ncols + offset];
            let y = &mut y_buffer[offset..];
            let kernel = std::env::var("BENCH_KERNEL").unwrap_or_default();
            let full = if kernel != "upper" {
                best(&mut || a.apply_block(&x, y, ncols).unwrap())
            } else {
                0.0
            };
            let half = if kernel != "full" {
                best(&mut || upper.apply_block(&x, y, ncols).unwrap())
            } else {
                0.0
            };
            println!(
                "{name} ncols={ncols}: full {full:.2} ms, upper {half:.2} ms ({} parts, {:.3}x bytes, conversion {convert:.0} ms)",
                upper.n_parts(),
                upper.nbytes() as f64 / ((n + 1) * 4 + a.nnz() * 12) as f64
            );
        }
    }
    let src = vec![1.0f64; 16 << 20];
    let mut dst = vec![0.0f64; 16 << 20];
    let copy = best(&mut || {
        dst.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s))
    });
    println!(
        "copy 2 x 128 MiB: {copy:.2} ms = {:.1} GB/s",
        2.0 * 128.0 * 1.048576 / copy
    );
}
