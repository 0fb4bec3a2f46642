//! The broker loadgen starts for itself: the project's own broker in a child process (this
//! same executable, run with the hidden `broker` subcommand), so that its CPU and memory can
//! be measured apart from loadgen's and no separate binary has to be built first.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the child may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker child process; killed when dropped.
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port, with `extra` broker flags.
    pub async fn start(extra: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(crate::workers::self_exe()?)
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--stats-interval",
                "0s",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the embedded broker")?;
        let pid = child.id().context("embedded broker exited at once")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    return Ok(addr.parse::<SocketAddr>()?);
                }
            }
            bail!("the embedded broker exited before listening")
        })
        .await
        .context("the embedded broker did not start listening in time")??;
        // Keep draining its log so the broker never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { addr, pid, child })
    }

    /// Asks the broker to shut down (SIGTERM) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // tokio's `kill` is SIGKILL; ask for the graceful shutdown first.
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}
