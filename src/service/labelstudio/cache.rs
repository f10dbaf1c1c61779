//! What `/predict` would otherwise rebuild on every request. Label Studio
//! sends many small requests for the same project ("Retrieve predictions",
//! each task opened in the editor), and each used to cost a labeling-config
//! parse, three store reads and a background store read of the tasks it
//! already knew. Kept here, per project:
//!
//! - the project row, for at most [`PROJECT_TTL`], and only while no write
//!   to a project row in this process has come since
//!   ([`store::project_writes`]). A head trained or a calibration fitted in
//!   this process is therefore seen at once, and one fitted by another
//!   replica within [`PROJECT_TTL`]. Reading it on every request cost
//!   about 8% of the throughput at 64 tasks a request;
//! - the parsed labeling config, valid while the config text, the labels
//!   and the model's kind are the same;
//! - the project's [`Labeler`], valid while the project row's model, labels,
//!   label descriptions, head version and calibration version are the same.
//!   A drift alarm moves no
//!   version, but it changes only routing, which `/predict` never answers;
//! - the Label Studio task ids already ingested as items, so a request of
//!   known tasks spawns no ingest at all.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::config::{self, ChoicesTarget, Wanted};
use crate::service::app::App;
use crate::service::error::ServiceResult;
use crate::service::predictor::Labeler;
use crate::store::{self, Project};

/// How long a kept project row answers for the store. Bounds how late a
/// replica sees a head or calibration that another replica wrote.
pub const PROJECT_TTL: Duration = Duration::from_secs(1);

/// Task ids remembered per project; past it, new tasks are checked against
/// the store again (which is right, only slower).
const MAX_KNOWN_TASKS: usize = 1 << 20;

#[derive(Default)]
pub struct Cache {
    projects: Mutex<HashMap<i64, KeptProject>>,
    targets: Mutex<HashMap<i64, (TargetKey, Arc<ChoicesTarget>)>>,
    labelers: Mutex<HashMap<i64, (LabelerKey, Arc<Labeler>)>>,
    known: Mutex<HashMap<i64, HashSet<i64>>>,
}

struct KeptProject {
    row: Arc<Project>,
    /// [`store::project_writes`] before the row was read.
    writes: u64,
    read_at: Instant,
}

impl KeptProject {
    /// Still the row in force: no write to a project row in this process
    /// since it was read, and read less than [`PROJECT_TTL`] ago.
    fn fresh(&self, writes: u64, now: Instant) -> bool {
        self.writes == writes && now.saturating_duration_since(self.read_at) < PROJECT_TTL
    }
}

#[derive(PartialEq)]
struct TargetKey {
    xml: String,
    labels: Vec<String>,
    wanted: Wanted,
}

#[derive(PartialEq)]
struct LabelerKey {
    model: String,
    model_version: String,
    labels: Vec<String>,
    descriptions: Option<std::collections::BTreeMap<String, String>>,
    head_version: Option<i64>,
    calibration_version: Option<i64>,
    threshold_bits: Option<u64>,
}

impl LabelerKey {
    fn of(project: &Project, model_version: &str) -> LabelerKey {
        LabelerKey {
            model: project.model.clone(),
            model_version: model_version.to_string(),
            labels: project.labels.clone(),
            descriptions: project.settings.label_descriptions.clone(),
            head_version: project.head_version,
            calibration_version: project.calibration_version,
            threshold_bits: project.threshold.map(f64::to_bits),
        }
    }

    fn matches(&self, project: &Project, model_version: &str) -> bool {
        self.model == project.model
            && self.model_version == model_version
            && self.labels == project.labels
            && self.descriptions == project.settings.label_descriptions
            && self.head_version == project.head_version
            && self.calibration_version == project.calibration_version
            && self.threshold_bits == project.threshold.map(f64::to_bits)
    }
}

/// A poisoned lock only means another request panicked mid-update of a
/// cache entry; the maps hold nothing that can be half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// The project's row, from the store unless a fresh one is kept.
    pub async fn project(&self, app: &App, id: i64) -> ServiceResult<Arc<Project>> {
        // Read before the row: a write that lands during the read then
        // makes this entry stale at once.
        let writes = store::project_writes();
        if let Some(kept) = lock(&self.projects).get(&id) {
            if kept.fresh(writes, Instant::now()) {
                return Ok(kept.row.clone());
            }
        }
        let read_at = Instant::now();
        let row = Arc::new(app.store.get_project(id).await?);
        let kept = KeptProject {
            row: row.clone(),
            writes,
            read_at,
        };
        lock(&self.projects).insert(id, kept);
        Ok(row)
    }

    /// The labeling config `xml` parsed against the project's labels.
    pub async fn target(
        &self,
        project: &Project,
        xml: &str,
        wanted: Wanted,
    ) -> ServiceResult<Arc<ChoicesTarget>> {
        if let Some((key, t)) = lock(&self.targets).get(&project.id) {
            if key.xml == xml && key.labels == project.labels && key.wanted == wanted {
                return Ok(t.clone());
            }
        }
        let target = Arc::new(config::parse_off_thread(xml, &project.labels, wanted).await?);
        let key = TargetKey {
            xml: xml.to_string(),
            labels: project.labels.clone(),
            wanted,
        };
        lock(&self.targets).insert(project.id, (key, target.clone()));
        Ok(target)
    }

    /// The project's labeler as its row stands now.
    pub async fn labeler(&self, app: &App, project: &Project) -> ServiceResult<Arc<Labeler>> {
        let model_version = app.model_of(project)?.model.version().to_string();
        if let Some((key, l)) = lock(&self.labelers).get(&project.id) {
            if key.matches(project, &model_version) {
                return Ok(l.clone());
            }
        }
        let labeler = Arc::new(Labeler::for_project(app, project).await?);
        lock(&self.labelers).insert(
            project.id,
            (LabelerKey::of(project, &model_version), labeler.clone()),
        );
        Ok(labeler)
    }

    /// Of `tasks`, those not yet known as items of the project, now marked
    /// known (the caller ingests them, and calls [`Cache::forget`] if that fails).
    pub fn claim_unknown(&self, project: i64, tasks: &[i64]) -> Vec<i64> {
        let mut known = lock(&self.known);
        let set = known.entry(project).or_default();
        let mut new = Vec::new();
        for &t in tasks {
            if set.contains(&t) {
                continue;
            }
            if set.len() < MAX_KNOWN_TASKS {
                set.insert(t);
            }
            new.push(t);
        }
        new
    }

    /// Tasks whose ingest failed: the next request tries them again.
    pub fn forget(&self, project: i64, tasks: &[i64]) {
        if let Some(set) = lock(&self.known).get_mut(&project) {
            for t in tasks {
                set.remove(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_project_row_goes_stale_on_a_write_or_after_the_ttl() {
        let read_at = Instant::now();
        let kept = KeptProject {
            row: Arc::new(Project {
                id: 1,
                name: "p".into(),
                model: "m".into(),
                labels: vec!["a".into()],
                precision_target: 0.95,
                threshold: Some(0.9),
                created_at: 0,
                settings: Default::default(),
                head_version: None,
                committee: Vec::new(),
                calibration_version: None,
                task: "classify".into(),
                guarantee: Default::default(),
            }),
            writes: 7,
            read_at,
        };
        assert!(kept.fresh(7, read_at + PROJECT_TTL / 2));
        assert!(!kept.fresh(8, read_at), "a write in this process");
        assert!(!kept.fresh(7, read_at + PROJECT_TTL), "past the TTL");
    }

    #[test]
    fn known_tasks_are_claimed_once_and_forgotten_on_failure() {
        let c = Cache::default();
        assert_eq!(c.claim_unknown(1, &[5, 6, 5]), vec![5, 6]);
        assert_eq!(c.claim_unknown(1, &[5, 6, 7]), vec![7]);
        assert_eq!(c.claim_unknown(2, &[5]), vec![5]);
        c.forget(1, &[6]);
        assert_eq!(c.claim_unknown(1, &[5, 6, 7]), vec![6]);
    }
}
