//! The user's kumactl configuration file (`~/.kumactl/config` by default):
//! known control planes, contexts naming them, and the current context.
//!
//! ```yaml
//! controlPlanes:
//! - name: local
//!   coordinates:
//!     apiServer:
//!       url: http://localhost:5681
//! contexts:
//! - name: local
//!   controlPlane: local
//! currentContext: local
//! ```
//!
//! Without a file, the configuration holds just the `local` control plane at
//! `http://localhost:5681`.

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the control plane present when there is no config file.
pub const DEFAULT_NAME: &str = "local";
/// Address of that control plane.
pub const DEFAULT_URL: &str = "http://localhost:5681";

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KumactlConfig {
    /// Known control planes.
    #[serde(default)]
    pub control_planes: Vec<ControlPlane>,
    /// Contexts: a name for a control plane to talk to.
    #[serde(default)]
    pub contexts: Vec<Context>,
    /// Name of the context in use.
    #[serde(default)]
    pub current_context: String,
}

/// A control plane kumactl knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlane {
    /// Its name.
    pub name: String,
    /// How to reach it.
    pub coordinates: Coordinates,
}

/// How to reach a control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coordinates {
    /// Its HTTP API server.
    pub api_server: ApiServer,
}

/// A control plane's HTTP API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    /// Base URL, e.g. `http://localhost:5681`.
    pub url: String,
    /// How kumactl authenticates (Kuma's `authType`): `tokens`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    /// The settings of `auth_type` (Kuma's `authConf`; `token` for
    /// `tokens`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auth_conf: BTreeMap<String, String>,
}

/// The only `authType` kumactl knows: a user token sent as
/// `Authorization: Bearer <token>`.
pub const AUTH_TYPE_TOKENS: &str = "tokens";

impl ApiServer {
    /// The user token to send, when `authType` is `tokens`.
    pub fn token(&self) -> Option<&str> {
        match self.auth_type.as_deref() {
            Some(AUTH_TYPE_TOKENS) => self.auth_conf.get("token").map(String::as_str),
            _ => None,
        }
    }
}

/// Checks `--auth-type` and `--auth-conf key=value` and makes them the
/// API server's settings.
pub fn parse_auth(
    auth_type: Option<&str>,
    auth_conf: &[String],
) -> Result<(Option<String>, BTreeMap<String, String>)> {
    let mut conf = BTreeMap::new();
    for item in auth_conf {
        let Some((k, v)) = item.split_once('=') else {
            bail!("--auth-conf {item:?} must be key=value (e.g. token=...)");
        };
        conf.insert(k.trim().to_string(), v.trim().to_string());
    }
    match auth_type {
        None if conf.is_empty() => Ok((None, conf)),
        None => bail!("--auth-conf needs --auth-type (tokens)"),
        Some(AUTH_TYPE_TOKENS) => {
            if conf.get("token").is_none_or(|t| t.is_empty()) {
                bail!(
                    "--auth-type tokens needs --auth-conf token=<user token> (read the admin token from the control plane's /global-secrets/admin-user-token on its host)"
                );
            }
            if let Some(other) = conf.keys().find(|k| k.as_str() != "token") {
                bail!("--auth-conf {other:?} is not a setting of --auth-type tokens (only token)");
            }
            Ok((Some(AUTH_TYPE_TOKENS.to_string()), conf))
        }
        Some(other) => bail!("--auth-type {other:?} is not supported: use tokens"),
    }
}

/// A context: which control plane to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// Its name.
    pub name: String,
    /// Name of the control plane.
    pub control_plane: String,
}

impl Default for KumactlConfig {
    fn default() -> Self {
        Self {
            control_planes: vec![control_plane(DEFAULT_NAME, DEFAULT_URL)],
            contexts: vec![context(DEFAULT_NAME)],
            current_context: DEFAULT_NAME.to_string(),
        }
    }
}

fn control_plane(name: &str, url: &str) -> ControlPlane {
    ControlPlane {
        name: name.to_string(),
        coordinates: Coordinates {
            api_server: ApiServer {
                url: url.to_string(),
                auth_type: None,
                auth_conf: BTreeMap::new(),
            },
        },
    }
}

fn context(name: &str) -> Context {
    Context {
        name: name.to_string(),
        control_plane: name.to_string(),
    }
}

/// `~/.kumactl/config`.
pub fn default_path() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set; pass --config-file"))?;
    Ok(PathBuf::from(home).join(".kumactl").join("config"))
}

impl KumactlConfig {
    /// Reads the file at `path`; a missing file is the default config.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Self::default()),
            Ok(text) => serde_yaml_ng::from_str(&text)
                .with_context(|| format!("could not parse the config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => {
                Err(e).with_context(|| format!("could not read the config file {}", path.display()))
            }
        }
    }

    /// Writes the config to `path`, creating its directory. The file may
    /// hold user tokens: on Unix it is written with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        let text = serde_yaml_ng::to_string(self).context("could not encode the config")?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut file = options.open(path)?;
            #[cfg(unix)]
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            file.write_all(text.as_bytes())
        };
        write().with_context(|| format!("could not write the config file {}", path.display()))
    }

    /// The control plane of the current context.
    pub fn current_control_plane(&self) -> Result<&ControlPlane> {
        if self.current_context.is_empty() {
            bail!(
                "no active Control Plane; add one with `kumactl config control-planes add` \
                 or pick one with `kumactl config control-planes switch`"
            );
        }
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| anyhow!("current context {:?} is not defined", self.current_context))?;
        self.control_planes
            .iter()
            .find(|cp| cp.name == ctx.control_plane)
            .ok_or_else(|| {
                anyhow!(
                    "context {:?} names Control Plane {:?}, which is not defined",
                    ctx.name,
                    ctx.control_plane
                )
            })
    }

    /// Adds (or with `overwrite` replaces) a control plane and its context,
    /// and makes it the current one.
    #[cfg(test)]
    pub fn add_control_plane(&mut self, name: &str, url: &str, overwrite: bool) -> Result<()> {
        self.add_control_plane_with_auth(name, url, (None, BTreeMap::new()), overwrite)
    }

    /// Adds (or with `overwrite` replaces) a control plane with the API
    /// server's `authType` and `authConf` (see [`parse_auth`]) and its
    /// context, and makes it the current one.
    pub fn add_control_plane_with_auth(
        &mut self,
        name: &str,
        url: &str,
        (auth_type, auth_conf): (Option<String>, BTreeMap<String, String>),
        overwrite: bool,
    ) -> Result<()> {
        let mut cp = control_plane(name, url);
        cp.coordinates.api_server.auth_type = auth_type;
        cp.coordinates.api_server.auth_conf = auth_conf;
        if name.is_empty() {
            bail!("the Control Plane name must not be empty");
        }
        match self.control_planes.iter_mut().find(|cp| cp.name == name) {
            Some(_) if !overwrite => bail!(
                "Control Plane with name {name:?} already exists. \
                 Use --overwrite to replace an existing one."
            ),
            Some(existing) => *existing = cp,
            None => self.control_planes.push(cp),
        }
        match self.contexts.iter_mut().find(|c| c.name == name) {
            Some(ctx) => *ctx = context(name),
            None => self.contexts.push(context(name)),
        }
        self.current_context = name.to_string();
        Ok(())
    }

    /// Makes the context of control plane `name` the current one.
    pub fn switch(&mut self, name: &str) -> Result<()> {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == name || c.control_plane == name)
            .ok_or_else(|| anyhow!("there is no Control Plane with name {name:?}"))?;
        self.current_context = ctx.name.clone();
        Ok(())
    }

    /// Removes control plane `name` and the contexts naming it. If it was
    /// current, no context is current afterwards; returns whether it was.
    pub fn remove(&mut self, name: &str) -> Result<bool> {
        let before = self.control_planes.len();
        self.control_planes.retain(|cp| cp.name != name);
        if self.control_planes.len() == before {
            bail!("there is no Control Plane with name {name:?}");
        }
        let current = self.current_context.clone();
        self.contexts.retain(|c| c.control_plane != name);
        let was_current = !self.contexts.iter().any(|c| c.name == current);
        if was_current {
            self.current_context.clear();
        }
        Ok(was_current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_the_local_control_plane() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = KumactlConfig::load(&dir.path().join("nope")).unwrap();
        assert_eq!(
            cfg.current_control_plane()
                .unwrap()
                .coordinates
                .api_server
                .url,
            DEFAULT_URL
        );
    }

    #[test]
    fn add_switch_remove_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config");
        let mut cfg = KumactlConfig::load(&path).unwrap();
        cfg.add_control_plane("prod", "http://prod:5681", false)
            .unwrap();
        cfg.save(&path).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("controlPlanes:"), "{text}");
        assert!(text.contains("apiServer:"), "{text}");
        assert!(text.contains("currentContext: prod"), "{text}");

        let mut cfg = KumactlConfig::load(&path).unwrap();
        assert_eq!(cfg.current_control_plane().unwrap().name, "prod");
        let err = cfg
            .add_control_plane("prod", "http://other:5681", false)
            .unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        cfg.add_control_plane("prod", "http://other:5681", true)
            .unwrap();
        assert_eq!(cfg.control_planes.len(), 2);
        assert_eq!(cfg.contexts.len(), 2);
        assert_eq!(
            cfg.current_control_plane()
                .unwrap()
                .coordinates
                .api_server
                .url,
            "http://other:5681"
        );

        cfg.switch("local").unwrap();
        assert_eq!(cfg.current_control_plane().unwrap().name, "local");
        assert!(
            cfg.switch("nope")
                .unwrap_err()
                .to_string()
                .contains("\"nope\"")
        );

        assert!(!cfg.remove("prod").unwrap());
        assert_eq!(cfg.current_control_plane().unwrap().name, "local");
        assert!(cfg.remove("local").unwrap());
        assert!(cfg.current_control_plane().is_err());
        assert!(cfg.remove("local").is_err());
        cfg.save(&path).unwrap();
        assert_eq!(KumactlConfig::load(&path).unwrap(), cfg);
    }

    #[test]
    fn a_token_is_kept_in_the_file_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let mut cfg = KumactlConfig::default();
        let auth = parse_auth(Some("tokens"), &["token=abc.def.ghi".to_string()]).unwrap();
        cfg.add_control_plane_with_auth("prod", "http://prod:5681", auth, false)
            .unwrap();
        cfg.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("authType: tokens"), "{text}");
        assert!(text.contains("token: abc.def.ghi"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = KumactlConfig::load(&path).unwrap();
        let api = &back.current_control_plane().unwrap().coordinates.api_server;
        assert_eq!(api.token(), Some("abc.def.ghi"));

        assert!(parse_auth(Some("tokens"), &[]).is_err());
        assert!(parse_auth(Some("basic"), &["token=x".into()]).is_err());
        assert!(parse_auth(None, &["token=x".into()]).is_err());
        assert!(parse_auth(Some("tokens"), &["token".into()]).is_err());
        assert_eq!(parse_auth(None, &[]).unwrap(), (None, BTreeMap::new()));
    }

    #[test]
    fn a_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "controlPlanes: 5\n").unwrap();
        let err = KumactlConfig::load(&path).unwrap_err();
        assert!(format!("{err:#}").contains("config"), "{err:#}");
    }
}
