//! Replaying the active-learning loop on data whose labels are known, with a
//! simulated annotator who answers with the true label. It shows how many
//! labels each selection strategy needs to reach a given accuracy.
//!
//! The loop per strategy: start from the same seed set, train the head on the
//! labeled embeddings, measure it on a held-out split, select the next batch
//! from the unlabeled pool, "annotate" it, repeat. Knows nothing of HTTP or storage.

use plotters::prelude::*;
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

/// Colours per strategy: random is grey, the others cycle through the rest.
const COLORS: [RGBColor; 8] = [
    RGBColor(0x77, 0x77, 0x77),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
];

/// An SVG line chart of held-out accuracy against labels spent, one line per
/// strategy, with random's final accuracy dashed across for comparison.
pub fn svg_plot(report: &SimReport, title: &str) -> std::io::Result<String> {
    let mut svg = String::new();
    draw(report, title, SVGBackend::with_string(&mut svg, (760, 460)))
        .map_err(|e| std::io::Error::other(format!("drawing the plot: {e}")))?;
    Ok(svg)
}

fn draw<DB: DrawingBackend>(
    report: &SimReport,
    title: &str,
    backend: DB,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max_labels = report
        .results
        .iter()
        .flat_map(|s| s.rounds.iter().map(|x| x.labels))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let accs = || {
        report
            .results
            .iter()
            .flat_map(|s| s.rounds.iter().map(|x| x.accuracy))
    };
    // Whole 5% steps around the data, as a reader compares in those.
    let lo = (accs().fold(1.0, f64::min) * 20.0).floor() / 20.0;
    let hi = (accs().fold(0.0, f64::max) * 20.0).ceil() / 20.0;
    let hi = if hi <= lo { lo + 0.05 } else { hi };

    let root = backend.into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_labels, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("labels spent")
        .y_desc("held-out accuracy")
        .x_labels(6)
        .y_labels(5)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
        .bold_line_style(RGBColor(0xe5, 0xe5, 0xe5))
        .draw()?;
    if let Some(target) = report.random_final_accuracy {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, target), (max_labels, target)],
            4,
            4,
            COLORS[0].stroke_width(1),
        ))?;
    }
    for (i, s) in report.results.iter().enumerate() {
        let color = if s.strategy == "random" {
            COLORS[0]
        } else {
            COLORS[1 + i % (COLORS.len() - 1)]
        };
        let savings = s
            .label_savings
            .map(|v| format!(" ({:+.0}% labels)", -v * 100.0))
            .unwrap_or_default();
        chart
            .draw_series(LineSeries::new(
                s.rounds.iter().map(|x| (x.labels as f64, x.accuracy)),
                color.stroke_width(2),
            ))?
            .label(format!("{}{savings}", s.strategy))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_font(("sans-serif", 12))
        .draw()?;
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(name: &str, accs: &[f64], savings: Option<f64>) -> StrategyResult {
        StrategyResult {
            strategy: name.into(),
            rounds: accs
                .iter()
                .enumerate()
                .map(|(i, &accuracy)| RoundResult {
                    round: i,
                    labels: 20 + 20 * i,
                    accuracy,
                    auto_coverage: 0.0,
                    auto_precision: 0.0,
                })
                .collect(),
            labels_to_match_random: None,
            label_savings: savings,
        }
    }

    /// The polylines with more than two points: the strategy curves (legend
    /// swatches and dashes are two-point paths), keyed by stroke colour.
    fn curves(svg: &str) -> Vec<(String, usize)> {
        let doc = roxmltree::Document::parse(svg).expect("valid XML");
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter_map(|n| {
                let points = n.attribute("points")?.split_whitespace().count();
                (points > 2).then(|| (n.attribute("stroke").unwrap_or("").to_string(), points))
            })
            .collect()
    }

    #[test]
    fn svg_has_one_curve_per_strategy_and_escapes_the_title() {
        let report = SimReport {
            items: 100,
            pool: 80,
            test: 20,
            dim: 4,
            labels: vec!["a".into(), "b".into()],
            seed_size: 20,
            batch: 20,
            rounds: 3,
            seed: 0,
            threshold: 0.9,
            random_final_accuracy: Some(0.8),
            results: vec![
                strategy("random", &[0.5, 0.6, 0.7, 0.8], None),
                strategy("margin", &[0.5, 0.7, 0.82, 0.86], Some(0.25)),
                strategy("k-center", &[0.5, 0.65, 0.75, 0.83], Some(0.0)),
            ],
        };
        let svg = svg_plot(&report, "cnn on <a & b>.jsonl").unwrap();
        let curves = curves(&svg);
        assert_eq!(curves.len(), 3, "{svg}");
        assert!(curves.iter().all(|(_, n)| *n == 4));
        let mut colors: Vec<&str> = curves.iter().map(|c| c.0.as_str()).collect();
        colors.sort();
        colors.dedup();
        assert_eq!(colors.len(), 3, "strategies share a colour: {curves:?}");

        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        for want in [
            "cnn on <a & b>.jsonl",
            "random",
            "margin (-25% labels)",
            "k-center (-0% labels)",
            "labels spent",
            "held-out accuracy",
        ] {
            assert!(texts.iter().any(|t| t == want), "no {want:?} in {texts:?}");
        }
    }

    #[test]
    fn svg_of_an_empty_report_is_still_a_document() {
        let report = SimReport {
            items: 0,
            pool: 0,
            test: 0,
            dim: 0,
            labels: vec![],
            seed_size: 0,
            batch: 0,
            rounds: 0,
            seed: 0,
            threshold: 0.9,
            random_final_accuracy: None,
            results: vec![],
        };
        let svg = svg_plot(&report, "nothing").unwrap();
        assert!(curves(&svg).is_empty());
    }
}
