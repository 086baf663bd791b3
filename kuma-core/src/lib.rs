//! The core of a Kuma-compatible service-mesh control plane.
//!
//! - [`resource`]: every Kuma resource type, its universal YAML/JSON form and
//!   its validation rules.
//! - [`store`]: the [`store::ResourceStore`] trait, the in-memory store and a
//!   conformance suite any other store can run.
//! - [`manager`]: validation, defaults and side effects in front of a store.
//! - [`matching`]: which policies apply to which Dataplane, with Kuma's
//!   ranking rules.
//! - [`wire`]: the HTTP wire contracts servers and clients share (Kuma's
//!   error body, the bootstrap request).
//!
//! Behind features (all off by default, so the model, validation, store and
//! matcher build without crypto or HTTP dependencies):
//!
//! - `pki`: the `pki` module (mesh certificate authorities and SPIFFE proxy
//!   certificates) and the manager's CA side effects.
//! - `tokens`: the `tokens` module (dataplane tokens, Ed25519 JWTs, and the
//!   check the servers that accept proxies run).
//! - `http-api`: the `api` module, the HTTP API as an axum router (with
//!   `tokens`, also the admin router that issues tokens).
//!
//! This crate has no gRPC or HTTP server; those live in the crates and
//! binaries built on it.
//!
//! ```
//! use kuma_core::resource::{Resource, DataplaneSpec};
//!
//! let dp = Resource::from_yaml(r#"
//! type: Dataplane
//! mesh: default
//! name: backend-1
//! networking:
//!   address: 192.168.0.2
//!   inbound:
//!   - port: 8080
//!     servicePort: 18080
//!     tags:
//!       kuma.io/service: backend
//!       kuma.io/protocol: http
//! "#).unwrap();
//! dp.validate().unwrap();
//! assert!(dp.spec_as::<DataplaneSpec>().is_some());
//! ```

#[cfg(feature = "http-api")]
pub mod api;
pub mod duration;
pub mod manager;
pub mod matching;
#[cfg(feature = "pki")]
pub mod pki;
pub mod resource;
pub mod store;
#[cfg(feature = "tokens")]
pub mod tokens;
#[cfg(feature = "tokens")]
pub mod user_tokens;
pub mod validation;
pub mod wire;
