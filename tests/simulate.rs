//! `labelloop simulate` on real Fashion-MNIST images with the real CNN: it
//! writes simulation.json and a simulation.svg with one curve per strategy.

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
    // Curves have a point per round (seed + 3); legend swatches and dashes have two.
    let curves: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("points").unwrap().split_whitespace().count() == 4)
        .collect();
    assert_eq!(curves.len(), 3, "{svg}");
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
