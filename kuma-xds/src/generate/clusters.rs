//! Clusters: `localhost:<port>` for an inbound's app, EDS clusters per
//! service (subset).

use super::{ClusterRef, Protocol, names};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;
use kuma_core::resource::Inbound;
use std::collections::HashMap;

const CONNECT_TIMEOUT: Duration = Duration {
    seconds: 5,
    nanos: 0,
};

fn http2_options(protocol: Protocol) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let mut opts = HashMap::new();
    if protocol.is_http2() {
        let o = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        };
        opts.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pack_any(o),
        );
    }
    opts
}

/// The static cluster of an inbound's local app (`localhost:<servicePort>`).
pub(super) fn local(inbound: &Inbound, protocol: Protocol) -> Cluster {
    let port = inbound.service_port.unwrap_or(inbound.port);
    let address = inbound.service_address.as_deref().unwrap_or("127.0.0.1");
    let name = names::local_cluster(port);
    Cluster {
        name: name.clone(),
        connect_timeout: Some(CONNECT_TIMEOUT),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(super::endpoints::static_assignment(&name, address, port)),
        typed_extension_protocol_options: http2_options(protocol),
        ..Default::default()
    }
}

/// An EDS cluster of a service (subset), fed over ADS.
pub(super) fn eds(target: &ClusterRef, protocol: Protocol) -> Cluster {
    Cluster {
        name: target.name.clone(),
        connect_timeout: Some(CONNECT_TIMEOUT),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ConfigSource {
                config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                resource_api_version: ApiVersion::V3 as i32,
                ..Default::default()
            }),
            service_name: String::new(),
        }),
        typed_extension_protocol_options: http2_options(protocol),
        ..Default::default()
    }
}
