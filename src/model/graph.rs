//! Checking a manifest against the ONNX graph's real inputs and outputs.
//!
//! A mismatch found here is far cheaper than a shape error on the first batch,
//! and the message names both sides so the user knows which one to fix.

use ort::value::{Outlet, TensorElementType, ValueType};

use super::manifest::{InputSpec, Layout, Manifest, OutputKind, TensorType};
use super::ModelError;

pub(crate) fn describe(outlet: &Outlet) -> String {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> = shape
                .iter()
                .map(|d| {
                    if *d < 0 {
                        "?".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect();
            format!("{} ({ty} [{}])", outlet.name(), dims.join(", "))
        }
        other => format!("{} ({other})", outlet.name()),
    }
}

pub(crate) fn list(outlets: &[Outlet]) -> String {
    outlets.iter().map(describe).collect::<Vec<_>>().join(", ")
}

pub(crate) fn tensor(outlet: &Outlet) -> Option<(TensorElementType, &[i64])> {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape)),
        _ => None,
    }
}

/// Check that every declared input and output exists with a compatible type and shape,
/// and that the graph needs no input the manifest does not feed.
pub fn check(manifest: &Manifest, inputs: &[Outlet], outputs: &[Outlet]) -> Result<(), ModelError> {
    let mismatch = |m: String, g: String| ModelError::Mismatch {
        model: manifest.name.clone(),
        manifest: m,
        graph: g,
    };
    let find_in = |name: &str| inputs.iter().find(|o| o.name() == name);

    let mut fed: Vec<&str> = Vec::new();
    match &manifest.input {
        InputSpec::Image(img) => {
            fed.push(&img.name);
            let Some(outlet) = find_in(&img.name) else {
                return Err(mismatch(
                    format!("input {:?}", img.name),
                    format!("inputs {}", list(inputs)),
                ));
            };
            let Some((ty, shape)) = tensor(outlet) else {
                return Err(mismatch(
                    format!("tensor input {:?}", img.name),
                    describe(outlet),
                ));
            };
            let want = match img.dtype {
                TensorType::Float32 => TensorElementType::Float32,
                TensorType::Float16 => TensorElementType::Float16,
            };
            if ty != want {
                return Err(mismatch(
                    format!("input {:?} of dtype {:?}", img.name, img.dtype),
                    describe(outlet),
                ));
            }
            let expected: [i64; 3] = match img.layout {
                Layout::NCHW => [img.channels.into(), img.height.into(), img.width.into()],
                Layout::NHWC => [img.height.into(), img.width.into(), img.channels.into()],
            };
            let fits = shape.len() == 4
                && shape[1..]
                    .iter()
                    .zip(expected.iter())
                    .all(|(g, m)| *g < 0 || g == m);
            if !fits {
                return Err(mismatch(
                    format!(
                        "input {:?} as {:?} [N, {}, {}, {}] (channels {}, height {}, width {})",
                        img.name,
                        img.layout,
                        expected[0],
                        expected[1],
                        expected[2],
                        img.channels,
                        img.height,
                        img.width
                    ),
                    describe(outlet),
                ));
            }
        }
        InputSpec::Text(t) => {
            let names = std::iter::once(&t.input_ids)
                .chain(t.attention_mask.iter())
                .chain(t.token_type_ids.iter());
            for name in names {
                fed.push(name);
                let Some(outlet) = find_in(name) else {
                    return Err(mismatch(
                        format!("text input {name:?}"),
                        format!("inputs {}", list(inputs)),
                    ));
                };
                match tensor(outlet) {
                    Some((TensorElementType::Int64, shape)) if shape.len() == 2 => {}
                    _ => {
                        return Err(mismatch(
                            format!("input {name:?} as int64 [batch, seq]"),
                            describe(outlet),
                        ))
                    }
                }
            }
        }
        InputSpec::Audio(a) => {
            fed.extend([a.name.as_str(), a.state.as_str()]);
            fed.extend(a.sample_rate_input.as_deref());
            super::vad::check_graph(manifest, a, inputs, outputs)
                .map_err(|(m, g)| mismatch(m, g))?;
        }
    }
    let unfed: Vec<&Outlet> = inputs.iter().filter(|o| !fed.contains(&o.name())).collect();
    if !unfed.is_empty() {
        let names: Vec<String> = unfed.iter().map(|o| describe(o)).collect();
        return Err(mismatch(
            format!("only the inputs {fed:?}"),
            format!("also requires {}", names.join(", ")),
        ));
    }

    if let Some(detect) = &manifest.detect {
        check_detect_outputs(manifest, detect, outputs)?;
    }
    for spec in &manifest.outputs {
        let Some(outlet) = outputs.iter().find(|o| o.name() == spec.name) else {
            return Err(mismatch(
                format!("output {:?}", spec.name),
                format!("outputs {}", list(outputs)),
            ));
        };
        let Some((ty, shape)) = tensor(outlet) else {
            return Err(mismatch(
                format!("tensor output {:?}", spec.name),
                describe(outlet),
            ));
        };
        if !matches!(ty, TensorElementType::Float32 | TensorElementType::Float16) {
            return Err(mismatch(
                format!("output {:?} as float32 or float16", spec.name),
                describe(outlet),
            ));
        }
        match spec.kind {
            OutputKind::Logits | OutputKind::Probabilities => {
                let k = manifest.labels.len() as i64;
                let last = shape.last().copied().unwrap_or(0);
                if shape.len() != 2 || (last >= 0 && last != k) {
                    return Err(mismatch(
                        format!("output {:?} as [batch, {k}] for {k} labels", spec.name),
                        describe(outlet),
                    ));
                }
            }
            OutputKind::Embedding => {
                let pooled = matches!(
                    spec.pooling,
                    Some(super::manifest::Pooling::Mean | super::manifest::Pooling::Cls)
                );
                let rank = if pooled { 3 } else { 2 };
                if shape.len() != rank {
                    return Err(mismatch(
                        format!(
                            "embedding output {:?} of rank {rank} ({})",
                            spec.name,
                            if pooled {
                                "[batch, seq, dim] before pooling"
                            } else {
                                "[batch, dim]"
                            }
                        ),
                        describe(outlet),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The batch size of the first input when the graph fixes it.
pub fn fixed_batch(inputs: &[Outlet]) -> Option<usize> {
    let (_, shape) = tensor(inputs.first()?)?;
    usize::try_from(*shape.first()?).ok().filter(|&b| b > 0)
}

/// Each output a detection head reads exists as a float tensor of rank 3.
fn check_detect_outputs(
    manifest: &Manifest,
    detect: &super::manifest::DetectSpec,
    outputs: &[Outlet],
) -> Result<(), ModelError> {
    use super::manifest::DetectHead;
    let classes = manifest.labels.len() as i64;
    for (i, name) in detect.outputs.iter().enumerate() {
        // Where the class count shows in this output's shape, and as what.
        let (axis, extra) = match detect.head {
            DetectHead::Picodet if i < detect.strides.len() => (Some(2), 0),
            DetectHead::Picodet => (None, 0),
            DetectHead::Yolov8 => (Some(1), 4),
            DetectHead::Rtdetr => (Some(2), 4),
        };
        let found = outputs.iter().find(|o| o.name() == name.as_str());
        let fits = found.and_then(tensor).is_some_and(|(ty, shape)| {
            matches!(ty, TensorElementType::Float32 | TensorElementType::Float16)
                && shape.len() == 3
                && axis.is_none_or(|a| shape[a] < 0 || shape[a] == classes + extra)
        });
        if !fits {
            let want = match axis {
                Some(a) => format!(
                    " with {} on axis {a} ({classes} labels{})",
                    classes + extra,
                    if extra > 0 { " + 4 box values" } else { "" }
                ),
                None => String::new(),
            };
            return Err(ModelError::Mismatch {
                model: manifest.name.clone(),
                manifest: format!(
                    "[detect] head {:?} reading output {name:?} as a float tensor of rank 3{want}",
                    detect.head
                ),
                graph: match found {
                    Some(o) => describe(o),
                    None => format!("outputs {}", list(outputs)),
                },
            });
        }
    }
    Ok(())
}
