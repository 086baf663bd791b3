//! Envoy xDS for a Kuma-compatible control plane.
//!
//! This crate will hold Envoy v3 resource generation for Dataplanes (listeners,
//! clusters, endpoints, routes), the snapshot cache, the ADS/SDS/MADS gRPC
//! services and Envoy bootstrap generation. It builds on [`kuma_core`] for the
//! resource model and policy matching.
//!
//! It is filled by a later milestone; for now it only re-exports the core crate
//! so that dependents compile against the final layout.
//!
//! ```
//! let _ = kuma_xds::core::resource::ResourceType::Dataplane;
//! ```

pub use kuma_core as core;
