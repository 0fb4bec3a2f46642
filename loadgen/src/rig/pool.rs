//! The coordinator's side of its worker processes: spawning them, sending requests, awaiting
//! replies, and keeping each one's latest [`Progress`] for the live line.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::control::{FromWorker, Progress, ToWorker};

/// Replies a worker may have waiting. Overflow policy: the worker answers one request at a
/// time and the coordinator awaits each reply, so at most one is ever queued; progress lines
/// never enter this queue.
const REPLIES: usize = 4;
/// How long a worker told to exit may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// One worker process; killed when dropped.
pub struct Worker {
    pub pid: u32,
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<FromWorker>,
    /// From the worker's once-a-second progress lines.
    pub progress: Arc<Mutex<Progress>>,
}

/// The executable to run workers and the embedded broker from: loadgen itself, or
/// `$LOADGEN_EXE` (for tests, whose own executable is the test harness).
pub fn self_exe() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("LOADGEN_EXE") {
        Some(path) => Ok(path.into()),
        None => std::env::current_exe().context("cannot find loadgen's own executable"),
    }
}

impl Worker {
    /// Starts a worker allowed `max_files` open files.
    pub fn spawn(max_files: u64) -> anyhow::Result<Self> {
        let mut child = Command::new(self_exe()?)
            .args(["worker", "--max-files", &max_files.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker process")?;
        let pid = child.id().context("worker exited at once")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, replies) = mpsc::channel(REPLIES);
        let progress = Arc::new(Mutex::new(Progress::default()));
        let latest = progress.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<FromWorker>(&line) {
                    Ok(FromWorker::Progress(p)) => *latest.lock().expect("progress lock") = p,
                    Ok(reply) => {
                        if tx.send(reply).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable line from a worker"),
                }
            }
        });
        Ok(Self {
            pid,
            child,
            stdin,
            replies,
            progress,
        })
    }

    /// Sends a request without waiting for its reply.
    pub async fn send(&mut self, msg: &ToWorker) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .context("worker is gone")?;
        Ok(())
    }

    /// The reply to the last request.
    pub async fn reply(&mut self) -> anyhow::Result<FromWorker> {
        match self.replies.recv().await {
            Some(reply) => Ok(reply),
            None => bail!("worker {} exited", self.pid),
        }
    }

    /// Tells the worker to exit and waits for it (killing it if it takes longer than
    /// [`EXIT_GRACE`], as one still connecting may).
    pub async fn exit(mut self) {
        let _ = self.send(&ToWorker::Exit).await;
        drop(self.stdin);
        if tokio::time::timeout(EXIT_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
