//! Configuration of `kuma-cp`: the typed model, its defaults, and the loader.
//!
//! The effective configuration is built in three layers, each overriding the
//! one before it (docs/architecture.md, "Configuration"):
//!
//! 1. the defaults ([`KumaCpConfig::default`]),
//! 2. the YAML file given with `--config-file` (camelCase keys nested like
//!    `xdsServer.grpcPort`; an unknown key is an error),
//! 3. the `KUMA_*` environment variables of the keys of
//!    [`ENV_KEYS`](keys::ENV_KEYS); each variable's name is derived from its
//!    key ([`env_name`](env::env_name): `xdsServer.grpcPort` is
//!    `KUMA_XDS_SERVER_GRPC_PORT`). `KUMA_*` variables that set no key are
//!    ignored and listed in
//!    [`KumaCpConfig::ignored_env`] so the binary can warn about them.
//!
//! Every value, whether it comes from the file or from the environment, goes
//! through the same parser, so both sources accept and reject the same
//! values, and every error is one line naming the key (and the environment
//! variable or the file it came from).
//!
//! Any port may be 0, meaning "bind an ephemeral port".
//!
//! The parts: `model` (the typed configuration and its defaults), `keys`
//! (the keys the environment can set and their value syntax), `env` (the
//! environment variable names and applying them), `validate` (rules across
//! keys) and `de` (the serde glue of the file).

use std::fmt;
use std::path::{Path, PathBuf};

mod de;
mod env;
mod keys;
mod model;
mod validate;

#[cfg(test)]
mod tests;

pub use model::*;

/// What the effective configuration shows instead of the Postgres password.
pub const MASKED_SECRET: &str = "*****";

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
    env::apply_env(&mut config, env)?;
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

impl KumaCpConfig {
    /// The effective configuration as YAML, in the same camelCase layout as
    /// the file (the Postgres password shown as [`MASKED_SECRET`]), for
    /// `GET /config` and debugging. Loading it again gives the same
    /// configuration, password aside.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"))
    }
}

/// Folds a message onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The Postgres password as shown: [`MASKED_SECRET`], or empty if empty.
fn mask(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { MASKED_SECRET }
}
