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

use std::collections::{HashSet, VecDeque};
use std::ops::Range;

/// Rows per block in the inner loops (128 × 384 f32 = 192 KiB, fits L2).
const CHUNK: usize = 128;
/// Upper bound on the parts the rows are split into (and on threads used).
const MAX_PARTS: usize = 8;
/// Below this many multiply-adds per pass (n·d·k), one thread does it all.
const PARALLEL_MIN_WORK: usize = 1 << 20;
/// L-BFGS memory.
const MEMORY: usize = 10;
/// Objective evaluations allowed per line search.
const MAX_LINE_SEARCH: usize = 20;
const WOLFE_C1: f64 = 1e-4;
const WOLFE_C2: f64 = 0.9;
/// scipy's `ftol` as sklearn sets it.
const FTOL: f64 = 64.0 * f64::EPSILON;
/// f32 lanes per accumulator in the dot products.
const LANES: usize = 8;

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

/// `e[c] = exp(z_c + b_c - max)`; returns `(max, sum of e)`, in f64.
#[inline]
fn exp_shifted(z: &[f32], bias: &[impl Copy + Into<f64>], e: &mut [f64]) -> (f64, f64) {
    let mut max = f64::NEG_INFINITY;
    for ((ec, &zc), &bc) in e.iter_mut().zip(z).zip(bias) {
        *ec = f64::from(zc) + bc.into();
        max = max.max(*ec);
    }
    let mut sum = 0.0;
    for ec in e.iter_mut() {
        *ec = (*ec - max).exp();
        sum += *ec;
    }
    (max, sum)
}

// ---------------------------------------------------------------------------
// The objective and its gradient.

struct Problem<'a> {
    x: &'a [f32],
    y: &'a [usize],
    n: usize,
    d: usize,
    k: usize,
    inv_c: f64,
}

/// One fixed range of rows and its partial sums.
struct Part {
    rows: Range<usize>,
    loss: f64,
    /// k×d gradient of the summed loss over these rows.
    gw: Vec<f64>,
    gb: Vec<f64>,
    /// Scratch: one block's f32 gradient, logits and residuals, and exps.
    gc: Vec<f32>,
    z: Vec<f32>,
    r: Vec<f32>,
    e: Vec<f64>,
}

struct Evaluator<'a> {
    p: Problem<'a>,
    /// The weights in f32, refreshed per evaluation.
    wf: Vec<f32>,
    parts: Vec<Part>,
    threads: usize,
    evaluations: usize,
}

impl<'a> Evaluator<'a> {
    fn new(p: Problem<'a>) -> Evaluator<'a> {
        let (d, k) = (p.d, p.k);
        let chunks = p.n.div_ceil(CHUNK);
        let nparts = chunks.clamp(1, MAX_PARTS);
        let parts = (0..nparts)
            .map(|j| Part {
                rows: (j * chunks / nparts * CHUNK)..((j + 1) * chunks / nparts * CHUNK).min(p.n),
                loss: 0.0,
                gw: vec![0.0; k * d],
                gb: vec![0.0; k],
                gc: vec![0.0; k * d],
                z: vec![0.0; CHUNK * k],
                r: vec![0.0; CHUNK * k],
                e: vec![0.0; k],
            })
            .collect();
        let work = p.n.saturating_mul(d).saturating_mul(k);
        let threads = if work >= PARALLEL_MIN_WORK {
            std::thread::available_parallelism()
                .map(|t| t.get())
                .unwrap_or(1)
                .min(nparts)
        } else {
            1
        };
        Evaluator {
            wf: vec![0.0; k * d],
            p,
            parts,
            threads,
            evaluations: 0,
        }
    }

    fn len(&self) -> usize {
        self.p.k * self.p.d + self.p.k
    }

    /// The objective divided by n at `theta` (weights then biases); its gradient into `grad`.
    fn eval(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
        self.evaluations += 1;
        let Evaluator {
            p,
            wf,
            parts,
            threads,
            ..
        } = self;
        let kd = p.k * p.d;
        let (w, b) = theta.split_at(kd);
        for (dst, &src) in wf.iter_mut().zip(w) {
            *dst = src as f32;
        }
        let (p, wf) = (&*p, &wf[..]);
        if *threads > 1 {
            let per = parts.len().div_ceil(*threads);
            std::thread::scope(|s| {
                let mut groups = parts.chunks_mut(per);
                let first = groups.next();
                for group in groups {
                    s.spawn(move || {
                        for part in group {
                            run_part(p, wf, b, part);
                        }
                    });
                }
                for part in first.into_iter().flatten() {
                    run_part(p, wf, b, part);
                }
            });
        } else {
            for part in parts.iter_mut() {
                run_part(p, wf, b, part);
            }
        }

        // Fixed-order reduction, then the penalty, then the 1/n scale.
        let mut loss = 0.0;
        grad.fill(0.0);
        let (gw, gb) = grad.split_at_mut(kd);
        for part in parts.iter() {
            loss += part.loss;
            add_into(gw, &part.gw);
            add_into(gb, &part.gb);
        }
        let mut sq = 0.0;
        for (g, &wv) in gw.iter_mut().zip(w) {
            sq += wv * wv;
            *g += p.inv_c * wv;
        }
        loss += 0.5 * p.inv_c * sq;
        let scale = 1.0 / p.n as f64;
        for g in grad.iter_mut() {
            *g *= scale;
        }
        loss * scale
    }
}

fn add_into(acc: &mut [f64], v: &[f64]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

fn run_part(p: &Problem, wf: &[f32], bias: &[f64], part: &mut Part) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { run_part_avx2(p, wf, bias, part) };
        return;
    }
    run_part_impl(p, wf, bias, part)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_part_avx2(p: &Problem, wf: &[f32], bias: &[f64], part: &mut Part) {
    run_part_impl(p, wf, bias, part)
}

/// Loss and gradient sums of one part, block by block.
#[inline(always)]
fn run_part_impl(p: &Problem, wf: &[f32], bias: &[f64], part: &mut Part) {
    let (d, k) = (p.d, p.k);
    part.loss = 0.0;
    part.gw.fill(0.0);
    part.gb.fill(0.0);
    let rows = part.rows.clone();
    let mut start = rows.start;
    while start < rows.end {
        let end = (start + CHUNK).min(rows.end);
        let xs = &p.x[start * d..end * d];
        let ys = &p.y[start..end];
        let z = &mut part.z[..(end - start) * k];
        let r = &mut part.r[..(end - start) * k];
        logits_impl(xs, d, wf, k, z);
        for ((zi, ri), &yi) in z.chunks_exact(k).zip(r.chunks_exact_mut(k)).zip(ys) {
            let (max, sum) = exp_shifted(zi, bias, &mut part.e);
            // -log softmax[y] = max + ln(sum) - (z_y + b_y)
            part.loss += max + sum.ln() - (f64::from(zi[yi]) + bias[yi]);
            for (c, ((rc, &ec), gb)) in ri.iter_mut().zip(&part.e).zip(&mut part.gb).enumerate() {
                let res = ec / sum - if c == yi { 1.0 } else { 0.0 };
                *gb += res;
                *rc = res as f32;
            }
        }
        part.gc.fill(0.0);
        grad_impl(xs, d, r, k, &mut part.gc);
        for (a, &g) in part.gw.iter_mut().zip(&part.gc) {
            *a += f64::from(g);
        }
        start = end;
    }
}

/// Logits for prediction, with the same kernel (and bits) as training.
fn logits(xs: &[f32], d: usize, w: &[f32], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { logits_avx2(xs, d, w, k, out) };
        return;
    }
    logits_impl(xs, d, w, k, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn logits_avx2(xs: &[f32], d: usize, w: &[f32], k: usize, out: &mut [f32]) {
    logits_impl(xs, d, w, k, out)
}

/// `out[i·k + c] = x_i · w_c` for the m rows of `xs` (m×d) and k rows of `w`.
/// Four rows share each load of a weight row.
#[inline(always)]
fn logits_impl(xs: &[f32], d: usize, w: &[f32], k: usize, out: &mut [f32]) {
    let mut blocks = xs.chunks_exact(4 * d);
    let mut outs = out.chunks_exact_mut(4 * k);
    for (xb, ob) in (&mut blocks).zip(&mut outs) {
        let (x0, rest) = xb.split_at(d);
        let (x1, rest) = rest.split_at(d);
        let (x2, x3) = rest.split_at(d);
        for (c, wc) in w.chunks_exact(d).enumerate() {
            let v = dot4([x0, x1, x2, x3], wc);
            ob[c] = v[0];
            ob[k + c] = v[1];
            ob[2 * k + c] = v[2];
            ob[3 * k + c] = v[3];
        }
    }
    for (xi, oi) in blocks
        .remainder()
        .chunks_exact(d)
        .zip(outs.into_remainder().chunks_exact_mut(k))
    {
        for (o, wc) in oi.iter_mut().zip(w.chunks_exact(d)) {
            *o = dot(xi, wc);
        }
    }
}

/// `g_c += Σ_i r_ic x_i` over the rows of `xs`; `g` is k×d, `r` is m×k.
#[inline(always)]
fn grad_impl(xs: &[f32], d: usize, r: &[f32], k: usize, g: &mut [f32]) {
    let mut blocks = xs.chunks_exact(4 * d);
    let mut rs = r.chunks_exact(4 * k);
    for (xb, rb) in (&mut blocks).zip(&mut rs) {
        let (x0, rest) = xb.split_at(d);
        let (x1, rest) = rest.split_at(d);
        let (x2, x3) = rest.split_at(d);
        for (c, gc) in g.chunks_exact_mut(d).enumerate() {
            let a = [rb[c], rb[k + c], rb[2 * k + c], rb[3 * k + c]];
            for ((((gj, &v0), &v1), &v2), &v3) in gc.iter_mut().zip(x0).zip(x1).zip(x2).zip(x3) {
                *gj += a[0] * v0 + a[1] * v1 + a[2] * v2 + a[3] * v3;
            }
        }
    }
    for (xi, ri) in blocks
        .remainder()
        .chunks_exact(d)
        .zip(rs.remainder().chunks_exact(k))
    {
        for (gc, &a) in g.chunks_exact_mut(d).zip(ri) {
            for (gj, &v) in gc.iter_mut().zip(xi) {
                *gj += a * v;
            }
        }
    }
}

/// Sums eight lane accumulators and the scalar tail in a fixed order.
#[inline(always)]
fn finish(acc: &[f32; LANES], xt: &[f32], wt: &[f32]) -> f32 {
    let mut tail = 0f32;
    for (&a, &b) in xt.iter().zip(wt) {
        tail += a * b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `x · w` with eight f32 lanes; bit-identical to one row of [`dot4`].
#[inline(always)]
fn dot(x: &[f32], w: &[f32]) -> f32 {
    let (xc, xt) = x.as_chunks::<LANES>();
    let (wc, wt) = w.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (xv, wv) in xc.iter().zip(wc) {
        for l in 0..LANES {
            acc[l] += xv[l] * wv[l];
        }
    }
    finish(&acc, xt, wt)
}

/// Four rows against one weight row.
#[inline(always)]
fn dot4(x: [&[f32]; 4], w: &[f32]) -> [f32; 4] {
    let (wc, wt) = w.as_chunks::<LANES>();
    let (c0, t0) = x[0].as_chunks::<LANES>();
    let (c1, t1) = x[1].as_chunks::<LANES>();
    let (c2, t2) = x[2].as_chunks::<LANES>();
    let (c3, t3) = x[3].as_chunks::<LANES>();
    let mut acc = [[0f32; LANES]; 4];
    for ((((wv, v0), v1), v2), v3) in wc.iter().zip(c0).zip(c1).zip(c2).zip(c3) {
        for l in 0..LANES {
            acc[0][l] += v0[l] * wv[l];
            acc[1][l] += v1[l] * wv[l];
            acc[2][l] += v2[l] * wv[l];
            acc[3][l] += v3[l] * wv[l];
        }
    }
    [
        finish(&acc[0], t0, wt),
        finish(&acc[1], t1, wt),
        finish(&acc[2], t2, wt),
        finish(&acc[3], t3, wt),
    ]
}

// ---------------------------------------------------------------------------
// L-BFGS.

#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Largest gradient component at most `tol`.
    Gradient,
    /// Relative decrease below `FTOL`.
    Decrease,
    /// No step decreased the objective, even along the gradient.
    LineSearch,
    MaxIter,
}

struct Stats {
    iterations: usize,
    evaluations: usize,
    objective: f64,
    grad_max: f64,
    stop: Stop,
}

/// The last `MEMORY` pairs `s = Δx`, `y = Δg`, with `1 / sᵀy` and `yᵀy`.
struct Memory {
    pairs: VecDeque<(Vec<f64>, Vec<f64>, f64, f64)>,
    alpha: Vec<f64>,
}

impl Memory {
    fn new() -> Memory {
        Memory {
            pairs: VecDeque::with_capacity(MEMORY),
            alpha: vec![0.0; MEMORY],
        }
    }

    /// Adds the pair for a step unless its curvature `sᵀy` is not safely positive.
    fn update(&mut self, x_new: &[f64], x_old: &[f64], g_new: &[f64], g_old: &[f64]) {
        let mut sy = 0.0;
        let mut yy = 0.0;
        for (((&xn, &xo), &gn), &go) in x_new.iter().zip(x_old).zip(g_new).zip(g_old) {
            let (s, y) = (xn - xo, gn - go);
            sy += s * y;
            yy += y * y;
        }
        if !(sy > f64::EPSILON * yy && sy.is_finite() && yy > 0.0) {
            return;
        }
        let (mut s, mut y) = if self.pairs.len() == MEMORY {
            match self.pairs.pop_front() {
                Some((s, y, _, _)) => (s, y),
                None => (vec![0.0; x_new.len()], vec![0.0; x_new.len()]),
            }
        } else {
            (vec![0.0; x_new.len()], vec![0.0; x_new.len()])
        };
        for (sv, (&xn, &xo)) in s.iter_mut().zip(x_new.iter().zip(x_old)) {
            *sv = xn - xo;
        }
        for (yv, (&gn, &go)) in y.iter_mut().zip(g_new.iter().zip(g_old)) {
            *yv = gn - go;
        }
        self.pairs.push_back((s, y, 1.0 / sy, yy));
    }

    /// `p = -H g` by the two-loop recursion, with `H0 = (sᵀy / yᵀy) I`.
    fn direction(&mut self, g: &[f64], p: &mut [f64]) {
        p.copy_from_slice(g);
        for (i, (s, y, rho, _)) in self.pairs.iter().enumerate().rev() {
            let a = rho * dot64(s, p);
            self.alpha[i] = a;
            axpy64(p, -a, y);
        }
        if let Some((_, _, rho, yy)) = self.pairs.back() {
            let gamma = 1.0 / (rho * yy);
            for v in p.iter_mut() {
                *v *= gamma;
            }
        }
        for (i, (s, y, rho, _)) in self.pairs.iter().enumerate() {
            let b = rho * dot64(y, p);
            axpy64(p, self.alpha[i] - b, s);
        }
        for v in p.iter_mut() {
            *v = -*v;
        }
    }
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy64(y: &mut [f64], a: f64, x: &[f64]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, &x| {
        if x.abs() > m || x.is_nan() {
            x.abs()
        } else {
            m
        }
    })
}

/// Minimises the objective from zero; returns the parameters (weights, then biases).
fn minimize(ev: &mut Evaluator, max_iter: usize, tol: f64) -> (Vec<f64>, Stats) {
    let m = ev.len();
    let mut x = vec![0.0; m];
    let mut g = vec![0.0; m];
    let mut xt = vec![0.0; m];
    let mut gt = vec![0.0; m];
    let mut p = vec![0.0; m];
    let mut f = ev.eval(&x, &mut g);
    let mut memory = Memory::new();
    let mut iterations = 0;
    let mut stop = Stop::MaxIter;
    loop {
        let grad_max = max_abs(&g);
        // NaN cannot pass `<= tol`, and stops here rather than looping.
        if grad_max <= tol || grad_max.is_nan() {
            stop = Stop::Gradient;
            break;
        }
        if iterations >= max_iter {
            break;
        }
        iterations += 1;
        memory.direction(&g, &mut p);
        let mut slope = dot64(&g, &p);
        if !(slope < 0.0 && slope.is_finite()) {
            memory.pairs.clear();
            for (pv, &gv) in p.iter_mut().zip(&g) {
                *pv = -gv;
            }
            slope = -dot64(&g, &g);
        }
        let step = if memory.pairs.is_empty() {
            1.0 / dot64(&p, &p).sqrt()
        } else {
            1.0
        };
        match line_search(ev, &x, f, slope, &p, step, &mut xt, &mut gt) {
            Some(ft) => {
                memory.update(&xt, &x, &gt, &g);
                std::mem::swap(&mut x, &mut xt);
                std::mem::swap(&mut g, &mut gt);
                let f_old = f;
                f = ft;
                if f_old - f <= FTOL * f_old.abs().max(f.abs()).max(1.0) {
                    stop = Stop::Decrease;
                    break;
                }
            }
            // Retry along the plain gradient before giving up.
            None if !memory.pairs.is_empty() => memory.pairs.clear(),
            None => {
                stop = Stop::LineSearch;
                break;
            }
        }
    }
    let stats = Stats {
        iterations,
        evaluations: ev.evaluations,
        objective: f * ev.p.n as f64,
        grad_max: max_abs(&g),
        stop,
    };
    (x, stats)
}

/// A point on the search line: step, objective, directional derivative.
#[derive(Clone, Copy)]
struct Point {
    a: f64,
    f: f64,
    d: f64,
}

fn eval_along(
    ev: &mut Evaluator,
    x: &[f64],
    p: &[f64],
    a: f64,
    xt: &mut [f64],
    gt: &mut [f64],
) -> Point {
    for ((t, &xv), &pv) in xt.iter_mut().zip(x).zip(p) {
        *t = xv + a * pv;
    }
    let f = ev.eval(xt, gt);
    Point {
        a,
        f,
        d: dot64(gt, p),
    }
}

/// Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5 and 3.6) along
/// `p` from `x`. On success `xt`, `gt` hold the accepted point and its
/// gradient, and its objective is returned.
#[allow(clippy::too_many_arguments)]
fn line_search(
    ev: &mut Evaluator,
    x: &[f64],
    f0: f64,
    d0: f64,
    p: &[f64],
    first: f64,
    xt: &mut [f64],
    gt: &mut [f64],
) -> Option<f64> {
    let armijo = |q: &Point| q.f.is_finite() && q.f <= f0 + WOLFE_C1 * q.a * d0;
    let curvature = |q: &Point| q.d.abs() <= -WOLFE_C2 * d0;
    let mut prev = Point {
        a: 0.0,
        f: f0,
        d: d0,
    };
    let mut a = first;
    let mut trials = 0;
    // Bracket a step that satisfies the conditions.
    let (mut lo, mut hi) = loop {
        if trials == MAX_LINE_SEARCH || !a.is_finite() {
            return None;
        }
        let q = eval_along(ev, x, p, a, xt, gt);
        trials += 1;
        if !armijo(&q) || (trials > 1 && q.f >= prev.f) {
            break (prev, q);
        }
        if curvature(&q) {
            return Some(q.f);
        }
        if q.d >= 0.0 {
            break (q, prev);
        }
        prev = q;
        a *= 2.0;
    };
    // Zoom in: `lo` satisfies Armijo with the lowest objective so far. Stop
    // once the bracket moves no parameter by more than f32 resolution: the
    // products see the weights in f32, so no smaller change can be measured.
    let resolution = f64::from(f32::EPSILON) * max_abs(x).max(f64::MIN_POSITIVE) / max_abs(p);
    while trials < MAX_LINE_SEARCH {
        let width = (hi.a - lo.a).abs();
        if !(width > resolution && width > 1e-12 * lo.a.abs().max(hi.a.abs())) {
            break;
        }
        let a = interpolate(&lo, &hi);
        let q = eval_along(ev, x, p, a, xt, gt);
        trials += 1;
        if !armijo(&q) || q.f >= lo.f {
            hi = q;
        } else {
            if curvature(&q) {
                return Some(q.f);
            }
            if q.d * (hi.a - lo.a) >= 0.0 {
                hi = lo;
            }
            lo = q;
        }
    }
    // Out of trials: settle for the best sufficient decrease found, if any.
    if lo.a > 0.0 && lo.f < f0 {
        let q = eval_along(ev, x, p, lo.a, xt, gt);
        return Some(q.f);
    }
    None
}

/// The minimiser of the cubic through `lo` and `hi`, kept inside the middle
/// 80% of the interval; bisection when the cubic is no use.
fn interpolate(lo: &Point, hi: &Point) -> f64 {
    let (min, max) = (lo.a.min(hi.a), lo.a.max(hi.a));
    let mid = 0.5 * (lo.a + hi.a);
    if !(hi.f.is_finite() && hi.d.is_finite()) {
        return mid;
    }
    let t1 = lo.d + hi.d - 3.0 * (lo.f - hi.f) / (lo.a - hi.a);
    let disc = t1 * t1 - lo.d * hi.d;
    if disc.is_nan() || disc < 0.0 {
        return mid;
    }
    let t2 = (hi.a - lo.a).signum() * disc.sqrt();
    let a = hi.a - (hi.a - lo.a) * (hi.d + t2 - t1) / (hi.d - lo.d + 2.0 * t2);
    let margin = 0.1 * (max - min);
    if a.is_finite() && a >= min + margin && a <= max - margin {
        a
    } else {
        mid
    }
}
