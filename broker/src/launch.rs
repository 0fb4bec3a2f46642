//! Starting a broker program as a child process and learning where it listens: the one way the
//! tests, the benches and loadgen do it, through the same `--ready-file` flag the scripts use.
//!
//! The broker writes its bound address into the ready file once it listens (written aside and
//! renamed into place, so a reader never sees half an address). Polling for a file is plain and
//! needs nothing from the log, whose wording is for people and free to change.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How long a broker may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the child's stderr kept for [`BrokerProcess::log`]; older ones are dropped, so a
/// chatty broker cannot grow its parent.
const LOG_LINES: usize = 2_000;
const POLL: Duration = Duration::from_millis(5);

/// Why a broker process did not start.
#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("cannot start the broker program {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the broker exited ({status}) before listening; its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("the broker did not listen within {timeout:?}; its log:\n{log}")]
    Timeout { timeout: Duration, log: String },
}

/// Writes `addr` to `path` for whoever waits on it (see [`BrokerProcess::start`]).
pub fn write_ready_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let aside = path.with_extension("partial");
    std::fs::write(&aside, format!("{addr}\n"))?;
    std::fs::rename(&aside, path)
}

/// A broker running as a child process; killed when dropped, and sent SIGTERM if the thread
/// that started it dies first (so a crashed test or load generator leaves no broker behind).
#[derive(Debug)]
pub struct BrokerProcess {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl BrokerProcess {
    /// Runs `command` (a broker program with its flags: `broker --listen 127.0.0.1:0`, or
    /// `loadgen broker …`) with `--ready-file` added, and waits until it listens.
    ///
    /// Its stderr is read for the life of the process (the last lines are kept for
    /// [`BrokerProcess::log`]), so it never blocks on a full pipe; stdin and stdout are null.
    pub fn start(mut command: Command) -> Result<Self, LaunchError> {
        let ready = ready_path();
        command
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .map_err(|source| LaunchError::Spawn { program, source })?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = lines.lock().expect("log lock");
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let mut process = BrokerProcess {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            child,
            log,
        };
        let found = process.wait_ready(&ready, START_TIMEOUT);
        let _ = std::fs::remove_file(&ready);
        process.addr = found?;
        Ok(process)
    }

    fn wait_ready(&mut self, ready: &Path, timeout: Duration) -> Result<SocketAddr, LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(addr) = std::fs::read_to_string(ready)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread catch the last lines of the log.
                std::thread::sleep(Duration::from_millis(50));
                return Err(LaunchError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(LaunchError::Timeout {
                    timeout,
                    log: self.log(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the broker wrote to stderr (its last lines).
    pub fn log(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log.iter().map(|l| format!("{l}\n")).collect()
    }

    /// Whether a line of the log so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| l.contains(text))
    }

    /// The exit status, if the broker has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the broker to shut down (SIGTERM) and waits up to `grace` for it; then kills it.
    /// Returns its exit status, `None` if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh path for one ready file, in the temporary directory.
fn ready_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "hubbub-ready-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    ))
}

/// The child gets SIGTERM when the thread that spawned it exits (PR_SET_PDEATHSIG), so it
/// cannot outlive a parent that was killed without the chance to stop it.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
}
