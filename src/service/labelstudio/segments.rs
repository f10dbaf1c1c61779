//! Speech projects in Label Studio (issue 24): `<Labels>` on `<Audio>`.
//!
//! `/predict` answers from the **stored** machine segments, not from a
//! second run of the model: a task labelloop has not seen is read (a
//! recording uploaded to Label Studio is fetched with its token, bounded
//! like an image), ingested as an item, and pre-labeled by the usual
//! workers, which route its segments (`regions::segments_outcome`) and
//! store them once. Each segment goes to Label Studio as one `labels`
//! result with `start`/`end` in seconds and the id `m<region id>`, so the
//! same task predicted twice gets the same ids, and an annotation that
//! keeps or moves a predicted segment names the region it came from.
//!
//! An annotation's `labels` results are the annotator's full set of
//! segments for the recording, recorded through the one review use case
//! (`regions::put`, as `PUT …/regions` does): kept segments accept their
//! machine region, moved or relabeled ones correct it, missing ones delete
//! it, new ones are added. A set is not an increment, so a redelivered
//! webhook writes nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::ChoicesTarget;
use super::fetch::PathCheck;
use super::predict::{ingest_new, read_tasks};
use crate::region::Span;
use crate::service::app::App;
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::service::regions::{BoxIn, ItemRegions};
use crate::store::{ls_client_id, ItemRecord, LsConnection, Project, RegionRecord};

/// How long `/predict` waits for the pre-labels of its recordings: inside
/// Label Studio's 100 s (`ML_TIMEOUT_PREDICT`) with room for the fetches.
/// A recording still pending then gets an empty result (and a warning).
const PRELABEL_WAIT: Duration = Duration::from_secs(75);

/// How often the wait looks at the items again.
const POLL: Duration = Duration::from_millis(50);

/// A kept segment is the machine's own when its ends moved by no more than
/// this share of the recording (JSON and Label Studio's editor round the
/// seconds, never by this much).
const SAME_SPAN: f64 = 1e-9;

/// A drawn segment (no `m<id>`) is taken for the machine segment of the
/// same label it overlaps most, at IoU at least this: the IoU at which
/// a segment counts as right (design: segments match at IoU ≥ 0.5).
const MATCH_IOU: f64 = 0.5;

/// One stored machine segment, as `/predict` sends it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub id: i64,
    pub label: String,
    pub span: Span,
    pub score: f64,
}

/// A pre-labeled recording: its length, the seconds the model left
/// undecided, and its machine segments (those a reviewer did not delete).
#[derive(Debug, Clone)]
pub struct Recording {
    pub duration: f64,
    pub undecided: f64,
    pub segments: Vec<Segment>,
}

impl Recording {
    /// The recording of a pre-labeled item with its regions attached;
    /// `None` before the pre-label (no duration yet) or when it failed.
    pub fn of(item: &ItemRecord) -> Option<Recording> {
        let duration = item.duration?;
        let segments = item
            .regions
            .as_deref()?
            .iter()
            .filter(|r| r.source == "machine" && r.status != "deleted")
            .filter_map(|r| {
                Some(Segment {
                    id: r.id,
                    label: r.label.clone(),
                    span: r.segment?,
                    score: r.score.unwrap_or(0.0),
                })
            })
            .collect();
        Some(Recording {
            duration,
            undecided: item.undecided.unwrap_or(0.0),
            segments,
        })
    }

    /// The prediction's overall score: its weakest segment's (the one that
    /// decides whether a person listens); with no segment, the share of
    /// the recording the model was decided on (silence it was sure of
    /// scores 1). Always finite, in [0, 1].
    pub fn score(&self) -> f64 {
        let weakest = self
            .segments
            .iter()
            .map(|s| s.score)
            .filter(|s| s.is_finite())
            .reduce(f64::min);
        let s = match weakest {
            Some(s) => s,
            None if self.duration > 0.0 => 1.0 - self.undecided / self.duration,
            None => 0.0,
        };
        if s.is_finite() {
            s.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

fn task_id(task: &Value) -> Option<i64> {
    task.get("id")?.as_i64()
}

/// Each task's recording, in task order ([`pre_labeled`]), read from its
/// stored segments.
pub(crate) async fn recordings(
    app: &Arc<App>,
    project: &Project,
    target: &ChoicesTarget,
    tasks: &[Value],
    conn: Option<&LsConnection>,
) -> ServiceResult<Vec<Option<Recording>>> {
    let items = pre_labeled(app, project, target, tasks, conn).await?;
    Ok(items.iter().map(|i| Recording::of(i.as_ref()?)).collect())
}

/// Each task's pre-labeled item with its regions, in task order: tasks
/// labelloop has not seen are read and ingested now, then every task's
/// item is waited for (up to [`PRELABEL_WAIT`]). A task that cannot be
/// read, whose content does not decode, or that is still pending at the
/// deadline gets `None`, with its reason in the log. `/predict` on a
/// speech or OCR project answers from what the workers stored, once.
pub(crate) async fn pre_labeled(
    app: &Arc<App>,
    project: &Project,
    target: &ChoicesTarget,
    tasks: &[Value],
    conn: Option<&LsConnection>,
) -> ServiceResult<Vec<Option<ItemRecord>>> {
    let started = Instant::now();
    let ids: Vec<Option<i64>> = tasks.iter().map(task_id).collect();
    let clients: Vec<String> = ids.iter().flatten().map(|&id| ls_client_id(id)).collect();
    let known: HashSet<String> = app
        .store
        .items_by_client_ids(project.id, &clients)
        .await?
        .into_iter()
        .map(|i| i.client_id)
        .collect();
    let fresh: Vec<(i64, Value)> = tasks
        .iter()
        .zip(&ids)
        .filter_map(|(t, id)| {
            let id = (*id)?;
            (!known.contains(&ls_client_id(id))).then(|| (id, t.clone()))
        })
        .collect();
    if !fresh.is_empty() {
        let list: Vec<Value> = fresh.iter().map(|(_, t)| t.clone()).collect();
        let data = read_tasks(app, &list, target, conn, PathCheck::Resolve).await;
        let mut items = Vec::with_capacity(fresh.len());
        for ((id, _), d) in fresh.iter().zip(data) {
            match d {
                Ok(d) => items.push((ls_client_id(*id), d)),
                Err(why) => {
                    tracing::warn!(project = project.id, task = id, reason = %why, "Label Studio task not predicted")
                }
            }
        }
        if !items.is_empty() {
            ingest_new(app, project.id, items).await?;
        }
    }
    let mut items = loop {
        let items = app.store.items_by_client_ids(project.id, &clients).await?;
        if items.iter().all(|i| i.status != "pending") || started.elapsed() >= PRELABEL_WAIT {
            break items;
        }
        tokio::time::sleep(POLL).await;
    };
    app.store.attach_regions(&mut items).await?;
    let by_client: HashMap<&str, &ItemRecord> =
        items.iter().map(|i| (i.client_id.as_str(), i)).collect();
    Ok(ids
        .iter()
        .map(|id| {
            let id = (*id)?;
            let client = ls_client_id(id);
            let item = *by_client.get(client.as_str())?;
            match item.status.as_str() {
                "pending" => {
                    tracing::warn!(project = project.id, task = id, "Label Studio task not pre-labeled in time; its prediction is empty");
                    None
                }
                "failed" => {
                    tracing::warn!(project = project.id, task = id, reason = %item.error.as_deref().unwrap_or(""), "Label Studio task could not be labeled");
                    None
                }
                _ => Some(item.clone()),
            }
        })
        .collect())
}

/// One `labels` result of an annotation, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Drawn {
    /// Index in `annotation.result`, to name it in errors.
    pub at: usize,
    /// The result's own id (`m<region id>` when it came from a prediction).
    pub id: Option<String>,
    /// A project label.
    pub label: String,
    pub span: Span,
}

/// The `labels` results of our `<Labels>` tag, checked one by one, naming
/// the result on error: `start` and `end` numbers of seconds with
/// `start < end` (and, when the recording's length is known, inside it),
/// and a label of the project. Results of other tags (a per-region
/// transcript, a choice) are left alone.
pub(super) fn drawn(
    target: &ChoicesTarget,
    result: &[Value],
    labels: &[String],
    duration: Option<f64>,
) -> ServiceResult<Vec<Drawn>> {
    let mut out = Vec::new();
    for (i, r) in result.iter().enumerate() {
        if r.get("from_name").and_then(Value::as_str) != Some(target.from_name.as_str())
            || r.get("type").and_then(Value::as_str) != Some("labels")
        {
            continue;
        }
        let field = |f: &str| format!("annotation.result[{i}].{f}");
        let value = r
            .get("value")
            .filter(|v| v.is_object())
            .ok_or_else(|| ServiceError::invalid(&field("value"), "missing"))?;
        let time = |k: &str| {
            value.get(k).and_then(Value::as_f64).ok_or_else(|| {
                ServiceError::invalid(
                    &field(&format!("value.{k}")),
                    "must be a number of seconds from the recording's start",
                )
            })
        };
        let span = Span::new(time("start")?, time("end")?);
        // Without the length yet (an unseen task), the other checks still
        // run; `regions::put` checks the bound once the length is known.
        let bound = duration.unwrap_or(f64::INFINITY);
        if let Err(e) = span.check(bound) {
            return Err(ServiceError::invalid(&field("value"), e));
        }
        let label = value
            .get("labels")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(Value::as_str)
            .and_then(|c| target.label_index(c))
            .and_then(|k| labels.get(k).cloned())
            .ok_or_else(|| {
                ServiceError::new(
                    Code::UnknownLabel,
                    format!(
                        "{}: no label of the project's <Labels name={:?}> ({labels:?})",
                        field("value.labels"),
                        target.from_name
                    ),
                )
            })?;
        out.push(Drawn {
            at: i,
            id: r.get("id").and_then(Value::as_str).map(str::to_string),
            label,
            span,
        });
    }
    Ok(out)
}

/// The annotator's segments as the reviewer's set `regions::put` takes: a
/// result named `m<id>` after a machine segment of the item stands for
/// it; otherwise a segment of the same label overlapping an unclaimed
/// machine segment at IoU ≥ [`MATCH_IOU`] is taken for it (the best
/// overlap), so moved edges read as a correction, not a delete and an add.
/// A kept segment whose ends moved by rounding only is the machine's own.
pub(super) fn segments_of(
    target: &ChoicesTarget,
    result: &[Value],
    current: &ItemRegions,
    labels: &[String],
) -> ServiceResult<Vec<BoxIn>> {
    let drawn = drawn(target, result, labels, current.duration)?;
    let machine: Vec<(&RegionRecord, Span)> = current
        .regions
        .iter()
        .filter(|r| r.source == "machine")
        .filter_map(|r| Some((r, r.segment?)))
        .collect();
    let tol = SAME_SPAN * current.duration.unwrap_or(1.0).max(1.0);
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut out = Vec::with_capacity(drawn.len());
    for d in drawn {
        let named = super::named_machine(d.id.as_deref(), &claimed, &machine);
        let found = named.or_else(|| {
            machine
                .iter()
                .filter(|(m, _)| m.label == d.label && !claimed.contains(&m.id))
                .map(|pair| (pair, pair.1.iou(&d.span)))
                .filter(|(_, iou)| *iou >= MATCH_IOU)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(m, _)| m)
        });
        let span = match found {
            Some((_, s))
                if (s.start - d.span.start).abs() <= tol && (s.end - d.span.end).abs() <= tol =>
            {
                *s
            }
            _ => d.span,
        };
        let id = found.map(|(m, _)| m.id);
        if let Some(id) = id {
            claimed.insert(id);
        }
        out.push(BoxIn {
            id,
            label: d.label,
            bbox: None,
            segment: Some(span),
            text: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::config::{parse, Wanted};
    use super::*;
    use serde_json::json;

    const XML: &str = r#"<View><Audio name="audio" value="$audio"/>
      <Labels name="vad" toName="audio"><Label value="speech"/><Label value="Music"/></Labels>
      <TextArea name="words" toName="audio" perRegion="true"/></View>"#;

    fn target() -> ChoicesTarget {
        parse(XML, &["Speech".to_string()], Wanted::AudioSegments).unwrap()
    }

    fn seg(id: &str, start: f64, end: f64, label: &str) -> Value {
        json!({"id": id, "from_name": "vad", "to_name": "audio", "type": "labels",
               "value": {"start": start, "end": end, "channel": 0, "labels": [label]}})
    }

    fn machine(id: i64, start: f64, end: f64) -> RegionRecord {
        RegionRecord {
            id,
            source: "machine".into(),
            kind: "span".into(),
            label: "Speech".into(),
            bbox: None,
            segment: Some(Span::new(start, end)),
            text: None,
            score: Some(0.9),
            uncertainty: None,
            status: "review".into(),
            replaces: None,
            model_version: None,
            calibration_version: None,
            annotator: None,
            created_at: 0,
            updated_at: 0,
            char_scores: None,
        }
    }

    fn current(regions: Vec<RegionRecord>) -> ItemRegions {
        ItemRegions {
            project_id: 1,
            item_id: 1,
            status: "needs_review".into(),
            width: None,
            height: None,
            duration: Some(10.0),
            regions,
        }
    }

    #[test]
    fn named_kept_moved_and_drawn_segments() {
        let t = target();
        let labels = vec!["Speech".to_string()];
        let cur = current(vec![
            machine(7, 1.0, 2.0),
            machine(8, 4.0, 5.0),
            machine(9, 7.0, 8.0),
        ]);
        let result = vec![
            seg("m7", 1.0, 2.0, "speech"),
            // Drawn anew over region 8 with a moved end: a correction of it.
            seg("x1", 4.0, 5.4, "speech"),
            seg("x2", 8.5, 9.5, "speech"),
            json!({"id": "m7", "from_name": "words", "to_name": "audio", "type": "textarea",
                   "value": {"start": 1.0, "end": 2.0, "text": ["hello"]}}),
        ];
        let got = segments_of(&t, &result, &cur, &labels).unwrap();
        let ids: Vec<Option<i64>> = got.iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![Some(7), Some(8), None]);
        assert_eq!(got[1].segment, Some(Span::new(4.0, 5.4)));
        assert!(got.iter().all(|b| b.label == "Speech" && b.bbox.is_none()));
    }

    #[test]
    fn bad_segments_are_named() {
        let t = target();
        let labels = vec!["Speech".to_string()];
        let cur = current(vec![machine(7, 1.0, 2.0)]);
        for (bad, says, code) in [
            (
                seg("a", 3.0, 2.0, "speech"),
                "result[1].value",
                Code::InvalidField,
            ),
            (
                seg("a", 9.0, 10.5, "speech"),
                "result[1].value",
                Code::InvalidField,
            ),
            (
                seg("a", -1.0, 1.0, "speech"),
                "result[1].value",
                Code::InvalidField,
            ),
            (
                seg("a", 1.0, 2.0, "Music"),
                "result[1].value.labels",
                Code::UnknownLabel,
            ),
            (
                json!({"from_name": "vad", "type": "labels", "value": {"start": "1", "end": 2.0, "labels": ["speech"]}}),
                "result[1].value.start",
                Code::InvalidField,
            ),
        ] {
            let e =
                segments_of(&t, &[seg("m7", 1.0, 2.0, "speech"), bad], &cur, &labels).unwrap_err();
            assert_eq!(e.code, code, "{}", e.message);
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        // Without the recording's length, only its bound goes unchecked.
        assert!(drawn(&t, &[seg("a", 9.0, 10.5, "speech")], &labels, None).is_ok());
        assert!(drawn(&t, &[seg("a", 3.0, 2.0, "speech")], &labels, None).is_err());
    }

    #[test]
    fn a_recordings_score_is_its_weakest_segment_or_its_decided_share() {
        let r = Recording {
            duration: 10.0,
            undecided: 1.0,
            segments: vec![],
        };
        assert!((r.score() - 0.9).abs() < 1e-12);
        let r = Recording {
            segments: vec![
                Segment {
                    id: 1,
                    label: "Speech".into(),
                    span: Span::new(0.0, 1.0),
                    score: 0.8,
                },
                Segment {
                    id: 2,
                    label: "Speech".into(),
                    span: Span::new(2.0, 3.0),
                    score: 0.6,
                },
            ],
            ..r
        };
        assert!((r.score() - 0.6).abs() < 1e-12);
    }
}
