//! Helpers for policies that edit what [`super::super::build`] made: the
//! clusters of a service, and the tcp_proxy / HTTP connection manager (and
//! its inline route configuration) of a service's outbound listeners.
//!
//! A service's clusters are named `<service>` or `<service>;k=v…` (a
//! subset, see [`crate::generate::names::service_cluster`]). Its outbound
//! listeners are the `outbound:…` listeners (declared outbounds and DNS VIP
//! listeners) whose network filter has the service as `stat_prefix`. Filter
//! configs are `Any`s: they are decoded, edited and packed again; a filter
//! whose config does not decode is left untouched.

use super::super::ProxyConfig;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;
use kuma_core::duration::KumaDuration;
use prost::{Message, Name};

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

/// Decodes the typed config of `filter` as a `T`, if it is one.
fn decode<T: Message + Name + Default>(filter: &Filter) -> Option<T> {
    match &filter.config_type {
        Some(ConfigType::TypedConfig(any)) if any.type_url == T::type_url() => {
            T::decode(any.value.as_slice()).ok()
        }
        _ => None,
    }
}

/// Only the `stat_prefix` (field 2) of an HTTP connection manager: reading
/// it skips the rest of the encoded message, so finding a service's
/// listeners does not decode every listener's routes.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpStatPrefix {
    #[prost(string, tag = "2")]
    stat_prefix: String,
}

/// Only the `stat_prefix` (field 1) of a tcp_proxy.
#[derive(Clone, PartialEq, prost::Message)]
struct TcpStatPrefix {
    #[prost(string, tag = "1")]
    stat_prefix: String,
}

/// A listener filter config being edited (see [`Unpacked`]).
#[derive(Debug, Clone)]
enum Decoded {
    Http(Box<HttpConnectionManager>),
    Tcp(Box<TcpProxy>),
}

/// The filter configs the edits of [`edit_filters`] decoded, by (listener,
/// filter chain, filter) index: several policies editing the same
/// connection manager decode and pack it once, not once per edit. While a
/// filter is here its `Any` in the listener is stale; [`pack`] writes them
/// back, and must run before anything else reads the listeners' filters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unpacked(std::collections::BTreeMap<(usize, usize, usize), Decoded>);

/// A filter config [`edit_filters`] edits.
trait Editable: Message + Name + Default + Sized {
    fn stat_prefix(&self) -> &str;
    fn unpacked(d: &mut Decoded) -> Option<&mut Self>;
    fn into_decoded(self) -> Decoded;
}

impl Editable for HttpConnectionManager {
    fn stat_prefix(&self) -> &str {
        &self.stat_prefix
    }
    fn unpacked(d: &mut Decoded) -> Option<&mut Self> {
        match d {
            Decoded::Http(h) => Some(h),
            Decoded::Tcp(_) => None,
        }
    }
    fn into_decoded(self) -> Decoded {
        Decoded::Http(Box::new(self))
    }
}

impl Editable for TcpProxy {
    fn stat_prefix(&self) -> &str {
        &self.stat_prefix
    }
    fn unpacked(d: &mut Decoded) -> Option<&mut Self> {
        match d {
            Decoded::Tcp(t) => Some(t),
            Decoded::Http(_) => None,
        }
    }
    fn into_decoded(self) -> Decoded {
        Decoded::Tcp(Box::new(self))
    }
}

/// Packs every filter config the edits decoded back into its listener.
pub(crate) fn pack(config: &mut ProxyConfig) {
    for ((l, c, f), d) in std::mem::take(&mut config.unpacked.0) {
        let Some(filter) = config
            .listeners
            .get_mut(l)
            .and_then(|l| l.filter_chains.get_mut(c))
            .and_then(|c| c.filters.get_mut(f))
        else {
            continue;
        };
        let any = match d {
            Decoded::Http(h) => pack_any(*h),
            Decoded::Tcp(t) => pack_any(*t),
        };
        filter.config_type = Some(ConfigType::TypedConfig(any));
    }
}

/// Runs `edit` on every `T` filter of `service`'s outbound listeners
/// (`stat` reads the stat prefix out of an encoded `T` without decoding
/// the rest); the edited configs stay decoded in `config.unpacked` until
/// [`pack`].
fn edit_filters<T: Editable>(
    config: &mut ProxyConfig,
    service: &str,
    stat: fn(&[u8]) -> Option<String>,
    mut edit: impl FnMut(&mut T),
) {
    let outbound = TrafficDirection::Outbound as i32;
    let ProxyConfig {
        listeners,
        unpacked,
        ..
    } = config;
    for (li, listener) in listeners.iter_mut().enumerate() {
        if listener.traffic_direction != outbound || !listener.name.starts_with("outbound:") {
            continue;
        }
        for (ci, chain) in listener.filter_chains.iter_mut().enumerate() {
            for (fi, filter) in chain.filters.iter_mut().enumerate() {
                if let Some(d) = unpacked.0.get_mut(&(li, ci, fi)) {
                    if let Some(value) = T::unpacked(d)
                        && value.stat_prefix() == service
                    {
                        edit(value);
                    }
                    continue;
                }
                let is_service = match &filter.config_type {
                    Some(ConfigType::TypedConfig(any)) if any.type_url == T::type_url() => {
                        stat(&any.value).is_some_and(|s| s == service)
                    }
                    _ => false,
                };
                if !is_service {
                    continue;
                }
                let Some(mut value) = decode::<T>(filter) else {
                    continue;
                };
                edit(&mut value);
                unpacked.0.insert((li, ci, fi), value.into_decoded());
            }
        }
    }
}

/// Edits the tcp_proxy of every outbound listener of `service`.
pub(crate) fn edit_tcp_proxies(
    config: &mut ProxyConfig,
    service: &str,
    edit: impl FnMut(&mut TcpProxy),
) {
    edit_filters::<TcpProxy>(
        config,
        service,
        |b| TcpStatPrefix::decode(b).ok().map(|p| p.stat_prefix),
        edit,
    );
}

/// Edits the HTTP connection manager of every outbound listener of
/// `service`.
pub(crate) fn edit_http_managers(
    config: &mut ProxyConfig,
    service: &str,
    edit: impl FnMut(&mut HttpConnectionManager),
) {
    edit_filters::<HttpConnectionManager>(
        config,
        service,
        |b| HttpStatPrefix::decode(b).ok().map(|p| p.stat_prefix),
        edit,
    );
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
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use kuma_core::resource::{DataplaneSpec, Resource, TrafficRouteSpec};
    use std::collections::BTreeMap;

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
        pack(&mut config);
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

    /// The first filter's config of listener `name`, decoded as a `T`.
    pub(crate) fn filter<T: Message + Name + Default>(config: &ProxyConfig, name: &str) -> T {
        decode(&listener(config, name).filter_chains[0].filters[0])
            .unwrap_or_else(|| panic!("listener {name}: not a {}", T::full_name()))
    }

    /// The names of both outbound listeners of `backend`.
    pub(crate) const OUTBOUNDS: [&str; 2] = ["outbound:127.0.0.1:10001", "outbound:240.0.0.1:80"];
}
