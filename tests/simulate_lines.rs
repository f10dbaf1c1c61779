//! `labelloop simulate --lines`: the OCR loop on the real PP-OCRv6 models
//! (models/ocr) and rendered pages with exact lines (data/ocr-pages, made by
//! `scripts/setup.sh`). The assertions are about outcomes against the
//! truth, not fixed numbers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The first `n` pages of `data/ocr-pages/lines.json` as their own file,
/// page ids made absolute; and their true line count.
fn subset(dir: &Path, n: usize) -> (PathBuf, usize) {
    let pages = common::root().join("data/ocr-pages");
    let full: Value =
        serde_json::from_slice(&std::fs::read(common::require(&pages.join("lines.json"))).unwrap())
            .unwrap();
    let mut chosen: Vec<Value> = full["pages"].as_array().unwrap()[..n].to_vec();
    let mut lines = 0;
    for p in &mut chosen {
        let abs = pages.join(p["id"].as_str().unwrap());
        p["id"] = Value::String(abs.to_str().unwrap().into());
        lines += p["lines"].as_array().unwrap().len();
    }
    let out = dir.join("lines.json");
    std::fs::write(
        &out,
        serde_json::to_vec(&serde_json::json!({ "pages": chosen })).unwrap(),
    )
    .unwrap();
    (out, lines)
}

fn labelloop(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_labelloop"))
        .current_dir(common::root())
        .args(args)
        .output()
        .unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = labelloop(args);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 6 rendered pages, 3 audited, target 0.8 at δ 0.2 (6 pages are far too
/// few for 0.95 at 0.05; scripts/ocr_calibration_figures.sh runs that):
/// every true line is counted once (the simulated annotator draws the lines
/// detection missed), what is auto-accepted meets the target against the
/// truth, and the figures add up. A second run reads the answer cache (the
/// model's pages are not read again) and gives the same report; a cache
/// for another truth file is not used.
#[test]
fn lines_simulate_meets_its_target_and_reads_its_cache() {
    let dir = common::model_dir("ocr");
    common::require(&dir.join("det.onnx"));
    common::require(&dir.join("rec.onnx"));
    let tmp = tempfile::tempdir().unwrap();
    let (lines, true_lines) = subset(tmp.path(), 6);
    let cache = tmp.path().join("answers.json");
    let out = tmp.path().join("out");
    let args = [
        "simulate",
        "--model",
        "ocr",
        "--lines",
        lines.to_str().unwrap(),
        "--audit-images",
        "3",
        "--target",
        "0.8",
        "--delta",
        "0.2",
        "--seeds",
        "3",
        "--threads",
        "2",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let stdout = run_ok(&args);
    assert!(stdout.contains("summary: precision ≥ 0.8"), "{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("simulation-lines.json")).unwrap()).unwrap();
    assert_eq!(report["images"], 6);
    assert_eq!(report["truths"].as_u64().unwrap() as usize, true_lines);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        let accepted = r["accepted_boxes"].as_u64().unwrap();
        if accepted > 0 {
            let correct = r["accepted_correct"].as_u64().unwrap();
            let p = r["precision"].as_f64().unwrap();
            assert!((p - correct as f64 / accepted as f64).abs() < 1e-12);
            assert!(p >= 0.8, "seed {}: precision {p}", r["seed"]);
        }
        let touched = r["touched_share"].as_f64().unwrap();
        let reviewed = r["reviewed_images"].as_u64().unwrap();
        assert!((touched - (3 + reviewed) as f64 / 6.0).abs() < 1e-12);
    }
    // Per page: the machine's lines, each right or wrong against the typed truth.
    let outcomes = std::fs::read_to_string(out.join("line-outcomes.jsonl")).unwrap();
    let rows: Vec<Value> = outcomes
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    let correct: usize = rows
        .iter()
        .flat_map(|r| r["boxes"].as_array().unwrap())
        .filter(|b| b[2].as_bool().unwrap())
        .count();
    assert!(
        correct as f64 > 0.8 * true_lines as f64,
        "{correct} of {true_lines} lines read right"
    );

    // The cache holds this model's answers for this file, and is read.
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert!(cached["key"].as_str().unwrap().starts_with("ocr|"));
    assert_eq!(cached["answers"].as_array().unwrap().len(), 6);
    let modified = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let again = run_ok(&args);
    assert_eq!(again, stdout);
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        modified,
        "a cache hit rewrote the cache"
    );

    // Another truth file (2 pages): the cache is not theirs, so the pages are read again.
    let other = tempfile::tempdir().unwrap();
    let (two, _) = subset(other.path(), 2);
    let mut args2 = args.to_vec();
    args2[4] = two.to_str().unwrap();
    args2[6] = "1";
    let out2 = run_ok(&args2);
    assert!(out2.contains("2 pages"), "{out2}");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["answers"].as_array().unwrap().len(), 2);
}
