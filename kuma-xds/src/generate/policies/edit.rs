//! Helpers for policies that edit what [`super::super::build`] made: the
//! clusters of a service, and the tcp_proxy / HTTP connection manager (and
//! its inline route configuration) of a service's outbound listeners.
//!
//! A service's clusters are named `<service>` or `<service>;k=v…` (a
//! subset, see [`crate::generate::names::service_cluster`]). Its outbound
//! listeners are the `outbound:…` listeners (declared outbounds and DNS VIP
//! listeners) whose network filter has the service as `stat_prefix`. Their
//! filter configs are edited typed, before they are packed (see
//! [`crate::generate::network_filter`]).

use super::super::ProxyConfig;
use super::super::network_filter::{NetworkFilter, NetworkFilters};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::Duration;
use kuma_core::duration::KumaDuration;

/// Whether `cluster` is `service`'s cluster or one of its subsets.
pub(crate) fn is_service_cluster(cluster: &str, service: &str) -> bool {
    cluster
        .strip_prefix(service)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(';'))
}

/// The clusters of `service` (the whole service and its subsets).
pub(crate) fn service_clusters<'a>(
    config: &'a mut ProxyConfig,
    service: &'a str,
) -> impl Iterator<Item = &'a mut Cluster> + 'a {
    config
        .clusters
        .iter_mut()
        .filter(move |c| is_service_cluster(&c.name, service))
}

/// The typed network filters (see [`crate::generate::network_filter`]) of
/// the outbound listeners (`outbound:…`, declared outbounds and DNS VIP
/// listeners), in listener order.
pub(crate) fn outbound_filters<'a>(
    listeners: &'a [Listener],
    filters: &'a mut NetworkFilters,
) -> impl Iterator<Item = &'a mut NetworkFilter> + 'a {
    let outbound = TrafficDirection::Outbound as i32;
    filters.iter_mut().filter_map(move |(i, filter)| {
        let listener = listeners.get(i)?;
        (listener.traffic_direction == outbound && listener.name.starts_with("outbound:"))
            .then_some(filter)
    })
}

/// The typed network filter of the (first) listener named `name`.
pub(crate) fn listener_filter<'a>(
    config: &'a mut ProxyConfig,
    name: &str,
) -> Option<&'a mut NetworkFilter> {
    let i = config.listeners.iter().position(|l| l.name == name)?;
    config.network_filters.get_mut(i)
}

/// Runs `edit` on the network filter of every outbound listener of
/// `service` (those whose filter has the service as `stat_prefix`).
fn edit_outbound_filters(
    config: &mut ProxyConfig,
    service: &str,
    mut edit: impl FnMut(&mut NetworkFilter),
) {
    for filter in outbound_filters(&config.listeners, &mut config.network_filters) {
        if filter.stat_prefix() == service {
            edit(filter);
        }
    }
}

/// Edits the tcp_proxy of every outbound listener of `service`.
pub(crate) fn edit_tcp_proxies(
    config: &mut ProxyConfig,
    service: &str,
    mut edit: impl FnMut(&mut TcpProxy),
) {
    edit_outbound_filters(config, service, |f| {
        if let Some(t) = f.tcp_mut() {
            edit(t);
        }
    });
}

/// Edits the HTTP connection manager of every outbound listener of
/// `service`.
pub(crate) fn edit_http_managers(
    config: &mut ProxyConfig,
    service: &str,
    mut edit: impl FnMut(&mut HttpConnectionManager),
) {
    edit_outbound_filters(config, service, |f| {
        if let Some(h) = f.http_mut() {
            edit(h);
        }
    });
}

/// Edits the inline route configuration of every outbound HTTP listener of
/// `service` (`outbound:<service>`).
pub(crate) fn edit_outbound_routes(
    config: &mut ProxyConfig,
    service: &str,
    mut edit: impl FnMut(&mut RouteConfiguration),
) {
    edit_http_managers(config, service, |hcm| {
        if let Some(RouteSpecifier::RouteConfig(routes)) = &mut hcm.route_specifier {
            edit(routes);
        }
    });
}

/// A Kuma duration as a protobuf `Duration`.
pub(crate) fn duration(d: &KumaDuration) -> Duration {
    let d = d.as_duration();
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cluster_names() {
        assert!(is_service_cluster("backend", "backend"));
        assert!(is_service_cluster("backend;version=v1", "backend"));
        assert!(!is_service_cluster("backend-2", "backend"));
        assert!(!is_service_cluster("back", "backend"));
    }

    #[test]
    fn durations() {
        let d: KumaDuration = "1.5s".parse().unwrap();
        assert_eq!(
            duration(&d),
            Duration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
    }
}

/// Building a proxy's config with policies applied, for the policies' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::super::{
        DataplanePolicies, OutboundPolicies, Protocol, ProxyConfig, ProxyInput, build,
    };
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use kuma_core::resource::{DataplaneSpec, Resource, Spec, TrafficRouteSpec};
    use prost::{Message, Name};
    use std::collections::BTreeMap;

    /// The spec of the resource `yaml` describes, as a `T`.
    pub(crate) fn spec<T: Spec + Clone>(yaml: &str) -> T {
        Resource::from_yaml(yaml)
            .unwrap()
            .spec_as::<T>()
            .unwrap()
            .clone()
    }

    /// Dataplane `web` (inbound 8080 -> app 9000) calling `backend` on
    /// `127.0.0.1:10001` and through the VIP `240.0.0.1:80`; a TrafficRoute
    /// splits backend between the whole service and `version: v1`, so
    /// there are clusters `backend` and `backend;version=v1`. `backend`
    /// speaks `protocol`; the selected `policies` go through `apply`.
    pub(crate) fn config_for(
        protocol: Protocol,
        policies: OutboundPolicies<'_>,
        apply: fn(&mut ProxyConfig, &ProxyInput<'_>),
    ) -> ProxyConfig {
        let dp = Resource::from_yaml(
            "type: Dataplane\nmesh: m\nname: web\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n  outbound:\n  - port: 10001\n    tags:\n      kuma.io/service: backend\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n",
        )
        .unwrap()
        .spec_as::<DataplaneSpec>()
        .unwrap()
        .clone();
        let route = Resource::from_yaml(
            "type: TrafficRoute\nmesh: m\nname: r\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n  split:\n  - weight: 50\n    destination:\n      kuma.io/service: backend\n  - weight: 50\n    destination:\n      kuma.io/service: backend\n      version: v1\n",
        )
        .unwrap()
        .spec_as::<TrafficRouteSpec>()
        .unwrap()
        .clone();
        let outbound: BTreeMap<String, OutboundPolicies<'_>> = [(
            "backend".to_string(),
            OutboundPolicies {
                route: Some(&route),
                ..policies
            },
        )]
        .into();
        let protocols = [("backend".to_string(), protocol)].into();
        let vips = [("backend".to_string(), "240.0.0.1".to_string())].into();
        let input = ProxyInput {
            mesh: "m",
            name: "web",
            dataplane: &dp,
            mesh_spec: None,
            outbound_policies: &outbound,
            inbound_policies: &[],
            dataplane_policies: DataplanePolicies::default(),
            protocols: &protocols,
            vips: &vips,
            sds_token: None,
        };
        let (mut config, _) = build(&input);
        apply(&mut config, &input);
        config.pack();
        config
    }

    /// The cluster named `name`.
    pub(crate) fn cluster<'a>(config: &'a ProxyConfig, name: &str) -> &'a Cluster {
        config
            .clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    }

    /// The listener named `name`.
    pub(crate) fn listener<'a>(config: &'a ProxyConfig, name: &str) -> &'a Listener {
        config
            .listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
    }

    /// The first filter's config of listener `name` (packed), decoded as a
    /// `T`.
    pub(crate) fn filter<T: Message + Name + Default>(config: &ProxyConfig, name: &str) -> T {
        match &listener(config, name).filter_chains[0].filters[0].config_type {
            Some(ConfigType::TypedConfig(any)) if any.type_url == T::type_url() => {
                T::decode(any.value.as_slice()).ok()
            }
            _ => None,
        }
        .unwrap_or_else(|| panic!("listener {name}: not a {}", T::full_name()))
    }

    /// The names of both outbound listeners of `backend`.
    pub(crate) const OUTBOUNDS: [&str; 2] = ["outbound:127.0.0.1:10001", "outbound:240.0.0.1:80"];
}
