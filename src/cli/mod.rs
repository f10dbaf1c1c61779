//! Command-line interface: argument parsing and the subcommands.
//!
//! Exit codes (also in README.md):
//! - 0: success (for `label`: at least one item was labeled);
//! - 1: nothing could be labeled;
//! - 2: bad usage (unknown flag, missing argument);
//! - 3: the model or the ONNX Runtime library could not be loaded;
//! - 4: the output could not be written;
//! - 5: the database could not be opened.

mod inputs;
mod label;
mod labelstudio;
mod models;
mod screen;
mod serve;
mod simulate;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit code: nothing could be labeled.
pub const EXIT_NOTHING_LABELED: u8 = 1;
/// Exit code: the model (or ONNX Runtime) failed to load.
pub const EXIT_MODEL_LOAD: u8 = 3;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: writing the output failed.
pub const EXIT_OUTPUT: u8 = 4;
/// Exit code: the database could not be opened.
pub const EXIT_STORE: u8 = 5;

#[derive(Parser, Debug)]
#[command(
    name = "labelloop",
    version,
    about = "Model-assisted auto-labeling: pre-label with ONNX models, route uncertain items to people, learn from corrections."
)]
pub struct Cli {
    /// Only print warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pre-label images or texts with a model; writes one JSON line per item.
    Label(label::LabelArgs),
    /// List or check model folders.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Run the HTTP service: projects, items, jobs, predictions.
    Serve(serve::ServeArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (the one `/v1/openapi.json` serves).
    Openapi,
    /// Screen a JSONL file for duplicates, outliers, leaks, bad items and personal data.
    Screen(screen::ScreenArgs),
    /// Replay the loop on data whose truth is known: active learning and
    /// calibration (--data), boxes (--coco), speech segments (--segments) or OCR lines (--lines).
    /// Boxed: its many flags would make every other command as large.
    Simulate(Box<simulate::SimulateArgs>),
    /// Label Studio: bulk pre-annotation of a Label Studio project.
    Labelstudio {
        #[command(subcommand)]
        command: labelstudio::LabelStudioCommand,
    },
    /// Manage API tokens.
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
}

/// Where model folders live unless `--models-dir` says otherwise.
pub fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}

pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.quiet);
    match cli.command {
        Command::Label(args) => label::run(args),
        Command::Models { command } => models::run(command),
        Command::Serve(args) => match matches.subcommand_matches("serve") {
            Some(serve_matches) => serve::run(args, serve_matches),
            None => ExitCode::from(EXIT_USAGE),
        },
        Command::Openapi => match serde_json::to_string_pretty(&crate::api::openapi_document()) {
            Ok(doc) => {
                println!("{doc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the OpenAPI document: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Screen(args) => screen::run(args),
        Command::Simulate(args) => simulate::run(*args),
        Command::Tokens { command } => tokens::run(command),
        Command::Labelstudio { command } => labelstudio::run(command),
    }
}

fn init_tracing(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_env("LABELLOOP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (logs
/// and pipes get no control characters). Shared by every long subcommand.
pub(crate) fn progress_bar(total: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let pb = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Where a subcommand writes its JSONL: the `--out` file (created, buffered)
/// or standard output. A file that cannot be created is reported and exits
/// with [`EXIT_OUTPUT`].
pub(crate) fn open_output(
    path: Option<&std::path::Path>,
) -> Result<Box<dyn std::io::Write>, ExitCode> {
    match path {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Ok(Box::new(std::io::BufWriter::new(f))),
            Err(e) => {
                eprintln!("error: cannot create {}: {e}", path.display());
                Err(ExitCode::from(EXIT_OUTPUT))
            }
        },
        None => Ok(Box::new(std::io::BufWriter::new(std::io::stdout().lock()))),
    }
}
