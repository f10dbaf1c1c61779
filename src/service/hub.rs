//! Every model of the models folder, loaded once at start-up, each behind
//! its own dynamic batcher. Models are never reloaded per request.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::model::batcher::{BatchError, Batcher, BatcherConfig};
use crate::model::{registry, Input, LoadOptions, Model, ModelError, Prediction};
use crate::select::Uncertainty;

pub struct LoadedModel {
    pub model: Arc<Model>,
    pub batcher: Batcher,
}

/// Loaded models by name.
#[derive(Default)]
pub struct ModelHub {
    models: BTreeMap<String, LoadedModel>,
}

/// A prediction as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionOut {
    pub label: Option<String>,
    pub score: Option<f32>,
    pub scores: Option<BTreeMap<String, f32>>,
    pub uncertainty: Option<Uncertainty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub model: String,
    pub model_version: String,
}

impl ModelHub {
    /// Load every ready model under `dir`. A model whose files are missing is
    /// skipped with a warning; a model that fails to load is an error.
    /// Must be called inside a tokio runtime (batchers spawn their tasks).
    pub fn load_dir(
        dir: &Path,
        opts: LoadOptions,
        batcher: BatcherConfig,
    ) -> Result<ModelHub, ModelError> {
        let mut hub = ModelHub::default();
        let entries = registry::scan(dir).map_err(|e| ModelError::NotAModel {
            dir: dir.to_path_buf(),
            why: e.to_string(),
        })?;
        for entry in entries {
            match (&entry.manifest, entry.onnx_present) {
                (Ok(_), true) => {
                    let model = Arc::new(Model::load(&entry.dir, opts)?);
                    hub.insert(model, batcher);
                }
                (Ok(m), false) => {
                    tracing::warn!(model = %m.name, "skipping model: its ONNX file is missing (run scripts/setup.sh)")
                }
                (Err(e), _) => {
                    tracing::warn!(dir = %entry.dir.display(), error = %e, "skipping invalid model folder")
                }
            }
        }
        Ok(hub)
    }

    pub fn insert(&mut self, model: Arc<Model>, config: BatcherConfig) {
        let batcher = Batcher::spawn(model.clone(), config);
        self.models
            .insert(model.name().to_string(), LoadedModel { model, batcher });
    }

    pub fn get(&self, name: &str) -> Option<&LoadedModel> {
        self.models.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Items waiting in all batch queues.
    pub fn queue_depth(&self) -> usize {
        self.models
            .values()
            .map(|m| {
                m.batcher
                    .stats()
                    .queued
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &LoadedModel)> {
        self.models.iter()
    }
}

impl LoadedModel {
    pub fn labels(&self) -> &[String] {
        self.model.labels()
    }

    pub async fn predict_many(&self, inputs: Vec<Input>) -> Vec<Result<Prediction, BatchError>> {
        self.batcher.predict_many(inputs).await
    }

    pub fn to_out(&self, pred: Prediction, embeddings: bool) -> PredictionOut {
        let labels = self.model.labels();
        let (label, score, scores, uncertainty) = match pred.class {
            Some(c) => (
                labels.get(c.index).cloned(),
                Some(c.score),
                Some(
                    labels
                        .iter()
                        .cloned()
                        .zip(c.probs.iter().copied())
                        .collect(),
                ),
                Some(c.uncertainty),
            ),
            None => (None, None, None, None),
        };
        PredictionOut {
            label,
            score,
            scores,
            uncertainty,
            embedding: if embeddings { pred.embedding } else { None },
            truncated: pred.truncated,
            model: self.model.name().to_string(),
            model_version: self.model.version().to_string(),
        }
    }
}
