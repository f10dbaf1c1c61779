//! `labelloop simulate` on real Fashion-MNIST images with the real CNN: it
//! writes simulation.json and a simulation.svg with an accuracy and a
//! coverage curve per strategy; the calibrated loop keeps its precision
//! bound, the drift alarm catches a guideline change, and bad flags exit 2.

mod common;

use std::process::Command;

#[test]
fn simulate_writes_json_and_an_svg_with_one_curve_per_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labeled.jsonl");
    let lines: Vec<String> = common::fashion_mnist_test()[..300]
        .iter()
        .map(|(id, path, label)| {
            serde_json::json!({"id": id, "image": path, "label": label}).to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_labelloop"))
        .current_dir(common::root())
        .args(["simulate", "--model", "fashion-mnist-cnn", "--threads", "1"])
        .args(["--strategy", "margin,k-center", "--rounds", "3"])
        .args(["--seed-size", "20", "--batch", "20", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    for s in ["| random |", "| margin |", "| k-center |"] {
        assert!(stdout.contains(s), "no {s} row in:\n{stdout}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("simulation.json")).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);

    let svg = std::fs::read_to_string(out.join("simulation.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("simulation.svg is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // Curves have a point per round (seed + 3); legend swatches and dashes
    // have two. Accuracy and coverage: two per strategy.
    let curves: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("points").unwrap().split_whitespace().count() == 4)
        .collect();
    assert_eq!(curves.len(), 6, "{svg}");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for r in results {
        let name = r["strategy"].as_str().unwrap();
        assert!(
            texts.iter().any(|t| t.starts_with(name)),
            "no legend entry for {name} in {texts:?}"
        );
    }
}

/// The first `n` Fashion-MNIST test images as a labeled JSONL in `dir`.
fn fashion_jsonl(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let data = dir.join("fashion.jsonl");
    let lines: Vec<String> = common::fashion_mnist_test()[..n]
        .iter()
        .map(|(id, path, label)| {
            serde_json::json!({"id": id, "image": path, "label": label}).to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    data
}

fn simulate(data: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let run = Command::new(env!("CARGO_BIN_EXE_labelloop"))
        .current_dir(common::root())
        .args(["simulate", "--model", "fashion-mnist-cnn", "--threads", "1"])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&run.stdout)
    );
    serde_json::from_slice(&std::fs::read(out.join("simulation.json")).unwrap()).unwrap()
}

/// Target 0.95 at δ = 0.05 on the CNN's own scores, 600 audit labels, three
/// seeds: the auto-accepted items' precision against the truth is ≥ 0.95 in
/// every run, with real coverage, and the per-round fields and the
/// predictions file say what was decided.
#[test]
fn the_precision_bound_holds_on_fashion_mnist() {
    let dir = tempfile::tempdir().unwrap();
    let data = fashion_jsonl(dir.path(), 3000);
    let out = dir.path().join("out");
    let report = simulate(
        &data,
        &out,
        &[
            "--predictor",
            "model",
            "--strategy",
            "margin",
            "--rounds",
            "2",
            "--seed-size",
            "100",
            "--batch",
            "50",
            "--audit-labels",
            "600",
            "--seeds",
            "3",
            "--target",
            "0.95",
            "--delta",
            "0.05",
        ],
    );
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let mut seen_points = 0;
    for run in runs {
        for r in run["results"].as_array().unwrap() {
            let last = r["rounds"].as_array().unwrap().last().unwrap();
            let precision = last["auto_precision"].as_f64().unwrap();
            let coverage = last["auto_coverage"].as_f64().unwrap();
            assert!(
                precision >= 0.95,
                "seed {}: precision {precision} in {last}",
                run["seed"]
            );
            assert!(coverage > 0.5, "seed {}: coverage {coverage}", run["seed"]);
            assert!(coverage <= last["oracle_coverage"].as_f64().unwrap() + 1e-9);
            assert_eq!(last["audit_labels"], 600);
            assert!(last["precision_bound"].as_f64().unwrap() >= 0.95);
            assert!(last["ece_before"].as_f64().is_some() && last["ece_after"].as_f64().is_some());
            let thresholds = last["thresholds"].as_object().unwrap();
            assert_eq!(thresholds.len(), 10);
            assert_eq!(last["drift_alarm"], false);
            seen_points += usize::from(last["point_estimate"]["coverage"].as_f64().unwrap() > 0.0);
        }
    }
    assert!(seen_points > 0);
    // predictions-<strategy>.jsonl: every pool item of every seed, with its status.
    let text = std::fs::read_to_string(out.join("predictions-margin.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3 * report["pool"].as_u64().unwrap() as usize);
    let count = |s: &str| rows.iter().filter(|r| r["status"] == s).count();
    assert_eq!(count("audit"), 3 * 600);
    assert_eq!(count("human"), 3 * (100 + 2 * 50));
    assert!(count("auto_accepted") > 0 && count("needs_review") > 0);
    for r in rows.iter().filter(|r| r["status"] == "auto_accepted") {
        assert!(r["score"].as_f64().unwrap() > 0.0 && r["raw_score"].as_f64().is_some());
        assert!(r["true_label"].is_string() && r["id"].is_string());
    }
}

/// From round 1 on the annotator calls trousers bags and bags trousers: the
/// alarm fires within 300 audit labels of the change and stops classes;
/// the same run without the change raises no alarm.
#[test]
fn the_drift_alarm_catches_a_swapped_guideline() {
    let dir = tempfile::tempdir().unwrap();
    let data = fashion_jsonl(dir.path(), 3000);
    let common_args = [
        "--predictor",
        "model",
        "--strategy",
        "random",
        "--rounds",
        "4",
        "--seed-size",
        "100",
        "--batch",
        "20",
        "--audit-labels",
        "1000",
        "--audit-per-round",
        "200",
        "--seeds",
        "2",
        // One version throughout: a refit on the drifted audit labels would
        // stop auto-accepting on its own before the alarm has its say.
        "--calibrate-every",
        "0",
    ];
    let mut drifted: Vec<&str> = common_args.to_vec();
    drifted.extend(["--drift-at", "2", "--drift-swap", "Trouser,Bag"]);
    let report = simulate(&data, &dir.path().join("drift"), &drifted);
    for run in report["runs"].as_array().unwrap() {
        let r = &run["results"][0];
        assert_eq!(r["drift_start_audit"], 400, "{r}");
        let delay = r["drift_delay"]
            .as_u64()
            .unwrap_or_else(|| panic!("no alarm: {r}"));
        assert!(delay <= 300, "alarm {delay} audit labels after the drift");
        assert!(r["alarms_at_audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.as_u64().unwrap() > 400));
        let alarmed = r["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["drift_alarm"] == true)
            .unwrap_or_else(|| panic!("no round shows the alarm: {r}"));
        assert!(!alarmed["drift_classes"].as_array().unwrap().is_empty());
    }
    let report = simulate(&data, &dir.path().join("steady"), &common_args);
    for run in report["runs"].as_array().unwrap() {
        let r = &run["results"][0];
        assert!(
            r["alarms_at_audit"].as_array().unwrap().is_empty(),
            "false alarm: {r}"
        );
        assert!(r["drift_delay"].is_null());
    }
}

/// Each bad calibration flag exits 2 naming the flag, before any model work.
#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = fashion_jsonl(dir.path(), 50);
    for (args, flag) in [
        (vec!["--target", "1.5"], "--target"),
        (vec!["--target", "0"], "--target"),
        (vec!["--delta", "0.7"], "--delta"),
        (vec!["--delta", "0"], "--delta"),
        (vec!["--audit-rate", "1.5"], "--audit-rate"),
        (vec!["--audit-rate=-0.1"], "--audit-rate"),
        (vec!["--method", "median"], "--method"),
        (vec!["--noise", "1"], "--noise"),
        (
            vec!["--drift-at", "1", "--drift-swap", "Trouser,Nope"],
            "--drift-swap",
        ),
        (
            vec!["--drift-at", "1", "--drift-swap", "Trouser"],
            "--drift-swap",
        ),
        (vec!["--drift-at", "1"], "--drift-swap"),
        (vec!["--predictor", "oracle"], "--predictor"),
    ] {
        let out = dir.path().join("never");
        let run = Command::new(env!("CARGO_BIN_EXE_labelloop"))
            .current_dir(common::root())
            .args(["simulate", "--model", "fashion-mnist-cnn", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote output");
    }
}
