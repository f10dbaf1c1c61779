//! The model's answers for every item of a simulation, read once: from the
//! `--cache` file when it holds this model's answers for this truth file,
//! else from the engine (then written to the cache). Boxes, segments and
//! lines all replay their seeds on answers read this way.

use std::path::Path;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::super::EXIT_NOTHING_LABELED;
use super::SimulateArgs;
use crate::model::pipeline::{self, PipelineOptions};
use crate::model::{Input, Model, Prediction};

/// The cache file: the answers and what they are the answers of.
#[derive(Serialize, Deserialize)]
struct Cached<A> {
    /// Model name, model version, truth file and item count.
    key: String,
    answers: Vec<A>,
}

/// One answer per item of `items` (`(id, input)`, the id naming the item in
/// errors), in their order. `answer` turns the engine's prediction into
/// what the simulation keeps, or says why it has none. Any failure stops the
/// run (an error on stderr, exit code "nothing labeled"): leaving items out
/// would change what the audit is a sample of.
pub(super) fn answers<A, F>(
    args: &SimulateArgs,
    model: &Model,
    truth: &Path,
    items: Vec<(String, Input)>,
    opts: PipelineOptions,
    mut answer: F,
) -> Result<Vec<A>, ExitCode>
where
    A: Serialize + DeserializeOwned,
    F: FnMut(Prediction) -> Result<A, String>,
{
    let key = format!(
        "{}|{}|{}|{}",
        model.name(),
        model.version(),
        truth.display(),
        items.len()
    );
    if let Some(hit) = args
        .cache
        .as_ref()
        .and_then(|c| std::fs::read(c).ok())
        .and_then(|b| serde_json::from_slice::<Cached<A>>(&b).ok())
        .filter(|c| c.key == key && c.answers.len() == items.len())
    {
        return Ok(hit.answers);
    }
    let pb = crate::cli::progress_bar(
        items.len() as u64,
        "pre-labeling {wide_bar} {pos}/{len} ({per_sec})",
    );
    let (ids, inputs): (Vec<String>, Vec<_>) = items.into_iter().map(|(id, i)| (id, Ok(i))).unzip();
    let mut got: Vec<Option<A>> = std::iter::repeat_with(|| None).take(ids.len()).collect();
    let mut failed: Vec<String> = Vec::new();
    pipeline::label_all(model, inputs, opts, |i, r| {
        pb.inc(1);
        match r.map_err(|e| e.to_string()).and_then(&mut answer) {
            Ok(a) => got[i] = Some(a),
            Err(e) => failed.push(format!("{}: {e}", ids[i])),
        }
    });
    pb.finish_and_clear();
    let answers: Option<Vec<A>> = got.into_iter().collect();
    let (Some(answers), None) = (answers, failed.first()) else {
        eprintln!(
            "error: {} item(s) could not be pre-labeled, the first: {}",
            failed.len().max(1),
            failed.first().map_or("(no answer)", String::as_str)
        );
        return Err(ExitCode::from(EXIT_NOTHING_LABELED));
    };
    let cached = Cached { key, answers };
    if let Some(c) = &args.cache {
        if let Err(err) = serde_json::to_vec(&cached)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(c, b))
        {
            tracing::warn!(cache = %c.display(), error = %err, "could not write the answer cache");
        }
    }
    Ok(cached.answers)
}
