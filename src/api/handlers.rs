//! Route handlers: translate HTTP to store and service calls, and back.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, Body, Id};
use super::AppState;
use crate::model::batcher::BatchError;
use crate::model::Input;
use crate::store::{Content, ItemRecord, Job, NewItem, NewProject, ProjectSettings, Status};

// ---- operations -------------------------------------------------------------

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.ping().await;
    let models: Vec<&str> = state.hub.names().collect();
    let ready = store.is_ok() && !models.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": {"backend": state.store.backend(), "ok": store.is_ok(), "error": store.err().map(|e| e.to_string())},
        "models": models,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let batchers: Vec<(String, u64, u64)> = state
        .hub
        .iter()
        .map(|(name, m)| {
            let s = m.batcher.stats();
            (
                name.clone(),
                s.batches.load(std::sync::atomic::Ordering::Relaxed) as u64,
                s.items.load(std::sync::atomic::Ordering::Relaxed) as u64,
            )
        })
        .collect();
    let text = state.metrics.render(state.hub.queue_depth(), &batchers);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

// ---- projects ---------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    model: String,
    labels: Option<Vec<String>>,
    precision_target: Option<f64>,
    threshold: Option<f64>,
    settings: Option<ProjectSettings>,
    /// Extra models with the same label set, for ensemble disagreement.
    committee: Option<Vec<String>>,
}

pub async fn create_project(
    State(state): State<AppState>,
    Body(body): Body,
) -> ApiResult<Response> {
    let req: CreateProject = parse_json(&body)?;
    if req.name.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "field `name`: must not be empty",
        ));
    }
    let model = loaded_model(&state, "model", &req.model)?;
    let model_labels = model.labels().to_vec();
    let labels = if model_labels.is_empty() {
        // An embedding model: the project brings its own labels and a head
        // is trained from the first corrections (cold start).
        let labels = req.labels.clone().unwrap_or_default();
        let unique: std::collections::HashSet<&String> = labels.iter().collect();
        if labels.len() < 2 || unique.len() != labels.len() {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!(
                    "field `labels`: model {:?} gives embeddings only, so give at least two distinct labels; a head is trained from the first annotations",
                    req.model
                ),
            ));
        }
        labels
    } else {
        if let Some(labels) = &req.labels {
            let mut a = labels.clone();
            let mut b = model_labels.clone();
            a.sort();
            b.sort();
            if a != b {
                let unknown: Vec<&String> = labels
                    .iter()
                    .filter(|l| !model_labels.contains(l))
                    .collect();
                return Err(ApiError::unprocessable(
                    "labels_mismatch",
                    format!(
                        "field `labels` must be the model's label set {model_labels:?}; unknown or missing labels (unknown: {unknown:?})"
                    ),
                ));
            }
        }
        model_labels
    };
    if let Some(settings) = &req.settings {
        validate_settings(settings)?;
    }
    let committee = req.committee.unwrap_or_default();
    validate_committee(&state, &req.model, &labels, &committee)?;
    let precision_target = req.precision_target.unwrap_or(0.95);
    if !(0.0..=1.0).contains(&precision_target) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "field `precision_target`: must be in [0, 1]",
        ));
    }
    let threshold = req.threshold.unwrap_or(state.config.default_threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "field `threshold`: must be in [0, 1]",
        ));
    }
    let project = state
        .store
        .create_project(&NewProject {
            name: req.name,
            model: req.model,
            labels,
            precision_target,
            threshold,
            settings: req.settings.unwrap_or_default(),
            committee,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(project)).into_response())
}

/// The loaded model `name`, or a 422 naming `field` and the models that are loaded.
fn loaded_model<'a>(
    state: &'a AppState,
    field: &str,
    name: &str,
) -> ApiResult<&'a crate::service::hub::LoadedModel> {
    state.hub.get(name).ok_or_else(|| {
        let known: Vec<&str> = state.hub.names().collect();
        ApiError::unprocessable(
            "unknown_model",
            format!(
                "field `{field}`: no loaded model {name:?}; loaded: {}",
                known.join(", ")
            ),
        )
    })
}

/// Every committee member is loaded, distinct, not the project's own model,
/// and classifies into exactly the project's labels (disagreement compares
/// distributions label by label).
fn validate_committee(
    state: &AppState,
    model: &str,
    labels: &[String],
    committee: &[String],
) -> ApiResult<()> {
    let mut want = labels.to_vec();
    want.sort();
    for (i, name) in committee.iter().enumerate() {
        if name == model || committee[..i].contains(name) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("field `committee[{i}]`: {name:?} is already in the project; list each extra model once"),
            ));
        }
        let member = loaded_model(state, &format!("committee[{i}]"), name)?;
        let mut have = member.labels().to_vec();
        have.sort();
        if have != want {
            return Err(ApiError::unprocessable(
                "labels_mismatch",
                format!(
                    "field `committee[{i}]`: model {name:?} classifies into {:?}, the project into {labels:?}; committee members need the same label set",
                    member.labels()
                ),
            ));
        }
    }
    Ok(())
}

pub async fn list_projects(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"projects": state.store.list_projects().await?}),
    ))
}

pub async fn get_project(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.store.get_project(id).await?)))
}

// ---- items ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemIn {
    id: IdValue,
    text: Option<String>,
    /// base64
    image: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    S(String),
    N(i64),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::S(s) => s,
            IdValue::N(n) => n.to_string(),
        }
    }
}

pub async fn ingest(
    State(state): State<AppState>,
    Id(project_id): Id,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let project = state.store.get_project(project_id).await?;
    let model = state.hub.get(&project.model).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "the project's model {:?} is not loaded on this server",
            project.model
        ))
    })?;
    let text_model = model.model.is_text();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let items = if content_type.starts_with("multipart/form-data") {
        let multipart = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
        read_multipart(multipart, state.config.max_body_bytes).await?
    } else {
        let Body(body) = Body::from_request(request, &state).await?;
        parse_items(&body, &content_type)?
    };
    if items.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_batch",
            "the body holds no items",
        ));
    }
    let mut new_items = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let id = item.id.into_string();
        if id.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("field `[{i}].id`: must not be empty"),
            ));
        }
        let content = match (item.text, item.image, item.path) {
            (Some(t), None, None) => Content::Text(t),
            (None, Some(b64), None) => Content::Image(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        ApiError::unprocessable(
                            "invalid_field",
                            format!("field `[{i}].image`: not base64: {e}"),
                        )
                    })?,
            ),
            (None, None, Some(p)) => Content::Path(resolve_path(&state, &p, i)?),
            _ => {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!(
                    "item [{i}] ({id:?}): give exactly one of `text`, `image` (base64) or `path`"
                ),
                ))
            }
        };
        let is_text = matches!(content, Content::Text(_));
        if is_text != text_model {
            return Err(ApiError::unprocessable(
                "wrong_content",
                format!(
                    "item [{i}] ({id:?}): the project's model {:?} takes {}",
                    project.model,
                    if text_model {
                        "`text`"
                    } else {
                        "images (`image` or `path`)"
                    }
                ),
            ));
        }
        if seen.insert(id.clone()) {
            new_items.push(NewItem {
                client_id: id,
                content,
            });
        }
    }
    let result = state.store.ingest(project_id, &new_items).await?;
    state.wake_workers.notify_waiters();
    let job = state.store.get_job(result.job_id).await?;
    let body = json!({"job": job_view(&job), "inserted": result.inserted, "duplicates": result.duplicates});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

use axum::extract::FromRequest;

fn parse_items(body: &Bytes, content_type: &str) -> ApiResult<Vec<ItemIn>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'[') && !content_type.contains("ndjson") {
        return parse_json::<Vec<ItemIn>>(body);
    }
    // NDJSON: one object per line; errors name the line.
    let mut items = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = parse_json::<ItemIn>(line).map_err(|e| match e {
            ApiError::BadRequest { code, message } => ApiError::BadRequest {
                code,
                message: format!("line {}: {message}", n + 1),
            },
            ApiError::Unprocessable { code, message } => ApiError::Unprocessable {
                code,
                message: format!("line {}: {message}", n + 1),
            },
            other => other,
        })?;
        items.push(item);
    }
    Ok(items)
}

async fn read_multipart(mut mp: axum::extract::Multipart, limit: usize) -> ApiResult<Vec<ItemIn>> {
    let mut items = Vec::new();
    let mut total = 0usize;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?
    {
        let id = field
            .file_name()
            .or(field.name())
            .map(str::to_string)
            .unwrap_or_else(|| format!("part-{}", items.len()));
        let data = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::bad_request("bad_multipart", e.body_text())
            }
        })?;
        total += data.len();
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        items.push(ItemIn {
            id: IdValue::S(id),
            text: None,
            image: Some(base64::engine::general_purpose::STANDARD.encode(&data)),
            path: None,
        });
    }
    Ok(items)
}

/// A `path` item must resolve inside the data root; nothing outside is ever
/// opened, and the file itself is only read when the item is labeled.
fn resolve_path(state: &AppState, raw: &str, i: usize) -> ApiResult<String> {
    let Some(root) = &state.config.data_root else {
        return Err(ApiError::Forbidden(format!(
            "item [{i}]: `path` items are disabled; start the server with --data-root to allow a folder"
        )));
    };
    let p = Path::new(raw);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ApiError::Forbidden(format!(
            "item [{i}]: path {raw:?} leaves the data root"
        )));
    }
    let joined: PathBuf = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    if !joined.starts_with(root) {
        return Err(ApiError::Forbidden(format!(
            "item [{i}]: path {raw:?} is outside the data root"
        )));
    }
    // Resolve symlinks; a link pointing out of the root is refused too.
    let real = joined.canonicalize().map_err(|_| {
        ApiError::unprocessable(
            "path_not_found",
            format!("item [{i}]: no file at {raw:?} under the data root"),
        )
    })?;
    if !real.starts_with(root) {
        return Err(ApiError::Forbidden(format!(
            "item [{i}]: path {raw:?} is outside the data root"
        )));
    }
    Ok(real.to_string_lossy().into_owned())
}

pub async fn list_items(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    state.store.get_project(project_id).await?;
    let status = match q.get("status") {
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_field",
                format!("query `status`: {s:?} is not one of pending, auto_accepted, needs_review, labeled, failed"),
            )
        })?),
        None => None,
    };
    let cursor = parse_num(&q, "cursor")?;
    let limit = parse_num(&q, "limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "query `limit`: must be 1..=1000",
        ));
    }
    let items = state
        .store
        .list_items(project_id, status, cursor, limit)
        .await?;
    let next = if items.len() as i64 == limit {
        items.last().map(|i| i.id)
    } else {
        None
    };
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

fn parse_num(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<i64>> {
    q.get(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::unprocessable(
                    "invalid_field",
                    format!("query `{key}`: {v:?} is not an integer"),
                )
            })
        })
        .transpose()
}

pub async fn get_item(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<ItemRecord>> {
    Ok(Json(state.store.get_item(id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationIn {
    label: String,
    annotator: String,
}

pub async fn annotate(
    State(state): State<AppState>,
    Id(item_id): Id,
    Body(body): Body,
) -> ApiResult<Response> {
    let req: AnnotationIn = parse_json(&body)?;
    if req.annotator.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "field `annotator`: must not be empty",
        ));
    }
    let item = state.store.get_item(item_id).await?;
    let project = state.store.get_project(item.project_id).await?;
    if !project.labels.contains(&req.label) {
        return Err(ApiError::unprocessable(
            "unknown_label",
            format!(
                "field `label`: {:?} is not in the project's label set {:?}",
                req.label, project.labels
            ),
        ));
    }
    // Tiers: a lower tier's label on an item in the top tier's band waits
    // for a top-tier confirmation when the project asks for it.
    let settings = &project.settings;
    let mut pending_confirmation = false;
    if settings.require_expert_confirmation && !settings.tiers.is_empty() {
        let top = settings.top_tier().unwrap_or_default();
        let tier = state
            .store
            .annotator_tier(&req.annotator)
            .await?
            .filter(|t| settings.band(t).is_some())
            .or_else(|| settings.lowest_tier())
            .unwrap_or_default();
        if tier != top {
            let measure = settings
                .tier_measure
                .as_deref()
                .and_then(crate::store::Measure::parse)
                .unwrap_or(crate::store::Measure::Margin);
            let u = state.store.item_uncertainty(item_id, measure).await?;
            if let (Some(u), Some((lo, _))) = (u, settings.band(&top)) {
                pending_confirmation = u >= lo;
            }
        }
    }
    if pending_confirmation {
        state
            .store
            .annotate_pending_confirmation(item_id, &req.label, &req.annotator)
            .await?;
    } else {
        state
            .store
            .annotate(item_id, &req.label, &req.annotator)
            .await?;
    }
    if let Some(every) = settings.train_every {
        let base = state
            .hub
            .get(&project.model)
            .map(|m| m.model.version().to_string())
            .unwrap_or_default();
        crate::service::learn::maybe_autotrain(
            state.store.clone(),
            project.id,
            every,
            base,
            state.wake_workers.clone(),
        );
    }
    Ok((
        StatusCode::CREATED,
        Json(state.store.get_item(item_id).await?),
    )
        .into_response())
}

// ---- jobs -------------------------------------------------------------------

fn job_view(job: &Job) -> Value {
    // Rate over the time workers spent on it, not time spent queued behind other jobs.
    let start = job.started_at.unwrap_or(job.created_at);
    let elapsed = ((job.finished_at.unwrap_or(job.updated_at) - start) as f64 / 1000.0).max(0.001);
    let handled = job.done + job.errors;
    let rate = handled as f64 / elapsed;
    let remaining = (job.total - handled).max(0);
    json!({
        "id": job.id,
        "project_id": job.project_id,
        "state": job.state,
        "total": job.total,
        "done": job.done,
        "errors": job.errors,
        "rate_per_sec": if handled > 0 { rate } else { 0.0 },
        "eta_secs": if handled > 0 && rate > 0.0 { Some(remaining as f64 / rate) } else { None },
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    })
}

pub async fn get_job(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Value>> {
    Ok(Json(job_view(&state.store.get_job(id).await?)))
}

// ---- predict ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictIn {
    model: String,
    items: Vec<PredictItem>,
    #[serde(default)]
    embeddings: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictItem {
    id: Option<IdValue>,
    text: Option<String>,
    image: Option<String>,
}

pub async fn predict(State(state): State<AppState>, Body(body): Body) -> ApiResult<Response> {
    let req: PredictIn = parse_json(&body)?;
    let model = state.hub.get(&req.model).ok_or_else(|| {
        ApiError::unprocessable(
            "unknown_model",
            format!("field `model`: no loaded model {:?}", req.model),
        )
    })?;
    if req.items.len() > state.config.predict_max_items {
        return Err(ApiError::unprocessable(
            "too_many_items",
            format!(
                "{} items, over the limit of {} for /v1/predict; use POST /v1/projects/{{id}}/items for batch jobs",
                req.items.len(),
                state.config.predict_max_items
            ),
        ));
    }
    let mut ids = Vec::with_capacity(req.items.len());
    let mut inputs = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        ids.push(
            item.id
                .map(IdValue::into_string)
                .unwrap_or_else(|| i.to_string()),
        );
        inputs.push(match (item.text, item.image) {
            (Some(t), None) => Input::Text(t),
            (None, Some(b64)) => Input::Image(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        ApiError::unprocessable(
                            "invalid_field",
                            format!("field `items[{i}].image`: not base64: {e}"),
                        )
                    })?,
            ),
            _ => {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!("items[{i}]: give exactly one of `text` or `image` (base64)"),
                ))
            }
        });
    }
    let results = model.predict_many(inputs).await;
    if results
        .iter()
        .any(|r| matches!(r, Err(BatchError::Busy { .. })))
    {
        return Err(ApiError::Busy(
            "the model's batch queue is full; retry shortly".into(),
        ));
    }
    let mut out = Vec::with_capacity(results.len());
    for (id, r) in ids.iter().zip(&results) {
        out.push(match r {
            Ok(pred) => PredictOut::Predicted(model.to_out(id, pred, req.embeddings)),
            Err(BatchError::Item(e)) => PredictOut::Failed {
                id,
                error: ItemErrorOut {
                    code: e.code(),
                    message: e.to_string(),
                },
            },
            Err(e) => return Err(ApiError::Unavailable(e.to_string())),
        });
    }
    // Serialised here, while `out` can still borrow the results.
    Ok(Json(PredictResponse {
        model: &req.model,
        predictions: out,
    })
    .into_response())
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    predictions: Vec<PredictOut<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PredictOut<'a> {
    Predicted(crate::service::hub::PredictionOut<'a>),
    Failed { id: &'a str, error: ItemErrorOut },
}

#[derive(Serialize)]
struct ItemErrorOut {
    code: &'static str,
    message: String,
}

// ---- export -----------------------------------------------------------------

pub async fn export(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let project = state.store.get_project(project_id).await?;
    let format = q
        .get("format")
        .map(String::as_str)
        .unwrap_or("jsonl")
        .to_string();
    let content_type = match format.as_str() {
        "jsonl" => "application/x-ndjson",
        "csv" => "text/csv",
        "labelstudio" => "application/json",
        other => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("query `format`: {other:?} is not one of jsonl, csv, labelstudio"),
            ))
        }
    };
    // Fail before the first byte if the store is down; later failures end the stream.
    state.store.ping().await?;
    let store = state.store.clone();
    let stream = async_stream(store, project_id, project.labels.len(), format);
    let body = axum::body::Body::from_stream(stream);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Page through the project with the keyset cursor, emitting one chunk per page.
fn async_stream(
    store: crate::store::Store,
    project_id: i64,
    _labels: usize,
    format: String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold((Some(0i64), true), move |(cursor, first)| {
        let store = store.clone();
        let format = format.clone();
        async move {
            let cursor = cursor?;
            let page = match store.list_items(project_id, None, Some(cursor), 500).await {
                Ok(p) => p,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), (None, false))),
            };
            let mut chunk = String::new();
            if first && format == "csv" {
                chunk.push_str("id,client_id,status,final_label,final_source,pred_label,pred_score,model_version\n");
            }
            if first && format == "labelstudio" {
                chunk.push('[');
            }
            for (i, item) in page.iter().enumerate() {
                match format.as_str() {
                    "csv" => chunk.push_str(&csv_line(item)),
                    "labelstudio" => {
                        if !(first && i == 0) {
                            chunk.push(',');
                        }
                        chunk.push_str(&labelstudio_task(item).to_string());
                    }
                    _ => {
                        chunk.push_str(&json!(item).to_string());
                        chunk.push('\n');
                    }
                }
            }
            let next = if page.len() == 500 {
                page.last().map(|i| i.id)
            } else {
                None
            };
            if next.is_none() && format == "labelstudio" {
                chunk.push(']');
            }
            if chunk.is_empty() && next.is_none() {
                return None;
            }
            Some((Ok(Bytes::from(chunk)), (next, false)))
        }
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(item: &ItemRecord) -> String {
    let p = item.prediction.as_ref();
    format!(
        "{},{},{},{},{},{},{},{}\n",
        item.id,
        csv_field(&item.client_id),
        item.status,
        csv_field(item.final_label.as_deref().unwrap_or("")),
        item.final_source.as_deref().unwrap_or(""),
        csv_field(p.map(|p| p.label.as_str()).unwrap_or("")),
        p.map(|p| p.score.to_string()).unwrap_or_default(),
        csv_field(p.map(|p| p.model_version.as_str()).unwrap_or("")),
    )
}

/// A Label Studio task with our prediction as a pre-annotation and human
/// labels as annotations, for a `Choices` control named `label` on `data`.
fn labelstudio_task(item: &ItemRecord) -> Value {
    let choice = |label: &str| json!([{"from_name": "label", "to_name": "data", "type": "choices", "value": {"choices": [label]}}]);
    let predictions: Vec<Value> = item
        .prediction
        .iter()
        .map(|p| json!({"model_version": p.model_version, "score": p.score, "result": choice(&p.label)}))
        .collect();
    let annotations: Vec<Value> = item
        .annotations
        .iter()
        .map(|a| json!({"completed_by": a.annotator, "result": choice(&a.label)}))
        .collect();
    json!({
        "id": item.id,
        "data": {"id": item.client_id},
        "meta": {"status": item.status, "final_label": item.final_label, "final_source": item.final_source},
        "predictions": predictions,
        "annotations": annotations,
    })
}

pub(super) fn validate_settings(s: &ProjectSettings) -> ApiResult<()> {
    let mut names = std::collections::HashSet::new();
    for t in &s.tiers {
        if t.name.trim().is_empty() || !names.insert(t.name.as_str()) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "field `settings.tiers`: tier names must be distinct and non-empty",
            ));
        }
        if !(0.0..=1.0).contains(&t.min_uncertainty) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "field `settings.tiers[].min_uncertainty`: must be in [0, 1]",
            ));
        }
    }
    if let Some(m) = &s.tier_measure {
        if crate::store::Measure::parse(m).is_none() {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "field `settings.tier_measure`: one of least_confidence, margin, entropy, vote_entropy, mean_kl",
            ));
        }
    }
    Ok(())
}
