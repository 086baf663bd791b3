//! TrafficTrace: HCM `tracing` with an `envoy.tracers.zipkin` provider on
//! every HTTP listener (inbound and outbound) of the selected Dataplane,
//! plus a cluster `tracing:<backend>` for the Zipkin collector.
//!
//! The backend is the one the TrafficTrace names, else the Mesh's
//! `tracing.defaultBackend`. Only `zipkin` backends are generated (a
//! `datadog` backend, or none, means no tracing). Mapping, as in Kuma:
//! `url` -> collector cluster (STRICT_DNS for a host name, STATIC for an
//! IP), `collector_endpoint` (the URL's path, `/api/v2/spans` when empty)
//! and `collector_hostname`; `traceId128bit`, `sharedSpanContext` as is;
//! `apiVersion` `httpProto` -> HTTP_PROTO, `httpJson` (default) and the
//! legacy `httpJsonV1` -> HTTP_JSON (Envoy no longer has the v1 API);
//! `sampling` -> `overall_sampling`. An `https` collector URL gets no TLS
//! (limitation): spans are sent in plain HTTP to its host and port.

use super::super::endpoints::static_assignment;
use super::super::{ProxyConfig, ProxyInput};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::trace::v3::ZipkinConfig as EnvoyZipkin;
use envoy_types::pb::envoy::config::trace::v3::tracing::Http as TracingProvider;
use envoy_types::pb::envoy::config::trace::v3::tracing::http::ConfigType as ProviderConfig;
use envoy_types::pb::envoy::config::trace::v3::zipkin_config::CollectorEndpointVersion;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{BoolValue, Duration};
use envoy_types::util::pack_any;
use kuma_core::resource::TracingBackend;
use std::net::IpAddr;

/// The Zipkin tracer's name.
const ZIPKIN: &str = "envoy.tracers.zipkin";
/// The span path used when the backend URL has none.
const DEFAULT_SPANS_PATH: &str = "/api/v2/spans";

/// The collector cluster of tracing backend `backend`.
pub(crate) fn cluster_name(backend: &str) -> String {
    format!("tracing:{backend}")
}

/// A cluster of one collector at `host:port`: STATIC for an IP address,
/// STRICT_DNS for a host name.
pub(crate) fn collector_cluster(name: &str, host: &str, port: u32) -> Cluster {
    let kind = if host.parse::<IpAddr>().is_ok() {
        DiscoveryType::Static
    } else {
        DiscoveryType::StrictDns
    };
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        load_assignment: Some(static_assignment(name, host, port)),
        ..Default::default()
    }
}

/// `http(s)://host:port/path` -> (host, port, path). The port defaults to
/// 80 / 443; IPv6 hosts are written `[::1]`.
pub(crate) fn parse_url(url: &str) -> Option<(String, u32, String)> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else {
        (url.strip_prefix("https://")?, 443)
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = if path.is_empty() {
        DEFAULT_SPANS_PATH.to_string()
    } else {
        path.to_string()
    };
    Some((host, port, path))
}

/// The HCM tracing config and collector cluster of a Zipkin backend.
pub(crate) fn zipkin(backend: &TracingBackend) -> Option<(Tracing, Cluster)> {
    let conf = backend.zipkin_config()?;
    let (host, port, path) = parse_url(conf.url.as_deref()?)?;
    let cluster = collector_cluster(&cluster_name(&backend.name), &host, port);
    let version = match conf.api_version.as_deref() {
        Some("httpProto") => CollectorEndpointVersion::HttpProto,
        _ => CollectorEndpointVersion::HttpJson,
    };
    let provider = EnvoyZipkin {
        collector_cluster: cluster.name.clone(),
        collector_endpoint: path,
        trace_id_128bit: conf.trace_id_128bit.unwrap_or(false),
        shared_span_context: conf.shared_span_context.map(|value| BoolValue { value }),
        collector_endpoint_version: version as i32,
        collector_hostname: host,
        ..Default::default()
    };
    let tracing = Tracing {
        overall_sampling: Some(Percent {
            value: backend.sampling_or_default().clamp(0.0, 100.0),
        }),
        provider: Some(TracingProvider {
            name: ZIPKIN.into(),
            config_type: Some(ProviderConfig::TypedConfig(pack_any(provider))),
        }),
        ..Default::default()
    };
    Some((tracing, cluster))
}

/// Adds tracing to every HTTP listener and the collector cluster when a
/// TrafficTrace with a usable Zipkin backend was selected.
pub(crate) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    let Some(trace) = input.dataplane_policies.traffic_trace else {
        return;
    };
    let Some(backend) = input
        .mesh_spec
        .and_then(|m| m.tracing_backend(trace.backend()))
    else {
        return;
    };
    let Some((tracing, cluster)) = zipkin(backend) else {
        return;
    };
    let mut traced = false;
    for (_, filter) in config.network_filters.iter_mut() {
        // An encoded connection manager was traced for the proxy it was
        // built for (the batch shares it only with proxies under the same
        // TrafficTrace).
        traced |= filter.is_http();
        if let Some(hcm) = filter.http_mut() {
            hcm.tracing = Some(tracing.clone());
        }
    }
    if traced && !config.clusters.iter().any(|c| c.name == cluster.name) {
        config.clusters.push(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::network_filter::HCM;
    use super::super::super::{DataplanePolicies, Protocol, build};
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use kuma_core::resource::{DataplaneSpec, MeshSpec, TrafficTraceSpec};
    use prost::Message;
    use std::collections::BTreeMap;

    use super::super::edit::testing::spec;

    const DP: &str = "type: Dataplane\nmesh: m\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n      kuma.io/protocol: http\n  outbound:\n  - port: 10001\n    tags:\n      kuma.io/service: backend\n  - port: 10002\n    tags:\n      kuma.io/service: redis\n";

    const MESH: &str = "type: Mesh\nname: m\ntracing:\n  defaultBackend: zipkin-1\n  backends:\n  - name: zipkin-1\n    type: zipkin\n    sampling: 42.5\n    conf:\n      url: http://zipkin.local:9411/api/v2/spans\n      traceId128bit: true\n      apiVersion: httpProto\n  - name: dd\n    type: datadog\n    conf:\n      address: 127.0.0.1\n      port: 8126\n";

    fn run(trace: Option<&TrafficTraceSpec>, mesh: &MeshSpec) -> ProxyConfig {
        let dp: DataplaneSpec = spec(DP);
        let policies = BTreeMap::new();
        let protocols = BTreeMap::from([("backend".to_string(), Protocol::Http)]);
        let vips = BTreeMap::new();
        let input = ProxyInput {
            mesh: "m",
            name: "web-1",
            dataplane: &dp,
            mesh_spec: Some(mesh),
            outbound_policies: &policies,
            inbound_policies: &[],
            dataplane_policies: DataplanePolicies {
                traffic_trace: trace,
                ..Default::default()
            },
            protocols: &protocols,
            vips: &vips,
            sds_token: None,
        };
        let (mut config, _) = build(&input);
        apply(&mut config, &input);
        config.pack();
        config
    }

    fn tracing_of(config: &ProxyConfig, listener: &str) -> Option<Tracing> {
        let l = config.listeners.iter().find(|l| l.name == listener)?;
        let f = &l.filter_chains[0].filters[0];
        let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
            return None;
        };
        if f.name != HCM {
            return None;
        }
        HttpConnectionManager::decode(any.value.as_slice())
            .unwrap()
            .tracing
    }

    #[test]
    fn http_listeners_get_zipkin_and_the_collector_cluster() {
        let mesh: MeshSpec = spec(MESH);
        let trace: TrafficTraceSpec = spec(
            "type: TrafficTrace\nmesh: m\nname: t\nselectors:\n- match:\n    kuma.io/service: '*'\n",
        );
        let config = run(Some(&trace), &mesh);
        for l in ["inbound:10.0.0.1:8080", "outbound:127.0.0.1:10001"] {
            let t = tracing_of(&config, l).unwrap_or_else(|| panic!("{l}: no tracing"));
            assert_eq!(t.overall_sampling, Some(Percent { value: 42.5 }));
            let p = t.provider.unwrap();
            assert_eq!(p.name, ZIPKIN);
            let Some(ProviderConfig::TypedConfig(any)) = p.config_type else {
                panic!("no zipkin config");
            };
            let z = EnvoyZipkin::decode(any.value.as_slice()).unwrap();
            assert_eq!(z.collector_cluster, "tracing:zipkin-1");
            assert_eq!(z.collector_endpoint, "/api/v2/spans");
            assert_eq!(z.collector_hostname, "zipkin.local");
            assert!(z.trace_id_128bit);
            assert_eq!(
                z.collector_endpoint_version,
                CollectorEndpointVersion::HttpProto as i32
            );
        }
        // redis is TCP: no HCM.
        assert!(tracing_of(&config, "outbound:127.0.0.1:10002").is_none());
        let c = config
            .clusters
            .iter()
            .find(|c| c.name == "tracing:zipkin-1")
            .unwrap();
        assert_eq!(
            c.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
        );
    }

    #[test]
    fn no_trace_datadog_or_missing_backend_means_no_tracing() {
        let mesh: MeshSpec = spec(MESH);
        let n = run(None, &mesh).clusters.len();
        let t = |backend: &str| -> TrafficTraceSpec {
            spec(&format!(
                "type: TrafficTrace\nmesh: m\nname: t\nselectors:\n- match:\n    kuma.io/service: '*'\nconf:\n  backend: {backend}\n"
            ))
        };
        for b in ["dd", "nope"] {
            let config = run(Some(&t(b)), &mesh);
            assert!(
                tracing_of(&config, "inbound:10.0.0.1:8080").is_none(),
                "{b}"
            );
            assert_eq!(config.clusters.len(), n, "{b}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:9411/api/v2/spans"),
            Some(("127.0.0.1".into(), 9411, "/api/v2/spans".into()))
        );
        assert_eq!(
            parse_url("https://z.example"),
            Some(("z.example".into(), 443, DEFAULT_SPANS_PATH.into()))
        );
        assert_eq!(
            parse_url("http://[::1]:9411/x?y"),
            Some(("::1".into(), 9411, "/x".into()))
        );
        assert_eq!(parse_url("ftp://x:1/"), None);
        assert_eq!(parse_url("http://:1/"), None);
        assert_eq!(parse_url("http://x:port/"), None);
    }
}
