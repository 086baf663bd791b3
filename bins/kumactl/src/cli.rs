//! Command-line flags and subcommands (clap derive).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Management tool for a Kuma-compatible service mesh control plane.
#[derive(Debug, Parser)]
#[command(name = "kumactl", version)]
pub struct Cli {
    /// Path to the kumactl config file [default: ~/.kumactl/config].
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Talk to the API server at this URL instead of the active Control Plane.
    #[arg(long, global = true, value_name = "URL")]
    pub api_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// kumactl's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update resources from YAML.
    Apply(ApplyArgs),
    /// Show resources.
    Get(GetArgs),
    /// Delete a resource.
    Delete(DeleteArgs),
    /// Show resources together with their runtime status.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Generate credentials (dataplane tokens) on the admin server.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Manage the kumactl configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the client version, and the server's when it answers.
    Version,
}

/// How `get` and `inspect` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// An aligned table.
    Table,
    /// YAML, as the API returns it.
    Yaml,
    /// JSON, as the API returns it.
    Json,
}

/// `kumactl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// YAML file with one or more resources separated by `---`; `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// A value for a `{{ key }}` placeholder in the file (repeatable).
    #[arg(short = 'v', long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Print the resources that would be applied, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kumactl get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Resource type: plural to list (`dataplanes`), singular with a NAME
    /// for one (`dataplane backend-1`).
    #[arg(value_name = "TYPE")]
    pub resource_type: String,
    /// Name of one resource.
    pub name: Option<String>,
    /// Mesh of mesh-scoped types.
    #[arg(short, long, default_value = "default")]
    pub mesh: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `kumactl delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Resource type, e.g. `traffic-permission`.
    #[arg(value_name = "TYPE")]
    pub resource_type: String,
    /// Name of the resource.
    pub name: String,
    /// Mesh of mesh-scoped types.
    #[arg(short, long, default_value = "default")]
    pub mesh: String,
    /// Delete a Mesh even though Dataplanes are still in it (they and
    /// everything else of the mesh are deleted with it).
    #[arg(long)]
    pub force: bool,
}

/// `kumactl inspect`.
#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Dataplanes with their xDS connection status.
    Dataplanes(InspectArgs),
    /// Meshes with how many resources of each type they hold.
    Meshes(InspectArgs),
}

/// Flags of the `inspect` subcommands.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only this mesh [default: every mesh].
    #[arg(short, long)]
    pub mesh: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `kumactl generate`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Generate a dataplane token for `kuma-dp --dataplane-token-file`.
    #[command(name = "dataplane-token")]
    DataplaneToken(DataplaneTokenArgs),
}

/// `kumactl generate dataplane-token`.
#[derive(Debug, Args)]
pub struct DataplaneTokenArgs {
    /// Name of the Dataplane the token is for; without it the token serves
    /// any Dataplane whose tags fit (`--tag`).
    #[arg(long, visible_alias = "dataplane")]
    pub name: Option<String>,
    /// A tag every inbound of the Dataplane must carry, `KEY=VALUE`
    /// (e.g. `kuma.io/service=backend`); repeat it to allow more values of
    /// a tag or to require more tags.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// The kind of proxy: `dataplane` or `ingress` (a zone ingress)
    /// [default: dataplane].
    #[arg(long = "type", value_name = "TYPE")]
    pub token_type: Option<String>,
    /// Mesh of the Dataplane.
    #[arg(short, long, default_value = "default")]
    pub mesh: String,
    /// How long the token is valid, e.g. `24h` [default: 8760h].
    #[arg(long, value_name = "DURATION")]
    pub valid_for: Option<String>,
}

/// `kumactl config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Manage known Control Planes.
    #[command(subcommand, name = "control-planes")]
    ControlPlanes(ControlPlanesCommand),
}

/// `kumactl config control-planes`.
#[derive(Debug, Subcommand)]
pub enum ControlPlanesCommand {
    /// Add a Control Plane and make it the active one.
    Add {
        /// Name for the Control Plane.
        #[arg(long)]
        name: String,
        /// URL of its API server, e.g. `http://localhost:5681`.
        #[arg(long)]
        address: String,
        /// Replace a Control Plane of the same name.
        #[arg(long)]
        overwrite: bool,
        /// How to authenticate to the API server: `tokens` (a user token,
        /// sent as `Authorization: Bearer`).
        #[arg(long = "auth-type")]
        auth_type: Option<String>,
        /// Settings of the auth type, `key=value` (repeatable):
        /// `token=<user token>` for `tokens`.
        #[arg(long = "auth-conf")]
        auth_conf: Vec<String>,
    },
    /// List the known Control Planes.
    List,
    /// Make another Control Plane the active one.
    Switch {
        /// Name of the Control Plane.
        #[arg(long)]
        name: String,
    },
    /// Forget a Control Plane.
    Remove {
        /// Name of the Control Plane.
        #[arg(long)]
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn apply_takes_repeated_vars() {
        let cli = Cli::try_parse_from([
            "kumactl",
            "apply",
            "-f",
            "-",
            "-v",
            "a=1",
            "--var",
            "b=2",
            "--dry-run",
        ])
        .unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("not apply");
        };
        assert_eq!(args.vars, vec!["a=1", "b=2"]);
        assert!(args.dry_run);
    }

    #[test]
    fn generate_dataplane_token_flags() {
        let cli = Cli::try_parse_from([
            "kumactl",
            "generate",
            "dataplane-token",
            "--name",
            "web-1",
            "--valid-for",
            "24h",
        ])
        .unwrap();
        let Command::Generate(GenerateCommand::DataplaneToken(args)) = cli.command else {
            panic!("not generate dataplane-token");
        };
        assert_eq!(args.name.as_deref(), Some("web-1"));
        assert_eq!(args.mesh, "default");
        assert_eq!(args.valid_for.as_deref(), Some("24h"));
        assert!(args.tags.is_empty());

        // Kuma's spelling, tags, type; no name at all.
        let cli = Cli::try_parse_from([
            "kumactl",
            "generate",
            "dataplane-token",
            "--dataplane",
            "web-2",
            "--tag",
            "kuma.io/service=backend",
            "--tag",
            "version=v1",
            "--type",
            "ingress",
        ])
        .unwrap();
        let Command::Generate(GenerateCommand::DataplaneToken(args)) = cli.command else {
            panic!("not generate dataplane-token");
        };
        assert_eq!(args.name.as_deref(), Some("web-2"));
        assert_eq!(args.tags, ["kuma.io/service=backend", "version=v1"]);
        assert_eq!(args.token_type.as_deref(), Some("ingress"));
        let cli = Cli::try_parse_from(["kumactl", "generate", "dataplane-token"]).unwrap();
        let Command::Generate(GenerateCommand::DataplaneToken(args)) = cli.command else {
            panic!("not generate dataplane-token");
        };
        assert_eq!(args.name, None);
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kumactl",
            "get",
            "meshes",
            "-o",
            "yaml",
            "--config-file",
            "/tmp/c",
        ])
        .unwrap();
        assert_eq!(cli.config_file, Some(PathBuf::from("/tmp/c")));
        let Command::Get(args) = cli.command else {
            panic!("not get");
        };
        assert_eq!(args.output, Output::Yaml);
        assert_eq!(args.mesh, "default");
    }
}
