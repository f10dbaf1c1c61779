//! Replaying the active-learning loop on data whose labels are known, with a
//! simulated annotator who answers with the true label. It shows how many
//! labels each selection strategy needs to reach a given accuracy.
//!
//! The loop per strategy: start from the same seed set, train the head on the
//! labeled embeddings, measure it on a held-out split, select the next batch
//! from the unlabeled pool, "annotate" it, repeat. Knows nothing of HTTP or storage.

use serde::Serialize;

use crate::learn::Head;
use crate::select::rng::Rng;
use crate::select::strategies::{self, Pool, Strategy};

/// Embedded, labeled data: `x` is n×dim row-major, `y[i]` indexes `labels`.
pub struct Dataset {
    pub x: Vec<f32>,
    pub dim: usize,
    pub y: Vec<usize>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub strategies: Vec<Strategy>,
    pub seed_size: usize,
    pub batch: usize,
    pub rounds: usize,
    pub seed: u64,
    /// Every `test_every`-th item (by input order) is held out for testing.
    pub test_every: usize,
    /// Auto-accept threshold used to report coverage and precision (fixed until calibration lands).
    pub threshold: f32,
    /// Committee size for vote-entropy and mean-KL (bootstrap heads).
    pub committee: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    pub round: usize,
    pub labels: usize,
    pub accuracy: f64,
    /// Share of the unlabeled pool whose top score reaches the threshold.
    pub auto_coverage: f64,
    /// Accuracy of those auto-accepted items.
    pub auto_precision: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    pub rounds: Vec<RoundResult>,
    /// Labels after which this strategy stays at or above random selection's
    /// final accuracy (None: it does not by the last round).
    pub labels_to_match_random: Option<usize>,
    /// 1 - labels_to_match_random / random's labels.
    pub label_savings: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub items: usize,
    pub pool: usize,
    pub test: usize,
    pub dim: usize,
    pub labels: Vec<String>,
    pub seed_size: usize,
    pub batch: usize,
    pub rounds: usize,
    pub seed: u64,
    pub threshold: f32,
    pub random_final_accuracy: Option<f64>,
    pub results: Vec<StrategyResult>,
}

fn rows(x: &[f32], dim: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
    out
}

/// Run every strategy; `progress(strategy, round)` is called as rounds finish.
pub fn run(
    data: &Dataset,
    opts: &SimOptions,
    mut progress: impl FnMut(Strategy, usize),
) -> Result<SimReport, String> {
    let n = data.y.len();
    if n == 0 || data.x.len() != n * data.dim {
        return Err("the data set is empty or its embeddings do not match its labels".into());
    }
    let test_every = opts.test_every.max(2);
    let test: Vec<usize> = (0..n).filter(|i| i % test_every == 0).collect();
    let pool: Vec<usize> = (0..n).filter(|i| i % test_every != 0).collect();
    if pool.len() < opts.seed_size + opts.batch {
        return Err(format!(
            "the pool has {} items: too few for the seed set and one batch",
            pool.len()
        ));
    }
    let x_test = rows(&data.x, data.dim, &test);
    let y_test: Vec<usize> = test.iter().map(|&i| data.y[i]).collect();
    // The same seed set for every strategy: a seeded random draw from the pool.
    let mut rng = Rng::new(opts.seed);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    rng.shuffle(&mut order);
    let seed_set: Vec<usize> = order[..opts.seed_size].to_vec();
    let k = data.labels.len();

    let mut results = Vec::new();
    for &strategy in &opts.strategies {
        let mut labeled: Vec<usize> = seed_set.clone(); // positions in `pool`
        let mut is_labeled = vec![false; pool.len()];
        for &p in &labeled {
            is_labeled[p] = true;
        }
        let mut rounds = Vec::with_capacity(opts.rounds + 1);
        for round in 0..=opts.rounds {
            let idx: Vec<usize> = labeled.iter().map(|&p| pool[p]).collect();
            let x_l = rows(&data.x, data.dim, &idx);
            let y_l: Vec<usize> = idx.iter().map(|&i| data.y[i]).collect();
            let head = Head::train(
                &x_l,
                data.dim,
                &y_l,
                data.labels.clone(),
                crate::service::learn::head_options(),
            )
            .map_err(|e| e.to_string())?;
            let accuracy = head.accuracy(&x_test, &y_test).map_err(|e| e.to_string())?;
            // Predictions on the unlabeled pool.
            let unlabeled: Vec<usize> = (0..pool.len()).filter(|&p| !is_labeled[p]).collect();
            let ux_idx: Vec<usize> = unlabeled.iter().map(|&p| pool[p]).collect();
            let ux = rows(&data.x, data.dim, &ux_idx);
            let probs_flat = head.predict_proba_batch(&ux).map_err(|e| e.to_string())?;
            let probs: Vec<Vec<f32>> = probs_flat.chunks_exact(k).map(<[f32]>::to_vec).collect();
            let (mut covered, mut right) = (0usize, 0usize);
            for (p, &i) in probs.iter().zip(&ux_idx) {
                let (best, score) =
                    p.iter()
                        .copied()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |b, (j, v)| if v > b.1 { (j, v) } else { b },
                        );
                if score >= opts.threshold {
                    covered += 1;
                    if best == data.y[i] {
                        right += 1;
                    }
                }
            }
            rounds.push(RoundResult {
                round,
                labels: labeled.len(),
                accuracy,
                auto_coverage: covered as f64 / unlabeled.len().max(1) as f64,
                auto_precision: if covered == 0 {
                    1.0
                } else {
                    right as f64 / covered as f64
                },
            });
            progress(strategy, round);
            if round == opts.rounds || unlabeled.is_empty() {
                break;
            }
            let committee: Vec<Vec<Vec<f32>>> = if strategy.needs_committee() {
                (0..opts.committee.max(2))
                    .map(|m| {
                        let mut r = Rng::new(opts.seed ^ ((round as u64) << 16) ^ (m as u64 + 1));
                        let boot: Vec<usize> =
                            (0..idx.len()).map(|_| idx[r.below(idx.len())]).collect();
                        let bx = rows(&data.x, data.dim, &boot);
                        let by: Vec<usize> = boot.iter().map(|&i| data.y[i]).collect();
                        let h = Head::train(
                            &bx,
                            data.dim,
                            &by,
                            data.labels.clone(),
                            crate::service::learn::head_options(),
                        )
                        .unwrap_or_else(|_| head.clone());
                        h.predict_proba_batch(&ux)
                            .map(|f| f.chunks_exact(k).map(<[f32]>::to_vec).collect())
                            .unwrap_or_else(|_| probs.clone())
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let pool_view = Pool {
                probs: &probs,
                embeddings: if strategy.needs_embeddings() {
                    &ux
                } else {
                    &[]
                },
                dim: data.dim,
                committee: &committee,
            };
            let labeled_x = if strategy.needs_embeddings() {
                x_l.as_slice()
            } else {
                &[]
            };
            let seed = opts.seed.wrapping_add(round as u64 + 1);
            let chosen = strategies::select(strategy, &pool_view, labeled_x, opts.batch, seed)
                .map_err(|e| e.to_string())?;
            for c in chosen {
                let p = unlabeled[c];
                if !is_labeled[p] {
                    is_labeled[p] = true;
                    labeled.push(p);
                }
            }
        }
        results.push(StrategyResult {
            strategy: strategy.as_str().to_string(),
            rounds,
            labels_to_match_random: None,
            label_savings: None,
        });
    }
    // Savings against random: labels needed to reach random's final accuracy.
    let random_final = results
        .iter()
        .find(|r| r.strategy == Strategy::Random.as_str())
        .and_then(|r| r.rounds.last().map(|x| (x.accuracy, x.labels)));
    if let Some((target, random_labels)) = random_final {
        for r in &mut results {
            // The first round from which the strategy stays at or above the
            // target: one lucky round does not count as reaching it.
            r.labels_to_match_random = (0..r.rounds.len())
                .find(|&i| r.rounds[i..].iter().all(|x| x.accuracy >= target))
                .map(|i| r.rounds[i].labels);
            r.label_savings = r
                .labels_to_match_random
                .map(|l| 1.0 - l as f64 / random_labels as f64);
        }
    }
    Ok(SimReport {
        items: n,
        pool: pool.len(),
        test: test.len(),
        dim: data.dim,
        labels: data.labels.clone(),
        seed_size: opts.seed_size,
        batch: opts.batch,
        rounds: opts.rounds,
        seed: opts.seed,
        threshold: opts.threshold,
        random_final_accuracy: random_final.map(|r| r.0),
        results,
    })
}

/// An SVG line chart of test accuracy against labels spent, one line per strategy.
pub fn svg_plot(report: &SimReport, title: &str) -> String {
    let (w, h, l, r, t, b) = (760.0, 460.0, 70.0, 200.0, 50.0, 60.0);
    let max_labels = report
        .results
        .iter()
        .flat_map(|s| s.rounds.iter().map(|x| x.labels))
        .max()
        .unwrap_or(1) as f64;
    let accs: Vec<f64> = report
        .results
        .iter()
        .flat_map(|s| s.rounds.iter().map(|x| x.accuracy))
        .collect();
    let lo = (accs.iter().copied().fold(1.0, f64::min) * 20.0).floor() / 20.0;
    let hi = (accs.iter().copied().fold(0.0, f64::max) * 20.0).ceil() / 20.0;
    let hi = if hi <= lo { lo + 0.05 } else { hi };
    let sx = |v: f64| l + v / max_labels * (w - l - r);
    let sy = |v: f64| h - b - (v - lo) / (hi - lo) * (h - t - b);
    let colors = [
        "#777777", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
    ];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{l}\" y=\"28\" font-size=\"15\">{}</text>\n",
        xml_escape(title)
    );
    // Axes and grid.
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let y = sy(v);
        svg += &format!(
            "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>\n",
            w - r,
            l - 6.0,
            y + 4.0
        );
    }
    for i in 0..=5 {
        let v = max_labels * i as f64 / 5.0;
        let x = sx(v);
        svg += &format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>\n",
            h - b + 18.0,
            v
        );
    }
    svg += &format!(
        "<line x1=\"{l}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">labels spent</text>\n\
         <text x=\"18\" y=\"{:.1}\" transform=\"rotate(-90 18 {:.1})\" text-anchor=\"middle\">held-out accuracy</text>\n",
        h - b,
        w - r,
        h - b,
        h - b,
        (l + w - r) / 2.0,
        h - 18.0,
        (t + h - b) / 2.0,
        (t + h - b) / 2.0
    );
    if let Some(target) = report.random_final_accuracy {
        let y = sy(target);
        svg += &format!(
            "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#777\" stroke-dasharray=\"4 4\"/>\n",
            w - r
        );
    }
    for (i, s) in report.results.iter().enumerate() {
        let color = if s.strategy == "random" {
            colors[0]
        } else {
            colors[1 + i % (colors.len() - 1)]
        };
        let points: Vec<String> = s
            .rounds
            .iter()
            .map(|x| format!("{:.1},{:.1}", sx(x.labels as f64), sy(x.accuracy)))
            .collect();
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        );
        let ly = t + 20.0 * i as f64;
        let savings = s
            .label_savings
            .map(|v| format!(" ({:+.0}% labels)", -v * 100.0))
            .unwrap_or_default();
        svg += &format!(
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{}{}</text>\n",
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0,
            xml_escape(&s.strategy),
            xml_escape(&savings)
        );
    }
    svg += "</svg>\n";
    svg
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
