//! Prometheus text metrics, kept in atomics: no lock on the request path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A fixed-bucket histogram.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {n}");
    }
}

const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

pub struct Metrics {
    requests: Mutex<Vec<(String, u16, u64)>>,
    pub latency: Histogram,
    pub job_batch_size: Histogram,
    pub items_labeled: AtomicU64,
    pub items_failed: AtomicU64,
    pub auto_accepted: AtomicU64,
    pub needs_review: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(Vec::new()),
            latency: Histogram::new(LATENCY),
            job_batch_size: Histogram::new(SIZES),
            items_labeled: AtomicU64::new(0),
            items_failed: AtomicU64::new(0),
            auto_accepted: AtomicU64::new(0),
            needs_review: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Count one request. `route` is the matched route template, so the
    /// number of series stays bounded.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.latency.observe(seconds);
        let mut r = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match r.iter_mut().find(|(n, s, _)| n == route && *s == status) {
            Some(e) => e.2 += 1,
            None => r.push((route.to_string(), status, 1)),
        }
    }

    /// Render everything, with the live gauges passed in by the caller.
    pub fn render(&self, queue_depth: usize, batcher_sizes: &[(String, u64, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# TYPE labelloop_http_requests_total counter\n");
        for (route, status, n) in self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "labelloop_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# TYPE labelloop_http_request_duration_seconds histogram\n");
        self.latency
            .render(&mut out, "labelloop_http_request_duration_seconds", "");
        out.push_str("# TYPE labelloop_job_claim_size histogram\n");
        self.job_batch_size
            .render(&mut out, "labelloop_job_claim_size", "");
        out.push_str("# TYPE labelloop_batches_total counter\n# TYPE labelloop_batched_items_total counter\n");
        for (model, batches, items) in batcher_sizes {
            let _ = writeln!(
                out,
                "labelloop_batches_total{{model=\"{model}\"}} {batches}"
            );
            let _ = writeln!(
                out,
                "labelloop_batched_items_total{{model=\"{model}\"}} {items}"
            );
        }
        out.push_str("# TYPE labelloop_queue_depth gauge\n");
        let _ = writeln!(out, "labelloop_queue_depth {queue_depth}");
        let labeled = self.items_labeled.load(Ordering::Relaxed);
        let auto = self.auto_accepted.load(Ordering::Relaxed);
        out.push_str("# TYPE labelloop_items_labeled_total counter\n");
        let _ = writeln!(out, "labelloop_items_labeled_total {labeled}");
        out.push_str("# TYPE labelloop_items_failed_total counter\n");
        let _ = writeln!(
            out,
            "labelloop_items_failed_total {}",
            self.items_failed.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE labelloop_items_auto_accepted_total counter\n");
        let _ = writeln!(out, "labelloop_items_auto_accepted_total {auto}");
        out.push_str("# TYPE labelloop_items_needs_review_total counter\n");
        let _ = writeln!(
            out,
            "labelloop_items_needs_review_total {}",
            self.needs_review.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE labelloop_auto_accept_rate gauge\n");
        let rate = if labeled == 0 {
            0.0
        } else {
            auto as f64 / labeled as f64
        };
        let _ = writeln!(out, "labelloop_auto_accept_rate {rate}");
        out
    }
}
