//! The environment layer: the name of each key's variable, and applying the
//! `KUMA_*` variables over the file's configuration.

use super::keys::{ENV_KEYS, EnvKey};
use super::model::KumaCpConfig;
use super::{ConfigError, Origin, one_line};

/// Prefix of every environment variable the control plane reads.
pub const ENV_PREFIX: &str = "KUMA_";

/// `KUMA_*` variables read by the command line (see `main.rs`), not by the
/// configuration; they are known, so not reported as ignored.
const CLI_ENV: [&str; 1] = ["KUMA_LOG_LEVEL"];

/// The environment variable of a dotted configuration key: [`ENV_PREFIX`],
/// then each part of the key in SCREAMING_SNAKE_CASE, joined by `_`
/// (`xdsServer.grpcPort` is `KUMA_XDS_SERVER_GRPC_PORT`, `dnsServer.CIDR`
/// is `KUMA_DNS_SERVER_CIDR`).
///
/// A word starts at an upper-case letter that follows a lower-case letter or
/// a digit, or that ends a run of capitals before a lower-case letter
/// (`tlsCertFile` is `TLS_CERT_FILE`, `CIDRRange` would be `CIDR_RANGE`).
/// Every key of [`ENV_KEYS`] has the variable Kuma gives it by this rule,
/// so there is no list of exceptions.
pub fn env_name(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for (n, part) in key.split('.').enumerate() {
        if n > 0 {
            name.push('_');
        }
        let chars: Vec<char> = part.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if i > 0 && c.is_ascii_uppercase() {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower)
                {
                    name.push('_');
                }
            }
            name.push(c.to_ascii_uppercase());
        }
    }
    name
}

/// The environment variable that sets `key`, if the environment can set it.
pub fn env_for_key(key: &str) -> Option<String> {
    ENV_KEYS.iter().any(|k| k.key == key).then(|| env_name(key))
}

/// Applies the `KUMA_*` variables of the keys over `config`, in the table's
/// order, and records the unknown `KUMA_*` names.
pub(super) fn apply_env(
    config: &mut KumaCpConfig,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    let names: Vec<String> = ENV_KEYS.iter().map(EnvKey::env).collect();
    for (entry, var) in ENV_KEYS.iter().zip(&names) {
        let value = env.iter().rev().find(|(name, _)| name == var);
        if let Some((_, value)) = value {
            (entry.apply)(config, value).map_err(|reason| ConfigError::Invalid {
                key: entry.key.to_owned(),
                origin: Origin::Env(var.clone()),
                reason: one_line(&reason),
            })?;
        }
    }
    let mut ignored: Vec<String> = env
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with(ENV_PREFIX)
                && !names.contains(name)
                && !CLI_ENV.contains(&name.as_str())
        })
        .cloned()
        .collect();
    ignored.sort();
    ignored.dedup();
    config.ignored_env = ignored;
    Ok(())
}
