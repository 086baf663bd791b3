//! Kuma Discovery Service (KDS).
//!
//! This crate will hold resource synchronisation between a global control plane
//! and remote (zone) control planes: policies flow global -> remote, Dataplanes
//! and insights flow remote -> global. It builds on [`kuma_core`].
//!
//! It is filled by a later milestone; for now it only re-exports the core crate.
//!
//! ```
//! let _ = kuma_kds::core::resource::ResourceType::Zone;
//! ```

pub use kuma_core as core;
