//! The configuration keys the environment can set, and the syntax of their
//! values (shared by the file and the environment).

use std::fmt;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::env::env_name;
use super::model::{DpAuthType, KumaCpConfig, Mode, StoreType, TlsMode};

/// One configuration key that an environment variable can set; the
/// variable's name is derived from the key ([`EnvKey::env`]).
// `example` and `get` serve the tests (and tools listing the keys); the
// binary itself only applies values.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy)]
pub struct EnvKey {
    /// The dotted YAML key, e.g. `xdsServer.grpcPort`.
    pub key: &'static str,
    /// A valid, non-default value in the environment's syntax (for docs and
    /// tests).
    pub example: &'static str,
    /// Parses a value in the environment's syntax into the configuration;
    /// the error is the reason, without the key.
    pub apply: fn(&mut KumaCpConfig, &str) -> Result<(), String>,
    /// The current value, in the environment's syntax.
    pub get: fn(&KumaCpConfig) -> String,
}

impl EnvKey {
    /// The environment variable that sets this key, e.g.
    /// `KUMA_XDS_SERVER_GRPC_PORT` for `xdsServer.grpcPort`.
    pub fn env(&self) -> String {
        env_name(self.key)
    }
}

impl fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKey")
            .field("key", &self.key)
            .field("env", &self.env())
            .finish_non_exhaustive()
    }
}

/// The syntax of a configuration value, chosen by the field's type: the
/// same for the file and the environment.
trait Value: Sized {
    /// Parses the environment's syntax; the error is the reason, without
    /// the key.
    fn parse(text: &str) -> Result<Self, String>;
    /// The value in the environment's syntax.
    fn show(&self) -> String;
}

/// Parses `text` into `slot`.
fn set<T: Value>(slot: &mut T, text: &str) -> Result<(), String> {
    *slot = T::parse(text)?;
    Ok(())
}

/// Builds the table from `"key", "example" => field.path;` lines.
macro_rules! env_keys {
    ($($key:literal, $example:literal => $($field:ident).+;)*) => {
        &[$(EnvKey {
            key: $key,
            example: $example,
            apply: |c, v| set(&mut c.$($field).+, v),
            get: |c| Value::show(&c.$($field).+),
        }),*]
    };
}

/// Every configuration key the environment can set, with an example value
/// and the field it sets (docs/architecture.md, "Configuration"): the single
/// source for applying the environment and for naming the variable in error
/// messages.
pub static ENV_KEYS: &[EnvKey] = env_keys! {
    "mode", "global" => mode;
    "store.type", "postgres" => store.store_type;
    "store.local.path", "/var/lib/kuma-cp" => store.local.path;
    "store.postgres.host", "db.example" => store.postgres.host;
    "store.postgres.port", "5432" => store.postgres.port;
    "store.postgres.user", "admin" => store.postgres.user;
    "store.postgres.password", "s3cret" => store.postgres.password;
    "store.postgres.dbName", "kumadb" => store.postgres.db_name;
    "store.postgres.tls.mode", "verifyFull" => store.postgres.tls.mode;
    "store.postgres.tls.caPath", "/etc/kuma/pg-ca.crt" => store.postgres.tls.ca_path;
    "store.postgres.tls.certPath", "/etc/kuma/pg.crt" => store.postgres.tls.cert_path;
    "store.postgres.tls.keyPath", "/etc/kuma/pg.key" => store.postgres.tls.key_path;
    "store.postgres.maxOpenConnections", "10" => store.postgres.max_open_connections;
    "store.postgres.connectionTimeout", "10s" => store.postgres.connection_timeout;
    "general.advertisedHostname", "cp.example" => general.advertised_hostname;
    "general.tlsCertFile", "/etc/kuma/cp.crt" => general.tls_cert_file;
    "general.tlsKeyFile", "/etc/kuma/cp.key" => general.tls_key_file;
    "monitoringAssignmentServer.grpcPort", "15676" => monitoring_assignment_server.grpc_port;
    "sdsServer.grpcPort", "15677" => sds_server.grpc_port;
    "xdsServer.grpcPort", "15678" => xds_server.grpc_port;
    "adminServer.local.port", "15679" => admin_server.local.port;
    "xdsServer.diagnosticsPort", "15680" => xds_server.diagnostics_port;
    "apiServer.port", "15681" => api_server.port;
    "apiServer.readOnly", "true" => api_server.read_only;
    "apiServer.auth.allowFromLocalhost", "false" => api_server.auth.allow_from_localhost;
    "bootstrapServer.port", "15682" => bootstrap_server.port;
    "bootstrapServer.params.xdsHost", "xds.example" => bootstrap_server.params.xds_host;
    "bootstrapServer.params.xdsPort", "15678" => bootstrap_server.params.xds_port;
    "dpServer.auth.type", "none" => dp_server.auth.auth_type;
    "multizone.global.kds.grpcPort", "15685" => multizone.global.kds.grpc_port;
    "multizone.remote.zone", "zone-1" => multizone.remote.zone;
    "multizone.remote.globalAddress", "grpcs://global.example:5685"
        => multizone.remote.global_address;
    "dnsServer.domain", "kuma" => dns_server.domain;
    "dnsServer.port", "15653" => dns_server.port;
    "dnsServer.CIDR", "10.96.0.0/12" => dns_server.cidr;
    "defaults.skipMeshCreation", "true" => defaults.skip_mesh_creation;
    "runtime.kubernetes.sidecarTraffic.excludeInboundPorts", "8080,9090"
        => runtime.kubernetes.sidecar_traffic.exclude_inbound_ports;
    "runtime.kubernetes.sidecarTraffic.excludeOutboundPorts", "53,443"
        => runtime.kubernetes.sidecar_traffic.exclude_outbound_ports;
    "runtime.universal.dataplaneCleanupAge", "45s"
        => runtime.universal.dataplane_cleanup_age;
    "limits.http.maxConnections", "100" => limits.http.max_connections;
    "limits.http.headerReadTimeout", "5s" => limits.http.header_read_timeout;
    "limits.http.requestTimeout", "30s" => limits.http.request_timeout;
    "limits.http.maxBodyBytes", "1048576" => limits.http.max_body_bytes;
    "limits.grpc.maxConcurrentStreams", "8" => limits.grpc.max_concurrent_streams;
    "limits.grpc.maxMessageBytes", "1048576" => limits.grpc.max_message_bytes;
    "limits.grpc.firstRequestTimeout", "5s" => limits.grpc.first_request_timeout;
};

// ---------------------------------------------------------------------------
// Value syntax, shared by the file and the environment
// ---------------------------------------------------------------------------

impl Value for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl Value for Option<String> {
    fn parse(text: &str) -> Result<Self, String> {
        parse_opt_string(text)
    }
    fn show(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

impl Value for u16 {
    fn parse(text: &str) -> Result<Self, String> {
        parse_port(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for bool {
    fn parse(text: &str) -> Result<Self, String> {
        parse_bool(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Ipv4Net {
    fn parse(text: &str) -> Result<Self, String> {
        parse_cidr(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Vec<u16> {
    fn parse(text: &str) -> Result<Self, String> {
        parse_port_list(text)
    }
    fn show(&self) -> String {
        self.iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Value for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
    fn show(&self) -> String {
        show_duration(*self)
    }
}

impl Value for usize {
    fn parse(text: &str) -> Result<Self, String> {
        parse_count(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for TlsMode {
    fn parse(text: &str) -> Result<Self, String> {
        parse_tls_mode(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// A count, 0 or more.
pub(super) fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("{s:?} is not a count (0 or more)"))
}

/// A TLS mode by Kuma's name.
pub(super) fn parse_tls_mode(s: &str) -> Result<TlsMode, String> {
    TlsMode::from_name(s.trim()).ok_or_else(|| {
        format!("unknown TLS mode {s:?}, expected one of disable, verifyNone, verifyCa, verifyFull")
    })
}

/// The enums parse with their `FromStr` and show with their `Display`.
macro_rules! named_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn parse(text: &str) -> Result<Self, String> {
                text.parse()
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

named_value!(Mode, StoreType, DpAuthType);

/// An optional string: empty (after trimming) means unset.
pub(super) fn parse_opt_string(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A port, 0 meaning "bind an ephemeral port".
pub(super) fn parse_port(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .map_err(|_| format!("{s:?} is not a port (0..=65535)"))
}

/// A port in a list of ports: 1..=65535.
pub(super) fn parse_listed_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("{s:?} is not a port (1..=65535)")),
    }
}

/// A comma-separated list of ports; empty items are skipped.
pub(super) fn parse_port_list(s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_listed_port)
        .collect()
}

/// `true`, `false`, `1` or `0` (ASCII case-insensitive).
pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true, false, 1, 0)")),
    }
}

/// An IPv4 CIDR; host bits are cleared.
pub(super) fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    s.trim()
        .parse::<Ipv4Net>()
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not an IPv4 CIDR (e.g. 240.0.0.0/4)"))
}

/// A duration as Kuma (Go) writes them: one or more `<number><unit>`
/// with units `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`, e.g. `30s`,
/// `1m30s`, `1.5h`, `72h`; `0` alone is zero. Not negative.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 1m30s, 72h)");
    let text = s.trim();
    // Kuma writes some durations as whole seconds
    // (`store.postgres.connectionTimeout: 5`); a bare number means seconds
    // for every duration key.
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: f64 = match unit {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return Err(bad()),
        };
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let nanos = (value * nanos_per_unit).round();
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(bad());
        }
        total = total
            .checked_add(Duration::from_nanos(nanos as u64))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

/// A duration in the syntax [`parse_duration`] reads, in its largest
/// whole unit: `30s`, `2m`, `72h`, `1500ms`.
pub(super) fn show_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, size) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos != 0 && nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    if nanos == 0 {
        "0s".to_string()
    } else {
        format!("{nanos}ns")
    }
}
