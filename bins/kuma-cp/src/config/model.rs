//! The typed configuration, nested like the YAML keys, and its defaults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;
pub use kuma_core::store::postgres::TlsMode;
use serde::{Deserialize, Serialize};

use super::de::{
    de_bool, de_cidr, de_count, de_duration, de_opt_string, de_port, de_port_list, de_section,
    de_string, de_tls_mode, ser_display, ser_duration, ser_masked,
};
use super::mask;

/// The whole `kuma-cp` configuration, nested like the YAML keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KumaCpConfig {
    /// `mode`: standalone (default), global or remote.
    pub mode: Mode,
    /// `store`: where resources are kept.
    #[serde(deserialize_with = "de_section")]
    pub store: StoreConfig,
    /// `general`: settings shared by every component.
    #[serde(deserialize_with = "de_section")]
    pub general: GeneralConfig,
    /// `monitoringAssignmentServer`: MADS for Prometheus.
    #[serde(deserialize_with = "de_section")]
    pub monitoring_assignment_server: MonitoringAssignmentServerConfig,
    /// `sdsServer`: mTLS certificates over SDS.
    #[serde(deserialize_with = "de_section")]
    pub sds_server: SdsServerConfig,
    /// `xdsServer`: the ADS server and the health/diagnostics server.
    #[serde(deserialize_with = "de_section")]
    pub xds_server: XdsServerConfig,
    /// `adminServer`: dataplane tokens, provided CA.
    #[serde(deserialize_with = "de_section")]
    pub admin_server: AdminServerConfig,
    /// `apiServer`: the HTTP API and the GUI.
    #[serde(deserialize_with = "de_section")]
    pub api_server: ApiServerConfig,
    /// `bootstrapServer`: `POST /bootstrap` for kuma-dp.
    #[serde(deserialize_with = "de_section")]
    pub bootstrap_server: BootstrapServerConfig,
    /// `dpServer`: how the servers that accept proxies (bootstrap, ADS,
    /// SDS) authenticate them.
    #[serde(deserialize_with = "de_section")]
    pub dp_server: DpServerConfig,
    /// `multizone`: global and remote settings (KDS).
    #[serde(deserialize_with = "de_section")]
    pub multizone: MultizoneConfig,
    /// `dnsServer`: the `.mesh` DNS server and its VIP range.
    #[serde(deserialize_with = "de_section")]
    pub dns_server: DnsServerConfig,
    /// `defaults`: what is created at start-up.
    #[serde(deserialize_with = "de_section")]
    pub defaults: DefaultsConfig,
    /// `runtime`: environment-specific settings.
    #[serde(deserialize_with = "de_section")]
    pub runtime: RuntimeConfig,
    /// `limits`: what one client may take of every port (not a Kuma key;
    /// docs/security.md, "Limits").
    #[serde(deserialize_with = "de_section")]
    pub limits: LimitsConfig,
    /// `KUMA_*` environment variables that are not configuration keys this
    /// control plane knows; they were ignored. Sorted, without duplicates.
    /// Not part of the YAML layout.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// The control plane's mode (`mode`, `KUMA_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// One control plane for everything (the default).
    #[default]
    Standalone,
    /// The global control plane of a multi-zone deployment.
    Global,
    /// A zone's control plane of a multi-zone deployment (alias `zone`).
    Remote,
}

impl Mode {
    /// The lowercase name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Global => "global",
            Mode::Remote => "remote",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses `standalone`, `global`, `remote` or its alias `zone`
    /// (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standalone" => Ok(Mode::Standalone),
            "global" => Ok(Mode::Global),
            "remote" | "zone" => Ok(Mode::Remote),
            _ => Err(format!(
                "unknown mode {s:?}, expected one of standalone, global, remote (zone)"
            )),
        }
    }
}

/// The kind of resource store (`store.type`, `KUMA_STORE_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StoreType {
    /// Everything in memory, lost when the process ends.
    Memory,
    /// The embedded on-disk store in `store.local.path` (the default).
    #[default]
    Local,
    /// A Postgres database shared by the control-plane replicas.
    Postgres,
}

impl StoreType {
    /// The lowercase name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreType::Memory => "memory",
            StoreType::Local => "local",
            StoreType::Postgres => "postgres",
        }
    }
}

impl fmt::Display for StoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StoreType {
    type Err = String;

    /// Parses `memory`, `local` or `postgres` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(StoreType::Memory),
            "local" => Ok(StoreType::Local),
            "postgres" => Ok(StoreType::Postgres),
            _ => Err(format!(
                "unknown store type {s:?}, expected one of memory, local, postgres"
            )),
        }
    }
}

/// How proxies authenticate (`dpServer.auth.type`,
/// `KUMA_DP_SERVER_AUTH_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DpAuthType {
    /// Every proxy presents a dataplane token for its Dataplane (the
    /// default).
    #[default]
    DpToken,
    /// No authentication: any proxy may connect as any Dataplane.
    None,
}

impl DpAuthType {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            DpAuthType::DpToken => "dpToken",
            DpAuthType::None => "none",
        }
    }
}

impl fmt::Display for DpAuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DpAuthType {
    type Err = String;

    /// Parses `dpToken` or `none` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dptoken" => Ok(DpAuthType::DpToken),
            "none" => Ok(DpAuthType::None),
            _ => Err(format!(
                "unknown dataplane authentication type {s:?}, expected one of dpToken, none"
            )),
        }
    }
}

/// `store`: where resources are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `store.type`: local (default), memory or postgres.
    #[serde(rename = "type")]
    pub store_type: StoreType,
    /// `store.local`: used when `store.type` is local.
    #[serde(deserialize_with = "de_section")]
    pub local: LocalStoreConfig,
    /// `store.postgres`: used when `store.type` is postgres.
    #[serde(deserialize_with = "de_section")]
    pub postgres: PostgresConfig,
}

/// `store.local`: the embedded on-disk store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalStoreConfig {
    /// `store.local.path` (default `kuma-cp-data`): the directory the
    /// store keeps its database in, created if missing; relative paths are
    /// relative to the working directory.
    #[serde(deserialize_with = "de_string")]
    pub path: String,
}

/// The directory of the local store when `store.local.path` is not set.
pub const DEFAULT_LOCAL_STORE_PATH: &str = "kuma-cp-data";

impl Default for LocalStoreConfig {
    fn default() -> Self {
        LocalStoreConfig {
            path: DEFAULT_LOCAL_STORE_PATH.to_owned(),
        }
    }
}

/// `store.postgres`: connection settings of the Postgres store.
///
/// `Debug` and `Serialize` show the password as
/// [`MASKED_SECRET`](super::MASKED_SECRET).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `store.postgres.host` (default 127.0.0.1).
    #[serde(deserialize_with = "de_string")]
    pub host: String,
    /// `store.postgres.port` (default 15432).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    /// `store.postgres.user` (default kuma).
    #[serde(deserialize_with = "de_string")]
    pub user: String,
    /// `store.postgres.password` (default kuma).
    #[serde(deserialize_with = "de_string", serialize_with = "ser_masked")]
    pub password: String,
    /// `store.postgres.dbName` (default kuma).
    #[serde(deserialize_with = "de_string")]
    pub db_name: String,
    /// `store.postgres.tls`: TLS to the database.
    #[serde(deserialize_with = "de_section")]
    pub tls: PostgresTlsConfig,
    /// `store.postgres.maxOpenConnections` (default 50): most pooled
    /// connections per control plane; 0 means the pool's default.
    #[serde(deserialize_with = "de_count")]
    pub max_open_connections: usize,
    /// `store.postgres.connectionTimeout` (default 5): seconds, as Kuma
    /// writes it, or a duration such as `1500ms`.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub connection_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: "127.0.0.1".to_owned(),
            port: 15432,
            user: "kuma".to_owned(),
            password: "kuma".to_owned(),
            db_name: "kuma".to_owned(),
            tls: PostgresTlsConfig::default(),
            max_open_connections: 50,
            connection_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &mask(&self.password))
            .field("db_name", &self.db_name)
            .field("tls", &self.tls)
            .field("max_open_connections", &self.max_open_connections)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

impl PostgresConfig {
    /// The store's connection settings.
    pub fn to_store_config(&self) -> kuma_core::store::postgres::PostgresConfig {
        kuma_core::store::postgres::PostgresConfig {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
            db_name: self.db_name.clone(),
            tls: kuma_core::store::postgres::PostgresTls {
                mode: self.tls.mode,
                ca_path: self.tls.ca_path.as_ref().map(Into::into),
                cert_path: self.tls.cert_path.as_ref().map(Into::into),
                key_path: self.tls.key_path.as_ref().map(Into::into),
            },
            max_open_connections: self.max_open_connections,
            connection_timeout: self.connection_timeout,
        }
    }
}

/// `store.postgres.tls`: TLS to the database (Kuma's keys).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresTlsConfig {
    /// `store.postgres.tls.mode`: disable (default), verifyNone, verifyCa
    /// or verifyFull.
    #[serde(deserialize_with = "de_tls_mode", serialize_with = "ser_display")]
    pub mode: TlsMode,
    /// `store.postgres.tls.caPath`: PEM CA of the server's certificate
    /// (verifyCa, verifyFull).
    #[serde(deserialize_with = "de_opt_string")]
    pub ca_path: Option<String>,
    /// `store.postgres.tls.certPath`: PEM client certificate.
    #[serde(deserialize_with = "de_opt_string")]
    pub cert_path: Option<String>,
    /// `store.postgres.tls.keyPath`: PEM client key.
    #[serde(deserialize_with = "de_opt_string")]
    pub key_path: Option<String>,
}

/// `general`: settings shared by every component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// `general.advertisedHostname`: the host name other parties use to
    /// reach this control plane (default localhost).
    #[serde(deserialize_with = "de_string")]
    pub advertised_hostname: String,
    /// `general.tlsCertFile`: PEM certificate (chain) of the control plane's
    /// TLS servers (SDS). Unset: a CA and certificate are generated at every
    /// start, so proxies bootstrapped before a restart must be restarted to
    /// trust the new one. The last certificate of the file is the one
    /// proxies are told to trust (the CA of a chain, or a self-signed
    /// certificate).
    #[serde(deserialize_with = "de_opt_string")]
    pub tls_cert_file: Option<String>,
    /// `general.tlsKeyFile`: the private key (PEM) of `tlsCertFile`.
    #[serde(deserialize_with = "de_opt_string")]
    pub tls_key_file: Option<String>,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            advertised_hostname: "localhost".to_owned(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// `monitoringAssignmentServer`: the MADS server for Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MonitoringAssignmentServerConfig {
    /// `monitoringAssignmentServer.grpcPort` (default 5676).
    #[serde(deserialize_with = "de_port")]
    pub grpc_port: u16,
}

impl Default for MonitoringAssignmentServerConfig {
    fn default() -> Self {
        MonitoringAssignmentServerConfig { grpc_port: 5676 }
    }
}

/// `sdsServer`: the SDS server (mTLS certificates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SdsServerConfig {
    /// `sdsServer.grpcPort` (default 5677).
    #[serde(deserialize_with = "de_port")]
    pub grpc_port: u16,
}

impl Default for SdsServerConfig {
    fn default() -> Self {
        SdsServerConfig { grpc_port: 5677 }
    }
}

/// `xdsServer`: the ADS server and the health/diagnostics server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct XdsServerConfig {
    /// `xdsServer.grpcPort`: ADS, SotW and incremental (default 5678).
    #[serde(deserialize_with = "de_port")]
    pub grpc_port: u16,
    /// `xdsServer.diagnosticsPort`: `/healthy`, `/ready`, `/metrics`
    /// (default 5680).
    #[serde(deserialize_with = "de_port")]
    pub diagnostics_port: u16,
}

impl Default for XdsServerConfig {
    fn default() -> Self {
        XdsServerConfig {
            grpc_port: 5678,
            diagnostics_port: 5680,
        }
    }
}

/// `adminServer`: dataplane tokens and provided CA.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AdminServerConfig {
    /// `adminServer.local`: the loopback listener.
    #[serde(deserialize_with = "de_section")]
    pub local: AdminServerLocalConfig,
}

/// `adminServer.local`: the admin server's loopback listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AdminServerLocalConfig {
    /// `adminServer.local.port` (default 5679).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
}

impl Default for AdminServerLocalConfig {
    fn default() -> Self {
        AdminServerLocalConfig { port: 5679 }
    }
}

/// `apiServer`: the HTTP API (and the GUI at `/gui`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiServerConfig {
    /// `apiServer.port` (default 5681).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    /// `apiServer.readOnly`: refuse every write (default false).
    #[serde(deserialize_with = "de_bool")]
    pub read_only: bool,
    /// `apiServer.auth`: who may write.
    #[serde(deserialize_with = "de_section")]
    pub auth: ApiServerAuthConfig,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 5681,
            read_only: false,
            auth: ApiServerAuthConfig::default(),
        }
    }
}

/// `apiServer.auth`: who may write through the API (reads are open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiServerAuthConfig {
    /// `apiServer.auth.allowFromLocalhost`: requests from a loopback
    /// address may write without a user token (default true).
    #[serde(deserialize_with = "de_bool")]
    pub allow_from_localhost: bool,
}

impl Default for ApiServerAuthConfig {
    fn default() -> Self {
        ApiServerAuthConfig {
            allow_from_localhost: true,
        }
    }
}

/// `limits`: bounds on what clients may take of the control plane's ports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `limits.http`: every HTTP port (API, admin, bootstrap, diagnostics).
    #[serde(deserialize_with = "de_section")]
    pub http: HttpLimitsConfig,
    /// `limits.grpc`: every gRPC port (ADS, SDS).
    #[serde(deserialize_with = "de_section")]
    pub grpc: GrpcLimitsConfig,
}

/// `limits.http`: applied to each HTTP port separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpLimitsConfig {
    /// `limits.http.maxConnections`: open connections per port; further
    /// clients wait in the listen backlog (default 4096).
    #[serde(deserialize_with = "de_count")]
    pub max_connections: usize,
    /// `limits.http.headerReadTimeout`: a connection that has not sent a
    /// whole request head within this is closed (default 10s).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// `limits.http.requestTimeout`: a request not answered within this
    /// gets 408 (default 60s).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    /// `limits.http.maxBodyBytes`: a larger request body gets 413
    /// (default 4 MiB).
    #[serde(deserialize_with = "de_count")]
    pub max_body_bytes: usize,
}

impl Default for HttpLimitsConfig {
    fn default() -> Self {
        HttpLimitsConfig {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `limits.grpc`: applied to the ADS and SDS servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcLimitsConfig {
    /// `limits.grpc.maxConcurrentStreams`: streams per HTTP/2 connection
    /// (default 16; Envoy opens one ADS stream and a few SDS streams).
    #[serde(deserialize_with = "de_count")]
    pub max_concurrent_streams: usize,
    /// `limits.grpc.maxMessageBytes`: a larger request message ends its
    /// stream with RESOURCE_EXHAUSTED (default 4 MiB).
    #[serde(deserialize_with = "de_count")]
    pub max_message_bytes: usize,
    /// `limits.grpc.firstRequestTimeout`: a stream that sends no request
    /// within this is ended with DEADLINE_EXCEEDED (default 15s).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub first_request_timeout: Duration,
}

impl Default for GrpcLimitsConfig {
    fn default() -> Self {
        GrpcLimitsConfig {
            max_concurrent_streams: 16,
            max_message_bytes: 4 * 1024 * 1024,
            first_request_timeout: Duration::from_secs(15),
        }
    }
}

/// `bootstrapServer`: `POST /bootstrap` for kuma-dp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapServerConfig {
    /// `bootstrapServer.port` (default 5682).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    /// `bootstrapServer.params`: what goes into the generated bootstraps.
    #[serde(deserialize_with = "de_section")]
    pub params: BootstrapParamsConfig,
}

impl Default for BootstrapServerConfig {
    fn default() -> Self {
        BootstrapServerConfig {
            port: 5682,
            params: BootstrapParamsConfig::default(),
        }
    }
}

/// `bootstrapServer.params`: the xDS address written into bootstraps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapParamsConfig {
    /// `bootstrapServer.params.xdsHost`: `None` (the default, also for an
    /// empty value) means "the host the bootstrap request was sent to".
    #[serde(deserialize_with = "de_opt_string")]
    pub xds_host: Option<String>,
    /// `bootstrapServer.params.xdsPort` (default 5678).
    #[serde(deserialize_with = "de_port")]
    pub xds_port: u16,
}

impl Default for BootstrapParamsConfig {
    fn default() -> Self {
        BootstrapParamsConfig {
            xds_host: None,
            xds_port: 5678,
        }
    }
}

/// `dpServer`: the servers that accept proxies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpServerConfig {
    /// `dpServer.auth`: how proxies authenticate.
    #[serde(deserialize_with = "de_section")]
    pub auth: DpServerAuthConfig,
}

/// `dpServer.auth`: how proxies authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpServerAuthConfig {
    /// `dpServer.auth.type`: dpToken (default) or none.
    #[serde(rename = "type")]
    pub auth_type: DpAuthType,
}

/// `multizone`: settings of global and remote control planes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MultizoneConfig {
    /// `multizone.global`: used in global mode.
    #[serde(deserialize_with = "de_section")]
    pub global: MultizoneGlobalConfig,
    /// `multizone.remote`: used in remote mode.
    #[serde(deserialize_with = "de_section")]
    pub remote: MultizoneRemoteConfig,
}

/// `multizone.global`: the global control plane's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MultizoneGlobalConfig {
    /// `multizone.global.kds`: the KDS server remotes dial.
    #[serde(deserialize_with = "de_section")]
    pub kds: KdsServerConfig,
}

/// `multizone.global.kds`: the KDS server of the global control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KdsServerConfig {
    /// `multizone.global.kds.grpcPort` (default 5685).
    #[serde(deserialize_with = "de_port")]
    pub grpc_port: u16,
}

impl Default for KdsServerConfig {
    fn default() -> Self {
        KdsServerConfig { grpc_port: 5685 }
    }
}

/// `multizone.remote`: a remote (zone) control plane's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MultizoneRemoteConfig {
    /// `multizone.remote.zone`: this zone's name; required in remote mode.
    #[serde(deserialize_with = "de_string")]
    pub zone: String,
    /// `multizone.remote.globalAddress`: the global KDS address to dial
    /// (default empty: no global control plane).
    #[serde(deserialize_with = "de_string")]
    pub global_address: String,
}

/// `dnsServer`: the `.mesh` DNS server and the VIP range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DnsServerConfig {
    /// `dnsServer.domain`: the DNS domain served (default mesh); not empty.
    #[serde(deserialize_with = "de_string")]
    pub domain: String,
    /// `dnsServer.port`: UDP and TCP (default 5653).
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    /// `dnsServer.CIDR`: where service VIPs come from (default 240.0.0.0/4).
    /// Host bits are cleared (`10.1.2.3/8` is kept as `10.0.0.0/8`).
    #[serde(
        rename = "CIDR",
        deserialize_with = "de_cidr",
        serialize_with = "ser_display"
    )]
    pub cidr: Ipv4Net,
}

impl Default for DnsServerConfig {
    fn default() -> Self {
        DnsServerConfig {
            domain: "mesh".to_owned(),
            port: 5653,
            cidr: Ipv4Net::new(std::net::Ipv4Addr::new(240, 0, 0, 0), 4).unwrap_or_default(),
        }
    }
}

/// `defaults`: what the control plane creates at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultsConfig {
    /// `defaults.skipMeshCreation`: do not create the `default` mesh
    /// (default false).
    #[serde(deserialize_with = "de_bool")]
    pub skip_mesh_creation: bool,
}

/// `runtime`: environment-specific settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `runtime.kubernetes`: settings of the Kubernetes runtime.
    #[serde(deserialize_with = "de_section")]
    pub kubernetes: KubernetesRuntimeConfig,
    /// `runtime.universal`: settings of the universal runtime.
    #[serde(deserialize_with = "de_section")]
    pub universal: UniversalRuntimeConfig,
}

/// `runtime.universal`: settings of the universal runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UniversalRuntimeConfig {
    /// `runtime.universal.dataplaneCleanupAge`: how long a Dataplane
    /// registered by kuma-dp stays after its proxy disconnected before it is
    /// deleted, unless the proxy reconnects (to any replica) meanwhile;
    /// never deleted because the control plane shuts down. Default 30s
    /// (`kuma_xds::ads::DEFAULT_DATAPLANE_CLEANUP_AGE`).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub dataplane_cleanup_age: std::time::Duration,
}

impl Default for UniversalRuntimeConfig {
    fn default() -> Self {
        UniversalRuntimeConfig {
            dataplane_cleanup_age: kuma_xds::ads::DEFAULT_DATAPLANE_CLEANUP_AGE,
        }
    }
}

/// `runtime.kubernetes`: settings of the Kubernetes runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KubernetesRuntimeConfig {
    /// `runtime.kubernetes.sidecarTraffic`: transparent-proxy exclusions.
    #[serde(deserialize_with = "de_section")]
    pub sidecar_traffic: SidecarTrafficConfig,
}

/// `runtime.kubernetes.sidecarTraffic`: ports left out of redirection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SidecarTrafficConfig {
    /// `...excludeInboundPorts`: inbound ports not redirected to Envoy.
    /// A YAML list or a comma-separated string; ports 1..=65535.
    #[serde(deserialize_with = "de_port_list")]
    pub exclude_inbound_ports: Vec<u16>,
    /// `...excludeOutboundPorts`: outbound ports not redirected to Envoy.
    /// A YAML list or a comma-separated string; ports 1..=65535.
    #[serde(deserialize_with = "de_port_list")]
    pub exclude_outbound_ports: Vec<u16>,
}
