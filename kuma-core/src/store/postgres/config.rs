//! The Postgres store's typed configuration (Kuma's `store.postgres.*`
//! keys): server, credentials, TLS, pool size and connect timeout.

use std::time::Duration;

/// How [`PostgresStore`](super::PostgresStore) talks to the server (Kuma's `store.postgres.tls.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted, the server's certificate not checked.
    VerifyNone,
    /// Encrypted, the server's certificate issued by `tls.caPath`.
    VerifyCa,
    /// Like `VerifyCa`, and the certificate names `store.postgres.host`.
    VerifyFull,
}

impl TlsMode {
    /// Kuma's name of the mode: `disable`, `verifyNone`, `verifyCa`, `verifyFull`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::VerifyNone => "verifyNone",
            Self::VerifyCa => "verifyCa",
            Self::VerifyFull => "verifyFull",
        }
    }

    /// The mode with Kuma's name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Disable,
            Self::VerifyNone,
            Self::VerifyCa,
            Self::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// TLS settings (`store.postgres.tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresTls {
    /// What to check (`tls.mode`).
    pub mode: TlsMode,
    /// PEM CA certificate(s) the server's certificate must chain to
    /// (`tls.caPath`); needed by `VerifyCa` and `VerifyFull`.
    pub ca_path: Option<std::path::PathBuf>,
    /// PEM client certificate chain (`tls.certPath`), with `key_path`.
    pub cert_path: Option<std::path::PathBuf>,
    /// PEM client private key (`tls.keyPath`), with `cert_path`.
    pub key_path: Option<std::path::PathBuf>,
}

/// Where and how to connect (Kuma's `store.postgres.*` keys).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Server host name or address (`host`).
    pub host: String,
    /// Server port (`port`).
    pub port: u16,
    /// User (`user`).
    pub user: String,
    /// Password (`password`); never printed.
    pub password: String,
    /// Database (`dbName`).
    pub db_name: String,
    /// TLS (`tls`).
    pub tls: PostgresTls,
    /// Most connections of the pool (`maxOpenConnections`); 0: the pool's
    /// default (4 per CPU). The listener and the leader election use one
    /// dedicated connection each on top.
    pub max_open_connections: usize,
    /// Longest wait for a connection, new or from the pool
    /// (`connectionTimeout`).
    pub connection_timeout: Duration,
}

impl Default for PostgresConfig {
    /// Kuma's defaults: `kuma`/`kuma` on 127.0.0.1:15432, database `kuma`.
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 15432,
            user: "kuma".into(),
            password: "kuma".into(),
            db_name: "kuma".into(),
            tls: PostgresTls::default(),
            max_open_connections: 0,
            connection_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("db_name", &self.db_name)
            .field("tls", &self.tls)
            .field("max_open_connections", &self.max_open_connections)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}
