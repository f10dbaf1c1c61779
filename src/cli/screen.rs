//! `labelloop screen`: duplicates, outliers, leaks, bad items and personal
//! data in a JSONL file, before anyone labels it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{EXIT_MODEL_LOAD, EXIT_NOTHING_LABELED, EXIT_OUTPUT, EXIT_USAGE};
use crate::model::pipeline::{self, PipelineOptions};
use crate::model::{registry, Input, LoadOptions, Model};
use crate::runtime::SessionOptions;
use crate::screen::image_near::ImageNearOptions;
use crate::screen::outliers::OutlierOptions;
use crate::screen::report::{self, Content, Of, ScreenItem, ScreenOptions, Stages};
use crate::screen::text_near::TextNearOptions;

#[derive(Args, Debug)]
pub struct ScreenArgs {
    /// Model that embeds the items (a folder, or a name under --models-dir):
    /// the image classifier's embedding output, or a text-embedding model.
    #[arg(long, short)]
    model: String,
    /// JSONL file of {"id", "text"|"image", "label"?, "split"?} (image paths
    /// relative to the file's folder).
    #[arg(required = true)]
    data: PathBuf,
    /// Reference items in the same format (for example the training set):
    /// outliers are tested against it (conformal, rate ≤ α) and leaks are
    /// copies of its items. Without it, outliers use Datalab's within-pool
    /// rule and leaks are looked for between splits.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Write one JSON line per flagged item here (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Write the summary (counts, thresholds, seconds per stage) as JSON here.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Write every item's outlier score (the raw k-NN distance; flagged above
    /// the summary's threshold) as JSONL {"id", "outlier_score"} here.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// False-positive rate of the outlier test, in (0, 0.5].
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// Neighbours behind the outlier score.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Character 5-gram Jaccard similarity at or above which texts are near duplicates.
    #[arg(long, default_value_t = TextNearOptions::default().threshold)]
    text_threshold: f64,
    /// Shifted pixel correlation at or above which images are near duplicates.
    #[arg(long, default_value_t = ImageNearOptions::default().threshold)]
    image_threshold: f64,
    /// Without --reference, items of other splits are checked for leaks against this split.
    #[arg(long, default_value = "train")]
    train_split: String,
    /// Items per model run.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Threads (ONNX Runtime and the screen; default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Folder that holds model folders, for --model given as a name.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Take the items' embeddings from this .npy file (float32 or float64,
    /// one row per readable input line, in order) instead of running the
    /// model: the speed comparison feeds Datalab and this screen the same
    /// file. Not with --reference.
    #[arg(long, conflicts_with = "reference")]
    embeddings: Option<PathBuf>,
    /// Run only these detectors: a comma list of exact, near, outliers,
    /// leaks, quality (default: all).
    #[arg(long, default_value = "all")]
    only: String,
}

/// Read a 2-D little-endian float32/float64 C-order .npy array as rows.
fn read_npy(path: &Path) -> Result<(Vec<f32>, usize, usize), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |why: &str| format!("{} is not a 2-D float .npy array: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("short header"))?;
    let width = if header.contains("'<f4'") {
        4
    } else if header.contains("'<f8'") {
        8
    } else {
        return Err(bad("dtype must be <f4 or <f8"));
    };
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran order"));
    }
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .map(|r| r.trim().trim_start_matches('('))
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>().map_err(|_| bad("shape")))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad("not 2-D"));
    };
    let body = &bytes[start + hlen..];
    if cols == 0 || rows.checked_mul(cols).and_then(|c| c.checked_mul(width)) != Some(body.len()) {
        return Err(bad("size does not match the shape"));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()
    };
    Ok((data, rows, cols))
}

#[derive(Deserialize)]
struct Line {
    id: Option<serde_json::Value>,
    text: Option<String>,
    image: Option<String>,
    split: Option<String>,
}

/// A line as read: its id, split and input (or why it cannot be screened).
struct Raw {
    id: String,
    split: Option<String>,
    input: Result<RawInput, String>,
}

enum RawInput {
    Text(String),
    Image(Vec<u8>),
}

fn read_jsonl(path: &Path) -> std::io::Result<Vec<Raw>> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    Ok(lines
        .par_iter()
        .map(|&(n, line)| {
            let fallback = format!("{}:{}", path.display(), n + 1);
            let parsed: Line = match serde_json::from_str(line) {
                Ok(l) => l,
                Err(e) => {
                    return Raw {
                        id: fallback,
                        split: None,
                        input: Err(format!("line {}: malformed JSON: {e}", n + 1)),
                    }
                }
            };
            let id = match parsed.id {
                Some(serde_json::Value::String(s)) => s,
                Some(serde_json::Value::Number(v)) => v.to_string(),
                _ => fallback,
            };
            let input = match (parsed.text, parsed.image) {
                (Some(t), None) => Ok(RawInput::Text(t)),
                (None, Some(img)) => {
                    let p = PathBuf::from(&img);
                    let p = if p.is_absolute() { p } else { base.join(p) };
                    match std::fs::read(&p) {
                        Ok(b) if b.is_empty() => Err(format!("{}: empty file", p.display())),
                        Ok(b) => Ok(RawInput::Image(b)),
                        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
                    }
                }
                _ => Err(format!(
                    "line {}: needs exactly one of \"text\" and \"image\"",
                    n + 1
                )),
            };
            Raw {
                id,
                split: parsed.split,
                input,
            }
        })
        .collect())
}

/// A decoded line: its id, what the screen reads, what the model reads.
type Decoded = (String, ScreenItem, Input);
/// A line that could not be read: its id and why.
type Unreadable = (String, String);
/// A file's ids, its items, and the lines that could not be read.
type Loaded = (Vec<String>, Vec<ScreenItem>, Vec<Unreadable>);

/// Decode every line; lines that fail are returned as (id, reason).
fn decode(raw: Vec<Raw>) -> (Vec<Decoded>, Vec<Unreadable>) {
    let results: Vec<Result<Decoded, Unreadable>> = raw
        .into_par_iter()
        .map(|r| {
            let input = r.input.map_err(|e| (r.id.clone(), e))?;
            let (content, model_input) = match input {
                RawInput::Text(t) => (Content::Text(t.clone()), Input::Text(t)),
                RawInput::Image(bytes) => {
                    let c = report::decode_image(&bytes)
                        .map_err(|e| (r.id.clone(), format!("image could not be decoded: {e}")))?;
                    (c, Input::Image(bytes))
                }
            };
            Ok((
                r.id,
                ScreenItem {
                    content,
                    embedding: None,
                    split: r.split,
                },
                model_input,
            ))
        })
        .collect();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(x) => ok.push(x),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

/// Embed items in place; returns how many failed (their embedding stays None).
fn embed(
    model: &Model,
    items: &mut [ScreenItem],
    inputs: Vec<Input>,
    batch: usize,
    threads: usize,
) -> usize {
    let total = items.len() as u64;
    let progress = super::progress_bar(
        total,
        "{spinner} embedding {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    );
    let mut failed = 0;
    let opts = PipelineOptions {
        batch_size: batch.max(1),
        workers: threads,
        runners: 1,
        ..PipelineOptions::default()
    };
    pipeline::label_all(model, inputs.into_iter().map(Ok).collect(), opts, |i, r| {
        progress.inc(1);
        match r {
            Ok(p) => items[i].embedding = p.embedding,
            Err(e) => {
                tracing::warn!(error = %e, "embedding an item failed");
                failed += 1
            }
        }
    });
    progress.finish_and_clear();
    failed
}

#[derive(Serialize)]
struct IssueLine<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    of: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    spans: &'a [(usize, usize)],
}

#[derive(Serialize)]
struct ItemLine<'a> {
    id: &'a str,
    issues: Vec<IssueLine<'a>>,
}

#[derive(Serialize)]
struct RejectedLine<'a> {
    id: &'a str,
    error: &'a str,
    code: &'static str,
}

pub fn run(args: ScreenArgs) -> ExitCode {
    let opts = ScreenOptions {
        outliers: OutlierOptions {
            k: args.k,
            alpha: args.alpha,
        },
        text: TextNearOptions {
            threshold: args.text_threshold,
            ..TextNearOptions::default()
        },
        image: ImageNearOptions {
            threshold: args.image_threshold,
            ..ImageNearOptions::default()
        },
        train_split: args.train_split.clone(),
        stages: match Stages::parse(&args.only) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: --only: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    if let Err(e) = crate::screen::outliers::check_alpha(args.alpha) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let given = match args.embeddings.as_deref().map(read_npy).transpose() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: --embeddings: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = args.threads.unwrap_or(cores).max(1);
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        tracing::debug!(%e, "rayon's pool was already set up");
    }
    let dir = registry::resolve(&args.model, &args.models_dir);
    let model = if given.is_some() {
        None
    } else {
        match Model::load(
            &dir,
            LoadOptions {
                session: SessionOptions {
                    intra_threads: threads,
                    spinning: false,
                },
                sessions: 1,
                embeddings: true,
                ..LoadOptions::default()
            },
        ) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_MODEL_LOAD);
            }
        }
    };
    let model_name = match (&model, &args.embeddings) {
        (Some(m), _) => m.name().to_string(),
        (None, Some(p)) => format!("embeddings from {}", p.display()),
        (None, None) => args.model.clone(),
    };

    let started = Instant::now();
    let load = |path: &Path| -> Result<Loaded, ExitCode> {
        let raw = read_jsonl(path).map_err(|e| {
            eprintln!("error: cannot read {}: {e}", path.display());
            ExitCode::from(EXIT_NOTHING_LABELED)
        })?;
        let (ok, failed) = decode(raw);
        let (mut ids, mut items, mut inputs) = (Vec::new(), Vec::new(), Vec::new());
        for (id, item, input) in ok {
            ids.push(id);
            items.push(item);
            inputs.push(input);
        }
        let bad = match (&model, &given) {
            (Some(model), _) => embed(model, &mut items, inputs, args.batch_size, threads),
            (None, Some((data, rows, cols))) => {
                if *rows != items.len() {
                    eprintln!(
                        "error: --embeddings holds {rows} rows for {} readable items of {}",
                        items.len(),
                        path.display()
                    );
                    return Err(ExitCode::from(EXIT_USAGE));
                }
                for (it, row) in items.iter_mut().zip(data.chunks_exact(*cols)) {
                    it.embedding = Some(row.to_vec());
                }
                0
            }
            (None, None) => items.len(),
        };
        if bad > 0 || items.iter().any(|i| i.embedding.is_none()) {
            eprintln!(
                "error: {} gives no embedding for {} of {} items of {}; screening needs a model with an embedding output",
                model_name,
                items.iter().filter(|i| i.embedding.is_none()).count(),
                items.len(),
                path.display()
            );
            return Err(ExitCode::from(EXIT_MODEL_LOAD));
        }
        Ok((ids, items, failed))
    };
    let (ids, items, rejected) = match load(&args.data) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let reference = match &args.reference {
        Some(p) => match load(p) {
            Ok((rids, ritems, rrej)) => {
                if !rrej.is_empty() {
                    tracing::warn!(
                        count = rrej.len(),
                        "reference items that could not be read were left out"
                    );
                }
                Some((rids, ritems))
            }
            Err(code) => return code,
        },
        None => None,
    };
    let embed_secs = started.elapsed().as_secs_f64();
    if items.is_empty() {
        eprintln!(
            "error: {} holds no item that could be read",
            args.data.display()
        );
        return ExitCode::from(EXIT_NOTHING_LABELED);
    }

    let t = Instant::now();
    let report = match report::screen(&items, reference.as_ref().map(|r| r.1.as_slice()), &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let screen_secs = t.elapsed().as_secs_f64();

    let mut out = match super::open_output(args.out.as_deref()) {
        Ok(out) => out,
        Err(code) => return code,
    };
    let name_of = |of: &Of| -> &str {
        match of {
            Of::Item(i) => &ids[*i],
            Of::Reference(i) => reference.as_ref().map_or("", |r| r.0[*i].as_str()),
        }
    };
    let mut flagged = 0usize;
    let mut written: std::io::Result<()> = Ok(());
    for (i, issues) in report.issues.iter().enumerate() {
        if issues.is_empty() || written.is_err() {
            continue;
        }
        flagged += 1;
        let line = ItemLine {
            id: &ids[i],
            issues: issues
                .iter()
                .map(|is| IssueLine {
                    kind: &is.kind,
                    score: (is.score * 1e6).round() / 1e6,
                    group: is.group,
                    of: is.of.as_ref().map(name_of),
                    spans: &is.spans,
                })
                .collect(),
        };
        written = serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"));
    }
    for (id, error) in &rejected {
        if written.is_err() {
            break;
        }
        written = serde_json::to_writer(
            &mut out,
            &RejectedLine {
                id,
                error,
                code: "unreadable",
            },
        )
        .map_err(std::io::Error::from)
        .and_then(|_| out.write_all(b"\n"));
    }
    if let Err(e) = written.and_then(|_| out.flush()) {
        eprintln!("error: writing the issues failed: {e}");
        return ExitCode::from(EXIT_OUTPUT);
    }

    if let (Some(p), Some(raw)) = (&args.scores, &report.outlier_raw) {
        let mut text = String::new();
        for (id, v) in ids.iter().zip(raw) {
            text.push_str(&serde_json::json!({"id": id, "outlier_score": v}).to_string());
            text.push('\n');
        }
        if let Err(e) = std::fs::write(p, text) {
            eprintln!("error: cannot write {}: {e}", p.display());
            return ExitCode::from(EXIT_OUTPUT);
        }
    }
    let s = &report.summary;
    let mut summary = serde_json::to_value(s).unwrap_or_default();
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("flagged".into(), flagged.into());
        obj.insert("rejected".into(), rejected.len().into());
        obj.insert("model".into(), model_name.clone().into());
        obj.insert("read_and_embed_seconds".into(), embed_secs.into());
        obj.insert("screen_seconds".into(), screen_secs.into());
    }
    if let Some(p) = &args.summary {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = std::fs::write(p, text) {
            eprintln!("error: cannot write {}: {e}", p.display());
            return ExitCode::from(EXIT_OUTPUT);
        }
    }
    eprintln!(
        "screened {} items with {} in {screen_secs:.2}s (reading and embedding {embed_secs:.2}s): {flagged} flagged, {} unreadable",
        s.items,
        model_name,
        rejected.len()
    );
    eprintln!(
        "  exact duplicates: {} groups over {} rows; near duplicates: {} groups over {} rows",
        s.exact_groups, s.exact_rows, s.near_groups, s.near_rows
    );
    match (&s.outlier_method, s.outlier_threshold) {
        (Some(crate::screen::outliers::OutlierMethod::Conformal { reference, alpha }), Some(t)) => eprintln!(
            "  outliers: conformal k-NN test against {reference} reference items, alpha {alpha}, threshold {t:.4} (k = {})",
            args.k
        ),
        (Some(_), Some(t)) => eprintln!(
            "  outliers: no reference, so Datalab's within-pool rule (mean {}-NN distance above Q3 + 1.7 IQR = {t:.4}); no error rate is promised",
            args.k
        ),
        _ => {}
    }
    let counts: BTreeMap<&String, &usize> = s.counts.iter().collect();
    for (kind, n) in counts {
        eprintln!("  {kind}: {n}");
    }
    ExitCode::SUCCESS
}
