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

/// A prediction as the API shows it. It borrows the model's answer and label
/// names, so serialising it writes JSON straight from them: no map, string or
/// JSON tree is built per item on the way out.
#[derive(Debug, Serialize)]
pub struct PredictionOut<'a> {
    /// The caller's id for the item, echoed back.
    pub id: &'a str,
    pub label: Option<&'a str>,
    pub score: Option<f32>,
    pub scores: Option<LabelScores<'a>>,
    pub uncertainty: Option<Uncertainty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub model: &'a str,
    pub model_version: &'a str,
}

/// `{label: probability}` in the model's label order.
#[derive(Debug)]
pub struct LabelScores<'a> {
    labels: &'a [String],
    probs: &'a [f32],
}

impl Serialize for LabelScores<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.probs.len()))?;
        for (label, p) in self.labels.iter().zip(self.probs) {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
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

    pub fn to_out<'a>(
        &'a self,
        id: &'a str,
        pred: &'a Prediction,
        embeddings: bool,
    ) -> PredictionOut<'a> {
        let labels = self.model.labels();
        let class = pred.class.as_ref();
        PredictionOut {
            id,
            label: class.and_then(|c| labels.get(c.index)).map(String::as_str),
            score: class.map(|c| c.score),
            scores: class.map(|c| LabelScores {
                labels,
                probs: &c.probs,
            }),
            uncertainty: class.map(|c| c.uncertainty),
            embedding: pred.embedding.as_deref().filter(|_| embeddings),
            truncated: pred.truncated,
            model: self.model.name(),
            model_version: self.model.version(),
        }
    }
}
