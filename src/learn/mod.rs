//! Learning from corrections: the classifier head trained on the embeddings
//! the engine already produces, from the labels people gave. Pure Rust;
//! knows nothing of ONNX, HTTP or SQL.

pub mod crossfit;
pub mod head;
mod kernels;
mod lbfgs;
pub mod zero_shot;

pub use head::{Head, HeadError, TrainOptions};
pub use zero_shot::{ZeroShot, ZeroShotError};
