//! Export of a project's labels, streamed page by page.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{Id, Query};
use crate::api::AppState;
use crate::store::ItemRecord;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// jsonl (default), csv or labelstudio.
    format: Option<String>,
}

/// Export labels as jsonl, csv or labelstudio (streamed).
#[utoipa::path(get, path = "/v1/projects/{id}/export", tag = "export",
    params(("id" = i64, Path, description = "Project id"), ExportQuery),
    responses((status = 200, description = "The export, streamed", content_type = "application/x-ndjson", body = String),
              (status = 422, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let project = state.store.get_project(project_id).await?;
    let format = q.format.unwrap_or_else(|| "jsonl".to_string());
    let content_type = match format.as_str() {
        "jsonl" => "application/x-ndjson",
        "csv" => "text/csv",
        "labelstudio" => "application/json",
        other => {
            return Err(ApiError::invalid(
                "format",
                format!("{other:?} is not one of jsonl, csv, labelstudio"),
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
