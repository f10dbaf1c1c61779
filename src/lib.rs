//! labelloop: model-assisted auto-labeling.
//!
//! The crate is split by concern (see `ARCHITECTURE.md`):
//! - [`runtime`] finds and loads the ONNX Runtime library and builds sessions;
//! - [`model`] owns manifests, pre/post-processing, inference and dynamic batching;
//! - [`select`] holds the pure uncertainty measures used to rank items for review.
//!
//! None of these know about HTTP or storage.

pub mod api;
pub mod calibrate;
pub mod cli;
pub mod learn;
pub mod model;
pub mod runtime;
pub mod select;
pub mod service;
pub mod simulate;
pub mod store;
