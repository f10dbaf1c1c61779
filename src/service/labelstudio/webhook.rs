//! `/webhook`: Label Studio's events. Annotations become human labels
//! through the one annotate use case (`review::annotate`), so they feed the
//! head, the calibration and the quality checks like any other; the
//! annotator is the Label Studio user's e-mail. `START_TRAINING` starts the
//! usual training (which recalibrates after it) in the background, since
//! Label Studio waits at most a second for a webhook's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::config::ChoicesTarget;
use super::fetch::PathCheck;
use super::predict::{ingest_new, read_tasks, target_for};
use crate::service::app::App;
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::service::review::{self, Annotator};
use crate::store::{ls_client_id, LsAnnotation};

/// How long a webhook for an unseen task waits for its pre-label (Label
/// Studio gives a webhook 1 s).
const PRELABEL_WAIT: Duration = Duration::from_millis(700);

#[derive(Debug, Serialize)]
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

/// Handle one webhook body. A body without an `action`, or an annotation
/// event without its annotation and task, is `bad_webhook` and stores nothing.
pub async fn webhook(app: &Arc<App>, project_id: i64, body: &Value) -> ServiceResult<WebhookOut> {
    let project = app.store.get_project(project_id).await?;
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the webhook body has no string `action`"))?;
    match action {
        "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" => {
            let annotation = body
                .get("annotation")
                .filter(|a| a.is_object())
                .ok_or_else(|| bad(format!("{action} without an `annotation` object")))?;
            let task = body
                .get("task")
                .filter(|t| t.is_object())
                .ok_or_else(|| bad(format!("{action} without a `task` object")))?;
            let ls_annotation_id = annotation
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("`annotation.id` is not an integer"))?;
            let task_id = task
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("`task.id` is not an integer"))?;
            let result = annotation
                .get("result")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("`annotation.result` is not an array"))?;
            let config = body
                .get("project")
                .and_then(|p| p.get("label_config"))
                .and_then(Value::as_str);
            let target = target_for(app, &project, config).await?;
            if annotation.get("was_cancelled").and_then(Value::as_bool) == Some(true) {
                return Ok(out("skipped: the annotation was cancelled", Some(0)));
            }
            let Some(label) = chosen_label(&target, result, &project.labels) else {
                return Ok(out(
                    "skipped: no choice of the configured <Choices> matches the project's labels",
                    Some(0),
                ));
            };
            let conn = app.store.ls_connection(project_id).await?;
            let annotator = Annotator {
                name: annotator_name(app, conn.as_ref(), annotation).await,
                on_behalf_by: None,
            };
            let item_id = item_for_task(app, project_id, task_id, task, &target).await?;
            if let Some(old) = app
                .store
                .ls_annotation(project_id, ls_annotation_id)
                .await?
            {
                app.store.ls_delete_annotation(project_id, &old).await?;
            }
            review::annotate(app, item_id, &label, &annotator).await?;
            let annotation_id = app
                .store
                .latest_annotation_id(item_id, &annotator.name)
                .await?;
            app.store
                .ls_record_annotation(
                    project_id,
                    &LsAnnotation {
                        ls_annotation_id,
                        ls_task_id: task_id,
                        item_id,
                        annotation_id,
                    },
                )
                .await?;
            tracing::info!(project = project_id, task = task_id, annotation = ls_annotation_id, %label, "recorded a Label Studio annotation");
            Ok(out("ok", Some(1)))
        }
        "ANNOTATIONS_DELETED" | "ANNOTATION_DELETED" => {
            let ids: Vec<i64> = match (body.get("annotations"), body.get("annotation")) {
                (Some(Value::Array(list)), _) => list
                    .iter()
                    .map(|a| a.get("id").and_then(Value::as_i64))
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| bad("an `annotations[].id` is not an integer"))?,
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
            let mut removed = 0;
            for id in ids {
                if let Some(a) = app.store.ls_annotation(project_id, id).await? {
                    app.store.ls_delete_annotation(project_id, &a).await?;
                    removed += 1;
                }
            }
            Ok(out("ok", Some(removed)))
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
            Ok(out("training started", None))
        }
        _ => Ok(out("Unknown event", None)),
    }
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

/// Who annotated: the Label Studio user's e-mail, from the body or from
/// Label Studio's API (webhooks carry the user's id).
async fn annotator_name(
    app: &App,
    conn: Option<&crate::store::LsConnection>,
    annotation: &Value,
) -> String {
    let by = annotation.get("completed_by");
    if let Some(email) = by.and_then(|b| b.get("email")).and_then(Value::as_str) {
        return email.to_string();
    }
    let id = by.and_then(|b| b.as_i64().or_else(|| b.get("id")?.as_i64()));
    if let (Some(conn), Some(id)) = (conn, id) {
        if let Some(email) = app.labelstudio.user_email(conn, id).await {
            return email;
        }
    }
    if let Some(name) = annotation
        .get("created_username")
        .and_then(Value::as_str)
        .and_then(|s| s.split(',').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        return name.to_string();
    }
    match id {
        Some(id) => format!("label-studio-user-{id}"),
        None => "label-studio".to_string(),
    }
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
