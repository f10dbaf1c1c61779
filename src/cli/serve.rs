//! `labelloop serve`: parses the settings and hands them to the service
//! (`service::app`) and the HTTP adapter (`api::serve`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, Args};

use super::{EXIT_MODEL_LOAD, EXIT_STORE, EXIT_USAGE};
use crate::service::app::{App, StartError};
use crate::service::config::ServeConfig;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    settings: ServeConfig,
    /// TOML file with any of the settings above (keys are the flag names
    /// with `_` for `-`); flags and LABELLOOP_* variables win over it.
    #[arg(long, env = "LABELLOOP_CONFIG")]
    config: Option<PathBuf>,
    /// Load a demo project: the first 1,000 Fashion-MNIST test images.
    #[arg(long)]
    demo: bool,
}

fn build_config(args: &ServeArgs, matches: &ArgMatches) -> Result<ServeConfig, String> {
    let mut c = ServeConfig::resolve(matches, args.config.as_deref())?;
    if args.demo && c.data_root.is_none() {
        c.data_root = Some(PathBuf::from("data/fashion-mnist"));
    }
    if c.no_auth && !c.addr.ip().is_loopback() {
        return Err(format!(
            "--no-auth is only allowed on a loopback address, not {}; create a token with `labelloop tokens create --role admin`",
            c.addr
        ));
    }
    Ok(c)
}

pub fn run(args: ServeArgs, matches: &ArgMatches) -> ExitCode {
    let config = match build_config(&args, matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, args.demo))
}

async fn serve(config: ServeConfig, demo: bool) -> ExitCode {
    let running = match App::start(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(match e {
                StartError::Store { .. } => EXIT_STORE,
                StartError::Models(_) => EXIT_MODEL_LOAD,
                StartError::Usage(_) => EXIT_USAGE,
            });
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", config.addr);
            running.shutdown().await;
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let addr = listener.local_addr().unwrap_or(config.addr);
    let models: Vec<&str> = running.app.hub.names().collect();
    tracing::info!(%addr, store = running.app.store.backend(), models = ?models, auth = !config.no_auth, "labelloop is serving");
    if config.ls_open && !config.no_auth {
        tracing::warn!("--ls-open: the /labelstudio routes answer callers without credentials; anyone who can reach {addr} may write labels and predictions. Create per-project credentials instead (POST /v1/projects/{{id}}/labelstudio/credentials)");
    }
    // The one line scripts wait for.
    println!("labelloop listening on http://{addr}");
    if demo {
        match running.app.load_demo().await {
            Ok(project) => print_demo_help(addr, project, config.no_auth),
            Err(e) => tracing::warn!(error = %e, "could not load the demo project"),
        }
    }
    let served = crate::api::serve(running.app.clone(), &config, listener).await;
    // HTTP is drained; now let workers finish and record their current batch.
    running.shutdown().await;
    match served {
        Ok(()) => {
            tracing::info!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_demo_help(addr: std::net::SocketAddr, project: i64, no_auth: bool) {
    let auth = if no_auth {
        ""
    } else {
        " -H \"Authorization: Bearer $TOKEN\""
    };
    println!("demo project {project} (fashion-demo): 1,000 Fashion-MNIST test images are being pre-labeled.");
    // The review page first: it is what a person most wants to see.
    println!();
    println!("review them in the browser: http://{addr}/ui");
    if !no_auth {
        println!("  (sign in with a token: labelloop tokens create --role annotator --name alice)");
    }
    println!("  open project {project}, pick a review list, then press:");
    println!(
        "    1-9, 0     pick one of the first ten labels    Enter      accept the model's label"
    );
    println!("    Space      skip (the lease is given back)       <- ->      move between answered items");
    println!("    Backspace  undo the last answer (or u)          /          filter the labels");
    println!("    ?          show the keys");
    println!();
    println!("or from the shell:");
    println!("  curl -s{auth} http://{addr}/v1/projects/{project}");
    println!(
        "  curl -s{auth} 'http://{addr}/v1/projects/{project}/items?status=needs_review&limit=5'"
    );
    println!(
        "  curl -s{auth} 'http://{addr}/v1/projects/{project}/review?strategy=vote-entropy&limit=5'"
    );
    println!("  curl -s{auth} 'http://{addr}/v1/projects/{project}/export?format=csv' | head");
    println!("  curl -s{auth} http://{addr}/v1/predict -H 'content-type: application/json' \\");
    println!("       -d '{{\"model\":\"minilm-l6\",\"items\":[{{\"text\":\"hello world\"}}]}}'");
    println!("  curl -s http://{addr}/metrics | grep labelloop_items");
    println!("stop with Ctrl-C (running batches are finished first).");
}
