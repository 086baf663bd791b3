//! The subcommands: each module turns parsed flags into API calls and output.

mod apply;
mod completion;
mod config;
mod delete;
mod generate;
mod get;
mod inspect;
mod version;

use crate::cli::{Cli, Command, ConfigCommand, GenerateCommand, InspectCommand, Output};
use crate::client::Client;
use crate::config::{KumactlConfig, default_path};
use anyhow::{Context as _, Result, bail};
use kuma_core::resource::ResourceType;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

/// What every command may need: where the config lives, which API to call.
pub struct Env {
    config_file: Option<PathBuf>,
    api_url: Option<String>,
}

impl Env {
    /// The config file path: `--config-file` or `~/.kumactl/config`.
    pub fn config_path(&self) -> Result<PathBuf> {
        match &self.config_file {
            Some(p) => Ok(p.clone()),
            None => default_path(),
        }
    }

    /// The config as stored (the default one if there is no file).
    pub fn load_config(&self) -> Result<KumactlConfig> {
        KumactlConfig::load(&self.config_path()?)
    }

    /// A client for `--api-url` or the active Control Plane.
    pub fn client(&self) -> Result<Client> {
        if let Some(url) = &self.api_url {
            return Ok(Client::new(url));
        }
        let config = self.load_config()?;
        let cp = config.current_control_plane()?;
        let api = &cp.coordinates.api_server;
        Ok(Client::new(&api.url).with_token(api.token()))
    }

    /// A client for the control plane's admin server (dataplane tokens,
    /// Secrets), found through the API's `/catalog`: `apis.<api>.localUrl`
    /// (`dataplaneToken` or `admin`). It listens on the control plane's
    /// loopback interface only, so kumactl must run on that host.
    pub fn admin_client(&self, api: &str) -> Result<Client> {
        let catalog = self
            .client()?
            .get("/catalog")
            .context("could not read the control plane's catalog to find its admin server")?;
        let url = [api, "admin"]
            .iter()
            .filter_map(|a| catalog.pointer(&format!("/apis/{a}/localUrl"))?.as_str())
            .find(|u| !u.trim().is_empty());
        match url {
            Some(url) => Ok(Client::new(url.trim())),
            None => bail!(
                "the control plane's catalog names no admin server (apis.{api}.localUrl is empty)"
            ),
        }
    }

    /// The client serving resources of type `ty`: the admin server for
    /// Secrets (the API refuses them), the API for everything else.
    pub fn client_for(&self, ty: ResourceType) -> Result<Client> {
        if ty == ResourceType::Secret {
            self.admin_client("admin")
        } else {
            self.client()
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let env = Env {
        config_file: cli.config_file,
        api_url: cli.api_url,
    };
    match cli.command {
        Command::Apply(args) => apply::run(&env, &args),
        Command::Get(args) => get::run(&env, &args),
        Command::Delete(args) => delete::run(&env, &args),
        Command::Inspect(InspectCommand::Dataplanes(args)) => inspect::dataplanes(&env, &args),
        Command::Inspect(InspectCommand::Meshes(args)) => inspect::meshes(&env, &args),
        Command::Generate(GenerateCommand::DataplaneToken(args)) => {
            generate::dataplane_token(&env, &args)
        }
        Command::Config(ConfigCommand::ControlPlanes(cmd)) => config::run(&env, cmd),
        Command::Completion { shell } => completion::run(shell),
        Command::Version => version::run(&env),
    }
}

/// Writes to stdout; a closed pipe (`kumactl get ... | head`) is not an error.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("could not write to stdout")
        }
        _ => Ok(()),
    }
}

/// Prints a JSON value as YAML or pretty JSON.
pub fn emit_value(value: &Value, output: Output) -> Result<()> {
    let text = match output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Output::Yaml | Output::Table => serde_yaml_ng::to_string(value)?,
    };
    emit(&text)
}

/// A list in the API's own shape, every page already read.
pub fn list_value(items: Vec<Value>) -> Value {
    json!({"total": items.len(), "items": items, "next": null})
}
