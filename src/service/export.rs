//! Exporting a project's items as JSON Lines, CSV or a Label Studio task
//! list, streamed page by page so a large project never sits in memory.
//!
//! A use case of the service layer: it reads the store and knows the three
//! formats; the HTTP handler only picks the format and wires the stream to
//! the response body.

use std::io;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Value};

use crate::store::{ItemRecord, Store, StoreError};

/// Items read from the store per chunk of output.
const PAGE: i64 = 500;

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 12] = [
    "id",
    "client_id",
    "status",
    "final_label",
    "final_source",
    "pred_label",
    "pred_score",
    "model_version",
    "raw_score",
    "calibration_version",
    "audit",
    // An auto-accepted item's: `calibrated` or `no_guarantee` (a fixed
    // threshold accepted it); empty for every other status.
    "guarantee",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON item record per line.
    Jsonl,
    /// [`CSV_HEADER`] columns, RFC 4180 quoting.
    Csv,
    /// A JSON array of Label Studio tasks.
    LabelStudio,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::Jsonl,
        ExportFormat::Csv,
        ExportFormat::LabelStudio,
    ];

    /// The `format` query value: `jsonl`, `csv` or `labelstudio`.
    pub fn parse(s: &str) -> Option<ExportFormat> {
        ExportFormat::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
            ExportFormat::LabelStudio => "labelstudio",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "application/x-ndjson",
            ExportFormat::Csv => "text/csv",
            ExportFormat::LabelStudio => "application/json",
        }
    }
}

/// Check that the project exists and the store answers, then return its
/// export stream. Failing here lets the caller answer with a proper error
/// status before the first byte; a failure later can only end the stream.
pub async fn start(
    store: &Store,
    project_id: i64,
    format: ExportFormat,
) -> Result<impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static, StoreError> {
    let project = store.get_project(project_id).await?;
    store.ping().await?;
    let regions = project.task == super::regions::DETECT;
    Ok(stream_items(store.clone(), project_id, format, regions))
}

/// Page through the project with the keyset cursor, emitting one chunk per
/// page. A store error ends the stream with that error.
pub fn stream(
    store: Store,
    project_id: i64,
    format: ExportFormat,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    stream_items(store, project_id, format, false)
}

/// [`stream`], with each item's regions (machine and human, with
/// provenance) in JSONL for detection projects. COCO and YOLO exports of
/// the boxes are a later step of issue 22.
fn stream_items(
    store: Store,
    project_id: i64,
    format: ExportFormat,
    regions: bool,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some((0i64, true)), move |state| {
        let store = store.clone();
        async move {
            let (cursor, first) = state?;
            let mut page = match store.list_items(project_id, None, Some(cursor), PAGE).await {
                Ok(p) => p,
                Err(e) => return Some((Err(io::Error::other(e.to_string())), None)),
            };
            if regions && format == ExportFormat::Jsonl {
                if let Err(e) = store.attach_regions(&mut page).await {
                    return Some((Err(io::Error::other(e.to_string())), None));
                }
            }
            let next = if page.len() as i64 == PAGE {
                page.last().map(|i| (i.id, false))
            } else {
                None
            };
            match chunk(format, &page, first, next.is_none()) {
                Ok(c) if c.is_empty() && next.is_none() => None,
                Ok(c) => Some((Ok(Bytes::from(c)), next)),
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// One page of output; `first` and `last` add the header or array brackets.
fn chunk(
    format: ExportFormat,
    page: &[ItemRecord],
    first: bool,
    last: bool,
) -> io::Result<Vec<u8>> {
    match format {
        ExportFormat::Jsonl => {
            let mut out = Vec::new();
            for item in page {
                serde_json::to_writer(&mut out, item)?;
                out.push(b'\n');
            }
            Ok(out)
        }
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            if first {
                w.write_record(CSV_HEADER)?;
            }
            for item in page {
                w.write_record(csv_row(item))?;
            }
            w.into_inner().map_err(|e| e.into_error())
        }
        // Hand-written framing: serde_json serialises a whole array at once,
        // and the tasks arrive one page at a time from an async store.
        ExportFormat::LabelStudio => {
            let mut out = Vec::new();
            if first {
                out.push(b'[');
            }
            for (i, item) in page.iter().enumerate() {
                if !(first && i == 0) {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, &labelstudio_task(item))?;
            }
            if last {
                out.push(b']');
            }
            Ok(out)
        }
    }
}

/// The [`CSV_HEADER`] columns of one item; empty for what it lacks.
fn csv_row(item: &ItemRecord) -> [String; 12] {
    let p = item.prediction.as_ref();
    [
        item.id.to_string(),
        item.client_id.clone(),
        item.status.clone(),
        item.final_label.clone().unwrap_or_default(),
        item.final_source.clone().unwrap_or_default(),
        p.map(|p| p.label.clone()).unwrap_or_default(),
        p.map(|p| p.score.to_string()).unwrap_or_default(),
        p.map(|p| p.model_version.clone()).unwrap_or_default(),
        p.and_then(|p| p.raw_score)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        item.calibration_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
        item.audit.to_string(),
        item.guarantee
            .map(|g| g.as_str().to_string())
            .unwrap_or_default(),
    ]
}

/// A Label Studio task with our prediction as a pre-annotation and human
/// labels as annotations, for a `Choices` control named `label` on `data`.
pub fn labelstudio_task(item: &ItemRecord) -> Value {
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
        "meta": {"status": item.status, "final_label": item.final_label, "final_source": item.final_source,
                 "calibration_version": item.calibration_version, "audit": item.audit,
                 "guarantee": item.guarantee},
        "predictions": predictions,
        "annotations": annotations,
    })
}
