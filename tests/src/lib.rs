//! Helpers for cross-process tests of the `hubsim` binary: build it once ([`hubsim_bin`]), start a hub
//! on port 0 in a temporary data directory ([`RunningHub::start`]), run client commands against it
//! ([`RunningHub::hubsim`]) and stop it with SIGTERM ([`RunningHub::terminate`]).
//!
//! The binary is built with `cargo build -p cli` (the same profile as the test) and located through
//! cargo's JSON messages, so a fresh clone needs nothing but `cargo test --workspace`. Nothing here
//! sleeps to wait for something: every wait polls a condition with a deadline.
//! The official-SDK suites are not run from here; `scripts/sdk-conformance` runs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long a hub may take to start or stop.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The `hubsim` executable, built on first use.
///
/// # Panics
/// When cargo cannot build it (the test cannot run without it).
pub fn hubsim_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_hubsim)
}

/// A hub started by `hubsim hub` in a temporary data directory, all listeners on port 0 except plain MQTT (off).
pub struct RunningHub {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    /// The first line the hub printed: its service connection string.
    pub connection_string: String,
}

/// A finished `hubsim` command.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl RunningHub {
    /// Starts a hub and waits until it has printed its connection string and written `endpoints.json`.
    ///
    /// # Panics
    /// When the hub does not start within [`STARTUP_DEADLINE`].
    pub fn start() -> RunningHub {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let stdout_path = data_dir.path().join("hub.stdout");
        let stderr_path = data_dir.path().join("hub.stderr");
        let hub_dir = data_dir.path().join("hub");
        let child = Command::new(hubsim_bin())
            .args([
                "hub",
                "--host-name",
                "localhost",
                "--mqtts",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
            ])
            .args([
                "--mqtt",
                "off",
                "--http",
                "127.0.0.1:0",
                "--events",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&hub_dir)
            .stdout(std::fs::File::create(&stdout_path).expect("create hub.stdout"))
            .stderr(std::fs::File::create(&stderr_path).expect("create hub.stderr"))
            .spawn()
            .expect("spawn hubsim hub");
        let mut hub = RunningHub { child: Some(child), data_dir, connection_string: String::new() };
        let started = poll(STARTUP_DEADLINE, || {
            let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            let line = printed.lines().next().map(str::to_owned)?;
            hub_dir.join("endpoints.json").exists().then_some(line)
        });
        match started {
            Some(line) => hub.connection_string = line,
            None => panic!(
                "the hub did not start: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ),
        }
        hub
    }

    /// The hub's data directory (what client commands get as `--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().join("hub")
    }

    /// Runs `hubsim <args> --data-dir <hub dir>` and waits for it.
    pub fn hubsim(&self, args: &[&str]) -> Run {
        let dir = self.data_dir();
        let mut full: Vec<&str> = args.to_vec();
        let dir_text = dir.to_str().expect("temporary paths are UTF-8");
        full.extend(["--data-dir", dir_text]);
        run(&full)
    }

    /// The hub's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("hub.stderr")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    ///
    /// # Panics
    /// When the hub does not exit within [`STARTUP_DEADLINE`].
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the hub runs until terminated");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = poll(STARTUP_DEADLINE, || child.try_wait().ok().flatten());
        status.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the hub did not stop within {STARTUP_DEADLINE:?} after SIGTERM: {}", self.log())
        })
    }
}

impl Drop for RunningHub {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `hubsim <args>` with no connection environment and waits for it.
pub fn run(args: &[&str]) -> Run {
    let output: Output = Command::new(hubsim_bin())
        .args(args)
        .env_remove("HUBSIM_CONNECTION_STRING")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run hubsim");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Calls `check` every 50 ms until it returns `Some` or `deadline` passes.
pub fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::SystemTime::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed().unwrap_or(Duration::ZERO) > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn build_hubsim() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(env!("CARGO"));
    // Cargo sets per-package variables for the test process; the nested build must not see them, or
    // build scripts that watch the environment rebuild (and invalidate the outer build's artifacts).
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        let per_package = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|prefix| name_text.starts_with(prefix));
        if per_package || name_text == "OUT_DIR" {
            command.env_remove(&name);
        }
    }
    command.args([
        "build",
        "-p",
        "cli",
        "--bin",
        "hubsim",
        "--message-format=json-render-diagnostics",
        "--manifest-path",
    ]);
    command.arg(&manifest);
    let release = std::env::current_exe()
        .is_ok_and(|exe| exe.components().any(|part| part.as_os_str() == "release"));
    if release {
        command.arg("--release");
    }
    let output = command.stderr(Stdio::inherit()).output().expect("run cargo build -p cli");
    assert!(output.status.success(), "cargo build -p cli failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == "hubsim"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the hubsim executable")
}
