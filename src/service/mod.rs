//! The service layer between the HTTP API and the engine/store: loaded models
//! with their batchers, background pre-labeling workers, metrics and config.
//! Handlers call this; they never touch ONNX Runtime or SQL.

pub mod config;
pub mod export;
pub mod hub;
pub mod learn;
pub mod metrics;
pub mod worker;
