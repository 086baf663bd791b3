//! TrafficLog: an access log on the outbound listener(s) of every service
//! a TrafficLog was selected for (`outbound:<address>:<port>` and the
//! virtual `outbound:<vip>:80`), on the tcp_proxy or the HTTP connection
//! manager.
//!
//! The backend is the one the TrafficLog names, else the Mesh's
//! `logging.defaultBackend`; no backend -> no access log. The format is
//! the backend's `format`, else Kuma's default for HTTP or TCP, with Kuma's
//! placeholders (`%KUMA_MESH%`, `%KUMA_SOURCE_SERVICE%`,
//! `%KUMA_DESTINATION_SERVICE%`, `%KUMA_SOURCE_ADDRESS%`,
//! `%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%`) filled in; a newline ends every
//! entry.
//!
//! - `file` -> `envoy.access_loggers.file` writing to the backend's `path`.
//! - `tcp` -> Kuma streams entries to kuma-dp over gRPC ALS, which forwards
//!   plain lines to `address`. We have no such forwarder, so Envoy sends
//!   them itself with `envoy.access_loggers.fluentd` to a cluster
//!   `access_log:<backend>` at `address`: the formatted line is the
//!   `message` field of each record, in the Fluentd Forward protocol
//!   (msgpack), tag `kuma.access_log`. The collector must speak that
//!   protocol (Fluentd, Fluent Bit, Logstash's fluent codec), unlike Kuma's
//!   plain-text stream.

use super::super::{ProxyConfig, ProxyInput};
use super::edit::outbound_filters;
use super::traffic_trace::collector_cluster;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType as AccessLogConfig;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format;
use envoy_types::pb::envoy::config::core::v3::{DataSource, SubstitutionFormatString};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::file_access_log::AccessLogFormat;
use envoy_types::pb::envoy::extensions::access_loggers::fluentd::v3::FluentdAccessLogConfig;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};
use envoy_types::util::pack_any;
use kuma_core::resource::{LoggingBackend, SERVICE_TAG};

/// The Fluentd tag of TCP-backend records.
const FLUENTD_TAG: &str = "kuma.access_log";

/// Kuma's default access-log format of TCP connections.
pub(crate) const DEFAULT_TCP_FORMAT: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes";

/// Kuma's default access-log format of HTTP requests.
pub(crate) const DEFAULT_HTTP_FORMAT: &str = "[%START_TIME%] %KUMA_MESH% \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%KUMA_SOURCE_SERVICE%\" \"%KUMA_DESTINATION_SERVICE%\" \"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%\" \"%UPSTREAM_HOST%\"";

/// The cluster a `tcp` logging backend's entries go to.
pub(crate) fn cluster_name(backend: &str) -> String {
    format!("access_log:{backend}")
}

/// Adds the access log of each outbound service's selected TrafficLog.
pub(crate) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    let Some(mesh) = input.mesh_spec else {
        return;
    };
    let source = source_service(input);
    // The sinks of the backends used so far (few: usually the default).
    let mut sinks: Vec<(&LoggingBackend, Option<Sink>)> = Vec::new();
    let ProxyConfig {
        clusters,
        listeners,
        network_filters,
        ..
    } = config;
    // Every outbound listener (declared outbounds and DNS VIP listeners)
    // has the service it calls as its filter's stat prefix.
    for filter in outbound_filters(listeners, network_filters) {
        let service = filter.stat_prefix();
        let Some(log) = input
            .outbound_policies
            .get(service)
            .and_then(|p| p.traffic_log)
        else {
            continue;
        };
        let Some(backend) = mesh.logging_backend(log.backend()) else {
            continue;
        };
        let vars = Vars {
            mesh: input.mesh,
            source: &source,
            destination: service,
            address: &input.dataplane.networking.address,
        };
        let known = sinks.iter().position(|(b, _)| std::ptr::eq(*b, backend));
        let i = known.unwrap_or_else(|| {
            sinks.push((backend, Sink::of(backend)));
            sinks.len() - 1
        });
        let Some(sink) = &sinks[i].1 else {
            continue;
        };
        let log = sink.access_log(backend, filter.is_http(), &vars);
        filter.access_log_mut().push(log);
        if let Some(c) = sink.collector()
            && !clusters.iter().any(|x| x.name == c.name)
        {
            clusters.push(collector_cluster(&c.name, &c.host, c.port));
        }
    }
}

/// The Dataplane's own service: its first inbound's, else its gateway's.
fn source_service(input: &ProxyInput<'_>) -> String {
    let n = &input.dataplane.networking;
    n.inbound
        .iter()
        .find_map(|i| i.tags.get(SERVICE_TAG))
        .or_else(|| n.gateway.as_ref().and_then(|g| g.tags.get(SERVICE_TAG)))
        .cloned()
        .unwrap_or_else(|| "unknown".to_string())
}

/// The values of Kuma's format placeholders.
pub(crate) struct Vars<'a> {
    /// `%KUMA_MESH%`.
    pub mesh: &'a str,
    /// `%KUMA_SOURCE_SERVICE%`.
    pub source: &'a str,
    /// `%KUMA_DESTINATION_SERVICE%`.
    pub destination: &'a str,
    /// `%KUMA_SOURCE_ADDRESS%` and `%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%`.
    pub address: &'a str,
}

/// `format` with Kuma's placeholders filled in and a final newline.
///
/// One pass over `format` (this runs for every outbound of every proxy),
/// left to right: each `%KUMA_…%` placeholder is replaced by its value,
/// anything else is copied as is; values are not searched for
/// placeholders. This is what replacing each placeholder in turn gives,
/// except for formats where placeholders share a `%`
/// (`%KUMA_MESH%KUMA_MESH%`: here the first is replaced and the rest is
/// text) or values that contain or complete one.
pub(crate) fn render_format(format: &str, vars: &Vars<'_>) -> String {
    const PREFIX: &str = "%KUMA_";
    // Each name ends with its `%`: none is a prefix of another.
    let placeholders: [(&str, &str); 5] = [
        ("MESH%", vars.mesh),
        ("SOURCE_SERVICE%", vars.source),
        ("DESTINATION_SERVICE%", vars.destination),
        ("SOURCE_ADDRESS_WITHOUT_PORT%", vars.address),
        ("SOURCE_ADDRESS%", vars.address),
    ];
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PREFIX.len()..];
        match placeholders
            .iter()
            .find(|(name, _)| after.starts_with(name))
        {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                // Not a placeholder: keep the `%`, look again after it.
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The collector cluster a `tcp` logging backend needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collector {
    /// The cluster's name ([`cluster_name`]).
    pub name: String,
    /// The collector's host.
    pub host: String,
    /// The collector's port.
    pub port: u32,
}

/// Where a logging backend's entries go: its `conf`, parsed (once per
/// proxy, not once per outbound).
enum Sink {
    /// A file at this path.
    File(String),
    /// A Fluentd collector.
    Fluentd(Collector),
}

impl Sink {
    /// The sink of `backend`; `None` for an unusable backend.
    fn of(backend: &LoggingBackend) -> Option<Self> {
        if let Some(file) = backend.file_config() {
            return file.path.filter(|p| !p.is_empty()).map(Self::File);
        }
        let tcp = backend.tcp_config()?;
        let (host, port) = tcp.address.as_deref()?.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Self::Fluentd(Collector {
            name: cluster_name(&backend.name),
            host: host.to_string(),
            port: port.parse().ok()?,
        }))
    }

    /// The access log writing `backend`'s entries here.
    fn access_log(&self, backend: &LoggingBackend, http: bool, vars: &Vars<'_>) -> AccessLog {
        let default = if http {
            DEFAULT_HTTP_FORMAT
        } else {
            DEFAULT_TCP_FORMAT
        };
        let format = render_format(
            backend
                .format
                .as_deref()
                .filter(|f| !f.is_empty())
                .unwrap_or(default),
            vars,
        );
        match self {
            Self::File(path) => {
                let cfg = FileAccessLog {
                    path: path.clone(),
                    access_log_format: Some(AccessLogFormat::LogFormat(SubstitutionFormatString {
                        format: Some(Format::TextFormatSource(DataSource {
                            specifier: Some(Specifier::InlineString(format)),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })),
                };
                AccessLog {
                    name: "envoy.access_loggers.file".into(),
                    config_type: Some(AccessLogConfig::TypedConfig(pack_any(cfg))),
                    ..Default::default()
                }
            }
            Self::Fluentd(collector) => {
                let record = Struct {
                    fields: [(
                        "message".to_string(),
                        Value {
                            kind: Some(Kind::StringValue(format)),
                        },
                    )]
                    .into(),
                };
                let cfg = FluentdAccessLogConfig {
                    cluster: collector.name.clone(),
                    tag: FLUENTD_TAG.into(),
                    stat_prefix: collector.name.clone(),
                    record: Some(record),
                    ..Default::default()
                };
                AccessLog {
                    name: "envoy.access_loggers.fluentd".into(),
                    config_type: Some(AccessLogConfig::TypedConfig(pack_any(cfg))),
                    ..Default::default()
                }
            }
        }
    }

    /// The collector cluster the sink needs, if any.
    fn collector(&self) -> Option<&Collector> {
        match self {
            Self::File(_) => None,
            Self::Fluentd(c) => Some(c),
        }
    }
}

#[cfg(test)]
mod tests;
