//! Labels from zero: predicting by similarity between an item's embedding and
//! the embeddings of the label names (or short label descriptions), before a
//! single human label exists.
//!
//! Why a softmax over scaled cosines: the engine's embeddings are
//! L2-normalised, so a dot product is the cosine. Raw cosines of sentence
//! embeddings sit in a narrow band (0.1–0.5), so a softmax over them would be
//! nearly uniform; a fixed scale (CLIP uses 100, sentence models do well near
//! 20) spreads them into probabilities that rank like the cosines. The scale
//! only sharpens; it does not have to be right, because calibration then fits
//! a temperature on the first human labels and decides how far to trust them.

use std::fmt;

/// The scale applied to cosines before the softmax (see the module doc).
pub const DEFAULT_SCALE: f32 = 20.0;

/// Why a zero-shot classifier could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZeroShotError {
    /// No prototypes were given.
    NoLabels,
    /// A prototype or input row had the wrong length.
    Dimension { expected: usize, got: usize },
    /// A prototype had no direction (all zeros, or not finite).
    Degenerate { label: usize },
}

impl fmt::Display for ZeroShotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLabels => write!(f, "zero-shot needs at least one label prototype"),
            Self::Dimension { expected, got } => write!(
                f,
                "embedding length {got} does not match the prototypes' {expected}"
            ),
            Self::Degenerate { label } => write!(
                f,
                "the embedding of label {label} is zero or not finite; give the label a description"
            ),
        }
    }
}

impl std::error::Error for ZeroShotError {}

/// A classifier whose weights are the normalised label embeddings.
#[derive(Debug, Clone)]
pub struct ZeroShot {
    /// `labels × dim`, row-major, each row of unit length.
    prototypes: Vec<f32>,
    dim: usize,
    scale: f32,
}

impl ZeroShot {
    /// Builds the classifier from one embedding per label (`labels × dim`,
    /// row-major). Rows are normalised here, so any embedding will do.
    pub fn new(prototypes: Vec<f32>, dim: usize, scale: f32) -> Result<Self, ZeroShotError> {
        if dim == 0 || prototypes.is_empty() {
            return Err(ZeroShotError::NoLabels);
        }
        if prototypes.len() % dim != 0 {
            return Err(ZeroShotError::Dimension {
                expected: dim,
                got: prototypes.len() % dim,
            });
        }
        let mut prototypes = prototypes;
        for (label, row) in prototypes.chunks_exact_mut(dim).enumerate() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if !norm.is_finite() || norm <= f32::EPSILON {
                return Err(ZeroShotError::Degenerate { label });
            }
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            DEFAULT_SCALE
        };
        Ok(Self {
            prototypes,
            dim,
            scale,
        })
    }

    /// The number of labels.
    pub fn num_labels(&self) -> usize {
        self.prototypes.len() / self.dim
    }

    /// The embedding length the prototypes have.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Probabilities for a batch of embeddings (`n × dim`, row-major), as
    /// `n × labels`. Inputs need not be normalised.
    pub fn predict_proba_batch(&self, x: &[f32]) -> Result<Vec<f32>, ZeroShotError> {
        if x.len() % self.dim != 0 {
            return Err(ZeroShotError::Dimension {
                expected: self.dim,
                got: x.len() % self.dim,
            });
        }
        let k = self.num_labels();
        let mut out = Vec::with_capacity(x.len() / self.dim * k);
        for row in x.chunks_exact(self.dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            let inv = if norm.is_finite() && norm > f32::EPSILON {
                1.0 / norm
            } else {
                0.0
            };
            let start = out.len();
            let mut max = f32::NEG_INFINITY;
            for proto in self.prototypes.chunks_exact(self.dim) {
                let dot: f32 = row.iter().zip(proto).map(|(a, b)| a * b).sum();
                let logit = self.scale * dot * inv;
                max = max.max(logit);
                out.push(logit);
            }
            let probs = &mut out[start..];
            let mut sum = 0.0;
            for p in probs.iter_mut() {
                *p = (*p - max).exp();
                sum += *p;
            }
            probs.iter_mut().for_each(|p| *p /= sum);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_prototype_wins_and_rows_sum_to_one() {
        let z = ZeroShot::new(vec![1.0, 0.0, 0.0, 2.0], 2, DEFAULT_SCALE).expect("prototypes");
        let p = z
            .predict_proba_batch(&[0.9, 0.1, 0.2, 0.8])
            .expect("batch");
        assert_eq!(p.len(), 4);
        assert!(p[0] > p[1] && p[3] > p[2]);
        for row in p.chunks_exact(2) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn bad_shapes_are_named() {
        assert_eq!(
            ZeroShot::new(vec![], 3, 1.0).unwrap_err(),
            ZeroShotError::NoLabels
        );
        assert_eq!(
            ZeroShot::new(vec![0.0, 0.0], 2, 1.0).unwrap_err(),
            ZeroShotError::Degenerate { label: 0 }
        );
        let z = ZeroShot::new(vec![1.0, 0.0], 2, 1.0).expect("prototype");
        assert!(matches!(
            z.predict_proba_batch(&[1.0, 2.0, 3.0]),
            Err(ZeroShotError::Dimension { .. })
        ));
    }
}
