//! The one harness of every end-to-end test of this workspace (`kuma-cp`'s
//! and `kuma-dp`'s): it exists so that both packages start control planes,
//! proxies and apps the same way, and so that a test finds, or builds, the
//! binaries it runs instead of depending on another package having been
//! built first. It is a dev-dependency only and is never published.
//!
//! - [`bins`]: the `kuma-cp`, `kuma-dp`, `kumactl` and Envoy binaries; a
//!   binary of another package is built (once per test process) with the
//!   cargo and profile that built the test.
//! - [`process`]: child processes in their own process group, stopped by
//!   pid when their guard drops, also while a test panics; free ports and
//!   bounded polling.
//! - [`cp`]: [`ControlPlane`], a `kuma-cp run` on free ports with its own
//!   work directory, and `kumactl` against it.
//! - [`dp`]: [`Dataplane`], a `kuma-dp run` with a real Envoy, and the
//!   Dataplane YAML of the tests.
//! - [`app`]: tiny HTTP apps that name the instance that answered.
//! - [`http`]: HTTP helpers.
//! - [`postgres`]: [`Postgres`], a throwaway PostgreSQL server.

pub mod app;
pub mod bins;
pub mod cp;
pub mod dp;
pub mod http;
pub mod postgres;
pub mod process;

pub use app::{App, AppBehavior};
pub use bins::{envoy_or_skip, kuma_cp_bin, kuma_dp_bin, kumactl_bin};
pub use cp::{
    ControlPlane, CpPorts, OWN_TLS, PORT_VARS, STARTUP_LIMIT, StoreDir, address_of,
    kuma_cp_command, kumactl, start_e2e,
};
pub use dp::{DRAIN_TIME, Dataplane, DpToken, backend_yaml, caller_yaml, frontend_yaml};
pub use http::{
    Tally, cause_fields, http_delete, http_get, http_post, http_put, json, request, send,
    tls_connect, try_http_delete, try_http_get, try_http_post_json, try_http_put_json,
    try_https_post_json,
};
pub use postgres::Postgres;
pub use process::{
    EXIT_LIMIT, POLL, Proc, free_port, run_to_exit, wait_exit, wait_for, write_file,
};
