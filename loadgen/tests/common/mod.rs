//! Helpers the loadgen tests share: the real binary run as a user runs it (with everything it
//! printed kept for the failure message), brokers started the project's one way
//! ([`hubbub::launch`]), report folders, and the processes a run leaves behind.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use hubbub::launch::BrokerProcess;
use serde_json::Value;

pub const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A finished loadgen run.
pub struct Run {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything it printed, for a failing assertion.
    pub fn transcript(&self) -> String {
        format!(
            "loadgen {:?} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.status, self.stdout, self.stderr
        )
    }

    /// Its exit status (a signal counts as none).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics, with the transcript, unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "{}", self.transcript());
        self
    }

    /// Panics, with the transcript, unless it succeeded.
    pub fn expect_ok(&self) -> &Self {
        self.expect_code(0)
    }
}

/// `loadgen` with these arguments, as a command (its workers and broker are itself).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(LOADGEN);
    c.args(args).env("LOADGEN_EXE", LOADGEN);
    c
}

/// Runs loadgen to completion.
pub fn loadgen(args: &[&str]) -> Run {
    finish(command(args), args)
}

/// Runs `command` (made by [`command`] from `args`, then adjusted) to completion.
pub fn finish(mut command: Command, args: &[&str]) -> Run {
    let out: Output = command.output().expect("loadgen runs");
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh, empty directory for one test's report.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The `summary.json` in `dir`.
pub fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// A CSV file's rows, header first.
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// hubbub in a process of its own (loadgen's hidden `broker` command), with `args` added.
pub fn broker(args: &[&str]) -> BrokerProcess {
    let mut c = Command::new(LOADGEN);
    c.args([
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--stats-interval",
        "0s",
    ])
    .args(args)
    .env("RUST_LOG", "info");
    BrokerProcess::start(c).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')').next().map(str::trim_start),
            Some(s) if s.starts_with('Z') || s.starts_with('X')
        ),
        Err(_) => false,
    }
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit(')').next()?.to_string();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Waits until `done` holds, up to `limit`; returns whether it did.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A loadgen run in the background, its stderr read line by line (for tests that act
/// during a run); killed when dropped.
pub struct Background {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Background {
    pub fn start(args: &[&str]) -> Background {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("loadgen runs");
        let err = child.stderr.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = stderr.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Background {
            child,
            lines,
            stderr,
        }
    }

    /// Waits for a stderr line containing `text`.
    pub fn wait_for_line(&self, text: &str, limit: Duration) {
        self.line_with(text, limit);
    }

    /// Waits for a stderr line containing `text`, and returns it.
    pub fn line_with(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "loadgen never printed {text:?}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Sends `signal` to the run.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal loadgen");
    }

    /// Waits for the run to end, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "loadgen still running after {limit:?}; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
