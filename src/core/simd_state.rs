//! Clearing the upper halves of the vector registers after faer.
//!
//! faer's AVX-512 GEMM micro-kernels return with the upper halves of the
//! vector registers dirty (no `vzeroupper`). Until they are cleared, every
//! legacy-SSE instruction on that thread pays a state-transition penalty: we
//! measured glibc's `exp` go from 5 ns to 173 ns after one small faer product
//! on this machine's Xeon, which made softmax and tanh 20x slower and slows
//! any baseline-x86-64 loop (SpMV included). Each call site that ran faer
//! clears the state on every thread that may have run its kernels.

/// Clear the upper vector-register state on the calling thread.
#[inline]
pub fn clear_upper_state() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: `zero_upper_avx` only requires the AVX instruction set, whose
        // presence was checked at run time on the line above.
        unsafe { zero_upper_avx() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn zero_upper_avx() {
    std::arch::x86_64::_mm256_zeroupper();
}

/// Clear it on the calling thread and on every thread of the current rayon
/// pool (faer's parallel kernels run there).
pub fn clear_upper_state_all_threads() {
    rayon::broadcast(|_| clear_upper_state());
    clear_upper_state();
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, Par};
    use std::hint::black_box;
    use std::time::Instant;

    fn ns_per_exp() -> f64 {
        let n = 200_000;
        let start = Instant::now();
        let mut s = 0.0;
        for i in 0..n {
            s += black_box(-(i as f64) * 1e-6).exp();
        }
        black_box(s);
        start.elapsed().as_secs_f64() / n as f64 * 1e9
    }

    #[test]
    fn clearing_restores_scalar_speed_after_faer() {
        let a = Mat::<f64>::from_fn(256, 64, |i, j| (i + j) as f64);
        let b = Mat::<f64>::from_fn(64, 16, |i, j| (i * j) as f64);
        let mut c = Mat::<f64>::zeros(256, 16);
        matmul(
            c.as_mut(),
            Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0,
            Par::Seq,
        );
        clear_upper_state_all_threads();
        let cleared = ns_per_exp();
        // Generous bound: a dirty state costs ~30x; a clean one a few ns.
        assert!(cleared < 60.0, "exp takes {cleared} ns after clearing");
        black_box(&c);
    }
}
