//! Calibration and learning from corrections: small models trained on the
//! embeddings the engine already produces, from the labels people gave.
//! Pure Rust. Knows nothing of ONNX or HTTP.

pub mod head;

pub use head::{Head, HeadError, TrainOptions};
