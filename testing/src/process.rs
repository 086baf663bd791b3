//! Child processes, free ports and bounded polling.
//!
//! Every [`Proc`] runs in its own process group and the whole group (for
//! `kuma-dp`, its Envoy too) is terminated, then killed, by pid when its
//! guard drops, also while a test panics; its log is then printed.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often polling loops look again.
pub const POLL: Duration = Duration::from_millis(20);

/// How long a command that should exit by itself, and one HTTP call of
/// [`crate::http`], may take at most.
pub const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// A free loopback TCP port (bound to 0 and released), never the same
/// twice in this test process, so parallel tests do not collide.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<BTreeSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding an ephemeral port")
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Polls `f` every [`POLL`] until it returns `Some`, panicking after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Waits at most `limit` for `child` to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `cmd`, expecting it to exit by itself within [`EXIT_LIMIT`];
/// returns its status, stdout and stderr.
pub fn run_to_exit(mut cmd: Command) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let Some(_) = wait_exit(&mut child, EXIT_LIMIT) else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("collect output");
        panic!(
            "{cmd:?} did not exit within {EXIT_LIMIT:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let out = child.wait_with_output().expect("collect output");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Removes every `KUMA_*` variable the test process may carry.
pub fn clean_kuma_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KUMA_") {
            cmd.env_remove(k);
        }
    }
}

/// A child process (leader of its own process group) with its log file.
pub struct Proc {
    /// The name used in messages.
    pub name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` in a new process group, stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("creating a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        }
    }

    /// The process id (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits at most `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends SIGTERM to the process itself (not its group) and waits for it
    /// to exit; `None` if it is still running after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        }
        self.wait_exit(timeout)
    }

    /// Sends SIGKILL to the process itself (not its group: a proxy's Envoy
    /// is left running, as when only the parent crashes) and waits for it
    /// to be gone.
    pub fn kill9(&mut self) -> ExitStatus {
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        }
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} survived SIGKILL for 10s", self.name))
    }

    fn print_log_tail(&self, lines: usize) {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        eprintln!(
            "----- last {} lines of {} ({}) -----",
            all.len() - from,
            self.name,
            self.log.display()
        );
        for l in &all[from..] {
            eprintln!("{l}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = Pid::from_raw(-(self.pid() as i32));
        if self.try_wait().is_none() {
            let _ = kill(group, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        // Whatever is left of the group (Envoy under kuma-dp) goes too.
        let _ = kill(group, Signal::SIGKILL);
        if self.exited.is_none() {
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            self.print_log_tail(60);
        }
    }
}
