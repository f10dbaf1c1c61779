//! Turning output tensors into per-item predictions: activation, top label,
//! uncertainty, and embedding pooling.

use ort::session::SessionOutputs;
use ort::value::{DynValue, TensorElementType, ValueType};

use super::detect::{self, Detections, HeadOutput, InputMap};
use super::manifest::{
    Activation, DetectSpec, ImageInput, InputSpec, Manifest, OutputKind, Pooling,
};
use super::{ClassPrediction, ModelError, Prediction};
use crate::select::Uncertainty;

/// Which outputs to read and how, resolved once at load time.
pub struct OutputPlan {
    pub image_input: String,
    class: Option<ClassOutput>,
    embedding: Option<EmbeddingOutput>,
}

struct ClassOutput {
    name: String,
    activation: Option<Activation>,
}

struct EmbeddingOutput {
    name: String,
    pooling: Pooling,
    normalize: bool,
}

impl OutputPlan {
    /// `embeddings: false` skips a declared embedding output.
    pub fn new(manifest: &Manifest, embeddings: bool) -> Self {
        let image_input = match &manifest.input {
            InputSpec::Image(i) => i.name.clone(),
            InputSpec::Text(_) | InputSpec::Audio(_) => String::new(),
        };
        let mut plan = OutputPlan {
            image_input,
            class: None,
            embedding: None,
        };
        for o in &manifest.outputs {
            match o.kind {
                OutputKind::Logits | OutputKind::Probabilities => {
                    plan.class = Some(ClassOutput {
                        name: o.name.clone(),
                        activation: if o.kind == OutputKind::Logits {
                            o.activation
                        } else {
                            None
                        },
                    })
                }
                OutputKind::Embedding if embeddings => {
                    plan.embedding = Some(EmbeddingOutput {
                        name: o.name.clone(),
                        pooling: o.pooling.unwrap_or(Pooling::None),
                        normalize: o.normalize,
                    })
                }
                OutputKind::Embedding => {}
            }
        }
        plan
    }

    /// Decode the outputs of a batch of `n` rows. `mask` is the attention mask
    /// and sequence length for text batches (needed for mean pooling).
    pub fn decode(
        &self,
        outputs: &SessionOutputs<'_>,
        n: usize,
        mask: Option<(&[i64], usize)>,
        truncated: &[bool],
    ) -> Result<Vec<Prediction>, ModelError> {
        let mut preds: Vec<Prediction> = (0..n)
            .map(|i| Prediction {
                truncated: truncated.get(i).copied().unwrap_or(false),
                ..Prediction::default()
            })
            .collect();
        if let Some(c) = &self.class {
            let (shape, data) = read_f32(outputs, &c.name)?;
            let k = *shape.last().unwrap_or(&0);
            if shape.len() != 2 || shape[0] != n || k == 0 {
                return Err(ModelError::Inference(format!(
                    "output {} has shape {shape:?}, expected [{n}, labels]",
                    c.name
                )));
            }
            for (pred, row) in preds.iter_mut().zip(data.chunks_exact(k)) {
                let mut probs = row.to_vec();
                match c.activation {
                    Some(Activation::Softmax) => softmax(&mut probs),
                    Some(Activation::Sigmoid) => probs.iter_mut().for_each(|v| *v = sigmoid(*v)),
                    None => {}
                }
                let (index, score) = argmax(&probs);
                let uncertainty = match c.activation {
                    Some(Activation::Sigmoid) => Uncertainty::from_independent(&probs),
                    _ => Uncertainty::from_distribution(&probs),
                };
                pred.class = Some(ClassPrediction {
                    index,
                    score,
                    probs,
                    uncertainty,
                });
            }
        }
        if let Some(e) = &self.embedding {
            let (shape, data) = read_f32(outputs, &e.name)?;
            if shape.is_empty() || shape[0] != n {
                return Err(ModelError::Inference(format!(
                    "output {} has shape {shape:?}, expected batch {n}",
                    e.name
                )));
            }
            let dim = *shape.last().unwrap_or(&0);
            for (row, pred) in preds.iter_mut().enumerate() {
                let mut v = match (e.pooling, shape.len()) {
                    (Pooling::None, 2) => data[row * dim..(row + 1) * dim].to_vec(),
                    (Pooling::Cls, 3) => {
                        let seq = shape[1];
                        data[row * seq * dim..row * seq * dim + dim].to_vec()
                    }
                    (Pooling::Mean, 3) => {
                        let seq = shape[1];
                        let rows = &data[row * seq * dim..(row + 1) * seq * dim];
                        let m = mask.map(|(m, s)| &m[row * s..(row + 1) * s]);
                        mean_pool(rows, dim, m)
                    }
                    _ => {
                        return Err(ModelError::Inference(format!(
                            "output {} has shape {shape:?}, which does not fit pooling {:?}",
                            e.name, e.pooling
                        )))
                    }
                };
                if e.normalize {
                    l2_normalize(&mut v);
                }
                pred.embedding = Some(v);
            }
        }
        Ok(preds)
    }
}

/// Boxes for every row of a detection model's batch.
pub fn decode_detections(
    outputs: &SessionOutputs<'_>,
    spec: &DetectSpec,
    input: &ImageInput,
    truncated: &[bool],
    sources: &[[u32; 2]],
) -> Result<Vec<Prediction>, ModelError> {
    let tensors = spec
        .outputs
        .iter()
        .map(|name| read_f32_borrowed(outputs, name))
        .collect::<Result<Vec<_>, _>>()?;
    let heads: Vec<HeadOutput<'_>> = tensors
        .iter()
        .map(|(shape, data)| HeadOutput {
            shape,
            data: data.as_ref(),
        })
        .collect();
    sources
        .iter()
        .enumerate()
        .map(|(row, &[width, height])| {
            let map = InputMap::new(input, width, height);
            let boxes =
                detect::decode(spec, input, &heads, row, &map).map_err(ModelError::Inference)?;
            Ok(Prediction {
                truncated: truncated.get(row).copied().unwrap_or(false),
                detections: Some(Detections {
                    width,
                    height,
                    boxes,
                }),
                ..Prediction::default()
            })
        })
        .collect()
}

/// An output as f32: borrowed from ONNX Runtime when it is f32 already
/// (a PicoDet page is 420k values), converted when it is f16.
fn read_f32_borrowed<'a>(
    outputs: &'a SessionOutputs<'_>,
    name: &str,
) -> Result<(Vec<usize>, std::borrow::Cow<'a, [f32]>), ModelError> {
    let value: &DynValue = outputs
        .get(name)
        .ok_or_else(|| ModelError::Inference(format!("graph returned no output {name:?}")))?;
    let err = |e: ort::Error| ModelError::Inference(format!("output {name}: {e}"));
    match value.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float16,
            ..
        } => {
            let (shape, data) = value.try_extract_tensor::<half::f16>().map_err(err)?;
            let data = data.iter().map(|v| v.to_f32()).collect();
            Ok((to_dims(shape), std::borrow::Cow::Owned(data)))
        }
        _ => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            Ok((to_dims(shape), std::borrow::Cow::Borrowed(data)))
        }
    }
}

/// Read an output as f32, converting from f16 when the graph emits half floats.
fn read_f32(
    outputs: &SessionOutputs<'_>,
    name: &str,
) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    let value: &DynValue = outputs
        .get(name)
        .ok_or_else(|| ModelError::Inference(format!("graph returned no output {name:?}")))?;
    let err = |e: ort::Error| ModelError::Inference(format!("output {name}: {e}"));
    match value.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float16,
            ..
        } => {
            let (shape, data) = value.try_extract_tensor::<half::f16>().map_err(err)?;
            Ok((to_dims(shape), data.iter().map(|v| v.to_f32()).collect()))
        }
        _ => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            Ok((to_dims(shape), data.to_vec()))
        }
    }
}

fn to_dims(shape: &[i64]) -> Vec<usize> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect()
}

pub fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        v.iter_mut().for_each(|x| *x /= sum);
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn argmax(v: &[f32]) -> (usize, f32) {
    v.iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
}

/// Mean over the tokens whose mask is 1 (all tokens when there is no mask).
pub fn mean_pool(rows: &[f32], dim: usize, mask: Option<&[i64]>) -> Vec<f32> {
    let mut out = vec![0f32; dim];
    let mut count = 0f32;
    for (t, token) in rows.chunks_exact(dim).enumerate() {
        if mask.is_some_and(|m| m.get(t).copied().unwrap_or(0) == 0) {
            continue;
        }
        count += 1.0;
        for (o, x) in out.iter_mut().zip(token) {
            *o += x;
        }
    }
    if count > 0.0 {
        out.iter_mut().for_each(|o| *o /= count);
    }
    out
}

pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let mut v = [1000.0, 1001.0, 999.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[1] > v[0] && v[0] > v[2]);
    }

    #[test]
    fn mean_pool_ignores_padding() {
        let rows = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let pooled = mean_pool(&rows, 2, Some(&[1, 1, 0]));
        assert_eq!(pooled, vec![2.0, 3.0]);
    }
}
