//! Envoy xDS for a Kuma-compatible control plane.
//!
//! - [`generate`]: Envoy v3 resources for a Dataplane (listeners, clusters,
//!   endpoints), as a pure function of its inputs; with mTLS on, TLS
//!   contexts fed by SDS and TrafficPermission as RBAC.
//! - [`resource`]: resources encoded once and shared, content-hash versions,
//!   per-proxy [`resource::Snapshot`]s.
//! - [`reconcile`]: the event-driven task turning store events into the
//!   snapshots of connected proxies, recomputing only what a change affects.
//! - [`cache`]: the latest snapshot per proxy, with a watch per proxy.
//! - [`stream`]: the xDS stream core every DiscoveryRequest/Response stream
//!   runs on: client identification and token check, per-type ACK
//!   tracking, waiting on a [`stream::ResourceSource`], ending streams.
//! - [`ads`]: the ADS gRPC service (state of the world and incremental on one
//!   port) on the stream core, recording each stream in the proxy's
//!   DataplaneInsight ([`insight`]) and telling the reconciler about
//!   proxies ([`ads::ProxyEventSender`]).
//! - [`bootstrap`]: Envoy bootstrap generation and the `POST /bootstrap` router.
//! - [`sds`]: the SDS gRPC service on the stream core, serving proxies their
//!   mTLS certificate and the mesh CA, with rotation.
//! - [`Error`]: the crate's error, answering as Kuma's error body over HTTP
//!   and as a status over gRPC.
//!
//! A change goes store -> [`reconcile`] -> [`cache`] -> [`stream`] (an
//! [`ads`] stream) -> Envoy.
//!
//! The binary wires them: `Reconciler::run` as a task fed by
//! [`ads::proxy_event_channel`], `AdsServer` and `SdsServer` into tonic
//! servers, `bootstrap::router` into an HTTP server.
//!
//! ```
//! use kuma_xds::generate::{generate, ProxyInput};
//! use kuma_core::resource::{DataplaneSpec, Resource};
//! use std::collections::BTreeMap;
//!
//! let dp = Resource::from_yaml("type: Dataplane\nmesh: default\nname: web\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n  outbound:\n  - port: 10000\n    tags:\n      kuma.io/service: backend\n").unwrap();
//! let spec = dp.spec_as::<DataplaneSpec>().unwrap();
//! let (policies, protocols) = (BTreeMap::new(), BTreeMap::new());
//! let out = generate(&ProxyInput { mesh: "default", name: "web", dataplane: spec, mesh_spec: None, outbound_policies: &policies, inbound_policies: &[], dataplane_policies: Default::default(), protocols: &protocols, vips: &BTreeMap::new(), sds_token: None });
//! // an inbound listener + local cluster, an outbound listener + EDS cluster
//! assert_eq!(out.resources.len(), 4);
//! ```

pub mod ads;
pub mod bootstrap;
pub mod cache;
mod delta;
mod error;
pub mod generate;
mod grpc;
pub mod insight;
pub mod reconcile;
pub mod resource;
pub mod sds;
mod session;
pub mod stream;

pub use error::{Error, ProxyTemplateError};
