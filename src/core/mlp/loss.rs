//! Output losses on the last (linear) layer's outputs z, their gradients
//! δ = ∂L/∂z and their Hessians H_z applied to a tangent r = R(z).
//!
//! With B examples:
//! - cross-entropy: L = (1/B) Σᵢ [logsumexp(zᵢ) − zᵢ,yᵢ], δᵢ = (pᵢ − e_yᵢ)/B with
//!   pᵢ = softmax(zᵢ), and H_z rᵢ = pᵢ ⊙ (rᵢ − ⟨pᵢ, rᵢ⟩)/B (the softmax Jacobian,
//!   diag(p) − ppᵀ, positive semidefinite);
//! - mse: L = (1/B) Σᵢ ‖zᵢ − yᵢ‖² (no ½), δ = 2(z − y)/B, H_z r = 2r/B.
//!
//! Per-example sums run in f64; the batch sum adds fixed chunks in order so the
//! value does not depend on the thread count.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use super::scalar::Real;
use crate::core::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Softmax cross-entropy against integer class labels.
    CrossEntropy,
    /// Mean over examples of the summed squared error (no ½).
    Mse,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross_entropy",
            Loss::Mse => "mse",
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Loss {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "cross_entropy" => Ok(Loss::CrossEntropy),
            "mse" => Ok(Loss::Mse),
            _ => Err(Error::invalid(
                "loss",
                format!("must be \"cross_entropy\" or \"mse\", got {name:?}"),
            )),
        }
    }
}

/// What the network is fitted to: class labels (cross-entropy) or a row-major
/// `batch x n_outputs` matrix of targets (mse).
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, T> {
    Labels(&'a [i64]),
    Values(&'a [T]),
}

/// Rows per parallel task in the per-example loops.
const ROWS_PER_TASK: usize = 256;

/// The mean loss over the batch; the targets' kind selects the loss (the
/// caller checked it matches the network's). With `delta`, also writes
/// δ = ∂L/∂z there and, for cross-entropy, overwrites `outputs` by the softmax
/// probabilities (what [`apply_output_hessian`] needs).
pub fn evaluate<T: Real>(
    outputs: &mut [T],
    targets: Targets<'_, T>,
    n_out: usize,
    delta: Option<&mut [T]>,
) -> f64 {
    let batch = outputs.len() / n_out;
    let inv_batch = 1.0 / batch as f64;
    let block = ROWS_PER_TASK * n_out;
    let keep_probabilities = delta.is_some();
    let row_sums: Vec<f64> = match targets {
        Targets::Labels(labels) => outputs
            .par_chunks_mut(block)
            .zip(labels.par_chunks(ROWS_PER_TASK))
            .map(|(z_block, label_block)| {
                let mut sum = 0.0;
                for (z, &label) in z_block.chunks_exact_mut(n_out).zip(label_block) {
                    let z_max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v.to_f64()));
                    let partition: f64 = z.iter().map(|&v| (v.to_f64() - z_max).exp()).sum();
                    let log_partition = z_max + partition.ln();
                    sum += log_partition - z[label as usize].to_f64();
                    if keep_probabilities {
                        for v in z.iter_mut() {
                            *v = T::cast((v.to_f64() - log_partition).exp());
                        }
                    }
                }
                sum
            })
            .collect(),
        Targets::Values(values) => outputs
            .par_chunks(block)
            .zip(values.par_chunks(block))
            .map(|(z_block, y_block)| {
                z_block
                    .iter()
                    .zip(y_block)
                    .map(|(&a, &b)| {
                        let r = a.to_f64() - b.to_f64();
                        r * r
                    })
                    .sum::<f64>()
            })
            .collect(),
    };
    if let Some(delta) = delta {
        match targets {
            Targets::Labels(labels) => {
                let scale = T::cast(inv_batch);
                delta
                    .par_chunks_mut(block)
                    .zip(outputs.par_chunks(block))
                    .zip(labels.par_chunks(ROWS_PER_TASK))
                    .for_each(|((d_block, p_block), label_block)| {
                        for ((d, p), &label) in d_block
                            .chunks_exact_mut(n_out)
                            .zip(p_block.chunks_exact(n_out))
                            .zip(label_block)
                        {
                            for (dj, &pj) in d.iter_mut().zip(p) {
                                *dj = pj * scale;
                            }
                            d[label as usize] -= scale;
                        }
                    });
            }
            Targets::Values(values) => {
                let scale = T::cast(2.0 * inv_batch);
                delta
                    .par_chunks_mut(block)
                    .zip(outputs.par_chunks(block).zip(values.par_chunks(block)))
                    .for_each(|(d, (z, y))| {
                        for (dj, (&zj, &yj)) in d.iter_mut().zip(z.iter().zip(y)) {
                            *dj = (zj - yj) * scale;
                        }
                    });
            }
        }
    }
    row_sums.iter().sum::<f64>() * inv_batch
}

/// `r ← H_z r` for the tangent `r` of the outputs, given the softmax
/// probabilities `probabilities` (cross-entropy; unused for mse).
pub fn apply_output_hessian<T: Real>(loss: Loss, probabilities: &[T], r: &mut [T], n_out: usize) {
    let batch = r.len() / n_out;
    let inv_batch = 1.0 / batch as f64;
    let block = ROWS_PER_TASK * n_out;
    match loss {
        Loss::CrossEntropy => {
            r.par_chunks_mut(block)
                .zip(probabilities.par_chunks(block))
                .for_each(|(r_block, p_block)| {
                    for (ri, pi) in r_block
                        .chunks_exact_mut(n_out)
                        .zip(p_block.chunks_exact(n_out))
                    {
                        let mean: f64 = ri
                            .iter()
                            .zip(pi)
                            .map(|(&a, &b)| a.to_f64() * b.to_f64())
                            .sum();
                        for (a, &b) in ri.iter_mut().zip(pi) {
                            *a = T::cast(b.to_f64() * (a.to_f64() - mean) * inv_batch);
                        }
                    }
                });
        }
        Loss::Mse => {
            let scale = T::cast(2.0 * inv_batch);
            r.par_chunks_mut(block).for_each(|c| {
                for a in c {
                    *a *= scale;
                }
            });
        }
    }
}
