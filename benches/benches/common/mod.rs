//! What the benchmarks share: the fixture mesh as the reconciler holds it,
//! and the pure prost encoding of a snapshot's messages.

#![allow(dead_code)]

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::trace::v3::ZipkinConfig;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::fluentd::v3::FluentdAccessLogConfig;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::health_check::event_sinks::file::v3::HealthCheckEventFileSink;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::Any;
use kuma_benches::core::resource::Resource;
use kuma_xds::resource::{Snapshot, XdsType};
use prost::{Message, Name};
use std::hint::black_box;

/// A message decoded from a snapshot, re-encoded by the benchmark.
pub type Encoder = Box<dyn Fn() -> usize>;

fn encoder<M: Message + 'static>(m: M) -> Encoder {
    Box::new(move || black_box(m.encode_to_vec()).len())
}

/// The decoded messages of a snapshot: the resources themselves (whose
/// `Any` payloads stay pre-encoded bytes) and every message packed in an
/// `Any` at any depth.
pub struct Decoded {
    /// Listeners, clusters, load assignments.
    pub outer: Vec<Encoder>,
    /// The messages packed in `Any`s.
    pub payloads: Vec<Encoder>,
}

fn payload(any: &Any, out: &mut Vec<Encoder>) {
    macro_rules! leaf {
        ($($t:ty),*) => {
            $(if any.type_url == <$t>::type_url() {
                out.push(encoder(<$t>::decode(any.value.as_slice()).expect("payload")));
                return;
            })*
        };
    }
    if any.type_url == HttpConnectionManager::type_url() {
        let h = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
        for f in &h.http_filters {
            if let Some(HttpFilterConfig::TypedConfig(a)) = &f.config_type {
                payload(a, out);
            }
        }
        for l in &h.access_log {
            if let Some(
                envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(
                    a,
                ),
            ) = &l.config_type
            {
                payload(a, out);
            }
        }
        if let Some(
            envoy_types::pb::envoy::config::trace::v3::tracing::http::ConfigType::TypedConfig(a),
        ) = h
            .tracing
            .as_ref()
            .and_then(|t| t.provider.as_ref())
            .and_then(|p| p.config_type.as_ref())
        {
            payload(a, out);
        }
        out.push(encoder(h));
        return;
    }
    if any.type_url == TcpProxy::type_url() {
        let t = TcpProxy::decode(any.value.as_slice()).expect("tcp proxy");
        for l in &t.access_log {
            if let Some(
                envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(
                    a,
                ),
            ) = &l.config_type
            {
                payload(a, out);
            }
        }
        out.push(encoder(t));
        return;
    }
    leaf!(
        Router,
        HttpFault,
        FileAccessLog,
        FluentdAccessLogConfig,
        ZipkinConfig,
        HttpProtocolOptions,
        HealthCheckEventFileSink
    );
    panic!("unknown Any type {}", any.type_url);
}

/// Decodes every resource of a snapshot and every `Any` in it.
pub fn decode(snapshot: &Snapshot) -> Decoded {
    let mut d = Decoded {
        outer: Vec::new(),
        payloads: Vec::new(),
    };
    for r in snapshot.resources(XdsType::Listener).values() {
        let l = Listener::decode(r.body.to_bytes()).expect("listener");
        for f in l.filter_chains.iter().flat_map(|c| &c.filters) {
            if let Some(FilterConfig::TypedConfig(any)) = &f.config_type {
                payload(any, &mut d.payloads);
            }
        }
        d.outer.push(encoder(l));
    }
    for r in snapshot.resources(XdsType::Cluster).values() {
        let c = Cluster::decode(r.body.to_bytes()).expect("cluster");
        for any in c.typed_extension_protocol_options.values() {
            payload(any, &mut d.payloads);
        }
        for h in &c.health_checks {
            for e in &h.event_logger {
                if let Some(any) = &e.typed_config {
                    payload(any, &mut d.payloads);
                }
            }
        }
        d.outer.push(encoder(c));
    }
    for r in snapshot.resources(XdsType::Endpoint).values() {
        let e = ClusterLoadAssignment::decode(r.body.to_bytes()).expect("endpoints");
        d.outer.push(encoder(e));
    }
    d
}

/// Encodes the resources (not their `Any` payloads); returns the bytes.
pub fn encode_outer(d: &Decoded) -> usize {
    d.outer.iter().map(|e| e()).sum()
}

/// Encodes the resources and every `Any` payload; returns the bytes.
pub fn encode_all(d: &Decoded) -> usize {
    encode_outer(d) + d.payloads.iter().map(|e| e()).sum::<usize>()
}

/// Parses fixture YAML.
pub fn parse(yaml: &str) -> Resource {
    Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}
