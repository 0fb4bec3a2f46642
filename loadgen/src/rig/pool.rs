//! The coordinator's side of its workers: spawning them here or taking one an agent started
//! on another host, sending requests, awaiting replies, and keeping each one's latest
//! [`Progress`] for the live line. A worker that stops answering is reported lost, never
//! waited on for ever.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::control::{FromWorker, Progress, ToWorker};

/// Replies a worker may have waiting. Overflow policy: the worker answers one request at a
/// time and the coordinator awaits each reply, so at most one is ever queued; progress lines
/// never enter this queue.
const REPLIES: usize = 4;
/// How long a worker told to exit may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// A worker sends its progress ten times a second, also while it connects or reports: one
/// silent this long is gone (its host frozen or cut off), however long its reply may take.
pub const LOST_AFTER: Duration = Duration::from_secs(5);

/// A worker that stopped answering: its process exited or its host went silent.
#[derive(Debug, thiserror::Error)]
#[error("{label} was lost: {why}")]
pub struct WorkerLost {
    pub label: String,
    pub why: String,
    /// Its host: 0 here, or 1 + its agent's index.
    pub host: usize,
}

/// A worker's label, host and last word, for [`Worker::first_lost`].
pub struct Watch {
    label: String,
    host: usize,
    heard: Arc<Mutex<Instant>>,
}

/// One worker; killed (here) or disconnected (on an agent, which then ends it) when dropped.
pub struct Worker {
    /// Its process id when it runs here; 0 on an agent.
    pub pid: u32,
    /// "worker 1234" here, "agent 10.0.1.5:7700 (host) worker 2" elsewhere.
    pub label: String,
    /// Which host it runs on: 0 here, or 1 + the agent's index.
    pub host: usize,
    child: Option<Child>,
    stdin: Box<dyn AsyncWrite + Send + Unpin>,
    replies: mpsc::Receiver<FromWorker>,
    /// From the worker's progress lines.
    pub progress: Arc<Mutex<Progress>>,
    /// When it last sent any line.
    heard: Arc<Mutex<Instant>>,
}

/// The executable to run workers and the embedded broker from: loadgen itself, or
/// `$LOADGEN_EXE` (for tests, whose own executable is the test harness).
pub fn self_exe() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("LOADGEN_EXE") {
        Some(path) => Ok(path.into()),
        None => std::env::current_exe().context("cannot find loadgen's own executable"),
    }
}

/// Starts a `loadgen worker` process allowed `max_files` open files, its stdin and stdout
/// piped (here for the coordinator, or on an agent for the relay); killed when dropped.
pub fn spawn_worker(max_files: u64) -> anyhow::Result<Child> {
    Command::new(self_exe()?)
        .args(["worker", "--max-files", &max_files.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a worker process")
}

impl Worker {
    /// Starts a worker here allowed `max_files` open files.
    pub fn spawn(max_files: u64) -> anyhow::Result<Self> {
        let mut child = spawn_worker(max_files)?;
        let pid = child.id().context("worker exited at once")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut w = Self::over(format!("worker {pid}"), 0, stdout, Box::new(stdin));
        (w.pid, w.child) = (pid, Some(child));
        Ok(w)
    }

    /// A worker reached through `read` and `write` (an agent's relayed connection).
    pub fn remote(
        label: String,
        host: usize,
        read: impl AsyncBufRead + Send + Unpin + 'static,
        write: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Self {
        Self::over(label, host, read, Box::new(write))
    }

    fn over(
        label: String,
        host: usize,
        read: impl AsyncBufRead + Send + Unpin + 'static,
        stdin: Box<dyn AsyncWrite + Send + Unpin>,
    ) -> Self {
        let (tx, replies) = mpsc::channel(REPLIES);
        let progress = Arc::new(Mutex::new(Progress::default()));
        let heard = Arc::new(Mutex::new(Instant::now()));
        let (latest, last) = (progress.clone(), heard.clone());
        tokio::spawn(async move {
            let mut lines = read.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                *last.lock().expect("heard lock") = Instant::now();
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
        Self {
            pid: 0,
            label,
            host,
            child: None,
            stdin,
            replies,
            progress,
            heard,
        }
    }

    /// How long since it last sent anything.
    pub fn silent_for(&self) -> Duration {
        self.heard.lock().expect("heard lock").elapsed()
    }

    /// What [`Worker::first_lost`] watches of each worker: owned, so that the workers stay
    /// free to be sent requests meanwhile.
    pub fn watches(workers: &[Worker]) -> Vec<Watch> {
        workers
            .iter()
            .map(|w| Watch {
                label: w.label.clone(),
                host: w.host,
                heard: w.heard.clone(),
            })
            .collect()
    }

    /// Ends, with [`WorkerLost`], once any watched worker has been silent for [`LOST_AFTER`]
    /// (for waits that are not for a reply: a hold's publishing).
    pub async fn first_lost(watches: Vec<Watch>) -> anyhow::Error {
        let mut check = tokio::time::interval(LOST_AFTER / 10);
        loop {
            check.tick().await;
            for w in &watches {
                let silent = w.heard.lock().expect("heard lock").elapsed();
                if silent >= LOST_AFTER {
                    return WorkerLost {
                        label: w.label.clone(),
                        why: format!("not a word for {:.1} s", silent.as_secs_f64()),
                        host: w.host,
                    }
                    .into();
                }
            }
        }
    }

    fn lost(&self, why: impl Into<String>) -> anyhow::Error {
        WorkerLost {
            label: self.label.clone(),
            why: why.into(),
            host: self.host,
        }
        .into()
    }

    /// Sends a request without waiting for its reply.
    pub async fn send(&mut self, msg: &ToWorker) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        // A write to a host that stopped reading blocks once its buffers fill: bounded too.
        match tokio::time::timeout(LOST_AFTER, self.stdin.write_all(&line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(format!("cannot send to it: {e}"))),
            Err(_) => Err(self.lost(format!("took nothing for {LOST_AFTER:?}"))),
        }
    }

    /// The reply to the last request.
    pub async fn reply(&mut self) -> anyhow::Result<FromWorker> {
        let watch = Self::watches(std::slice::from_ref(self));
        tokio::select! {
            reply = self.replies.recv() => match reply {
                Some(reply) => Ok(reply),
                None => Err(self.lost("its connection closed (the process exited)")),
            },
            lost = Self::first_lost(watch) => Err(lost),
        }
    }

    /// Tells the worker to exit and waits for it (killing it if it takes longer than
    /// [`EXIT_GRACE`], as one still connecting may). An agent's worker exits when its
    /// connection closes.
    pub async fn exit(mut self) {
        let _ = tokio::time::timeout(EXIT_GRACE, self.send(&ToWorker::Exit)).await;
        drop(self.stdin);
        if let Some(mut child) = self.child.take() {
            if tokio::time::timeout(EXIT_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
