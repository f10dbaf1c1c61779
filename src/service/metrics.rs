//! Prometheus metrics through the `metrics` facade and
//! `metrics-exporter-prometheus`, which owns the series registry, the
//! histogram buckets and the text format (label values escaped).
//!
//! Each [`Metrics`] owns its own recorder rather than installing a
//! process-global one: the integration tests start several servers in one
//! process, and a global recorder can be installed only once, so their
//! counts would mix. Series are registered on this recorder explicitly
//! (`metrics::with_local_recorder`); a `metrics::counter!` called elsewhere
//! without it goes to the global no-op recorder and is not exported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

const HTTP_REQUESTS: &str = "labelloop_http_requests_total";
const HTTP_DURATION: &str = "labelloop_http_request_duration_seconds";
const JOB_CLAIM_SIZE: &str = "labelloop_job_claim_size";
const BATCHES: &str = "labelloop_batches_total";
const BATCHED_ITEMS: &str = "labelloop_batched_items_total";
const QUEUE_DEPTH: &str = "labelloop_queue_depth";
const ITEMS_LABELED: &str = "labelloop_items_labeled_total";
const ITEMS_FAILED: &str = "labelloop_items_failed_total";
const ITEMS_AUTO: &str = "labelloop_items_auto_accepted_total";
const ITEMS_REVIEW: &str = "labelloop_items_needs_review_total";
const AUTO_RATE: &str = "labelloop_auto_accept_rate";
const DRIFT_ALARM: &str = "labelloop_calibration_drift_alarm";
const NO_GUARANTEE: &str = "labelloop_project_no_guarantee";

/// Histogram samples recorded between two drains. The exporter keeps every
/// sample until upkeep folds it into the buckets; with `build_recorder` no
/// upkeep task runs, so a server nobody scrapes would grow without bound.
/// Hand-written because the exporter's own upkeep task needs its HTTP
/// listener features and a runtime at construction; this keeps the memory
/// bounded with one atomic add per sample.
const UPKEEP_EVERY: u64 = 1024;

struct Upkeep {
    handle: PrometheusHandle,
    samples: AtomicU64,
}

impl Upkeep {
    fn sampled(&self) {
        if self.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }
}

/// A histogram series with bounded sample memory (see [`UPKEEP_EVERY`]).
pub struct Histogram {
    series: metrics::Histogram,
    upkeep: Arc<Upkeep>,
}

impl Histogram {
    pub fn observe(&self, v: f64) {
        self.series.record(v);
        self.upkeep.sampled();
    }
}

/// A counter series that also keeps its total readable here.
///
/// The exporter cannot be read back except as rendered text, and
/// `labelloop_auto_accept_rate` is computed from two counters at render time,
/// so the totals are mirrored in an atomic. `fetch_add` mirrors
/// `AtomicU64::fetch_add` so `service::worker` compiles unchanged; new code
/// calls [`Metrics::labeled`] / [`Metrics::failed`] instead.
pub struct Counter {
    series: metrics::Counter,
    total: AtomicU64,
}

impl Counter {
    fn new(series: metrics::Counter) -> Self {
        Counter {
            series,
            total: AtomicU64::new(0),
        }
    }

    /// Add `n`; returns the previous total, as `AtomicU64::fetch_add` does.
    pub fn fetch_add(&self, n: u64, _order: Ordering) -> u64 {
        self.series.increment(n);
        self.total.fetch_add(n, Ordering::Relaxed)
    }

    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    upkeep: Arc<Upkeep>,
    latency: metrics::Histogram,
    pub job_batch_size: Histogram,
    pub items_labeled: Counter,
    pub items_failed: Counter,
    pub auto_accepted: Counter,
    pub needs_review: Counter,
    queue_depth: metrics::Gauge,
    auto_accept_rate: metrics::Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(JOB_CLAIM_SIZE.into()), SIZES))
            // Only an empty bucket list is refused; both are non-empty constants.
            .expect("LATENCY and SIZES are non-empty")
            .build_recorder();
        let upkeep = Arc::new(Upkeep {
            handle: recorder.handle(),
            samples: AtomicU64::new(0),
        });
        let series = |name: &'static str| {
            let c = Counter::new(metrics::with_local_recorder(&recorder, || {
                metrics::counter!(name)
            }));
            // Registered series render from the start, at zero, as before.
            c.series.increment(0);
            c
        };
        let (items_labeled, items_failed, auto_accepted, needs_review) = (
            series(ITEMS_LABELED),
            series(ITEMS_FAILED),
            series(ITEMS_AUTO),
            series(ITEMS_REVIEW),
        );
        let (latency, claim_size, queue_depth, auto_accept_rate) =
            metrics::with_local_recorder(&recorder, || {
                (
                    metrics::histogram!(HTTP_DURATION),
                    metrics::histogram!(JOB_CLAIM_SIZE),
                    metrics::gauge!(QUEUE_DEPTH),
                    metrics::gauge!(AUTO_RATE),
                )
            });
        Metrics {
            recorder,
            latency,
            job_batch_size: Histogram {
                series: claim_size,
                upkeep: upkeep.clone(),
            },
            upkeep,
            items_labeled,
            items_failed,
            auto_accepted,
            needs_review,
            queue_depth,
            auto_accept_rate,
        }
    }
}

impl Metrics {
    /// Count one request. `route` is the matched route template, so the
    /// number of series stays bounded.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.latency.record(seconds);
        self.upkeep.sampled();
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(HTTP_REQUESTS, "route" => route.to_string(), "status" => status.to_string())
                .increment(1);
        });
    }

    /// A worker claimed a batch of `n` items.
    pub fn claimed(&self, n: usize) {
        self.job_batch_size.observe(n as f64);
    }

    /// An item was predicted. `auto_accepted` is `None` when it was only
    /// embedded (no class to accept or review yet).
    pub fn labeled(&self, auto_accepted: Option<bool>) {
        self.items_labeled.fetch_add(1, Ordering::Relaxed);
        match auto_accepted {
            Some(true) => self.auto_accepted.fetch_add(1, Ordering::Relaxed),
            Some(false) => self.needs_review.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
    }

    /// A project's drift alarm turned on (1) or off (0, after a refit).
    pub fn drift_alarm(&self, project_id: i64, alarm: bool) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::gauge!(DRIFT_ALARM, "project" => project_id.to_string())
                .set(f64::from(u8::from(alarm)));
        });
    }

    /// Whether a project's auto-accepting runs without a guarantee (1: an
    /// explicit fixed threshold decides, before the first calibration).
    pub fn no_guarantee(&self, project_id: i64, no_guarantee: bool) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::gauge!(NO_GUARANTEE, "project" => project_id.to_string())
                .set(f64::from(u8::from(no_guarantee)));
        });
    }

    /// An item failed to be labeled.
    pub fn failed(&self) {
        self.items_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Render everything, with the live gauges passed in by the caller:
    /// `batcher_sizes` is `(model, batches, items)` since the batcher started.
    pub fn render(&self, queue_depth: usize, batcher_sizes: &[(String, u64, u64)]) -> String {
        self.queue_depth.set(queue_depth as f64);
        let labeled = self.items_labeled.get();
        let rate = if labeled == 0 {
            0.0
        } else {
            self.auto_accepted.get() as f64 / labeled as f64
        };
        self.auto_accept_rate.set(rate);
        metrics::with_local_recorder(&self.recorder, || {
            for (model, batches, items) in batcher_sizes {
                metrics::counter!(BATCHES, "model" => model.clone()).absolute(*batches);
                metrics::counter!(BATCHED_ITEMS, "model" => model.clone()).absolute(*items);
            }
        });
        self.upkeep.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample line of the text format: name, labels (unescaped), value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// A strict parser for the sample lines of the Prometheus text format:
    /// an unescaped quote or a raw newline inside a label value fails it.
    /// Hand-written because the exporter only writes the format, and the test
    /// must read escapes back exactly rather than through the code under test.
    fn parse(text: &str) -> Vec<Sample> {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect(line);
            let name = line[..name_end].to_string();
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices().peekable();
                let mut key = String::new();
                let close;
                loop {
                    let (i, c) = chars.next().expect(line);
                    match c {
                        '}' if key.is_empty() => {
                            close = i;
                            break;
                        }
                        '=' => {
                            assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                            let mut value = String::new();
                            loop {
                                match chars.next().expect(line).1 {
                                    '\\' => match chars.next().expect(line).1 {
                                        'n' => value.push('\n'),
                                        '"' => value.push('"'),
                                        '\\' => value.push('\\'),
                                        c => panic!("bad escape \\{c} in {line}"),
                                    },
                                    '"' => break,
                                    c => value.push(c),
                                }
                            }
                            labels.push((std::mem::take(&mut key), value));
                            if let Some((_, ',')) = chars.peek() {
                                chars.next();
                            }
                        }
                        c => key.push(c),
                    }
                }
                rest = &r[close + 1..];
            }
            let value: f64 = rest.trim().parse().expect(line);
            out.push((name, labels, value));
        }
        out
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && l.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            })
            .map(|s| s.2)
    }

    #[test]
    fn label_values_are_escaped_and_parse_back() {
        let m = Metrics::default();
        let route = "/v1/\"odd\"\nroute\\x";
        let model = "model \"q\"\nnext";
        m.request(route, 200, 0.003);
        let text = m.render(3, &[(model.to_string(), 2, 5)]);
        // No raw newline inside a sample line: every line is a whole sample or comment.
        let samples = parse(&text);
        assert_eq!(
            value(
                &samples,
                HTTP_REQUESTS,
                &[("route", route), ("status", "200")]
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(value(&samples, BATCHES, &[("model", model)]), Some(2.0));
        assert_eq!(
            value(&samples, BATCHED_ITEMS, &[("model", model)]),
            Some(5.0)
        );
        assert_eq!(value(&samples, QUEUE_DEPTH, &[]), Some(3.0));
    }

    #[test]
    fn counters_and_histograms_increase() {
        let m = Metrics::default();
        let text = m.render(0, &[]);
        let s = parse(&text);
        assert_eq!(value(&s, ITEMS_LABELED, &[]), Some(0.0), "{text}");
        assert_eq!(value(&s, AUTO_RATE, &[]), Some(0.0));

        for _ in 0..3 {
            m.request("/v1/predict", 200, 0.002);
        }
        m.request("/v1/predict", 422, 0.2);
        m.claimed(16);
        m.labeled(Some(true));
        m.labeled(Some(true));
        m.labeled(Some(false));
        m.labeled(None);
        m.failed();
        let s = parse(&m.render(7, &[("cnn".into(), 4, 9)]));
        let ok = [("route", "/v1/predict"), ("status", "200")];
        assert_eq!(value(&s, HTTP_REQUESTS, &ok), Some(3.0));
        assert_eq!(
            value(
                &s,
                HTTP_REQUESTS,
                &[("route", "/v1/predict"), ("status", "422")]
            ),
            Some(1.0)
        );
        let bucket = |le: &str| value(&s, &format!("{HTTP_DURATION}_bucket"), &[("le", le)]);
        assert_eq!(bucket("0.001"), Some(0.0));
        assert_eq!(bucket("0.0025"), Some(3.0));
        assert_eq!(bucket("0.25"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(4.0));
        assert_eq!(value(&s, &format!("{HTTP_DURATION}_count"), &[]), Some(4.0));
        assert_eq!(
            value(&s, &format!("{JOB_CLAIM_SIZE}_bucket"), &[("le", "8")]),
            Some(0.0)
        );
        assert_eq!(
            value(&s, &format!("{JOB_CLAIM_SIZE}_bucket"), &[("le", "16")]),
            Some(1.0)
        );
        assert_eq!(value(&s, ITEMS_LABELED, &[]), Some(4.0));
        assert_eq!(value(&s, ITEMS_AUTO, &[]), Some(2.0));
        assert_eq!(value(&s, ITEMS_REVIEW, &[]), Some(1.0));
        assert_eq!(value(&s, ITEMS_FAILED, &[]), Some(1.0));
        assert_eq!(value(&s, AUTO_RATE, &[]), Some(0.5));
        assert_eq!(value(&s, QUEUE_DEPTH, &[]), Some(7.0));
        assert_eq!(value(&s, BATCHES, &[("model", "cnn")]), Some(4.0));

        // Batcher totals are absolute: a later render shows the new total.
        let s = parse(&m.render(0, &[("cnn".into(), 6, 12)]));
        assert_eq!(value(&s, BATCHES, &[("model", "cnn")]), Some(6.0));
        assert_eq!(value(&s, BATCHED_ITEMS, &[("model", "cnn")]), Some(12.0));
    }

    #[test]
    fn two_instances_in_one_process_count_separately() {
        let a = Metrics::default();
        let b = Metrics::default();
        a.request("/healthz", 200, 0.001);
        a.request("/healthz", 200, 0.001);
        b.request("/healthz", 200, 0.001);
        let ok = [("route", "/healthz"), ("status", "200")];
        assert_eq!(
            value(&parse(&a.render(0, &[])), HTTP_REQUESTS, &ok),
            Some(2.0)
        );
        assert_eq!(
            value(&parse(&b.render(0, &[])), HTTP_REQUESTS, &ok),
            Some(1.0)
        );
    }
}
