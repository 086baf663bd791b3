//! Criterion benchmarks of the control plane, and the fixtures they share.
//!
//! Run them with `cargo bench -p kuma-benches`.
//!
//! ```
//! let _ = kuma_benches::core::resource::ResourceType::ALL.len();
//! ```

pub use kuma_core as core;
