//! The `/v1` resources, one file each. Handlers parse a typed request, call
//! one use case and return a typed response.

pub mod annotations;
pub mod calibration;
pub mod content;
pub mod export;
pub mod items;
pub mod jobs;
pub mod labelstudio_credentials;
pub mod labelstudio_sync;
pub mod me;
pub mod ops;
pub mod predict;
pub mod progress;
pub mod projects;
pub mod regions;
pub mod review;
pub mod screening;
