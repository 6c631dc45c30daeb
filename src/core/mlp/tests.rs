//! Checks against finite differences, closed forms and the loss's structure.

use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;
use crate::core::op::SymOp;

fn normal_vec(rng: &mut Xoshiro256PlusPlus, n: usize, scale: f64) -> Vec<f64> {
    // Sum of four uniforms: a cheap bell shape, enough for test data.
    (0..n)
        .map(|_| {
            let s: f64 = (0..4)
                .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                .sum();
            scale * s * 1.7
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&diff) / norm(b).max(1e-300)
}

/// A problem instance: network, parameters, data and targets.
struct Problem {
    mlp: Mlp,
    params: Vec<f64>,
    x: Vec<f64>,
    labels: Vec<i64>,
    values: Vec<f64>,
}

impl Problem {
    fn new(
        sizes: &[usize],
        activation: Activation,
        loss: Loss,
        bias: bool,
        batch: usize,
        seed: u64,
    ) -> Self {
        let mlp = Mlp::new(sizes.to_vec(), activation, loss, bias).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut params = mlp.init(seed);
        // Non-zero biases so every term of the products is exercised.
        let noise = normal_vec(&mut rng, params.len(), 0.3);
        for (p, n) in params.iter_mut().zip(noise) {
            *p += n;
        }
        let x = normal_vec(&mut rng, batch * sizes[0], 1.0);
        let n_out = *sizes.last().unwrap();
        let labels = (0..batch)
            .map(|_| (rng.next_u64() % n_out as u64) as i64)
            .collect();
        let values = normal_vec(&mut rng, batch * n_out, 1.0);
        Problem {
            mlp,
            params,
            x,
            labels,
            values,
        }
    }

    fn targets(&self) -> Targets<'_, f64> {
        match self.mlp.loss_kind() {
            Loss::CrossEntropy => Targets::Labels(&self.labels),
            Loss::Mse => Targets::Values(&self.values),
        }
    }

    fn loss_at(&self, params: &[f64]) -> f64 {
        self.mlp.loss(params, &self.x, self.targets()).unwrap()
    }

    fn grad_at(&self, params: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; params.len()];
        self.mlp
            .loss_and_grad(params, &self.x, self.targets(), &mut g)
            .unwrap();
        g
    }

    fn hvp(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        self.mlp
            .hvp(&self.params, &self.x, self.targets(), v, &mut out)
            .unwrap();
        out
    }

    fn ggn(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        self.mlp
            .ggn_vp(&self.params, &self.x, self.targets(), v, &mut out)
            .unwrap();
        out
    }

    /// H v by central differences of the gradient along v (step 1e-5).
    fn gradient_differences(&self, v: &[f64]) -> Vec<f64> {
        let h = 1e-5;
        let plus = self.grad_at(&self.shifted(v, h));
        let minus = self.grad_at(&self.shifted(v, -h));
        plus.iter()
            .zip(&minus)
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect()
    }

    fn shifted(&self, v: &[f64], step: f64) -> Vec<f64> {
        self.params
            .iter()
            .zip(v)
            .map(|(p, d)| p + step * d)
            .collect()
    }
}

fn all_configs() -> Vec<(Activation, Loss, bool)> {
    let mut configs = Vec::new();
    for act in Activation::ALL {
        for loss in [Loss::CrossEntropy, Loss::Mse] {
            for bias in [true, false] {
                configs.push((act, loss, bias));
            }
        }
    }
    configs
}

/// Relu's kinks make finite differences meaningless within a step of z = 0:
/// these tests need every pre-activation at least `margin` away from one.
fn away_from_kinks(problem: &Problem, margin: f64) -> bool {
    if problem.mlp.activation() != Activation::Relu {
        return true;
    }
    let sizes = problem.mlp.sizes().to_vec();
    let mut a = problem.x.clone();
    for (start, n_in, n_out) in problem
        .mlp
        .layer_offsets()
        .into_iter()
        .take(sizes.len() - 2)
    {
        let batch = a.len() / n_in;
        let mut next = vec![0.0; batch * n_out];
        for i in 0..batch {
            for j in 0..n_out {
                let mut z = if problem.mlp.bias() {
                    problem.params[start + n_in * n_out + j]
                } else {
                    0.0
                };
                for k in 0..n_in {
                    z += a[i * n_in + k] * problem.params[start + k * n_out + j];
                }
                if z.abs() < margin {
                    return false;
                }
                next[i * n_out + j] = z.max(0.0);
            }
        }
        a = next;
    }
    true
}

fn problem_for(act: Activation, loss: Loss, bias: bool, sizes: &[usize]) -> Problem {
    (0..200u64)
        .map(|seed| Problem::new(sizes, act, loss, bias, 7, 1000 + seed))
        .find(|p| away_from_kinks(p, 1e-3))
        .expect("some seed keeps relu away from its kinks")
}

#[test]
fn gradient_matches_central_differences() {
    for (act, loss, bias) in all_configs() {
        let p = problem_for(act, loss, bias, &[3, 4, 5, 3]);
        let g = p.grad_at(&p.params);
        let h = 1e-6;
        let numeric: Vec<f64> = (0..p.params.len())
            .map(|i| {
                let mut e = vec![0.0; p.params.len()];
                e[i] = 1.0;
                (p.loss_at(&p.shifted(&e, h)) - p.loss_at(&p.shifted(&e, -h))) / (2.0 * h)
            })
            .collect();
        let err = rel_err(&g, &numeric);
        assert!(
            err < 1e-7,
            "{act} {loss} bias={bias}: gradient rel err {err:e}"
        );
    }
}

#[test]
fn hvp_matches_differences_of_the_gradient() {
    for (act, loss, bias) in all_configs() {
        let p = problem_for(act, loss, bias, &[3, 4, 5, 3]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..3 {
            let v = normal_vec(&mut rng, p.params.len(), 1.0);
            let err = rel_err(&p.hvp(&v), &p.gradient_differences(&v));
            assert!(err < 1e-6, "{act} {loss} bias={bias}: hvp rel err {err:e}");
        }
    }
}

#[test]
fn hessian_is_symmetric_and_ggn_is_psd() {
    for (act, loss, bias) in all_configs() {
        let p = Problem::new(&[3, 4, 5, 3], act, loss, bias, 9, 42);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for _ in 0..4 {
            let u = normal_vec(&mut rng, p.params.len(), 1.0);
            let v = normal_vec(&mut rng, p.params.len(), 1.0);
            let (uhv, vhu) = (dot(&u, &p.hvp(&v)), dot(&v, &p.hvp(&u)));
            let scale = norm(&u) * norm(&v) * norm(&p.hvp(&u)) / norm(&u);
            assert!(
                (uhv - vhu).abs() <= 1e-12 * scale,
                "{act} {loss} bias={bias}: {uhv} vs {vhu}"
            );
            let (ugv, vgu) = (dot(&u, &p.ggn(&v)), dot(&v, &p.ggn(&u)));
            assert!(
                (ugv - vgu).abs() <= 1e-12 * scale.max(ugv.abs()),
                "ggn {act} {loss}: {ugv} vs {vgu}"
            );
            let vgv = dot(&v, &p.ggn(&v));
            assert!(
                vgv >= -1e-14 * norm(&v).powi(2),
                "{act} {loss} bias={bias}: vᵀGv = {vgv}"
            );
        }
    }
}

#[test]
fn ggn_equals_hessian_for_a_linear_model() {
    // One layer: the outputs are linear in θ, so H = Jᵀ H_z J exactly.
    for loss in [Loss::CrossEntropy, Loss::Mse] {
        for bias in [true, false] {
            let p = Problem::new(&[4, 3], Activation::Tanh, loss, bias, 11, 5);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
            let v = normal_vec(&mut rng, p.params.len(), 1.0);
            let err = rel_err(&p.ggn(&v), &p.hvp(&v));
            assert!(err < 1e-14, "{loss} bias={bias}: {err:e}");
        }
    }
}

#[test]
fn ggn_equals_hessian_at_zero_residual() {
    // mse with targets equal to the outputs: δ = 0, so every second-order
    // term through the network vanishes and H = G for any architecture.
    for act in Activation::ALL {
        let mut p = Problem::new(&[3, 5, 4, 2], act, Loss::Mse, true, 8, 77);
        p.values = p.mlp.outputs(&p.params, &p.x).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let v = normal_vec(&mut rng, p.params.len(), 1.0);
        let err = rel_err(&p.ggn(&v), &p.hvp(&v));
        assert!(err < 1e-13, "{act}: {err:e}");
        // And G is then the Hessian's own PSD part: it must differ from H elsewhere.
        let generic = Problem::new(&[3, 5, 4, 2], act, Loss::Mse, true, 8, 77);
        if act != Activation::Identity {
            assert!(rel_err(&generic.ggn(&v), &generic.hvp(&v)) > 1e-6, "{act}");
        }
    }
}

#[test]
fn products_over_many_row_chunks() {
    // Layers wide and batches long enough that the row-wise kernels (bias
    // added after the GEMMs, column sums fused into the backward update) split
    // into several parallel chunks, with a partial last chunk.
    for act in [Activation::Tanh, Activation::Relu] {
        let mut p = Problem::new(&[5, 96, 80, 4], act, Loss::Mse, true, 397, 31);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let v = normal_vec(&mut rng, p.params.len(), 1.0);
        if act == Activation::Tanh {
            let err = rel_err(&p.hvp(&v), &p.gradient_differences(&v));
            assert!(err < 1e-6, "{act}: hvp rel err {err:e}");
        }
        // At zero residual H = G: the Gauss–Newton path's own bias handling
        // checked against the Hessian's (and, for relu, σ'' = 0 throughout).
        p.values = p.mlp.outputs(&p.params, &p.x).unwrap();
        let err = rel_err(&p.ggn(&v), &p.hvp(&v));
        assert!(err < 1e-13, "{act}: ggn vs hvp at zero residual {err:e}");
    }
}

#[test]
fn lecture_network_closed_form() {
    // MLP([1, 1, 1], identity, no bias, mse) on x = 1, y = 1: L = (1 − w1 w2)².
    let mlp = Mlp::new(vec![1, 1, 1], Activation::Identity, Loss::Mse, false).unwrap();
    assert_eq!(mlp.n_params(), 2);
    let (x, y) = ([1.0], [1.0]);
    let hessian_at = |w: [f64; 2]| {
        let mut h = [[0.0; 2]; 2];
        for (j, e) in [[1.0, 0.0], [0.0, 1.0]].iter().enumerate() {
            let mut col = [0.0; 2];
            mlp.hvp(&w, &x, Targets::Values(&y), e, &mut col).unwrap();
            h[0][j] = col[0];
            h[1][j] = col[1];
        }
        h
    };
    assert_eq!(hessian_at([0.0, 0.0]), [[0.0, -2.0], [-2.0, 0.0]]);
    assert_eq!(hessian_at([1.0, 1.0]), [[2.0, 2.0], [2.0, 2.0]]);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for _ in 0..5 {
        let w = normal_vec(&mut rng, 2, 1.5);
        let (w1, w2) = (w[0], w[1]);
        let residual = 1.0 - w1 * w2;
        let loss = mlp.loss(&w, &x, Targets::Values(&y)).unwrap();
        assert!((loss - residual * residual).abs() <= 1e-15 * (1.0 + loss));
        let mut g = [0.0; 2];
        mlp.loss_and_grad(&w, &x, Targets::Values(&y), &mut g)
            .unwrap();
        let expected = [-2.0 * residual * w2, -2.0 * residual * w1];
        assert!(rel_err(&g, &expected) <= 1e-15, "{g:?} vs {expected:?}");
        let h = hessian_at([w1, w2]);
        let off = 4.0 * w1 * w2 - 2.0;
        let closed = [[2.0 * w2 * w2, off], [off, 2.0 * w1 * w1]];
        for r in 0..2 {
            for c in 0..2 {
                assert!(
                    (h[r][c] - closed[r][c]).abs() <= 1e-14 * (1.0 + closed[r][c].abs()),
                    "{h:?} vs {closed:?}"
                );
            }
        }
    }
}

#[test]
fn cached_state_matches_one_off_products_and_operators() {
    for (act, loss, bias) in [
        (Activation::Tanh, Loss::CrossEntropy, true),
        (Activation::Relu, Loss::Mse, false),
    ] {
        let p = Problem::new(&[5, 6, 4], act, loss, bias, 10, 8);
        let state = p.mlp.hessian_state(&p.params, &p.x, p.targets()).unwrap();
        assert_eq!(state.loss(), p.loss_at(&p.params));
        assert_eq!(state.grad(), &p.grad_at(&p.params)[..]);
        let state = Arc::new(state);
        let (hop, gop) = (HessianOp::new(state.clone()), GgnOp::new(state.clone()));
        assert_eq!(hop.dim(), p.params.len());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let ncols = 3;
        let block = normal_vec(&mut rng, p.params.len() * ncols, 1.0);
        let mut hblock = vec![0.0; block.len()];
        hop.apply_block(&block, &mut hblock, ncols).unwrap();
        for c in 0..ncols {
            let v: Vec<f64> = (0..p.params.len()).map(|i| block[i * ncols + c]).collect();
            // Twice through the state: the pooled workspace must not leak between products.
            for _ in 0..2 {
                let mut cached = vec![0.0; v.len()];
                state.hvp(&v, &mut cached).unwrap();
                assert_eq!(cached, p.hvp(&v));
                let mut ggn = vec![0.0; v.len()];
                state.ggn_vp(&v, &mut ggn).unwrap();
                assert_eq!(ggn, p.ggn(&v));
                let mut via_op = vec![0.0; v.len()];
                gop.apply(&v, &mut via_op).unwrap();
                assert_eq!(via_op, ggn);
            }
            let column: Vec<f64> = (0..p.params.len()).map(|i| hblock[i * ncols + c]).collect();
            assert_eq!(column, p.hvp(&v));
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    for (act, loss) in [
        (Activation::Gelu, Loss::CrossEntropy),
        (Activation::Sigmoid, Loss::Mse),
    ] {
        let p = Problem::new(&[6, 8, 8, 4], act, loss, true, 32, 21);
        let cast = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let widen = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (params, x, values) = (cast(&p.params), cast(&p.x), cast(&p.values));
        let targets = match loss {
            Loss::CrossEntropy => Targets::Labels(&p.labels),
            Loss::Mse => Targets::Values(&values),
        };
        let mut g32 = vec![0.0f32; params.len()];
        let l32 = p.mlp.loss_and_grad(&params, &x, targets, &mut g32).unwrap();
        let l64 = p.loss_at(&p.params);
        assert!(
            (l32 - l64).abs() < 1e-5 * l64.abs(),
            "{act}: loss {l32} vs {l64}"
        );
        assert!(
            rel_err(&widen(&g32), &p.grad_at(&p.params)) < 1e-5,
            "{act}: grad"
        );
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let v = normal_vec(&mut rng, params.len(), 1.0);
        let mut h32 = vec![0.0f32; params.len()];
        p.mlp
            .hvp(&params, &x, targets, &cast(&v), &mut h32)
            .unwrap();
        assert!(rel_err(&widen(&h32), &p.hvp(&v)) < 1e-4, "{act}: hvp");
        let state = Arc::new(p.mlp.hessian_state(&params, &x, targets).unwrap());
        let mut h_op = vec![0.0; v.len()];
        let op = HessianOp::new(state);
        op.apply(&v, &mut h_op).unwrap();
        assert!(rel_err(&h_op, &p.hvp(&v)) < 1e-4, "{act}: f32 operator");
        // A float32 input handed over as it is gives exactly the product of
        // the same values widened.
        let v32 = cast(&v);
        let (mut narrow_in, mut wide_in) = (vec![0.0; v.len()], vec![0.0; v.len()]);
        op.apply_f32_input(&v32, &mut narrow_in).unwrap().unwrap();
        op.apply(&widen(&v32), &mut wide_in).unwrap();
        assert_eq!(narrow_in, wide_in, "{act}: float32 input");
        let mut bad = v32.clone();
        bad[3] = f32::NAN;
        assert!(op.apply_f32_input(&bad, &mut narrow_in).unwrap().is_err());
        let state64 = Arc::new(p.mlp.hessian_state(&p.params, &p.x, p.targets()).unwrap());
        assert!(HessianOp::new(state64)
            .apply_f32_input(&v32, &mut narrow_in)
            .is_none());
    }
}

#[test]
fn loss_values_and_init() {
    // Zero weights: uniform softmax, so cross-entropy is ln(n_out) whatever the data.
    let mlp = Mlp::new(vec![2, 3, 4], Activation::Tanh, Loss::CrossEntropy, true).unwrap();
    let zeros = vec![0.0; mlp.n_params()];
    let loss = mlp
        .loss(&zeros, &[1.0, 2.0, -1.0, 0.5], Targets::Labels(&[0, 3]))
        .unwrap();
    assert!((loss - 4f64.ln()).abs() < 1e-15);
    assert_eq!(mlp.n_params(), 2 * 3 + 3 + 3 * 4 + 4);
    let (a, b) = (mlp.init(3), mlp.init(3));
    assert_eq!(a, b);
    assert_ne!(a, mlp.init(4));
    let limit = (6.0f64 / 5.0).sqrt();
    assert!(a[..6].iter().all(|w| w.abs() <= limit) && a[6..9].iter().all(|&b| b == 0.0));
    assert!(a[..6].iter().any(|&w| w != 0.0));
}

#[test]
fn invalid_inputs_are_errors_naming_the_argument() {
    let names = |r: Result<f64>| match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v}"),
    };
    for sizes in [vec![3], vec![], vec![3, 0, 2]] {
        let err = Mlp::new(sizes, Activation::Tanh, Loss::Mse, true).unwrap_err();
        assert!(err.to_string().starts_with("sizes"), "{err}");
    }
    assert!(Mlp::new(vec![usize::MAX, 2, 2], Activation::Tanh, Loss::Mse, true).is_err());
    assert!("hinge"
        .parse::<Loss>()
        .unwrap_err()
        .to_string()
        .contains("loss"));

    let ce = Mlp::new(vec![2, 3, 2], Activation::Tanh, Loss::CrossEntropy, true).unwrap();
    let params = ce.init(0);
    let x = [0.5, -1.0, 2.0, 0.0];
    assert!(names(ce.loss(&params[1..], &x, Targets::Labels(&[0, 1]))).contains("params"));
    assert!(names(ce.loss(&params, &x[..3], Targets::Labels(&[0, 1]))).contains("x"));
    assert!(names(ce.loss(&params, &[], Targets::Labels(&[]))).contains("x"));
    assert!(names(ce.loss(&params, &x, Targets::Labels(&[0]))).contains("y"));
    let out_of_range = names(ce.loss(&params, &x, Targets::Labels(&[0, 2])));
    assert!(
        out_of_range.starts_with("y") && out_of_range.contains("0..2"),
        "{out_of_range}"
    );
    assert!(names(ce.loss(&params, &x, Targets::Labels(&[-1, 0]))).starts_with("y"));
    assert!(names(ce.loss(&params, &x, Targets::Values(&[0.0, 1.0]))).starts_with("y"));
    let mut bad = params.clone();
    bad[3] = f64::NAN;
    assert!(
        matches!(ce.loss(&bad, &x, Targets::Labels(&[0, 1])), Err(Error::NonFinite { ref what, index: 3 }) if what == "params")
    );
    let bad_x = [0.5, f64::INFINITY, 2.0, 0.0];
    assert!(
        matches!(ce.loss(&params, &bad_x, Targets::Labels(&[0, 1])), Err(Error::NonFinite { ref what, .. }) if what == "x")
    );

    let mse = Mlp::new(vec![2, 2], Activation::Identity, Loss::Mse, false).unwrap();
    let w = [1.0, 0.0, 0.0, 1.0];
    assert!(names(mse.loss(&w, &x, Targets::Labels(&[0, 1]))).starts_with("y"));
    assert!(names(mse.loss(&w, &x, Targets::Values(&[0.0; 3]))).starts_with("y"));
    assert!(
        matches!(mse.loss(&w, &x, Targets::Values(&[0.0, 1.0, f64::NAN, 0.0])), Err(Error::NonFinite { ref what, index: 2 }) if what == "y")
    );
    let y = [0.0; 4];
    let mut grad = [0.0; 3];
    assert!(names(mse.loss_and_grad(&w, &x, Targets::Values(&y), &mut grad)).contains("grad_out"));
    let mut out = [0.0; 4];
    let err = mse
        .hvp(
            &w,
            &x,
            Targets::Values(&y),
            &[1.0, f64::NAN, 0.0, 0.0],
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { ref what, index: 1 } if what == "v"),
        "{err}"
    );
    let err = mse
        .ggn_vp(&w, &x, Targets::Values(&y), &[1.0; 3], &mut out)
        .unwrap_err();
    assert!(err.to_string().starts_with("v"), "{err}");
    let err = mse
        .hvp(&w, &x, Targets::Values(&y), &[1.0; 4], &mut out[..2])
        .unwrap_err();
    assert!(err.to_string().starts_with("out"), "{err}");
    let state = Arc::new(mse.hessian_state(&w, &x, Targets::Values(&y)).unwrap());
    let op = HessianOp::new(state.clone());
    assert!(op.apply(&[1.0; 3], &mut [0.0; 4]).is_err());
    assert!(matches!(
        op.apply(&[f64::NAN; 4], &mut [0.0; 4]),
        Err(Error::NonFinite { .. })
    ));
    let mut state_out = [0.0; 4];
    assert!(state.hvp(&[1.0; 5], &mut state_out).is_err());
}

/// Timings for the brief's reference problem; run with
/// `cargo test --release bench_reference -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_reference_network() {
    use std::time::Instant;
    let sizes = vec![64, 1024, 1024, 10];
    let batch = 1797;
    let mlp = Mlp::new(sizes.clone(), Activation::Tanh, Loss::CrossEntropy, true).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let params: Vec<f32> = mlp.init(0).iter().map(|&a| a as f32).collect();
    let x: Vec<f32> = normal_vec(&mut rng, batch * 64, 1.0)
        .iter()
        .map(|&a| a as f32)
        .collect();
    let labels: Vec<i64> = (0..batch).map(|i| (i % 10) as i64).collect();
    let y = Targets::Labels(&labels);
    let v: Vec<f32> = normal_vec(&mut rng, params.len(), 1.0)
        .iter()
        .map(|&a| a as f32)
        .collect();
    let mut out = vec![0.0f32; params.len()];
    println!(
        "threads {}, n_params {}",
        rayon::current_num_threads(),
        mlp.n_params()
    );

    let time = |label: &str, reps: usize, f: &mut dyn FnMut()| {
        f();
        // The minimum over repetitions: the machine is shared, and the minimum
        // is the least disturbed measurement.
        let mut secs = f64::INFINITY;
        for _ in 0..reps {
            let start = Instant::now();
            f();
            secs = secs.min(start.elapsed().as_secs_f64());
        }
        println!("{label:<28} {:8.2} ms", secs * 1e3);
        secs
    };

    // The GEMM floor: the forward pass's shapes, one GEMM each.
    let mut gemm_secs = 0.0;
    let mut flops = 0.0;
    let mut input = x.clone();
    for (&n_in, &n_out) in sizes.iter().zip(&sizes[1..]) {
        let w: Vec<f32> = normal_vec(&mut rng, n_in * n_out, 0.05)
            .iter()
            .map(|&a| a as f32)
            .collect();
        let mut z = vec![0.0f32; batch * n_out];
        let label = format!("gemm {batch}x{n_in}x{n_out}");
        let secs = time(&label, 10, &mut || {
            kernels::gemm(
                kernels::view_mut(&mut z, batch, n_out),
                false,
                kernels::view(&input, batch, n_in),
                kernels::view(&w, n_in, n_out),
            )
        });
        let f = 2.0 * (batch * n_in * n_out) as f64;
        println!("{:>28} {:8.1} GFLOP/s", "", f / secs / 1e9);
        gemm_secs += secs;
        flops += f;
        input = z;
    }
    {
        // The backward shapes of the big layer: aᵀδ and δWᵀ.
        let (n, b) = (1024, batch);
        let a: Vec<f32> = normal_vec(&mut rng, b * n, 1.0)
            .iter()
            .map(|&a| a as f32)
            .collect();
        let d: Vec<f32> = normal_vec(&mut rng, b * n, 1.0)
            .iter()
            .map(|&a| a as f32)
            .collect();
        let mut gw = vec![0.0f32; n * n];
        let mut g = vec![0.0f32; b * n];
        let secs = time("gemm aT.delta 1024x1797x1024", 10, &mut || {
            kernels::gemm(
                kernels::view_mut(&mut gw, n, n),
                false,
                kernels::view(&a, b, n).transpose(),
                kernels::view(&d, b, n),
            )
        });
        println!(
            "{:>28} {:8.1} GFLOP/s",
            "",
            2.0 * (b * n * n) as f64 / secs / 1e9
        );
        let mut a_t = vec![0.0f32; b * n];
        for i in 0..b {
            for k in 0..n {
                a_t[k * b + i] = a[i * n + k];
            }
        }
        let secs = time("gemm (aT stored).delta", 10, &mut || {
            kernels::gemm(
                kernels::view_mut(&mut gw, n, n),
                false,
                kernels::view(&a_t, n, b),
                kernels::view(&d, b, n),
            )
        });
        println!(
            "{:>28} {:8.1} GFLOP/s",
            "",
            2.0 * (b * n * n) as f64 / secs / 1e9
        );
        let secs = time("gemm delta.WT 1797x1024x1024", 10, &mut || {
            kernels::gemm(
                kernels::view_mut(&mut g, b, n),
                false,
                kernels::view(&d, b, n),
                kernels::view(&gw, n, n).transpose(),
            )
        });
        println!(
            "{:>28} {:8.1} GFLOP/s",
            "",
            2.0 * (b * n * n) as f64 / secs / 1e9
        );
    }
    println!(
        "forward GEMMs total {:.2} ms, {:.1} GFLOP/s",
        gemm_secs * 1e3,
        flops / gemm_secs / 1e9
    );
    // Gradient floor: forward + two backward GEMMs per layer, minus g_0.
    let first = 2.0 * (batch * sizes[0] * sizes[1]) as f64;
    let floor = (3.0 * flops - first) / (flops / gemm_secs);
    println!("gradient GEMM floor        {:8.2} ms", floor * 1e3);

    time("loss", 5, &mut || {
        mlp.loss(&params, &x, y).unwrap();
    });
    let grad_secs = time("loss_and_grad", 5, &mut || {
        mlp.loss_and_grad(&params, &x, y, &mut out).unwrap();
    });
    time("hvp (uncached)", 3, &mut || {
        mlp.hvp(&params, &x, y, &v, &mut out).unwrap()
    });
    let state = mlp.hessian_state(&params, &x, y).unwrap();
    let hvp_secs = time("state.hvp (cached)", 5, &mut || {
        state.hvp(&v, &mut out).unwrap()
    });
    time("state.ggn_vp (cached)", 5, &mut || {
        state.ggn_vp(&v, &mut out).unwrap()
    });
    time("hessian_state build", 3, &mut || {
        mlp.hessian_state(&params, &x, y).unwrap();
    });
    let op = HessianOp::new(Arc::new(state));
    let v64: Vec<f64> = v.iter().map(|&a| a as f64).collect();
    let mut out64 = vec![0.0; v64.len()];
    time("HessianOp::apply (f64 io)", 5, &mut || {
        op.apply(&v64, &mut out64).unwrap()
    });
    println!(
        "grad / floor = {:.2}, cached hvp / grad = {:.2}",
        grad_secs / floor,
        hvp_secs / grad_secs
    );
}

#[test]
#[ignore]
fn bench_kernels() {
    use std::time::Instant;
    let n = 1797 * 1024;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let base: Vec<f32> = normal_vec(&mut rng, n, 1.0)
        .iter()
        .map(|&a| a as f32)
        .collect();
    let mut z = base.clone();
    let mut d1 = vec![0.0f32; n];
    let mut d2 = vec![0.0f32; n];
    for act in Activation::ALL {
        for want in [
            kernels::Derivatives::None,
            kernels::Derivatives::First,
            kernels::Derivatives::Second,
        ] {
            z.copy_from_slice(&base);
            let start = Instant::now();
            kernels::activate(act, &mut z, &mut d1, &mut d2, want);
            let outputs = match want {
                kernels::Derivatives::None => "σ",
                kernels::Derivatives::First => "σ, σ'",
                kernels::Derivatives::Second => "σ, σ', σ''",
            };
            println!(
                "{act:<9} {outputs:<11} {:7.2} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    let start = Instant::now();
    let s: f32 = base.iter().map(|&v| v.tanh()).sum();
    println!(
        "serial tanhf {:7.2} ms ({s})",
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    let v = vec![0.0f32; n];
    println!(
        "alloc {:7.2} ms {}",
        start.elapsed().as_secs_f64() * 1e3,
        v[n / 2]
    );
}

/// A loop for `perf record`: loss_and_grad and cached hvp on the reference network.
#[test]
#[ignore]
fn profile_reference_network() {
    let mlp = Mlp::new(
        vec![64, 1024, 1024, 10],
        Activation::Tanh,
        Loss::CrossEntropy,
        true,
    )
    .unwrap();
    let batch = 1797;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let params: Vec<f32> = mlp.init(0).iter().map(|&a| a as f32).collect();
    let x: Vec<f32> = normal_vec(&mut rng, batch * 64, 1.0)
        .iter()
        .map(|&a| a as f32)
        .collect();
    let labels: Vec<i64> = (0..batch).map(|i| (i % 10) as i64).collect();
    let mut out = vec![0.0f32; params.len()];
    let mode = std::env::var("PROFILE_MODE").unwrap_or_default();
    let state = mlp
        .hessian_state(&params, &x, Targets::Labels(&labels))
        .unwrap();
    for _ in 0..30 {
        if mode == "hvp" {
            state.hvp(&params, &mut out).unwrap();
        } else if mode == "loss" {
            mlp.loss(&params, &x, Targets::Labels(&labels)).unwrap();
        } else {
            mlp.loss_and_grad(&params, &x, Targets::Labels(&labels), &mut out)
                .unwrap();
        }
    }
}
