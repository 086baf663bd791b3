//! The `metrics`, `logging` and `tracing` sections of a Mesh: their
//! backends, typed configurations and rules.

use super::{check_conf, check_type, typed_conf};
use crate::resource::common::{Tags, validate_port, validate_tags};
use crate::resource::dataplane::check_host_port;
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Metrics backend type: a Prometheus scrape endpoint on every proxy.
pub const METRICS_PROMETHEUS: &str = "prometheus";
/// Logging backend type: a file on the proxy's host.
pub const LOGGING_FILE: &str = "file";
/// Logging backend type: a TCP collector (e.g. Logstash).
pub const LOGGING_TCP: &str = "tcp";
/// Tracing backend type: a Zipkin-compatible collector.
pub const TRACING_ZIPKIN: &str = "zipkin";
/// Tracing backend type: a Datadog agent.
pub const TRACING_DATADOG: &str = "datadog";
/// Default Prometheus port of a proxy.
pub const DEFAULT_PROMETHEUS_PORT: u32 = 5670;
/// Default Prometheus path of a proxy.
pub const DEFAULT_PROMETHEUS_PATH: &str = "/metrics";

/// `tracing` of a Mesh.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// The backend TrafficTraces use when they name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    /// The declared tracing backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<TracingBackend>,
}

/// One backend of `tracing.backends`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingBackend {
    /// Name, unique among the mesh's tracing backends.
    #[serde(default)]
    pub name: String,
    /// Percentage of requests traced, 0 to 100 (default 100).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::resource::common::number::option::serialize"
    )]
    pub sampling: Option<f64>,
    /// `zipkin` or `datadog`.
    #[serde(default, rename = "type")]
    pub r#type: String,
    /// Type-specific settings ([`ZipkinConfig`] or [`DatadogConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<Value>,
}

/// `logging` of a Mesh.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// The backend TrafficLogs use when they name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    /// The declared logging backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<LoggingBackend>,
}

/// One backend of `logging.backends`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingBackend {
    /// Name, unique among the mesh's logging backends.
    #[serde(default)]
    pub name: String,
    /// Envoy access-log format string (Envoy's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `file` or `tcp`.
    #[serde(default, rename = "type")]
    pub r#type: String,
    /// Type-specific settings ([`FileLoggingConfig`] or [`TcpLoggingConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<Value>,
}

/// `metrics` of a Mesh.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// The backend in use; metrics are off when unset or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    /// The declared metrics backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<MetricsBackend>,
}

/// One metrics backend: an entry of a Mesh's `metrics.backends`, or a
/// Dataplane's `metrics` override (where `name` may be left out).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsBackend {
    /// Name, unique among the mesh's metrics backends.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `prometheus`.
    #[serde(default, rename = "type")]
    pub r#type: String,
    /// Type-specific settings ([`PrometheusConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<Value>,
}

/// `conf` of a `prometheus` metrics backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Port the proxy serves metrics on (default 5670).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Path the proxy serves metrics on (default `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Tags of the metrics endpoint, for TrafficPermissions under mTLS.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Serve metrics in plain text even when mTLS is on.
    #[serde(rename = "skipMTLS", default, skip_serializing_if = "Option::is_none")]
    pub skip_mtls: Option<bool>,
}

impl PrometheusConfig {
    /// `port`, or 5670.
    pub fn port_or_default(&self) -> u32 {
        self.port
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_PROMETHEUS_PORT)
    }

    /// `path`, or `/metrics`.
    pub fn path_or_default(&self) -> &str {
        self.path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PROMETHEUS_PATH)
    }
}

/// `conf` of a `file` logging backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileLoggingConfig {
    /// The log file (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `conf` of a `tcp` logging backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpLoggingConfig {
    /// The collector, `host:port` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `conf` of a `zipkin` tracing backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZipkinConfig {
    /// The collector's span endpoint, `http(s)://host:port/path` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Generate 128-bit trace ids.
    #[serde(
        rename = "traceId128bit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub trace_id_128bit: Option<bool>,
    /// `httpJsonV1`, `httpJson` (default) or `httpProto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Whether client and server spans share a span id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_span_context: Option<bool>,
}

/// `conf` of a `datadog` tracing backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatadogConfig {
    /// The agent's address (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The agent's port (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// The Zipkin API versions Kuma accepts.
pub const ZIPKIN_API_VERSIONS: &[&str] = &["httpJsonV1", "httpJson", "httpProto"];

impl TracingBackend {
    /// The `zipkin` configuration, if this is a Zipkin backend with a valid
    /// `conf`.
    pub fn zipkin_config(&self) -> Option<ZipkinConfig> {
        (self.r#type == TRACING_ZIPKIN)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// The `datadog` configuration, if this is a Datadog backend with a
    /// valid `conf`.
    pub fn datadog_config(&self) -> Option<DatadogConfig> {
        (self.r#type == TRACING_DATADOG)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// `sampling`, or 100.
    pub fn sampling_or_default(&self) -> f64 {
        self.sampling.unwrap_or(100.0)
    }

    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
        if let Some(s) = self.sampling
            && !(0.0..=100.0).contains(&s)
        {
            v.violation(
                &p.field("sampling"),
                format!("{s} is out of range: must be a percentage, 0..=100"),
            );
        }
        check_type(
            &p.field("type"),
            &self.r#type,
            &[TRACING_ZIPKIN, TRACING_DATADOG],
            v,
        );
        let cp = p.field("conf");
        match self.r#type.as_str() {
            TRACING_ZIPKIN => {
                if let Some(c) = check_conf::<ZipkinConfig>(&self.conf, &cp, v) {
                    match &c.url {
                        None => v.violation(
                            &cp.field("url"),
                            "must be set: the collector's span endpoint, e.g. http://zipkin:9411/api/v2/spans",
                        ),
                        Some(url) => check_http_url(&cp.field("url"), url, v),
                    }
                    if let Some(api) = &c.api_version
                        && !ZIPKIN_API_VERSIONS.contains(&api.as_str())
                    {
                        v.violation(
                            &cp.field("apiVersion"),
                            format!(
                                "{api:?} is not a Zipkin API version: must be one of {}",
                                ZIPKIN_API_VERSIONS.join(", ")
                            ),
                        );
                    }
                }
            }
            TRACING_DATADOG => {
                if let Some(c) = check_conf::<DatadogConfig>(&self.conf, &cp, v) {
                    match &c.address {
                        None => v.violation(
                            &cp.field("address"),
                            "must be set: the Datadog agent's host",
                        ),
                        Some(a) => crate::resource::dataplane::check_ip_or_hostname(
                            &cp.field("address"),
                            a,
                            v,
                        ),
                    }
                    match c.port {
                        None => {
                            v.violation(&cp.field("port"), "must be set: the Datadog agent's port")
                        }
                        Some(port) => validate_port(&cp.field("port"), port, v),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Checks an `http://` or `https://` URL with a host and an explicit port.
fn check_http_url(path: &FieldPath, url: &str, v: &mut Validator) {
    let hint = "must be http(s)://HOST:PORT/PATH, e.g. http://zipkin.local:9411/api/v2/spans";
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        v.violation(path, format!("{url:?} is not an http or https URL: {hint}"));
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let mut inner = Validator::new();
    check_host_port(path, authority, &mut inner);
    if !inner.is_ok() {
        v.violation(
            path,
            format!("{url:?} needs a valid host and an explicit port: {hint}"),
        );
    }
}

impl LoggingBackend {
    /// The `file` configuration, if this is a file backend with a valid
    /// `conf`.
    pub fn file_config(&self) -> Option<FileLoggingConfig> {
        (self.r#type == LOGGING_FILE)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// The `tcp` configuration, if this is a TCP backend with a valid
    /// `conf`.
    pub fn tcp_config(&self) -> Option<TcpLoggingConfig> {
        (self.r#type == LOGGING_TCP)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    pub(super) fn check(&self, p: &FieldPath, v: &mut Validator) {
        check_type(
            &p.field("type"),
            &self.r#type,
            &[LOGGING_FILE, LOGGING_TCP],
            v,
        );
        let cp = p.field("conf");
        match self.r#type.as_str() {
            LOGGING_FILE => {
                if let Some(c) = check_conf::<FileLoggingConfig>(&self.conf, &cp, v)
                    && c.path.as_deref().is_none_or(str::is_empty)
                {
                    v.violation(
                        &cp.field("path"),
                        "must be set: the file to write access logs to",
                    );
                }
            }
            LOGGING_TCP => {
                if let Some(c) = check_conf::<TcpLoggingConfig>(&self.conf, &cp, v) {
                    match &c.address {
                        None => v.violation(
                            &cp.field("address"),
                            "must be set: the collector as HOST:PORT, e.g. logstash:5000",
                        ),
                        Some(a) => check_host_port(&cp.field("address"), a, v),
                    }
                }
            }
            _ => {}
        }
    }
}

impl MetricsBackend {
    /// The `prometheus` configuration, if this is a Prometheus backend with
    /// a valid `conf`.
    pub fn prometheus_config(&self) -> Option<PrometheusConfig> {
        (self.r#type == METRICS_PROMETHEUS)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// Checks type and `conf` (not the name: names are checked by the Mesh).
    pub(super) fn check_conf(&self, p: &FieldPath, v: &mut Validator) {
        check_type(&p.field("type"), &self.r#type, &[METRICS_PROMETHEUS], v);
        if self.r#type == METRICS_PROMETHEUS {
            let cp = p.field("conf");
            if let Some(c) = check_conf::<PrometheusConfig>(&self.conf, &cp, v) {
                if let Some(port) = c.port {
                    validate_port(&cp.field("port"), port, v);
                }
                if let Some(path) = &c.path
                    && !path.starts_with('/')
                {
                    v.violation(
                        &cp.field("path"),
                        format!("{path:?} is not a URL path: must start with '/'"),
                    );
                }
                validate_tags(&cp.field("tags"), &c.tags, false, v);
            }
        }
    }

    /// Checks a Dataplane's `metrics` override.
    pub(crate) fn check_dataplane_override(&self, p: &FieldPath, v: &mut Validator) {
        self.check_conf(p, v);
    }
}
