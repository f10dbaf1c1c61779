//! A linear classifier head over embeddings: multinomial logistic regression,
//! trained from scratch in pure Rust.
//!
//! [`Head::train`] minimises scikit-learn's `LogisticRegression(penalty="l2",
//! fit_intercept=True)` multinomial objective
//!
//! ```text
//! sum_i -log softmax(W x_i + b)[y_i]  +  ||W||_F^2 / (2C)        (b not penalised)
//! ```
//!
//! with L-BFGS (memory 10, strong-Wolfe line search with cubic interpolation),
//! from zero, with no randomness. The stopping rules follow scipy's L-BFGS-B
//! as sklearn drives it, on the objective divided by n: stop when the largest
//! gradient component is at most `tol`, when the relative decrease of the
//! objective falls below `64 * f64::EPSILON`, or after `max_iter` iterations.
//!
//! Two classes use the same softmax form, one weight row per class. sklearn
//! (1.9) fits a binary problem with a single binomial vector `w` instead; the
//! two are the same model, and the softmax optimum at `C` equals sklearn's
//! binary optimum at `2C` (rows `[-w/2, +w/2]`). See `scripts/head_reference.py`.
//!
//! Numerics: the optimiser state, softmax, losses and gradient totals are f64.
//! The n×d×k products (logits `X Wᵀ` and gradient `(P - Y)ᵀ X`) run in f32 on
//! blocks of 128 rows, each block's gradient added into f64. Rows are split
//! into at most 8 parts fixed by n alone, summed in a fixed order, so results
//! do not depend on the number of threads. The inner loops spell out their
//! lane order, so the AVX2 build of them (picked at run time) gives the same
//! bits as the baseline one; it only uses wider vectors, no FMA.
//!
//! Hand-written rather than taken from a crate (linfa, smartcore): only with
//! sklearn's exact objective and stopping rules can the tests hold the head
//! to scikit-learn's coefficients.

use std::collections::HashSet;

use super::kernels::{exp_shifted, logits, Evaluator, Problem, CHUNK};
use super::lbfgs::minimize;

/// A trained classifier head: `softmax(W x + b)` over `labels`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Head {
    /// Embedding dimension.
    pub dim: usize,
    /// Class names; class `c` is row `c` of `weights`.
    pub labels: Vec<String>,
    /// `labels.len() × dim`, row-major, one row per class.
    pub weights: Vec<f32>,
    /// One intercept per class.
    pub bias: Vec<f32>,
}

/// How to train a [`Head`].
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    /// Inverse L2 strength, as sklearn's `C` (default 1.0).
    pub c: f64,
    /// L-BFGS iterations at most (default 200).
    pub max_iter: usize,
    /// Stop when every gradient component of the objective divided by n is at
    /// most this (default 1e-5). The products run in f32, so below about 1e-6
    /// training usually ends on the other rules (no further decrease) instead.
    pub tol: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            c: 1.0,
            max_iter: 200,
            tol: 1e-5,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeadError {
    #[error("no rows")]
    Empty,
    #[error("dim must be at least 1")]
    ZeroDim,
    #[error("need at least 2 labels, got {0}")]
    TooFewLabels(usize),
    #[error("label {0:?} appears more than once")]
    DuplicateLabel(String),
    #[error("{len} values do not make rows of dim {dim}")]
    DimMismatch { dim: usize, len: usize },
    #[error("{rows} rows but {labels} labels")]
    LengthMismatch { rows: usize, labels: usize },
    #[error("row {row}: label index {index} is out of range for {k} labels")]
    LabelOutOfRange { row: usize, index: usize, k: usize },
    #[error("row {row}: NaN or infinite value")]
    NonFinite { row: usize },
    #[error("invalid training option: {0}")]
    InvalidOption(&'static str),
    #[error("{k} labels × dim {dim} is too large")]
    TooLarge { k: usize, dim: usize },
    #[error("inconsistent head: {0}")]
    Inconsistent(String),
}

impl Head {
    /// x: n×dim row-major, y: class index per row (< labels.len()). Deterministic.
    pub fn train(
        x: &[f32],
        dim: usize,
        y: &[usize],
        labels: Vec<String>,
        opts: TrainOptions,
    ) -> Result<Head, HeadError> {
        check_options(&opts)?;
        if dim == 0 {
            return Err(HeadError::ZeroDim);
        }
        let k = labels.len();
        if k < 2 {
            return Err(HeadError::TooFewLabels(k));
        }
        let mut seen = HashSet::with_capacity(k);
        if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(HeadError::DuplicateLabel(dup.clone()));
        }
        let n = rows(x, dim)?;
        check_targets(y, n, k)?;
        check_finite(x, dim)?;
        let kd = k
            .checked_mul(dim)
            .filter(|kd| kd.checked_add(k).is_some())
            .ok_or(HeadError::TooLarge { k, dim })?;

        let problem = Problem {
            x,
            y,
            n,
            d: dim,
            k,
            inv_c: 1.0 / opts.c,
        };
        let mut evaluator = Evaluator::new(problem);
        let (theta, stats) = minimize(&mut evaluator, opts.max_iter, opts.tol);
        tracing::debug!(
            n,
            dim,
            k,
            iterations = stats.iterations,
            evaluations = stats.evaluations,
            objective = stats.objective,
            grad_max = stats.grad_max,
            stop = ?stats.stop,
            "trained classifier head"
        );
        let (w, b) = theta.split_at(kd);
        Ok(Head {
            dim,
            labels,
            weights: w.iter().map(|&v| v as f32).collect(),
            bias: b.iter().map(|&v| v as f32).collect(),
        })
    }

    /// Class probabilities (softmax) for one embedding.
    pub fn predict_proba(&self, x: &[f32]) -> Result<Vec<f32>, HeadError> {
        self.check()?;
        if x.len() != self.dim {
            return Err(HeadError::DimMismatch {
                dim: self.dim,
                len: x.len(),
            });
        }
        self.predict_proba_batch(x)
    }

    /// For many rows at once (n×dim) → n×k row-major.
    pub fn predict_proba_batch(&self, x: &[f32]) -> Result<Vec<f32>, HeadError> {
        let k = self.check()?;
        if x.is_empty() {
            return Ok(Vec::new());
        }
        rows(x, self.dim)?;
        check_finite(x, self.dim)?;
        let mut out = vec![0f32; x.len() / self.dim * k];
        let mut z = vec![0f32; CHUNK * k];
        let mut e = vec![0f64; k];
        for (xs, block) in x.chunks(CHUNK * self.dim).zip(out.chunks_mut(CHUNK * k)) {
            let z = &mut z[..block.len()];
            logits(xs, self.dim, &self.weights, k, z);
            for (zi, pi) in z.chunks_exact(k).zip(block.chunks_exact_mut(k)) {
                let (_, sum) = exp_shifted(zi, &self.bias, &mut e);
                for (p, &ec) in pi.iter_mut().zip(&e) {
                    *p = (ec / sum) as f32;
                }
            }
        }
        Ok(out)
    }

    /// Fraction of rows whose most probable class is `y`.
    pub fn accuracy(&self, x: &[f32], y: &[usize]) -> Result<f64, HeadError> {
        let k = self.check()?;
        let n = rows(x, self.dim)?;
        check_targets(y, n, k)?;
        check_finite(x, self.dim)?;
        let mut z = vec![0f32; CHUNK * k];
        let mut correct = 0usize;
        for (xs, ys) in x.chunks(CHUNK * self.dim).zip(y.chunks(CHUNK)) {
            let z = &mut z[..ys.len() * k];
            logits(xs, self.dim, &self.weights, k, z);
            for (zi, &yi) in z.chunks_exact(k).zip(ys) {
                let mut best = 0;
                let mut best_v = f64::NEG_INFINITY;
                for (c, (&zc, &bc)) in zi.iter().zip(&self.bias).enumerate() {
                    let v = f64::from(zc) + f64::from(bc);
                    if v > best_v {
                        best = c;
                        best_v = v;
                    }
                }
                correct += usize::from(best == yi);
            }
        }
        Ok(correct as f64 / n as f64)
    }

    /// The number of classes, after checking the fields agree (a head may come
    /// from JSON).
    fn check(&self) -> Result<usize, HeadError> {
        let k = self.labels.len();
        if self.dim == 0 {
            return Err(HeadError::Inconsistent("dim is 0".into()));
        }
        if k == 0 {
            return Err(HeadError::Inconsistent("no labels".into()));
        }
        if self.bias.len() != k {
            return Err(HeadError::Inconsistent(format!(
                "{} labels but {} biases",
                k,
                self.bias.len()
            )));
        }
        if k.checked_mul(self.dim) != Some(self.weights.len()) {
            return Err(HeadError::Inconsistent(format!(
                "{} weights for {} labels × dim {}",
                self.weights.len(),
                k,
                self.dim
            )));
        }
        Ok(k)
    }
}

fn check_options(opts: &TrainOptions) -> Result<(), HeadError> {
    if !(opts.c.is_finite() && opts.c > 0.0 && (1.0 / opts.c).is_finite()) {
        return Err(HeadError::InvalidOption("c must be finite and > 0"));
    }
    if !(opts.tol.is_finite() && opts.tol >= 0.0) {
        return Err(HeadError::InvalidOption("tol must be finite and >= 0"));
    }
    Ok(())
}

/// Rows in `x` (at least one) for rows of `dim` values.
fn rows(x: &[f32], dim: usize) -> Result<usize, HeadError> {
    if !x.len().is_multiple_of(dim) {
        return Err(HeadError::DimMismatch { dim, len: x.len() });
    }
    match x.len() / dim {
        0 => Err(HeadError::Empty),
        n => Ok(n),
    }
}

fn check_targets(y: &[usize], n: usize, k: usize) -> Result<(), HeadError> {
    if y.len() != n {
        return Err(HeadError::LengthMismatch {
            rows: n,
            labels: y.len(),
        });
    }
    match y.iter().position(|&c| c >= k) {
        Some(row) => Err(HeadError::LabelOutOfRange {
            row,
            index: y[row],
            k,
        }),
        None => Ok(()),
    }
}

fn check_finite(x: &[f32], dim: usize) -> Result<(), HeadError> {
    match x
        .chunks_exact(dim)
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        Some(row) => Err(HeadError::NonFinite { row }),
        None => Ok(()),
    }
}
