//! The layers point one way: `cli` and `api` use `service`, which uses the
//! store, the engine and the pure modules; none of those below knows the
//! HTTP API (or the CLI) exists. This test reads the source tree and fails on
//! any path into `api` or `cli` from below, comments aside.

use std::path::{Path, PathBuf};

/// The modules below the adapters.
const BELOW: &[&str] = &[
    "src/service",
    "src/store",
    "src/model",
    "src/select",
    "src/learn",
    "src/calibrate",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line, without a `//` comment.
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

#[test]
fn nothing_below_the_adapters_uses_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in BELOW {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut upward = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            let code = code(line);
            if [
                "crate::api",
                "crate::cli",
                "labelloop::api",
                "labelloop::cli",
            ]
            .iter()
            .any(|p| code.contains(p))
            {
                upward.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(root).unwrap_or(file).display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "modules below the API import it (move what they need down, e.g. into service):\n{}",
        upward.join("\n")
    );
}

/// The check itself sees an import, so it cannot pass by reading nothing.
#[test]
fn the_check_sees_an_import() {
    assert!(code("use crate::api::auth::hash_token;").contains("crate::api"));
    assert!(!code("// see crate::api::error").contains("crate::api"));
}
