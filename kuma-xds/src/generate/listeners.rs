//! Listeners: one per inbound (to the local app) and one per outbound (to
//! the called service), with tcp_proxy or the HTTP connection manager,
//! returned typed beside the listener (see [`super::network_filter`]).

use super::endpoints::socket;
use super::network_filter::NetworkFilter;
use super::{Protocol, WeightedTarget, names};
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier as RouteCluster;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight as RouteWeight;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster as RouteWeighted,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    CodecType, RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::weighted_cluster::ClusterWeight as TcpWeight;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::{
    ClusterSpecifier as TcpCluster, WeightedCluster as TcpWeighted,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::util::pack_any;
use kuma_core::resource::{DataplaneSpec, Inbound, Outbound, SERVICE_TAG};

fn tcp_proxy(stat_prefix: &str, targets: &[WeightedTarget]) -> NetworkFilter {
    let cluster = match targets {
        [only] => TcpCluster::Cluster(only.cluster.name.clone()),
        many => TcpCluster::WeightedClusters(TcpWeighted {
            clusters: many
                .iter()
                .map(|t| TcpWeight {
                    name: t.cluster.name.clone(),
                    weight: t.weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    NetworkFilter::Tcp(Box::new(TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(cluster),
        ..Default::default()
    }))
}

fn route_config(name: String, targets: &[WeightedTarget]) -> RouteConfiguration {
    let cluster = match targets {
        [only] => RouteCluster::Cluster(only.cluster.name.clone()),
        many => RouteCluster::WeightedClusters(RouteWeighted {
            clusters: many
                .iter()
                .map(|t| RouteWeight {
                    name: t.cluster.name.clone(),
                    weight: Some(UInt32Value { value: t.weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    RouteConfiguration {
        name: name.clone(),
        virtual_hosts: vec![VirtualHost {
            name,
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(cluster),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn http_connection_manager(stat_prefix: &str, routes: RouteConfiguration) -> NetworkFilter {
    NetworkFilter::Http(Box::new(HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::RouteConfig(routes)),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    }))
}

/// The tcp_proxy or connection manager of a listener of `service` in
/// `direction` (`inbound`, `outbound`), to `targets`.
pub(super) fn filter_for(
    protocol: Protocol,
    direction: &str,
    service: &str,
    targets: &[WeightedTarget],
) -> NetworkFilter {
    if protocol.is_http() {
        http_connection_manager(
            service,
            route_config(names::route_config(direction, service), targets),
        )
    } else {
        tcp_proxy(service, targets)
    }
}

fn listener(
    name: String,
    address: &str,
    port: u32,
    direction: TrafficDirection,
    filter: NetworkFilter,
) -> (Listener, NetworkFilter) {
    let listener = Listener {
        name,
        address: Some(socket(address, port)),
        filter_chains: vec![FilterChain {
            filters: vec![filter.placeholder()],
            ..Default::default()
        }],
        traffic_direction: direction as i32,
        ..Default::default()
    };
    (listener, filter)
}

/// `inbound:<address>:<port>` to the local app's `localhost:<servicePort>`,
/// and its (typed) network filter.
pub(super) fn inbound(
    dp: &DataplaneSpec,
    inbound: &Inbound,
    protocol: Protocol,
) -> (Listener, NetworkFilter) {
    let address = inbound.address.as_deref().unwrap_or(&dp.networking.address);
    let service = inbound.tags.get(SERVICE_TAG).map_or("", String::as_str);
    let local = super::ClusterRef {
        name: names::local_cluster(inbound.service_port.unwrap_or(inbound.port)),
        service: service.to_string(),
        subset: Default::default(),
    };
    let targets = [WeightedTarget {
        weight: 1,
        cluster: local,
    }];
    listener(
        names::inbound_listener(address, inbound.port),
        address,
        inbound.port,
        TrafficDirection::Inbound,
        filter_for(protocol, "inbound", service, &targets),
    )
}

/// `outbound:<address>:<port>` with `filter` (the service's, see
/// [`filter_for`]).
pub(super) fn outbound(outbound: &Outbound, filter: NetworkFilter) -> (Listener, NetworkFilter) {
    let address = outbound.address.as_deref().unwrap_or("127.0.0.1");
    listener(
        names::outbound_listener(address, outbound.port),
        address,
        outbound.port,
        TrafficDirection::Outbound,
        filter,
    )
}

/// `outbound:<vip>:80`: a service's DNS VIP, reached only through
/// transparent proxying (`bind_to_port: false`; the redirect listener hands
/// connections to it by original destination), with `filter` (the
/// service's, see [`filter_for`]).
pub(super) fn virtual_outbound(vip: &str, filter: NetworkFilter) -> (Listener, NetworkFilter) {
    let listener = Listener {
        name: names::outbound_listener(vip, super::VIP_PORT),
        address: Some(socket(vip, super::VIP_PORT)),
        filter_chains: vec![FilterChain {
            filters: vec![filter.placeholder()],
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        bind_to_port: Some(BoolValue { value: false }),
        ..Default::default()
    };
    (listener, filter)
}
