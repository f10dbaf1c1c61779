//! The simulation's SVG: held-out accuracy against labels spent (left) and
//! auto-accept coverage against labels spent (right), one line per strategy.

use plotters::prelude::*;

use super::SimReport;

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
    draw(
        report,
        title,
        SVGBackend::with_string(&mut svg, (1200, 460)),
    )
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
    let root = root.titled(title, ("sans-serif", 15))?;
    let (left, right) = root.split_horizontally(680);
    let mut chart = ChartBuilder::on(&left)
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

    // Coverage under the calibrated thresholds, against the same labels.
    let mut cov = ChartBuilder::on(&right)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_labels, 0.0..1.0)?;
    cov.configure_mesh()
        .x_desc("labels spent")
        .y_desc("auto-accept coverage")
        .x_labels(4)
        .y_labels(5)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
        .bold_line_style(RGBColor(0xe5, 0xe5, 0xe5))
        .draw()?;
    for (i, s) in report.results.iter().enumerate() {
        let color = if s.strategy == "random" {
            COLORS[0]
        } else {
            COLORS[1 + i % (COLORS.len() - 1)]
        };
        cov.draw_series(LineSeries::new(
            s.rounds.iter().map(|x| (x.labels as f64, x.auto_coverage)),
            color.stroke_width(2),
        ))?;
    }
    root.present()
}

#[cfg(test)]
mod tests {
    use super::super::{Baseline, Predictor, RoundResult, StrategyResult};
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
                    audit_labels: 0,
                    accuracy,
                    auto_coverage: accuracy / 2.0,
                    auto_precision: 1.0,
                    machine_items: 0,
                    refit: true,
                    temperature: 1.0,
                    thresholds: Default::default(),
                    precision_bound: None,
                    ece_before: None,
                    ece_after: None,
                    drift_alarm: false,
                    drift_classes: vec![],
                    point_estimate: Baseline {
                        threshold: None,
                        coverage: 0.0,
                        precision: None,
                    },
                    oracle_coverage: 0.0,
                    audit_draws: 0,
                })
                .collect(),
            labels_to_match_random: None,
            label_savings: savings,
            drift_start_audit: None,
            alarms_at_audit: vec![],
            drift_delay: None,
            finish: None,
            label_quality: None,
            predictions: vec![],
            quality_rows: vec![],
        }
    }

    fn report(results: Vec<StrategyResult>) -> SimReport {
        SimReport {
            items: 100,
            pool: 80,
            test: 20,
            dim: 4,
            labels: vec!["a".into(), "b".into()],
            seed_size: 20,
            batch: 20,
            rounds: 3,
            seed: 0,
            threshold: None,
            predictor: Predictor::Head,
            target: 0.95,
            delta: 0.05,
            method: "global".into(),
            audit_design: super::super::AuditDesign::Uniform,
            review_sampling: super::super::ReviewSampling::TopK,
            audit_sample: 0,
            random_final_accuracy: if results.is_empty() { None } else { Some(0.8) },
            results,
            runs: vec![],
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
    fn svg_has_two_curves_per_strategy_and_escapes_the_title() {
        let report = report(vec![
            strategy("random", &[0.5, 0.6, 0.7, 0.8], None),
            strategy("margin", &[0.5, 0.7, 0.82, 0.86], Some(0.25)),
            strategy("k-center", &[0.5, 0.65, 0.75, 0.83], Some(0.0)),
        ]);
        let svg = svg_plot(&report, "cnn on <a & b>.jsonl").unwrap();
        let curves = curves(&svg);
        // Accuracy and coverage, one each per strategy.
        assert_eq!(curves.len(), 6, "{svg}");
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
            "auto-accept coverage",
        ] {
            assert!(texts.iter().any(|t| t == want), "no {want:?} in {texts:?}");
        }
    }

    #[test]
    fn svg_of_an_empty_report_is_still_a_document() {
        let svg = svg_plot(&report(vec![]), "nothing").unwrap();
        assert!(curves(&svg).is_empty());
    }
}
