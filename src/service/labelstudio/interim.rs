//! INTERIM, to be deleted when `service::predictor` lands in main: the same
//! surface (`ProjectPredictor::for_project`, `predict`, `model_version`) so
//! the Label Studio use cases compile and run. It applies no head (the base
//! model's own classes only) and calibrates through the existing
//! `calibration::scorer`; the real predictor owns head/zero-shot logic.

use std::sync::Arc;

use crate::model::Input;
use crate::service::app::App;
use crate::service::calibration::{self, Scorer};
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::store::Project;

/// One item's label, as the real predictor will give it.
#[derive(Debug, Clone)]
#[allow(dead_code)] // the real predictor's fields; the interim fills them
pub struct Labeled {
    pub label: String,
    pub score: f64,
    pub probs: Vec<f32>,
    pub raw_score: f64,
    pub auto_accept: bool,
}

pub struct ProjectPredictor {
    app_hub: Arc<crate::service::hub::ModelHub>,
    model: String,
    labels: Vec<String>,
    scorer: Scorer,
    version: String,
}

impl ProjectPredictor {
    pub async fn for_project(app: &App, project: &Project) -> ServiceResult<ProjectPredictor> {
        let loaded = app.hub.get(&project.model).ok_or_else(|| {
            ServiceError::new(
                Code::Unavailable,
                format!(
                    "the project's model {:?} is not loaded on this server",
                    project.model
                ),
            )
        })?;
        let scorer = calibration::scorer(&app.store, project).await?;
        let mut version = format!("{}@{}", project.model, loaded.model.version());
        if let Some(h) = project.head_version {
            version.push_str(&format!("+head{h}"));
        }
        if let Some(c) = scorer.version {
            version.push_str(&format!("+cal{c}"));
        }
        Ok(ProjectPredictor {
            app_hub: app.hub.clone(),
            model: project.model.clone(),
            labels: project.labels.clone(),
            scorer,
            version,
        })
    }

    pub fn model_version(&self) -> &str {
        &self.version
    }

    pub async fn predict(&self, inputs: Vec<Input>) -> Vec<Result<Labeled, String>> {
        let Some(loaded) = self.app_hub.get(&self.model) else {
            return inputs
                .iter()
                .map(|_| Err("model not loaded".into()))
                .collect();
        };
        loaded
            .predict_many(inputs)
            .await
            .into_iter()
            .map(|r| {
                let p = r.map_err(|e| e.to_string())?;
                let c = p.class.ok_or("the model gives no classes")?;
                let d = self.scorer.decide(&self.labels, &c.probs);
                Ok(Labeled {
                    label: self.labels.get(d.index).cloned().unwrap_or_default(),
                    score: d.score,
                    probs: d.probs,
                    raw_score: f64::from(c.score),
                    auto_accept: d.auto_accept,
                })
            })
            .collect()
    }
}
