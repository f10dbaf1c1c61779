//! `labelloop simulate`: replay the whole loop on labeled data (selection,
//! audit, calibration, drift, label errors) against a simulated annotator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

mod boxes;
mod cache;
mod lines;
mod screened;
mod segments;

use super::inputs;
use super::{EXIT_MODEL_LOAD, EXIT_NOTHING_LABELED, EXIT_OUTPUT, EXIT_USAGE};
use crate::calibrate::Method;
use crate::learn::zero_shot;
use crate::model::manifest::OutputKind;
use crate::model::pipeline::{self, PipelineOptions};
use crate::model::Input;
use crate::model::{registry, LoadOptions, Model};
use crate::runtime::SessionOptions;
use crate::select::strategies::Strategy;
use crate::service::calibration::{validate, validate_target};
use crate::simulate::{self, Dataset, Predictor, SimOptions};
use crate::store::{ProjectSettings, DEFAULT_CALIBRATE_EVERY};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// JSONL of {"id", "text"|"image", "label"}: the true labels the simulated annotator gives.
    #[arg(long, required_unless_present_any = ["coco", "segments", "lines"])]
    data: Option<PathBuf>,
    /// Detection: a COCO instances file (the true boxes the simulated
    /// annotator returns); its images' `file_name`s are read below --images.
    #[arg(long, conflicts_with = "data")]
    coco: Option<PathBuf>,
    /// Detection: the folder the COCO `file_name`s are relative to
    /// (default: the instances file's folder).
    #[arg(long, requires = "coco")]
    images: Option<PathBuf>,
    /// Speech: JSONL of {"id", "audio": path, "segments": [[start, end], …]}:
    /// each recording and its true speech segments in seconds (what
    /// `scripts/make_calls.py` writes as truth.jsonl). Paths are relative to
    /// the file's folder. Needs a voice-activity --model.
    #[arg(long, conflicts_with_all = ["data", "coco"])]
    segments: Option<PathBuf>,
    /// OCR: a lines.json of rendered pages, `{"pages": [{"id": image path,
    /// "lines": [{"text", "box": [x0, y0, x1, y1]}, …]}, …]}` (what
    /// scripts/setup.sh writes under data/ocr-pages). Image paths are
    /// relative to the file's folder. Needs an OCR --model.
    #[arg(long, conflicts_with_all = ["data", "coco", "segments"])]
    lines: Option<PathBuf>,
    /// Detection and speech: audit images or recordings (overrides
    /// --audit-rate, whose default is 0.3 for both).
    #[arg(long)]
    audit_images: Option<usize>,
    /// Detection and speech: IoU a box (segment) needs with a human one of its class to count as correct, in (0, 1].
    #[arg(long, default_value_t = 0.5)]
    iou: f64,
    /// Detection: shared (one fixed sequence at δ over one threshold for all
    /// classes) or per-class (one scan per class at δ / K).
    #[arg(long, default_value = "shared")]
    design: String,
    /// Detection: the p-value each candidate is tested with: betting or hoeffding-bentkus.
    #[arg(long, default_value = "betting")]
    bound: String,
    /// Model folder or name; it must declare an embedding output (the head learns on it).
    #[arg(long, short)]
    model: String,
    /// Strategies, comma-separated: random, least-confidence, margin, entropy,
    /// vote-entropy, mean-kl, k-center, cluster-margin. Random is always added as the baseline.
    #[arg(long, default_value = "margin,entropy,k-center,cluster-margin")]
    strategy: String,
    /// Labels in the seed set (the same random draw for every strategy).
    #[arg(long, default_value_t = 20)]
    seed_size: usize,
    /// Labels added per round.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Where simulation.json and simulation.svg go.
    #[arg(long, default_value = "simulation")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Every Nth item is held out for measuring accuracy.
    #[arg(long, default_value_t = 5)]
    test_every: usize,
    /// An explicit fixed auto-accept threshold on raw scores before the
    /// first audit label, with no guarantee (as a project's explicit fixed
    /// threshold); unset (the default): nothing accepted before the first fit.
    #[arg(long)]
    threshold: Option<f32>,
    /// What scores the items: head (trained on the human labels), model (the
    /// model's own classifier output) or zero-shot (similarity to the label
    /// names or --label-descriptions).
    #[arg(long, default_value = "head")]
    predictor: String,
    /// Shorthand for --predictor zero-shot.
    #[arg(long)]
    zero_shot: bool,
    /// JSON object {label: short description} embedded for zero-shot in place of the names.
    #[arg(long)]
    label_descriptions: Option<PathBuf>,
    /// Precision the auto-accepted items must reach, in (0, 1).
    #[arg(long, default_value_t = 0.95)]
    target: f64,
    /// Allowed probability of missing the target, in (0, 0.5].
    #[arg(long, default_value_t = 0.05)]
    delta: f64,
    /// Threshold method, as the project setting names it: global, per-class
    /// or pooled (class curves from the review labels, one scan at δ).
    #[arg(long, default_value = "global")]
    method: String,
    /// How audit items are drawn: uniform (once, without replacement) or ipw
    /// (each round, favouring items that could pass a threshold, weighted
    /// back by their stored probabilities; thresholds by the betting test,
    /// ordered as pooled orders them).
    #[arg(long, default_value = "uniform")]
    audit_design: String,
    /// ipw and proportional review: the share of each draw spread uniformly
    /// over all eligible items, in [0, 1].
    #[arg(long, default_value_t = 0.2)]
    uniform_share: f64,
    /// How review batches are chosen: top-k (the strategy's ranking, strictly;
    /// these labels never count towards the bound) or proportional (drawn
    /// with probability proportional to the model's chance of being wrong,
    /// plus --uniform-share spread over every unlabeled item; with
    /// --audit-design ipw their labels count towards the bound).
    #[arg(long, default_value = "top-k")]
    review_sampling: String,
    /// Share of the pool drawn into the uniform audit sample, in [0, 1]
    /// (default 0.05; for detection, of the images, default 0.3).
    #[arg(long)]
    audit_rate: Option<f64>,
    /// Size of the audit sample (overrides --audit-rate).
    #[arg(long)]
    audit_labels: Option<usize>,
    /// Audit labels answered per round (default: the whole sample in the first round).
    #[arg(long)]
    audit_per_round: Option<usize>,
    /// --audit-design ipw: stop auditing once a round's audit draws raise
    /// the auto-accepted coverage by less than this, in [0, 1] (the betting
    /// test is anytime valid, so stopping costs no validity); --audit-labels
    /// stays the cap. Unset: audit up to the cap.
    #[arg(long)]
    audit_stop_gain: Option<f64>,
    /// Refit after this many new audit labels (0: only on the first round and after head retrains).
    #[arg(long, default_value_t = DEFAULT_CALIBRATE_EVERY as usize)]
    calibrate_every: usize,
    /// From this round on, the annotator's truth for the --drift-swap classes is swapped.
    #[arg(long)]
    drift_at: Option<usize>,
    /// Two labels, comma-separated: the guideline change at --drift-at.
    #[arg(long)]
    drift_swap: Option<String>,
    /// The annotator answers a uniformly random wrong label at this rate, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// Keep going until every pool item is human-labeled or auto-accepted.
    #[arg(long)]
    finish: bool,
    /// Runs with seeds --seed, --seed + 1, …, on the same embeddings.
    #[arg(long, default_value_t = 1)]
    seeds: usize,
    /// Cache of the embeddings (and model probabilities): read when it
    /// matches the model and data, written otherwise.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Bootstrap heads for vote-entropy and mean-kl.
    #[arg(long, default_value_t = 3)]
    committee: usize,
    /// ONNX Runtime intra-op threads.
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Text data: run the loop twice on the same embeddings and seeds, over
    /// every row and over the representatives of the exact and near
    /// duplicate groups (labels propagated to the groups); writes
    /// screening.json. Needs --finish.
    #[arg(long, requires = "finish")]
    screen: bool,
}

/// A usage error naming the flag: exit code 2.
fn usage(flag: &str, why: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {flag}: {why}");
    ExitCode::from(EXIT_USAGE)
}

/// The calibration flags, checked by the service's own validators (the
/// same bounds a project's settings have), before anything is loaded.
fn check_flags(args: &SimulateArgs) -> Result<(Predictor, Method), ExitCode> {
    validate_target(args.target).map_err(|e| usage("--target", e.message))?;
    let settings = |s: ProjectSettings| validate(&s);
    settings(ProjectSettings {
        delta: Some(args.delta),
        ..ProjectSettings::default()
    })
    .map_err(|e| usage("--delta", e.message))?;
    settings(ProjectSettings {
        audit_rate: Some(args.audit_rate.unwrap_or(CLASSIFY_AUDIT_RATE)),
        ..ProjectSettings::default()
    })
    .map_err(|e| usage("--audit-rate", e.message))?;
    settings(ProjectSettings {
        threshold_method: Some(args.method.clone()),
        ..ProjectSettings::default()
    })
    .map_err(|e| usage("--method", e.message))?;
    let method = match args.method.as_str() {
        "per-class" => Method::PerClass,
        "pooled" => Method::Pooled,
        _ => Method::Global,
    };
    if let Err(e) = crate::calibrate::ipw::uniform_share_check(args.uniform_share) {
        return Err(usage("--uniform-share", e));
    }
    if !matches!(args.review_sampling.as_str(), "top-k" | "proportional") {
        return Err(usage(
            "--review-sampling",
            format!(
                "{:?} is not one of top-k, proportional",
                args.review_sampling
            ),
        ));
    }
    if !matches!(args.audit_design.as_str(), "uniform" | "ipw") {
        return Err(usage(
            "--audit-design",
            format!("{:?} is not one of uniform, ipw", args.audit_design),
        ));
    }
    if let Some(t) = args.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(usage("--threshold", format!("{t} is not in [0, 1]")));
        }
    }
    if !(args.noise.is_finite() && (0.0..1.0).contains(&args.noise)) {
        return Err(usage("--noise", format!("{} is not in [0, 1)", args.noise)));
    }
    if args.seeds == 0 || args.seeds > 1000 {
        return Err(usage(
            "--seeds",
            format!("{} is not in [1, 1000]", args.seeds),
        ));
    }
    if let Some(g) = args.audit_stop_gain {
        if !(g.is_finite() && (0.0..=1.0).contains(&g)) {
            return Err(usage("--audit-stop-gain", format!("{g} is not in [0, 1]")));
        }
        if args.audit_design != "ipw" {
            return Err(usage(
                "--audit-stop-gain",
                "needs --audit-design ipw (only its test may stop whenever it likes)",
            ));
        }
    }
    if args.audit_per_round == Some(0) {
        return Err(usage("--audit-per-round", "must be at least 1"));
    }
    if args.drift_at.is_some() != args.drift_swap.is_some() {
        return Err(usage(
            "--drift-swap",
            "--drift-at and --drift-swap go together",
        ));
    }
    let predictor = if args.zero_shot {
        Predictor::ZeroShot
    } else {
        Predictor::parse(&args.predictor).ok_or_else(|| {
            usage(
                "--predictor",
                format!("{:?} is not one of head, model, zero-shot", args.predictor),
            )
        })?
    };
    Ok((predictor, method))
}

/// `A,B` into two distinct label indices.
fn drift_swap(spec: &str, labels: &[String]) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let [a, b] = parts.as_slice() else {
        return Err(format!("{spec:?} is not two labels A,B"));
    };
    let find = |l: &str| {
        labels
            .iter()
            .position(|x| x == l)
            .ok_or_else(|| format!("{l:?} is not in the label set ({})", labels.join(", ")))
    };
    let (a, b) = (find(a)?, find(b)?);
    if a == b {
        return Err("the two labels must differ".into());
    }
    Ok((a, b))
}

/// Embeddings and model probabilities as read from the model, or from the cache.
#[derive(serde::Serialize, serde::Deserialize)]
struct Embedded {
    key: String,
    ids: Vec<String>,
    dim: usize,
    x: Vec<f32>,
    y: Vec<usize>,
    /// n × labels, in the data's label order.
    probs: Option<Vec<f32>>,
}

/// Embed `texts` with the model (for zero-shot prototypes).
fn embed_texts(model: &Model, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String> {
    let n = texts.len();
    let inputs: Vec<_> = texts.into_iter().map(|t| Ok(Input::Text(t))).collect();
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    pipeline::label_all(model, inputs, PipelineOptions::default(), |i, r| {
        if let Ok(p) = r {
            out[i] = p.embedding;
        }
    });
    out.into_iter()
        .enumerate()
        .map(|(i, e)| e.ok_or_else(|| format!("label text {i} could not be embedded")))
        .collect()
}

/// `--audit-rate`'s default for classification.
const CLASSIFY_AUDIT_RATE: f64 = 0.05;

pub fn run(args: SimulateArgs) -> ExitCode {
    if args.coco.is_some() {
        return boxes::run(args);
    }
    if args.segments.is_some() {
        return segments::run(args);
    }
    if args.lines.is_some() {
        return lines::run(args);
    }
    let Some(data_path) = args.data.clone() else {
        return usage(
            "--data",
            "is required (or --coco for detection, --segments for speech, --lines for OCR)",
        );
    };
    if args.audit_images.is_some() {
        return usage(
            "--audit-images",
            "is for --coco, --segments and --lines; classification audits at --audit-rate",
        );
    }
    let (predictor, method) = match check_flags(&args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut strategies = vec![Strategy::Random];
    for name in args
        .strategy
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match Strategy::parse(name) {
            Some(Strategy::Random) => {}
            Some(s) if !strategies.contains(&s) => strategies.push(s),
            Some(_) => {}
            None => {
                let all: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
                eprintln!(
                    "error: unknown strategy {name:?}; use one of {}",
                    all.join(", ")
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let items = inputs::expand(std::slice::from_ref(&data_path));
    let mut label_names: Vec<String> = items.iter().filter_map(|i| i.truth.clone()).collect();
    label_names.sort();
    label_names.dedup();
    if label_names.len() < 2 {
        eprintln!(
            "error: {} needs a \"label\" on each line, with at least two distinct labels",
            data_path.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let swap = match args
        .drift_swap
        .as_deref()
        .map(|s| drift_swap(s, &label_names))
    {
        Some(Err(e)) => return usage("--drift-swap", e),
        Some(Ok(x)) => Some(x),
        None => None,
    };
    // Zero-shot texts: a description per label, or the bare name.
    let descriptions: Option<std::collections::BTreeMap<String, String>> = match &args
        .label_descriptions
    {
        None => None,
        Some(path) => {
            let parsed = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(m) => Some(m),
                Err(e) => return usage("--label-descriptions", format!("{}: {e}", path.display())),
            }
        }
    };
    if let Some(d) = &descriptions {
        if let Some(unknown) = d.keys().find(|k| !label_names.contains(k)) {
            return usage(
                "--label-descriptions",
                format!(
                    "{unknown:?} is not in the label set ({})",
                    label_names.join(", ")
                ),
            );
        }
    }
    let dir = registry::resolve(&args.model, &args.models_dir);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = match Model::load(
        &dir,
        LoadOptions {
            session: SessionOptions {
                intra_threads: args.threads.unwrap_or(cores),
                spinning: false,
            },
            embeddings: true,
            ..LoadOptions::default()
        },
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_MODEL_LOAD);
        }
    };
    if !model
        .manifest()
        .outputs
        .iter()
        .any(|o| o.kind == OutputKind::Embedding)
    {
        eprintln!(
            "error: model {} declares no embedding output; the head learns on embeddings (add one to its model.toml)",
            model.name()
        );
        return ExitCode::from(EXIT_MODEL_LOAD);
    }
    // The model's label order into the data's, for --predictor model.
    let model_labels: Vec<String> = model.labels().iter().cloned().collect();
    let reorder: Option<Vec<usize>> = {
        let mut m: Vec<String> = model_labels.clone();
        m.sort();
        (m == label_names).then(|| {
            label_names
                .iter()
                .filter_map(|l| model_labels.iter().position(|x| x == l))
                .collect()
        })
    };
    if predictor == Predictor::Model && reorder.is_none() {
        return usage(
            "--predictor",
            format!(
                "model {} has labels [{}], the data [{}]: --predictor model needs the same set",
                model.name(),
                model_labels.join(", "),
                label_names.join(", ")
            ),
        );
    }
    let key = format!(
        "{}|{}|{}|{}",
        model.name(),
        model.version(),
        data_path.display(),
        items.len()
    );
    let cached: Option<Embedded> = args
        .cache
        .as_ref()
        .and_then(|c| std::fs::read(c).ok())
        .and_then(|b| serde_json::from_slice::<Embedded>(&b).ok())
        .filter(|e| e.key == key);
    let embedded = match cached {
        Some(e) => e,
        None => {
            let truths: Vec<Option<usize>> = items
                .iter()
                .map(|i| {
                    i.truth
                        .as_ref()
                        .and_then(|t| label_names.iter().position(|l| l == t))
                })
                .collect();
            let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
            let inputs: Vec<_> = items.into_iter().map(|i| i.input).collect();
            let pb = super::progress_bar(
                inputs.len() as u64,
                "embedding {wide_bar} {pos}/{len} ({per_sec})",
            );
            let k = label_names.len();
            let mut e = Embedded {
                key: key.clone(),
                ids: Vec::new(),
                dim: 0,
                x: Vec::new(),
                y: Vec::new(),
                probs: reorder.as_ref().map(|_| Vec::new()),
            };
            let mut failed = 0usize;
            pipeline::label_all(&model, inputs, PipelineOptions::default(), |i, r| {
                pb.inc(1);
                match (r, truths[i]) {
                    (Ok(pred), Some(label)) => match pred.embedding {
                        Some(v) if e.dim == 0 || v.len() == e.dim => {
                            // Model probabilities, when the label sets match.
                            if let (Some(out), Some(order)) = (e.probs.as_mut(), &reorder) {
                                match &pred.class {
                                    Some(c) if c.probs.len() == model_labels.len() => {
                                        out.extend(order.iter().map(|&j| c.probs[j]));
                                    }
                                    _ => out.extend(std::iter::repeat_n(1.0 / k as f32, k)),
                                }
                            }
                            e.dim = v.len();
                            e.x.extend_from_slice(&v);
                            e.y.push(label);
                            e.ids.push(ids[i].clone());
                        }
                        _ => failed += 1,
                    },
                    _ => failed += 1,
                }
            });
            pb.finish_and_clear();
            if failed > 0 {
                tracing::warn!(
                    failed,
                    "items without a label or an embedding were left out"
                );
            }
            if let (Some(c), false) = (&args.cache, e.y.is_empty()) {
                if let Err(err) = serde_json::to_vec(&e)
                    .map_err(std::io::Error::other)
                    .and_then(|b| std::fs::write(c, b))
                {
                    tracing::warn!(cache = %c.display(), error = %err, "could not write the embedding cache");
                }
            }
            e
        }
    };
    if embedded.y.is_empty() {
        eprintln!("error: no item could be embedded");
        return ExitCode::from(EXIT_NOTHING_LABELED);
    }
    let prototypes = if predictor == Predictor::ZeroShot {
        // The same label texts as the server's zero-shot (learn::zero_shot).
        let (owners, texts): (Vec<usize>, Vec<String>) =
            zero_shot::label_lines(&label_names, descriptions.as_ref())
                .into_iter()
                .unzip();
        let built = embed_texts(&model, texts).and_then(|rows| {
            zero_shot::prototypes_from_lines(label_names.len(), &owners, &rows)
                .map(|(p, _)| p)
                .map_err(|e| e.to_string())
        });
        match built {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_MODEL_LOAD);
            }
        }
    } else {
        None
    };
    let data = Dataset {
        ids: embedded.ids,
        x: embedded.x,
        dim: embedded.dim,
        y: embedded.y,
        labels: label_names,
        model_probs: embedded.probs,
        prototypes,
    };
    let opts = SimOptions {
        strategies: strategies.clone(),
        seed_size: args.seed_size,
        batch: args.batch,
        rounds: args.rounds,
        seed: args.seed,
        seeds: args.seeds,
        test_every: args.test_every,
        threshold: args.threshold,
        committee: args.committee,
        predictor,
        target: args.target,
        delta: args.delta,
        method,
        audit_rate: args.audit_rate.unwrap_or(CLASSIFY_AUDIT_RATE),
        audit_labels: args.audit_labels,
        audit_per_round: args.audit_per_round,
        audit_stop_gain: args.audit_stop_gain,
        calibrate_every: args.calibrate_every,
        drift_at: args.drift_at,
        drift_swap: swap,
        noise: args.noise,
        finish: args.finish,
        audit_design: if args.audit_design == "ipw" {
            simulate::AuditDesign::Ipw {
                uniform_share: args.uniform_share,
            }
        } else {
            simulate::AuditDesign::Uniform
        },
        review_sampling: if args.review_sampling == "proportional" {
            simulate::ReviewSampling::Proportional {
                uniform_share: args.uniform_share,
            }
        } else {
            simulate::ReviewSampling::TopK
        },
    };
    if args.screen {
        return screened::run(&args, &data, &opts, &data_path);
    }
    let pb = super::progress_bar(
        (args.seeds * strategies.len() * (args.rounds + 1)) as u64,
        "simulating {wide_bar} {pos}/{len} rounds {msg}",
    );
    let report = match simulate::run(&data, &opts, |s, _| {
        pb.set_message(s.as_str());
        pb.inc(1);
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    pb.finish_and_clear();
    let title = format!(
        "{} on {} ({} items, {} held out)",
        model.name(),
        data_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        report.items,
        report.test
    );
    if let Err(e) = write_outputs(&args.out, &report, &title, opts.noise > 0.0) {
        eprintln!("error: writing {}: {e}", args.out.display());
        return ExitCode::from(EXIT_OUTPUT);
    }
    print_table(&title, &report);
    eprintln!(
        "wrote {0}/simulation.json, {0}/simulation.svg and {0}/predictions-<strategy>.jsonl",
        args.out.display()
    );
    ExitCode::SUCCESS
}

fn write_outputs(
    out: &std::path::Path,
    report: &simulate::SimReport,
    title: &str,
    quality: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("simulation.json"),
        serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?,
    )?;
    std::fs::write(
        out.join("simulation.svg"),
        simulate::svg_plot(report, title)?,
    )?;
    let strategies: Vec<&str> = report.results.iter().map(|r| r.strategy.as_str()).collect();
    for name in strategies {
        let mut f = std::io::BufWriter::new(std::fs::File::create(
            out.join(format!("predictions-{name}.jsonl")),
        )?);
        let mut q = if quality {
            Some(std::io::BufWriter::new(std::fs::File::create(
                out.join(format!("label-quality-{name}.jsonl")),
            )?))
        } else {
            None
        };
        for run in &report.runs {
            for r in run.results.iter().filter(|r| r.strategy == name) {
                for row in &r.predictions {
                    serde_json::to_writer(&mut f, row).map_err(std::io::Error::other)?;
                    f.write_all(b"\n")?;
                }
                if let Some(q) = q.as_mut() {
                    for row in &r.quality_rows {
                        serde_json::to_writer(&mut *q, row).map_err(std::io::Error::other)?;
                        q.write_all(b"\n")?;
                    }
                }
            }
        }
        f.flush()?;
        if let Some(mut q) = q {
            q.flush()?;
        }
    }
    Ok(())
}

fn print_table(title: &str, report: &simulate::SimReport) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    println!("{title}");
    println!(
        "target {} at δ {}, predictor {:?}, audit sample {}, {} seed(s)",
        report.target,
        report.delta,
        report.predictor,
        report.audit_sample,
        report.runs.len()
    );
    println!("| strategy | final labels | final accuracy | labels to reach random's final | savings | audit labels | coverage / precision | bound | ECE before → after | drift alarm |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &report.results {
        if let Some(last) = r.rounds.last() {
            println!(
                "| {} | {} | {:.4} | {} | {} | {} | {:.3} / {:.3} | {} | {} → {} | {} |",
                r.strategy,
                last.labels,
                last.accuracy,
                r.labels_to_match_random
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "—".into()),
                r.label_savings
                    .map(|s| format!("{:.0}%", s * 100.0))
                    .unwrap_or_else(|| "—".into()),
                last.audit_labels,
                last.auto_coverage,
                last.auto_precision,
                opt(last.precision_bound),
                opt(last.ece_before),
                opt(last.ece_after),
                if r.alarms_at_audit.is_empty() {
                    "no".to_string()
                } else {
                    format!("at audit label {}", r.alarms_at_audit[0])
                },
            );
        }
        if let Some(f) = &r.finish {
            println!(
                "  finish ({}): human share {:.3} (seed {} + review {} + audit {} of {}), auto-accepted {}, precision {:.4}",
                r.strategy,
                f.human_share,
                f.seed_labels,
                f.review_labels,
                f.audit_labels,
                f.pool,
                f.auto_accepted,
                f.precision
            );
        }
        if let Some(q) = &r.label_quality {
            println!(
                "  suspects ({}): {} corrupted of {} human labels, precision at k {}",
                r.strategy,
                q.corrupted,
                q.human_labels,
                opt(q.precision_at_k)
            );
        }
    }
}
