//! Random-input fuzzing of the Rust core's input validation and numerics, run
//! by `cargo test` (no nightly toolchain needed, unlike `cargo fuzz`).
//!
//! Each target decodes inputs from bytes (as libFuzzer targets do): first it
//! replays every file of its corpus, `tests/fuzz_corpus/<target>/`, then it
//! mutates corpus entries and draws fresh random inputs until its time budget
//! is spent: `HESSX_FUZZ_SECONDS` per target (default 2; `.ci/run` gives each
//! about a minute). Every input must give a clean `Err` or an answer checked
//! against an independent reference; a panic, a wrong answer or an input
//! that takes longer than `SLOW` fails the target, and the input is written
//! to `target/fuzz-failures/<target>/` to be added to the corpus once fixed.
//!
//! Targets:
//! * `csr`: CSR validation (indptr, indices, data, shapes, i32/i64 indices,
//!   f32/f64 values: malformed, unsorted, duplicate, out-of-range, negative,
//!   huge declared shapes); valid matrices are multiplied (full and half
//!   storage) and compared with a dense product.
//! * `dense`: dense validation (shape overflow, lengths, NaN, asymmetry).
//! * `inertia`: the LDLᵀ inertia count of small symmetric matrices at a
//!   shift, malformed structures included, against dense eigenvalues.
//! * `tridiagonal`: the tridiagonal eigensolver on extreme entries (0,
//!   subnormal, 1e±300, NaN, inf), against trace and orthonormality.

use hessx::core::dense::DenseRef;
use hessx::core::krylov::tridiag::{sym_eig, tridiag_eig};
use hessx::core::op::SymOp;
use hessx::core::sparse::csr::{CsrRef, Index, Value};
use hessx::core::sparse::inertia::inertia;
use hessx::core::sparse::upper::UpperCsr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One input taking longer than this is a hang (inputs are at most 64 x 64).
const SLOW: Duration = Duration::from_secs(5);

/// Reads typed values off a byte string, zeros once it runs out.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bytes { data, at: 0 }
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |a, _| (a << 8) | u64::from(self.u8()))
    }
    /// Mostly small, sometimes anything (huge, negative when cast).
    fn size(&mut self, small: u64) -> u64 {
        match self.u8() % 16 {
            0 => self.u64(),
            1 => u64::from(u32::MAX) + u64::from(self.u8()),
            _ => u64::from(self.u8()) % (small + 1),
        }
    }
    /// Ordinary values mostly; zeros, extremes and non-finite values often.
    fn value(&mut self) -> f64 {
        match self.u8() % 12 {
            0 => 0.0,
            1 => f64::from_bits(self.u64()),
            2 => [
                f64::NAN,
                f64::INFINITY,
                -f64::INFINITY,
                f64::MIN_POSITIVE / 8.0,
            ][self.u8() as usize % 4],
            3 => [1e300, -1e300, 1e-300, -1e-300][self.u8() as usize % 4],
            _ => (f64::from(self.u8()) - 128.0) / 16.0,
        }
    }
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

/// xorshift64*: the harness's own generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// A copy of `input` with a few bytes flipped, inserted, removed or spliced.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.next() % 4 {
            let at = if out.is_empty() {
                0
            } else {
                (self.next() as usize) % out.len()
            };
            match self.next() % 4 {
                0 if !out.is_empty() => out[at] ^= 1 << (self.next() % 8),
                1 => out.insert(at, self.next() as u8),
                2 if !out.is_empty() => {
                    out.remove(at);
                }
                _ if !out.is_empty() => out[at] = self.next() as u8,
                _ => out.push(self.next() as u8),
            }
        }
        out
    }
}

/// A symmetric or not, valid or broken CSR matrix as SciPy would hand it over.
struct CsrInput {
    nrows: usize,
    ncols: usize,
    indptr: Vec<i64>,
    indices: Vec<i64>,
    data: Vec<f64>,
}

impl CsrInput {
    fn decode(b: &mut Bytes<'_>) -> CsrInput {
        let n = (b.size(12)) as usize;
        let nrows = n;
        let ncols = if b.u8() % 16 == 0 {
            b.size(12) as usize
        } else {
            n
        };
        let small = n.min(64);
        // A symmetric pattern from (row, col, value) triples, then damage.
        let mut dense = vec![0.0f64; small * small];
        let mut present = vec![false; small * small];
        let entries = b.u8() as usize % (4 * small + 1);
        for _ in 0..entries {
            if small == 0 {
                break;
            }
            let (r, c) = (b.u8() as usize % small, b.u8() as usize % small);
            let v = b.value();
            dense[r * small + c] = v;
            dense[c * small + r] = v;
            present[r * small + c] = true;
            present[c * small + r] = true;
        }
        let mut indptr = vec![0i64];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for r in 0..small {
            for c in 0..small {
                if present[r * small + c] {
                    indices.push(c as i64);
                    data.push(dense[r * small + c]);
                }
            }
            indptr.push(indices.len() as i64);
        }
        // Rows beyond 64 (huge declared shapes) are empty.
        for _ in small..n.min(1 << 16) {
            indptr.push(indices.len() as i64);
        }
        let damage = b.u8();
        if damage % 2 == 1 && !b.done() {
            let kind = b.u8() % 8;
            let pick =
                |len: usize, b: &mut Bytes<'_>| if len == 0 { 0 } else { b.u8() as usize % len };
            match kind {
                0 if !indices.is_empty() => {
                    let at = pick(indices.len(), b);
                    indices[at] = b.u64() as i64; // anything: out of range, negative
                }
                1 if !indptr.is_empty() => {
                    let at = pick(indptr.len(), b);
                    indptr[at] = b.u64() as i64 % 1000 - 500;
                }
                2 => {
                    indptr.pop();
                }
                3 if !data.is_empty() => {
                    data.pop(); // data shorter than indices
                }
                4 if indices.len() >= 2 => {
                    let at = pick(indices.len() - 1, b);
                    indices.swap(at, at + 1); // unsorted (or duplicate after the next)
                }
                5 if !indices.is_empty() => {
                    let at = pick(indices.len(), b);
                    let dup = indices[at];
                    indices.insert(at, dup); // duplicate entry (breaks indptr unless fixed)
                    data.insert(at, b.value());
                    if b.u8() % 2 == 0 {
                        for p in indptr.iter_mut().skip(1) {
                            if *p as usize > at {
                                *p += 1;
                            }
                        }
                    }
                }
                6 if !data.is_empty() => {
                    let at = pick(data.len(), b);
                    data[at] = b.value(); // asymmetric or non-finite
                }
                _ => indptr.push(indices.len() as i64),
            }
        }
        CsrInput {
            nrows,
            ncols,
            indptr,
            indices,
            data,
        }
    }

    /// `A x` from the triples, with checked indexing; `None` if the input is
    /// not a valid matrix (the harness's own, independent validation).
    fn reference_product(&self, x: &[f64]) -> Option<Vec<f64>> {
        let n = self.nrows;
        if n == 0
            || n != self.ncols
            || self.indptr.len() != n + 1
            || self.data.len() != self.indices.len()
        {
            return None;
        }
        if self.indptr[0] != 0 || *self.indptr.last()? as usize != self.indices.len() {
            return None;
        }
        let mut y = vec![0.0; n];
        for (r, yr) in y.iter_mut().enumerate() {
            let (a, b) = (self.indptr[r], self.indptr[r + 1]);
            if a < 0 || b < a || b as usize > self.indices.len() {
                return None;
            }
            for k in a as usize..b as usize {
                let c = self.indices[k];
                if c < 0 || c as usize >= n || !self.data[k].is_finite() {
                    return None;
                }
                *yr += self.data[k] * x[c as usize];
            }
        }
        Some(y)
    }
}

fn fits_i32(values: &[i64]) -> Option<Vec<i32>> {
    values.iter().map(|&v| i32::try_from(v).ok()).collect()
}

/// Equal to rounding; when the sums overflow (entries near 1e300) the
/// order of summation decides between inf and a huge finite value, so only
/// the absence of a panic is checked there.
fn close(got: &[f64], want: &[f64], scale: f64) -> bool {
    !scale.is_finite()
        || scale > 1e290
        || got
            .iter()
            .zip(want)
            .all(|(g, w)| g == w || (g - w).abs() <= 1e-9 * scale.max(1e-300))
}

/// The largest product entry a row sum can reach, the scale `close` compares at.
fn product_scale(data: &[f64], n: usize) -> f64 {
    data.iter().fold(0.0f64, |a, v| a.max(v.abs())) * n.max(1) as f64 * 2.0
}

/// Builds the CSR matrix from the given arrays and checks the verdict
/// against the harness's own: accepted exactly when `reference` exists, and
/// then every product (full storage, and half storage when symmetric) equal
/// to it. Symmetry is a separate check from `CsrRef::new`'s structural one,
/// run here too (it must not panic either way). `half_storage: false` skips
/// the half-storage comparison: for float32 values it stores the sum of
/// duplicate entries rounded to float32, where the full kernel adds them in
/// float64 (the fuzzer measured 4e-8 relative), so the two differ by more
/// than float64 rounding.
#[allow(clippy::too_many_arguments)]
fn check_csr<T: Value, I: Index>(
    m: &CsrInput,
    indptr: &[I],
    indices: &[I],
    data: &[T],
    x: &[f64],
    reference: &Option<Vec<f64>>,
    scale: f64,
    half_storage: bool,
) -> Result<(), String> {
    let n = m.nrows;
    let csr = match (
        CsrRef::new(m.nrows, m.ncols, indptr, indices, data),
        reference,
    ) {
        (Err(_), None) => return Ok(()),
        (Err(_), Some(_)) => return Err("a valid matrix was rejected".to_string()),
        (Ok(_), None) => return Err("an invalid matrix was accepted".to_string()),
        (Ok(csr), Some(_)) => csr,
    };
    let want = reference.as_ref().expect("checked above");
    let mut products = Vec::new();
    let mut y = vec![0.0; n];
    csr.apply(x, &mut y)
        .map_err(|e| format!("product failed: {e}"))?;
    products.push(y);
    if half_storage && csr.check_symmetric(0.0).is_ok() {
        let mut z = vec![0.0; n];
        UpperCsr::from_csr(&csr)
            .apply(x, &mut z)
            .map_err(|e| format!("half product failed: {e}"))?;
        products.push(z);
    }
    for got in &products {
        if !close(got, want, scale) {
            return Err(format!("product {got:?} differs from {want:?}"));
        }
    }
    Ok(())
}

fn csr_target(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes::new(input);
    let m = CsrInput::decode(&mut b);
    let n = m.nrows;
    // Declared sizes can be huge; a valid matrix has at most 2^16 rows here.
    let x: Vec<f64> = (0..n.min(1 << 17))
        .map(|i| 1.0 + (i % 7) as f64 * 0.25)
        .collect();
    if b.u8() % 3 == 0 {
        let data32: Vec<f32> = m.data.iter().map(|&v| v as f32).collect();
        // f32 rounding changes values (1e300 becomes inf): compare with the
        // f32 matrix's own reference.
        let m32 = CsrInput {
            data: data32.iter().map(|&v| f64::from(v)).collect(),
            indptr: m.indptr.clone(),
            indices: m.indices.clone(),
            ..m
        };
        let reference = m32.reference_product(&x);
        let scale = product_scale(&m32.data, n);
        return check_csr(
            &m32,
            &m32.indptr,
            &m32.indices,
            &data32,
            &x,
            &reference,
            scale,
            false,
        );
    }
    let reference = m.reference_product(&x);
    let scale = product_scale(&m.data, n);
    check_csr(
        &m, &m.indptr, &m.indices, &m.data, &x, &reference, scale, true,
    )?;
    match (fits_i32(&m.indptr), fits_i32(&m.indices)) {
        (Some(p), Some(i)) => check_csr(&m, &p, &i, &m.data, &x, &reference, scale, true),
        // Indices beyond i32 are SciPy's int64 case only.
        _ => Ok(()),
    }
}

fn dense_target(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes::new(input);
    let nrows = b.size(8) as usize;
    let ncols = if b.u8() % 8 == 0 {
        b.size(8) as usize
    } else {
        nrows
    };
    // The buffer is what it is (at most 4096 values), whatever the declared shape.
    let len = if b.u8() % 8 == 0 {
        b.size(80) as usize
    } else {
        nrows.saturating_mul(ncols)
    }
    .min(4096);
    let mut data: Vec<f64> = (0..len).map(|_| b.value()).collect();
    if nrows == ncols && nrows.saturating_mul(nrows) == len && b.u8() % 2 == 0 {
        for r in 0..nrows {
            for c in 0..r {
                data[r * nrows + c] = data[c * nrows + r];
            }
        }
    }
    let valid = nrows > 0
        && nrows == ncols
        && nrows.checked_mul(ncols) == Some(len)
        && data.iter().all(|v| v.is_finite());
    match DenseRef::new(nrows, ncols, &data) {
        Err(_) if !valid => Ok(()),
        Err(e) => Err(format!("a valid dense matrix was rejected: {e}")),
        Ok(_) if !valid => Err("an invalid dense matrix was accepted".to_string()),
        Ok(dense) => {
            let _ = dense.check_symmetric(0.0);
            let x = vec![1.0; nrows];
            let mut y = vec![0.0; nrows];
            dense
                .apply(&x, &mut y)
                .map_err(|e| format!("product failed: {e}"))?;
            let want: Vec<f64> = (0..nrows)
                .map(|r| data[r * nrows..(r + 1) * nrows].iter().sum())
                .collect();
            let scale = data.iter().fold(0.0f64, |a, v| a.max(v.abs())) * nrows as f64;
            if close(&y, &want, scale) {
                Ok(())
            } else {
                Err(format!("product {y:?} vs {want:?}"))
            }
        }
    }
}

fn inertia_target(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes::new(input);
    let mut m = CsrInput::decode(&mut b);
    // inertia takes n only (square by construction).
    m.ncols = m.nrows;
    let shift = if b.u8() % 4 == 0 {
        b.value()
    } else {
        (f64::from(b.u8()) - 128.0) / 32.0
    };
    let got = inertia(m.nrows, &m.indptr, &m.indices, &m.data, shift);
    let x = vec![0.0; m.nrows.min(1 << 17)];
    let structurally_valid = m.reference_product(&x).is_some();
    let n = m.nrows;
    // The reference: dense eigenvalues of the (symmetrised by construction,
    // unless damaged) matrix, when it is valid, symmetric and of moderate scale.
    let Ok(counts) = got else { return Ok(()) };
    if m.nrows == 0 && indptr_is_empty(&m.indptr) && shift.is_finite() {
        // The empty matrix has no eigenvalues: the one right answer.
        return if counts.negative + counts.zero + counts.positive == 0 {
            Ok(())
        } else {
            Err(format!("the empty matrix has inertia {counts:?}"))
        };
    }
    if !structurally_valid || !shift.is_finite() {
        return Err(format!(
            "inertia accepted an invalid input: {counts:?} for n {} indptr {:?} indices {:?} data {:?} shift {shift}",
            m.nrows, m.indptr, m.indices, m.data
        ));
    }
    if n > 64
        || m.data
            .iter()
            .any(|v| v.abs() > 1e100 || (v.abs() < 1e-100 && *v != 0.0))
    {
        return Ok(()); // beyond the dense reference's comfortable range
    }
    let mut dense = vec![0.0; n * n];
    for r in 0..n {
        for k in m.indptr[r] as usize..m.indptr[r + 1] as usize {
            dense[m.indices[k] as usize * n + r] += m.data[k];
        }
    }
    let symmetric = (0..n).all(|r| (0..r).all(|c| dense[r * n + c] == dense[c * n + r]));
    if !symmetric {
        return Ok(()); // the caller promised symmetry; any count is allowed, no panic is
    }
    let eig = sym_eig(&dense, n).map_err(|e| format!("reference eig failed: {e}"))?;
    let norm = eig
        .values
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()))
        .max(shift.abs());
    // Eigenvalues within rounding of the shift may fall either way; at a
    // shift where A is exactly singular, inertia counts those within
    // 2^-26 (max|a_ij| + |shift|) of it as zero (documented).
    let max_entry = m.data.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let margin = (1e-8 * norm).max(1.01 * (max_entry + shift.abs()) * (-26f64).exp2());
    let sure_below = eig.values.iter().filter(|&&v| v < shift - margin).count();
    let sure_above = eig.values.iter().filter(|&&v| v > shift + margin).count();
    if counts.negative + counts.zero + counts.positive != n
        || counts.negative < sure_below
        || counts.positive < sure_above
        || counts.negative > n - sure_above
        || counts.positive > n - sure_below
    {
        return Err(format!(
            "inertia {counts:?} at shift {shift:e} vs eigenvalues {:?} of n {n} indptr {:?} indices {:?} data {:?}",
            eig.values, m.indptr, m.indices, m.data
        ));
    }
    Ok(())
}

fn indptr_is_empty(indptr: &[i64]) -> bool {
    indptr == [0]
}

fn tridiagonal_target(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes::new(input);
    let n = (b.u8() % 40) as usize;
    let alpha: Vec<f64> = (0..n).map(|_| b.value()).collect();
    let beta_len = if b.u8() % 16 == 0 {
        b.u8() as usize % 40
    } else {
        n.saturating_sub(1)
    };
    let beta: Vec<f64> = (0..beta_len).map(|_| b.value()).collect();
    let finite = alpha.iter().chain(&beta).all(|v| v.is_finite());
    match tridiag_eig(&alpha, &beta) {
        Err(_) => Ok(()), // shape errors and non-finite input are clean errors
        Ok(eig) => {
            if n > 0 && beta.len() + 1 != n {
                return Err("a mismatched off-diagonal was accepted".to_string());
            }
            if !finite {
                // Non-finite input may give non-finite output, never a panic.
                return Ok(());
            }
            let norm = alpha
                .iter()
                .chain(&beta)
                .fold(0.0f64, |a, v| a.max(v.abs()));
            if norm > 1e150 || !eig.values.iter().all(|v| v.is_finite()) {
                return Ok(()); // squares overflow: no accuracy is promised there
            }
            let trace: f64 = alpha.iter().sum();
            let sum: f64 = eig.values.iter().sum();
            if (trace - sum).abs() > 1e-10 * norm * n as f64 + 1e-300 {
                return Err(format!("eigenvalues sum to {sum}, trace {trace}"));
            }
            if eig.values.windows(2).any(|w| w[0] > w[1]) {
                return Err("eigenvalues not ascending".to_string());
            }
            for i in 0..n {
                for j in 0..=i {
                    let dot: f64 = eig
                        .vector(i)
                        .iter()
                        .zip(eig.vector(j))
                        .map(|(a, c)| a * c)
                        .sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    if (dot - want).abs() > 1e-10 {
                        return Err(format!("vectors {i}, {j} have dot {dot}"));
                    }
                }
            }
            Ok(())
        }
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target)
}

fn budget() -> Duration {
    let seconds = std::env::var("HESSX_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(seconds.max(0.0))
}

/// Replays the corpus, then fuzzes until the budget is spent; panics with
/// every failure found (each also saved under `target/fuzz-failures`).
fn fuzz(target: &str, run: fn(&[u8]) -> Result<(), String>) {
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir(target))
        .map(|dir| {
            let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
        })
        .unwrap_or_default();
    let replayed = corpus.len();
    let seed = std::env::var("HESSX_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed | 1);
    let mut failures = Vec::new();
    let start = Instant::now();
    let mut executions = 0usize;
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    loop {
        let input = match queue.pop() {
            Some(input) => input,
            None if start.elapsed() >= budget() => break,
            None if corpus.is_empty() || rng.next() % 4 == 0 => {
                let len = (rng.next() % 160) as usize;
                rng.bytes(len)
            }
            None => {
                let parent = &corpus[(rng.next() as usize) % corpus.len()];
                rng.mutate(parent)
            }
        };
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&input)));
        let took = began.elapsed();
        executions += 1;
        let failure = match outcome {
            Err(panic) => Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(Err(message)) => Some(message),
            Ok(Ok(())) if took > SLOW => Some(format!("took {took:?}")),
            Ok(Ok(())) => None,
        };
        if let Some(message) = failure {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/fuzz-failures")
                .join(target);
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{executions:08}.bin"));
            let _ = std::fs::write(&file, &input);
            failures.push(format!("{}: {message}", file.display()));
            if failures.len() >= 5 {
                break;
            }
        } else if corpus.len() < 256 && executions > replayed && rng.next() % 64 == 0 {
            // Keep some passing inputs as parents for mutation (in memory).
            corpus.push(input);
        }
    }
    eprintln!(
        "fuzz {target}: {executions} executions ({replayed} from the corpus) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "fuzz {target} found:\n{}",
        failures.join("\n")
    );
}

#[test]
fn fuzz_csr() {
    fuzz("csr", csr_target);
}

#[test]
fn fuzz_dense() {
    fuzz("dense", dense_target);
}

#[test]
fn fuzz_inertia() {
    fuzz("inertia", inertia_target);
}

#[test]
fn fuzz_tridiagonal() {
    fuzz("tridiagonal", tridiagonal_target);
}
