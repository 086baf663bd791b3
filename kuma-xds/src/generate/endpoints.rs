//! Endpoints: every inbound of every Dataplane carrying a service, shared by
//! every proxy that calls it.

use super::ClusterRef;
use crate::resource::{XdsResource, XdsType};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use kuma_core::matching::selector_matches;
use kuma_core::resource::Tags;
use std::sync::Arc;

/// One instance of a service: an inbound of a Dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Address other proxies reach it on.
    pub address: String,
    /// Port of the inbound listener.
    pub port: u32,
    /// The inbound's tags.
    pub tags: Tags,
}

pub(super) fn socket(address: &str, port: u32) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

// Endpoints carry no `envoy.lb` tag metadata: TrafficRoute subsets are
// separate clusters whose endpoint sets the control plane filters, so Envoy
// never needs it. Leaving it out also keeps the encoding deterministic
// (`google.protobuf.Struct` fields are a `HashMap` in envoy-types, encoded in
// random order, which would change versions without a change of content)
// and halves the cost of encoding endpoints.
fn lb_endpoint(address: &str, port: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(socket(address, port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The load assignment of a static cluster with one address.
pub(super) fn static_assignment(cluster: &str, address: &str, port: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint(address, port)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The encoded endpoints of a cluster: the service's instances whose tags
/// match the cluster's subset, in a stable order.
pub fn load_assignment(cluster: &ClusterRef, endpoints: &[Endpoint]) -> Arc<XdsResource> {
    load_assignment_of(cluster, endpoints)
}

/// [`load_assignment`] over borrowed endpoints (no copy of the service's
/// instances is needed).
pub fn load_assignment_of<'a>(
    cluster: &ClusterRef,
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
) -> Arc<XdsResource> {
    let mut selected: Vec<&Endpoint> = endpoints
        .into_iter()
        .filter(|e| selector_matches(&cluster.subset, &e.tags))
        .collect();
    // Unstable is enough: equal endpoints are alike in every field.
    selected.sort_unstable();
    let cla = ClusterLoadAssignment {
        cluster_name: cluster.name.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: selected
                .iter()
                .map(|e| lb_endpoint(&e.address, e.port))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    XdsResource::encode(XdsType::Endpoint, cluster.name.clone(), &cla)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_assignments_encode_deterministically() {
        let tags: Tags = [
            ("kuma.io/service", "backend"),
            ("version", "v1"),
            ("zone", "a"),
            ("team", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let endpoints: Vec<Endpoint> = (0..5)
            .map(|i| Endpoint {
                address: format!("10.0.0.{i}"),
                port: 8080,
                tags: tags.clone(),
            })
            .collect();
        let cluster = ClusterRef::service("backend");
        let first = load_assignment(&cluster, &endpoints);
        for _ in 0..20 {
            assert_eq!(load_assignment(&cluster, &endpoints).hash, first.hash);
        }
        let mut reversed = endpoints.clone();
        reversed.reverse();
        assert_eq!(load_assignment(&cluster, &reversed).hash, first.hash);
    }
}
