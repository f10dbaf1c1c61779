//! `labelloop simulate --segments truth.jsonl --model vad`: the speech loop
//! on recordings whose speech segments are known. Every recording is
//! pre-labeled once by the engine; the seeds then replay what a speech
//! project does: audit recordings drawn uniformly and fully segmented by
//! people, a segment threshold fitted on them, and the other recordings
//! routed segment by segment, a recording going to a person when any
//! segment is below the threshold or the model stayed undecided for a
//! stretch (`service::regions::route_segments`).
//!
//! Segments are matched as unit-height boxes (`Span::as_box`, whose IoU is
//! the segments' own), so the replay, the fit and the report are the
//! detection ones: the recording is the image, the segment the box.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use super::super::EXIT_NOTHING_LABELED;
use super::boxes::{finish, load_model, options, sessions, threads};
use super::{cache, usage, SimulateArgs};
use crate::model::{Input, Task};
use crate::region::Span;
use crate::service::regions::{undecided_time, UNDECIDED_STRETCH_SECONDS};
use crate::simulate::boxes::{BoxDataset, BoxImage};

/// One line of the truth file.
#[derive(Deserialize)]
struct Recording {
    id: String,
    audio: PathBuf,
    segments: Vec<[f64; 2]>,
}

/// One recording's answer as cached: its segments `(start, end, score)`
/// and whether an undecided stretch holds it for a person.
type Answer = (Vec<(f64, f64, f64)>, bool);

/// The recordings of `path`, audio paths resolved against its folder.
/// Errors name the line and what is wrong with it.
fn read_truth(path: &Path) -> Result<Vec<Recording>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut r: Recording = serde_json::from_str(line).map_err(|e| {
            format!(
                "{} line {}: {e} (each line is {{\"id\", \"audio\", \"segments\": [[start, end], …]}})",
                path.display(),
                n + 1
            )
        })?;
        if let Some(bad) = r
            .segments
            .iter()
            .find(|[s, e]| !(s.is_finite() && e.is_finite() && *s >= 0.0 && s < e))
        {
            return Err(format!(
                "{} line {}: segment [{}, {}] is not a span of seconds with 0 ≤ start < end",
                path.display(),
                n + 1,
                bad[0],
                bad[1]
            ));
        }
        if r.audio.is_relative() {
            r.audio = dir.join(&r.audio);
        }
        out.push(r);
    }
    Ok(out)
}

pub fn run(args: SimulateArgs) -> ExitCode {
    let fit = match options(&args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(truth_path) = args.segments.clone() else {
        return usage("--segments", "is required for speech");
    };
    let model = match load_model(&args, Task::VoiceActivity, "--segments") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let recordings = match read_truth(&truth_path) {
        Ok(r) => r,
        Err(e) => return usage("--segments", e),
    };
    if recordings.is_empty() {
        eprintln!("error: {} holds no recordings", truth_path.display());
        return ExitCode::from(EXIT_NOTHING_LABELED);
    }
    let items = recordings
        .iter()
        .map(|r| (r.id.clone(), Input::AudioPath(r.audio.clone())))
        .collect();
    let answers = match cache::answers(
        &args,
        &model,
        &truth_path,
        items,
        sessions(threads(&args)),
        |p| {
            let seg = p.segments.ok_or("no segments in the answer")?;
            let (_, longest) = undecided_time(&seg.frames, seg.frame_seconds);
            Ok::<Answer, String>((
                seg.segments
                    .iter()
                    .map(|s| (s.start, s.end, f64::from(s.score)))
                    .collect(),
                longest >= UNDECIDED_STRETCH_SECONDS,
            ))
        },
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let images = recordings
        .iter()
        .zip(answers)
        .map(|(rec, (segments, held))| BoxImage {
            id: rec.id.clone(),
            preds: segments
                .into_iter()
                .map(|(s, e, score)| (Span::new(s, e).as_box(), 0, score))
                .collect(),
            truth: rec
                .segments
                .iter()
                .map(|&[s, e]| (Span::new(s, e).as_box(), 0))
                .collect(),
            held,
            texts: None,
        })
        .collect();
    let speech = model
        .labels()
        .first()
        .cloned()
        .unwrap_or_else(|| "Speech".into());
    let data = BoxDataset {
        images,
        labels: vec![speech],
    };
    let title = format!(
        "{} on {}",
        model.name(),
        truth_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    finish(&args, &data, fit, "segments", &title)
}
