//! Bulk pre-annotation of a whole Label Studio project, as a job: no
//! request waits on it (Label Studio's own "Retrieve predictions" sends every
//! task in one request, which dies at its 100 s timeout).
//!
//! 1. **ingest**: page through the project's tasks (`GET /api/tasks`), and
//!    ingest each page as items keyed `ls-task-<id>` (idempotent: a re-run or
//!    a resume after a crash skips what is there); the page reached is stored;
//! 2. **label**: the usual workers pre-label them; the sync waits for them;
//! 3. **write**: predictions go back in chunks through
//!    `POST /api/projects/{id}/import/predictions`, with calibrated scores
//!    and the model version; each task written is stored with that version,
//!    so nothing is written twice, even across re-runs. A chunk is stored
//!    as in flight before it is posted; a sync resumed after a crash
//!    between the post and its record asks Label Studio which of those
//!    tasks hold that version's prediction and posts only the others.
//!
//! One sync per (project, Label Studio project) is open at a time: a second
//! request gets the open job (`service::exclusive`).
//!
//! Progress is the job's: `total` tasks, `done` predictions written. An
//! unreachable Label Studio is retried with backoff for `ls_retry_secs`,
//! then the job fails with the reason. The token is kept in the store for a
//! resume and never logged or shown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::config::{self, ChoicesTarget, Wanted};
use super::fetch::PathCheck;
use super::predict::{ingest_new, read_tasks, LsPrediction};
use crate::model::detect::{Detection, Detections};
use crate::service::app::App;
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::service::exclusive;
use crate::service::predictor::Labeler as ProjectPredictor;
use crate::store::{ls_client_id, Job, LsConnection, LsSync, Opened};

/// Tasks per page read from Label Studio.
const PAGE: i64 = 500;
/// Predictions per write.
const CHUNK: usize = 500;

/// `POST /v1/projects/{id}/labelstudio/sync`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncIn {
    /// Label Studio's base URL, http(s); its host must be in the server's
    /// `ls_hosts` (403 otherwise).
    #[schema(format = "uri", pattern = "^https?://")]
    pub url: String,
    /// A Label Studio token (legacy, or a personal access token); kept for
    /// the job, never logged, listed or exported. Not blank.
    #[schema(min_length = 1, pattern = "\\S")]
    pub token: String,
    /// The Label Studio project id (≥ 1).
    #[schema(minimum = 1)]
    pub ls_project: i64,
}

/// Why a Label Studio call did not work: worth retrying, or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

struct Client<'a> {
    app: &'a App,
    conn: LsConnection,
}

impl Client<'_> {
    /// One call, with retries and backoff while Label Studio is unreachable
    /// or answers 5xx, for up to `ls_retry_secs`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let ls = &self.app.labelstudio;
        let started = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            match self.once(method.clone(), path, body).await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(why)) => return Err(why),
                Err(Failure::Retry(why)) => {
                    if started.elapsed() >= ls.settings.retry {
                        return Err(format!(
                            "Label Studio did not answer for {} s: {why}",
                            ls.settings.retry.as_secs()
                        ));
                    }
                    tracing::warn!(path, reason = %why, wait_ms = wait.as_millis() as u64, "Label Studio unavailable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let ls = &self.app.labelstudio;
        let url = reqwest::Url::parse(&self.conn.hostname)
            .and_then(|u| u.join(path))
            .map_err(|e| Failure::Fatal(format!("bad Label Studio URL: {e}")))?;
        let auth = ls
            .authorization(&self.conn, false)
            .await
            .map_err(Failure::Retry)?;
        let mut req = ls
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::Retry(
                if e.is_timeout() {
                    "timed out"
                } else {
                    "could not connect"
                }
                .into(),
            )
        })?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(Failure::Retry(format!("{path} answered {status}")));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(format!("{path} answered {status}")));
        }
        resp.json()
            .await
            .map_err(|_| Failure::Retry(format!("{path}: the answer is not JSON")))
    }
}

/// Start a sync job after checking the host, the project and its labeling config.
pub async fn start(app: &Arc<App>, project_id: i64, req: SyncIn) -> ServiceResult<Job> {
    let project = app.store.get_project(project_id).await?;
    app.labelstudio.host_allowed(&req.url)?;
    if req.token.trim().is_empty() {
        return Err(ServiceError::invalid("token", "must not be empty"));
    }
    if req.ls_project < 1 {
        return Err(ServiceError::invalid(
            "ls_project",
            "a Label Studio project id (≥ 1)",
        ));
    }
    let client = Client {
        app,
        conn: LsConnection {
            hostname: req.url.trim_end_matches('/').to_string(),
            access_token: req.token.trim().to_string(),
            ls_project: Some(req.ls_project.to_string()),
        },
    };
    let ls_project = client
        .once(
            reqwest::Method::GET,
            &format!("/api/projects/{}/", req.ls_project),
            None,
        )
        .await
        .map_err(|f| match f {
            Failure::Retry(why) => ServiceError::new(
                Code::Unavailable,
                format!("Label Studio at {}: {why}", req.url),
            ),
            Failure::Fatal(why) => {
                ServiceError::invalid("ls_project", format!("Label Studio refused: {why}"))
            }
        })?;
    let xml = ls_project
        .get("label_config")
        .and_then(Value::as_str)
        .unwrap_or_default();
    config::parse(xml, &project.labels, super::wanted(app, &project)?)?;
    // One open sync per Label Studio project: a second request gets the open one.
    let opened = app
        .store
        .ls_open_sync(
            project_id,
            &client.conn.hostname,
            &client.conn.access_token,
            req.ls_project,
            &exclusive::sync_kind(req.ls_project),
            exclusive::runner(),
            exclusive::lease_ms(),
        )
        .await?;
    if let Opened::New(job) = &opened {
        spawn(app.clone(), job.id);
    }
    Ok(app.store.get_job(opened.job().id).await?)
}

/// Run sync job `job_id`, which this process holds (a new one, or one
/// taken over from a stopped server: every phase resumes where it stopped).
pub(crate) fn spawn(app: Arc<App>, job_id: i64) {
    tokio::spawn(async move {
        let sync = match app.store.ls_open_syncs().await {
            Ok(all) => all.into_iter().find(|s| s.job_id == job_id),
            Err(e) => {
                tracing::warn!(job = job_id, error = %e, "cannot read the sync");
                return;
            }
        };
        let Some(sync) = sync else { return };
        let (next_page, tasks) = (sync.next_page, sync.tasks);
        let outcome = exclusive::hold(&app.store, job_id, run(&app, sync)).await;
        if let Some(Err(why)) = outcome {
            tracing::warn!(job = job_id, reason = %why, "Label Studio sync failed");
            let _ = app
                .store
                .ls_update_sync(job_id, "failed", next_page, tasks, Some(&why))
                .await;
        }
    });
}

async fn run(app: &App, mut s: LsSync) -> Result<(), String> {
    let project = app
        .store
        .get_project(s.project_id)
        .await
        .map_err(internal)?;
    let client = Client {
        app,
        conn: LsConnection {
            hostname: s.url.clone(),
            access_token: s.token.clone(),
            ls_project: Some(s.ls_project.to_string()),
        },
    };
    let info = client
        .call(
            reqwest::Method::GET,
            &format!("/api/projects/{}/", s.ls_project),
            None,
        )
        .await?;
    let xml = info
        .get("label_config")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let wanted = super::wanted(app, &project).map_err(reason)?;
    let target = config::parse(xml, &project.labels, wanted).map_err(reason)?;
    if s.phase == "ingest" {
        ingest(app, &client, &target, &mut s).await?;
        s.phase = "label".into();
        save(app, &s).await?;
    }
    if s.phase == "label" {
        // The workers pre-label what was ingested; wait for them.
        while app.store.ls_pending(s.project_id).await.map_err(internal)? > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        s.phase = "write".into();
        save(app, &s).await?;
    }
    write(app, &client, &target, &project, &s).await?;
    s.phase = "done".into();
    save(app, &s).await
}

/// A failure of ours (the store, serialising), not Label Studio's: its text
/// goes to the log, and the job's error says where to look. The job's error
/// is shown to clients (`GET /v1/jobs/{id}`), internal text never is.
fn internal(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "Label Studio sync: internal failure");
    "an internal error (see the server log)".into()
}

/// A use case's error as the job shows it: its message when it is meant for
/// the user, else (an internal failure) as [`internal`].
fn reason(e: ServiceError) -> String {
    if e.code == Code::Internal {
        internal(e.message)
    } else {
        e.message
    }
}

async fn save(app: &App, s: &LsSync) -> Result<(), String> {
    app.store
        .ls_update_sync(s.job_id, &s.phase, s.next_page, s.tasks, None)
        .await
        .map_err(internal)
}

async fn ingest(
    app: &App,
    client: &Client<'_>,
    target: &ChoicesTarget,
    s: &mut LsSync,
) -> Result<(), String> {
    loop {
        let page = client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/tasks/?project={}&page={}&page_size={PAGE}",
                    s.ls_project, s.next_page
                ),
                None,
            )
            .await;
        let page = match page {
            Ok(p) => p,
            // Past the last page Label Studio answers 404.
            Err(why) if why.contains("404") => break,
            Err(why) => return Err(why),
        };
        let tasks: Vec<Value> = page
            .get("tasks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if tasks.is_empty() {
            break;
        }
        let data = read_tasks(app, &tasks, target, Some(&client.conn), PathCheck::Resolve).await;
        let mut items = Vec::with_capacity(tasks.len());
        for (t, d) in tasks.iter().zip(data) {
            let Some(id) = t.get("id").and_then(Value::as_i64) else {
                continue;
            };
            match d {
                Ok(d) => items.push((ls_client_id(id), d)),
                Err(why) => {
                    tracing::warn!(job = s.job_id, task = id, reason = %why, "Label Studio task not synced")
                }
            }
        }
        ingest_new(app, s.project_id, items).await.map_err(reason)?;
        s.tasks += tasks.len() as i64;
        s.next_page += 1;
        save(app, s).await?;
        let total = page.get("total").and_then(Value::as_i64);
        if (tasks.len() as i64) < PAGE || total.is_some_and(|t| s.tasks >= t) {
            break;
        }
    }
    Ok(())
}

/// An item's machine boxes (those not deleted by a reviewer) as the
/// engine's detections, for pre-annotating its task; `None` before the item
/// was pre-labeled.
fn machine_boxes(
    item: &crate::store::ItemRecord,
    labels: &[String],
) -> Option<(Detections, Vec<i64>)> {
    let width = u32::try_from(item.width?).ok()?;
    let height = u32::try_from(item.height?).ok()?;
    let (boxes, ids) = item
        .regions
        .as_deref()?
        .iter()
        .filter(|r| r.source == "machine" && r.status != "deleted")
        .filter_map(|r| {
            let b = r.bbox.as_ref()?;
            let d = Detection {
                class: labels.iter().position(|l| *l == r.label)?,
                score: r.score.unwrap_or(0.0) as f32,
                bbox: [b.x0, b.y0, b.x1, b.y1],
            };
            Some((d, r.id))
        })
        .unzip();
    Some((
        Detections {
            width,
            height,
            boxes,
        },
        ids,
    ))
}

async fn write(
    app: &App,
    client: &Client<'_>,
    target: &ChoicesTarget,
    project: &crate::store::Project,
    s: &LsSync,
) -> Result<(), String> {
    let predictor = ProjectPredictor::for_project(app, project)
        .await
        .map_err(reason)?;
    let version = predictor.model_version().to_string();
    settle_in_flight(app, client, s).await?;
    let mut cursor = None;
    loop {
        let mut items = app
            .store
            .list_items(s.project_id, None, cursor, 1000)
            .await
            .map_err(internal)?;
        let Some(last) = items.last() else { break };
        let last_id = last.id;
        let boxes = target.wanted == Wanted::ImageBoxes;
        let segments = target.wanted == Wanted::AudioSegments;
        let lines = target.wanted == Wanted::PageLines;
        if boxes || segments || lines {
            app.store
                .attach_regions(&mut items)
                .await
                .map_err(internal)?;
        }
        cursor = Some(last_id);
        let mut rows: Vec<(i64, Value)> = Vec::new();
        for it in &items {
            let Some(task) = it
                .client_id
                .strip_prefix("ls-task-")
                .and_then(|t| t.parse::<i64>().ok())
            else {
                continue;
            };
            let pred = if segments {
                let Some(rec) = super::segments::Recording::of(it) else {
                    continue;
                };
                LsPrediction {
                    task: Some(task),
                    ..LsPrediction::of_segments(target, &project.labels, &rec, &version)
                }
            } else if lines {
                let Some(page) = super::lines::Page::of(it) else {
                    continue;
                };
                LsPrediction {
                    task: Some(task),
                    ..LsPrediction::of_lines(target, &page, &version)
                }
            } else if boxes {
                let Some((d, ids)) = machine_boxes(it, &project.labels) else {
                    continue;
                };
                let weakest = d.boxes.iter().map(|b| f64::from(b.score)).reduce(f64::min);
                LsPrediction {
                    task: Some(task),
                    ..LsPrediction::of_boxes(target, &d, &ids, weakest.unwrap_or(0.0), &version)
                }
            } else {
                let Some(p) = &it.prediction else { continue };
                let Some(k) = project.labels.iter().position(|l| *l == p.label) else {
                    continue;
                };
                LsPrediction {
                    task: Some(task),
                    ..LsPrediction::of(target, k, p.score, &version)
                }
            };
            rows.push((task, serde_json::to_value(pred).map_err(internal)?));
        }
        let ids: Vec<i64> = rows.iter().map(|(t, _)| *t).collect();
        let done: std::collections::HashSet<i64> = app
            .store
            .ls_written(s.project_id, &version, &ids)
            .await
            .map_err(internal)?
            .into_iter()
            .collect();
        rows.retain(|(t, _)| !done.contains(t));
        for chunk in rows.chunks(CHUNK) {
            let written: Vec<i64> = chunk.iter().map(|(t, _)| *t).collect();
            // Durable before the post: a crash between the post and the
            // record below leaves this chunk to be checked against Label
            // Studio on resume, never posted blindly again.
            let in_flight = serde_json::to_string(&InFlight {
                model_version: version.clone(),
                tasks: written.clone(),
            })
            .map_err(internal)?;
            app.store
                .ls_set_in_flight(s.job_id, Some(&in_flight))
                .await
                .map_err(internal)?;
            let body = Value::Array(chunk.iter().map(|(_, p)| p.clone()).collect());
            client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/projects/{}/import/predictions", s.ls_project),
                    Some(&body),
                )
                .await?;
            crate::failpoint::hit("sync-posted");
            app.store
                .ls_record_written(s.job_id, s.project_id, &version, &written)
                .await
                .map_err(internal)?;
        }
        if items.len() < 1000 {
            break;
        }
    }
    Ok(())
}

/// A chunk posted to Label Studio and not yet recorded (kept in the sync's row).
#[derive(serde::Serialize, Deserialize)]
struct InFlight {
    model_version: String,
    tasks: Vec<i64>,
}

/// After a crash (or a failure) between posting a chunk and recording it,
/// by this sync or an earlier one of the same Label Studio project: ask
/// Label Studio which of its tasks hold a prediction of that model version
/// (`GET /api/predictions/?task=…`), and record those as written; the rest
/// are posted again by the write loop. Label Studio is the judge, since the
/// post may or may not have reached it.
async fn settle_in_flight(app: &App, client: &Client<'_>, s: &LsSync) -> Result<(), String> {
    let open = app
        .store
        .ls_in_flight(s.project_id, s.ls_project)
        .await
        .map_err(internal)?;
    for (job_id, json) in open {
        let Ok(chunk) = serde_json::from_str::<InFlight>(&json) else {
            app.store
                .ls_set_in_flight(job_id, None)
                .await
                .map_err(internal)?;
            continue;
        };
        let mut there = Vec::new();
        for &task in &chunk.tasks {
            let preds = client
                .call(
                    reqwest::Method::GET,
                    &format!("/api/predictions/?task={task}"),
                    None,
                )
                .await?;
            let has = preds.as_array().is_some_and(|list| {
                list.iter().any(|p| {
                    p.get("task")
                        .and_then(Value::as_i64)
                        .is_none_or(|t| t == task)
                        && p.get("model_version").and_then(Value::as_str)
                            == Some(chunk.model_version.as_str())
                })
            });
            if has {
                there.push(task);
            }
        }
        tracing::info!(
            job = s.job_id,
            posted_by = job_id,
            posted = chunk.tasks.len(),
            found = there.len(),
            "checked a chunk a stopped sync had in flight against Label Studio"
        );
        // Counted on this sync's job; an earlier sync's mark is cleared after.
        app.store
            .ls_record_written(s.job_id, s.project_id, &chunk.model_version, &there)
            .await
            .map_err(internal)?;
        if job_id != s.job_id {
            app.store
                .ls_set_in_flight(job_id, None)
                .await
                .map_err(internal)?;
        }
    }
    Ok(())
}
