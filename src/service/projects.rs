//! Creating projects: the label set comes from the model (or, for an
//! embedding model, from the project), committee members must classify into
//! the same labels, and every number is bounded before it is stored.

use std::collections::HashSet;

use serde::Deserialize;

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use super::hub::LoadedModel;
use super::review::validate_settings;
use crate::store::{Guarantee, NewProject, Project, ProjectSettings};

/// A new project, as a client asks for it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Not blank (a character other than white space).
    #[schema(min_length = 1, pattern = "\\S")]
    pub name: String,
    /// A loaded model's name.
    pub model: String,
    /// The label set: the model's own (any order), or for an embedding model
    /// at least two distinct labels of the project's.
    pub labels: Option<Vec<String>>,
    /// Precision that auto-accepted labels must reach, in (0, 1) (default 0.95).
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub precision_target: Option<f64>,
    /// An explicit fixed auto-accept threshold on the top raw score, in
    /// [0, 1], used until the first calibration **with no guarantee** (the
    /// project then shows `guarantee: no_guarantee`). Absent or `null` (the
    /// default): nothing is auto-accepted before a calibration has earned it.
    /// Classification projects only.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    #[serde(default, deserialize_with = "crate::json_shape::optional_object")]
    pub settings: Option<ProjectSettings>,
    /// Extra models with the same label set, for ensemble disagreement.
    pub committee: Option<Vec<String>>,
}

/// The loaded model `name`, or an error naming `field` and the models that are loaded.
pub fn loaded_model<'a>(app: &'a App, field: &str, name: &str) -> ServiceResult<&'a LoadedModel> {
    app.hub.get(name).ok_or_else(|| {
        let known: Vec<&str> = app.hub.names().collect();
        ServiceError::new(
            Code::UnknownModel,
            format!(
                "field `{field}`: no loaded model {name:?}; loaded: {}",
                known.join(", ")
            ),
        )
    })
}

pub async fn create(app: &App, req: CreateProject) -> ServiceResult<Project> {
    if req.name.trim().is_empty() {
        return Err(ServiceError::invalid("name", "must not be empty"));
    }
    let model = loaded_model(app, "model", &req.model)?;
    let labels = label_set(model, &req)?;
    if let Some(settings) = &req.settings {
        validate_settings(settings)?;
    }
    let committee = req.committee.unwrap_or_default();
    let task = task_of(model);
    if super::regions::has_regions(task) && !committee.is_empty() {
        return Err(ServiceError::invalid(
            "committee",
            format!(
                "model {:?} {}; a committee compares class distributions and is for classification projects only",
                req.model,
                match task {
                    super::regions::DETECT => "detects boxes",
                    super::regions::LINES => "reads text lines",
                    _ => "finds speech segments",
                }
            ),
        ));
    }
    validate_committee(app, &req.model, &labels, &committee)?;
    let precision_target = req.precision_target.unwrap_or(0.95);
    super::calibration::validate_target(precision_target)?;
    let threshold = fixed_threshold(req.threshold, task)?;
    Ok(app
        .store
        .create_project_as(
            &NewProject {
                name: req.name,
                model: req.model,
                labels,
                precision_target,
                threshold,
                settings: req.settings.unwrap_or_default(),
                committee,
            },
            task,
        )
        .await?)
}

/// The explicit fixed threshold asked for, bounded: in [0, 1] (NaN is not),
/// and only for classification, speech and OCR (on a line's recognition
/// confidence, until page calibration exists; a detection project accepts no
/// box before its box calibration, and has no whole-item score to
/// threshold; a speech project accepts a segment whose mean speech
/// probability reaches it, until recording calibration exists).
fn fixed_threshold(threshold: Option<f64>, task: &str) -> ServiceResult<Option<f64>> {
    let Some(t) = threshold else {
        return Ok(None);
    };
    if !(0.0..=1.0).contains(&t) {
        return Err(ServiceError::invalid("threshold", "must be in [0, 1]"));
    }
    if task == super::regions::DETECT {
        return Err(ServiceError::invalid(
            "threshold",
            "a detection project accepts no box before its box calibration; leave the fixed threshold out",
        ));
    }
    Ok(Some(t))
}

/// Set `labelloop_project_no_guarantee{project}` for every project from
/// the store (so that it is true across restarts and replicas): 1 while an
/// explicit fixed threshold auto-accepts with no calibration in force.
pub async fn publish_guarantees(app: &App) -> ServiceResult<()> {
    for p in app.store.list_projects().await? {
        app.metrics
            .no_guarantee(p.id, p.guarantee == Guarantee::NoGuarantee);
    }
    Ok(())
}

/// A project's task, from its model's manifest: `detect` for an
/// object-detection model, `segments` for a voice-activity model, `lines`
/// for an OCR model,
/// `classify` for every other (a classifier, or an
/// embedding model with a head).
pub fn task_of(model: &LoadedModel) -> &'static str {
    match model.model.manifest().task {
        crate::model::manifest::Task::ObjectDetection => super::regions::DETECT,
        crate::model::manifest::Task::VoiceActivity => super::regions::SEGMENTS,
        crate::model::manifest::Task::Ocr => super::regions::LINES,
        _ => super::regions::CLASSIFY,
    }
}

/// The label of an OCR project's lines unless the project names its own.
pub const LINE_LABEL: &str = "Text";

/// The project's labels: the model's, or for an embedding model the
/// project's own; an OCR project's lines carry one label (`Text`, or the
/// one the project gives: what its Label Studio rectangles are called).
fn label_set(model: &LoadedModel, req: &CreateProject) -> ServiceResult<Vec<String>> {
    if model.model.is_ocr() {
        return match req.labels.as_deref() {
            None => Ok(vec![LINE_LABEL.to_string()]),
            Some([one]) if !one.trim().is_empty() => Ok(vec![one.clone()]),
            Some(_) => Err(ServiceError::invalid(
                "labels",
                format!(
                    "model {:?} reads text lines: give one non-blank label for them, or leave \
                     `labels` out for {LINE_LABEL:?}",
                    req.model
                ),
            )),
        };
    }
    let model_labels = model.labels().to_vec();
    if model_labels.is_empty() {
        // An embedding model: the project brings its own labels and a head
        // is trained from the first corrections (cold start).
        let labels = req.labels.clone().unwrap_or_default();
        let unique: HashSet<&String> = labels.iter().collect();
        if labels.len() < 2 || unique.len() != labels.len() {
            return Err(ServiceError::invalid(
                "labels",
                format!(
                    "model {:?} gives embeddings only, so give at least two distinct labels; a head is trained from the first annotations",
                    req.model
                ),
            ));
        }
        return Ok(labels);
    }
    if let Some(labels) = &req.labels {
        let mut a = labels.clone();
        let mut b = model_labels.clone();
        a.sort();
        b.sort();
        if a != b {
            let unknown: Vec<&String> = labels
                .iter()
                .filter(|l| !model_labels.contains(l))
                .collect();
            return Err(ServiceError::new(
                Code::LabelsMismatch,
                format!(
                    "field `labels` must be the model's label set {model_labels:?}; unknown or missing labels (unknown: {unknown:?})"
                ),
            ));
        }
    }
    Ok(model_labels)
}

/// Every committee member is loaded, distinct, not the project's own model,
/// and classifies into exactly the project's labels (disagreement compares
/// distributions label by label).
fn validate_committee(
    app: &App,
    model: &str,
    labels: &[String],
    committee: &[String],
) -> ServiceResult<()> {
    let mut want = labels.to_vec();
    want.sort();
    for (i, name) in committee.iter().enumerate() {
        if name == model || committee[..i].contains(name) {
            return Err(ServiceError::invalid(
                &format!("committee[{i}]"),
                format!("{name:?} is already in the project; list each extra model once"),
            ));
        }
        let member = loaded_model(app, &format!("committee[{i}]"), name)?;
        let mut have = member.labels().to_vec();
        have.sort();
        if have != want {
            return Err(ServiceError::new(
                Code::LabelsMismatch,
                format!(
                    "field `committee[{i}]`: model {name:?} classifies into {:?}, the project into {labels:?}; committee members need the same label set",
                    member.labels()
                ),
            ));
        }
    }
    Ok(())
}
