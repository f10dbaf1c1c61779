//! L-BFGS (memory 10, strong-Wolfe line search with cubic interpolation),
//! with scipy's L-BFGS-B stopping rules as scikit-learn drives them. Written
//! here rather than taken from a crate because the stopping rules must match
//! scipy's exactly for the head to reproduce sklearn's coefficients.

use std::collections::VecDeque;

use super::kernels::Evaluator;

/// L-BFGS memory.
const MEMORY: usize = 10;
/// Objective evaluations allowed per line search.
const MAX_LINE_SEARCH: usize = 20;
const WOLFE_C1: f64 = 1e-4;
const WOLFE_C2: f64 = 0.9;
/// scipy's `ftol` as sklearn sets it.
const FTOL: f64 = 64.0 * f64::EPSILON;

#[derive(Debug, Clone, Copy)]
pub(super) enum Stop {
    /// Largest gradient component at most `tol`.
    Gradient,
    /// Relative decrease below `FTOL`.
    Decrease,
    /// No step decreased the objective, even along the gradient.
    LineSearch,
    MaxIter,
}

pub(super) struct Stats {
    pub(super) iterations: usize,
    pub(super) evaluations: usize,
    pub(super) objective: f64,
    pub(super) grad_max: f64,
    pub(super) stop: Stop,
}

/// The last `MEMORY` pairs `s = Δx`, `y = Δg`, with `1 / sᵀy` and `yᵀy`.
pub(super) struct Memory {
    pub(super) pairs: VecDeque<(Vec<f64>, Vec<f64>, f64, f64)>,
    pub(super) alpha: Vec<f64>,
}

impl Memory {
    pub(super) fn new() -> Memory {
        Memory {
            pairs: VecDeque::with_capacity(MEMORY),
            alpha: vec![0.0; MEMORY],
        }
    }

    /// Adds the pair for a step unless its curvature `sᵀy` is not safely positive.
    pub(super) fn update(&mut self, x_new: &[f64], x_old: &[f64], g_new: &[f64], g_old: &[f64]) {
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
    pub(super) fn direction(&mut self, g: &[f64], p: &mut [f64]) {
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

pub(super) fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(super) fn axpy64(y: &mut [f64], a: f64, x: &[f64]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

pub(super) fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, &x| {
        if x.abs() > m || x.is_nan() {
            x.abs()
        } else {
            m
        }
    })
}

/// Minimises the objective from zero; returns the parameters (weights, then biases).
pub(super) fn minimize(ev: &mut Evaluator, max_iter: usize, tol: f64) -> (Vec<f64>, Stats) {
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
pub(super) struct Point {
    pub(super) a: f64,
    pub(super) f: f64,
    pub(super) d: f64,
}

pub(super) fn eval_along(
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
pub(super) fn line_search(
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
pub(super) fn interpolate(lo: &Point, hi: &Point) -> f64 {
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
