//! Ranking items for human review. Pure Rust: no ONNX, no HTTP.

pub mod layout;
pub mod measure;
pub mod rng;
pub mod strategies;
pub mod uncertainty;

pub use layout::{layout_dim, layout_embedding};
pub use measure::Measure;
pub use rng::Rng;
pub use strategies::{
    cluster_margin, cold_start, k_center_greedy, mean_kl, select, vote_entropy, Pool, SelectError,
    Strategy,
};
pub use uncertainty::Uncertainty;
