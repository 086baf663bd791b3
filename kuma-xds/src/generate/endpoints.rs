//! Endpoints: every inbound of every Dataplane carrying a service, shared by
//! every proxy that calls it.

use super::ClusterRef;
use crate::resource::{XdsResource, XdsType};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use kuma_core::matching::selector_matches;
use kuma_core::resource::Tags;
use std::collections::HashMap;
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

fn lb_endpoint(address: &str, port: u32, metadata: Option<Metadata>) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(socket(address, port)),
            ..Default::default()
        })),
        metadata,
        ..Default::default()
    }
}

/// Tags as `envoy.lb` metadata, so routes can match subsets.
fn tag_metadata(tags: &Tags) -> Metadata {
    let fields = tags
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value {
                    kind: Some(Kind::StringValue(v.clone())),
                },
            )
        })
        .collect();
    let mut filter_metadata = HashMap::new();
    filter_metadata.insert("envoy.lb".to_string(), Struct { fields });
    Metadata {
        filter_metadata,
        ..Default::default()
    }
}

/// The load assignment of a static cluster with one address.
pub(super) fn static_assignment(cluster: &str, address: &str, port: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint(address, port, None)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The encoded endpoints of a cluster: the service's instances whose tags
/// match the cluster's subset, in a stable order.
pub fn load_assignment(cluster: &ClusterRef, endpoints: &[Endpoint]) -> Arc<XdsResource> {
    let mut selected: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| selector_matches(&cluster.subset, &e.tags))
        .collect();
    selected.sort();
    let cla = ClusterLoadAssignment {
        cluster_name: cluster.name.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: selected
                .iter()
                .map(|e| lb_endpoint(&e.address, e.port, Some(tag_metadata(&e.tags))))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    XdsResource::encode(XdsType::Endpoint, cluster.name.clone(), &cla)
}
