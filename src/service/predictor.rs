//! How one project turns a model's output into its labels, written once for
//! every path that labels a project's items (the background workers, the
//! Label Studio backend):
//! 1. the class comes from the project's trained head applied to the item's
//!    embedding; else, for an embedding model with no head yet, from
//!    zero-shot similarity to the embeddings of the label names or
//!    descriptions; else from the model's own classes;
//! 2. the project's scorer calibrates that distribution and routes the item.
//!
//! Heads and zero-shot prototypes are cached: a saved head version never
//! changes, and prototypes change only when the labels, their descriptions
//! or the model do (the cache key holds all three).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::app::App;
use super::calibration::{self, Scorer};
use super::error::{ServiceError, ServiceResult};
use super::hub::{LoadedModel, ModelHub};
use crate::learn::{zero_shot, Head, ZeroShot};
use crate::model::manifest::Task;
use crate::model::output::LabelScores;
use crate::model::{Input, Prediction};
use crate::select::Uncertainty;
use crate::store::{Disagreement, Outcome, Project, Store, StoredPrediction};

/// Heads and zero-shot prototypes already built, shared by every worker and
/// request of this process.
#[derive(Default)]
pub struct Classifiers {
    heads: Mutex<HashMap<(i64, i64), Arc<Head>>>,
    /// Per project: the key the prototypes were built from, and the classifier.
    zero_shots: Mutex<HashMap<i64, (String, Arc<ZeroShot>)>>,
}

/// What decides an item's class (see the module doc).
#[derive(Clone)]
pub enum Classifier {
    Head(Arc<Head>),
    ZeroShot(Arc<ZeroShot>),
    Model,
}

/// One project's way of labeling, valid for one batch: read it again for the
/// next, since its head or calibration may have moved.
pub struct ProjectPredictor {
    classifier: Classifier,
    scorer: Scorer,
    labels: Vec<String>,
    version: String,
}

impl Classifiers {
    async fn head(&self, store: &Store, project: i64, version: i64) -> Result<Arc<Head>, String> {
        if let Some(h) = self
            .heads
            .lock()
            .ok()
            .and_then(|m| m.get(&(project, version)).cloned())
        {
            return Ok(h);
        }
        let body = store
            .head(project, version)
            .await
            .map_err(|e| e.to_string())?;
        let head: Head = serde_json::from_str(&body)
            .map_err(|e| format!("head {version} of project {project}: {e}"))?;
        let head = Arc::new(head);
        if let Ok(mut m) = self.heads.lock() {
            m.insert((project, version), head.clone());
        }
        Ok(head)
    }

    /// The zero-shot classifier of a project: its label texts embedded by
    /// the project's own model, once per (labels, descriptions, model).
    async fn zero_shot(
        &self,
        loaded: &LoadedModel,
        project: &Project,
    ) -> Result<Arc<ZeroShot>, String> {
        let lines = zero_shot::label_lines(
            &project.labels,
            project.settings.label_descriptions.as_ref(),
        );
        let key = format!(
            "{}@{}\u{1f}{:?}",
            loaded.model.name(),
            loaded.model.version(),
            lines
        );
        if let Some((k, z)) = self
            .zero_shots
            .lock()
            .ok()
            .and_then(|m| m.get(&project.id).cloned())
        {
            if k == key {
                return Ok(z);
            }
        }
        let (owners, texts): (Vec<usize>, Vec<String>) = lines.into_iter().unzip();
        let inputs = texts.into_iter().map(Input::Text).collect();
        let mut embeddings = Vec::with_capacity(owners.len());
        for (&owner, r) in owners.iter().zip(loaded.predict_job(inputs).await) {
            let label = project.labels.get(owner).map_or("", String::as_str);
            embeddings.push(
                r.map_err(|e| format!("embedding label {label:?}: {e}"))?
                    .embedding
                    .ok_or_else(|| format!("the model gave no embedding for label {label:?}"))?,
            );
        }
        let (prototypes, dim) =
            zero_shot::prototypes_from_lines(project.labels.len(), &owners, &embeddings)
                .map_err(|e| e.to_string())?;
        let z = Arc::new(
            ZeroShot::new(prototypes, dim, zero_shot::DEFAULT_SCALE).map_err(|e| e.to_string())?,
        );
        if let Ok(mut m) = self.zero_shots.lock() {
            m.insert(project.id, (key, z.clone()));
        }
        Ok(z)
    }
}

impl ProjectPredictor {
    /// The predictor in force for `project` on `loaded` (its model).
    pub async fn for_project(
        store: &Store,
        classifiers: &Classifiers,
        loaded: &LoadedModel,
        project: &Project,
    ) -> Result<ProjectPredictor, String> {
        let model_version = loaded.model.version();
        let embedding_model = loaded.model.manifest().task == Task::TextEmbedding;
        let (classifier, version) = match project.head_version {
            Some(v) => (
                Classifier::Head(classifiers.head(store, project.id, v).await?),
                format!("{model_version}+head-{v}"),
            ),
            None if embedding_model && project.labels.len() >= 2 => (
                Classifier::ZeroShot(classifiers.zero_shot(loaded, project).await?),
                format!("{model_version}+zero-shot"),
            ),
            None => (Classifier::Model, model_version.to_string()),
        };
        let scorer = calibration::scorer(store, project)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ProjectPredictor {
            classifier,
            scorer,
            labels: project.labels.clone(),
            version,
        })
    }

    /// A predictor from its parts, for callers that hold them already.
    pub fn from_parts(
        classifier: Classifier,
        scorer: Scorer,
        labels: &[String],
        version: &str,
    ) -> ProjectPredictor {
        ProjectPredictor {
            classifier,
            scorer,
            labels: labels.to_vec(),
            version: version.to_string(),
        }
    }

    /// The model (and head) version each prediction records.
    pub fn model_version(&self) -> &str {
        &self.version
    }

    /// The model version with the calibration that scored it, for clients
    /// that must see a new version whenever either moves (Label Studio
    /// skips tasks whose prediction already has the version it is shown).
    pub fn full_version(&self) -> String {
        match self.scorer.version {
            Some(c) => format!("{}+cal-{c}", self.version),
            None => self.version.clone(),
        }
    }

    /// The calibration version that scores, if any fit is in force.
    pub fn calibration_version(&self) -> Option<i64> {
        self.scorer.version
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Turn a model prediction into what the store records. `model_labels`
    /// are the model's own (the head and zero-shot use the project's);
    /// `disagreement` is the committee's, if the project has one. The raw
    /// probabilities are kept; the calibrated ones are what is shown,
    /// ranked and routed.
    pub fn label(
        &self,
        pred: Prediction,
        model_labels: &[String],
        disagreement: impl FnOnce(&[String], &[f32]) -> Option<Disagreement>,
    ) -> Outcome {
        // Everything read from the distribution first: it may borrow `pred`,
        // whose embedding is moved into the outcome afterwards.
        let decided = match self.distribution(&pred, model_labels) {
            Ok(Some((labels, probs))) => {
                let raw_score = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let disagreement = disagreement(labels, &probs);
                let d = self
                    .scorer
                    .decide(&self.labels, &self.align(labels, &probs));
                Some((
                    raw_score,
                    disagreement,
                    d,
                    LabelScores::new(labels, &probs).to_json(),
                ))
            }
            Ok(None) => None,
            Err(why) => return Outcome::Failed(why),
        };
        let Some((raw_score, disagreement, d, raw_scores_json)) = decided else {
            return Outcome::Predicted(StoredPrediction {
                embedding: pred.embedding,
                model_version: self.version.clone(),
                ..StoredPrediction::default()
            });
        };
        let auto_accept = d.auto_accept && self.may_auto_accept();
        Outcome::Predicted(StoredPrediction {
            label: self.labels.get(d.index).cloned(),
            score: Some(d.score),
            // The same serialiser as /v1/predict and `labelloop label`:
            // scores in the project's label order.
            scores_json: Some(LabelScores::new(&self.labels, &d.probs).to_json()),
            // Ranked by what the user sees: the calibrated distribution.
            uncertainty: Some(Uncertainty::from_distribution(&d.probs)),
            embedding: pred.embedding,
            disagreement,
            model_version: self.version.clone(),
            auto_accept,
            raw_score: Some(f64::from(raw_score)),
            raw_scores_json: Some(raw_scores_json),
            audit: false,
            audit_p: None,
            calibration_version: self.scorer.version,
            regions: None,
            segments: None,
        })
    }

    /// The calibrated top label (its index among the project's labels) and
    /// score, and nothing else: for adapters that answer one label per item,
    /// without the scores JSON, uncertainty and copies `label` stores.
    pub fn top(&self, pred: &Prediction, model_labels: &[String]) -> Result<(usize, f64), String> {
        let (labels, probs) = self
            .distribution(pred, model_labels)?
            .ok_or("the model gives no classes for this project")?;
        Ok(self.scorer.top(&self.align(labels, &probs)))
    }

    /// The uncalibrated distribution and the labels it is over: the head's,
    /// zero-shot's (the project's labels) or the model's own; `None` for a
    /// model that gives no classes (an embedding model with no head).
    fn distribution<'p>(
        &'p self,
        pred: &'p Prediction,
        model_labels: &'p [String],
    ) -> Result<Option<Distribution<'p>>, String> {
        Ok(match (&self.classifier, &pred.embedding) {
            (Classifier::Head(h), Some(e)) => Some((
                h.labels.as_slice(),
                Cow::Owned(h.predict_proba(e).map_err(|e| format!("head: {e}"))?),
            )),
            (Classifier::ZeroShot(z), Some(e)) => Some((
                self.labels.as_slice(),
                Cow::Owned(
                    z.predict_proba_batch(e)
                        .map_err(|e| format!("zero-shot: {e}"))?,
                ),
            )),
            _ => pred
                .class
                .as_ref()
                .map(|c| (model_labels, Cow::Borrowed(c.probs.as_slice()))),
        })
    }

    /// `probs` over `labels` in the project's label order: the scorer works
    /// in that order, and a model may order its labels otherwise.
    fn align<'a>(&self, labels: &[String], probs: &'a [f32]) -> Cow<'a, [f32]> {
        if labels == self.labels.as_slice() {
            return Cow::Borrowed(probs);
        }
        Cow::Owned(
            self.labels
                .iter()
                .map(|l| {
                    labels
                        .iter()
                        .position(|x| x == l)
                        .and_then(|j| probs.get(j).copied())
                        .unwrap_or(0.0)
                })
                .collect(),
        )
    }

    /// Zero-shot scores mean nothing until calibration has tested them on
    /// human labels: before the first fit, nothing they say is accepted (the
    /// project's fixed threshold is for models trained on the task).
    fn may_auto_accept(&self) -> bool {
        !(matches!(self.classifier, Classifier::ZeroShot(_)) && self.scorer.version.is_none())
    }
}

/// Uncalibrated probabilities and the labels they are over.
type Distribution<'p> = (&'p [String], Cow<'p, [f32]>);

/// One item's label as an adapter answers it.
#[derive(Debug, Clone)]
pub struct Labeled {
    /// Among the project's labels (a detector's item: 0).
    pub index: usize,
    /// Calibrated; a detector's item: its weakest box's score, the one that
    /// decides whether a person looks at it (0 for an image with no box,
    /// which a person confirms too).
    pub score: f64,
    /// A detector's boxes, in pixels of the upright image.
    pub boxes: Option<Box<crate::model::detect::Detections>>,
}

/// A project's predictor bound to its loaded model, for adapters that label
/// inputs on request (the Label Studio backend) rather than through jobs.
pub struct Labeler {
    hub: Arc<ModelHub>,
    model: String,
    predictor: ProjectPredictor,
    /// `<model>@<version>[+head-N|+zero-shot][+cal-M]`: moves whenever the
    /// head or the calibration does.
    version: String,
}

impl Labeler {
    pub async fn for_project(app: &App, project: &Project) -> ServiceResult<Labeler> {
        let loaded = app.model_of(project)?;
        let predictor =
            ProjectPredictor::for_project(&app.store, &app.classifiers, loaded, project)
                .await
                .map_err(ServiceError::internal)?;
        let version = format!("{}@{}", project.model, predictor.full_version());
        Ok(Labeler {
            hub: app.hub.clone(),
            model: project.model.clone(),
            predictor,
            version,
        })
    }

    pub fn model_version(&self) -> &str {
        &self.version
    }

    /// Labels for a request's inputs, in order; one failing input fails alone.
    pub async fn predict(&self, inputs: Vec<Input>) -> Vec<Result<Labeled, String>> {
        let Some(loaded) = self.hub.get(&self.model) else {
            return inputs
                .iter()
                .map(|_| Err("the project's model is not loaded".to_string()))
                .collect();
        };
        loaded
            .predict_many(inputs)
            .await
            .into_iter()
            .map(|r| {
                let pred = r.map_err(|e| e.to_string())?;
                if let Some(boxes) = pred.detections {
                    let weakest = boxes
                        .boxes
                        .iter()
                        .map(|b| f64::from(b.score))
                        .reduce(f64::min);
                    return Ok(Labeled {
                        index: 0,
                        score: weakest.unwrap_or(0.0),
                        boxes: Some(Box::new(boxes)),
                    });
                }
                let (index, score) = self.predictor.top(&pred, loaded.labels())?;
                Ok(Labeled {
                    index,
                    score,
                    boxes: None,
                })
            })
            .collect()
    }
}
