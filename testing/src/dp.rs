//! [`Dataplane`]: a `kuma-dp run` with a real Envoy in front of an app, and
//! the Dataplane YAML of the tests. kuma-dp reaches the control plane's
//! bootstrap server over TLS, verifying it with the control plane's
//! [`ControlPlane::ca_file`].

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bins::kuma_dp_bin;
use crate::cp::ControlPlane;
use crate::http::try_http_get;
use crate::process::{Proc, clean_kuma_env, free_port, wait_for};

/// kuma-dp's `--drain-time` unless a test gives its own.
pub const DRAIN_TIME: &str = "2s";

/// A running `kuma-dp run` (and its Envoy).
pub struct Dataplane {
    /// The name used for its files and log.
    pub name: String,
    /// Envoy's admin port.
    pub admin_port: u16,
    /// kuma-dp (the leader of the group that holds Envoy).
    pub proc: Proc,
}

/// Dataplane YAML of a backend instance (service `backend`, http) in front
/// of the app on `app_port`, with an optional `version` tag.
pub fn backend_yaml(name: &str, inbound_port: u16, app_port: u16, version: Option<&str>) -> String {
    let version = version.map_or(String::new(), |v| format!("\n      version: {v}"));
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound_port}
    servicePort: {app_port}
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http{version}
"
    )
}

/// Dataplane YAML of a frontend calling `backend` on `127.0.0.1:<outbound_port>`.
pub fn frontend_yaml(name: &str, inbound_port: u16, app_port: u16, outbound_port: u16) -> String {
    caller_yaml(name, "frontend", inbound_port, app_port, outbound_port)
}

/// Dataplane YAML of an instance of `service` (http) calling `backend` on
/// `127.0.0.1:<outbound_port>`.
pub fn caller_yaml(
    name: &str,
    service: &str,
    inbound_port: u16,
    app_port: u16,
    outbound_port: u16,
) -> String {
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound_port}
    servicePort: {app_port}
    tags:
      kuma.io/service: {service}
      kuma.io/protocol: http
  outbound:
  - port: {outbound_port}
    tags:
      kuma.io/service: backend
"
    )
}

/// Which dataplane token a proxy started by the harness presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpToken {
    /// One issued for its own Dataplane (the `name` and `mesh` of its YAML)
    /// by the control plane's admin server.
    Issue,
    /// None at all.
    Without,
    /// This one (written to a file passed with `--dataplane-token-file`).
    Given(String),
}

/// The value of a top-level `key: value` line of a resource's YAML.
fn top_level(yaml: &str, key: &str) -> Option<String> {
    yaml.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
}

impl Dataplane {
    /// Starts kuma-dp with `yaml` as `--dataplane-file`, files in `dir`.
    pub fn start(cp: &ControlPlane, envoy: &Path, dir: &Path, name: &str, yaml: &str) -> Dataplane {
        Self::start_with(cp, envoy, dir, name, yaml, &[])
    }

    /// As [`Dataplane::start`], with extra `kuma-dp run` arguments.
    pub fn start_with(
        cp: &ControlPlane,
        envoy: &Path,
        dir: &Path,
        name: &str,
        yaml: &str,
        extra: &[&str],
    ) -> Dataplane {
        Self::start_with_token(cp, envoy, dir, name, yaml, extra, DpToken::Issue)
    }

    /// As [`Dataplane::start_with`], presenting `token`.
    pub fn start_with_token(
        cp: &ControlPlane,
        envoy: &Path,
        dir: &Path,
        name: &str,
        yaml: &str,
        extra: &[&str],
        token: DpToken,
    ) -> Dataplane {
        let token = match token {
            DpToken::Issue => {
                let dp_name = top_level(yaml, "name").unwrap_or_else(|| name.to_string());
                let mesh = top_level(yaml, "mesh").unwrap_or_else(|| "default".to_string());
                Some(cp.issue_token(&mesh, &dp_name))
            }
            DpToken::Without => None,
            DpToken::Given(t) => Some(t),
        };
        let token_file = token.map(|t| {
            let path = dir.join(format!("{name}.token"));
            std::fs::write(&path, t).expect("writing the token file");
            path
        });
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).expect("writing the Dataplane file");
        let config_dir = dir.join(format!("{name}-config"));
        std::fs::create_dir_all(&config_dir).expect("creating the config dir");
        let admin_port = free_port();
        let mut cmd = Command::new(kuma_dp_bin());
        clean_kuma_env(&mut cmd);
        cmd.arg("run")
            .arg("--cp-address")
            .arg(cp.bootstrap_url())
            .arg("--dataplane-file")
            .arg(&file)
            .arg("--admin-port")
            .arg(admin_port.to_string())
            .arg("--concurrency")
            .arg("1")
            .arg("--binary-path")
            .arg(envoy)
            .arg("--config-dir")
            .arg(&config_dir);
        if !extra.iter().any(|a| a.starts_with("--ca-cert-file")) {
            cmd.arg("--ca-cert-file").arg(&cp.ca_file);
        }
        // Kuma's 30 s default makes every stop of a proxy that still has
        // connections open take that long; tests choose theirs.
        if !extra.iter().any(|a| a.starts_with("--drain-time")) {
            cmd.arg("--drain-time").arg(DRAIN_TIME);
        }
        cmd.args(extra);
        if let Some(path) = &token_file {
            cmd.arg("--dataplane-token-file").arg(path);
        }
        let proc = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
        Dataplane {
            name: name.to_string(),
            admin_port,
            proc,
        }
    }

    /// `GET` on Envoy's admin interface.
    pub fn admin(&self, path: &str) -> Result<(u16, String), String> {
        try_http_get(&format!("http://127.0.0.1:{}{path}", self.admin_port))
    }

    /// Whether Envoy's `/ready` says LIVE.
    pub fn is_ready(&self) -> bool {
        matches!(self.admin("/ready"), Ok((200, _)))
    }

    /// Waits until Envoy is LIVE (initial clusters and listeners applied).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let name = self.name.clone();
        wait_for(&format!("Envoy of {name} to be ready"), timeout, || {
            if let Some(status) = self.proc.try_wait() {
                panic!("kuma-dp {name} exited ({status}):\n{}", self.proc.log());
            }
            self.is_ready().then_some(())
        });
    }
}
