//! `labelloop simulate --lines lines.json --model ocr`: the OCR loop on
//! rendered pages whose lines are known. Every page is read once by the
//! engine; the seeds then replay what an OCR project does: audit pages
//! drawn uniformly and fully transcribed by a simulated annotator, a line
//! threshold fitted on them, and the other pages routed line by line, a
//! page going to a person when any line is below the threshold
//! (`service::regions::route_lines`).
//!
//! The simulated annotator types the true text. Where a machine line reads
//! a true line (each centre inside the other's box, one to one, as
//! tests/ocr.rs matches) it keeps the machine's box and types the true
//! text, as a reviewer keeps a box that is right; a true line no machine
//! line reads is drawn in its true box (a line missed by detection). The
//! replay, the fit and the report are the detection ones, the page the
//! image and the line the box, with the text rule of
//! `service::box_calibration::match_reviewed`: a line is correct when its
//! box matches at IoU ≥ τ and its text is the person's after NFC.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use super::super::EXIT_NOTHING_LABELED;
use super::boxes::{finish, load_model, options, sessions, threads};
use super::{cache, usage, SimulateArgs};
use crate::model::{Input, Task};
use crate::region::BoxPx;
use crate::simulate::boxes::{BoxDataset, BoxImage};

#[derive(Deserialize)]
struct Truth {
    pages: Vec<Page>,
}

#[derive(Deserialize)]
struct Page {
    id: String,
    lines: Vec<Line>,
}

#[derive(Deserialize, Serialize, Clone)]
struct Line {
    text: String,
    #[serde(rename = "box")]
    bbox: [f64; 4],
}

/// One page's machine lines as cached: `(score, line)`.
type Answer = Vec<(f64, Line)>;

fn centre(b: &[f64; 4]) -> [f64; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

fn inside(p: [f64; 2], b: &[f64; 4]) -> bool {
    b[0] <= p[0] && p[0] <= b[2] && b[1] <= p[1] && p[1] <= b[3]
}

/// The simulated annotator's transcription of a page: per machine line the
/// true line it reads, if any, then the true lines none reads.
fn transcribe(machine: &[(f64, Line)], truth: &[Line]) -> Vec<Line> {
    let mut used = vec![false; truth.len()];
    let mut out = Vec::new();
    for (_, l) in machine {
        let hit = truth.iter().enumerate().position(|(i, t)| {
            !used[i] && inside(centre(&l.bbox), &t.bbox) && inside(centre(&t.bbox), &l.bbox)
        });
        if let Some(i) = hit {
            used[i] = true;
            out.push(Line {
                text: truth[i].text.clone(),
                bbox: l.bbox,
            });
        }
    }
    out.extend(
        truth
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(t, _)| t.clone()),
    );
    out
}

fn read_truth(path: &Path) -> Result<Vec<(PathBuf, Page)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t: Truth = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: {e} (expected {{\"pages\": [{{\"id\", \"lines\": [{{\"text\", \"box\"}}]}}]}})",
            path.display()
        )
    })?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    for p in &t.pages {
        if let Some(l) = p.lines.iter().find(|l| {
            let b = BoxPx::from(l.bbox);
            !(b.x0.is_finite() && b.y1.is_finite() && b.x0 < b.x1 && b.y0 < b.y1)
        }) {
            return Err(format!(
                "{}: page {}: line {:?} has no box x0 < x1, y0 < y1",
                path.display(),
                p.id,
                l.text
            ));
        }
    }
    Ok(t.pages.into_iter().map(|p| (dir.join(&p.id), p)).collect())
}

pub fn run(args: SimulateArgs) -> ExitCode {
    let fit = match options(&args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(truth_path) = args.lines.clone() else {
        return usage("--lines", "is required for OCR");
    };
    let model = match load_model(&args, Task::Ocr, "--lines") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let pages = match read_truth(&truth_path) {
        Ok(p) => p,
        Err(e) => return usage("--lines", e),
    };
    if pages.is_empty() {
        eprintln!("error: {} holds no pages", truth_path.display());
        return ExitCode::from(EXIT_NOTHING_LABELED);
    }
    let items = pages
        .iter()
        .map(|(path, page)| (page.id.clone(), Input::ImagePath(path.clone())))
        .collect();
    let answers = match cache::answers(
        &args,
        &model,
        &truth_path,
        items,
        sessions(threads(&args)),
        |p| {
            let page = p.ocr.ok_or("no lines in the answer")?;
            Ok::<Answer, String>(
                page.lines
                    .into_iter()
                    .map(|l| {
                        (
                            f64::from(l.score),
                            Line {
                                text: l.text,
                                bbox: l.bbox,
                            },
                        )
                    })
                    .collect(),
            )
        },
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let images = pages
        .iter()
        .zip(answers)
        .map(|((_, page), machine)| {
            let people = transcribe(&machine, &page.lines);
            BoxImage {
                id: page.id.clone(),
                preds: machine
                    .iter()
                    .map(|(score, l)| (BoxPx::from(l.bbox), 0, *score))
                    .collect(),
                truth: people.iter().map(|l| (BoxPx::from(l.bbox), 0)).collect(),
                held: false,
                texts: Some((
                    machine.into_iter().map(|(_, l)| l.text).collect(),
                    people.into_iter().map(|l| l.text).collect(),
                )),
            }
        })
        .collect();
    let data = BoxDataset {
        images,
        labels: vec!["Text".into()],
    };
    let title = format!(
        "{} on {} (synthetic pages)",
        model.name(),
        truth_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    finish(&args, &data, fit, "lines", &title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotator_keeps_read_boxes_and_draws_missed_lines() {
        let l = |t: &str, b: [f64; 4]| Line {
            text: t.into(),
            bbox: b,
        };
        let truth = vec![
            l("one", [10.0, 10.0, 100.0, 20.0]),
            l("two", [10.0, 30.0, 100.0, 40.0]),
        ];
        let machine = vec![
            (0.9, l("0ne", [8.0, 8.0, 103.0, 22.0])),
            (0.5, l("noise", [300.0, 300.0, 320.0, 310.0])),
        ];
        let people = transcribe(&machine, &truth);
        assert_eq!(people.len(), 2);
        assert_eq!(people[0].text, "one");
        assert_eq!(people[0].bbox, [8.0, 8.0, 103.0, 22.0]);
        assert_eq!(people[1].text, "two");
        assert_eq!(people[1].bbox, truth[1].bbox);
    }
}
