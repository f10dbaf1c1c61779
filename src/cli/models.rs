//! `labelloop models`: list the model folders, or check one against its graph.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::EXIT_MODEL_LOAD;
use crate::model::manifest::InputSpec;
use crate::model::{registry, LoadOptions, Model};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the model folders under --models-dir.
    List {
        /// Folder that holds model folders.
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
    },
    /// Load a model folder and check its manifest against the ONNX graph.
    Check {
        /// The model folder (holding model.toml and the ONNX file).
        dir: PathBuf,
    },
}

pub fn run(command: ModelsCommand) -> ExitCode {
    match command {
        ModelsCommand::List { models_dir } => list(models_dir),
        ModelsCommand::Check { dir } => check(dir),
    }
}

fn list(models_dir: PathBuf) -> ExitCode {
    let entries = match registry::scan(&models_dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", models_dir.display());
            return ExitCode::from(EXIT_MODEL_LOAD);
        }
    };
    println!(
        "{:<24} {:<10} {:<22} {:>6}  status",
        "NAME", "VERSION", "TASK", "LABELS"
    );
    for entry in entries {
        match &entry.manifest {
            Ok(m) => println!(
                "{:<24} {:<10} {:<22} {:>6}  {}",
                m.name,
                m.version,
                m.task.as_str(),
                m.labels.len(),
                if entry.onnx_present {
                    "ready".to_string()
                } else {
                    format!(
                        "missing {} (run {})",
                        m.onnx.display(),
                        crate::runtime::SETUP_COMMAND
                    )
                }
            ),
            Err(e) => println!("{:<24} invalid: {e}", entry.dir.display()),
        }
    }
    ExitCode::SUCCESS
}

fn check(dir: PathBuf) -> ExitCode {
    let opts = LoadOptions {
        session: crate::runtime::SessionOptions {
            intra_threads: 1,
            spinning: true,
        },
        ..LoadOptions::default()
    };
    match Model::load(&dir, opts) {
        Ok(model) => {
            let m = model.manifest();
            let input = match &m.input {
                InputSpec::Image(i) => format!(
                    "image {:?} {:?} {}x{}x{} {:?}",
                    i.name, i.dtype, i.channels, i.height, i.width, i.layout
                ),
                InputSpec::Text(t) => format!(
                    "text, tokenizer {}, max_length {}",
                    t.tokenizer.display(),
                    t.max_length
                ),
                InputSpec::Audio(a) => format!(
                    "audio {:?}, mono at {} Hz, windows of {} + {} context samples",
                    a.name, a.sample_rate, a.window, a.context
                ),
            };
            println!("ok: {} {} ({})", m.name, m.version, m.task.as_str());
            println!("  input: {input}");
            for o in &m.outputs {
                println!("  output: {:?} ({:?})", o.name, o.kind);
            }
            println!("  labels: {}", m.labels.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_MODEL_LOAD)
        }
    }
}
