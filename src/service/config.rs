//! Server configuration: defaults, overridden by `--config FILE` (TOML),
//! overridden by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// `sqlite://PATH`, a file path, or `postgres://…`. Default: `<data_dir>/labelloop.db`.
    pub db: Option<String>,
    pub data_dir: PathBuf,
    pub models: PathBuf,
    /// Item `path`s must lie under this folder. None: path items are refused.
    pub data_root: Option<PathBuf>,
    pub no_auth: bool,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest `POST /v1/predict` batch.
    pub predict_max_items: usize,
    pub max_batch: usize,
    pub max_wait_ms: u64,
    pub queue_capacity: usize,
    /// ONNX Runtime intra-op threads per session.
    pub threads: usize,
    /// ONNX Runtime sessions per model; as many batches run at once.
    pub sessions: usize,
    /// Job workers in this process.
    pub workers: usize,
    /// Items a worker claims at once.
    pub claim_batch: i64,
    /// How long a claim holds before another server may take the items back.
    pub lease_secs: u64,
    /// Idle wait between polls for new jobs.
    pub poll_ms: u64,
    /// Auto-accept when the top score reaches this, until calibration exists.
    pub default_threshold: f64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db: None,
            data_dir: PathBuf::from("data/labelloop"),
            models: PathBuf::from("models"),
            data_root: None,
            no_auth: false,
            max_body_bytes: 32 * 1024 * 1024,
            predict_max_items: 256,
            max_batch: 64,
            max_wait_ms: 2,
            queue_capacity: 4096,
            threads: cores,
            sessions: 1,
            workers: 2,
            claim_batch: 256,
            lease_secs: 30,
            poll_ms: 200,
            default_threshold: 0.9,
        }
    }
}

impl ServeConfig {
    pub fn from_file(path: &std::path::Path) -> Result<ServeConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    pub fn db_url(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("labelloop.db").display()))
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}
