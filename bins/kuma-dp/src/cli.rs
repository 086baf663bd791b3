//! Command-line interface: `kuma-dp run ...`, `kuma-dp version`.
//!
//! Flags mirror Kuma's `kuma-dp`, including the `KUMA_*` environment
//! variables that users' scripts set instead of flags.

use crate::admin_port::AdminPortRange;
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "kuma-dp",
    version,
    about = "Kuma data-plane launcher: fetches an Envoy bootstrap from kuma-cp and runs Envoy"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch the Envoy bootstrap from the control plane and run Envoy.
    Run(Box<RunArgs>),
    /// Print the version.
    Version,
}

/// Verbosity of kuma-dp's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// No logs.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation (default).
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_directive(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A dataplane token given on the command line. `Debug` does not show it:
/// it is a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.to_string()))
    }
}

/// Log levels Envoy accepts for `--log-level`.
pub const ENVOY_LOG_LEVELS: [&str; 8] = [
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];

/// Flags of `kuma-dp run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// URL of the control plane's bootstrap server (`bootstrapServer.port`),
    /// always https: the dataplane token is sent to it and nowhere else.
    #[arg(
        long = "cp-address",
        env = "KUMA_CONTROL_PLANE_URL",
        default_value = "https://localhost:5682",
        value_name = "URL"
    )]
    pub cp_address: String,

    /// PEM file with the CA certificate the control plane's TLS certificate
    /// must be issued by (its admin server's `GET /control-plane/ca-cert`,
    /// or the CA of `general.tlsCertFile`). Without it the connection is
    /// encrypted but not verified.
    #[arg(
        long = "ca-cert-file",
        env = "KUMA_CONTROL_PLANE_CA_CERT_FILE",
        value_name = "FILE"
    )]
    pub ca_cert_file: Option<PathBuf>,

    /// Name of the Dataplane (defaults to the name in --dataplane/--dataplane-file).
    #[arg(long, env = "KUMA_DATAPLANE_NAME")]
    pub name: Option<String>,

    /// Mesh of the Dataplane (defaults to the resource's mesh, then "default").
    #[arg(long, env = "KUMA_DATAPLANE_MESH")]
    pub mesh: Option<String>,

    /// File with the Dataplane resource in universal YAML (created on connect).
    #[arg(
        long = "dataplane-file",
        value_name = "FILE",
        conflicts_with = "dataplane"
    )]
    pub dataplane_file: Option<PathBuf>,

    /// The Dataplane resource in universal YAML, inline.
    #[arg(long = "dataplane", value_name = "YAML")]
    pub dataplane: Option<String>,

    /// Value for a `{{ key }}` placeholder in the Dataplane template (repeatable).
    #[arg(
        long = "dataplane-var",
        value_name = "KEY=VALUE",
        value_parser = crate::dataplane::parse_var
    )]
    pub dataplane_var: Vec<(String, String)>,

    /// File with the dataplane token (from `kumactl generate
    /// dataplane-token`), sent to the control plane's bootstrap server.
    #[arg(
        long = "dataplane-token-file",
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
        value_name = "FILE",
        conflicts_with = "dataplane_token"
    )]
    pub dataplane_token_file: Option<PathBuf>,

    /// The dataplane token itself (prefer --dataplane-token-file: a flag's
    /// value shows in the process list).
    #[arg(
        long = "dataplane-token",
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub dataplane_token: Option<Token>,

    /// Envoy admin port, or a range FROM-TO to take the first free port from
    /// [default: first free port >= 30001].
    #[arg(
        long = "admin-port",
        env = "KUMA_DATAPLANE_ADMIN_PORT",
        value_name = "PORT|FROM-TO"
    )]
    pub admin_port: Option<AdminPortRange>,

    /// Path of the Envoy binary (looked up in PATH when it has no `/`).
    #[arg(
        long = "binary-path",
        env = "KUMA_DATAPLANE_RUNTIME_BINARY_PATH",
        default_value = "envoy",
        value_name = "PATH"
    )]
    pub binary_path: PathBuf,

    /// Directory for the generated Envoy bootstrap [default: a temporary
    /// directory removed on exit].
    #[arg(
        long = "config-dir",
        env = "KUMA_DATAPLANE_RUNTIME_CONFIG_DIR",
        value_name = "DIR"
    )]
    pub config_dir: Option<PathBuf>,

    /// Number of Envoy worker threads (Envoy's --concurrency).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,

    /// How long Envoy keeps draining connections of a listener that changed
    /// before it closes them, and, on SIGTERM or SIGINT, the longest kuma-dp
    /// lets Envoy drain its listeners before stopping it (less when no
    /// connection is left open), e.g. `30s`, `1m`.
    #[arg(
        long = "drain-time",
        env = "KUMA_DATAPLANE_DRAIN_TIME",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub drain_time: kuma_core::duration::KumaDuration,

    /// Ask the control plane for incremental (delta) xDS.
    #[arg(long = "xds-delta")]
    pub xds_delta: bool,

    /// Level of kuma-dp's own logs.
    #[arg(long = "log-level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Envoy's log level.
    #[arg(
        long = "envoy-log-level",
        default_value = "info",
        value_parser = PossibleValuesParser::new(ENVOY_LOG_LEVELS)
    )]
    pub envoy_log_level: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "kuma-dp",
            "run",
            "--cp-address",
            "https://127.0.0.1:5682",
            "--ca-cert-file",
            "/etc/kuma/cp-ca.pem",
            "--name",
            "web-1",
            "--admin-port",
            "9901",
            "--dataplane-var",
            "a=b=c",
            "--concurrency",
            "2",
            "--xds-delta",
            "--envoy-log-level",
            "debug",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.cp_address, "https://127.0.0.1:5682");
        assert_eq!(
            args.ca_cert_file.as_deref(),
            Some(std::path::Path::new("/etc/kuma/cp-ca.pem"))
        );
        assert_eq!(args.name.as_deref(), Some("web-1"));
        assert_eq!(
            args.admin_port,
            Some(AdminPortRange {
                from: 9901,
                to: 9901
            })
        );
        assert_eq!(
            args.dataplane_var,
            vec![("a".to_string(), "b=c".to_string())]
        );
        assert_eq!(args.concurrency, Some(2));
        assert!(args.xds_delta);
        assert_eq!(args.envoy_log_level, "debug");
        assert_eq!(args.binary_path, PathBuf::from("envoy"));
    }

    #[test]
    fn dataplane_and_file_conflict() {
        let err = Cli::try_parse_from([
            "kuma-dp",
            "run",
            "--dataplane",
            "x",
            "--dataplane-file",
            "f",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn token_flags_conflict_and_hide_the_token() {
        let cli =
            Cli::try_parse_from(["kuma-dp", "run", "--dataplane-token", "abc.def.ghi"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.dataplane_token, Some(Token("abc.def.ghi".into())));
        assert!(!format!("{args:?}").contains("abc.def.ghi"));
        let err = Cli::try_parse_from([
            "kuma-dp",
            "run",
            "--dataplane-token",
            "t",
            "--dataplane-token-file",
            "f",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_envoy_log_level_is_rejected() {
        assert!(Cli::try_parse_from(["kuma-dp", "run", "--envoy-log-level", "loud"]).is_err());
    }
}
