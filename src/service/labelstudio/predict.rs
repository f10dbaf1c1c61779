//! `/predict`: every task of the request through the project's predictor
//! in one batched call (the path `/v1/predict` uses), one result per task,
//! in task order. A task that fails (no data key, an image that cannot be
//! fetched, a refused host, an undecodable image) gets an empty result and
//! its reason in the log; the others still get predictions.
//!
//! Tasks labelloop has not seen are then ingested in the background (keyed
//! by task id), so the annotations Label Studio sends later land on items
//! that have embeddings for the head.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{self, ChoicesTarget};
use super::fetch::TaskData;
use crate::service::app::App;
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::ingest::{self, IngestItem};
use crate::service::predictor::Labeler as ProjectPredictor;
use crate::store::{ls_client_id, Content, LsConnection};

/// Tasks fetched at once from Label Studio.
const FETCH_CONCURRENCY: usize = 32;

#[derive(Debug, Deserialize)]
pub struct PredictIn {
    pub tasks: Vec<Value>,
    #[serde(default)]
    pub project: Option<Value>,
    #[serde(default)]
    pub label_config: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct PredictOut {
    pub results: Vec<Value>,
    pub model_version: String,
}

/// The labeling config in force: the request's, else the one `/setup` kept.
pub(crate) async fn target_for(
    app: &App,
    project: &crate::store::Project,
    given: Option<&str>,
) -> ServiceResult<ChoicesTarget> {
    let stored;
    let xml = match given.filter(|s| !s.trim().is_empty()) {
        Some(x) => x,
        None => {
            stored = app.store.ls_label_config(project.id).await?;
            stored.as_deref().ok_or_else(|| {
                ServiceError::invalid(
                    "label_config",
                    "no labeling config in the request, and none from /setup",
                )
            })?
        }
    };
    config::parse(xml, &project.labels, super::text_model(app, project)?)
}

/// Read every task's data, `FETCH_CONCURRENCY` at a time, in task order.
pub(crate) async fn read_tasks(
    app: &App,
    tasks: &[Value],
    target: &ChoicesTarget,
    conn: Option<&LsConnection>,
) -> Vec<Result<TaskData, String>> {
    let text = target.kind == config::ObjectKind::Text;
    let root = app.data_root.as_deref();
    let futures: Vec<_> = tasks
        .iter()
        .map(|task| read_one(app, task, target, text, conn, root))
        .collect();
    futures_util::stream::iter(futures)
        .buffered(FETCH_CONCURRENCY)
        .collect()
        .await
}

async fn read_one(
    app: &App,
    task: &Value,
    target: &ChoicesTarget,
    text: bool,
    conn: Option<&LsConnection>,
    root: Option<&Path>,
) -> Result<TaskData, String> {
    let data = task
        .get("data")
        .ok_or_else(|| "the task has no `data`".to_string())?;
    app.labelstudio
        .task_data(data, &target.data_key, text, conn, root)
        .await
}

/// One Label Studio prediction for a label and its calibrated score.
pub(crate) fn prediction(
    target: &ChoicesTarget,
    label_index: usize,
    score: f64,
    model_version: &str,
) -> Value {
    let choice = target
        .choice_for_label
        .get(label_index)
        .cloned()
        .unwrap_or_default();
    let score = if score.is_finite() { score } else { 0.0 };
    json!({
        "result": [{
            "from_name": target.from_name,
            "to_name": target.to_name,
            "type": "choices",
            "value": {"choices": [choice]},
            "score": score,
        }],
        "score": score,
        "model_version": model_version,
    })
}

pub async fn predict(app: &Arc<App>, project_id: i64, req: PredictIn) -> ServiceResult<PredictOut> {
    let project = app.store.get_project(project_id).await?;
    let target = target_for(app, &project, req.label_config.as_deref()).await?;
    let conn = app.store.ls_connection(project_id).await?;
    let predictor = ProjectPredictor::for_project(app, &project).await?;
    let version = predictor.model_version().to_string();
    let data = read_tasks(app, &req.tasks, &target, conn.as_ref()).await;
    let root: Option<Arc<Path>> = app.data_root.as_deref().map(Arc::from);
    let mut inputs = Vec::with_capacity(data.len());
    let mut slots = Vec::with_capacity(data.len());
    for (i, d) in data.iter().enumerate() {
        match d {
            Ok(d) => {
                slots.push(Some(inputs.len()));
                inputs.push(d.input(root.as_ref()));
            }
            Err(why) => {
                tracing::warn!(project = project_id, task = %task_id_text(&req.tasks[i]), reason = %why, "Label Studio task not predicted");
                slots.push(None);
            }
        }
    }
    // "Retrieve predictions" may send thousands of tasks at once: more than
    // a model's queue takes in one request, so they go in slices.
    let mut labeled = Vec::with_capacity(inputs.len());
    let mut rest = inputs;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(app.labelstudio.settings.predict_slice));
        labeled.extend(predictor.predict(rest).await);
        rest = tail;
    }
    let mut results = Vec::with_capacity(req.tasks.len());
    for (i, slot) in slots.iter().enumerate() {
        let out = match slot.and_then(|s| labeled.get(s)) {
            Some(Ok(l)) => match project.labels.iter().position(|x| *x == l.label) {
                Some(k) => prediction(&target, k, l.score, &version),
                None => empty(&version),
            },
            Some(Err(why)) => {
                tracing::warn!(project = project_id, task = %task_id_text(&req.tasks[i]), reason = %why, "Label Studio task not predicted");
                empty(&version)
            }
            None => empty(&version),
        };
        results.push(out);
    }
    remember_tasks(app, project_id, &req.tasks, data);
    Ok(PredictOut {
        results,
        model_version: version,
    })
}

fn empty(version: &str) -> Value {
    json!({"result": [], "score": 0.0, "model_version": version})
}

fn task_id_text(task: &Value) -> String {
    task.get("id")
        .map(|v| v.to_string())
        .unwrap_or_else(|| "?".into())
}

/// Ingest, in the background, the tasks labelloop does not know yet.
fn remember_tasks(
    app: &Arc<App>,
    project_id: i64,
    tasks: &[Value],
    data: Vec<Result<TaskData, String>>,
) {
    let items: Vec<(String, TaskData)> = tasks
        .iter()
        .zip(data)
        .filter_map(|(t, d)| Some((ls_client_id(t.get("id")?.as_i64()?), d.ok()?)))
        .collect();
    if items.is_empty() {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = ingest_new(&app, project_id, items).await {
            tracing::warn!(project = project_id, error = %e, "could not remember Label Studio tasks");
        }
    });
}

/// Ingest those of `items` not in the project yet; returns their job, if any.
pub(crate) async fn ingest_new(
    app: &App,
    project_id: i64,
    items: Vec<(String, TaskData)>,
) -> ServiceResult<Option<i64>> {
    let ids: Vec<String> = items.iter().map(|(c, _)| c.clone()).collect();
    let known: std::collections::HashSet<String> = app
        .store
        .items_by_client_ids(project_id, &ids)
        .await?
        .into_iter()
        .map(|i| i.client_id)
        .collect();
    let new: Vec<IngestItem> = items
        .into_iter()
        .filter(|(c, _)| !known.contains(c))
        .map(|(id, d)| IngestItem {
            id,
            content: match d.content() {
                // Already canonical under the root; ingest checks it again.
                Content::Path(p) => Content::Path(p),
                other => other,
            },
        })
        .collect();
    if new.is_empty() {
        return Ok(None);
    }
    Ok(Some(ingest::ingest(app, project_id, new).await?.job.id))
}
