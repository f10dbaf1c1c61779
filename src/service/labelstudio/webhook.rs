//! `/webhook`: Label Studio's events. Annotations become human labels
//! through the one annotate use case (`review::annotate`), so they feed the
//! head, the calibration and the quality checks like any other; the
//! annotator is the Label Studio user, recorded as `ls:<e-mail>`
//! (`door::ls_identity`). A box or segment annotation is the annotator's
//! full set of regions, recorded through `regions::put` (`boxes`,
//! `segments`). `START_TRAINING` starts the usual training (which
//! recalibrates after it) in the background.
//!
//! Exactly once: a request checks the event, writes it to the outbox (one
//! row per event identity, so concurrent and late replays are one row)
//! and answers; the outbox worker (`outbox`) applies events one at a time.
//! A sender that gives up after the write loses nothing, and Label Studio,
//! which waits a second, gets its answer well inside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::boxes;
use super::config::{ChoicesTarget, Wanted};
use super::door;
use super::fetch::PathCheck;
use super::lines;
use super::predict::{ingest_new, read_tasks, target_for};
use super::segments;
use crate::region::{BoxPx, LabelStudioRect};
use crate::service::app::App;
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::service::regions::{self, BoxIn, RegionsIn};
use crate::service::review::{self, Annotator};
use crate::service::screening;
use crate::store::RegionRecord;
use crate::store::{ls_client_id, LsAnnotation};

/// How long a webhook for an unseen task waits for its pre-label.
const PRELABEL_WAIT: Duration = Duration::from_millis(700);

/// How long a request waits for the outbox worker to apply its event
/// before it answers `queued` (Label Studio gives a webhook 1 s).
const ANSWER_WAIT: Duration = Duration::from_millis(150);

/// Most annotation ids one deletion event may carry.
pub const MAX_DELETED_IDS: usize = 100_000;

/// An annotation id recorded before its annotation is written: a worker
/// that dies between the two leaves this, and the retry adopts the
/// annotation it finds instead of writing a second one.
const PENDING_ANNOTATION: i64 = -1;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WebhookOut {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<usize>,
}

fn bad(why: impl Into<String>) -> ServiceError {
    ServiceError::new(Code::BadWebhook, why.into())
}

fn out(status: &str, recorded: Option<usize>) -> WebhookOut {
    WebhookOut {
        status: status.to_string(),
        recorded,
    }
}

/// An annotation event's parts, checked.
struct AnnotationEvent<'a> {
    annotation: &'a Value,
    task: &'a Value,
    ls_annotation_id: i64,
    task_id: i64,
    result: &'a [Value],
    config: Option<&'a str>,
}

impl<'a> AnnotationEvent<'a> {
    fn read(body: &'a Value, action: &str) -> ServiceResult<AnnotationEvent<'a>> {
        let annotation = body
            .get("annotation")
            .filter(|a| a.is_object())
            .ok_or_else(|| bad(format!("{action} without an `annotation` object")))?;
        let task = body
            .get("task")
            .filter(|t| t.is_object())
            .ok_or_else(|| bad(format!("{action} without a `task` object")))?;
        Ok(AnnotationEvent {
            annotation,
            task,
            ls_annotation_id: annotation
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("`annotation.id` is not an integer"))?,
            task_id: task
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("`task.id` is not an integer"))?,
            result: annotation
                .get("result")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("`annotation.result` is not an array"))?,
            config: body
                .get("project")
                .and_then(|p| p.get("label_config"))
                .and_then(Value::as_str),
        })
    }

    /// The event's identity: a replay of the same event has the same one.
    fn dedup(&self, action: &str) -> String {
        let updated = self
            .annotation
            .get("updated_at")
            .map(Value::to_string)
            .unwrap_or_default();
        format!("{action}:{}:{updated}", self.ls_annotation_id)
    }
}

/// The Label Studio annotation ids a deletion event names, bounded.
fn deleted_ids(body: &Value, action: &str) -> ServiceResult<Vec<i64>> {
    let ids: Vec<i64> = match (body.get("annotations"), body.get("annotation")) {
        (Some(Value::Array(list)), _) => {
            if list.len() > MAX_DELETED_IDS {
                return Err(bad(format!(
                    "{action} names {} annotations; at most {MAX_DELETED_IDS} per event",
                    list.len()
                )));
            }
            list.iter()
                .map(|a| a.get("id").and_then(Value::as_i64))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| bad("an `annotations[].id` is not an integer"))?
        }
        (_, Some(a)) => vec![a
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("`annotation.id` is not an integer"))?],
        _ => {
            return Err(bad(format!(
                "{action} without `annotations` or `annotation`"
            )))
        }
    };
    Ok(ids)
}

/// Check one webhook body and write it to the outbox; answer with what the
/// worker made of it if that takes under `ANSWER_WAIT`, else `queued`. A
/// body without an `action`, or an annotation event without its
/// annotation and task, is `bad_webhook` and stores nothing.
pub async fn webhook(app: &Arc<App>, project_id: i64, body: Value) -> ServiceResult<WebhookOut> {
    // A task of its own: a sender that hangs up drops the request's
    // future, and an event whose body was read must still be checked and
    // written whole, or not at all (a half-done webhook lost annotations).
    let app = app.clone();
    let answer = tokio::spawn(async move { check_and_write(&app, project_id, &body).await })
        .await
        .map_err(|_| ServiceError::internal("handling a webhook failed"))?;
    // Label Studio drops a refused webhook's answer without a word (it
    // ignores non-2xx), so the reason is logged here for whoever wonders
    // why an annotation did not arrive.
    if let Err(e) = &answer {
        if e.code != Code::Internal {
            tracing::warn!(project = project_id, code = ?e.code, reason = %e.message, "refused a Label Studio webhook");
        }
    }
    answer
}

async fn check_and_write(
    app: &Arc<App>,
    project_id: i64,
    body: &Value,
) -> ServiceResult<WebhookOut> {
    let project = app.store.get_project(project_id).await?;
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the webhook body has no string `action`"))?;
    let dedup = match action {
        "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" => {
            let event = AnnotationEvent::read(body, action)?;
            // A config or a name that cannot be used is refused now, not
            // found by the worker after the sender was told "ok".
            let target = target_for(app, &project, event.config).await?;
            if matches!(target.wanted, Wanted::AudioSegments | Wanted::PageLines) {
                // Malformed segments or lines are refused now, by name, and
                // never stored; against the recording's length or the
                // page's size when it is known.
                let client = ls_client_id(event.task_id);
                let item = app
                    .store
                    .items_by_client_ids(project_id, std::slice::from_ref(&client))
                    .await?
                    .into_iter()
                    .next();
                if target.wanted == Wanted::PageLines {
                    let size = item.and_then(|i| {
                        Some((
                            u32::try_from(i.width?).ok()?,
                            u32::try_from(i.height?).ok()?,
                        ))
                    });
                    lines::drawn(&target, event.result, &project.labels, size)?;
                } else {
                    let duration = item.and_then(|i| i.duration);
                    segments::drawn(&target, event.result, &project.labels, duration)?;
                }
            }
            if let Some(email) = event
                .annotation
                .get("completed_by")
                .and_then(|b| b.get("email"))
                .and_then(Value::as_str)
            {
                door::ls_identity(email)?;
            }
            event.dedup(action)
        }
        "ANNOTATIONS_DELETED" | "ANNOTATION_DELETED" => {
            let mut ids = deleted_ids(body, action)?;
            ids.sort_unstable();
            ids.dedup();
            let key = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            format!("DELETED:{}", crate::service::secret::hash_token(&key))
        }
        "START_TRAINING" => {
            let app = app.clone();
            tokio::spawn(async move {
                match review::train(&app, project_id).await {
                    Ok(t) => tracing::info!(
                        project = project_id,
                        version = t.version,
                        "trained on Label Studio's request"
                    ),
                    Err(e) => {
                        tracing::warn!(project = project_id, error = %e.message, "training on Label Studio's request did not run")
                    }
                }
            });
            return Ok(out("training started", None));
        }
        _ => return Ok(out("Unknown event", None)),
    };
    let mut applied = app.labelstudio.outbox_done.subscribe();
    let put = app
        .store
        .ls_outbox_put(project_id, &dedup, &body.to_string())
        .await?;
    app.labelstudio.outbox_wake.notify_one();
    if let Some(answer) = put.answer.as_deref() {
        // A replay of an event applied before: its first answer, nothing written.
        return Ok(serde_json::from_str(answer).unwrap_or_else(|_| out("ok", None)));
    }
    let wait = tokio::time::sleep(ANSWER_WAIT);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            _ = &mut wait => return Ok(out("queued", None)),
            got = applied.recv() => match got {
                Ok((id, answer)) if id == put.id => return Ok(answer),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Ok(out("queued", None))
                }
            },
        }
    }
}

/// Apply one event taken from the outbox.
pub async fn apply(app: &Arc<App>, project_id: i64, body: &Value) -> ServiceResult<WebhookOut> {
    let project = app.store.get_project(project_id).await?;
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the webhook body has no string `action`"))?;
    match action {
        "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" => {
            let event = AnnotationEvent::read(body, action)?;
            let target = target_for(app, &project, event.config).await?;
            if event
                .annotation
                .get("was_cancelled")
                .and_then(Value::as_bool)
                == Some(true)
            {
                return Ok(out("skipped: the annotation was cancelled", Some(0)));
            }
            if matches!(
                target.wanted,
                Wanted::ImageBoxes | Wanted::AudioSegments | Wanted::PageLines
            ) {
                return record_regions(app, project_id, &event, &target).await;
            }
            let Some(label) = chosen_label(&target, event.result, &project.labels) else {
                return Ok(out(
                    "skipped: no choice of the configured <Choices> matches the project's labels",
                    Some(0),
                ));
            };
            let conn = app.store.ls_connection(project_id).await?;
            let annotator = Annotator {
                name: annotator_name(app, conn.as_ref(), event.annotation).await?,
                on_behalf_by: None,
            };
            let item_id =
                item_for_task(app, project_id, event.task_id, event.task, &target).await?;
            record(app, project_id, &event, item_id, &label, &annotator).await?;
            tracing::info!(project = project_id, task = event.task_id, annotation = event.ls_annotation_id, %label, "recorded a Label Studio annotation");
            Ok(out("ok", Some(1)))
        }
        "ANNOTATIONS_DELETED" | "ANNOTATION_DELETED" => {
            let ids = deleted_ids(body, action)?;
            // Box annotations first: what they recorded is withdrawn
            // before their records go (`boxes`).
            let boxes = if regions::has_regions(&project.task) {
                boxes::withdraw(app, &project, &ids).await?
            } else {
                0
            };
            // Screening (issue 25): copies and conflicts follow the deletion.
            let grouped = screening::grouped_ls_items(app, project_id, &ids).await;
            let removed = app.store.ls_delete_annotations(project_id, &ids).await?;
            screening::after_unlabel_all(app, &grouped).await;
            Ok(out("ok", Some(boxes + removed as usize)))
        }
        _ => Ok(out("Unknown event", None)),
    }
}

/// A box annotation (the annotator's full set of rectangles on the image),
/// a segment annotation (their full set of speech segments of the
/// recording, `segments`) or a line annotation (their full set of a page's
/// text lines with their transcriptions, `lines`), recorded as the item's human regions through
/// the one review use case (`regions::put`). It is a set, not an
/// increment, so a replay or an update after a crash writes the same
/// regions again and changes nothing.
async fn record_regions(
    app: &Arc<App>,
    project_id: i64,
    event: &AnnotationEvent<'_>,
    target: &ChoicesTarget,
) -> ServiceResult<WebhookOut> {
    let conn = app.store.ls_connection(project_id).await?;
    let annotator = Annotator {
        name: annotator_name(app, conn.as_ref(), event.annotation).await?,
        on_behalf_by: None,
    };
    let item_id = item_for_task(app, project_id, event.task_id, event.task, target).await?;
    let current = regions::get(app, project_id, item_id).await?;
    let labels = app.store.get_project(project_id).await?.labels;
    let (boxes, kind) = match target.wanted {
        Wanted::AudioSegments => (
            segments::segments_of(target, event.result, &current, &labels)?,
            "segments",
        ),
        Wanted::PageLines => (
            lines::lines_of(target, event.result, &current, &labels)?,
            "lines",
        ),
        _ => (boxes_of(target, event.result, &current, &labels)?, "boxes"),
    };
    let n = boxes.len();
    let set = boxes::RecordedSet::of(&annotator.name, &boxes);
    regions::put(
        app,
        project_id,
        item_id,
        &RegionsIn { regions: boxes },
        &annotator,
    )
    .await?;
    // Kept after the regions are written: a crash between the two is
    // retried by the outbox, and the repeated put changes nothing.
    boxes::remember(
        app,
        project_id,
        &LsAnnotation {
            ls_annotation_id: event.ls_annotation_id,
            ls_task_id: event.task_id,
            item_id,
            annotation_id: 0,
        },
        &set,
    )
    .await?;
    tracing::info!(
        project = project_id,
        task = event.task_id,
        annotation = event.ls_annotation_id,
        regions = n,
        kind,
        "recorded a Label Studio region annotation"
    );
    Ok(out("ok", Some(1)))
}

/// The `rectanglelabels` results of our control as boxes in pixels. A box
/// Label Studio kept from a prediction names the machine region it came
/// from (`m<id>`, sent by a sync); otherwise a box of the same label over
/// a machine region (IoU ≥ 0.9) is taken to be that region, nudged or kept,
/// so a reviewer's corrections read as corrections, not a delete and an add.
fn boxes_of(
    target: &ChoicesTarget,
    result: &[Value],
    current: &regions::ItemRegions,
    labels: &[String],
) -> ServiceResult<Vec<BoxIn>> {
    let mut out = Vec::new();
    let mut claimed = std::collections::HashSet::new();
    let machine: Vec<&RegionRecord> = current
        .regions
        .iter()
        .filter(|r| r.source == "machine")
        .collect();
    let ours = result.iter().filter(|r| {
        r.get("from_name").and_then(Value::as_str) == Some(target.from_name.as_str())
            && r.get("type").and_then(Value::as_str) == Some("rectanglelabels")
    });
    for (i, r) in ours.enumerate() {
        let field = |f: &str| format!("annotation.result[{i}].{f}");
        let value = r
            .get("value")
            .ok_or_else(|| ServiceError::invalid(&field("value"), "missing"))?;
        let rect: LabelStudioRect = serde_json::from_value(value.clone())
            .map_err(|e| ServiceError::invalid(&field("value"), e))?;
        let Some(label) = value
            .get("rectanglelabels")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(Value::as_str)
            .and_then(|c| target.label_index(c))
            .and_then(|k| labels.get(k).cloned())
        else {
            return Err(ServiceError::new(
                Code::UnknownLabel,
                format!(
                    "{}: no label of the project's <RectangleLabels> {:?}",
                    field("value.rectanglelabels"),
                    target.from_name
                ),
            ));
        };
        let size = |k: &str, ours: Option<i64>| {
            ours.and_then(|v| u32::try_from(v).ok())
                .or_else(|| r.get(k)?.as_u64().and_then(|v| u32::try_from(v).ok()))
                .unwrap_or(0)
        };
        let (w, h) = (
            size("original_width", current.width),
            size("original_height", current.height),
        );
        let bbox = BoxPx::from_label_studio(&rect, w, h)
            .map_err(|e| ServiceError::invalid(&field("value"), e))?;
        let named = r
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.strip_prefix('m'))
            .and_then(|id| id.parse::<i64>().ok())
            .filter(|id| machine.iter().any(|m| m.id == *id));
        let id = named.or_else(|| {
            machine
                .iter()
                .filter(|m| m.label == label && !claimed.contains(&m.id))
                .filter_map(|m| Some((m.id, m.bbox.as_ref()?.iou(&bbox))))
                .filter(|(_, iou)| *iou >= 0.9)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(id, _)| id)
        });
        // Percent and back moves a corner by an ulp or so: a kept box is
        // the machine's own box, not a correction of it.
        let same = |m: &BoxPx| {
            let tol = 1e-9 * f64::from(w.max(h));
            [
                m.x0 - bbox.x0,
                m.y0 - bbox.y0,
                m.x1 - bbox.x1,
                m.y1 - bbox.y1,
            ]
            .iter()
            .all(|d| d.abs() <= tol)
        };
        let bbox = id
            .and_then(|id| machine.iter().find(|m| m.id == id))
            .and_then(|m| m.bbox)
            .filter(|m| same(m))
            .unwrap_or(bbox);
        if let Some(id) = id {
            claimed.insert(id);
        }
        out.push(BoxIn {
            id,
            label,
            bbox: Some(bbox),
            segment: None,
            text: None,
        });
    }
    Ok(out)
}

/// Write the annotation and its Label Studio id so that a retry after a
/// crash at any point leaves exactly one: the id is recorded first with a
/// pending annotation, then the annotation is written and the record
/// completed. A retry that finds the pending record adopts the
/// annotator's annotation on the item if it was written.
async fn record(
    app: &Arc<App>,
    project_id: i64,
    event: &AnnotationEvent<'_>,
    item_id: i64,
    label: &str,
    annotator: &Annotator,
) -> ServiceResult<()> {
    let pending = LsAnnotation {
        ls_annotation_id: event.ls_annotation_id,
        ls_task_id: event.task_id,
        item_id,
        annotation_id: PENDING_ANNOTATION,
    };
    if let Some(old) = app
        .store
        .ls_annotation(project_id, event.ls_annotation_id)
        .await?
    {
        let adopt = old.annotation_id == PENDING_ANNOTATION && old.item_id == item_id;
        if adopt {
            if let Ok(id) = app
                .store
                .latest_annotation_id(item_id, &annotator.name)
                .await
            {
                return complete(app, project_id, &pending, id).await;
            }
        }
        // An update: the old annotation goes, the new one takes its place.
        app.store.ls_delete_annotation(project_id, &old).await?;
    }
    if !app.store.ls_try_record(project_id, &pending).await? {
        return Err(ServiceError::new(
            Code::Conflict,
            "another writer is recording this Label Studio annotation",
        ));
    }
    review::annotate(app, item_id, label, annotator).await?;
    let annotation_id = app
        .store
        .latest_annotation_id(item_id, &annotator.name)
        .await?;
    complete(app, project_id, &pending, annotation_id).await
}

async fn complete(
    app: &App,
    project_id: i64,
    pending: &LsAnnotation,
    annotation_id: i64,
) -> ServiceResult<()> {
    app.store
        .ls_record_annotation(
            project_id,
            &LsAnnotation {
                annotation_id,
                ..pending.clone()
            },
        )
        .await?;
    Ok(())
}

/// The project label of the first choice in the result of our `<Choices>`.
fn chosen_label(target: &ChoicesTarget, result: &[Value], labels: &[String]) -> Option<String> {
    result
        .iter()
        .filter(|r| r.get("from_name").and_then(Value::as_str) == Some(target.from_name.as_str()))
        .filter_map(|r| r.get("value")?.get("choices")?.as_array())
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|c| target.label_index(c))
        .and_then(|i| labels.get(i).cloned())
}

/// Who annotated, as `ls:<name>`: the Label Studio user's e-mail, from
/// the body or from Label Studio's API (webhooks carry the user's id).
async fn annotator_name(
    app: &App,
    conn: Option<&crate::store::LsConnection>,
    annotation: &Value,
) -> ServiceResult<String> {
    let by = annotation.get("completed_by");
    if let Some(email) = by.and_then(|b| b.get("email")).and_then(Value::as_str) {
        return door::ls_identity(email);
    }
    let id = by.and_then(|b| b.as_i64().or_else(|| b.get("id")?.as_i64()));
    if let (Some(conn), Some(id)) = (conn, id) {
        if let Some(email) = app.labelstudio.user_email(conn, id).await {
            return door::ls_identity(&email);
        }
    }
    if let Some(name) = annotation
        .get("created_username")
        .and_then(Value::as_str)
        .and_then(|s| s.split(',').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        return door::ls_identity(name);
    }
    door::ls_identity(&match id {
        Some(id) => format!("user-{id}"),
        None => "unknown".to_string(),
    })
}

/// The item of a Label Studio task, ingesting the task first if labelloop
/// has not seen it.
async fn item_for_task(
    app: &App,
    project_id: i64,
    task_id: i64,
    task: &Value,
    target: &ChoicesTarget,
) -> ServiceResult<i64> {
    let client = ls_client_id(task_id);
    if let Some(i) = app
        .store
        .items_by_client_ids(project_id, std::slice::from_ref(&client))
        .await?
        .first()
    {
        return Ok(i.id);
    }
    let conn = app.store.ls_connection(project_id).await?;
    let data = read_tasks(
        app,
        std::slice::from_ref(task),
        target,
        conn.as_ref(),
        PathCheck::Resolve,
    )
    .await
    .pop()
    .unwrap_or_else(|| Err("no task".into()))
    .map_err(|why| ServiceError::invalid("task.data", why))?;
    ingest_new(app, project_id, vec![(client.clone(), data)]).await?;
    // A label recorded on a pending item keeps it from ever being
    // pre-labeled, and then it has no embedding for the head to learn
    // from: give the workers (woken by the ingest) a moment first.
    let deadline = Instant::now() + PRELABEL_WAIT;
    loop {
        let item = app
            .store
            .items_by_client_ids(project_id, std::slice::from_ref(&client))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::internal("an ingested task's item is missing"))?;
        if item.status != "pending" {
            return Ok(item.id);
        }
        if Instant::now() >= deadline {
            tracing::warn!(project = project_id, task = task_id, "recording a Label Studio annotation on a task not pre-labeled yet; its item gets no embedding");
            return Ok(item.id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
