//! The head's objective and gradient: the n×d×k products in f32 on blocks
//! of rows, split into parts fixed by n alone and summed in a fixed order so
//! results do not depend on the thread count; AVX2 picked at run time gives
//! the same bits as the baseline (wider vectors, no FMA).

use std::ops::Range;

/// Rows per block in the inner loops (128 × 384 f32 = 192 KiB, fits L2).
pub(super) const CHUNK: usize = 128;
/// Upper bound on the parts the rows are split into (and on threads used).
pub(super) const MAX_PARTS: usize = 8;
/// Below this many multiply-adds per pass (n·d·k), one thread does it all.
pub(super) const PARALLEL_MIN_WORK: usize = 1 << 20;
/// f32 lanes per accumulator in the dot products.
pub(super) const LANES: usize = 8;

pub(super) struct Problem<'a> {
    pub(super) x: &'a [f32],
    pub(super) y: &'a [usize],
    pub(super) n: usize,
    pub(super) d: usize,
    pub(super) k: usize,
    pub(super) inv_c: f64,
}

/// One fixed range of rows and its partial sums.
pub(super) struct Part {
    pub(super) rows: Range<usize>,
    pub(super) loss: f64,
    /// k×d gradient of the summed loss over these rows.
    pub(super) gw: Vec<f64>,
    pub(super) gb: Vec<f64>,
    /// Scratch: one block's f32 gradient, logits and residuals, and exps.
    pub(super) gc: Vec<f32>,
    pub(super) z: Vec<f32>,
    pub(super) r: Vec<f32>,
    pub(super) e: Vec<f64>,
}

pub(super) struct Evaluator<'a> {
    pub(super) p: Problem<'a>,
    /// The weights in f32, refreshed per evaluation.
    pub(super) wf: Vec<f32>,
    pub(super) parts: Vec<Part>,
    pub(super) threads: usize,
    pub(super) evaluations: usize,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(p: Problem<'a>) -> Evaluator<'a> {
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

    pub(super) fn len(&self) -> usize {
        self.p.k * self.p.d + self.p.k
    }

    /// The objective divided by n at `theta` (weights then biases); its gradient into `grad`.
    pub(super) fn eval(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
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

pub(super) fn add_into(acc: &mut [f64], v: &[f64]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

pub(super) fn run_part(p: &Problem, wf: &[f32], bias: &[f64], part: &mut Part) {
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
pub(super) fn run_part_avx2(p: &Problem, wf: &[f32], bias: &[f64], part: &mut Part) {
    run_part_impl(p, wf, bias, part)
}

/// Loss and gradient sums of one part, block by block.
#[inline(always)]
pub(super) fn run_part_impl(p: &Problem, wf: &[f32], bias: &[f64], part: &mut Part) {
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
pub(super) fn logits(xs: &[f32], d: usize, w: &[f32], k: usize, out: &mut [f32]) {
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
pub(super) fn logits_avx2(xs: &[f32], d: usize, w: &[f32], k: usize, out: &mut [f32]) {
    logits_impl(xs, d, w, k, out)
}

/// `out[i·k + c] = x_i · w_c` for the m rows of `xs` (m×d) and k rows of `w`.
/// Four rows share each load of a weight row.
#[inline(always)]
pub(super) fn logits_impl(xs: &[f32], d: usize, w: &[f32], k: usize, out: &mut [f32]) {
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
pub(super) fn grad_impl(xs: &[f32], d: usize, r: &[f32], k: usize, g: &mut [f32]) {
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
pub(super) fn finish(acc: &[f32; LANES], xt: &[f32], wt: &[f32]) -> f32 {
    let mut tail = 0f32;
    for (&a, &b) in xt.iter().zip(wt) {
        tail += a * b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `x · w` with eight f32 lanes; bit-identical to one row of [`dot4`].
#[inline(always)]
pub(super) fn dot(x: &[f32], w: &[f32]) -> f32 {
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
pub(super) fn dot4(x: [&[f32]; 4], w: &[f32]) -> [f32; 4] {
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

/// `e[c] = exp(z_c + b_c - max)`; returns `(max, sum of e)`, in f64.
#[inline]
pub(super) fn exp_shifted(z: &[f32], bias: &[impl Copy + Into<f64>], e: &mut [f64]) -> (f64, f64) {
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
