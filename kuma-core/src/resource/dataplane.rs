//! The `Dataplane` resource type.
//!
//! The struct layout below is fixed (the matcher and xDS depend on it);
//! validation rules and the remaining optional fields are filled in by the
//! model work.

use super::Tags;
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `Dataplane` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneSpec {
    /// Addresses, inbounds, outbounds, gateway or ingress.
    #[serde(default)]
    pub networking: Networking,
}

/// `networking` of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    /// The IP (or host name) other proxies reach this one on.
    #[serde(default)]
    pub address: String,
    /// Inbounds: services behind this proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<Inbound>,
    /// Outbounds: services this proxy's app calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<Outbound>,
    /// Set when the Dataplane is a gateway (no inbounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
}

/// One inbound of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Port Envoy listens on, on the Dataplane's address.
    pub port: u32,
    /// Port the app listens on (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    /// Address the app listens on (default `127.0.0.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    /// Tags of the service, with `kuma.io/service`.
    #[serde(default)]
    pub tags: Tags,
}

/// One outbound of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outbound {
    /// Local address the app calls (default `127.0.0.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Local port the app calls.
    pub port: u32,
    /// Tags of the service called, with `kuma.io/service`.
    #[serde(default)]
    pub tags: Tags,
}

/// `networking.gateway` of a gateway Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Tags of the gateway, with `kuma.io/service`.
    #[serde(default)]
    pub tags: Tags,
}

impl DataplaneSpec {
    /// The tag sets policies are matched against: every inbound's tags, or
    /// the gateway's tags.
    pub fn tag_sets(&self) -> Vec<&Tags> {
        let mut sets: Vec<&Tags> = self.networking.inbound.iter().map(|i| &i.tags).collect();
        if let Some(g) = &self.networking.gateway {
            sets.push(&g.tags);
        }
        sets
    }

    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}
