//! Timeout: connect, idle, stream and request timeouts of every outbound
//! service a Timeout was selected for.
//!
//! Mapped as Kuma maps it, for the values the policy sets (unset values
//! keep what the generator or Envoy defaults to):
//! - `connectTimeout` -> `connect_timeout` of the service's clusters;
//! - tcp services: `tcp.idleTimeout` -> the outbound tcp_proxy's
//!   `idle_timeout`;
//! - http/http2/grpc services: `http.requestTimeout` -> `timeout` of every
//!   outbound route; `http.idleTimeout` -> `common_http_protocol_options.idle_timeout`
//!   of the outbound HTTP connection manager and of the clusters' upstream
//!   HTTP protocol options; `http.streamIdleTimeout` -> the connection
//!   manager's `stream_idle_timeout` (`0s` disables it);
//!   `http.maxStreamDuration` (when not `0s`) -> the clusters'
//!   `common_http_protocol_options.max_stream_duration`. For grpc services
//!   the deprecated `grpc.streamIdleTimeout` / `grpc.maxStreamDuration`
//!   are used when the `http` ones are not set.

use super::super::{Protocol, ProxyConfig, ProxyInput};
use super::edit::{duration, edit_http_managers, edit_outbound_routes, edit_tcp_proxies, service_clusters};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, HttpProtocolOptions as CommonOptions,
};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::util::pack_any;
use kuma_core::duration::KumaDuration;
use kuma_core::resource::{GrpcTimeouts, HttpTimeouts, TimeoutConf};
use prost::{Message, Name};

/// Applies the selected Timeout of every outbound service.
pub(super) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    for (service, policies) in input.outbound_policies {
        let Some(conf) = policies.timeout.and_then(|t| t.conf.as_ref()) else {
            continue;
        };
        apply_one(config, service, input.protocol(service), conf);
    }
}

fn apply_one(config: &mut ProxyConfig, service: &str, protocol: Protocol, conf: &TimeoutConf) {
    if let Some(connect) = &conf.connect_timeout {
        for cluster in service_clusters(config, service) {
            cluster.connect_timeout = Some(duration(connect));
        }
    }
    if !protocol.is_http() {
        if let Some(idle) = conf.tcp.as_ref().and_then(|t| t.idle_timeout.as_ref()) {
            let idle = duration(idle);
            edit_tcp_proxies(config, service, |p| p.idle_timeout = Some(idle));
        }
        return;
    }
    let (no_http, no_grpc) = (HttpTimeouts::default(), GrpcTimeouts::default());
    let http = conf.http.as_ref().unwrap_or(&no_http);
    let grpc = conf.grpc.as_ref().unwrap_or(&no_grpc);
    let is_grpc = protocol == Protocol::Grpc;
    fn nonzero(d: &Option<KumaDuration>) -> Option<&KumaDuration> {
        d.as_ref().filter(|d| !d.as_duration().is_zero())
    }

    if let Some(request) = &http.request_timeout {
        let request = duration(request);
        edit_outbound_routes(config, service, |routes| {
            for vh in &mut routes.virtual_hosts {
                for route in &mut vh.routes {
                    if let Some(Action::Route(action)) = &mut route.action {
                        action.timeout = Some(request);
                    }
                }
            }
        });
    }
    let idle = http.idle_timeout.as_ref().map(duration);
    let stream_idle = match (&http.stream_idle_timeout, is_grpc) {
        (Some(d), _) => Some(duration(d)),
        (None, true) => grpc.stream_idle_timeout.as_ref().map(duration),
        (None, false) => None,
    };
    if idle.is_some() || stream_idle.is_some() {
        edit_http_managers(config, service, |hcm| {
            if let Some(idle) = idle {
                hcm.common_http_protocol_options
                    .get_or_insert_with(Default::default)
                    .idle_timeout = Some(idle);
            }
            if let Some(stream_idle) = stream_idle {
                hcm.stream_idle_timeout = Some(stream_idle);
            }
        });
    }
    let max_stream = match nonzero(&http.max_stream_duration) {
        Some(d) => Some(d),
        None if is_grpc => nonzero(&grpc.max_stream_duration),
        None => None,
    }
    .map(duration);
    if idle.is_some() || max_stream.is_some() {
        for cluster in service_clusters(config, service) {
            edit_upstream_options(cluster, |o| {
                if idle.is_some() {
                    o.idle_timeout = idle;
                }
                if max_stream.is_some() {
                    o.max_stream_duration = max_stream;
                }
            });
        }
    }
}

const UPSTREAM_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Edits the common options of a cluster's upstream HTTP protocol options,
/// creating them (explicit HTTP/1, which is what the cluster used) if
/// absent.
fn edit_upstream_options(cluster: &mut Cluster, edit: impl FnOnce(&mut CommonOptions)) {
    let existing = cluster
        .typed_extension_protocol_options
        .get(UPSTREAM_OPTIONS)
        .filter(|any| any.type_url == HttpProtocolOptions::type_url())
        .and_then(|any| HttpProtocolOptions::decode(any.value.as_slice()).ok());
    let mut options = existing.unwrap_or_else(|| HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                    Http1ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    });
    edit(
        options
            .common_http_protocol_options
            .get_or_insert_with(Default::default),
    );
    cluster
        .typed_extension_protocol_options
        .insert(UPSTREAM_OPTIONS.to_string(), pack_any(options));
}

#[cfg(test)]
mod tests {
    use super::super::super::OutboundPolicies;
    use super::super::edit::testing::{OUTBOUNDS, cluster, config_for, filter};
    use super::*;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use envoy_types::pb::google::protobuf::Duration;
    use kuma_core::resource::{Resource, TimeoutSpec};

    fn applied(protocol: Protocol, conf: &str) -> ProxyConfig {
        let yaml = format!(
            "type: Timeout\nmesh: m\nname: t\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n{conf}"
        );
        let res = Resource::from_yaml(&yaml).unwrap();
        let spec = res.spec_as::<TimeoutSpec>().unwrap();
        let policies = OutboundPolicies {
            timeout: Some(spec),
            ..Default::default()
        };
        config_for(protocol, policies, apply)
    }

    fn secs(seconds: i64) -> Option<Duration> {
        Some(Duration { seconds, nanos: 0 })
    }

    fn upstream(c: &Cluster) -> HttpProtocolOptions {
        let any = &c.typed_extension_protocol_options[UPSTREAM_OPTIONS];
        HttpProtocolOptions::decode(any.value.as_slice()).unwrap()
    }

    const ALL: &str = "  connectTimeout: 2s\n  tcp:\n    idleTimeout: 1h\n  http:\n    requestTimeout: 15s\n    idleTimeout: 30m\n    streamIdleTimeout: 5m\n    maxStreamDuration: 0s\n  grpc:\n    streamIdleTimeout: 6m\n    maxStreamDuration: 7m\n";

    #[test]
    fn tcp_service() {
        let config = applied(Protocol::Tcp, ALL);
        for l in OUTBOUNDS {
            let p: TcpProxy = filter(&config, l);
            assert_eq!(p.idle_timeout, secs(3600));
        }
        for c in ["backend", "backend;version=v1"] {
            let c = cluster(&config, c);
            assert_eq!(c.connect_timeout, secs(2));
            assert!(c.typed_extension_protocol_options.is_empty());
        }
        assert_eq!(cluster(&config, "localhost:9000").connect_timeout, secs(5));
    }

    #[test]
    fn http_service() {
        let config = applied(Protocol::Http, ALL);
        for l in OUTBOUNDS {
            let hcm: HttpConnectionManager = filter(&config, l);
            assert_eq!(hcm.stream_idle_timeout, secs(300));
            assert_eq!(
                hcm.common_http_protocol_options.unwrap().idle_timeout,
                secs(1800)
            );
            let Some(RouteSpecifier::RouteConfig(rc)) = hcm.route_specifier else {
                panic!()
            };
            let Some(Action::Route(a)) = &rc.virtual_hosts[0].routes[0].action else {
                panic!()
            };
            assert_eq!(a.timeout, secs(15));
        }
        let o = upstream(cluster(&config, "backend;version=v1"));
        assert!(matches!(
            o.upstream_protocol_options,
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::HttpProtocolOptions(_))
                }
            ))
        ));
        let common = o.common_http_protocol_options.unwrap();
        assert_eq!(common.idle_timeout, secs(1800));
        assert_eq!(common.max_stream_duration, None);
    }

    #[test]
    fn grpc_falls_back_to_the_grpc_section() {
        let config = applied(
            Protocol::Grpc,
            "  grpc:\n    streamIdleTimeout: 6m\n    maxStreamDuration: 7m\n",
        );
        let hcm: HttpConnectionManager = filter(&config, OUTBOUNDS[0]);
        assert_eq!(hcm.stream_idle_timeout, secs(360));
        let o = upstream(cluster(&config, "backend"));
        // The cluster keeps speaking HTTP/2.
        assert!(matches!(
            o.upstream_protocol_options,
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(_))
                }
            ))
        ));
        assert_eq!(
            o.common_http_protocol_options.unwrap().max_stream_duration,
            secs(420)
        );
    }
}
