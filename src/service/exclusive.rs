//! Exclusive jobs, the service side: calibrations, trainings and Label
//! Studio syncs run once per project at a time, on whichever replica opened
//! them ([`crate::store::Store::open_exclusive`]). This process holds a
//! lease on each job it runs and renews it while the work goes on; a job
//! whose runner died (its lease ran out, or, on SQLite, any open job at
//! start-up) is taken over here: a calibration and a sync are resumed, a
//! training is failed (asking again trains again). A job of this process
//! that ended without recording its end (the store failed just then) is
//! taken back the same way once its lease runs out.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::app::App;
use crate::store::{Orphan, Store};

/// How long a runner's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a runner renews it.
const RENEW: Duration = Duration::from_secs(5);
/// How often this process looks for jobs whose runner died.
const SWEEP: Duration = Duration::from_secs(10);

pub const CALIBRATE: &str = "calibrate";
pub const TRAIN: &str = "train";

/// The kind of a Label Studio project's sync job.
pub fn sync_kind(ls_project: i64) -> String {
    format!("ls-sync:{ls_project}")
}

/// This process, as the runner of the exclusive jobs it runs.
pub fn runner() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(super::worker::worker_id)
}

pub fn lease_ms() -> i64 {
    LEASE.as_millis() as i64
}

/// Run `work` for job `job_id`, renewing this process's lease on it
/// meanwhile. `None` when the lease was lost (another process took the job
/// over, so this one stops at once and records nothing).
pub async fn hold<T>(store: &Store, job_id: i64, work: impl Future<Output = T>) -> Option<T> {
    let _held = Held::new(job_id);
    let renew = async {
        loop {
            tokio::time::sleep(RENEW).await;
            match store.renew_job(job_id, runner(), lease_ms()).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(job = job_id, "lost the job to another process; stopping");
                    return;
                }
                // A store hiccup: keep working; the next renewal may pass.
                Err(e) => tracing::warn!(job = job_id, error = %e, "could not renew a job's lease"),
            }
        }
    };
    tokio::select! {
        out = work => Some(out),
        () = renew => None,
    }
}

/// The jobs this process is running now: never taken over by its own sweep,
/// even when a renewal failed and the lease ran out.
fn held() -> &'static Mutex<HashSet<i64>> {
    static HELD: OnceLock<Mutex<HashSet<i64>>> = OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

/// Marks a job held while [`hold`] runs it.
struct Held(i64);

impl Held {
    fn new(job_id: i64) -> Held {
        held()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id);
        Held(job_id)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        held()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// Take over the jobs a stopped server left open, now and then every few
/// seconds (a replica that died on PostgreSQL leaves its jobs to the others).
pub fn start_recovery(app: &Arc<App>) {
    let app = app.clone();
    tokio::spawn(async move {
        // One process owns an SQLite file: what is open now was left by the last run.
        let mut all = app.store.is_sqlite();
        loop {
            recover(&app, all).await;
            all = false;
            tokio::time::sleep(SWEEP).await;
        }
    });
}

async fn recover(app: &Arc<App>, all: bool) {
    let orphans = match app.store.orphaned_jobs(runner(), all).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for interrupted jobs");
            return;
        }
    };
    for o in orphans {
        let running_here = held()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&o.job_id);
        if running_here {
            continue;
        }
        match app
            .store
            .take_over_job(o.job_id, runner(), lease_ms(), all)
            .await
        {
            Ok(true) => resume(app, o).await,
            Ok(false) => {} // another replica took it
            Err(e) => tracing::warn!(job = o.job_id, error = %e, "could not take over a job"),
        }
    }
}

async fn resume(app: &Arc<App>, o: Orphan) {
    match o.kind.as_str() {
        CALIBRATE => {
            tracing::info!(
                job = o.job_id,
                project = o.project_id,
                "resuming an interrupted calibration"
            );
            super::calibration::spawn_job(&app.calibrator, o.project_id, o.job_id);
        }
        TRAIN => {
            tracing::warn!(
                job = o.job_id,
                project = o.project_id,
                "a training was interrupted (its server stopped); failed: ask again to train"
            );
            let _ = app
                .store
                .finish_exclusive(o.job_id, runner(), false, None)
                .await;
        }
        super::screening::SCREEN => {
            tracing::warn!(
                job = o.job_id,
                project = o.project_id,
                "a screen was interrupted (its server stopped); failed: ask again to screen"
            );
            let result = serde_json::json!({"error": "the server running the screen stopped; ask again to screen"}).to_string();
            let _ = app
                .store
                .finish_exclusive(o.job_id, runner(), false, Some(&result))
                .await;
        }
        k if k.starts_with("ls-sync:") => {
            tracing::info!(
                job = o.job_id,
                project = o.project_id,
                "resuming a Label Studio sync"
            );
            super::labelstudio::sync::spawn(app.clone(), o.job_id);
        }
        other => {
            tracing::warn!(
                job = o.job_id,
                kind = other,
                "an open job of an unknown kind; failed"
            );
            let _ = app
                .store
                .finish_exclusive(o.job_id, runner(), false, None)
                .await;
        }
    }
}
