//! Label Studio: the ML-backend protocol's use cases (setup, predict,
//! webhook, versions) and the bulk pre-annotation of a Label Studio project
//! (`sync`). The HTTP adapter (`api::labelstudio`) only translates; the
//! labeling config, task data, annotations and training all go through the
//! same use cases as the JSON API (ingest, review, learn, calibration).

mod boxes;
pub mod cache;
pub mod config;
pub mod door;
pub mod fetch;
pub mod lines;
pub mod outbox;
pub mod predict;
pub mod segments;
pub mod sync;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::app::App;
use super::error::{ServiceError, ServiceResult};
use config::Wanted;

type CredentialMap = HashMap<i64, (Option<(String, String)>, Instant)>;

/// Label Studio settings (from `ServeConfig`).
#[derive(Debug, Clone)]
pub struct LsSettings {
    /// Hosts images may be fetched from besides Label Studio's own.
    pub image_hosts: Vec<String>,
    /// Hosts a Label Studio may live on: `/setup`'s hostname and a sync's URL.
    pub ls_hosts: Vec<String>,
    /// How long a sync keeps retrying an unreachable Label Studio.
    pub retry: Duration,
    /// Tasks of one `/predict` sent to the model at once: half its queue,
    /// so a request of thousands of tasks is never refused as busy.
    pub predict_slice: usize,
}

impl Default for LsSettings {
    fn default() -> Self {
        LsSettings {
            image_hosts: Vec::new(),
            ls_hosts: vec![
                "localhost:8080".into(),
                "127.0.0.1:8080".into(),
                "[::1]:8080".into(),
            ],
            retry: Duration::from_secs(60),
            predict_slice: 1024,
        }
    }
}

/// The Label Studio side of the service: settings, one HTTP client, and
/// access tokens exchanged for personal access tokens.
pub struct LabelStudio {
    pub settings: LsSettings,
    /// Parsed configs, labelers and known tasks, per project.
    pub cache: cache::Cache,
    http: reqwest::Client,
    /// (hostname, token hash) → (access token, when exchanged).
    access: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// (hostname, user id) → e-mail.
    emails: Mutex<HashMap<(String, i64), String>>,
    /// Project → its stored backend credentials (user, password hash), when read.
    credentials: Mutex<CredentialMap>,
    /// Wakes the outbox worker when a webhook is written.
    pub(crate) outbox_wake: tokio::sync::Notify,
    /// Each webhook the outbox worker applied, with its answer.
    pub(crate) outbox_done: tokio::sync::broadcast::Sender<(i64, webhook::WebhookOut)>,
}

impl LabelStudio {
    pub fn new(settings: LsSettings) -> LabelStudio {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Never follow a redirect: it could lead off the allowed hosts.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        LabelStudio {
            settings,
            cache: cache::Cache::default(),
            http,
            access: Mutex::default(),
            emails: Mutex::default(),
            credentials: Mutex::default(),
            outbox_wake: tokio::sync::Notify::new(),
            outbox_done: tokio::sync::broadcast::channel(1024).0,
        }
    }

    fn credentials(&self) -> std::sync::MutexGuard<'_, CredentialMap> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A project's credentials as read less than `keep` ago.
    pub(crate) fn kept_credentials(
        &self,
        project: i64,
        keep: Duration,
    ) -> Option<Option<(String, String)>> {
        let map = self.credentials();
        let (c, at) = map.get(&project)?;
        (at.elapsed() < keep).then(|| c.clone())
    }

    pub(crate) fn keep_credentials(&self, project: i64, c: Option<(String, String)>, at: Instant) {
        self.credentials().insert(project, (c, at));
    }

    pub(crate) fn forget_credentials(&self, project: i64) {
        self.credentials().remove(&project);
    }

    /// Whether a Label Studio URL is on the `ls_hosts` allow-list.
    pub fn host_allowed(&self, url: &str) -> Result<reqwest::Url, ServiceError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ServiceError::invalid("url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ServiceError::invalid("url", "must be http(s)"));
        }
        if host_listed(&self.settings.ls_hosts, &parsed) {
            Ok(parsed)
        } else {
            Err(ServiceError::forbidden(format!(
                "Label Studio host {:?} is not in ls_hosts; add it, with its port, to the server's ls_hosts setting",
                shown_host(&parsed)
            )))
        }
    }
}

/// `host:port` of a URL, as allow-lists spell it.
pub(crate) fn shown_host(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Whether a URL's host *and port* are on an allow-list of `host` or
/// `host:port` entries. An entry without a port stands for the scheme's
/// default port only: `127.0.0.1` must never admit every local service.
pub(crate) fn host_listed(list: &[String], url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default();
    list.iter().any(|entry| {
        let entry = entry.trim();
        let (h, p) = match entry.rsplit_once(':') {
            Some((h, p))
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') =>
            {
                (h, p.parse::<u16>().ok())
            }
            _ => (entry, None),
        };
        let wanted = p.or(match url.scheme() {
            "https" => Some(443),
            _ => Some(80),
        });
        h.eq_ignore_ascii_case(host) && wanted == port
    })
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub model_class: &'static str,
    pub project: i64,
    pub model: String,
    pub model_version: String,
}

/// `/health`: the project exists and its model is loaded.
pub async fn health(app: &App, project_id: i64) -> ServiceResult<Health> {
    let project = app.store.get_project(project_id).await?;
    let predictor = app.labelstudio.cache.labeler(app, &project).await?;
    Ok(Health {
        status: "UP",
        model_class: "labelloop",
        project: project_id,
        model: project.model.clone(),
        model_version: predictor.model_version().to_string(),
    })
}

/// What Label Studio sends to `/setup`.
#[derive(Debug, Deserialize)]
pub struct SetupIn {
    #[serde(default)]
    pub project: Option<serde_json::Value>,
    /// The labeling config.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub extra_params: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct SetupOut {
    pub model_version: String,
}

/// `/setup`: check the labeling config against the project's labels, keep
/// Label Studio's host and token for fetching data, answer the version.
/// The host must be on `ls_hosts` with its port; a connection already kept
/// is replaced only by a caller that came through the door with
/// credentials, so an anonymous `/setup` (under the `ls_open` opt-out)
/// cannot redirect the server's fetches or swap the token it sends.
pub async fn setup(
    app: &App,
    project_id: i64,
    req: SetupIn,
    caller: door::LsCaller,
) -> ServiceResult<SetupOut> {
    let project = app.store.get_project(project_id).await?;
    let predictor = app.labelstudio.cache.labeler(app, &project).await?;
    let wanted = wanted(app, &project)?;
    let host = req
        .hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            ServiceError::invalid(
                "hostname",
                "missing: Label Studio sends its own URL here (set LABEL_STUDIO_HOST on its side)",
            )
        })?;
    if let Some(schema) = req.schema.as_deref().filter(|s| !s.trim().is_empty()) {
        config::parse_off_thread(schema, &project.labels, wanted).await?;
    }
    let ls_project = req.project.as_ref().map(|p| match p {
        // Label Studio sends "<project id>.<created at>".
        serde_json::Value::String(s) => s.split('.').next().unwrap_or(s).to_string(),
        other => other.to_string(),
    });
    app.labelstudio.host_allowed(host).map_err(|e| {
        ServiceError::new(
            e.code,
            format!(
                "field `hostname`: {}",
                e.message.replace("field `url`: ", "")
            ),
        )
    })?;
    if !caller.trusted() && app.store.ls_connection(project_id).await?.is_some() {
        return Err(ServiceError::forbidden(
            "this project's Label Studio connection is kept; only a caller with the backend's credentials may replace it",
        ));
    }
    app.store
        .ls_save_connection(
            project_id,
            host.trim_end_matches('/'),
            req.access_token.as_deref().unwrap_or(""),
            ls_project.as_deref(),
            req.schema.as_deref(),
        )
        .await?;
    Ok(SetupOut {
        model_version: predictor.model_version().to_string(),
    })
}

#[derive(Debug, Serialize)]
pub struct Versions {
    pub versions: Vec<String>,
    pub current: String,
}

/// `/versions`: the base model's version, one per trained head, and the one in force.
pub async fn versions(app: &App, project_id: i64) -> ServiceResult<Versions> {
    let project = app.store.get_project(project_id).await?;
    let predictor = app.labelstudio.cache.labeler(app, &project).await?;
    let current = predictor.model_version().to_string();
    let base = current.split('+').next().unwrap_or(&current).to_string();
    let mut versions = vec![base.clone()];
    for v in app.store.head_versions(project_id).await? {
        versions.push(format!("{base}+head{v}"));
    }
    if !versions.contains(&current) {
        versions.push(current.clone());
    }
    Ok(Versions { versions, current })
}

/// `/validate`: the labeling config fits the project.
pub async fn validate(app: &App, project_id: i64, config_xml: &str) -> ServiceResult<()> {
    let project = app.store.get_project(project_id).await?;
    config::parse_off_thread(config_xml, &project.labels, wanted(app, &project)?).await?;
    Ok(())
}

/// What the project's model answers, so which control tag of a labeling
/// config it fills.
pub(crate) fn wanted(app: &App, project: &crate::store::Project) -> ServiceResult<Wanted> {
    let model = &app.model_of(project)?.model;
    if model.is_audio() {
        return Ok(Wanted::AudioSegments);
    }
    Ok(if model.is_text() {
        Wanted::TextChoices
    } else if model.manifest().task == crate::model::Task::Ocr {
        Wanted::PageLines
    } else if model.manifest().task == crate::model::Task::ObjectDetection {
        Wanted::ImageBoxes
    } else {
        Wanted::ImageChoices
    })
}

/// The machine region a drawn result names by its id (`m<region id>`, as
/// `/predict` wrote it), unless another result already claimed it: how the
/// lines and segments webhooks pair a person's result with the machine's
/// before falling back to overlap.
fn named_machine<'a, S>(
    id: Option<&str>,
    claimed: &std::collections::HashSet<i64>,
    machine: &'a [(&'a crate::store::RegionRecord, S)],
) -> Option<&'a (&'a crate::store::RegionRecord, S)> {
    let id = id?.strip_prefix('m')?.parse::<i64>().ok()?;
    if claimed.contains(&id) {
        return None;
    }
    machine.iter().find(|(m, _)| m.id == id)
}
