//! The running service: the store, the loaded models with their batchers,
//! the background pre-labeling workers and the shared state every use case
//! needs, wired once from a [`ServeConfig`]. The CLI only parses arguments
//! and the HTTP adapter only serves; both start from here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::calibration::Calibrator;
use super::config::ServeConfig;
use super::error::{Code, ServiceError, ServiceResult};
use super::hub::{LoadedModel, ModelHub};
use super::metrics::Metrics;
use super::predictor::Classifiers;
use super::review::TrainingGuard;
use super::worker::{self, WorkerContext};
use crate::model::batcher::BatcherConfig;
use crate::model::LoadOptions;
use crate::runtime::SessionOptions;
use crate::store::{Content, NewItem, NewProject, Project, Store};

/// What every use case may use.
pub struct App {
    pub store: Store,
    pub hub: Arc<ModelHub>,
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers when new work is queued.
    pub wake_workers: Arc<Notify>,
    /// One automatic training per project at a time.
    pub training: Arc<TrainingGuard>,
    /// Canonical data root; `path` items must resolve inside it.
    pub data_root: Option<PathBuf>,
    /// Calibration fits, drift checks and their background tasks.
    pub calibrator: Calibrator,
    /// Trained heads and zero-shot prototypes, shared with the workers.
    pub classifiers: Arc<Classifiers>,
    /// Label Studio settings, its HTTP client and exchanged tokens.
    pub labelstudio: super::labelstudio::LabelStudio,
}

/// Why the service could not start; each maps to its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store {url}: {cause}")]
    Store { url: String, cause: String },
    #[error("{0}")]
    Models(String),
    #[error("{0}")]
    Usage(String),
}

/// The started service and its workers.
pub struct Running {
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    workers: JoinHandle<()>,
    /// Applies Label Studio webhooks from the outbox.
    outbox: JoinHandle<()>,
}

impl Running {
    /// Let workers finish and record their current batch, then close the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.workers.await;
        let _ = self.outbox.await;
        self.app.store.close().await;
    }
}

impl App {
    /// The loaded model a project labels with; a project whose model this
    /// server did not load (another replica's models folder) is unavailable
    /// here, not broken.
    pub fn model_of(&self, project: &Project) -> ServiceResult<&LoadedModel> {
        self.hub.get(&project.model).ok_or_else(|| {
            ServiceError::new(
                Code::Unavailable,
                format!(
                    "the project's model {:?} is not loaded on this server",
                    project.model
                ),
            )
        })
    }

    /// Open the store, load every ready model and start the workers.
    pub async fn start(config: &ServeConfig) -> Result<Running, StartError> {
        let url = config.db_url();
        let store = Store::connect(&url).await.map_err(|e| StartError::Store {
            url: redact(&url),
            cause: e.to_string(),
        })?;
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
        let hub = Arc::new(load_models(config)?);
        let data_root =
            match &config.data_root {
                Some(root) => Some(root.canonicalize().map_err(|e| {
                    StartError::Usage(format!("--data-root {}: {e}", root.display()))
                })?),
                None => None,
            };
        let metrics = Arc::new(Metrics::default());
        let app = Arc::new(App {
            store: store.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
            wake_workers: Arc::new(Notify::new()),
            training: Arc::default(),
            data_root: data_root.clone(),
            calibrator: Calibrator::new(store.clone(), hub.clone(), metrics.clone()),
            classifiers: Arc::default(),
            labelstudio: super::labelstudio::LabelStudio::new(config.labelstudio()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let outbox = tokio::spawn(super::labelstudio::outbox::run(
            app.clone(),
            stop_rx.clone(),
        ));
        let workers = tokio::spawn(worker::run(
            WorkerContext {
                store,
                hub,
                metrics: app.metrics.clone(),
                wake: app.wake_workers.clone(),
                worker_id: worker::worker_id(),
                claim_batch: config.claim_batch,
                lease: config.lease(),
                poll: Duration::from_millis(config.poll_ms),
                data_root,
                classifiers: app.classifiers.clone(),
            },
            config.workers,
            stop_rx,
        ));
        // Interrupted calibrations and syncs resume; trainings fail.
        super::exclusive::start_recovery(&app);
        Ok(Running {
            app,
            stop,
            workers,
            outbox,
        })
    }

    /// The demo project: the first 1,000 Fashion-MNIST test images by path,
    /// labeled in the background. Idempotent: re-running re-uses the project.
    pub async fn load_demo(&self) -> Result<i64, String> {
        const NAME: &str = "fashion-demo";
        let projects = self
            .store
            .list_projects()
            .await
            .map_err(|e| e.to_string())?;
        let project = match projects.into_iter().find(|p| p.name == NAME) {
            Some(p) => p,
            None => {
                let model = self
                    .hub
                    .get("fashion-mnist-cnn")
                    .ok_or("model fashion-mnist-cnn is not loaded")?;
                self.store
                    .create_project(&NewProject {
                        name: NAME.into(),
                        model: "fashion-mnist-cnn".into(),
                        labels: model.labels().to_vec(),
                        precision_target: 0.95,
                        // Nothing auto-accepted before a calibration earns it.
                        threshold: None,
                        settings: Default::default(),
                        // With the MLP loaded, the demo also ranks by committee disagreement.
                        committee: self
                            .hub
                            .get("fashion-mnist-mlp")
                            .map(|_| vec!["fashion-mnist-mlp".to_string()])
                            .unwrap_or_default(),
                    })
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let root = self.data_root.as_ref().ok_or("no data root")?;
        let items: Vec<NewItem> = (0..1000)
            .map(|i| NewItem {
                client_id: format!("fmnist-test-{i:05}"),
                content: Content::Path(
                    root.join(format!("test/{i:05}.png"))
                        .to_string_lossy()
                        .into_owned(),
                ),
            })
            .collect();
        let result = self
            .store
            .ingest(project.id, &items)
            .await
            .map_err(|e| e.to_string())?;
        self.wake_workers.notify_waiters();
        tracing::info!(
            project = project.id,
            inserted = result.inserted,
            job = result.job_id,
            "demo project loaded"
        );
        Ok(project.id)
    }
}

fn load_models(config: &ServeConfig) -> Result<ModelHub, StartError> {
    let (sessions, threads) = config.session_layout();
    let load = LoadOptions {
        session: SessionOptions {
            intra_threads: threads,
            spinning: false,
        },
        sessions,
        embeddings: true,
        request_decode_bytes: config.request_decode_bytes,
        max_audio_seconds: config.max_audio_seconds,
        ..LoadOptions::default()
    };
    let batcher = BatcherConfig {
        max_batch: config.max_batch,
        max_wait: Duration::from_millis(config.max_wait_ms),
        queue_capacity: config.queue_capacity,
        // One batch in flight per session.
        concurrency: sessions,
    };
    let hub = ModelHub::load_dir(&config.models, load, batcher)
        .map_err(|e| StartError::Models(e.to_string()))?;
    if hub.is_empty() {
        return Err(StartError::Models(format!(
            "no ready model under {}; run scripts/setup.sh or pass --models",
            config.models.display()
        )));
    }
    Ok(hub)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}
