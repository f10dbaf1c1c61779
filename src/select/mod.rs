//! Ranking items for human review. Pure Rust: no ONNX, no HTTP.

pub mod uncertainty;

pub use uncertainty::Uncertainty;
