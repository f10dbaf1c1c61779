//! `/predict`: every task of the request through the project's predictor
//! in one batched call (the path `/v1/predict` uses), one result per task,
//! in task order. A task that fails (no data key, an image that cannot be
//! fetched, a refused host, an undecodable image) gets an empty result and
//! its reason in the log; the others still get predictions.
//!
//! Tasks labelloop has not seen are then ingested in the background (keyed
//! by task id), so the annotations Label Studio sends later land on items
//! that have embeddings for the head.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{self, ChoicesTarget};
use super::fetch::{PathCheck, Read, TaskData};
use crate::model::detect::Detections;
use crate::region::BoxPx;
use crate::service::app::App;
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::ingest::{self, IngestItem};
use crate::service::predictor::{Labeled, Labeler as ProjectPredictor};
use crate::store::{ls_client_id, Content, LsConnection};

/// Tasks fetched at once from Label Studio.
const FETCH_CONCURRENCY: usize = 32;

/// What Label Studio sends to `/predict`. Its `project` and `params`
/// (login, context) are accepted and skipped without being built.
#[derive(Debug, Deserialize)]
pub struct PredictIn {
    pub tasks: Vec<Value>,
    #[serde(default)]
    pub project: Option<IgnoredAny>,
    #[serde(default)]
    pub label_config: Option<String>,
    #[serde(default)]
    pub params: Option<IgnoredAny>,
}

/// `/predict`'s answer: one prediction per task, in task order. Typed and
/// borrowed, so a request of a thousand tasks serialises without building a
/// JSON tree.
#[derive(Debug, Serialize)]
pub struct PredictOut<'a> {
    pub results: Vec<LsPrediction<'a>>,
    pub model_version: &'a str,
}

/// One Label Studio prediction: a `choices` result with its score, a
/// `rectanglelabels` result per box, or no result at all for a task that
/// could not be predicted.
#[derive(Debug, Serialize)]
pub struct LsPrediction<'a> {
    /// The task it belongs to, for predictions imported through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<i64>,
    pub result: LsResults<'a>,
    pub score: f64,
    pub model_version: &'a str,
}

/// A prediction's `result` list.
#[derive(Debug)]
pub enum LsResults<'a> {
    Choice(Option<ChoiceResult<'a>>),
    Boxes(Vec<RectangleResult<'a>>),
    Segments(Vec<SegmentResult<'a>>),
    /// An OCR page's lines: per line the results sharing its region id
    /// (`lines::line_results`).
    Lines(Vec<Value>),
}

impl Serialize for LsResults<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LsResults::Choice(c) => s.collect_seq(c.iter()),
            LsResults::Boxes(b) => s.collect_seq(b.iter()),
            LsResults::Segments(g) => s.collect_seq(g.iter()),
            LsResults::Lines(l) => s.collect_seq(l.iter()),
        }
    }
}

/// One box as Label Studio draws it: top-left corner and size in percent
/// of the original image, with that image's size, so its editor puts the
/// box where the model saw it (see [`crate::region::BoxPx::to_label_studio`]).
#[derive(Debug, Serialize)]
pub struct RectangleResult<'a> {
    /// Region id, unique within the prediction.
    pub id: String,
    pub from_name: &'a str,
    pub to_name: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub original_width: u32,
    pub original_height: u32,
    pub image_rotation: u32,
    pub value: RectangleValue<'a>,
    /// The model's score for a predicted box; absent on a person's box.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl<'a> RectangleResult<'a> {
    /// **The one conversion of a stored box to Label Studio**, for
    /// `/predict`, the sync and the export: `bbox` (pixels of the original
    /// `width` × `height` image) as top-left and size in percent
    /// ([`BoxPx::to_label_studio`]), rotation 0, with the image size. None
    /// for an image of size 0, where percent means nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        from_name: &'a str,
        to_name: &'a str,
        label: &'a str,
        bbox: &BoxPx,
        width: u32,
        height: u32,
        score: Option<f64>,
    ) -> Option<RectangleResult<'a>> {
        let rect = bbox.to_label_studio(width, height).ok()?;
        Some(RectangleResult {
            id,
            from_name,
            to_name,
            kind: "rectanglelabels",
            original_width: width,
            original_height: height,
            image_rotation: 0,
            value: RectangleValue {
                x: rect.x,
                y: rect.y,
                width: rect.width,
                height: rect.height,
                rotation: 0.0,
                rectanglelabels: [label],
            },
            score,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct RectangleValue<'a> {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub rotation: f64,
    pub rectanglelabels: [&'a str; 1],
}

/// One speech segment as Label Studio's `<Labels>` on `<Audio>` holds it:
/// `start` and `end` in seconds from the recording's start (never samples
/// or percent), channel 0, the recording's length as `original_length`.
#[derive(Debug, Serialize)]
pub struct SegmentResult<'a> {
    /// `m<region id>`: the stored machine region, so that an annotation
    /// keeping or moving it names the region it came from.
    pub id: String,
    pub from_name: &'a str,
    pub to_name: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub origin: &'static str,
    pub original_length: f64,
    pub value: SegmentValue<'a>,
    pub score: f64,
}

#[derive(Debug, Serialize)]
pub struct SegmentValue<'a> {
    pub start: f64,
    pub end: f64,
    pub channel: u32,
    pub labels: [&'a str; 1],
}

#[derive(Debug, Serialize)]
pub struct ChoiceResult<'a> {
    pub from_name: &'a str,
    pub to_name: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: Choices<'a>,
    pub score: f64,
}

#[derive(Debug, Serialize)]
pub struct Choices<'a> {
    pub choices: [&'a str; 1],
}

impl<'a> LsPrediction<'a> {
    /// The prediction of `label_index` (a project label) with its calibrated score.
    pub fn of(
        target: &'a ChoicesTarget,
        label_index: usize,
        score: f64,
        model_version: &'a str,
    ) -> LsPrediction<'a> {
        let choice = target
            .choice_for_label
            .get(label_index)
            .map_or("", String::as_str);
        let score = if score.is_finite() { score } else { 0.0 };
        LsPrediction {
            task: None,
            result: LsResults::Choice(Some(ChoiceResult {
                from_name: &target.from_name,
                to_name: &target.to_name,
                kind: "choices",
                value: Choices { choices: [choice] },
                score,
            })),
            score,
            model_version,
        }
    }

    /// A detector's boxes as `rectanglelabels` results (a detection project's
    /// labels are its model's). `region_ids[i]`, when given, is box i's
    /// stored machine region: its result id `m<id>` lets the annotation
    /// Label Studio sends back name the region a kept box came from.
    pub fn of_boxes(
        target: &'a ChoicesTarget,
        boxes: &Detections,
        region_ids: &[i64],
        score: f64,
        model_version: &'a str,
    ) -> LsPrediction<'a> {
        let results = boxes
            .boxes
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let label = target.choice_for_label.get(d.class)?;
                RectangleResult::new(
                    match region_ids.get(i) {
                        Some(id) => format!("m{id}"),
                        None => format!("ll-{i}"),
                    },
                    &target.from_name,
                    &target.to_name,
                    label,
                    &BoxPx::from(d.bbox),
                    boxes.width,
                    boxes.height,
                    Some(f64::from(d.score)),
                )
            })
            .collect();
        LsPrediction {
            task: None,
            result: LsResults::Boxes(results),
            score: if score.is_finite() { score } else { 0.0 },
            model_version,
        }
    }

    /// A recording's stored machine segments as `labels` results (see
    /// [`SegmentResult`]); the prediction's score is its weakest segment's
    /// (the one that decides whether a person listens), or for a recording
    /// with no segment the share of it the model was decided on.
    pub fn of_segments(
        target: &'a ChoicesTarget,
        labels: &[String],
        rec: &super::segments::Recording,
        model_version: &'a str,
    ) -> LsPrediction<'a> {
        let results: Vec<SegmentResult<'a>> = rec
            .segments
            .iter()
            .filter_map(|g| {
                let k = labels.iter().position(|l| *l == g.label)?;
                let label = target.choice_for_label.get(k)?;
                Some(SegmentResult {
                    id: format!("m{}", g.id),
                    from_name: &target.from_name,
                    to_name: &target.to_name,
                    kind: "labels",
                    origin: "prediction",
                    original_length: rec.duration,
                    value: SegmentValue {
                        start: g.span.start,
                        end: g.span.end,
                        channel: 0,
                        labels: [label],
                    },
                    score: if g.score.is_finite() { g.score } else { 0.0 },
                })
            })
            .collect();
        LsPrediction {
            task: None,
            result: LsResults::Segments(results),
            score: rec.score(),
            model_version,
        }
    }

    /// A page's stored machine lines (see [`super::lines`]); the
    /// prediction's score is its weakest line's.
    pub fn of_lines(
        target: &ChoicesTarget,
        page: &super::lines::Page,
        model_version: &'a str,
    ) -> LsPrediction<'a> {
        LsPrediction {
            task: None,
            result: LsResults::Lines(super::lines::page_results(target, page)),
            score: page.score(),
            model_version,
        }
    }

    /// What a task that could not be predicted gets.
    pub fn empty(model_version: &'a str) -> LsPrediction<'a> {
        LsPrediction {
            task: None,
            result: LsResults::Choice(None),
            score: 0.0,
            model_version,
        }
    }
}

/// The labeling config in force: the request's, else the one `/setup` kept.
pub(crate) async fn target_for(
    app: &App,
    project: &crate::store::Project,
    given: Option<&str>,
) -> ServiceResult<Arc<ChoicesTarget>> {
    let wanted = super::wanted(app, project)?;
    if let Some(xml) = given.filter(|s| !s.trim().is_empty()) {
        return app.labelstudio.cache.target(project, xml, wanted).await;
    }
    let stored = app.store.ls_label_config(project.id).await?;
    let xml = stored.as_deref().ok_or_else(|| {
        ServiceError::invalid(
            "label_config",
            "no labeling config in the request, and none from /setup",
        )
    })?;
    app.labelstudio.cache.target(project, xml, wanted).await
}

/// Read every task's data in task order: what is at hand (text, `data:`
/// URIs, files under the data root) at once, and what must be fetched,
/// `FETCH_CONCURRENCY` at a time.
pub(crate) async fn read_tasks(
    app: &App,
    tasks: &[Value],
    target: &ChoicesTarget,
    conn: Option<&LsConnection>,
    check: PathCheck,
) -> Vec<Result<TaskData, String>> {
    let text = target.kind == config::ObjectKind::Text;
    let root = app.data_root.as_deref();
    let mut out = Vec::with_capacity(tasks.len());
    let mut fetches = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let read = task
            .get("data")
            .ok_or_else(|| "the task has no `data`".to_string())
            .and_then(|data| {
                app.labelstudio
                    .read_at_hand(data, &target.data_key, text, conn, root, check)
            });
        out.push(match read {
            Ok(Read::Ready(d)) => Ok(d),
            Ok(Read::Fetch(f)) => {
                fetches.push((i, f));
                Err(String::new())
            }
            Err(why) => Err(why),
        });
    }
    if fetches.is_empty() {
        return out;
    }
    let fetched: Vec<(usize, Result<TaskData, String>)> = futures_util::stream::iter(
        fetches
            .into_iter()
            .map(|(i, f)| async move { (i, app.labelstudio.fetch_task(f, conn).await) }),
    )
    .buffered(FETCH_CONCURRENCY)
    .collect()
    .await;
    for (i, r) in fetched {
        out[i] = r;
    }
    out
}

/// Whether any task points at Label Studio's host, so that its connection
/// (host and token) must be read.
fn needs_connection(tasks: &[Value], target: &ChoicesTarget) -> bool {
    target.kind != config::ObjectKind::Text
        && tasks.iter().any(|t| {
            t.get("data")
                .and_then(|d| d.get(&target.data_key))
                .and_then(Value::as_str)
                .is_some_and(super::fetch::may_be_on_label_studio)
        })
}

pub async fn predict(app: &Arc<App>, project_id: i64, req: PredictIn) -> ServiceResult<Predicted> {
    let project = app.labelstudio.cache.project(app, project_id).await?;
    let target = target_for(app, &project, req.label_config.as_deref()).await?;
    let labeler = app.labelstudio.cache.labeler(app, &project).await?;
    let conn = if needs_connection(&req.tasks, &target) {
        app.store.ls_connection(project_id).await?
    } else {
        None
    };
    if target.wanted == config::Wanted::PageLines {
        let items =
            super::segments::pre_labeled(app, &project, &target, &req.tasks, conn.as_ref()).await?;
        let pages = items
            .iter()
            .map(|i| super::lines::Page::of(i.as_ref()?))
            .collect();
        return Ok(Predicted {
            target,
            labeler,
            labels: project.labels.clone(),
            answers: Answers::Lines(pages),
        });
    }
    if target.wanted == config::Wanted::AudioSegments {
        let recordings =
            super::segments::recordings(app, &project, &target, &req.tasks, conn.as_ref()).await?;
        return Ok(Predicted {
            target,
            labeler,
            labels: project.labels.clone(),
            answers: Answers::Segments(recordings),
        });
    }
    // Read at once: a path's spelling is checked now, the rest by its open.
    let data = read_tasks(app, &req.tasks, &target, conn.as_ref(), PathCheck::Spelling).await;
    let ids: Vec<Option<i64>> = req.tasks.iter().map(task_id).collect();
    let readable: Vec<i64> = ids
        .iter()
        .zip(&data)
        .filter_map(|(id, d)| d.as_ref().ok().and(*id))
        .collect();
    let unknown: HashSet<i64> = app
        .labelstudio
        .cache
        .claim_unknown(project_id, &readable)
        .into_iter()
        .collect();
    let root: Option<Arc<Path>> = app.data_root.as_deref().map(Arc::from);
    let mut inputs = Vec::with_capacity(data.len());
    let mut slots = Vec::with_capacity(data.len());
    let mut to_ingest = Vec::with_capacity(unknown.len());
    for (i, d) in data.into_iter().enumerate() {
        match d {
            Ok(d) => {
                slots.push(Some(inputs.len()));
                match ids[i].filter(|id| unknown.contains(id)) {
                    Some(id) => {
                        inputs.push(d.input(root.as_ref()));
                        to_ingest.push((inputs.len() - 1, id, d));
                    }
                    None => inputs.push(d.into_input(root.as_ref())),
                }
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
        labeled.extend(labeler.predict(rest).await);
        rest = tail;
    }
    // Only now: the workers pre-labeling them would share the model's
    // queue with this request's slices. Only tasks that were read become
    // items: a file checked by its name alone may have turned out missing.
    let (read, unread): (Vec<_>, Vec<_>) = to_ingest
        .into_iter()
        .partition(|(slot, _, _)| labeled.get(*slot).is_some_and(Result::is_ok));
    let unread: Vec<i64> = unread.into_iter().map(|(_, id, _)| id).collect();
    app.labelstudio.cache.forget(project_id, &unread);
    remember_tasks(
        app,
        project_id,
        read.into_iter().map(|(_, id, d)| (id, d)).collect(),
    );
    let mut answers = Vec::with_capacity(req.tasks.len());
    for (i, slot) in slots.into_iter().enumerate() {
        answers.push(match slot.and_then(|s| labeled.get(s)) {
            Some(Ok(l)) => Some(l.clone()),
            Some(Err(why)) => {
                tracing::warn!(project = project_id, task = %task_id_text(&req.tasks[i]), reason = %why, "Label Studio task not predicted");
                None
            }
            None => None,
        });
    }
    Ok(Predicted {
        target,
        labeler,
        labels: project.labels.clone(),
        answers: Answers::Labeled(answers),
    })
}

/// `/predict`'s outcome, owning what its answer borrows.
pub struct Predicted {
    target: Arc<ChoicesTarget>,
    labeler: Arc<ProjectPredictor>,
    /// The project's labels, which stored segments carry.
    labels: Vec<String>,
    answers: Answers,
}

/// Per task: a label or boxes from the model, or a recording's stored segments.
enum Answers {
    Labeled(Vec<Option<Labeled>>),
    Segments(Vec<Option<super::segments::Recording>>),
    Lines(Vec<Option<super::lines::Page>>),
}

impl Predicted {
    pub fn out(&self) -> PredictOut<'_> {
        let version = self.labeler.model_version();
        let answers = match &self.answers {
            Answers::Labeled(a) => a,
            Answers::Lines(pages) => {
                return PredictOut {
                    results: pages
                        .iter()
                        .map(|p| match p {
                            Some(p) => LsPrediction::of_lines(&self.target, p, version),
                            None => LsPrediction::empty(version),
                        })
                        .collect(),
                    model_version: version,
                }
            }
            Answers::Segments(recs) => {
                return PredictOut {
                    results: recs
                        .iter()
                        .map(|r| match r {
                            Some(r) => {
                                LsPrediction::of_segments(&self.target, &self.labels, r, version)
                            }
                            None => LsPrediction::empty(version),
                        })
                        .collect(),
                    model_version: version,
                }
            }
        };
        PredictOut {
            results: answers
                .iter()
                .map(|a| match a {
                    Some(Labeled {
                        boxes: Some(b),
                        score,
                        ..
                    }) => LsPrediction::of_boxes(&self.target, b, &[], *score, version),
                    Some(l) => LsPrediction::of(&self.target, l.index, l.score, version),
                    None => LsPrediction::empty(version),
                })
                .collect(),
            model_version: version,
        }
    }
}

fn task_id(task: &Value) -> Option<i64> {
    task.get("id")?.as_i64()
}

fn task_id_text(task: &Value) -> String {
    task.get("id")
        .map(|v| v.to_string())
        .unwrap_or_else(|| "?".into())
}

/// Ingest, in the background, the tasks labelloop does not know yet.
fn remember_tasks(app: &Arc<App>, project_id: i64, tasks: Vec<(i64, TaskData)>) {
    if tasks.is_empty() {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let ids: Vec<i64> = tasks.iter().map(|(id, _)| *id).collect();
        let items = tasks
            .into_iter()
            .map(|(id, d)| (ls_client_id(id), d))
            .collect();
        if let Err(e) = ingest_new(&app, project_id, items).await {
            app.labelstudio.cache.forget(project_id, &ids);
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
