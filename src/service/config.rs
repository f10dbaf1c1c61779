//! Server configuration: one struct, reachable three ways. Every setting is
//! a `serve` flag, a `LABELLOOP_…` environment variable and a key of the
//! `--config` TOML file (the field name). Precedence: flag, then environment,
//! then file, then the default shown in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use serde::{Deserialize, Serialize};

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "LABELLOOP_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Database: sqlite://PATH or postgres://… [default: sqlite://<data-dir>/labelloop.db]
    #[arg(long, env = "LABELLOOP_DB")]
    pub db: Option<String>,
    /// Folder for the embedded SQLite database.
    #[arg(long, env = "LABELLOOP_DATA_DIR", default_value = "data/labelloop")]
    pub data_dir: PathBuf,
    /// Folder of model folders; every ready model is loaded at start.
    #[arg(long, env = "LABELLOOP_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Folder that `path` items may point into; nothing outside it is read.
    /// Unset: path items are refused.
    #[arg(long, env = "LABELLOOP_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// Serve without API tokens. Refused unless --addr is a loopback address.
    #[arg(long, env = "LABELLOOP_NO_AUTH")]
    pub no_auth: bool,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "LABELLOOP_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest `POST /v1/predict` batch.
    #[arg(long, env = "LABELLOOP_PREDICT_MAX_ITEMS", default_value_t = 256)]
    pub predict_max_items: usize,
    /// Largest batch the dynamic batcher forms.
    #[arg(long, env = "LABELLOOP_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,
    /// Longest the batcher waits to fill a batch, in milliseconds.
    #[arg(long, env = "LABELLOOP_MAX_WAIT_MS", default_value_t = 2)]
    pub max_wait_ms: u64,
    /// Items a model's queue holds before callers get 429.
    #[arg(long, env = "LABELLOOP_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// ONNX Runtime intra-op threads per session [default: the cores left
    /// to each session, at least 1].
    #[arg(long, env = "LABELLOOP_THREADS")]
    pub threads: Option<usize>,
    /// ONNX Runtime sessions per model: batches run on them side by side
    /// [default: one per core, at most 4, or the cores over --threads].
    #[arg(long, env = "LABELLOOP_SESSIONS")]
    pub sessions: Option<usize>,
    /// Background pre-labeling workers in this process.
    #[arg(long, env = "LABELLOOP_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Items a worker claims, labels and records at once (1 to 10,000).
    #[arg(long, env = "LABELLOOP_CLAIM_BATCH", default_value_t = 512)]
    pub claim_batch: i64,
    /// Seconds a worker's claim on items lasts before others may take them back.
    #[arg(long, env = "LABELLOOP_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Idle wait between polls for new jobs, in milliseconds.
    #[arg(long, env = "LABELLOOP_POLL_MS", default_value_t = 200)]
    pub poll_ms: u64,
    /// Bytes that one request's images may decode to in all (width × height ×
    /// bytes per pixel); images past it fail alone with `request_decode_budget`.
    #[arg(long, env = "LABELLOOP_REQUEST_DECODE_BYTES", default_value_t = 1 << 30)]
    pub request_decode_bytes: u64,
    /// Recordings longer than this many seconds are refused
    /// (`audio_too_long`), from the header when it states a length.
    #[arg(long, env = "LABELLOOP_MAX_AUDIO_SECONDS", default_value_t = 3600.0)]
    pub max_audio_seconds: f64,
    /// Label Studio hosts (host:port, comma-separated; a host alone means port
    /// 80/443) that `/setup`'s hostname and a sync's URL may name; nothing
    /// else is fetched with a token.
    #[arg(
        long,
        env = "LABELLOOP_LS_HOSTS",
        value_delimiter = ',',
        default_value = "localhost:8080,127.0.0.1:8080,[::1]:8080"
    )]
    pub ls_hosts: Vec<String>,
    /// Other hosts Label Studio tasks' image URLs may point to (comma-separated);
    /// a URL on any other host is refused and never fetched.
    #[arg(long, env = "LABELLOOP_LS_IMAGE_HOSTS", value_delimiter = ',')]
    #[serde(default)]
    pub ls_image_hosts: Vec<String>,
    /// User for HTTP Basic auth on the /labelstudio routes (with the password; unset: no auth).
    #[arg(long, env = "LABELLOOP_LS_BASIC_AUTH_USER")]
    pub ls_basic_auth_user: Option<String>,
    /// Password for HTTP Basic auth on the /labelstudio routes.
    #[arg(long, env = "LABELLOOP_LS_BASIC_AUTH_PASSWORD", hide_env_values = true)]
    pub ls_basic_auth_password: Option<String>,
    /// Serve the /labelstudio routes to callers without credentials (with token
    /// auth on). Anyone who can reach the port may then write labels and
    /// predictions: logged as a warning at start-up. Prefer per-project credentials.
    #[arg(long, env = "LABELLOOP_LS_OPEN")]
    #[serde(default)]
    pub ls_open: bool,
    /// Key for the review page's short-lived links to recordings (any
    /// string; give every server behind one address the same). Unset: a
    /// random key per process, so a link works only on the server that made it.
    #[arg(long, env = "LABELLOOP_MEDIA_KEY", hide_env_values = true)]
    #[serde(default)]
    pub media_key: Option<String>,
    /// How long a Label Studio sync retries an unreachable Label Studio, with backoff, before it fails.
    #[arg(long, env = "LABELLOOP_LS_RETRY_SECS", default_value_t = 60)]
    pub ls_retry_secs: u64,
}

/// Most sessions, and most threads per session, the server starts.
const MAX_SESSIONS: usize = 64;

impl ServeConfig {
    /// Sessions per model and intra-op threads per session, filling the
    /// cores: by default one single-threaded session per core (up to four,
    /// then more threads each), as `labelloop label` runs. A session of one
    /// thread never waits on a descheduled helper thread in the middle of an
    /// operator, and decoding the next batch takes a core from no one (both
    /// layouts measured: README, "Speed of `/labelstudio/{project}/predict`").
    pub fn session_layout(&self) -> (usize, usize) {
        let cores = cores();
        let bound = |n: usize| n.clamp(1, MAX_SESSIONS);
        match (self.sessions, self.threads) {
            (Some(s), Some(t)) => (bound(s), bound(t)),
            (Some(s), None) => (bound(s), bound(cores / bound(s))),
            (None, Some(t)) => (bound(cores / bound(t)), bound(t)),
            (None, None) => {
                let s = cores.min(4);
                (s, bound(cores / s))
            }
        }
    }
}

impl Default for ServeConfig {
    /// The defaults clap declares (one source of truth), with the environment.
    fn default() -> Self {
        ServeConfig::from_arg_matches(&no_flags()).unwrap_or_else(|e| e.exit())
    }
}

/// `serve` parsed with no flags: defaults and `LABELLOOP_…` variables only.
/// The largest `claim_batch`: a batch's items are in memory together.
pub const MAX_CLAIM_BATCH: i64 = 10_000;

fn no_flags() -> ArgMatches {
    ServeConfig::augment_args(clap::Command::new("serve"))
        .try_get_matches_from(["serve"])
        .unwrap_or_else(|e| e.exit())
}

impl ServeConfig {
    /// The config from parsed `serve` arguments, with the TOML file's keys
    /// filling in whatever neither a flag nor the environment set.
    pub fn resolve(
        matches: &ArgMatches,
        file: Option<&std::path::Path>,
    ) -> Result<ServeConfig, String> {
        let parsed = ServeConfig::from_arg_matches(matches).map_err(|e| e.to_string())?;
        let Some(path) = file else {
            return parsed.checked();
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let from_file: toml::Table =
            toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))?;
        let mut merged = toml::Table::try_from(&parsed).map_err(|e| e.to_string())?;
        for (key, value) in from_file {
            // An unknown key is not an argument id; deserialising refuses it below.
            let explicit = matches.try_contains_id(&key).is_ok()
                && matches!(
                    matches.value_source(&key),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                );
            if !explicit {
                merged.insert(key, value);
            }
        }
        let config: ServeConfig = merged
            .try_into()
            .map_err(|e| format!("invalid config {}: {e}", path.display()))?;
        config.checked()
    }

    /// Refuse values that would stall the server rather than clamp them
    /// silently: a claim of 0 items never finishes a job.
    fn checked(self) -> Result<ServeConfig, String> {
        if !(1..=MAX_CLAIM_BATCH).contains(&self.claim_batch) {
            return Err(format!(
                "claim_batch must be between 1 and {MAX_CLAIM_BATCH}, got {}",
                self.claim_batch
            ));
        }
        Ok(self)
    }

    /// Defaults and environment, overlaid by a config file (for commands
    /// like `tokens create` that share the server's database settings).
    pub fn from_file(path: &std::path::Path) -> Result<ServeConfig, String> {
        ServeConfig::resolve(&no_flags(), Some(path))
    }

    pub fn db_url(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("labelloop.db").display()))
    }

    pub fn labelstudio(&self) -> crate::service::labelstudio::LsSettings {
        crate::service::labelstudio::LsSettings {
            image_hosts: self.ls_image_hosts.clone(),
            ls_hosts: self.ls_hosts.clone(),
            retry: Duration::from_secs(self.ls_retry_secs.clamp(1, 86_400)),
            predict_slice: (self.queue_capacity / 2).max(1),
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(args: &[&str]) -> ArgMatches {
        ServeConfig::augment_args(clap::Command::new("serve"))
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
    }

    /// A claim of 0 items would never finish a job; one past the bound
    /// holds too many items in memory at once: both refused at start.
    #[test]
    fn a_claim_batch_outside_its_bounds_is_refused() {
        for bad in ["--claim-batch=0", "--claim-batch=-1", "--claim-batch=10001"] {
            let e = ServeConfig::resolve(&matches(&[bad]), None).unwrap_err();
            assert!(e.contains("claim_batch must be between 1 and 10000"), "{e}");
        }
        let c = ServeConfig::resolve(&matches(&["--claim-batch=10000"]), None).unwrap();
        assert_eq!(c.claim_batch, 10_000);
    }

    /// README's example file is a valid config, and a flag wins over it.
    #[test]
    fn readme_config_parses_and_flags_win() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\naddr").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, &readme[start..end]).unwrap();
        let c = ServeConfig::resolve(&matches(&["--max-batch", "7"]), Some(&path)).unwrap();
        assert_eq!(c.max_batch, 7, "the flag wins");
        assert_eq!(
            c.data_root.as_deref(),
            Some(std::path::Path::new("/srv/images"))
        );
        assert_eq!(c.workers, 2);
        let none = ServeConfig::resolve(&matches(&[]), Some(&path)).unwrap();
        assert_eq!(none.max_batch, 64, "the file's value");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "max_bach = 3\n").unwrap();
        let err = ServeConfig::resolve(&matches(&[]), Some(&path)).unwrap_err();
        assert!(err.contains("max_bach"), "{err}");
    }

    #[test]
    fn sessions_and_threads_fill_the_cores_and_are_bounded() {
        let n = cores();
        let layout = |args: &[&str]| {
            ServeConfig::resolve(&matches(args), None)
                .unwrap()
                .session_layout()
        };
        let s = n.min(4);
        assert_eq!(layout(&[]), (s, (n / s).max(1)));
        assert_eq!(layout(&["--sessions", "1"]), (1, n));
        assert_eq!(layout(&["--threads", "1"]), (n, 1));
        assert_eq!(layout(&["--threads", "3", "--sessions", "2"]), (2, 3));
        assert_eq!(layout(&["--threads", "0", "--sessions", "0"]), (1, 1));
        assert_eq!(
            layout(&["--threads", "100000", "--sessions", "100000"]),
            (MAX_SESSIONS, MAX_SESSIONS)
        );
    }
}
