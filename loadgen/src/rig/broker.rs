//! The broker loadgen starts for itself: the project's own broker in a child process (this
//! same executable, run with the hidden `broker` subcommand), so that its CPU and memory can
//! be measured apart from loadgen's and no separate binary has to be built first. It is
//! started the way every broker in the project is, through [`hubbub::launch`].

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use hubbub::launch::BrokerProcess;

/// How long the broker may take to shut down after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A broker child process; killed when dropped.
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub pid: u32,
    process: BrokerProcess,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port, with `extra` broker flags.
    pub fn start(extra: &[String]) -> anyhow::Result<Self> {
        let mut command = Command::new(crate::rig::pool::self_exe()?);
        command
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--stats-interval",
                "0s",
            ])
            .args(extra)
            .env("RUST_LOG", "info");
        let process = BrokerProcess::start(command).context("cannot start the embedded broker")?;
        Ok(Self {
            addr: process.addr,
            pid: process.pid(),
            process,
        })
    }

    /// Asks the broker to shut down (SIGTERM) and waits for it, killing it after a grace
    /// period.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.process.terminate(STOP_GRACE)).await?;
        Ok(())
    }
}
