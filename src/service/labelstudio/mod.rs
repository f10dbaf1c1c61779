//! Label Studio: the ML-backend protocol's use cases (setup, predict,
//! webhook, versions) and the bulk pre-annotation of a Label Studio project
//! (`sync`). The HTTP adapter (`api::labelstudio`) only translates; the
//! labeling config, task data, annotations and training all go through the
//! same use cases as the JSON API (ingest, review, learn, calibration).

pub mod cache;
pub mod config;
pub mod fetch;
pub mod predict;
pub mod sync;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::app::App;
use super::error::{ServiceError, ServiceResult};

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
            ls_hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
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
        }
    }

    /// Whether a Label Studio URL is on the `ls_hosts` allow-list.
    pub fn host_allowed(&self, url: &str) -> Result<reqwest::Url, ServiceError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ServiceError::invalid("url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ServiceError::invalid("url", "must be http(s)"));
        }
        let host = parsed.host_str().unwrap_or("");
        let with_port = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        if self
            .settings
            .ls_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(&with_port))
        {
            Ok(parsed)
        } else {
            Err(ServiceError::forbidden(format!(
                "Label Studio host {with_port:?} is not in ls_hosts; add it to the server's ls_hosts setting"
            )))
        }
    }
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
pub async fn setup(app: &App, project_id: i64, req: SetupIn) -> ServiceResult<SetupOut> {
    let project = app.store.get_project(project_id).await?;
    let predictor = app.labelstudio.cache.labeler(app, &project).await?;
    let text = text_model(app, &project)?;
    if let Some(schema) = req.schema.as_deref().filter(|s| !s.trim().is_empty()) {
        config::parse(schema, &project.labels, text)?;
    }
    let ls_project = req.project.as_ref().map(|p| match p {
        // Label Studio sends "<project id>.<created at>".
        serde_json::Value::String(s) => s.split('.').next().unwrap_or(s).to_string(),
        other => other.to_string(),
    });
    if let Some(host) = req.hostname.as_deref().filter(|h| !h.trim().is_empty()) {
        app.labelstudio.host_allowed(host).map_err(|e| {
            ServiceError::new(
                e.code,
                format!(
                    "field `hostname`: {}",
                    e.message.replace("field `url`: ", "")
                ),
            )
        })?;
        app.store
            .ls_save_connection(
                project_id,
                host.trim_end_matches('/'),
                req.access_token.as_deref().unwrap_or(""),
                ls_project.as_deref(),
                req.schema.as_deref(),
            )
            .await?;
    }
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
    config::parse(config_xml, &project.labels, text_model(app, &project)?)?;
    Ok(())
}

/// Whether the project's model reads text (else images).
pub(crate) fn text_model(app: &App, project: &crate::store::Project) -> ServiceResult<bool> {
    Ok(app.model_of(project)?.model.is_text())
}
