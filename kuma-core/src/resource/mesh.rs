//! The `Mesh` resource type: mTLS, metrics, logging, tracing and routing
//! settings of one mesh.
//!
//! Each section declares named backends; `conf` of a backend is free-form in
//! Kuma's API, so it is kept as a JSON value (it reads back exactly as
//! written) and checked against the typed configuration of its backend type
//! ([`BuiltinCaConfig`], [`ProvidedCaConfig`], [`PrometheusConfig`],
//! [`FileLoggingConfig`], [`TcpLoggingConfig`], [`ZipkinConfig`],
//! [`DatadogConfig`]), which the typed accessors (e.g.
//! [`MetricsBackend::prometheus_config`]) return.

use super::common::{Tags, validate_port, validate_tags};
use super::dataplane::check_host_port;
use super::secret::DataSource;
use crate::duration::KumaDuration;
use crate::validation::{FieldPath, Validator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;

/// mTLS backend type: a CA generated and kept by the control plane.
pub const CA_BUILTIN: &str = "builtin";
/// mTLS backend type: a CA certificate and key supplied by the user.
pub const CA_PROVIDED: &str = "provided";
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

/// Spec of a `Mesh` resource.
///
/// ```
/// use kuma_core::resource::{MeshSpec, Resource};
///
/// let res = Resource::from_yaml(
///     "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
/// ).unwrap();
/// res.validate().unwrap();
/// assert_eq!(res.spec_as::<MeshSpec>().unwrap().enabled_ca().unwrap().name, "ca-1");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    /// Certificate authorities; mTLS is on when `enabledBackend` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    /// Tracing backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// Access-log backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Metrics backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Mesh-wide networking settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<MeshNetworking>,
    /// Mesh-wide routing settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// `mtls` of a Mesh.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mtls {
    /// The backend in use; mTLS is off when unset or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    /// The declared certificate authorities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<CertificateAuthorityBackend>,
}

/// The `type` of a CA backend.
///
/// Serialized as the string Kuma uses. A value Kuma does not define is kept
/// as [`CaBackendType::Unknown`] (empty when the field is unset), so that
/// validation can name it instead of failing to parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CaBackendType {
    /// `builtin`: a CA generated and kept by the control plane.
    Builtin,
    /// `provided`: a CA certificate and key supplied by the user.
    Provided,
    /// Any other value (validation rejects it); empty when unset.
    Unknown(String),
}

impl CaBackendType {
    /// The value as written in the resource, e.g. `builtin`.
    pub fn as_str(&self) -> &str {
        match self {
            CaBackendType::Builtin => CA_BUILTIN,
            CaBackendType::Provided => CA_PROVIDED,
            CaBackendType::Unknown(s) => s,
        }
    }
}

impl Default for CaBackendType {
    /// Unset: an empty [`CaBackendType::Unknown`].
    fn default() -> Self {
        CaBackendType::Unknown(String::new())
    }
}

impl From<String> for CaBackendType {
    fn from(s: String) -> Self {
        match s.as_str() {
            CA_BUILTIN => CaBackendType::Builtin,
            CA_PROVIDED => CaBackendType::Provided,
            _ => CaBackendType::Unknown(s),
        }
    }
}

impl From<CaBackendType> for String {
    fn from(t: CaBackendType) -> Self {
        match t {
            CaBackendType::Unknown(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for CaBackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One certificate authority of `mtls.backends`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthorityBackend {
    /// Name, unique among the mesh's CA backends.
    #[serde(default)]
    pub name: String,
    /// `builtin` or `provided`.
    #[serde(default, rename = "type")]
    pub r#type: CaBackendType,
    /// Settings of the certificates issued to proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp_cert: Option<DpCert>,
    /// Type-specific settings ([`BuiltinCaConfig`] or [`ProvidedCaConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<Value>,
    /// Whether plain-text traffic is still accepted (`PERMISSIVE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

/// `mode` of a CA backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Only mTLS traffic is accepted (the default).
    Strict,
    /// Both mTLS and plain-text traffic are accepted.
    Permissive,
}

/// `dpCert` of a CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpCert {
    /// Rotation of proxy certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

/// `dpCert.rotation` of a CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rotation {
    /// How long a proxy certificate is valid (e.g. `1d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<KumaDuration>,
}

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
        serialize_with = "super::common::number::option::serialize"
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

/// `networking` of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshNetworking {
    /// Outbound settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<MeshOutboundNetworking>,
}

/// `networking.outbound` of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshOutboundNetworking {
    /// Whether traffic to destinations outside the mesh passes through
    /// transparent proxies (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<bool>,
}

/// `routing` of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Routing {
    /// Prefer endpoints in the caller's zone.
    #[serde(default)]
    pub locality_aware_load_balancing: bool,
}

/// `conf` of a `builtin` CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltinCaConfig {
    /// The generated root certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<BuiltinCaCert>,
}

/// `conf.caCert` of a `builtin` CA backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinCaCert {
    /// RSA key size in bits.
    #[serde(rename = "RSAbits", default, skip_serializing_if = "Option::is_none")]
    pub rsa_bits: Option<u32>,
    /// How long the root certificate is valid (e.g. `10y`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<KumaDuration>,
}

/// `conf` of a `provided` CA backend: both fields are required.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvidedCaConfig {
    /// The CA certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<DataSource>,
    /// The CA private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<DataSource>,
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

/// Decodes `conf` as `T` (absent `conf` = `T::default()`), or `None` when
/// it does not have that shape.
fn typed_conf<T: DeserializeOwned + Default>(conf: &Option<Value>) -> Option<T> {
    match conf {
        None | Some(Value::Null) => Some(T::default()),
        Some(v) => serde_json::from_value(v.clone()).ok(),
    }
}

/// Decodes `conf` as `T`, reporting a shape error under `path` (the `conf`
/// field) with the path inside `conf`.
fn check_conf<T: DeserializeOwned + Default>(
    conf: &Option<Value>,
    path: &FieldPath,
    v: &mut Validator,
) -> Option<T> {
    let value = match conf {
        None | Some(Value::Null) => return Some(T::default()),
        Some(v) => v.clone(),
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let mut p = path.clone();
            for seg in e.path().iter() {
                p = match seg {
                    serde_path_to_error::Segment::Seq { index } => p.index(*index),
                    serde_path_to_error::Segment::Map { key } => p.field(key),
                    serde_path_to_error::Segment::Enum { variant } => p.field(variant),
                    serde_path_to_error::Segment::Unknown => p,
                };
            }
            v.violation(&p, format!("invalid configuration: {}", e.into_inner()));
            None
        }
    }
}

fn check_type(path: &FieldPath, ty: &str, known: &[&str], v: &mut Validator) {
    if !known.contains(&ty) {
        let got = if ty.is_empty() {
            "is not set".to_string()
        } else {
            format!("{ty:?} is not a known backend type")
        };
        v.violation(path, format!("{got}: must be one of {}", known.join(", ")));
    }
}

/// Checks backend names (non-empty, unique) and that `selected` (the
/// `enabledBackend`/`defaultBackend` at `selected_path`) names one of them.
fn check_backend_names<'a>(
    path: &FieldPath,
    names: impl Iterator<Item = &'a str>,
    selected: Option<&str>,
    selected_path: &FieldPath,
    v: &mut Validator,
) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        let np = path.field("backends").index(i).field("name");
        if name.is_empty() {
            v.violation(&np, "must not be empty");
        } else if !seen.insert(name) {
            v.violation(
                &np,
                format!("{name:?} is already used by another backend: names must be unique"),
            );
        }
    }
    if let Some(sel) = selected.filter(|s| !s.is_empty())
        && !seen.contains(sel)
    {
        let known = if seen.is_empty() {
            "no backends are declared".to_string()
        } else {
            let mut names: Vec<_> = seen.into_iter().collect();
            names.sort_unstable();
            format!("declared backends: {}", names.join(", "))
        };
        v.violation(
            selected_path,
            format!("{sel:?} does not name a backend of this section; {known}"),
        );
    }
}

fn find_backend<'a, B>(
    backends: &'a [B],
    name: Option<&str>,
    get: impl Fn(&B) -> &str,
) -> Option<&'a B> {
    let name = name.filter(|n| !n.is_empty())?;
    backends.iter().find(|b| get(b) == name)
}

impl MeshSpec {
    /// The enabled CA backend; `None` when mTLS is off.
    pub fn enabled_ca(&self) -> Option<&CertificateAuthorityBackend> {
        let m = self.mtls.as_ref()?;
        find_backend(&m.backends, m.enabled_backend.as_deref(), |b| &b.name)
    }

    /// Whether mTLS is on.
    pub fn mtls_enabled(&self) -> bool {
        self.enabled_ca().is_some()
    }

    /// The enabled metrics backend; `None` when metrics are off.
    pub fn enabled_metrics(&self) -> Option<&MetricsBackend> {
        let m = self.metrics.as_ref()?;
        find_backend(&m.backends, m.enabled_backend.as_deref(), |b| &b.name)
    }

    /// The logging backend called `name`, or the default one for `None`.
    pub fn logging_backend(&self, name: Option<&str>) -> Option<&LoggingBackend> {
        let l = self.logging.as_ref()?;
        find_backend(&l.backends, name.or(l.default_backend.as_deref()), |b| {
            &b.name
        })
    }

    /// The tracing backend called `name`, or the default one for `None`.
    pub fn tracing_backend(&self, name: Option<&str>) -> Option<&TracingBackend> {
        let t = self.tracing.as_ref()?;
        find_backend(&t.backends, name.or(t.default_backend.as_deref()), |b| {
            &b.name
        })
    }

    /// Whether `networking.outbound.passthrough` is on (the default).
    pub fn passthrough(&self) -> bool {
        self.networking
            .as_ref()
            .and_then(|n| n.outbound.as_ref())
            .and_then(|o| o.passthrough)
            .unwrap_or(true)
    }

    /// Whether locality-aware load balancing is on.
    pub fn locality_aware_load_balancing(&self) -> bool {
        self.routing
            .as_ref()
            .is_some_and(|r| r.locality_aware_load_balancing)
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        if let Some(m) = &self.mtls {
            let p = path.field("mtls");
            check_backend_names(
                &p,
                m.backends.iter().map(|b| b.name.as_str()),
                m.enabled_backend.as_deref(),
                &p.field("enabledBackend"),
                v,
            );
            for (i, b) in m.backends.iter().enumerate() {
                b.check(&p.field("backends").index(i), v);
            }
        }
        if let Some(t) = &self.tracing {
            let p = path.field("tracing");
            check_backend_names(
                &p,
                t.backends.iter().map(|b| b.name.as_str()),
                t.default_backend.as_deref(),
                &p.field("defaultBackend"),
                v,
            );
            for (i, b) in t.backends.iter().enumerate() {
                b.check(&p.field("backends").index(i), v);
            }
        }
        if let Some(l) = &self.logging {
            let p = path.field("logging");
            check_backend_names(
                &p,
                l.backends.iter().map(|b| b.name.as_str()),
                l.default_backend.as_deref(),
                &p.field("defaultBackend"),
                v,
            );
            for (i, b) in l.backends.iter().enumerate() {
                b.check(&p.field("backends").index(i), v);
            }
        }
        if let Some(m) = &self.metrics {
            let p = path.field("metrics");
            check_backend_names(
                &p,
                m.backends.iter().map(|b| b.name.as_str()),
                m.enabled_backend.as_deref(),
                &p.field("enabledBackend"),
                v,
            );
            for (i, b) in m.backends.iter().enumerate() {
                b.check_conf(&p.field("backends").index(i), v);
            }
        }
    }
}

impl CertificateAuthorityBackend {
    /// The `builtin` configuration, if this is a builtin CA with a valid
    /// `conf`.
    pub fn builtin_config(&self) -> Option<BuiltinCaConfig> {
        (self.r#type == CaBackendType::Builtin)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// The `provided` configuration, if this is a provided CA with a valid
    /// `conf`.
    pub fn provided_config(&self) -> Option<ProvidedCaConfig> {
        (self.r#type == CaBackendType::Provided)
            .then(|| typed_conf(&self.conf))
            .flatten()
    }

    /// `dpCert.rotation.expiration`, if set.
    pub fn dp_cert_expiration(&self) -> Option<&KumaDuration> {
        self.dp_cert
            .as_ref()?
            .rotation
            .as_ref()?
            .expiration
            .as_ref()
    }

    fn check(&self, p: &FieldPath, v: &mut Validator) {
        check_type(
            &p.field("type"),
            self.r#type.as_str(),
            &[CA_BUILTIN, CA_PROVIDED],
            v,
        );
        if let Some(d) = self.dp_cert_expiration()
            && d.as_duration().is_zero()
        {
            v.violation(
                &p.field("dpCert").field("rotation").field("expiration"),
                format!("duration {d} must be greater than 0, e.g. 1d"),
            );
        }
        let cp = p.field("conf");
        match &self.r#type {
            CaBackendType::Builtin => {
                if let Some(c) = check_conf::<BuiltinCaConfig>(&self.conf, &cp, v)
                    && let Some(ca) = &c.ca_cert
                {
                    let ccp = cp.field("caCert");
                    if let Some(bits) = ca.rsa_bits
                        && !(2048..=8192).contains(&bits)
                    {
                        v.violation(
                            &ccp.field("RSAbits"),
                            format!("{bits} bits is not supported: must be 2048..=8192"),
                        );
                    }
                    if let Some(d) = &ca.expiration
                        && d.as_duration().is_zero()
                    {
                        v.violation(
                            &ccp.field("expiration"),
                            format!("duration {d} must be greater than 0, e.g. 10y"),
                        );
                    }
                }
            }
            CaBackendType::Provided => {
                if let Some(c) = check_conf::<ProvidedCaConfig>(&self.conf, &cp, v) {
                    for (ds, name, what) in [
                        (&c.cert, "cert", "the CA certificate"),
                        (&c.key, "key", "the CA private key"),
                    ] {
                        match ds {
                            Some(ds) => ds.check(&cp.field(name), v),
                            None => v.violation(
                                &cp.field(name),
                                format!("must be set: {what}, as {{secret: <name>}}, {{file: <path>}} or {{inline: <base64>}}"),
                            ),
                        }
                    }
                }
            }
            CaBackendType::Unknown(_) => {}
        }
    }
}

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

    fn check(&self, p: &FieldPath, v: &mut Validator) {
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
                        Some(a) => {
                            super::dataplane::check_ip_or_hostname(&cp.field("address"), a, v)
                        }
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

    fn check(&self, p: &FieldPath, v: &mut Validator) {
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
    fn check_conf(&self, p: &FieldPath, v: &mut Validator) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn parse(yaml: &str) -> Resource {
        Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn round_trip(yaml: &str) -> Resource {
        let res = parse(yaml);
        res.validate().unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let out = res.to_yaml();
        assert_eq!(Resource::from_yaml(&out).unwrap(), res, "{out}");
        let a: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let b: Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(a, b, "input:\n{yaml}\noutput:\n{out}");
        res
    }

    fn fields(yaml: &str) -> Vec<String> {
        match parse(yaml).validate() {
            Ok(()) => vec![],
            Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
        }
    }

    fn mesh(body: &str) -> String {
        format!("type: Mesh\nname: default\n{body}")
    }

    const FULL: &str = r#"type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    dpCert:
      rotation:
        expiration: 1d
    conf:
      caCert:
        RSAbits: 2048
        expiration: 10y
  - name: ca-2
    type: provided
    dpCert:
      rotation:
        expiration: 10h
    conf:
      cert:
        secret: provided-ca-cert
      key:
        file: /etc/kuma/ca.key
    mode: PERMISSIVE
tracing:
  defaultBackend: jaeger-collector
  backends:
  - name: jaeger-collector
    sampling: 100
    type: zipkin
    conf:
      url: http://jaeger-collector.kuma-tracing:9411/api/v2/spans
  - name: zipkin-partial
    sampling: 12.5
    type: zipkin
    conf:
      url: https://zipkin.local:9411/api/v2/spans
      traceId128bit: true
      apiVersion: httpProto
  - name: datadog
    type: datadog
    conf:
      address: 127.0.0.1
      port: 8126
logging:
  defaultBackend: file
  backends:
  - name: logstash
    format: '{"start_time": "%START_TIME%", "source": "%KUMA_SOURCE_SERVICE%"}'
    type: tcp
    conf:
      address: 127.0.0.1:5000
  - name: file
    type: file
    conf:
      path: /tmp/access.log
metrics:
  enabledBackend: prometheus-1
  backends:
  - name: prometheus-1
    type: prometheus
    conf:
      skipMTLS: false
      port: 5670
      path: /metrics
      tags:
        kuma.io/service: dataplane-metrics
networking:
  outbound:
    passthrough: false
routing:
  localityAwareLoadBalancing: true
"#;

    #[test]
    fn full_mesh() {
        let res = round_trip(FULL);
        let m = res.spec_as::<MeshSpec>().unwrap();
        let ca = m.enabled_ca().unwrap();
        assert_eq!(ca.name, "ca-1");
        assert_eq!(
            ca.dp_cert_expiration().unwrap().as_duration().as_secs(),
            86_400
        );
        let b = ca.builtin_config().unwrap();
        assert_eq!(b.ca_cert.unwrap().rsa_bits, Some(2048));
        assert!(ca.provided_config().is_none());
        let p = m.mtls.as_ref().unwrap().backends[1]
            .provided_config()
            .unwrap();
        assert_eq!(p.cert, Some(DataSource::Secret("provided-ca-cert".into())));
        assert_eq!(
            m.mtls.as_ref().unwrap().backends[1].mode,
            Some(MtlsMode::Permissive)
        );
        let prom = m.enabled_metrics().unwrap().prometheus_config().unwrap();
        assert_eq!(
            (prom.port_or_default(), prom.path_or_default()),
            (5670, "/metrics")
        );
        assert_eq!(prom.skip_mtls, Some(false));
        assert_eq!(
            m.logging_backend(None)
                .unwrap()
                .file_config()
                .unwrap()
                .path
                .as_deref(),
            Some("/tmp/access.log")
        );
        assert_eq!(
            m.logging_backend(Some("logstash"))
                .unwrap()
                .tcp_config()
                .unwrap()
                .address
                .as_deref(),
            Some("127.0.0.1:5000")
        );
        assert!(m.logging_backend(Some("nope")).is_none());
        let t = m.tracing_backend(None).unwrap();
        assert_eq!(t.sampling_or_default(), 100.0);
        assert!(t.zipkin_config().unwrap().url.is_some());
        let z = m.tracing_backend(Some("zipkin-partial")).unwrap();
        assert_eq!(z.sampling, Some(12.5));
        assert_eq!(z.zipkin_config().unwrap().trace_id_128bit, Some(true));
        assert_eq!(
            m.tracing_backend(Some("datadog"))
                .unwrap()
                .datadog_config()
                .unwrap()
                .port,
            Some(8126)
        );
        assert!(!m.passthrough());
        assert!(m.locality_aware_load_balancing());
        // Whole sampling values are written as integers.
        assert!(
            res.to_yaml().contains("sampling: 100\n"),
            "{}",
            res.to_yaml()
        );
    }

    #[test]
    fn documented_builtin_and_provided_meshes() {
        round_trip(
            "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 1d\n    conf:\n      caCert:\n        RSAbits: 2048\n        expiration: 10y\n",
        );
        round_trip(
            "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    dpCert:\n      rotation:\n        expiration: 1d\n    conf:\n      cert:\n        secret: path-to-secret\n      key:\n        secret: path-to-secret\n",
        );
        let empty = round_trip("type: Mesh\nname: default\n");
        let m = empty.spec_as::<MeshSpec>().unwrap();
        assert!(!m.mtls_enabled() && m.enabled_metrics().is_none() && m.passthrough());
    }

    #[test]
    fn backend_names_must_be_non_empty_and_unique() {
        let f = fields(&mesh(
            "mtls:\n  backends:\n  - name: ''\n    type: builtin\n  - name: a\n    type: builtin\n  - name: a\n    type: builtin\n",
        ));
        assert_eq!(f, ["mtls.backends[0].name", "mtls.backends[2].name"]);
        let f = fields(&mesh(
            "logging:\n  backends:\n  - name: a\n    type: file\n    conf: {path: /a}\n  - name: a\n    type: file\n    conf: {path: /b}\n",
        ));
        assert_eq!(f, ["logging.backends[1].name"]);
        let f = fields(&mesh(
            "tracing:\n  backends:\n  - name: ''\n    type: zipkin\n    conf: {url: 'http://z:9411/'}\n",
        ));
        assert_eq!(f, ["tracing.backends[0].name"]);
        let f = fields(&mesh(
            "metrics:\n  backends:\n  - name: p\n    type: prometheus\n  - name: p\n    type: prometheus\n",
        ));
        assert_eq!(f, ["metrics.backends[1].name"]);
    }

    #[test]
    fn selected_backends_must_exist() {
        assert_eq!(
            fields(&mesh("mtls:\n  enabledBackend: ca-1\n")),
            ["mtls.enabledBackend"]
        );
        assert_eq!(
            fields(&mesh(
                "metrics:\n  enabledBackend: x\n  backends:\n  - name: p\n    type: prometheus\n"
            )),
            ["metrics.enabledBackend"]
        );
        assert_eq!(
            fields(&mesh("logging:\n  defaultBackend: x\n")),
            ["logging.defaultBackend"]
        );
        assert_eq!(
            fields(&mesh("tracing:\n  defaultBackend: x\n")),
            ["tracing.defaultBackend"]
        );
        // An empty name means "off".
        assert!(fields(&mesh("mtls:\n  enabledBackend: ''\n")).is_empty());
    }

    #[test]
    fn unknown_backend_types_are_rejected() {
        assert_eq!(
            fields(&mesh("mtls:\n  backends:\n  - name: a\n    type: vault\n")),
            ["mtls.backends[0].type"]
        );
        assert_eq!(
            fields(&mesh("mtls:\n  backends:\n  - name: a\n")),
            ["mtls.backends[0].type"]
        );
        assert_eq!(
            fields(&mesh(
                "metrics:\n  backends:\n  - name: a\n    type: statsd\n"
            )),
            ["metrics.backends[0].type"]
        );
        assert_eq!(
            fields(&mesh(
                "logging:\n  backends:\n  - name: a\n    type: syslog\n"
            )),
            ["logging.backends[0].type"]
        );
        assert_eq!(
            fields(&mesh(
                "tracing:\n  backends:\n  - name: a\n    type: jaeger\n"
            )),
            ["tracing.backends[0].type"]
        );
    }

    #[test]
    fn builtin_conf_rules() {
        let b = "mtls:\n  backends:\n  - name: a\n    type: builtin\n    conf:\n";
        assert_eq!(
            fields(&mesh(&format!("{b}      bogus: 1\n"))),
            ["mtls.backends[0].conf.bogus"]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}      caCert: {{bits: 1}}\n"))),
            ["mtls.backends[0].conf.caCert.bits"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}      caCert: {{expiration: forever}}\n"
            ))),
            ["mtls.backends[0].conf.caCert.expiration"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}      caCert: {{expiration: 0s, RSAbits: 512}}\n"
            ))),
            [
                "mtls.backends[0].conf.caCert.RSAbits",
                "mtls.backends[0].conf.caCert.expiration"
            ]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}      caCert: {{RSAbits: -1}}\n"))),
            ["mtls.backends[0].conf.caCert.RSAbits"]
        );
    }

    #[test]
    fn dp_cert_expiration_must_parse() {
        let e = Resource::from_yaml(&mesh(
            "mtls:\n  backends:\n  - name: a\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 1 day\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.violations()[0].field,
            "mtls.backends[0].dpCert.rotation.expiration"
        );
        assert_eq!(
            fields(&mesh(
                "mtls:\n  backends:\n  - name: a\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 0s\n"
            )),
            ["mtls.backends[0].dpCert.rotation.expiration"]
        );
    }

    #[test]
    fn provided_conf_rules() {
        let b = "mtls:\n  backends:\n  - name: a\n    type: provided\n";
        assert_eq!(
            fields(&mesh(b)),
            ["mtls.backends[0].conf.cert", "mtls.backends[0].conf.key"]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}    conf:\n      cert: {{secret: c}}\n"))),
            ["mtls.backends[0].conf.key"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    conf:\n      cert: {{inline: '%%%'}}\n      key: {{file: ''}}\n"
            ))),
            [
                "mtls.backends[0].conf.cert.inline",
                "mtls.backends[0].conf.key.file"
            ]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    conf:\n      cert: {{vault: x}}\n      key: {{file: /k}}\n"
            ))),
            ["mtls.backends[0].conf.cert"]
        );
    }

    #[test]
    fn mode_must_be_known() {
        let e = Resource::from_yaml(&mesh(
            "mtls:\n  backends:\n  - name: a\n    type: builtin\n    mode: LAX\n",
        ))
        .unwrap_err();
        assert_eq!(e.violations()[0].field, "mtls.backends[0].mode");
    }

    #[test]
    fn prometheus_conf_rules() {
        let b = "metrics:\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n";
        assert_eq!(
            fields(&mesh(&format!(
                "{b}      port: 0\n      path: metrics\n      tags: {{'bad key': v}}\n"
            ))),
            [
                "metrics.backends[0].conf.port",
                "metrics.backends[0].conf.path",
                r#"metrics.backends[0].conf.tags["bad key"]"#
            ]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}      port: 70000\n"))),
            ["metrics.backends[0].conf.port"]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}      skipMtls: true\n"))),
            ["metrics.backends[0].conf.skipMtls"]
        );
    }

    #[test]
    fn logging_conf_rules() {
        let b = "logging:\n  backends:\n  - name: l\n";
        assert_eq!(
            fields(&mesh(&format!("{b}    type: file\n"))),
            ["logging.backends[0].conf.path"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: file\n    conf: {{path: ''}}\n"
            ))),
            ["logging.backends[0].conf.path"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: file\n    conf: {{file: /a}}\n"
            ))),
            ["logging.backends[0].conf.file"]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}    type: tcp\n"))),
            ["logging.backends[0].conf.address"]
        );
        for bad in ["logstash", "logstash:0", "a b:5000"] {
            assert_eq!(
                fields(&mesh(&format!(
                    "{b}    type: tcp\n    conf: {{address: '{bad}'}}\n"
                ))),
                ["logging.backends[0].conf.address"],
                "{bad}"
            );
        }
    }

    #[test]
    fn tracing_conf_rules() {
        let b = "tracing:\n  backends:\n  - name: t\n";
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    sampling: 100.5\n    type: zipkin\n    conf: {{url: 'http://z:9411'}}\n"
            ))),
            ["tracing.backends[0].sampling"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    sampling: -1\n    type: zipkin\n    conf: {{url: 'http://z:9411'}}\n"
            ))),
            ["tracing.backends[0].sampling"]
        );
        assert_eq!(
            fields(&mesh(&format!("{b}    type: zipkin\n"))),
            ["tracing.backends[0].conf.url"]
        );
        for bad in ["ftp://z:9411/", "http://z/api", "z:9411", "http://:9411/"] {
            assert_eq!(
                fields(&mesh(&format!(
                    "{b}    type: zipkin\n    conf: {{url: '{bad}'}}\n"
                ))),
                ["tracing.backends[0].conf.url"],
                "{bad}"
            );
        }
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: zipkin\n    conf: {{url: 'http://z:9411/', apiVersion: grpc}}\n"
            ))),
            ["tracing.backends[0].conf.apiVersion"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: zipkin\n    conf: {{url: 'http://z:9411/', traceId128Bit: true}}\n"
            ))),
            ["tracing.backends[0].conf.traceId128Bit"]
        );
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: datadog\n    conf: {{port: 0}}\n"
            ))),
            [
                "tracing.backends[0].conf.address",
                "tracing.backends[0].conf.port"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        for (body, path) in [
            ("bogus: 1\n", "bogus"),
            ("mtls: {bogus: 1}\n", "mtls.bogus"),
            (
                "mtls:\n  backends:\n  - name: a\n    bogus: 1\n",
                "mtls.backends[0].bogus",
            ),
            (
                "mtls:\n  backends:\n  - dpCert: {rotation: {bogus: 1}}\n",
                "mtls.backends[0].dpCert.rotation.bogus",
            ),
            (
                "tracing:\n  backends:\n  - bogus: 1\n",
                "tracing.backends[0].bogus",
            ),
            ("logging: {bogus: 1}\n", "logging.bogus"),
            (
                "metrics:\n  backends:\n  - bogus: 1\n",
                "metrics.backends[0].bogus",
            ),
            (
                "networking: {outbound: {bogus: 1}}\n",
                "networking.outbound.bogus",
            ),
            ("routing: {bogus: 1}\n", "routing.bogus"),
        ] {
            let e = Resource::from_yaml(&mesh(body)).unwrap_err();
            assert_eq!(e.violations()[0].field, path, "{body}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let f = fields(&mesh(
            "mtls:\n  enabledBackend: x\n  backends:\n  - name: a\n    type: vault\nlogging:\n  backends:\n  - name: l\n    type: file\nmetrics:\n  backends:\n  - name: m\n    type: prometheus\n    conf: {port: 0}\n",
        ));
        assert_eq!(
            f,
            [
                "mtls.enabledBackend",
                "mtls.backends[0].type",
                "logging.backends[0].conf.path",
                "metrics.backends[0].conf.port"
            ]
        );
    }
}
