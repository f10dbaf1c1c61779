//! The webhook outbox worker: applies Label Studio events written by
//! `/webhook`: each annotation's events one at a time and in the order
//! they arrived (different annotations side by side), so concurrent
//! duplicates and updates of one annotation never interleave in this
//! process. A claim is a lease: events a dead worker held are claimed
//! again when it lapses, and applying an event twice writes nothing twice
//! (`webhook::apply` records the Label Studio id before the annotation).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::webhook::{self, WebhookOut};
use crate::service::app::App;
use crate::service::error::Code;
use crate::store::OutboxEvent;

/// How long a claimed event is this worker's alone.
const LEASE_MS: i64 = 60_000;
/// Events claimed at once.
const CLAIM: i64 = 32;
/// Tries before an event that keeps failing for a passing reason is dropped.
const MAX_ATTEMPTS: i64 = 5;
/// How often an idle worker looks for events other replicas wrote.
const POLL: Duration = Duration::from_secs(1);

/// Run until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let events = match app.store.ls_outbox_claim(CLAIM, LEASE_MS).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Label Studio webhook outbox; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        if events.is_empty() {
            tokio::select! {
                _ = app.labelstudio.outbox_wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        // Events on different annotations are independent, and one that
        // waits for its task's pre-label must not hold up the rest: run
        // each annotation's events in order, the annotations side by
        // side. A deletion is a barrier: what came before it finishes
        // first, and it runs alone.
        let mut lanes: Vec<(Option<String>, Vec<OutboxEvent>)> = Vec::new();
        for event in events {
            match lane_of(&event.body) {
                None => {
                    run_lanes(&app, std::mem::take(&mut lanes)).await;
                    apply_one(&app, event).await;
                }
                Some(key) => match lanes
                    .iter_mut()
                    .find(|(k, _)| k.as_deref() == Some(key.as_str()))
                {
                    Some((_, queue)) => queue.push(event),
                    None => lanes.push((Some(key), vec![event])),
                },
            }
        }
        run_lanes(&app, lanes).await;
    }
}

/// The annotation an event is about (`None` for deletions and anything
/// else, which run alone).
fn lane_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    match v.get("action")?.as_str()? {
        "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" => {
            let id = v.get("annotation")?.get("id")?.as_i64()?;
            Some(id.to_string())
        }
        _ => None,
    }
}

async fn run_lanes(app: &Arc<App>, lanes: Vec<(Option<String>, Vec<OutboxEvent>)>) {
    let runs = lanes.into_iter().map(|(_, queue)| async move {
        for event in queue {
            apply_one(app, event).await;
        }
    });
    futures_util::future::join_all(runs).await;
}

/// Apply one event and mark it done (or reschedule it when it failed for
/// a passing reason).
async fn apply_one(app: &Arc<App>, event: OutboxEvent) {
    let answer = match serde_json::from_str::<Value>(&event.body) {
        Ok(body) => webhook::apply(app, event.project_id, &body).await,
        Err(_) => Ok(WebhookOut {
            status: "skipped: the stored event is not JSON".into(),
            recorded: Some(0),
        }),
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let passing = matches!(
                e.code,
                Code::Unavailable | Code::StorageFull | Code::Busy | Code::Conflict
            );
            if passing && event.attempts < MAX_ATTEMPTS {
                tracing::warn!(event = event.id, attempt = event.attempts, error = %e.message, "a Label Studio webhook will be retried");
                let delay = 250 * (1 << event.attempts.clamp(0, 6));
                if let Err(e) = app.store.ls_outbox_retry(event.id, delay).await {
                    tracing::warn!(event = event.id, error = %e, "cannot reschedule a Label Studio webhook");
                }
                return;
            }
            tracing::warn!(event = event.id, project = event.project_id, error = %e.message, "a Label Studio webhook could not be applied");
            WebhookOut {
                status: if e.code == Code::Internal {
                    "failed: an internal error (see the server log)".into()
                } else {
                    format!("failed: {}", e.message)
                },
                recorded: Some(0),
            }
        }
    };
    let stored = serde_json::to_string(&answer).unwrap_or_default();
    match app.store.ls_outbox_done(event.id, &stored).await {
        Ok(()) => {
            let _ = app.labelstudio.outbox_done.send((event.id, answer));
        }
        Err(e) => {
            tracing::warn!(event = event.id, error = %e, "cannot mark a Label Studio webhook applied; it will be re-applied, which writes nothing twice")
        }
    }
}
