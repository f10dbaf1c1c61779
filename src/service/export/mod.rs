//! Exporting a project's items as JSON Lines, CSV or a Label Studio task
//! list, a detection project's boxes as COCO or YOLO, and a speech
//! project's segments as RTTM, streamed page by page so a large project
//! never sits in memory.
//!
//! A use case of the service layer: it reads the store and knows the
//! formats; the HTTP handler only passes the query on and wires the stream
//! to the response body. Which boxes an image exports is one rule,
//! [`boxes::exported`], shared by COCO and YOLO (README, "Exports").

mod boxes;
mod coco;
mod hocr;
mod yolo;

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Value};

pub use boxes::BoxSet;

use std::collections::HashMap;

use super::error::{Code, ServiceError, ServiceResult};
use super::regions::{DETECT, LINES, SEGMENTS};
use super::screening::{self, ExportFlags};
use crate::store::{Exclude, ItemRecord, Store};

/// Items read from the store per chunk of output.
const PAGE: i64 = 500;

/// An export's body: chunks of bytes, or the error that ended it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + 'static>>;

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
    /// Detection projects: one COCO instances JSON document.
    Coco,
    /// Detection projects: a zip of YOLO label files and `data.yaml`.
    Yolo,
    /// Speech projects: RTTM, one `SPEAKER` line per final segment.
    Rttm,
    /// OCR projects: one hOCR document, one `ocr_page` per settled page.
    Hocr,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 7] = [
        ExportFormat::Jsonl,
        ExportFormat::Csv,
        ExportFormat::LabelStudio,
        ExportFormat::Coco,
        ExportFormat::Yolo,
        ExportFormat::Rttm,
        ExportFormat::Hocr,
    ];

    /// The `format` query value: `jsonl`, `csv`, `labelstudio`, `coco`, `yolo`, `rttm` or `hocr`.
    pub fn parse(s: &str) -> Option<ExportFormat> {
        ExportFormat::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
            ExportFormat::LabelStudio => "labelstudio",
            ExportFormat::Coco => "coco",
            ExportFormat::Yolo => "yolo",
            ExportFormat::Rttm => "rttm",
            ExportFormat::Hocr => "hocr",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "application/x-ndjson",
            ExportFormat::Csv => "text/csv",
            ExportFormat::LabelStudio | ExportFormat::Coco => "application/json",
            ExportFormat::Yolo => "application/zip",
            ExportFormat::Rttm => "text/plain; charset=utf-8",
            ExportFormat::Hocr => "text/html; charset=utf-8",
        }
    }

    /// Formats that hold boxes only, for detection projects.
    pub fn boxes_only(self) -> bool {
        matches!(self, ExportFormat::Coco | ExportFormat::Yolo)
    }

    /// Every value, for messages: `jsonl, csv, labelstudio, coco, yolo, rttm, hocr`.
    pub fn names() -> String {
        ExportFormat::ALL.map(ExportFormat::as_str).join(", ")
    }
}

/// An export ready to stream: its content type, a file name for the
/// download (the zip), and the body.
pub struct Export {
    pub format: ExportFormat,
    pub content_type: &'static str,
    pub file_name: Option<String>,
    pub body: ByteStream,
}

/// `exclude=`: comma-separated names of [`Exclude::NAMES`] (blanks
/// ignored); any other name is 422 naming `exclude`.
pub fn parse_exclude(words: Option<&str>) -> ServiceResult<Exclude> {
    let mut out = Exclude::default();
    for name in words.unwrap_or_default().split(',').map(str::trim) {
        if !name.is_empty() && !out.set(name) {
            return Err(ServiceError::invalid(
                "exclude",
                format!("{name:?} is not one of {}", Exclude::NAMES.join(", ")),
            ));
        }
    }
    Ok(out)
}

/// Open an export from the query's words: the project (404), the `format`
/// (default `jsonl`; 422 listing the valid ones), the `boxes` set (COCO
/// and YOLO only; default `final`), the flagged items to leave out
/// ([`parse_exclude`]), and a boxes-only format on a project that has no
/// boxes (422 naming the format and the project's task). Items a person
/// rejected (`rejected`) never export. The store is checked before the
/// first byte; a failure later can only end the stream.
pub async fn open(
    store: &Store,
    project_id: i64,
    format: Option<&str>,
    boxes: Option<&str>,
    exclude: Option<&str>,
) -> ServiceResult<Export> {
    let project = store.get_project(project_id).await?;
    let exclude = parse_exclude(exclude)?;
    let name = format.unwrap_or("jsonl");
    let format = ExportFormat::parse(name).ok_or_else(|| {
        ServiceError::invalid(
            "format",
            format!("{name:?} is not one of {}", ExportFormat::names()),
        )
    })?;
    let set = match boxes {
        None => BoxSet::Final,
        Some(b) => {
            let set = BoxSet::parse(b).ok_or_else(|| {
                ServiceError::invalid("boxes", format!("{b:?} is not one of final, machine"))
            })?;
            if !format.boxes_only() {
                return Err(ServiceError::invalid(
                    "boxes",
                    format!(
                        "chooses the boxes of a coco or yolo export; format {} exports every region",
                        format.as_str()
                    ),
                ));
            }
            set
        }
    };
    if format.boxes_only() && project.task != DETECT {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "format {} exports boxes, and project {project_id} is a {:?} project with none: \
                 export it as jsonl, csv or labelstudio",
                format.as_str(),
                project.task
            ),
        ));
    }
    if format == ExportFormat::Rttm && project.task != SEGMENTS {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "format rttm exports speech segments, and project {project_id} is a {:?} project \
                 with none: export it as jsonl, csv or labelstudio",
                project.task
            ),
        ));
    }
    if format == ExportFormat::Hocr && project.task != LINES {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "format hocr exports text lines, and project {project_id} is a {:?} project \
                 with none: export it as jsonl, csv or labelstudio",
                project.task
            ),
        ));
    }
    store.ping().await?;
    let detect = match project.task.as_str() {
        DETECT => Some(DETECT),
        SEGMENTS => Some(SEGMENTS),
        LINES => Some(LINES),
        _ => None,
    };
    let file_name =
        (format == ExportFormat::Yolo).then(|| format!("project-{project_id}-yolo.zip"));
    let body: ByteStream = match format {
        ExportFormat::Coco => coco::stream(store.clone(), project, set, exclude),
        ExportFormat::Yolo => yolo::stream(store.clone(), project, set, exclude),
        _ => Box::pin(stream_items(
            store.clone(),
            project_id,
            format,
            detect,
            exclude,
        )),
    };
    Ok(Export {
        format,
        content_type: format.content_type(),
        file_name,
        body,
    })
}

/// [`open`] with a format already chosen and a detection project's final
/// boxes.
pub async fn start(
    store: &Store,
    project_id: i64,
    format: ExportFormat,
) -> ServiceResult<ByteStream> {
    Ok(open(store, project_id, Some(format.as_str()), None, None)
        .await?
        .body)
}

/// A producer written as plain sequential code, run as its own task,
/// feeding the response through a small bounded channel: memory stays at
/// a few chunks whatever the project's size, and a client that goes away
/// drops the receiver, which stops the producer at its next send.
fn produce<F, Fut>(f: F) -> ByteStream
where
    F: FnOnce(Sink) -> Fut,
    Fut: std::future::Future<Output = Result<(), io::Error>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(2);
    let producer = tokio::spawn(f(Sink(tx.clone())));
    tokio::spawn(async move {
        // A producer that failed, or panicked, ends the body with an error
        // rather than with what would look like a complete export.
        let failure = match producer.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => io::Error::other(format!("the export stopped: {e}")),
        };
        if failure.kind() != io::ErrorKind::BrokenPipe {
            tracing::error!(error = %failure, "export stopped before its end");
        }
        // The receiver may be gone (the client left): nothing to tell.
        let _ = tx.send(Err(failure)).await;
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// Where a producer sends its chunks.
struct Sink(tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>);

impl Sink {
    /// Send a chunk; an error once the client has gone, which ends the producer.
    async fn send(&self, chunk: Vec<u8>) -> Result<(), io::Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.0
            .send(Ok(Bytes::from(chunk)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// A store error as the stream's error: [`produce`] logs it and cuts the
/// body short (a client that already has a 200 learns no more).
fn store_error(e: crate::store::StoreError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Page through the project with the keyset cursor, emitting one chunk per
/// page. A store error ends the stream with that error.
pub fn stream(
    store: Store,
    project_id: i64,
    format: ExportFormat,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    stream_items(store, project_id, format, None, Exclude::default())
}

/// [`stream`], with each item's regions (machine and human, with
/// provenance) for detection and speech projects: in JSONL as the item's
/// `regions`, in Label Studio as `rectanglelabels`
/// ([`boxes::labelstudio_task`]) or `labels` on audio ([`segments_task`]).
fn stream_items(
    store: Store,
    project_id: i64,
    format: ExportFormat,
    regions: Option<&'static str>,
    exclude: Exclude,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    // The state: the cursor, whether this is the first page, and whether
    // the project was screened (asked once, with the first page).
    futures_util::stream::unfold(Some((0i64, true, None)), move |state| {
        let store = store.clone();
        async move {
            let (cursor, first, screened) = state?;
            let screened = match (screened, format) {
                (Some(s), _) => s,
                (None, ExportFormat::Jsonl | ExportFormat::Csv) => {
                    match store.was_screened(project_id).await {
                        Ok(s) => s,
                        Err(e) => return Some((Err(io::Error::other(e.to_string())), None)),
                    }
                }
                (None, _) => false,
            };
            let mut page = match store.export_items(project_id, &exclude, cursor, PAGE).await {
                Ok(p) => p,
                Err(e) => return Some((Err(io::Error::other(e.to_string())), None)),
            };
            let flags = match (screened, page.first(), page.last()) {
                (true, Some(a), Some(b)) => {
                    match store.screen_flags(project_id, a.id, b.id).await {
                        Ok(rows) => Some(screening::export_flags(&rows)),
                        Err(e) => return Some((Err(io::Error::other(e.to_string())), None)),
                    }
                }
                (true, _, _) => Some(Default::default()),
                _ => None,
            };
            if regions.is_some() {
                if let Err(e) = store.attach_regions(&mut page).await {
                    return Some((Err(io::Error::other(e.to_string())), None));
                }
            }
            let next = if page.len() as i64 == PAGE {
                page.last().map(|i| (i.id, false, Some(screened)))
            } else {
                None
            };
            match chunk(
                format,
                &page,
                first,
                next.is_none(),
                regions,
                flags.as_ref(),
            ) {
                Ok(c) if c.is_empty() && next.is_none() => None,
                Ok(c) => Some((Ok(Bytes::from(c)), next)),
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// One page of output; `first` and `last` add the header or array brackets.
/// `task` is the project's region task (`detect`, `segments`, `lines`), or
/// `None` for a classification project. `flags`: a screened project's
/// screening flags per item (JSONL `screening`, CSV
/// [`screening::CSV_COLUMNS`]); `None` for a project never screened, whose
/// export is as before.
fn chunk(
    format: ExportFormat,
    page: &[ItemRecord],
    first: bool,
    last: bool,
    task: Option<&'static str>,
    flags: Option<&HashMap<i64, ExportFlags>>,
) -> io::Result<Vec<u8>> {
    match format {
        ExportFormat::Jsonl => {
            let mut out = Vec::new();
            for item in page {
                match flags {
                    None => serde_json::to_writer(&mut out, item)?,
                    Some(f) => {
                        let mut v = serde_json::to_value(item)?;
                        if let Some(o) = v.as_object_mut() {
                            let mine = f.get(&item.id).cloned().unwrap_or_default();
                            o.insert("screening".into(), serde_json::to_value(mine)?);
                        }
                        serde_json::to_writer(&mut out, &v)?;
                    }
                }
                out.push(b'\n');
            }
            Ok(out)
        }
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            if first {
                match flags {
                    None => w.write_record(CSV_HEADER)?,
                    Some(_) => w.write_record(CSV_HEADER.iter().chain(&screening::CSV_COLUMNS))?,
                }
            }
            for item in page {
                match flags {
                    None => w.write_record(csv_row(item))?,
                    Some(f) => w.write_record(csv_row(item).iter().chain(
                        &screening::csv_cells(item.split.as_deref(), f.get(&item.id)),
                    ))?,
                }
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
                // A recording has a duration once pre-labeled.
                match task {
                    Some(_) if item.duration.is_some() => {
                        serde_json::to_writer(&mut out, &segments_task(item))?
                    }
                    Some(LINES) => serde_json::to_writer(&mut out, &boxes::lines_task(item))?,
                    Some(_) => serde_json::to_writer(&mut out, &boxes::labelstudio_task(item))?,
                    None => serde_json::to_writer(&mut out, &labelstudio_task(item))?,
                }
            }
            if last {
                out.push(b']');
            }
            Ok(out)
        }
        ExportFormat::Rttm => {
            let mut out = Vec::new();
            for item in page {
                rttm_lines(&mut out, item)?;
            }
            Ok(out)
        }
        ExportFormat::Hocr => {
            let mut out = Vec::new();
            if first {
                hocr::header(&mut out)?;
            }
            for item in page {
                hocr::page(&mut out, item)?;
            }
            if last {
                hocr::footer(&mut out)?;
            }
            Ok(out)
        }
        // Not item lists: `open` sends them to their own producers.
        ExportFormat::Coco | ExportFormat::Yolo => Err(io::Error::other(format!(
            "{} is not an item-per-record format",
            format.as_str()
        ))),
    }
}

/// A recording's final segments as RTTM lines, `SPEAKER <file> 1 <start>
/// <duration> <NA> <NA> speech <NA> <NA>`, times in seconds (3 decimals),
/// in time order. `<file>` is the item's client id with white space made
/// `_` (RTTM fields are separated by white space). Only settled recordings
/// (a person reviewed it, or the machine auto-accepted it) export: a
/// recording awaiting review has no final segments yet, and RTTM reads a
/// missing segment as silence. Which segments are final is the boxes' rule,
/// [`boxes::final_regions`].
fn rttm_lines(out: &mut Vec<u8>, item: &ItemRecord) -> io::Result<()> {
    use std::io::Write;
    let settled = item.status == crate::store::Status::Labeled.as_str()
        || item.status == crate::store::Status::AutoAccepted.as_str();
    if !settled {
        return Ok(());
    }
    let file: String = item
        .client_id
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let regions = item.regions.as_deref().unwrap_or_default();
    let mut spans: Vec<crate::region::Span> = boxes::final_regions(regions, BoxSet::Final)
        .filter_map(|r| r.segment)
        .collect();
    spans.sort_by(|a, b| a.start.total_cmp(&b.start));
    for s in spans {
        writeln!(
            out,
            "SPEAKER {file} 1 {:.3} {:.3} <NA> <NA> speech <NA> <NA>",
            s.start,
            s.length()
        )?;
    }
    Ok(())
}

/// A recording as a Label Studio task for `<Labels name="label"
/// toName="audio">` on `<Audio name="audio">`: one `labels` result per
/// segment, `start` and `end` in seconds, as `/predict` sends them
/// ([`SegmentResult`]); machine segments as the prediction, the final ones
/// a person settled as the annotation ([`boxes::region_task`]).
fn segments_task(item: &ItemRecord) -> Value {
    use crate::service::labelstudio::predict::{SegmentResult, SegmentValue};
    let duration = item.duration.unwrap_or(0.0);
    let segment = |r: &crate::store::RegionRecord, id: String, score: Option<f64>| {
        let span = r.segment?;
        serde_json::to_value(SegmentResult {
            id,
            from_name: boxes::LS_FROM_NAME,
            to_name: "audio",
            kind: "labels",
            origin: if score.is_some() {
                "prediction"
            } else {
                "manual"
            },
            original_length: duration,
            value: SegmentValue {
                start: span.start,
                end: span.end,
                channel: 0,
                labels: [r.label.as_str()],
            },
            score: score.filter(|s| s.is_finite()).unwrap_or(1.0),
        })
        .ok()
    };
    boxes::region_task(
        item,
        "span",
        segment,
        json!({"duration": item.duration, "undecided": item.undecided}),
    )
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
