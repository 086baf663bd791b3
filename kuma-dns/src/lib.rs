//! Kuma DNS.
//!
//! This crate will hold VIP allocation for every `kuma.io/service` over a CIDR
//! (`240.0.0.0/4` by default), its persistence in the store, and the DNS server
//! answering `<service>.mesh` queries. It builds on [`kuma_core`].
//!
//! It is filled by a later milestone; for now it only re-exports the core crate.
//!
//! ```
//! let _ = kuma_dns::core::resource::ResourceType::Config;
//! ```

pub use kuma_core as core;
