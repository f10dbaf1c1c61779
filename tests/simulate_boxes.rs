//! `labelloop simulate --coco`: the detection loop on the real layout model
//! and synthetic pages with exact boxes (`data/layout-pages`, made by
//! `scripts/setup.sh`). The assertions are about outcomes against the
//! truth, not fixed numbers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The first `n` pages of `data/layout-pages` as their own COCO file.
fn subset(dir: &Path, n: usize) -> PathBuf {
    let pages = common::root().join("data/layout-pages");
    let full: Value = serde_json::from_slice(
        &std::fs::read(common::require(&pages.join("instances.json"))).unwrap(),
    )
    .unwrap();
    let images: Vec<Value> = full["images"].as_array().unwrap()[..n].to_vec();
    let ids: Vec<&Value> = images.iter().map(|i| &i["id"]).collect();
    let annotations: Vec<Value> = full["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ids.contains(&&a["image_id"]))
        .cloned()
        .collect();
    let out = dir.join("instances.json");
    let coco = serde_json::json!({
        "images": images,
        "annotations": annotations,
        "categories": full["categories"],
    });
    std::fs::write(&out, serde_json::to_vec(&coco).unwrap()).unwrap();
    out
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

/// 40 synthetic pages, half audited, target 0.8 at δ 0.1 (40 pages are too
/// few for 0.95 at 0.05: an audit needs ~65 clean pages to pass it):
/// whatever is auto-accepted meets the target against the truth, the miss
/// rate is within its bound, and the figures add up. A second run reads the
/// proposal cache and gives the same report.
#[test]
fn detection_simulate_meets_its_target_and_its_miss_bound() {
    common::require(&common::model_dir("layout").join("model.onnx"));
    let tmp = tempfile::tempdir().unwrap();
    let coco = subset(tmp.path(), 40);
    let pages = common::root().join("data/layout-pages");
    let cache = tmp.path().join("proposals.json");
    let out = tmp.path().join("out");
    let args = [
        "simulate",
        "--model",
        "layout",
        "--coco",
        coco.to_str().unwrap(),
        "--images",
        pages.to_str().unwrap(),
        "--audit-images",
        "20",
        "--target",
        "0.8",
        "--delta",
        "0.1",
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
        serde_json::from_slice(&std::fs::read(out.join("simulation-boxes.json")).unwrap()).unwrap();
    assert_eq!(report["task"], "detect");
    assert_eq!(report["images"], 40);
    assert_eq!(report["audit_images"], 20);
    assert!(report["truths"].as_u64().unwrap() > 300);
    let map = report["map_50"].as_f64().unwrap();
    assert!(map > 0.6 && map < 0.95, "mAP@0.5 {map}");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let mut accepted_any = false;
    for r in runs {
        let accepted = r["accepted_boxes"].as_u64().unwrap();
        let correct = r["accepted_correct"].as_u64().unwrap();
        let per_class: u64 = r["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["accepted"].as_u64().unwrap())
            .sum();
        assert_eq!(per_class, accepted);
        if accepted > 0 {
            accepted_any = true;
            let p = r["precision"].as_f64().unwrap();
            assert!((p - correct as f64 / accepted as f64).abs() < 1e-12);
            assert!(
                p >= 0.8,
                "seed {}: precision {p} below the target",
                r["seed"]
            );
            assert!(r["mean_fdp"].as_f64().unwrap() <= 0.2);
            assert!(r["coverage"].as_f64().unwrap() > 0.0);
        }
        let miss = r["miss_mean"].as_f64().unwrap();
        let bound = r["miss_bound"].as_f64().unwrap();
        assert!(
            miss <= bound,
            "seed {}: miss {miss} above its bound {bound}",
            r["seed"]
        );
        assert!(r["miss_within_bound"].as_bool().unwrap());
        let touched = r["touched_share"].as_f64().unwrap();
        let reviewed = r["reviewed_images"].as_u64().unwrap();
        assert!((touched - (20 + reviewed) as f64 / 40.0).abs() < 1e-12);
        assert!(r["finished_precision"].as_f64().unwrap() >= 0.8);
    }
    assert!(accepted_any, "no seed auto-accepted a box: {stdout}");

    // The cache is read: same report, and the model is not needed to agree.
    let again = run_ok(&args);
    assert_eq!(again, stdout);
}

#[test]
fn detection_simulate_refuses_bad_input_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let coco = subset(tmp.path(), 2);
    let base = |extra: &[&str]| {
        let mut a = vec![
            "simulate",
            "--model",
            "layout",
            "--coco",
            coco.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        labelloop(&a)
    };
    for (flag, extra) in [
        ("--iou", vec!["--iou", "0"]),
        ("--design", vec!["--design", "pooled"]),
        ("--bound", vec!["--bound", "normal"]),
        ("--target", vec!["--target", "1.0"]),
        ("--audit-rate", vec!["--audit-rate", "1.5"]),
    ] {
        let out = base(&extra);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
    // A category the model does not know is named, with the model's labels.
    let mut bad: Value = serde_json::from_slice(&std::fs::read(&coco).unwrap()).unwrap();
    bad["categories"][0]["name"] = "paragraph".into();
    let bad_path = tmp.path().join("bad.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = labelloop(&[
        "simulate",
        "--model",
        "layout",
        "--coco",
        bad_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("paragraph") && err.contains("figure_caption"),
        "{err}"
    );
    // Classification without --data nor --coco is a usage error.
    let out = labelloop(&["simulate", "--model", "layout"]);
    assert_eq!(out.status.code(), Some(2));
}
