//! Configuration of `kuma-cp`: the typed model, its defaults, and the loader.
//!
//! The effective configuration is built in three layers, each overriding the
//! one before it (DESIGN §6):
//!
//! 1. the defaults ([`KumaCpConfig::default`]),
//! 2. the YAML file given with `--config-file` (camelCase keys nested like
//!    `xdsServer.grpcPort`; an unknown key is an error),
//! 3. the `KUMA_*` environment variables of [`ENV_KEYS`], the one table that
//!    maps each environment variable to its key. `KUMA_*` variables that are
//!    not in the table are ignored and listed in
//!    [`KumaCpConfig::ignored_env`] so the binary can warn about them.
//!
//! Every value, whether it comes from the file or from the environment, goes
//! through the same parser, so both sources accept and reject the same
//! values, and every error is one line naming the key (and the environment
//! variable or the file it came from).
//!
//! Any port may be 0, meaning "bind an ephemeral port".

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Prefix of every environment variable the control plane reads.
pub const ENV_PREFIX: &str = "KUMA_";

/// `KUMA_*` variables read by the command line (see `main.rs`), not by the
/// configuration; they are known, so not reported as ignored.
const CLI_ENV: [&str; 1] = ["KUMA_LOG_LEVEL"];

/// What the effective configuration shows instead of the Postgres password.
pub const MASKED_SECRET: &str = "*****";

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

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
    /// The embedded in-memory store (the default).
    #[default]
    Memory,
    /// A Postgres database shared by the control-plane replicas.
    Postgres,
}

impl StoreType {
    /// The lowercase name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreType::Memory => "memory",
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

    /// Parses `memory` or `postgres` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(StoreType::Memory),
            "postgres" => Ok(StoreType::Postgres),
            _ => Err(format!(
                "unknown store type {s:?}, expected one of memory, postgres"
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
    /// `store.type`: memory (default) or postgres.
    #[serde(rename = "type")]
    pub store_type: StoreType,
    /// `store.postgres`: used when `store.type` is postgres.
    #[serde(deserialize_with = "de_section")]
    pub postgres: PostgresConfig,
}

/// `store.postgres`: connection settings of the Postgres store.
///
/// `Debug` and `Serialize` show the password as [`MASKED_SECRET`].
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
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: "127.0.0.1".to_owned(),
            port: 15432,
            user: "kuma".to_owned(),
            password: "kuma".to_owned(),
            db_name: "kuma".to_owned(),
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
            .finish()
    }
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
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 5681,
            read_only: false,
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

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Where an invalid value came from; part of the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file at this path.
    File(PathBuf),
    /// The environment variable of this name.
    Env(String),
    /// The merged configuration (a rule across keys, or no single source).
    Effective,
}

impl fmt::Display for Origin {
    /// The text that follows the key in a message: ` (in FILE)`,
    /// ` (KUMA_X)`, or nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, " (in {})", path.display()),
            Origin::Env(name) => write!(f, " ({name})"),
            Origin::Effective => Ok(()),
        }
    }
}

/// Why the configuration could not be loaded. Each message is one line that
/// starts with `invalid configuration:` and names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("invalid configuration: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not YAML, or not a mapping of keys.
    #[error("invalid configuration: {} is not a valid YAML configuration: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// The configuration file has a key this control plane does not know.
    #[error("invalid configuration: unknown key {key:?} in {}", path.display())]
    UnknownKey {
        /// The full dotted path of the key, e.g. `xdsServer.grpcPrt`.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// A value is not acceptable for its key.
    #[error("invalid configuration: {key}{origin}: {reason}")]
    Invalid {
        /// The dotted key, e.g. `xdsServer.grpcPort`.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

// ---------------------------------------------------------------------------
// The environment table
// ---------------------------------------------------------------------------

/// One configuration key that an environment variable can set.
// `example` and `get` serve the tests (and tools listing the keys); the
// binary itself only applies values.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy)]
pub struct EnvKey {
    /// The dotted YAML key, e.g. `xdsServer.grpcPort`.
    pub key: &'static str,
    /// The environment variable, e.g. `KUMA_XDS_SERVER_GRPC_PORT`.
    pub env: &'static str,
    /// A valid, non-default value in the environment's syntax (for docs and
    /// tests).
    pub example: &'static str,
    /// Parses a value in the environment's syntax into the configuration;
    /// the error is the reason, without the key.
    pub apply: fn(&mut KumaCpConfig, &str) -> Result<(), String>,
    /// The current value, in the environment's syntax.
    pub get: fn(&KumaCpConfig) -> String,
}

impl fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKey")
            .field("key", &self.key)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

macro_rules! env_key {
    ($key:literal, $env:literal, $example:literal, $($field:ident).+, $parse:expr, $show:expr) => {
        EnvKey {
            key: $key,
            env: $env,
            example: $example,
            apply: |c, v| {
                c.$($field).+ = ($parse)(v)?;
                Ok(())
            },
            get: |c| ($show)(&c.$($field).+),
        }
    };
}

/// Every configuration key and its environment variable (DESIGN §6): the
/// single source for applying the environment and for naming the variable
/// in error messages.
pub static ENV_KEYS: &[EnvKey] = &[
    env_key!(
        "mode",
        "KUMA_MODE",
        "global",
        mode,
        str::parse::<Mode>,
        show_display
    ),
    env_key!(
        "store.type",
        "KUMA_STORE_TYPE",
        "postgres",
        store.store_type,
        str::parse::<StoreType>,
        show_display
    ),
    env_key!(
        "store.postgres.host",
        "KUMA_STORE_POSTGRES_HOST",
        "db.example",
        store.postgres.host,
        parse_string,
        show_display
    ),
    env_key!(
        "store.postgres.port",
        "KUMA_STORE_POSTGRES_PORT",
        "5432",
        store.postgres.port,
        parse_port,
        show_display
    ),
    env_key!(
        "store.postgres.user",
        "KUMA_STORE_POSTGRES_USER",
        "admin",
        store.postgres.user,
        parse_string,
        show_display
    ),
    env_key!(
        "store.postgres.password",
        "KUMA_STORE_POSTGRES_PASSWORD",
        "s3cret",
        store.postgres.password,
        parse_string,
        show_display
    ),
    env_key!(
        "store.postgres.dbName",
        "KUMA_STORE_POSTGRES_DB_NAME",
        "kumadb",
        store.postgres.db_name,
        parse_string,
        show_display
    ),
    env_key!(
        "general.advertisedHostname",
        "KUMA_GENERAL_ADVERTISED_HOSTNAME",
        "cp.example",
        general.advertised_hostname,
        parse_string,
        show_display
    ),
    env_key!(
        "general.tlsCertFile",
        "KUMA_GENERAL_TLS_CERT_FILE",
        "/etc/kuma/cp.crt",
        general.tls_cert_file,
        parse_opt_string,
        show_opt
    ),
    env_key!(
        "general.tlsKeyFile",
        "KUMA_GENERAL_TLS_KEY_FILE",
        "/etc/kuma/cp.key",
        general.tls_key_file,
        parse_opt_string,
        show_opt
    ),
    env_key!(
        "monitoringAssignmentServer.grpcPort",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
        "15676",
        monitoring_assignment_server.grpc_port,
        parse_port,
        show_display
    ),
    env_key!(
        "sdsServer.grpcPort",
        "KUMA_SDS_SERVER_GRPC_PORT",
        "15677",
        sds_server.grpc_port,
        parse_port,
        show_display
    ),
    env_key!(
        "xdsServer.grpcPort",
        "KUMA_XDS_SERVER_GRPC_PORT",
        "15678",
        xds_server.grpc_port,
        parse_port,
        show_display
    ),
    env_key!(
        "adminServer.local.port",
        "KUMA_ADMIN_SERVER_LOCAL_PORT",
        "15679",
        admin_server.local.port,
        parse_port,
        show_display
    ),
    env_key!(
        "xdsServer.diagnosticsPort",
        "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
        "15680",
        xds_server.diagnostics_port,
        parse_port,
        show_display
    ),
    env_key!(
        "apiServer.port",
        "KUMA_API_SERVER_PORT",
        "15681",
        api_server.port,
        parse_port,
        show_display
    ),
    env_key!(
        "apiServer.readOnly",
        "KUMA_API_SERVER_READ_ONLY",
        "true",
        api_server.read_only,
        parse_bool,
        show_display
    ),
    env_key!(
        "bootstrapServer.port",
        "KUMA_BOOTSTRAP_SERVER_PORT",
        "15682",
        bootstrap_server.port,
        parse_port,
        show_display
    ),
    env_key!(
        "bootstrapServer.params.xdsHost",
        "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",
        "xds.example",
        bootstrap_server.params.xds_host,
        parse_opt_string,
        show_opt
    ),
    env_key!(
        "bootstrapServer.params.xdsPort",
        "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT",
        "15678",
        bootstrap_server.params.xds_port,
        parse_port,
        show_display
    ),
    env_key!(
        "dpServer.auth.type",
        "KUMA_DP_SERVER_AUTH_TYPE",
        "none",
        dp_server.auth.auth_type,
        str::parse::<DpAuthType>,
        show_display
    ),
    env_key!(
        "multizone.global.kds.grpcPort",
        "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT",
        "15685",
        multizone.global.kds.grpc_port,
        parse_port,
        show_display
    ),
    env_key!(
        "multizone.remote.zone",
        "KUMA_MULTIZONE_REMOTE_ZONE",
        "zone-1",
        multizone.remote.zone,
        parse_string,
        show_display
    ),
    env_key!(
        "multizone.remote.globalAddress",
        "KUMA_MULTIZONE_REMOTE_GLOBAL_ADDRESS",
        "grpcs://global.example:5685",
        multizone.remote.global_address,
        parse_string,
        show_display
    ),
    env_key!(
        "dnsServer.domain",
        "KUMA_DNS_SERVER_DOMAIN",
        "kuma",
        dns_server.domain,
        parse_string,
        show_display
    ),
    env_key!(
        "dnsServer.port",
        "KUMA_DNS_SERVER_PORT",
        "15653",
        dns_server.port,
        parse_port,
        show_display
    ),
    env_key!(
        "dnsServer.CIDR",
        "KUMA_DNS_SERVER_CIDR",
        "10.96.0.0/12",
        dns_server.cidr,
        parse_cidr,
        show_display
    ),
    env_key!(
        "defaults.skipMeshCreation",
        "KUMA_DEFAULTS_SKIP_MESH_CREATION",
        "true",
        defaults.skip_mesh_creation,
        parse_bool,
        show_display
    ),
    env_key!(
        "runtime.kubernetes.sidecarTraffic.excludeInboundPorts",
        "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS",
        "8080,9090",
        runtime.kubernetes.sidecar_traffic.exclude_inbound_ports,
        parse_port_list,
        show_ports
    ),
    env_key!(
        "runtime.kubernetes.sidecarTraffic.excludeOutboundPorts",
        "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_OUTBOUND_PORTS",
        "53,443",
        runtime.kubernetes.sidecar_traffic.exclude_outbound_ports,
        parse_port_list,
        show_ports
    ),
];

/// The environment variable that sets `key`, if any.
pub fn env_for_key(key: &str) -> Option<&'static str> {
    ENV_KEYS.iter().find(|k| k.key == key).map(|k| k.env)
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Loads the effective configuration: the defaults, then `file` (if given),
/// then the `KUMA_*` variables of `env` (the binary passes
/// `std::env::vars().collect()`; when a name occurs twice the last wins),
/// then checks the rules that span keys ([`KumaCpConfig::validate`]).
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<KumaCpConfig, ConfigError> {
    let mut config = match file {
        Some(path) => from_file(path)?,
        None => KumaCpConfig::default(),
    };
    apply_env(&mut config, env)?;
    config.validate()?;
    Ok(config)
}

/// Parses a configuration file over the defaults.
fn from_file(path: &Path) -> Result<KumaCpConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_yaml_str(&text, path)
}

/// Parses YAML text over the defaults; `path` only names the source in
/// errors.
fn from_yaml_str(text: &str, path: &Path) -> Result<KumaCpConfig, ConfigError> {
    let yaml_error = |message: String| ConfigError::Yaml {
        path: path.to_owned(),
        message: one_line(&message),
    };
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(e.to_string()))?;
    match value {
        // An empty file (or one with only comments) means "all defaults".
        serde_yaml_ng::Value::Null => return Ok(KumaCpConfig::default()),
        serde_yaml_ng::Value::Mapping(_) => {}
        _ => {
            return Err(yaml_error(
                "the top level must be a mapping of configuration keys".to_owned(),
            ));
        }
    }
    serde_path_to_error::deserialize::<_, KumaCpConfig>(value).map_err(|err| {
        let key = err.path().to_string();
        let reason = one_line(&err.inner().to_string());
        if reason.starts_with("unknown field") {
            ConfigError::UnknownKey {
                key,
                path: path.to_owned(),
            }
        } else {
            ConfigError::Invalid {
                key,
                origin: Origin::File(path.to_owned()),
                reason,
            }
        }
    })
}

/// Applies the `KUMA_*` variables of the table over `config`, in the
/// table's order, and records the unknown `KUMA_*` names.
fn apply_env(config: &mut KumaCpConfig, env: &[(String, String)]) -> Result<(), ConfigError> {
    for entry in ENV_KEYS {
        let value = env.iter().rev().find(|(name, _)| name == entry.env);
        if let Some((_, value)) = value {
            (entry.apply)(config, value).map_err(|reason| ConfigError::Invalid {
                key: entry.key.to_owned(),
                origin: Origin::Env(entry.env.to_owned()),
                reason: one_line(&reason),
            })?;
        }
    }
    let mut ignored: Vec<String> = env
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with(ENV_PREFIX)
                && !ENV_KEYS.iter().any(|k| k.env == *name)
                && !CLI_ENV.contains(&name.as_str())
        })
        .cloned()
        .collect();
    ignored.sort();
    ignored.dedup();
    config.ignored_env = ignored;
    Ok(())
}

impl KumaCpConfig {
    /// Checks the rules that involve more than one value's syntax: a remote
    /// control plane needs a zone name, the DNS domain and the advertised
    /// host name are not empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mode == Mode::Remote && self.multizone.remote.zone.trim().is_empty() {
            return Err(invalid_effective(
                "multizone.remote.zone",
                "must be set when mode is remote",
            ));
        }
        if self.dns_server.domain.trim().trim_matches('.').is_empty() {
            return Err(invalid_effective("dnsServer.domain", "must not be empty"));
        }
        if self.general.advertised_hostname.trim().is_empty() {
            return Err(invalid_effective(
                "general.advertisedHostname",
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// The effective configuration as YAML, in the same camelCase layout as
    /// the file (the Postgres password shown as [`MASKED_SECRET`]), for
    /// `GET /config` and debugging. Loading it again gives the same
    /// configuration, password aside.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"))
    }
}

/// An error for a rule over the merged configuration, telling where to set
/// the key.
fn invalid_effective(key: &str, what: &str) -> ConfigError {
    let reason = match env_for_key(key) {
        Some(env) => format!("{what} (set it in the file or with {env})"),
        None => what.to_owned(),
    };
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: Origin::Effective,
        reason,
    }
}

/// Folds a message onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn mask(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { MASKED_SECRET }
}

// ---------------------------------------------------------------------------
// Value parsers, shared by the file and the environment
// ---------------------------------------------------------------------------

fn parse_string(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

fn parse_opt_string(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .map_err(|_| format!("{s:?} is not a port (0..=65535)"))
}

fn parse_listed_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("{s:?} is not a port (1..=65535)")),
    }
}

/// A comma-separated list of ports; empty items are skipped.
fn parse_port_list(s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_listed_port)
        .collect()
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true, false, 1, 0)")),
    }
}

fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    s.trim()
        .parse::<Ipv4Net>()
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not an IPv4 CIDR (e.g. 240.0.0.0/4)"))
}

fn show_display<T: fmt::Display>(value: &T) -> String {
    value.to_string()
}

fn show_opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn show_ports(value: &[u16]) -> String {
    value
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------
// serde glue
// ---------------------------------------------------------------------------

/// Any YAML scalar, as the text the environment would carry.
struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value (string, number or boolean)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A scalar's text; `None` for `null` / an empty value.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(ScalarVisitor)
}

/// A scalar that must be present, run through `parse`.
fn required<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    match scalar(d)? {
        Some(text) => parse(&text).map_err(de::Error::custom),
        None => Err(de::Error::custom(
            "no value given (remove the key to keep the default)",
        )),
    }
}

/// A section (nested mapping); `null` or an empty value means its defaults.
fn de_section<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(scalar(d)?.unwrap_or_default())
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match scalar(d)? {
        Some(text) => parse_opt_string(&text).map_err(de::Error::custom),
        None => Ok(None),
    }
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    required(d, parse_port)
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    required(d, parse_bool)
}

fn de_cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
    required(d, parse_cidr)
}

/// A list of ports: a YAML sequence, a comma-separated string, or `null`.
fn de_port_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    struct PortListVisitor;

    impl<'de> Visitor<'de> for PortListVisitor {
        type Value = Vec<u16>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of ports or a comma-separated string of ports")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut ports = Vec::new();
            while let Some(Scalar(item)) = seq.next_element::<Scalar>()? {
                let text = item.unwrap_or_default();
                ports.push(parse_listed_port(&text).map_err(de::Error::custom)?);
            }
            Ok(ports)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_port_list(v).map_err(de::Error::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            parse_port_list(&v.to_string()).map_err(de::Error::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            parse_port_list(&v.to_string()).map_err(de::Error::custom)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }

    d.deserialize_any(PortListVisitor)
}

/// A scalar inside a sequence.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d).map(Scalar)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required(d, str::parse::<Mode>)
    }
}

impl Serialize for StoreType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StoreType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required(d, str::parse::<StoreType>)
    }
}

impl Serialize for DpAuthType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DpAuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required(d, str::parse::<DpAuthType>)
    }
}

fn ser_display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn ser_masked<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mask(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Writes `text` to a fresh file under the temp directory.
    fn temp_file(text: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kuma-cp-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("config-{n}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_yaml(text: &str) -> Result<KumaCpConfig, ConfigError> {
        load(Some(&temp_file(text)), &[])
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<KumaCpConfig, ConfigError> {
        load(None, &env(vars))
    }

    fn err_yaml(text: &str) -> (String, PathBuf) {
        let path = temp_file(text);
        let err = load(Some(&path), &[]).unwrap_err().to_string();
        (err, path)
    }

    fn err_env(vars: &[(&str, &str)]) -> String {
        load_env(vars).unwrap_err().to_string()
    }

    /// Builds `a: {b: {c: value}}` from `a.b.c`.
    fn nested_yaml(key: &str, value: serde_yaml_ng::Value) -> String {
        let mut value = value;
        for part in key.rsplit('.') {
            let mut map = serde_yaml_ng::Mapping::new();
            map.insert(part.into(), value);
            value = serde_yaml_ng::Value::Mapping(map);
        }
        serde_yaml_ng::to_string(&value).unwrap()
    }

    /// Every leaf key of a YAML mapping, dotted.
    fn leaf_keys(value: &serde_yaml_ng::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            serde_yaml_ng::Value::Mapping(map) => {
                for (k, v) in map {
                    let k = k.as_str().unwrap();
                    let key = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaf_keys(v, &key, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn defaults_match_design() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c, KumaCpConfig::default());
        assert_eq!(c.mode, Mode::Standalone);
        assert_eq!(c.store.store_type, StoreType::Memory);
        assert_eq!(c.store.postgres.host, "127.0.0.1");
        assert_eq!(c.store.postgres.port, 15432);
        assert_eq!(c.store.postgres.user, "kuma");
        assert_eq!(c.store.postgres.password, "kuma");
        assert_eq!(c.store.postgres.db_name, "kuma");
        assert_eq!(c.general.advertised_hostname, "localhost");
        assert_eq!(c.monitoring_assignment_server.grpc_port, 5676);
        assert_eq!(c.sds_server.grpc_port, 5677);
        assert_eq!(c.xds_server.grpc_port, 5678);
        assert_eq!(c.admin_server.local.port, 5679);
        assert_eq!(c.xds_server.diagnostics_port, 5680);
        assert_eq!(c.api_server.port, 5681);
        assert!(!c.api_server.read_only);
        assert_eq!(c.bootstrap_server.port, 5682);
        assert_eq!(c.bootstrap_server.params.xds_host, None);
        assert_eq!(c.bootstrap_server.params.xds_port, 5678);
        assert_eq!(c.dp_server.auth.auth_type, DpAuthType::DpToken);
        assert_eq!(c.multizone.global.kds.grpc_port, 5685);
        assert_eq!(c.multizone.remote.zone, "");
        assert_eq!(c.multizone.remote.global_address, "");
        assert_eq!(c.dns_server.domain, "mesh");
        assert_eq!(c.dns_server.port, 5653);
        assert_eq!(c.dns_server.cidr, "240.0.0.0/4".parse::<Ipv4Net>().unwrap());
        assert!(!c.defaults.skip_mesh_creation);
        assert!(
            c.runtime
                .kubernetes
                .sidecar_traffic
                .exclude_inbound_ports
                .is_empty()
        );
        assert!(
            c.runtime
                .kubernetes
                .sidecar_traffic
                .exclude_outbound_ports
                .is_empty()
        );
        assert!(c.ignored_env.is_empty());
    }

    #[test]
    fn file_overrides_defaults() {
        let c = load_yaml(
            "mode: global\n\
             store:\n  type: postgres\n  postgres:\n    host: db\n    dbName: k\n\
             xdsServer:\n  grpcPort: 6000\n\
             apiServer:\n  readOnly: true\n\
             bootstrapServer:\n  params:\n    xdsHost: cp.example\n\
             dnsServer:\n  CIDR: 10.1.2.3/8\n\
             runtime:\n  kubernetes:\n    sidecarTraffic:\n      excludeInboundPorts: [8080, \"9090\"]\n      excludeOutboundPorts: \"53, 443\"\n",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Global);
        assert_eq!(c.store.store_type, StoreType::Postgres);
        assert_eq!(c.store.postgres.host, "db");
        assert_eq!(c.store.postgres.db_name, "k");
        assert_eq!(c.store.postgres.port, 15432, "untouched keys keep defaults");
        assert_eq!(c.xds_server.grpc_port, 6000);
        assert_eq!(c.xds_server.diagnostics_port, 5680);
        assert!(c.api_server.read_only);
        assert_eq!(
            c.bootstrap_server.params.xds_host.as_deref(),
            Some("cp.example")
        );
        assert_eq!(
            c.dns_server.cidr.to_string(),
            "10.0.0.0/8",
            "host bits cleared"
        );
        assert_eq!(
            c.runtime.kubernetes.sidecar_traffic.exclude_inbound_ports,
            vec![8080, 9090]
        );
        assert_eq!(
            c.runtime.kubernetes.sidecar_traffic.exclude_outbound_ports,
            vec![53, 443]
        );
    }

    #[test]
    fn empty_file_and_null_sections_mean_defaults() {
        assert_eq!(load_yaml("").unwrap(), KumaCpConfig::default());
        assert_eq!(
            load_yaml("# only a comment\n").unwrap(),
            KumaCpConfig::default()
        );
        assert_eq!(
            load_yaml("xdsServer:\nstore:\n  postgres: ~\n").unwrap(),
            KumaCpConfig::default()
        );
    }

    #[test]
    fn env_overrides_file() {
        let path =
            temp_file("xdsServer:\n  grpcPort: 6000\n  diagnosticsPort: 6001\nmode: global\n");
        let c = load(
            Some(&path),
            &env(&[
                ("KUMA_XDS_SERVER_GRPC_PORT", "7000"),
                ("KUMA_MODE", "standalone"),
            ]),
        )
        .unwrap();
        assert_eq!(c.xds_server.grpc_port, 7000);
        assert_eq!(c.xds_server.diagnostics_port, 6001);
        assert_eq!(c.mode, Mode::Standalone);
    }

    #[test]
    fn last_occurrence_of_an_env_var_wins() {
        let c = load_env(&[("KUMA_API_SERVER_PORT", "1"), ("KUMA_API_SERVER_PORT", "2")]).unwrap();
        assert_eq!(c.api_server.port, 2);
    }

    #[test]
    fn table_has_exactly_the_design_env_names() {
        let mut names: Vec<&str> = ENV_KEYS.iter().map(|k| k.env).collect();
        names.sort_unstable();
        let mut expected = vec![
            "KUMA_MODE",
            "KUMA_STORE_TYPE",
            "KUMA_STORE_POSTGRES_HOST",
            "KUMA_STORE_POSTGRES_PORT",
            "KUMA_STORE_POSTGRES_USER",
            "KUMA_STORE_POSTGRES_PASSWORD",
            "KUMA_STORE_POSTGRES_DB_NAME",
            "KUMA_GENERAL_ADVERTISED_HOSTNAME",
            "KUMA_GENERAL_TLS_CERT_FILE",
            "KUMA_GENERAL_TLS_KEY_FILE",
            "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
            "KUMA_SDS_SERVER_GRPC_PORT",
            "KUMA_XDS_SERVER_GRPC_PORT",
            "KUMA_ADMIN_SERVER_LOCAL_PORT",
            "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
            "KUMA_API_SERVER_PORT",
            "KUMA_API_SERVER_READ_ONLY",
            "KUMA_BOOTSTRAP_SERVER_PORT",
            "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",
            "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT",
            "KUMA_DP_SERVER_AUTH_TYPE",
            "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT",
            "KUMA_MULTIZONE_REMOTE_ZONE",
            "KUMA_MULTIZONE_REMOTE_GLOBAL_ADDRESS",
            "KUMA_DNS_SERVER_DOMAIN",
            "KUMA_DNS_SERVER_PORT",
            "KUMA_DNS_SERVER_CIDR",
            "KUMA_DEFAULTS_SKIP_MESH_CREATION",
            "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS",
            "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_OUTBOUND_PORTS",
        ];
        expected.sort_unstable();
        assert_eq!(names, expected);
        let mut keys: Vec<&str> = ENV_KEYS.iter().map(|k| k.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys.len(),
            ENV_KEYS.len(),
            "a key appears twice in the table"
        );
    }

    #[test]
    fn table_covers_every_yaml_key() {
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&KumaCpConfig::default().to_yaml()).unwrap();
        let mut leaves = Vec::new();
        leaf_keys(&yaml, "", &mut leaves);
        let mut table: Vec<String> = ENV_KEYS.iter().map(|k| k.key.to_string()).collect();
        leaves.sort();
        table.sort();
        assert_eq!(leaves, table);
    }

    #[test]
    fn every_env_var_of_the_table_takes_effect_like_its_file_key() {
        let default = KumaCpConfig::default();
        for entry in ENV_KEYS {
            let from_env = load_env(&[(entry.env, entry.example)])
                .unwrap_or_else(|e| panic!("{}: {e}", entry.env));
            assert_ne!(from_env, default, "{} changed nothing", entry.env);
            assert_eq!((entry.get)(&from_env), entry.example, "{}", entry.env);
            assert_ne!(
                (entry.get)(&default),
                entry.example,
                "{}: example is the default",
                entry.env
            );
            // Exactly this key changed: applying the example to the defaults
            // by hand gives the same configuration.
            let mut by_hand = default.clone();
            (entry.apply)(&mut by_hand, entry.example).unwrap();
            assert_eq!(from_env, by_hand, "{}", entry.env);

            // The same value through the file, under the table's key.
            let yaml = nested_yaml(
                entry.key,
                serde_yaml_ng::Value::String(entry.example.into()),
            );
            let from_file = load_yaml(&yaml).unwrap_or_else(|e| panic!("{}: {e}", entry.key));
            assert_eq!(from_file, from_env, "{} vs {}", entry.key, entry.env);
        }
    }

    #[test]
    fn bad_env_values_name_key_and_variable() {
        assert_eq!(
            err_env(&[("KUMA_MODE", "foo")]),
            r#"invalid configuration: mode (KUMA_MODE): unknown mode "foo", expected one of standalone, global, remote (zone)"#
        );
        assert_eq!(
            err_env(&[("KUMA_XDS_SERVER_GRPC_PORT", "70000")]),
            r#"invalid configuration: xdsServer.grpcPort (KUMA_XDS_SERVER_GRPC_PORT): "70000" is not a port (0..=65535)"#
        );
        assert_eq!(
            err_env(&[("KUMA_API_SERVER_PORT", "-1")]),
            r#"invalid configuration: apiServer.port (KUMA_API_SERVER_PORT): "-1" is not a port (0..=65535)"#
        );
        assert_eq!(
            err_env(&[("KUMA_DNS_SERVER_CIDR", "300.0.0.0/4")]),
            r#"invalid configuration: dnsServer.CIDR (KUMA_DNS_SERVER_CIDR): "300.0.0.0/4" is not an IPv4 CIDR (e.g. 240.0.0.0/4)"#
        );
        assert_eq!(
            err_env(&[("KUMA_DNS_SERVER_CIDR", "fd00::/8")]),
            r#"invalid configuration: dnsServer.CIDR (KUMA_DNS_SERVER_CIDR): "fd00::/8" is not an IPv4 CIDR (e.g. 240.0.0.0/4)"#
        );
        assert_eq!(
            err_env(&[("KUMA_STORE_TYPE", "etcd")]),
            r#"invalid configuration: store.type (KUMA_STORE_TYPE): unknown store type "etcd", expected one of memory, postgres"#
        );
        assert_eq!(
            err_env(&[("KUMA_DP_SERVER_AUTH_TYPE", "jwt")]),
            r#"invalid configuration: dpServer.auth.type (KUMA_DP_SERVER_AUTH_TYPE): unknown dataplane authentication type "jwt", expected one of dpToken, none"#
        );
        assert_eq!(
            err_env(&[("KUMA_API_SERVER_READ_ONLY", "yes")]),
            r#"invalid configuration: apiServer.readOnly (KUMA_API_SERVER_READ_ONLY): "yes" is not a boolean (true, false, 1, 0)"#
        );
        assert_eq!(
            err_env(&[(
                "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS",
                "80,x"
            )]),
            r#"invalid configuration: runtime.kubernetes.sidecarTraffic.excludeInboundPorts (KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS): "x" is not a port (1..=65535)"#
        );
    }

    #[test]
    fn bad_file_values_name_key_and_file() {
        let (err, path) = err_yaml("xdsServer:\n  grpcPort: 70000\n");
        assert_eq!(
            err,
            format!(
                r#"invalid configuration: xdsServer.grpcPort (in {}): "70000" is not a port (0..=65535)"#,
                path.display()
            )
        );
        let (err, path) = err_yaml("dnsServer:\n  CIDR: 300.0.0.0/4\n");
        assert_eq!(
            err,
            format!(
                r#"invalid configuration: dnsServer.CIDR (in {}): "300.0.0.0/4" is not an IPv4 CIDR (e.g. 240.0.0.0/4)"#,
                path.display()
            )
        );
        let (err, path) = err_yaml("mode: foo\n");
        assert_eq!(
            err,
            format!(
                r#"invalid configuration: mode (in {}): unknown mode "foo", expected one of standalone, global, remote (zone)"#,
                path.display()
            )
        );
        let (err, path) = err_yaml("dpServer:\n  auth:\n    type: token\n");
        assert_eq!(
            err,
            format!(
                r#"invalid configuration: dpServer.auth.type (in {}): unknown dataplane authentication type "token", expected one of dpToken, none"#,
                path.display()
            )
        );
        let (err, _) = err_yaml("store:\n  type: etcd\n");
        assert!(
            err.starts_with("invalid configuration: store.type (in "),
            "{err}"
        );
        let (err, _) = err_yaml("apiServer:\n  port:\n");
        assert!(
            err.starts_with("invalid configuration: apiServer.port (in "),
            "{err}"
        );
        assert!(
            err.ends_with("no value given (remove the key to keep the default)"),
            "{err}"
        );
        let (err, _) = err_yaml("apiServer:\n  port: [1, 2]\n");
        assert!(
            err.starts_with("invalid configuration: apiServer.port (in "),
            "{err}"
        );
        let (err, _) = err_yaml(
            "runtime:\n  kubernetes:\n    sidecarTraffic:\n      excludeOutboundPorts: [53, 0]\n",
        );
        assert!(
            err.starts_with(
                "invalid configuration: runtime.kubernetes.sidecarTraffic.excludeOutboundPorts"
            ),
            "{err}"
        );
        assert!(err.ends_with(r#""0" is not a port (1..=65535)"#), "{err}");
        let (err, _) = err_yaml("xdsServer: 5678\n");
        assert!(
            err.starts_with("invalid configuration: xdsServer (in "),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_keys_are_rejected_with_their_dotted_path() {
        for (yaml, key) in [
            ("xdsServer:\n  grpcPrt: 1\n", "xdsServer.grpcPrt"),
            ("xdsServers:\n  grpcPort: 1\n", "xdsServers"),
            (
                "runtime:\n  kubernetes:\n    sidecarTraffic:\n      excludeInbound: []\n",
                "runtime.kubernetes.sidecarTraffic.excludeInbound",
            ),
            ("dnsServer:\n  cidr: 10.0.0.0/8\n", "dnsServer.cidr"),
            (
                "store:\n  postgres:\n    db_name: x\n",
                "store.postgres.db_name",
            ),
            ("ignoredEnv: []\n", "ignoredEnv"),
        ] {
            let (err, path) = err_yaml(yaml);
            assert_eq!(
                err,
                format!(
                    "invalid configuration: unknown key {key:?} in {}",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn unreadable_or_non_yaml_files_are_reported() {
        let missing = std::env::temp_dir().join("kuma-cp-config-test-does-not-exist.yaml");
        let err = load(Some(&missing), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "invalid configuration: cannot read {}: ",
                missing.display()
            )),
            "{msg}"
        );
        assert!(!msg.contains('\n'));

        let (err, path) = err_yaml("xdsServer:\n  grpcPort: [1\n");
        assert!(
            err.starts_with(&format!(
                "invalid configuration: {} is not a valid YAML configuration: ",
                path.display()
            )),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");

        let (err, path) = err_yaml("- a\n- b\n");
        assert_eq!(
            err,
            format!(
                "invalid configuration: {} is not a valid YAML configuration: the top level must be a mapping of configuration keys",
                path.display()
            )
        );
    }

    #[test]
    fn semantic_checks_name_the_key() {
        assert_eq!(
            err_env(&[("KUMA_MODE", "remote")]),
            "invalid configuration: multizone.remote.zone: must be set when mode is remote (set it in the file or with KUMA_MULTIZONE_REMOTE_ZONE)"
        );
        assert_eq!(
            err_env(&[("KUMA_DNS_SERVER_DOMAIN", "")]),
            "invalid configuration: dnsServer.domain: must not be empty (set it in the file or with KUMA_DNS_SERVER_DOMAIN)"
        );
        let (err, _) = err_yaml("general:\n  advertisedHostname: \"\"\n");
        assert_eq!(
            err,
            "invalid configuration: general.advertisedHostname: must not be empty (set it in the file or with KUMA_GENERAL_ADVERTISED_HOSTNAME)"
        );
    }

    #[test]
    fn dp_server_auth_type_accepts_dp_token_and_none_in_any_case() {
        assert_eq!(
            load_env(&[("KUMA_DP_SERVER_AUTH_TYPE", "NONE")])
                .unwrap()
                .dp_server
                .auth
                .auth_type,
            DpAuthType::None
        );
        let c = load_yaml("dpServer:\n  auth:\n    type: dptoken\n").unwrap();
        assert_eq!(c.dp_server.auth.auth_type, DpAuthType::DpToken);
        let c = load_yaml("dpServer:\n  auth:\n    type: none\n").unwrap();
        assert!(c.to_yaml().contains("dpServer:\n  auth:\n    type: none"));
    }

    #[test]
    fn zone_is_an_alias_of_remote() {
        let c = load_env(&[("KUMA_MODE", "zone"), ("KUMA_MULTIZONE_REMOTE_ZONE", "z1")]).unwrap();
        assert_eq!(c.mode, Mode::Remote);
        assert_eq!(c.mode.to_string(), "remote");
        let c = load_yaml(
            "mode: zone\nmultizone:\n  remote:\n    zone: z1\n    globalAddress: grpcs://g:5685\n",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Remote);
        assert_eq!(c.multizone.remote.global_address, "grpcs://g:5685");
        assert_eq!("GLOBAL".parse::<Mode>(), Ok(Mode::Global));
        assert_eq!(Mode::Standalone.to_string(), "standalone");
        assert_eq!(Mode::Global.to_string(), "global");
    }

    #[test]
    fn port_zero_means_ephemeral_and_is_accepted() {
        let c = load_env(&[
            ("KUMA_XDS_SERVER_GRPC_PORT", "0"),
            ("KUMA_DNS_SERVER_PORT", "0"),
        ])
        .unwrap();
        assert_eq!(c.xds_server.grpc_port, 0);
        assert_eq!(c.dns_server.port, 0);
        let c = load_yaml("apiServer:\n  port: 0\nadminServer:\n  local:\n    port: 0\n").unwrap();
        assert_eq!(c.api_server.port, 0);
        assert_eq!(c.admin_server.local.port, 0);
    }

    #[test]
    fn booleans_from_env_accept_true_false_1_0() {
        for (text, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("0", false),
        ] {
            let c = load_env(&[("KUMA_DEFAULTS_SKIP_MESH_CREATION", text)]).unwrap();
            assert_eq!(c.defaults.skip_mesh_creation, want, "{text}");
        }
    }

    #[test]
    fn empty_list_and_host_from_env() {
        let c = load(
            Some(&temp_file("bootstrapServer:\n  params:\n    xdsHost: h\nruntime:\n  kubernetes:\n    sidecarTraffic:\n      excludeInboundPorts: [1]\n")),
            &env(&[
                ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", ""),
                ("KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.bootstrap_server.params.xds_host, None);
        assert!(
            c.runtime
                .kubernetes
                .sidecar_traffic
                .exclude_inbound_ports
                .is_empty()
        );
    }

    #[test]
    fn unknown_kuma_env_vars_are_ignored_and_listed() {
        let c = load_env(&[
            ("KUMA_REPORTS_ENABLED", "false"),
            ("PATH", "/bin"),
            ("KUMA_API_SERVER_PORT", "1234"),
            ("KUMA_REPORTS_ENABLED", "true"),
            ("KUMA_GENERAL_WORK_DIR", "/x"),
            ("kuma_mode", "global"),
            ("KUMA_LOG_LEVEL", "debug"),
        ])
        .unwrap();
        assert_eq!(c.api_server.port, 1234);
        assert_eq!(c.mode, Mode::Standalone, "env names are case-sensitive");
        assert_eq!(
            c.ignored_env,
            vec!["KUMA_GENERAL_WORK_DIR", "KUMA_REPORTS_ENABLED"]
        );
    }

    #[test]
    fn effective_yaml_masks_the_password_and_reloads_to_an_equal_config() {
        let c = load(
            Some(&temp_file(
                "store:\n  type: postgres\n  postgres:\n    password: hunter2\n",
            )),
            &env(&[
                ("KUMA_MODE", "zone"),
                ("KUMA_MULTIZONE_REMOTE_ZONE", "z"),
                ("KUMA_DNS_SERVER_CIDR", "10.10.0.0/16"),
                ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", "xds"),
                (
                    "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_OUTBOUND_PORTS",
                    "53,443",
                ),
                ("KUMA_API_SERVER_READ_ONLY", "1"),
                ("KUMA_XDS_SERVER_GRPC_PORT", "0"),
            ]),
        )
        .unwrap();
        let yaml = c.to_yaml();
        assert!(!yaml.contains("hunter2"), "{yaml}");
        assert!(
            yaml.contains("password: '*****'") || yaml.contains("password: \"*****\""),
            "{yaml}"
        );
        assert!(yaml.contains("CIDR: 10.10.0.0/16"), "{yaml}");
        assert!(yaml.contains("mode: remote"), "{yaml}");
        assert!(yaml.contains("dbName: kuma"), "{yaml}");
        assert!(!format!("{c:?}").contains("hunter2"));

        let mut reloaded = load_yaml(&yaml).unwrap();
        assert_eq!(reloaded.store.postgres.password, MASKED_SECRET);
        reloaded.store.postgres.password = "hunter2".to_owned();
        assert_eq!(reloaded, c);

        let default = KumaCpConfig::default();
        let mut reloaded = load_yaml(&default.to_yaml()).unwrap();
        reloaded.store.postgres.password = default.store.postgres.password.clone();
        assert_eq!(reloaded, default);
    }

    #[test]
    fn default_effective_yaml_layout() {
        let yaml = KumaCpConfig::default().to_yaml();
        for line in [
            "mode: standalone",
            "  type: memory",
            "    host: 127.0.0.1",
            "    port: 15432",
            "  advertisedHostname: localhost",
            "monitoringAssignmentServer:\n  grpcPort: 5676",
            "sdsServer:\n  grpcPort: 5677",
            "xdsServer:\n  grpcPort: 5678\n  diagnosticsPort: 5680",
            "adminServer:\n  local:\n    port: 5679",
            "apiServer:\n  port: 5681\n  readOnly: false",
            "bootstrapServer:\n  port: 5682\n  params:\n    xdsHost: null\n    xdsPort: 5678",
            "dpServer:\n  auth:\n    type: dpToken",
            "    kds:\n      grpcPort: 5685",
            "dnsServer:\n  domain: mesh\n  port: 5653\n  CIDR: 240.0.0.0/4",
            "  skipMeshCreation: false",
            "      excludeInboundPorts: []",
        ] {
            assert!(yaml.contains(line), "missing {line:?} in\n{yaml}");
        }
    }
}
