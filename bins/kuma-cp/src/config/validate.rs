//! The rules that span keys, checked on the merged configuration.

use super::env::env_for_key;
use super::model::{KumaCpConfig, Mode, StoreType};
use super::{ConfigError, Origin};

impl KumaCpConfig {
    /// Checks the rules that involve more than one value's syntax: a remote
    /// control plane needs a zone name, the local store a directory, the DNS domain and the advertised
    /// host name are not empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mode == Mode::Remote && self.multizone.remote.zone.trim().is_empty() {
            return Err(invalid_effective(
                "multizone.remote.zone",
                "must be set when mode is remote",
            ));
        }
        if self.store.store_type == StoreType::Local && self.store.local.path.trim().is_empty() {
            return Err(invalid_effective(
                "store.local.path",
                "must not be empty when store.type is local",
            ));
        }
        if self.store.store_type == StoreType::Postgres
            && self.store.postgres.connection_timeout.is_zero()
        {
            return Err(invalid_effective(
                "store.postgres.connectionTimeout",
                "must be above zero",
            ));
        }
        if self.dns_server.domain.trim().trim_matches('.').is_empty() {
            return Err(invalid_effective("dnsServer.domain", "must not be empty"));
        }
        let positive = [
            (
                "limits.http.maxConnections",
                self.limits.http.max_connections == 0,
            ),
            (
                "limits.http.maxBodyBytes",
                self.limits.http.max_body_bytes == 0,
            ),
            (
                "limits.http.headerReadTimeout",
                self.limits.http.header_read_timeout.is_zero(),
            ),
            (
                "limits.http.requestTimeout",
                self.limits.http.request_timeout.is_zero(),
            ),
            (
                "limits.grpc.maxConcurrentStreams",
                self.limits.grpc.max_concurrent_streams == 0,
            ),
            (
                "limits.grpc.maxMessageBytes",
                self.limits.grpc.max_message_bytes == 0,
            ),
            (
                "limits.grpc.firstRequestTimeout",
                self.limits.grpc.first_request_timeout.is_zero(),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(invalid_effective(key, "must be above zero"));
        }
        if self.general.advertised_hostname.trim().is_empty() {
            return Err(invalid_effective(
                "general.advertisedHostname",
                "must not be empty",
            ));
        }
        Ok(())
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
