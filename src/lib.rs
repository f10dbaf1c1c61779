//! labelloop: model-assisted auto-labeling.
//!
//! The modules read like the loop (see `ARCHITECTURE.md`):
//! - [`runtime`] finds and loads the ONNX Runtime library and builds sessions;
//! - [`model`] pre-labels: manifests, pre/post-processing, inference, batching;
//! - [`region`] is the one shape of a label: a whole item, a box (later a text
//!   line or a time span), and its exact converters to other tools' formats;
//! - [`select`] ranks items for review (measures and strategies);
//! - [`screen`] finds duplicates, outliers, leaks, bad items and personal data;
//! - [`learn`] trains the classifier head from people's corrections;
//! - [`calibrate`] holds the statistics of trust: thresholds with a guarantee,
//!   temperature scaling, drift alarms, label errors, agreement, matching
//!   boxes and their mAP;
//! - [`store`] keeps projects, items, jobs and annotations (SQLite, PostgreSQL);
//! - [`service`] holds the use cases, written once for every adapter;
//! - [`api`] and [`cli`] only translate HTTP and the command line to them;
//! - [`simulate`] replays the loop on labeled data.
//!
//! Pure math (`select`, `learn`, `calibrate`) knows nothing of ONNX, HTTP or SQL.

pub mod api;
pub mod calibrate;
pub mod cli;
pub mod failpoint;
pub mod json_shape;
pub mod learn;
pub mod model;
pub mod region;
pub mod runtime;
pub mod screen;
pub mod select;
pub mod service;
pub mod simulate;
pub mod store;
