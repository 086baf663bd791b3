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
mod tests {
    use super::super::super::network_filter::HCM;
    use super::super::super::{DataplanePolicies, OutboundPolicies, Protocol, build};
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use kuma_core::resource::{DataplaneSpec, MeshSpec, TrafficLogSpec};
    use prost::Message;
    use std::collections::BTreeMap;

    use super::super::edit::testing::spec;

    const DP: &str = "type: Dataplane\nmesh: m\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n  outbound:\n  - port: 10001\n    tags:\n      kuma.io/service: backend\n  - port: 10002\n    tags:\n      kuma.io/service: redis\n  - port: 10003\n    tags:\n      kuma.io/service: other\n";

    const MESH: &str = "type: Mesh\nname: m\nlogging:\n  defaultBackend: file\n  backends:\n  - name: file\n    type: file\n    conf:\n      path: /tmp/access.log\n  - name: logstash\n    type: tcp\n    format: '%KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %START_TIME%'\n    conf:\n      address: logstash.local:5000\n";

    const LOG: &str = "type: TrafficLog\nmesh: m\nname: l\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\n";

    fn run(
        mesh: &MeshSpec,
        backend_log: &TrafficLogSpec,
        redis_log: &TrafficLogSpec,
    ) -> ProxyConfig {
        let dp: DataplaneSpec = spec(DP);
        let policies = BTreeMap::from([
            (
                "backend".to_string(),
                OutboundPolicies {
                    traffic_log: Some(backend_log),
                    ..Default::default()
                },
            ),
            (
                "redis".to_string(),
                OutboundPolicies {
                    traffic_log: Some(redis_log),
                    ..Default::default()
                },
            ),
        ]);
        let protocols = BTreeMap::from([("backend".to_string(), Protocol::Http)]);
        let vips = BTreeMap::new();
        let input = ProxyInput {
            mesh: "m",
            name: "web-1",
            dataplane: &dp,
            mesh_spec: Some(mesh),
            outbound_policies: &policies,
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

    fn logs_of(config: &ProxyConfig, listener: &str) -> Vec<AccessLog> {
        let l = config
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .unwrap();
        let f = &l.filter_chains[0].filters[0];
        let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
            panic!("no typed config");
        };
        if f.name == HCM {
            HttpConnectionManager::decode(any.value.as_slice())
                .unwrap()
                .access_log
        } else {
            TcpProxy::decode(any.value.as_slice()).unwrap().access_log
        }
    }

    #[test]
    fn file_on_http_and_fluentd_on_tcp() {
        let mesh: MeshSpec = spec(MESH);
        let default: TrafficLogSpec = spec(LOG);
        let tcp: TrafficLogSpec = spec(&format!("{LOG}conf:\n  backend: logstash\n"));
        let config = run(&mesh, &default, &tcp);

        let http = logs_of(&config, "outbound:127.0.0.1:10001");
        assert_eq!(http.len(), 1);
        assert_eq!(http[0].name, "envoy.access_loggers.file");
        let Some(AccessLogConfig::TypedConfig(any)) = &http[0].config_type else {
            panic!()
        };
        let file = FileAccessLog::decode(any.value.as_slice()).unwrap();
        assert_eq!(file.path, "/tmp/access.log");
        let Some(AccessLogFormat::LogFormat(f)) = file.access_log_format else {
            panic!()
        };
        let Some(Format::TextFormatSource(DataSource {
            specifier: Some(Specifier::InlineString(text)),
            ..
        })) = f.format
        else {
            panic!()
        };
        assert!(
            text.starts_with("[%START_TIME%] m \"%REQ(:METHOD)%"),
            "{text}"
        );
        assert!(
            text.ends_with("\"web\" \"backend\" \"10.0.0.1\" \"%UPSTREAM_HOST%\"\n"),
            "{text}"
        );

        let tcp_logs = logs_of(&config, "outbound:127.0.0.1:10002");
        assert_eq!(tcp_logs.len(), 1);
        assert_eq!(tcp_logs[0].name, "envoy.access_loggers.fluentd");
        let Some(AccessLogConfig::TypedConfig(any)) = &tcp_logs[0].config_type else {
            panic!()
        };
        let fl = FluentdAccessLogConfig::decode(any.value.as_slice()).unwrap();
        assert_eq!(fl.cluster, "access_log:logstash");
        let msg = &fl.record.unwrap().fields["message"];
        assert_eq!(
            msg.kind,
            Some(Kind::StringValue("web->redis %START_TIME%\n".into()))
        );
        assert!(
            config
                .clusters
                .iter()
                .any(|c| c.name == "access_log:logstash")
        );

        // No TrafficLog for `other`: no access log.
        assert!(logs_of(&config, "outbound:127.0.0.1:10003").is_empty());
        // Inbounds are not logged.
        assert!(logs_of(&config, "inbound:10.0.0.1:8080").is_empty());
    }

    #[test]
    fn no_backend_no_log() {
        let mut mesh: MeshSpec = spec(MESH);
        let missing: TrafficLogSpec = spec(&format!("{LOG}conf:\n  backend: nope\n"));
        let default: TrafficLogSpec = spec(LOG);
        let config = run(&mesh, &missing, &missing);
        assert!(logs_of(&config, "outbound:127.0.0.1:10001").is_empty());
        assert!(logs_of(&config, "outbound:127.0.0.1:10002").is_empty());
        // No default backend: a TrafficLog without one logs nothing.
        if let Some(l) = mesh.logging.as_mut() {
            l.default_backend = None;
        }
        let config = run(&mesh, &default, &default);
        assert!(logs_of(&config, "outbound:127.0.0.1:10001").is_empty());
        assert!(
            !config
                .clusters
                .iter()
                .any(|c| c.name.starts_with("access_log:"))
        );
    }

    /// Kuma's rendering: each placeholder replaced in turn.
    fn replaced(format: &str, vars: &Vars<'_>) -> String {
        let mut out = format
            .replace("%KUMA_MESH%", vars.mesh)
            .replace("%KUMA_SOURCE_SERVICE%", vars.source)
            .replace("%KUMA_DESTINATION_SERVICE%", vars.destination)
            .replace("%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", vars.address)
            .replace("%KUMA_SOURCE_ADDRESS%", vars.address);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }

    #[test]
    fn one_pass_rendering_is_replacing_in_turn() {
        let vars = Vars {
            mesh: "m",
            source: "web",
            destination: "redis",
            address: "10.0.0.1",
        };
        for format in [
            DEFAULT_HTTP_FORMAT,
            DEFAULT_TCP_FORMAT,
            "",
            "%",
            "%KUMA_",
            "%KUMA_MESH",
            "%%KUMA_MESH%%",
            "%KUMA_FOO%KUMA_MESH%",
            "%KUMA_SOURCE_ADDRESS%-%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%\n",
            "é%KUMA_DESTINATION_SERVICE%ü%KUMA_SOURCE_SERVICE%",
        ] {
            assert_eq!(
                render_format(format, &vars),
                replaced(format, &vars),
                "{format}"
            );
        }
    }

    #[test]
    fn placeholders_sharing_a_percent_sign_are_read_left_to_right() {
        let vars = Vars {
            mesh: "m",
            source: "web",
            destination: "redis",
            address: "10.0.0.1",
        };
        assert_eq!(
            render_format("%KUMA_MESH%KUMA_SOURCE_SERVICE%", &vars),
            "mKUMA_SOURCE_SERVICE%\n"
        );
    }

    #[test]
    fn tcp_default_format() {
        let vars = Vars {
            mesh: "m",
            source: "web",
            destination: "redis",
            address: "10.0.0.1",
        };
        assert_eq!(
            render_format(DEFAULT_TCP_FORMAT, &vars),
            "[%START_TIME%] %RESPONSE_FLAGS% m 10.0.0.1(web)->%UPSTREAM_HOST%(redis) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n"
        );
    }
}
