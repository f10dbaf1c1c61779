//! Learning from corrections: train a classifier head on the embeddings of
//! human-labeled items, make it the project's new model version, and send the
//! machine-decided items back through it.

use serde::Serialize;

use crate::learn::{Head, TrainOptions};
use crate::store::{Job, Store, StoreError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Trained {
    pub version: i64,
    pub model_version: String,
    pub trained_on: usize,
    pub classes_seen: usize,
    pub train_accuracy: f64,
    #[schema(value_type = Object)]
    pub repredict_job: Job,
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotEnough(String),
    #[error("training failed: {0}")]
    Train(String),
}

/// Heads learn from few labels on unit-length embeddings, where sklearn's
/// default C = 1 shrinks the weights until the bias (the labeled prior)
/// decides; C = 10 lets the embedding speak. Used by the service and by
/// `labelloop simulate` alike.
pub fn head_options() -> TrainOptions {
    TrainOptions {
        c: 10.0,
        ..TrainOptions::default()
    }
}

/// Train, save and re-predict. Training runs on a blocking thread.
pub async fn train_head(
    store: &Store,
    project_id: i64,
    model_version: &str,
) -> Result<Trained, LearnError> {
    let project = store.get_project(project_id).await?;
    let rows = store.labeled_embeddings(project_id).await?;
    let dim = rows.first().map(|(e, _)| e.len()).unwrap_or(0);
    let mut x = Vec::with_capacity(rows.len() * dim);
    let mut y = Vec::with_capacity(rows.len());
    for (e, label) in &rows {
        if e.len() != dim {
            continue;
        }
        if let Some(i) = project.labels.iter().position(|l| l == label) {
            x.extend_from_slice(e);
            y.push(i);
        }
    }
    let mut seen: Vec<usize> = y.clone();
    seen.sort_unstable();
    seen.dedup();
    if y.len() < 2 || seen.len() < 2 {
        return Err(LearnError::NotEnough(format!(
            "a head needs human labels of at least two classes on items with embeddings; this project has {} labeled item(s) covering {} class(es)",
            y.len(),
            seen.len()
        )));
    }
    let labels = project.labels.clone();
    let n = y.len();
    let (head, accuracy) = tokio::task::spawn_blocking(move || {
        let head = Head::train(&x, dim, &y, labels, head_options()).map_err(|e| e.to_string())?;
        let acc = head.accuracy(&x, &y).map_err(|e| e.to_string())?;
        Ok::<_, String>((head, acc))
    })
    .await
    .map_err(|e| LearnError::Train(e.to_string()))?
    .map_err(LearnError::Train)?;
    let body = serde_json::to_string(&head).map_err(|e| LearnError::Train(e.to_string()))?;
    let (version, job) = store
        .save_head_and_requeue(project_id, &body, n as i64)
        .await?;
    tracing::info!(
        project = project_id,
        version,
        trained_on = n,
        "trained a new head"
    );
    Ok(Trained {
        version,
        model_version: format!("{model_version}+head-{version}"),
        trained_on: n,
        classes_seen: seen.len(),
        train_accuracy: accuracy,
        repredict_job: job,
    })
}
