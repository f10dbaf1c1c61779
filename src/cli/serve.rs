//! `labelloop serve`: the HTTP service with background pre-labeling workers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::{watch, Notify};

use super::{EXIT_MODEL_LOAD, EXIT_STORE, EXIT_USAGE};
use crate::api::{self, ApiConfig, AppState};
use crate::model::batcher::BatcherConfig;
use crate::model::LoadOptions;
use crate::runtime::SessionOptions;
use crate::service::config::ServeConfig;
use crate::service::hub::ModelHub;
use crate::service::metrics::Metrics;
use crate::service::worker::{self, WorkerContext};
use crate::store::{NewItem, NewProject, Store};

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Database: sqlite://PATH (default: <data-dir>/labelloop.db) or postgres://…
    #[arg(long)]
    db: Option<String>,
    /// Folder of model folders; every ready model is loaded at start.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Folder that `path` items may point into; nothing outside it is read.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Folder for the embedded SQLite database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML file with any of the settings (see README); flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve without API tokens. Refused unless --addr is a loopback address.
    #[arg(long)]
    no_auth: bool,
    /// Background pre-labeling workers in this process.
    #[arg(long)]
    workers: Option<usize>,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long)]
    threads: Option<usize>,
    /// ONNX Runtime sessions per model: batches run on them side by side,
    /// each preprocessing its own items.
    #[arg(long)]
    sessions: Option<usize>,
    /// Seconds a worker's claim on items lasts before others may take them back.
    #[arg(long)]
    lease_secs: Option<u64>,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Largest batch the dynamic batcher forms.
    #[arg(long)]
    max_batch: Option<usize>,
    /// Longest the batcher waits to fill a batch, in milliseconds.
    #[arg(long)]
    max_wait_ms: Option<u64>,
    /// Load a demo project: the first 1,000 Fashion-MNIST test images.
    #[arg(long)]
    demo: bool,
}

fn build_config(args: &ServeArgs) -> Result<ServeConfig, String> {
    let mut c = match &args.config {
        Some(path) => ServeConfig::from_file(path)?,
        None => ServeConfig::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { c.$field = v; } )* };
    }
    set!(
        addr,
        models,
        data_dir,
        workers,
        threads,
        sessions,
        lease_secs,
        max_body_bytes,
        max_batch,
        max_wait_ms
    );
    if args.db.is_some() {
        c.db = args.db.clone();
    }
    if args.data_root.is_some() {
        c.data_root = args.data_root.clone();
    }
    if args.demo && c.data_root.is_none() {
        c.data_root = Some(PathBuf::from("data/fashion-mnist"));
    }
    c.no_auth |= args.no_auth;
    if c.no_auth && !c.addr.ip().is_loopback() {
        return Err(format!(
            "--no-auth is only allowed on a loopback address, not {}; create a token with `labelloop tokens create --role admin`",
            c.addr
        ));
    }
    Ok(c)
}

pub fn run(args: ServeArgs) -> ExitCode {
    let config = match build_config(&args) {
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
    let store = match Store::connect(&config.db_url()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot open the store {}: {e}",
                redact(&config.db_url())
            );
            return ExitCode::from(EXIT_STORE);
        }
    };
    if store.is_sqlite() {
        // One process owns an SQLite file: leases left by a killed run are stale now.
        if let Ok(n) = store.release_leases(None).await {
            if n > 0 {
                tracing::info!(
                    items = n,
                    "resuming: took back leases from the previous run"
                );
            }
        }
    }
    let load = LoadOptions {
        session: SessionOptions {
            intra_threads: config.threads,
            spinning: false,
        },
        sessions: config.sessions.max(1),
        embeddings: true,
        ..LoadOptions::default()
    };
    let batcher = BatcherConfig {
        max_batch: config.max_batch,
        max_wait: Duration::from_millis(config.max_wait_ms),
        queue_capacity: config.queue_capacity,
        // One batch in flight per session.
        concurrency: config.sessions.max(1),
    };
    let hub = match ModelHub::load_dir(&config.models, load, batcher) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_MODEL_LOAD);
        }
    };
    if hub.is_empty() {
        eprintln!(
            "error: no ready model under {}; run scripts/setup.sh or pass --models",
            config.models.display()
        );
        return ExitCode::from(EXIT_MODEL_LOAD);
    }
    let data_root = match &config.data_root {
        Some(root) => match root.canonicalize() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: --data-root {}: {e}", root.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let wake = Arc::new(Notify::new());
    let state = AppState {
        store: store.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        wake_workers: wake.clone(),
        config: Arc::new(ApiConfig {
            auth: !config.no_auth,
            max_body_bytes: config.max_body_bytes,
            predict_max_items: config.predict_max_items,
            data_root: data_root.clone(),
            default_threshold: config.default_threshold,
        }),
    };
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", config.addr);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let addr = listener.local_addr().unwrap_or(config.addr);
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = tokio::spawn(worker::run(
        WorkerContext {
            store: store.clone(),
            hub: hub.clone(),
            metrics,
            wake,
            worker_id: worker::worker_id(),
            claim_batch: config.claim_batch,
            lease: config.lease(),
            poll: Duration::from_millis(config.poll_ms),
            data_root,
            heads: Default::default(),
        },
        config.workers,
        stop_rx,
    ));
    let models: Vec<&str> = hub.names().collect();
    tracing::info!(%addr, store = store.backend(), models = ?models, auth = !config.no_auth, "labelloop is serving");
    // The one line scripts wait for.
    println!("labelloop listening on http://{addr}");
    if demo {
        match load_demo(&state).await {
            Ok(project) => print_demo_help(addr, project, config.no_auth),
            Err(e) => tracing::warn!(error = %e, "could not load the demo project"),
        }
    }
    let app = api::router(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // HTTP is drained; now let workers finish and record their current batch.
    let _ = stop_tx.send(true);
    let _ = workers.await;
    store.close().await;
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested: draining requests and running batches");
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

/// The demo project: Fashion-MNIST images by path, labeled in the background.
async fn load_demo(state: &AppState) -> Result<i64, String> {
    const NAME: &str = "fashion-demo";
    let store = &state.store;
    let projects = store.list_projects().await.map_err(|e| e.to_string())?;
    let project = match projects.into_iter().find(|p| p.name == NAME) {
        Some(p) => p,
        None => {
            let model = state
                .hub
                .get("fashion-mnist-cnn")
                .ok_or("model fashion-mnist-cnn is not loaded")?;
            store
                .create_project(&NewProject {
                    name: NAME.into(),
                    model: "fashion-mnist-cnn".into(),
                    labels: model.labels().to_vec(),
                    precision_target: 0.95,
                    threshold: state.config.default_threshold,
                    settings: Default::default(),
                    // With the MLP loaded, the demo also ranks by committee disagreement.
                    committee: state
                        .hub
                        .get("fashion-mnist-mlp")
                        .map(|_| vec!["fashion-mnist-mlp".to_string()])
                        .unwrap_or_default(),
                })
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let root = state.config.data_root.as_ref().ok_or("no data root")?;
    let items: Vec<NewItem> = (0..1000)
        .map(|i| NewItem {
            client_id: format!("fmnist-test-{i:05}"),
            content: crate::store::Content::Path(
                root.join(format!("test/{i:05}.png"))
                    .to_string_lossy()
                    .into_owned(),
            ),
        })
        .collect();
    let result = store
        .ingest(project.id, &items)
        .await
        .map_err(|e| e.to_string())?;
    state.wake_workers.notify_waiters();
    tracing::info!(
        project = project.id,
        inserted = result.inserted,
        job = result.job_id,
        "demo project loaded"
    );
    Ok(project.id)
}

fn print_demo_help(addr: SocketAddr, project: i64, no_auth: bool) {
    let auth = if no_auth {
        ""
    } else {
        " -H \"Authorization: Bearer $TOKEN\""
    };
    println!("demo project {project} (fashion-demo): 1,000 Fashion-MNIST test images are being pre-labeled.");
    println!("try:");
    println!("  curl -s{auth} http://{addr}/v1/projects/{project}");
    println!(
        "  curl -s{auth} 'http://{addr}/v1/projects/{project}/items?status=needs_review&limit=5'"
    );
    println!(
        "  curl -s{auth} 'http://{addr}/v1/projects/{project}/review?annotator=ann&strategy=vote-entropy&limit=5'"
    );
    println!("  curl -s{auth} 'http://{addr}/v1/projects/{project}/export?format=csv' | head");
    println!("  curl -s{auth} http://{addr}/v1/predict -H 'content-type: application/json' \\");
    println!("       -d '{{\"model\":\"minilm-l6\",\"items\":[{{\"text\":\"hello world\"}}]}}'");
    println!("  curl -s http://{addr}/metrics | grep labelloop_items");
    println!("stop with Ctrl-C (running batches are finished first).");
}
