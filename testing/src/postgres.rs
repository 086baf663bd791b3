//! A throwaway PostgreSQL server for tests and benches.
//!
//! [`Postgres::start_or_skip`] runs the server of the Debian package
//! (`/usr/lib/postgresql/<version>/bin`): `initdb` into its own temp dir
//! with password (SCRAM) authentication for one user, the server listening
//! on 127.0.0.1 on a [`free_port`], and one database created. Tests run as
//! root and PostgreSQL refuses to run as root, so the server then runs as the
//! `postgres` system user, which owns the temp dir. Dropping the guard stops
//! the server by pid (SIGINT, then SIGKILL of its process group) and removes
//! the dir, also while a test panics.
//!
//! Under `CI=true` a missing PostgreSQL is a failure; elsewhere the test is
//! skipped with a printed reason. `scripts/test` installs the `postgresql`
//! package.

use crate::process::{POLL, free_port};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start or a stop of the server may take.
pub const PG_LIMIT: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "install PostgreSQL with `apt-get install postgresql` \
     (scripts/test does this)";

/// The user the tests connect as.
const USER: &str = "kuma";
/// Its password (a throwaway server on loopback).
const PASSWORD: &str = "kuma-test-secret";
/// The database created at start.
const DB: &str = "kuma";

/// A running throwaway PostgreSQL server; stopped and deleted on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Owner of the data dir when the tests run as root.
    owner: Option<(u32, u32)>,
    /// The server also accepts TLS (`server.crt`, `server.key` in `dir`).
    tls: bool,
    child: Option<Child>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish()
    }
}

/// The directory of the newest installed PostgreSQL's binaries, if any.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid of a system user, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn chown_all(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

impl Postgres {
    /// A fresh server with the database [`Postgres::db`]; `None` (after
    /// printing why) when PostgreSQL is not installed and `CI` is not
    /// `true`. Panics when it cannot start, or under `CI=true` when it is
    /// missing.
    pub fn start_or_skip(test: &str) -> Option<Postgres> {
        Some(Self::start_in(Self::bin_or_skip(test)?, None))
    }

    /// As [`Postgres::start_or_skip`], the server also accepting TLS with
    /// this PEM certificate (chain) and key; plain connections still work.
    pub fn start_tls_or_skip(test: &str, cert_pem: &str, key_pem: &str) -> Option<Postgres> {
        Some(Self::start_in(
            Self::bin_or_skip(test)?,
            Some((cert_pem, key_pem)),
        ))
    }

    fn bin_or_skip(test: &str) -> Option<PathBuf> {
        let bin = postgres_bin_dir();
        if bin.is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{test}: PostgreSQL not found under /usr/lib/postgresql/*/bin \
                     (CI=true, so this is a failure); {INSTALL_HINT}"
                );
            }
            eprintln!("{test}: skipping: PostgreSQL not found; {INSTALL_HINT}");
        }
        bin
    }

    /// A fresh server; panics when PostgreSQL is not installed.
    pub fn start() -> Postgres {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL not found under /usr/lib/postgresql/*/bin; {INSTALL_HINT}")
        });
        Self::start_in(bin, None)
    }

    fn start_in(bin: PathBuf, tls: Option<(&str, &str)>) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("kuma-pg-")
            .tempdir()
            .expect("creating a temp dir");
        // Who we are: the owner of what we just created.
        let root = std::os::unix::fs::MetadataExt::uid(
            &dir.path().metadata().expect("reading the temp dir"),
        ) == 0;
        let owner = if root {
            let owner = system_user("postgres").unwrap_or_else(|| {
                panic!(
                    "running as root, PostgreSQL needs the `postgres` system user; {INSTALL_HINT}"
                )
            });
            chown_all(dir.path(), owner);
            Some(owner)
        } else {
            None
        };
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("writing the password file");
        if let Some(o) = owner {
            chown_all(&pwfile, o);
        }
        let mut pg = Postgres {
            bin,
            port: free_port(),
            dir,
            owner,
            tls: tls.is_some(),
            child: None,
        };
        let mut initdb = pg.server_command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = initdb.output().expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = pg.dir.path().join(name);
                std::fs::write(&path, pem).expect("writing the server's TLS files");
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .expect("chmod");
                if let Some(o) = owner {
                    chown_all(&path, o);
                }
            }
        }
        pg.start_again();
        pg.create_database(DB);
        pg
    }

    /// A command running a server binary, as the data dir's owner.
    fn server_command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.owner {
            // std drops the supplementary groups when root changes uid.
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path()).env_remove("PGDATA");
        cmd
    }

    /// A client binary (`psql`, `createdb`, `pg_isready`) with this
    /// server's address and credentials in its environment.
    pub fn client_command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", USER)
            .env("PGPASSWORD", PASSWORD)
            .env("PGDATABASE", DB)
            .env("PGCONNECT_TIMEOUT", "5");
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the server (again) on the same data dir and port, and waits
    /// until it accepts connections: for outage tests after [`Postgres::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log");
        if let Some(o) = self.owner {
            chown_all(&self.log_path(), o);
        }
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=300"]);
        if self.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", file("server.crt")))
                .arg("-c")
                .arg(format!("ssl_key_file={}", file("server.key")));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("starting postgres");
        self.child = Some(child);
        let deadline = Instant::now() + PG_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("postgres exited at start ({status}):\n{}", self.log());
            }
            let ready = self
                .client_command("pg_isready")
                .args(["-d", "postgres", "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {PG_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(POLL * 5);
        }
    }

    /// Stops the server (fast shutdown: open connections are cut) and waits
    /// until it is gone; the data dir and port stay for
    /// [`Postgres::start_again`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + PG_LIMIT;
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        // Whatever is left of the server's processes goes too.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let _ = child.wait();
    }

    /// The pid of the server (postmaster), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Creates another database owned by [`Postgres::user`].
    pub fn create_database(&self, name: &str) {
        let out = self
            .client_command("createdb")
            .arg("--maintenance-db=postgres")
            .arg(name)
            .output()
            .expect("running createdb");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `sql` with `psql` in database `db` and returns its unaligned,
    /// tuples-only output; panics when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client_command("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user with a password.
    pub fn user(&self) -> &str {
        USER
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        PASSWORD
    }

    /// The database created at start.
    pub fn db(&self) -> &str {
        DB
    }

    /// The `KUMA_STORE_*` variables that put `kuma-cp` on this server's
    /// database `db` (a 5 s connection timeout, so a test that stops the
    /// server sees kuma-cp notice within its own time limits).
    pub fn kuma_cp_env(&self, db: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KUMA_STORE_TYPE", "postgres".into()),
            ("KUMA_STORE_POSTGRES_HOST", self.host().into()),
            ("KUMA_STORE_POSTGRES_PORT", self.port().to_string()),
            ("KUMA_STORE_POSTGRES_USER", self.user().into()),
            ("KUMA_STORE_POSTGRES_PASSWORD", self.password().into()),
            ("KUMA_STORE_POSTGRES_DB_NAME", db.into()),
            ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "5".into()),
        ]
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("----- last lines of the postgres log -----");
            for l in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{l}");
            }
        }
        self.stop();
        // The temp dir removes itself.
    }
}
