//! The `labelloop` binary: help, output format, partial failure, exit codes.

mod common;

use std::process::Command;

fn labelloop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labelloop"));
    cmd.current_dir(common::root()).env_remove("ORT_DYLIB_PATH");
    cmd
}

#[test]
fn help_works_on_every_subcommand() {
    for args in [
        vec!["--help"],
        vec!["label", "--help"],
        vec!["models", "--help"],
        vec!["models", "list", "--help"],
        vec!["models", "check", "--help"],
    ] {
        let out = labelloop().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let out = labelloop()
        .args(["label", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn labels_a_jsonl_with_bad_lines_in_input_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::fashion_mnist_test();
    let mut jsonl = String::new();
    for (i, (id, path, label)) in data[..20].iter().enumerate() {
        if i == 5 {
            jsonl.push_str("{not json\n");
        }
        if i == 9 {
            jsonl.push_str("{\"id\": \"missing\", \"image\": \"nope.png\"}\n");
        }
        jsonl.push_str(&serde_json::json!({"id": id, "image": path, "label": label}).to_string());
        jsonl.push('\n');
    }
    std::fs::write(tmp.path().join("items.jsonl"), jsonl).unwrap();
    std::fs::write(tmp.path().join("corrupt.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let out_path = tmp.path().join("out.jsonl");
    let out = labelloop()
        .args([
            "label",
            "--model",
            "models/fashion-mnist-cnn",
            "--batch-size",
            "4",
        ])
        .arg(tmp.path().join("items.jsonl"))
        .arg(tmp.path().join("corrupt.png"))
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("labeled 20 of 23 items"), "{stderr}");
    assert!(
        stderr.contains("accuracy against the given labels"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 23);
    assert!(lines[5]["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));
    assert_eq!(lines[10]["id"], "missing");
    assert!(lines[10]["error"].as_str().unwrap().contains("nope.png"));
    assert!(lines[22]["error"].as_str().unwrap().contains("decode"));
    let good: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("error").is_none()).collect();
    assert_eq!(good.len(), 20);
    for (line, (id, _, _)) in good.iter().zip(&data[..20]) {
        assert_eq!(line["id"], id.as_str(), "input order kept");
        assert_eq!(line["model"], "fashion-mnist-cnn");
        assert_eq!(line["model_version"], "1.0.0");
        let scores = line["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 10);
        let label = line["label"].as_str().unwrap();
        assert_eq!(
            scores[label].as_f64().unwrap(),
            line["score"].as_f64().unwrap()
        );
        for k in ["least_confidence", "margin", "entropy"] {
            let u = line["uncertainty"][k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&u));
        }
    }
}

#[test]
fn labels_a_folder_recursively_and_text_files() {
    let tmp = tempfile::tempdir().unwrap();
    let nested = tmp.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    let data = common::fashion_mnist_test();
    std::fs::copy(&data[0].1, tmp.path().join("x.png")).unwrap();
    std::fs::copy(&data[1].1, nested.join("y.PNG")).unwrap();
    std::fs::write(nested.join("notes.md"), "ignored").unwrap();
    let out = labelloop()
        .args(["label", "-m", "fashion-mnist-cnn"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    std::fs::write(
        tmp.path().join("texts.txt"),
        b"hello world\nsecond line \xff\xfe\nthird\n",
    )
    .unwrap();
    let out = labelloop()
        .args(["label", "-m", "minilm-l6"])
        .arg(tmp.path().join("texts.txt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 384);
    assert_eq!(lines[1]["code"], "invalid_utf8");
    assert_eq!(
        lines[2]["id"].as_str().unwrap().rsplit(':').next(),
        Some("3")
    );
}

#[test]
fn exit_codes_mean_something() {
    // Nothing could be labeled: 1.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.png"), b"").unwrap();
    let out = labelloop()
        .args(["label", "-m", "fashion-mnist-cnn"])
        .arg(tmp.path().join("bad.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("zero bytes"));

    // The model failed to load: 3, with a message that says what to do.
    let out = labelloop()
        .args(["label", "-m", "no-such-model", "x.png"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("models list"));

    let out = labelloop()
        .args(["models", "check", "models/no-such-model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn missing_onnx_runtime_names_the_setup_command() {
    let out = labelloop()
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args([
            "label",
            "-m",
            "fashion-mnist-cnn",
            "tests/fixtures/documents/page-1.png",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scripts/setup.sh"), "{stderr}");

    // Not set and not installed: copy the binary somewhere with no .ort nearby.
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("labelloop");
    std::fs::copy(env!("CARGO_BIN_EXE_labelloop"), &exe).unwrap();
    let out = Command::new(&exe)
        .current_dir(tmp.path())
        .env_remove("ORT_DYLIB_PATH")
        .args(["models", "check"])
        .arg(common::model_dir("fashion-mnist-cnn"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("not found") && stderr.contains("scripts/setup.sh"),
        "{stderr}"
    );
}

#[test]
fn models_list_shows_the_shipped_models() {
    let out = labelloop().args(["models", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "fashion-mnist-cnn",
        "fashion-mnist-cnn-fp16",
        "minilm-l6",
        "orientation",
    ] {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("image-classification") && text.contains("text-embedding"));
}
