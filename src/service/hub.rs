//! Every model of the models folder, loaded once at start-up, each behind
//! its own dynamic batcher. Models are never reloaded per request.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::model::batcher::{BatchError, Batcher, BatcherConfig};
use crate::model::output::PredictionJson;
use crate::model::{registry, Input, LoadOptions, Model, ModelError, Prediction};

pub struct LoadedModel {
    pub model: Arc<Model>,
    pub batcher: Batcher,
}

/// Loaded models by name.
#[derive(Default)]
pub struct ModelHub {
    models: BTreeMap<String, LoadedModel>,
}

/// A prediction as the API shows it: the one shape every output uses
/// (see [`crate::model::output`]).
pub type PredictionOut<'a> = PredictionJson<'a>;

pub use crate::model::output::LabelScores;

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

    /// One request's items (see [`Batcher::predict_many`]).
    pub async fn predict_many(&self, inputs: Vec<Input>) -> Vec<Result<Prediction, BatchError>> {
        self.batcher.predict_many(inputs).await
    }

    /// A background job's items: waits for queue room, never "busy".
    pub async fn predict_job(&self, inputs: Vec<Input>) -> Vec<Result<Prediction, BatchError>> {
        self.batcher.predict_job(inputs).await
    }

    /// `embeddings`: also show a classifier's embedding (an embedding
    /// model's answer always holds its embedding).
    pub fn to_out<'a>(
        &'a self,
        id: &'a str,
        pred: &'a Prediction,
        embeddings: bool,
    ) -> PredictionOut<'a> {
        PredictionJson {
            id,
            pred,
            labels: self.model.labels(),
            model: self.model.name(),
            model_version: self.model.version(),
            embeddings,
        }
    }
}
