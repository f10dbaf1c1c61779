//! The one JSON shape of a prediction, written by `POST /v1/predict`,
//! `labelloop label` and (its scores) the stored prediction alike, so the
//! three never drift apart. Scores are always in the model's label order:
//! the order the manifest declares, the order of the probabilities, and the
//! order a person reading the output expects to compare across items.
//!
//! Everything is borrowed and written straight from the model's answer and
//! label names: no map, string or JSON tree is built per item.

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use super::detect::Detection;
use super::vad::Segment;
use super::Prediction;

/// `{label: probability}` in the model's label order.
#[derive(Debug, Clone, Copy)]
pub struct LabelScores<'a> {
    labels: &'a [String],
    probs: &'a [f32],
}

impl<'a> LabelScores<'a> {
    pub fn new(labels: &'a [String], probs: &'a [f32]) -> Self {
        LabelScores { labels, probs }
    }

    /// The scores as a JSON object string, as the store keeps them.
    pub fn to_json(&self) -> String {
        // Serialising floats and strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for LabelScores<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.probs.len().min(self.labels.len())))?;
        for (label, p) in self.labels.iter().zip(self.probs) {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

/// One prediction: `id`, then for a detector `width`, `height` and
/// `regions`, for an OCR model `width`, `height`, `text` and `regions`, for
/// a voice-activity model `duration` and `segments`, for a classifier `label`, `score`, `scores`
/// and `uncertainty`, then `embedding` when shown, `truncated` when the text
/// was cut, and `model`, `model_version`.
///
/// A model without a class output (a pure embedding model) always shows its
/// embedding: it is the whole answer, and without it the line would say
/// nothing (it used to be all nulls). For a classifier the embedding is
/// shown only on request (`embeddings`), as it is large.
#[derive(Debug, Clone, Copy)]
pub struct PredictionJson<'a> {
    /// The caller's id for the item, echoed back.
    pub id: &'a str,
    pub pred: &'a Prediction,
    pub labels: &'a [String],
    pub model: &'a str,
    pub model_version: &'a str,
    /// Show a classifier's embedding too.
    pub embeddings: bool,
}

impl PredictionJson<'_> {
    fn embedding(&self) -> Option<&[f32]> {
        let shown = self.embeddings || self.pred.class.is_none();
        self.pred.embedding.as_deref().filter(|_| shown)
    }
}

/// A detection model's boxes as `[{"label", "score", "box": [x0, y0, x1, y1]}]`,
/// pixels of the original image, best first.
struct RegionsJson<'a> {
    boxes: &'a [Detection],
    labels: &'a [String],
}

impl Serialize for RegionsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.boxes.len()))?;
        for d in self.boxes {
            seq.serialize_element(&RegionJson {
                label: self.labels.get(d.class).map(String::as_str).unwrap_or(""),
                score: d.score,
                bbox: &d.bbox,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct RegionJson<'a> {
    label: &'a str,
    score: f32,
    #[serde(rename = "box")]
    bbox: &'a [f64; 4],
}

/// A voice-activity model's segments as `[{"label", "start", "end", "score"}]`,
/// seconds from the start of the recording, in time order.
struct SegmentsJson<'a> {
    segments: &'a [Segment],
    label: &'a str,
}

impl Serialize for SegmentsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct One<'a> {
            label: &'a str,
            start: f64,
            end: f64,
            score: f32,
        }
        let mut seq = s.serialize_seq(Some(self.segments.len()))?;
        for g in self.segments {
            seq.serialize_element(&One {
                label: self.label,
                start: g.start,
                end: g.end,
                score: g.score,
            })?;
        }
        seq.end()
    }
}

impl Serialize for PredictionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", self.id)?;
        if let Some(d) = &self.pred.detections {
            map.serialize_entry("width", &d.width)?;
            map.serialize_entry("height", &d.height)?;
            let regions = RegionsJson {
                boxes: &d.boxes,
                labels: self.labels,
            };
            map.serialize_entry("regions", &regions)?;
        }
        if let Some(v) = &self.pred.segments {
            map.serialize_entry("duration", &v.duration)?;
            let segments = SegmentsJson {
                segments: &v.segments,
                label: self.labels.first().map(String::as_str).unwrap_or("Speech"),
            };
            map.serialize_entry("segments", &segments)?;
        }
        if let Some(page) = &self.pred.ocr {
            // An OCR model: the page's text in reading order, then its lines
            // as regions `{"text", "score", "box", "polygon"}`.
            map.serialize_entry("width", &page.width)?;
            map.serialize_entry("height", &page.height)?;
            map.serialize_entry("text", &page.text())?;
            map.serialize_entry("regions", &page.lines)?;
        }
        if let Some(c) = &self.pred.class {
            map.serialize_entry("label", &self.labels.get(c.index))?;
            map.serialize_entry("score", &c.score)?;
            map.serialize_entry("scores", &LabelScores::new(self.labels, &c.probs))?;
            map.serialize_entry("uncertainty", &c.uncertainty)?;
        }
        if let Some(e) = self.embedding() {
            map.serialize_entry("embedding", e)?;
        }
        if self.pred.truncated {
            map.serialize_entry("truncated", &true)?;
        }
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("model_version", self.model_version)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClassPrediction;
    use crate::select::Uncertainty;

    fn labels() -> Vec<String> {
        ["zebra", "ant", "moth"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn scores_keep_the_model_label_order() {
        let probs = [0.2f32, 0.5, 0.3];
        let labels = labels();
        let json = LabelScores::new(&labels, &probs).to_json();
        assert_eq!(json, r#"{"zebra":0.2,"ant":0.5,"moth":0.3}"#);
        // And read back as a JSON value, the order stays.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["zebra", "ant", "moth"]);
    }

    #[test]
    fn an_embedding_model_answer_is_its_embedding_not_nulls() {
        let pred = Prediction {
            class: None,
            embedding: Some(vec![0.5, -0.5]),
            truncated: false,
            detections: None,
            segments: None,
            ocr: None,
        };
        let out = PredictionJson {
            id: "a",
            pred: &pred,
            labels: &[],
            model: "minilm-l6",
            model_version: "1",
            embeddings: false,
        };
        let v = serde_json::to_value(out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "a", "embedding": [0.5, -0.5], "model": "minilm-l6", "model_version": "1"})
        );
    }

    #[test]
    fn a_classifier_shows_its_embedding_only_on_request() {
        let labels = labels();
        let probs = vec![0.2f32, 0.5, 0.3];
        let pred = Prediction {
            class: Some(ClassPrediction {
                index: 1,
                score: 0.5,
                uncertainty: Uncertainty::from_distribution(&probs),
                probs,
            }),
            embedding: Some(vec![1.0]),
            truncated: false,
            detections: None,
            segments: None,
            ocr: None,
        };
        let mut out = PredictionJson {
            id: "a",
            pred: &pred,
            labels: &labels,
            model: "m",
            model_version: "1",
            embeddings: false,
        };
        let v = serde_json::to_value(out).unwrap();
        assert_eq!(v["label"], "ant");
        assert!(v.get("embedding").is_none());
        out.embeddings = true;
        assert_eq!(serde_json::to_value(out).unwrap()["embedding"][0], 1.0);
    }
}
