//! The service layer between the HTTP API and the engine/store: loaded models
//! with their batchers, background pre-labeling workers, metrics and config.
//! Handlers call this; they never touch ONNX Runtime or SQL.

pub mod annotations;
pub mod app;
pub mod box_calibration;
pub mod calibration;
pub mod config;
pub mod content;
pub mod error;
pub mod exclusive;
pub mod export;
pub mod hub;
pub mod ingest;
pub mod labelstudio;
pub mod learn;
pub mod metrics;
pub mod predictor;
pub mod progress;
pub mod projects;
pub mod quality;
pub mod regions;
pub mod review;
pub mod screening;
pub mod secret;
pub mod verdicts;
pub mod worker;
