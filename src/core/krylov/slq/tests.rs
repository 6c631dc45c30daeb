use super::*;
use crate::core::monitor::Silent;

/// `c_0 L_{d0} ⊗ I ⊗ I + c_1 I ⊗ L_{d1} ⊗ I + c_2 I ⊗ I ⊗ L_{d2} − shift·I`
/// with Dirichlet 1D Laplacians L_d = tridiag(−1, 2, −1), applied matrix-free.
pub(crate) struct Laplacian3 {
    pub dims: [usize; 3],
    pub coef: [f64; 3],
    pub shift: f64,
}

impl Laplacian3 {
    pub fn eigenvalues(&self) -> Vec<f64> {
        let one_d = |d: usize, c: f64| -> Vec<f64> {
            (1..=d)
                .map(|a| c * (2.0 - 2.0 * (std::f64::consts::PI * a as f64 / (d + 1) as f64).cos()))
                .collect()
        };
        let (e0, e1, e2) = (
            one_d(self.dims[0], self.coef[0]),
            one_d(self.dims[1], self.coef[1]),
            one_d(self.dims[2], self.coef[2]),
        );
        let mut out = Vec::with_capacity(e0.len() * e1.len() * e2.len());
        for a in &e0 {
            for b in &e1 {
                for c in &e2 {
                    out.push(a + b + c - self.shift);
                }
            }
        }
        out
    }

    /// Coefficients of x in the eigenbasis (tensor products of sine vectors),
    /// in the order of `eigenvalues`.
    pub fn to_eigenbasis(&self, x: &[f64]) -> Vec<f64> {
        let [d0, d1, d2] = self.dims;
        let sine = |d: usize| -> Vec<f64> {
            let s = (2.0 / (d + 1) as f64).sqrt();
            let mut m = vec![0.0; d * d];
            for a in 0..d {
                for i in 0..d {
                    m[a * d + i] = s
                        * (std::f64::consts::PI * ((a + 1) * (i + 1)) as f64 / (d + 1) as f64)
                            .sin();
                }
            }
            m
        };
        let (s0, s1, s2) = (sine(d0), sine(d1), sine(d2));
        let mut t = vec![0.0; x.len()];
        for i in 0..d0 {
            for j in 0..d1 {
                for c in 0..d2 {
                    t[(i * d1 + j) * d2 + c] = (0..d2)
                        .map(|k| s2[c * d2 + k] * x[(i * d1 + j) * d2 + k])
                        .sum();
                }
            }
        }
        let mut u = vec![0.0; x.len()];
        for i in 0..d0 {
            for b in 0..d1 {
                for c in 0..d2 {
                    u[(i * d1 + b) * d2 + c] = (0..d1)
                        .map(|j| s1[b * d1 + j] * t[(i * d1 + j) * d2 + c])
                        .sum();
                }
            }
        }
        let mut v = vec![0.0; x.len()];
        for a in 0..d0 {
            for b in 0..d1 {
                for c in 0..d2 {
                    v[(a * d1 + b) * d2 + c] = (0..d0)
                        .map(|i| s0[a * d0 + i] * u[(i * d1 + b) * d2 + c])
                        .sum();
                }
            }
        }
        v
    }
}

impl SymOp for Laplacian3 {
    fn dim(&self) -> usize {
        self.dims.iter().product()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        let [d0, d1, d2] = self.dims;
        let [c0, c1, c2] = self.coef;
        let diagonal = 2.0 * (c0 + c1 + c2) - self.shift;
        let plane = d1 * d2;
        y.par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
            for j in 0..d1 {
                for k in 0..d2 {
                    let idx = (i * d1 + j) * d2 + k;
                    let mut v = diagonal * x[idx];
                    if i > 0 {
                        v -= c0 * x[idx - plane];
                    }
                    if i + 1 < d0 {
                        v -= c0 * x[idx + plane];
                    }
                    if j > 0 {
                        v -= c1 * x[idx - d2];
                    }
                    if j + 1 < d1 {
                        v -= c1 * x[idx + d2];
                    }
                    if k > 0 {
                        v -= c2 * x[idx - 1];
                    }
                    if k + 1 < d2 {
                        v -= c2 * x[idx + 1];
                    }
                    out[j * d2 + k] = v;
                }
            }
        });
        Ok(())
    }
}

pub(crate) struct Diagonal(pub Vec<f64>);

impl SymOp for Diagonal {
    fn dim(&self) -> usize {
        self.0.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        for ((yi, xi), d) in y.iter_mut().zip(x).zip(&self.0) {
            *yi = d * xi;
        }
        Ok(())
    }
}

fn params(n_probes: usize, n_steps: usize, seed: u64) -> SlqParams {
    SlqParams {
        n_probes,
        n_steps,
        seed,
        probe: ProbeKind::Rademacher,
        first_probe: 0,
    }
}

/// The naive estimate: mean Gauss weight inside, with the probes' sample stderr.
fn naive(out: &SlqOutput, lo: f64, hi: f64) -> (f64, f64) {
    let per: Vec<f64> = out
        .nodes
        .iter()
        .zip(&out.weights)
        .map(|(x, w)| {
            x.iter()
                .zip(w)
                .filter(|(&t, _)| t >= lo && t <= hi)
                .map(|(_, &w)| w)
                .sum()
        })
        .collect();
    let c = per.len() as f64;
    let mean = per.iter().sum::<f64>() / c;
    let var = per.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (c - 1.0);
    (mean, (var / c).sqrt())
}

fn fraction(values: &[f64], lo: f64, hi: f64) -> f64 {
    values.iter().filter(|&&x| x >= lo && x <= hi).count() as f64 / values.len() as f64
}

/// 60 % zeros (±1e-10 noise), 25 % positive, 15 % negative.
fn planted_spectrum(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|i| {
            let f = i as f64 / n as f64;
            if f < 0.6 {
                (2.0 * unit() - 1.0) * 1e-10
            } else if f < 0.85 {
                0.1 + unit().powi(2)
            } else {
                -0.1 - 0.5 * unit()
            }
        })
        .collect()
}

#[test]
fn full_krylov_space_gives_exact_quadrature() {
    let diag: Vec<f64> = (0..40).map(|i| (i as f64 - 13.5) * 0.37).collect();
    let op = Diagonal(diag.clone());
    let out = slq(&op, &params(3, 40, 7), &Silent).unwrap();
    for p in 0..3 {
        let z = probe_vector(7, p, 40, ProbeKind::Rademacher);
        let zz: f64 = z.iter().map(|x| x * x).sum();
        let w: &Vec<f64> = &out.weights[p];
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for power in 1..6 {
            let exact: f64 = z
                .iter()
                .zip(&diag)
                .map(|(zi, d)| zi * zi * d.powi(power))
                .sum::<f64>()
                / zz;
            let quad: f64 = out.nodes[p]
                .iter()
                .zip(w)
                .map(|(x, w)| w * x.powi(power))
                .sum();
            assert!(
                (exact - quad).abs() < 1e-10 * 10f64.powi(power),
                "{exact} {quad}"
            );
        }
        let mut nodes = out.nodes[p].clone();
        nodes.sort_by(f64::total_cmp);
        for (a, b) in nodes.iter().zip(&diag) {
            assert!((a - b).abs() < 1e-10);
        }
    }
    // Exact brackets collapse.
    let e = count_fraction(&out, 0.0, f64::INFINITY).unwrap();
    assert!((e.value - fraction(&diag, 0.0, f64::INFINITY)).abs() < 1e-12 && e.stderr < 1e-12);
}

#[test]
fn breakdown_stops_early_and_is_exact() {
    // Three distinct eigenvalues: the Krylov space has dimension 3.
    let diag: Vec<f64> = (0..300).map(|i| [-1.0, 0.5, 2.0][i % 3]).collect();
    let out = slq(&Diagonal(diag), &params(4, 20, 1), &Silent).unwrap();
    for p in 0..4 {
        assert_eq!(out.nodes[p].len(), 3);
        assert_eq!(*out.beta[p].last().unwrap(), 0.0);
    }
    let e = count_fraction(&out, 0.0, f64::INFINITY).unwrap();
    assert!((e.value - 2.0 / 3.0).abs() < 1e-12, "{e:?}");
}

/// `n` eigenvalues spread over [0, 1) with the first and last replaced by
/// the isolated outliers −5 and 8.
/// One probe's (α, β, corrections) with a fresh basis of `T`, never stopped.
fn probe<T: BasisElement>(
    op: &dyn SymOp,
    z: &[f64],
    steps: usize,
    parallel: bool,
) -> (Vec<f64>, Vec<f64>, usize) {
    lanczos_probe(
        op,
        z.to_vec(),
        steps,
        parallel,
        &|| Ok(()),
        &mut Vec::<T>::new(),
    )
    .unwrap()
}

/// The largest `|q_iᵀ q_j|`, i ≠ j, over the first `k` stored basis
/// vectors of a probe: what partial reorthogonalisation must keep below √precision.
fn largest_inner_product<T: BasisElement>(basis: &[T], n: usize, k: usize) -> f64 {
    let column = |i: usize| basis[i * n..(i + 1) * n].iter().map(|x| x.widen());
    let mut largest = 0.0f64;
    for i in 0..k {
        for j in 0..i {
            let d: f64 = column(i).zip(column(j)).map(|(a, b)| a * b).sum();
            largest = largest.max(d.abs());
        }
    }
    largest
}

#[test]
fn stored_basis_stays_semi_orthogonal() {
    // Corrections subtract only the columns that carry the loss; whatever
    // they leave, the stored vectors must stay within √precision of
    // orthogonal (Simon's condition behind the error bars).
    fn check<T: BasisElement>(op: &dyn SymOp, label: &str) {
        let n = op.dim();
        let z = probe_vector(5, 0, n, ProbeKind::Rademacher);
        let steps = 150;
        let mut basis = Vec::<T>::new();
        let (alpha, _, corrections) =
            lanczos_probe(op, z, steps, false, &|| Ok(()), &mut basis).unwrap();
        assert_eq!(alpha.len(), steps, "{label}");
        assert!(corrections > 0, "{label}: nothing to correct");
        let largest = largest_inner_product(&basis, n, steps);
        let bound = op.relative_precision().sqrt();
        assert!(
            largest <= bound,
            "{label}: |q_iᵀq_j| up to {largest:e} > {bound:e}"
        );
    }
    let n = 3000;
    check::<f64>(&Diagonal(spectrum_with_outliers(n)), "float64 diagonal");
    let float32_like = Perturbed {
        diag: spectrum_with_outliers(n),
        delta: 8e-6,
        precision: f32::EPSILON as f64,
    };
    check::<f32>(&float32_like, "float32-like operator, float32 basis");
}

fn spectrum_with_outliers(n: usize) -> Vec<f64> {
    let mut diag: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    diag[0] = -5.0;
    diag[n - 1] = 8.0;
    diag
}

/// The Gauss rule of a probe `z` on [`spectrum_with_outliers`] has exactly
/// one node near each outlier (no ghost copies), weighted `z_i² / ‖z‖²` to
/// within `weight_tolerance`; returns the rule's eigen-decomposition.
fn assert_no_ghosts(
    alpha: &[f64],
    beta: &[f64],
    z: &[f64],
    weight_tolerance: f64,
    context: &str,
) -> crate::core::krylov::tridiag::SymEig {
    let (n, steps) = (z.len(), alpha.len());
    let zz: f64 = z.iter().map(|x| x * x).sum();
    let eig = tridiag_eig(alpha, &beta[..steps - 1]).unwrap();
    for (outlier, index) in [(-5.0, 0), (8.0, n - 1)] {
        let near: Vec<usize> = (0..steps)
            .filter(|&i| (eig.values[i] - outlier).abs() < 0.5)
            .collect();
        assert_eq!(
            near.len(),
            1,
            "ghost copies of {outlier} ({context}): {:?}",
            eig.values
        );
        let weight = eig.vector(near[0])[0].powi(2);
        assert!((weight - z[index].powi(2) / zz).abs() < weight_tolerance);
    }
    eig
}

#[test]
fn partial_reorthogonalization_prevents_ghosts_and_skips_steps() {
    // Two isolated outliers converge within a few steps; afterwards plain
    // Lanczos would lose orthogonality against them and produce "ghost"
    // copies that steal weight from the bulk.
    let n = 3000;
    let diag = spectrum_with_outliers(n);
    let op = Diagonal(diag.clone());
    let z = probe_vector(11, 0, n, ProbeKind::Rademacher);
    let zz: f64 = z.iter().map(|x| x * x).sum();
    let steps = 150;
    let (alpha, beta, reorthogonalized) = probe::<f64>(&op, &z, steps, false);
    assert_eq!(alpha.len(), steps);
    assert!(
        reorthogonalized > 0 && reorthogonalized < steps / 2,
        "{reorthogonalized} of {steps} steps reorthogonalised"
    );
    let eig = assert_no_ghosts(&alpha, &beta, &z, 1e-12, "float64 diagonal");
    // The quadrature's low moments are those of the probe's measure.
    for power in 1..8 {
        let exact: f64 = z
            .iter()
            .zip(&diag)
            .map(|(zi, d)| zi * zi * d.powi(power))
            .sum::<f64>()
            / zz;
        let quad: f64 = (0..steps)
            .map(|i| eig.vector(i)[0].powi(2) * eig.values[i].powi(power))
            .sum();
        assert!(
            (exact - quad).abs() < 1e-11 * 8f64.powi(power),
            "{exact} {quad}"
        );
    }
}

/// `diag(d) + δ·S` with S the cyclic shift: a nonsymmetric perturbation
/// like the rounding of a float32 product, declaring `precision`.
struct Perturbed {
    diag: Vec<f64>,
    delta: f64,
    precision: f64,
}

impl SymOp for Perturbed {
    fn dim(&self) -> usize {
        self.diag.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
        let n = x.len();
        for i in 0..n {
            y[i] = self.diag[i] * x[i] + self.delta * x[(i + 1) % n];
        }
        Ok(())
    }
    fn relative_precision(&self) -> f64 {
        self.precision
    }
}

#[test]
fn operators_less_accurate_than_float64_keep_the_full_recurrence() {
    // A float32-like operator (asymmetry 1e-6 relative), declared as such
    // (with the float32 basis `slq` then uses, and with a float64 one) and
    // passing itself off as float64: every way, the basis must stay
    // semi-orthogonal (no false breakdown, no ghosts).
    fn check<T: BasisElement>(precision: f64, label: &str) {
        let n = 3000;
        let op = Perturbed {
            diag: spectrum_with_outliers(n),
            delta: 8e-6,
            precision,
        };
        let z = probe_vector(5, 0, n, ProbeKind::Rademacher);
        let steps = 150;
        let (alpha, beta, reorthogonalized) = probe::<T>(&op, &z, steps, false);
        assert_eq!(alpha.len(), steps, "premature breakdown: {label}");
        assert!(reorthogonalized < steps, "{reorthogonalized}: {label}");
        assert_no_ghosts(&alpha, &beta, &z, 1e-6, label);
    }
    check::<f32>(f32::EPSILON as f64, "float32 precision, float32 basis");
    check::<f64>(f32::EPSILON as f64, "float32 precision, float64 basis");
    check::<f64>(f64::EPSILON, "float32 passing as float64");
}

#[test]
fn probe_workers_and_one_probe_at_a_time_agree_bitwise() {
    let op = Laplacian3 {
        dims: [15, 16, 17],
        coef: [1.0, 0.8, 0.6],
        shift: 3.0,
    };
    let p = params(5, 30, 7);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| (probe_workers(&op, &p, 8), slq(&op, &p, &Silent).unwrap()))
    };
    let ((one_worker, alone), (two_workers, side_by_side)) = (run(1), run(2));
    assert_eq!((one_worker, two_workers), (1, 2));
    assert_eq!(alone.alpha, side_by_side.alpha);
    assert_eq!(alone.beta, side_by_side.beta);
}

#[test]
fn float32_columns_handed_over_as_they_are_give_the_same_run() {
    // A float32 network's Hessian takes the float32 basis columns as they
    // are; hiding that path (the operator then gets widened copies) must
    // change no bit of the run.
    use crate::core::mlp::{Activation, Loss, Mlp, Targets};
    struct WidenedOnly<'a>(&'a dyn SymOp);
    impl SymOp for WidenedOnly<'_> {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn apply(&self, x: &[f64], y: &mut [f64]) -> Result<()> {
            self.0.apply(x, y)
        }
        fn relative_precision(&self) -> f64 {
            self.0.relative_precision()
        }
    }
    let net = Mlp::new(
        vec![6, 40, 30, 3],
        Activation::Tanh,
        Loss::CrossEntropy,
        true,
    )
    .unwrap();
    let weights: Vec<f32> = net.init(4).iter().map(|&p| p as f32).collect();
    let x: Vec<f32> = (0..50 * 6)
        .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let labels: Vec<i64> = (0..50).map(|i| (i % 3) as i64).collect();
    let op = net
        .hessian_op(&weights, &x, Targets::Labels(&labels))
        .unwrap();
    let mut probe = vec![0.0f32; 10];
    assert!(op
        .apply_f32_input(&probe, &mut [0.0; 10])
        .is_some_and(|r| r.is_err()));
    probe.resize(op.dim(), 1.0);
    assert!(op
        .apply_f32_input(&probe, &mut vec![0.0; op.dim()])
        .is_some());
    let p = params(3, 40, 11);
    let direct = slq(&op, &p, &Silent).unwrap();
    let widened = slq(&WidenedOnly(&op), &p, &Silent).unwrap();
    assert_eq!(direct.alpha, widened.alpha);
    assert_eq!(direct.beta, widened.beta);
}

#[test]
fn sequential_and_parallel_vector_work_agree_bitwise() {
    let op = Laplacian3 {
        dims: [21, 22, 23],
        coef: [1.0, 0.8, 0.6],
        shift: 3.0,
    };
    let z = probe_vector(3, 0, op.dim(), ProbeKind::Gaussian);
    assert_eq!(
        probe::<f64>(&op, &z, 60, false),
        probe::<f64>(&op, &z, 60, true)
    );
    assert_eq!(
        probe::<f32>(&op, &z, 60, false),
        probe::<f32>(&op, &z, 60, true)
    );
    let again = slq(&op, &params(2, 10, 5), &Silent).unwrap();
    let once_more = slq(&op, &params(2, 10, 5), &Silent).unwrap();
    assert_eq!(again.alpha, once_more.alpha);
}

#[test]
fn probe_ranges_concatenate_to_the_whole_run() {
    let op = Laplacian3 {
        dims: [9, 10, 11],
        coef: [1.0, 0.8, 0.6],
        shift: 2.0,
    };
    let whole = slq(&op, &params(5, 25, 8), &Silent).unwrap();
    let mut parts = Vec::new();
    for (first, count) in [(0, 2), (2, 1), (3, 2)] {
        let p = SlqParams {
            first_probe: first,
            ..params(count, 25, 8)
        };
        parts.push(slq(&op, &p, &Silent).unwrap());
    }
    let joined: Vec<Vec<f64>> = parts.iter().flat_map(|o| o.alpha.clone()).collect();
    assert_eq!(joined, whole.alpha);
    let joined: Vec<Vec<f64>> = parts.iter().flat_map(|o| o.nodes.clone()).collect();
    assert_eq!(joined, whole.nodes);
}

#[test]
fn invalid_arguments_name_themselves() {
    let op = Diagonal(vec![1.0; 5]);
    let e = slq(&op, &params(0, 3, 0), &Silent).unwrap_err();
    assert!(e.to_string().contains("n_probes"), "{e}");
    let e = slq(&op, &params(1, 6, 0), &Silent).unwrap_err();
    assert!(
        e.to_string().contains("n_steps") && e.to_string().contains("got 6"),
        "{e}"
    );
    let e = slq(&op, &params(1, 0, 0), &Silent).unwrap_err();
    assert!(e.to_string().contains("n_steps"), "{e}");
    let out = slq(&op, &params(2, 3, 0), &Silent).unwrap();
    assert!(count_fraction(&out, 1.0, 0.0).is_err());
    assert!(count_fraction(&out, f64::NAN, 0.0).is_err());
    assert!(density(&out, &[0.0], 0.0).is_err());
}

#[test]
fn every_probe_bracket_contains_the_exact_probe_value() {
    let op = Laplacian3 {
        dims: [12, 14, 16],
        coef: [1.0, 0.7, 0.45],
        shift: 3.1,
    };
    let eigenvalues = op.eigenvalues();
    for (kind, steps) in [
        (ProbeKind::Rademacher, 40),
        (ProbeKind::Gaussian, 15),
        (ProbeKind::Rademacher, 90),
    ] {
        let p = SlqParams {
            n_probes: 6,
            n_steps: steps,
            seed: 11,
            probe: kind,
            first_probe: 0,
        };
        let out = slq(&op, &p, &Silent).unwrap();
        for (lo, hi) in [
            (1e-9, f64::INFINITY),
            (-0.5, 0.7),
            (f64::NEG_INFINITY, -2.0),
            (0.0, 0.0),
        ] {
            let brackets = probe_brackets(&out, lo, hi).unwrap();
            for (probe, &(lower, upper)) in brackets.iter().enumerate() {
                let z = probe_vector(11, probe, op.dim(), kind);
                let c = op.to_eigenbasis(&z);
                let total: f64 = c.iter().map(|x| x * x).sum();
                let exact: f64 = c
                    .iter()
                    .zip(&eigenvalues)
                    .filter(|(_, &l)| l >= lo && l <= hi)
                    .map(|(x, _)| x * x)
                    .sum::<f64>()
                    / total;
                assert!(
                    exact >= lower - 1e-9 && exact <= upper + 1e-9,
                    "steps {steps} [{lo}, {hi}] probe {probe}: {exact} not in [{lower}, {upper}]"
                );
            }
        }
    }
    // And on a planted spectrum with a large cluster at zero.
    let diag = planted_spectrum(3000, 4);
    let out = slq(&Diagonal(diag.clone()), &params(8, 60, 2), &Silent).unwrap();
    for (lo, hi) in [
        (1e-6, f64::INFINITY),
        (-1e-6, 1e-6),
        (f64::NEG_INFINITY, -1e-6),
        (1e-12, f64::INFINITY),
    ] {
        for (probe, &(lower, upper)) in probe_brackets(&out, lo, hi).unwrap().iter().enumerate() {
            let z = probe_vector(2, probe, diag.len(), ProbeKind::Rademacher);
            let total: f64 = z.iter().map(|x| x * x).sum();
            let exact = z
                .iter()
                .zip(&diag)
                .filter(|(_, &l)| l >= lo && l <= hi)
                .map(|(x, _)| x * x)
                .sum::<f64>()
                / total;
            assert!(
                exact >= lower - 1e-9 && exact <= upper + 1e-9,
                "{exact} not in [{lower}, {upper}]"
            );
        }
    }
}

/// Seeds per coverage experiment: 20 by default, more through
/// HESSX_COVERAGE_SEEDS for the full study.
fn coverage_seeds() -> u64 {
    std::env::var("HESSX_COVERAGE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[derive(Default)]
struct Coverage {
    covered: usize,
    naive_covered: usize,
    runs: usize,
    mean_stderr: f64,
    mean_abs_error: f64,
    mean_naive_stderr: f64,
    mean_naive_abs_error: f64,
    max_stderr: f64,
}

/// One SLQ run per seed, every interval judged on it.
fn coverage(
    op: &dyn SymOp,
    intervals: &[(f64, f64, f64)],
    seeds: u64,
    probes: usize,
    steps: usize,
) -> Vec<Coverage> {
    let mut all: Vec<Coverage> = intervals.iter().map(|_| Coverage::default()).collect();
    for seed in 0..seeds {
        let out = slq(op, &params(probes, steps, 1000 + seed), &Silent).unwrap();
        for (c, &(lo, hi, truth)) in all.iter_mut().zip(intervals) {
            let e = count_fraction(&out, lo, hi).unwrap();
            let (nv, ns) = naive(&out, lo, hi);
            let s = seeds as f64;
            c.runs += 1;
            c.covered += usize::from((e.value - truth).abs() <= 2.0 * e.stderr);
            c.naive_covered += usize::from((nv - truth).abs() <= 2.0 * ns);
            c.mean_stderr += e.stderr / s;
            c.max_stderr = c.max_stderr.max(e.stderr);
            c.mean_abs_error += (e.value - truth).abs() / s;
            c.mean_naive_stderr += ns / s;
            c.mean_naive_abs_error += (nv - truth).abs() / s;
        }
    }
    all
}

fn report(name: &str, c: &Coverage) {
    println!(
        "{name}: covered {}/{} (naive {}/{}), mean stderr {:.5} (max {:.5}), mean |err| {:.5}; naive stderr {:.5}, naive |err| {:.5}",
        c.covered, c.runs, c.naive_covered, c.runs, c.mean_stderr, c.max_stderr, c.mean_abs_error, c.mean_naive_stderr, c.mean_naive_abs_error
    );
}

#[test]
fn stderr_covers_truth_on_anisotropic_laplacian() {
    let op = Laplacian3 {
        dims: [20, 20, 20],
        coef: [1.0, 0.7, 0.45],
        shift: 3.1,
    };
    let eigenvalues = op.eigenvalues();
    let intervals = [
        (
            1e-8,
            f64::INFINITY,
            fraction(&eigenvalues, 1e-8, f64::INFINITY),
        ),
        (-0.3, 0.3, fraction(&eigenvalues, -0.3, 0.3)),
    ];
    let results = coverage(&op, &intervals, coverage_seeds(), 30, 80);
    for (c, name) in results.iter().zip(["positive", "in [-0.3, 0.3]"]) {
        report(&format!("laplacian 20^3 {name}, 30x80"), c);
        assert!(c.covered * 10 >= c.runs * 9);
        assert!(c.max_stderr < 0.05);
    }
}

#[test]
fn stderr_covers_truth_on_planted_zero_cluster() {
    // The cluster's Ritz value converges to ~1e-10 but its residual only to
    // ~1e-5 in 80 steps, so no moment-based bound can place it relative to a
    // threshold of 1e-6 (the bracket there is honestly [0.25, 0.84]); from
    // 1e-4 on the residual bound certifies it.
    let tol = 1e-3;
    let seeds = coverage_seeds();
    for kind in [ProbeKind::Rademacher, ProbeKind::Gaussian] {
        let diag = planted_spectrum(4000, 9);
        let intervals = [
            (tol, f64::INFINITY, fraction(&diag, tol, f64::INFINITY)),
            (-tol, tol, fraction(&diag, -tol, tol)),
            (
                f64::NEG_INFINITY,
                -tol,
                fraction(&diag, f64::NEG_INFINITY, -tol),
            ),
        ];
        let op = Diagonal(diag);
        let mut results = Vec::new();
        for seed in 0..seeds {
            let p = SlqParams {
                n_probes: 30,
                n_steps: 80,
                seed,
                probe: kind,
                first_probe: 0,
            };
            let out = slq(&op, &p, &Silent).unwrap();
            results.push(
                intervals.map(|(lo, hi, _)| {
                    (count_fraction(&out, lo, hi).unwrap(), naive(&out, lo, hi))
                }),
            );
        }
        for (i, name) in ["positive", "near zero", "negative"].iter().enumerate() {
            let truth = intervals[i].2;
            let covered = results
                .iter()
                .filter(|r| (r[i].0.value - truth).abs() <= 2.0 * r[i].0.stderr)
                .count();
            let naive_covered = results
                .iter()
                .filter(|r| (r[i].1 .0 - truth).abs() <= 2.0 * r[i].1 .1)
                .count();
            let runs = seeds as f64;
            let mean_stderr = results.iter().map(|r| r[i].0.stderr).sum::<f64>() / runs;
            let max_stderr = results.iter().map(|r| r[i].0.stderr).fold(0.0, f64::max);
            let err = results
                .iter()
                .map(|r| (r[i].0.value - truth).abs())
                .sum::<f64>()
                / runs;
            let naive_err = results
                .iter()
                .map(|r| (r[i].1 .0 - truth).abs())
                .sum::<f64>()
                / runs;
            let naive_stderr = results.iter().map(|r| r[i].1 .1).sum::<f64>() / runs;
            println!(
                "planted {kind:?} {name} (truth {truth:.4}), 30x80: covered {covered}/{seeds} (naive {naive_covered}/{seeds}), stderr {mean_stderr:.5} (max {max_stderr:.5}), |err| {err:.5}; naive stderr {naive_stderr:.5}, |err| {naive_err:.5}"
            );
            // Gaussian probes leave only sampling error here (the brackets
            // are ~1e-5 wide), whose 2σ coverage with 30 probes is ~94 % in
            // expectation (90-95 % over 100 seeds); 20 seeds need slack.
            let required = if kind == ProbeKind::Gaussian { 8 } else { 9 };
            assert!(covered * 10 >= seeds as usize * required);
            assert!(max_stderr < 0.05);
        }
    }
}

/// The example of a naive error bar that lies (27,000 rows,
/// indefinite, 30 probes x 100 steps): the naive probe stderr must miss the
/// truth while the bracketed one covers it.
#[test]
fn known_failure_30_cubed() {
    let op = Laplacian3 {
        dims: [30, 30, 30],
        coef: [1.0, 1.0, 1.0],
        shift: 5.0,
    };
    let truth = fraction(&op.eigenvalues(), 1e-8, f64::INFINITY);
    let start = std::time::Instant::now();
    let out = slq(&op, &params(30, 100, 0), &Silent).unwrap();
    let elapsed = start.elapsed();
    let e = count_fraction(&out, 1e-8, f64::INFINITY).unwrap();
    let (nv, ns) = naive(&out, 1e-8, f64::INFINITY);
    println!(
        "30^3 shift 5, 30x100 in {elapsed:?}: truth {truth:.5}; naive {nv:.5} ± {ns:.5} (err {:.5}); bracketed {:.5} ± {:.5} (sampling {:.5}, quadrature {:.5}, err {:.5})",
        (nv - truth).abs(),
        e.value,
        e.stderr,
        e.sampling_stderr,
        e.quadrature_halfwidth,
        (e.value - truth).abs()
    );
    assert!((e.value - truth).abs() <= 2.0 * e.stderr);
    assert!(
        (nv - truth).abs() > 3.0 * ns,
        "the naive bar no longer fails here"
    );
}

#[test]
fn density_integrates_to_one() {
    let op = Laplacian3 {
        dims: [8, 9, 10],
        coef: [1.0, 0.5, 0.25],
        shift: 1.0,
    };
    let out = slq(&op, &params(5, 30, 3), &Silent).unwrap();
    let grid: Vec<f64> = (0..4001).map(|i| -4.0 + 12.0 * i as f64 / 4000.0).collect();
    let d = density(&out, &grid, 0.1).unwrap();
    let h = 12.0 / 4000.0;
    let integral: f64 = d.iter().sum::<f64>() * h;
    assert!((integral - 1.0).abs() < 1e-6, "{integral}");
}
