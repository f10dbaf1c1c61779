//! `labelloop simulate`: replay the active-learning loop on labeled data.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::inputs;
use super::{EXIT_MODEL_LOAD, EXIT_NOTHING_LABELED, EXIT_OUTPUT, EXIT_USAGE};
use crate::model::manifest::OutputKind;
use crate::model::pipeline::{self, PipelineOptions};
use crate::model::{registry, LoadOptions, Model};
use crate::runtime::SessionOptions;
use crate::select::strategies::Strategy;
use crate::simulate::{self, Dataset, SimOptions};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// JSONL of {"id", "text"|"image", "label"}: the true labels the simulated annotator gives.
    #[arg(long)]
    data: PathBuf,
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
    /// Auto-accept threshold for the coverage/precision columns.
    #[arg(long, default_value_t = 0.9)]
    threshold: f32,
    /// Bootstrap heads for vote-entropy and mean-kl.
    #[arg(long, default_value_t = 3)]
    committee: usize,
    /// ONNX Runtime intra-op threads.
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
}

fn bar(total: u64, template: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub fn run(args: SimulateArgs) -> ExitCode {
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
    let items = inputs::expand(std::slice::from_ref(&args.data));
    let mut label_names: Vec<String> = items.iter().filter_map(|i| i.truth.clone()).collect();
    label_names.sort();
    label_names.dedup();
    if label_names.len() < 2 {
        eprintln!(
            "error: {} needs a \"label\" on each line, with at least two distinct labels",
            args.data.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let truths: Vec<Option<usize>> = items
        .iter()
        .map(|i| {
            i.truth
                .as_ref()
                .and_then(|t| label_names.iter().position(|l| l == t))
        })
        .collect();
    let inputs: Vec<_> = items.into_iter().map(|i| i.input).collect();
    let pb = bar(
        inputs.len() as u64,
        "embedding {wide_bar} {pos}/{len} ({per_sec})",
    );
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut dim = 0;
    let mut failed = 0usize;
    pipeline::label_all(&model, inputs, PipelineOptions::default(), |i, r| {
        pb.inc(1);
        match (r, truths[i]) {
            (Ok(pred), Some(label)) => match pred.embedding {
                Some(e) if dim == 0 || e.len() == dim => {
                    dim = e.len();
                    x.extend_from_slice(&e);
                    y.push(label);
                }
                _ => failed += 1,
            },
            _ => failed += 1,
        }
    });
    pb.finish_and_clear();
    if y.is_empty() {
        eprintln!("error: no item could be embedded");
        return ExitCode::from(EXIT_NOTHING_LABELED);
    }
    if failed > 0 {
        tracing::warn!(
            failed,
            "items without a label or an embedding were left out"
        );
    }
    let data = Dataset {
        x,
        dim,
        y,
        labels: label_names,
    };
    let opts = SimOptions {
        strategies: strategies.clone(),
        seed_size: args.seed_size,
        batch: args.batch,
        rounds: args.rounds,
        seed: args.seed,
        test_every: args.test_every,
        threshold: args.threshold,
        committee: args.committee,
    };
    let pb = bar(
        (strategies.len() * (args.rounds + 1)) as u64,
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
        args.data
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        report.items,
        report.test
    );
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(
            args.out.join("simulation.json"),
            serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(
            args.out.join("simulation.svg"),
            simulate::svg_plot(&report, &title)?,
        )
    };
    if let Err(e) = write() {
        eprintln!("error: writing {}: {e}", args.out.display());
        return ExitCode::from(EXIT_OUTPUT);
    }
    println!("{title}");
    println!("| strategy | final labels | final accuracy | labels to reach random's final | savings | auto-accept coverage / precision |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &report.results {
        if let Some(last) = r.rounds.last() {
            println!(
                "| {} | {} | {:.4} | {} | {} | {:.3} / {:.3} |",
                r.strategy,
                last.labels,
                last.accuracy,
                r.labels_to_match_random
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "—".into()),
                r.label_savings
                    .map(|s| format!("{:.0}%", s * 100.0))
                    .unwrap_or_else(|| "—".into()),
                last.auto_coverage,
                last.auto_precision
            );
        }
    }
    eprintln!(
        "wrote {0}/simulation.json and {0}/simulation.svg",
        args.out.display()
    );
    ExitCode::SUCCESS
}
