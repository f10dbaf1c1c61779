//! Export of a project's labels, streamed page by page (`service::export`).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{Id, Query};
use crate::api::AppState;
use crate::service::export;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// jsonl (default), csv, labelstudio, coco, yolo, rttm or hocr.
    #[param(schema_with = format_schema)]
    format: Option<String>,
    /// coco and yolo: final (default) or machine.
    #[param(schema_with = boxes_schema)]
    boxes: Option<String>,
    /// Flagged items to leave out, comma-separated: duplicates, leaked,
    /// outliers, quality, pii, conflicts, held.
    #[param(example = "duplicates,leaked")]
    exclude: Option<String>,
}

fn format_schema() -> utoipa::openapi::Object {
    crate::json_shape::string_enum(
        export::ExportFormat::ALL.map(|f| f.as_str().to_string()),
        "jsonl (default), csv or labelstudio: every item; coco or yolo: a detection project's \
         boxes (422 on other projects); rttm: a speech project's final segments (422 on other \
         projects); hocr: an OCR project's final text lines, one HTML document (422 on other \
         projects).",
    )
}

fn boxes_schema() -> utoipa::openapi::Object {
    crate::json_shape::string_enum(
        ["final", "machine"].map(str::to_string),
        "coco and yolo only. final (default): each image's final boxes, of the images a person \
         reviewed or the machine auto-accepted; images awaiting review are left out. machine: \
         every box the model proposed on every pre-labeled image, with its score.",
    )
}

/// Export labels as jsonl, csv, labelstudio, coco, yolo, rttm or hocr (streamed).
///
/// A detection project's JSONL lines carry each item's `width`, `height`
/// and `regions`; its Label Studio tasks carry `rectanglelabels`
/// predictions (machine boxes, with scores) and annotations (the
/// reviewer's boxes). `coco` is one COCO instances document whose
/// annotations keep their provenance under `labelloop`; `yolo` is a zip of
/// `labels/<stem>.txt`, `data.yaml`, `train.txt` and `items.csv`. A speech
/// project's JSONL lines carry each recording's `duration`, `undecided`
/// seconds and `regions` (segments as `"segment": [start, end]`); `rttm`
/// is one `SPEAKER <file> 1 <start> <duration> <NA> <NA> speech <NA> <NA>`
/// line per final segment of each settled recording. An OCR project's
/// JSONL regions carry each line's `text`; its Label Studio tasks carry
/// per line a `rectanglelabels` and a `textarea` result sharing one region
/// id; `hocr` is one hOCR document, an `ocr_page` per settled page with
/// `ocr_line` spans (`bbox x0 y0 x1 y1; x_wconf NN`).
///
/// Every format leaves out the items a person rejected (status
/// `rejected`), and the flagged items `exclude` names, by the project's
/// last screen: `duplicates` (the members of a duplicate group other than
/// its representative), `leaked`, `outliers`, `quality`, `pii`,
/// `conflicts`, `held`; an unknown name is 422 naming `exclude`.
#[utoipa::path(get, path = "/v1/projects/{id}/export", tag = "export",
    params(("id" = i64, Path, description = "Project id", example = 1), ExportQuery),
    responses((status = 200, description = "The export, streamed: JSON lines, CSV, Label Studio's task list or a COCO document (JSON), or a YOLO dataset (zip)", content(
                (String = "application/x-ndjson"), (String = "text/csv"),
                (serde_json::Value = "application/json"), (String = "application/zip"),
                (String = "text/plain"), (String = "text/html"))),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let out = export::open(
        &state.store,
        project_id,
        q.format.as_deref(),
        q.boxes.as_deref(),
        q.exclude.as_deref(),
    )
    .await?;
    let mut response = (
        [(header::CONTENT_TYPE, out.content_type)],
        axum::body::Body::from_stream(out.body),
    )
        .into_response();
    if let Some(name) = out.file_name {
        if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}
