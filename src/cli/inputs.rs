//! Expanding `label`'s INPUT arguments into items: image files, folders
//! (recursive), JSONL files of `{"id", "text"|"image", "label"?}`, and text
//! files with one item per line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{Input, ItemError};

/// One item to label, with its id and optional known label (for accuracy).
pub struct Item {
    pub id: String,
    pub input: Result<Input, ItemError>,
    pub truth: Option<String>,
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    id: Option<serde_json::Value>,
    text: Option<String>,
    image: Option<String>,
    /// A sound file, for a voice-activity model.
    audio: Option<String>,
    label: Option<String>,
}

/// Expand all INPUT arguments, in order.
pub fn expand(paths: &[PathBuf]) -> Vec<Item> {
    let mut items = Vec::new();
    for path in paths {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if path.is_dir() {
            expand_dir(path, &mut items);
        } else if !path.exists() {
            items.push(Item {
                id: path.display().to_string(),
                input: Err(ItemError::Io {
                    path: path.display().to_string(),
                    message: "no such file or folder".into(),
                }),
                truth: None,
            });
        } else if matches!(ext.as_deref(), Some("jsonl" | "ndjson")) {
            expand_jsonl(path, &mut items);
        } else if matches!(ext.as_deref(), Some("txt")) {
            expand_text_lines(path, &mut items);
        } else {
            items.push(Item {
                id: path.display().to_string(),
                input: Ok(Input::ImagePath(path.clone())),
                truth: None,
            });
        }
    }
    items
}

fn expand_dir(dir: &Path, items: &mut Vec<Item>) {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| match e {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::warn!(%err, "skipping unreadable entry");
                None
            }
        })
        .filter(|e| e.file_type().is_file() && is_image(e.path()))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    items.extend(files.into_iter().map(|p| Item {
        id: p.display().to_string(),
        input: Ok(Input::ImagePath(p)),
        truth: None,
    }));
}

fn read_lines(path: &Path, items: &mut Vec<Item>) -> Option<Vec<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(
            bytes
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                .collect(),
        ),
        Err(e) => {
            items.push(Item {
                id: path.display().to_string(),
                input: Err(ItemError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }),
                truth: None,
            });
            None
        }
    }
}

fn expand_jsonl(path: &Path, items: &mut Vec<Item>) {
    let base = path.parent().unwrap_or(Path::new("."));
    let Some(lines) = read_lines(path, items) else {
        return;
    };
    for (n, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let fallback_id = format!("{}:{}", path.display(), n + 1);
        let parsed: JsonLine = match serde_json::from_slice(line) {
            Ok(p) => p,
            Err(e) => {
                let err = match std::str::from_utf8(line) {
                    Err(u) => ItemError::InvalidUtf8 {
                        offset: u.valid_up_to(),
                    },
                    Ok(_) => ItemError::Invalid(format!("line {}: malformed JSON: {e}", n + 1)),
                };
                items.push(Item {
                    id: fallback_id,
                    input: Err(err),
                    truth: None,
                });
                continue;
            }
        };
        let id = match parsed.id {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => fallback_id,
        };
        let file = |f: &str| {
            let p = PathBuf::from(f);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        };
        let input = match (parsed.text, parsed.image, parsed.audio) {
            (Some(t), None, None) => Ok(Input::Text(t)),
            (None, Some(img), None) => Ok(Input::ImagePath(file(&img))),
            (None, None, Some(audio)) => Ok(Input::AudioPath(file(&audio))),
            (None, None, None) => Err(ItemError::Invalid(format!(
                "line {}: needs a \"text\", an \"image\" or an \"audio\" field",
                n + 1
            ))),
            _ => Err(ItemError::Invalid(format!(
                "line {}: give one of \"text\", \"image\" or \"audio\", not several",
                n + 1
            ))),
        };
        items.push(Item {
            id,
            input,
            truth: parsed.label,
        });
    }
}

fn expand_text_lines(path: &Path, items: &mut Vec<Item>) {
    let Some(lines) = read_lines(path, items) else {
        return;
    };
    for (n, line) in lines.into_iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        items.push(Item {
            id: format!("{}:{}", path.display(), n + 1),
            input: Ok(Input::TextBytes(line)),
            truth: None,
        });
    }
}
