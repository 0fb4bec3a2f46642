//! The broker loadgen starts for itself: the project's own broker in a child process (this
//! same executable, run with the hidden `broker` subcommand), so that its CPU and memory can
//! be measured apart from loadgen's and no separate binary has to be built first. It is
//! started the way every broker in the project is, through [`hubbub::launch`].

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use hubbub::launch::BrokerProcess;

use crate::proto::Proto;

/// How long the broker may take to shut down after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A broker child process; killed when dropped.
struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub pid: u32,
    process: BrokerProcess,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port, with `extra` broker flags.
    fn start(extra: &[String]) -> anyhow::Result<Self> {
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
            .env("RUST_LOG", "info")
            .env(
                "_RJEM_MALLOC_CONF",
                hubbub::tools::broker::MALLOC_CONF.trim_end_matches('\0'),
            );
        let process = BrokerProcess::start(command).context("cannot start the embedded broker")?;
        Ok(Self {
            addr: process.addr,
            pid: process.pid(),
            process,
        })
    }

    /// Asks the broker to shut down (SIGTERM) and waits for it, killing it after a grace
    /// period.
    async fn stop(mut self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.process.terminate(STOP_GRACE)).await?;
        Ok(())
    }
}

/// The broker(s) a measurement loads: those given with `--target`, or, without one, a hubbub
/// started here for the measurement and stopped after it. The one place that choice is made.
pub struct UnderTest {
    /// Where to connect, one or more brokers.
    pub addrs: Vec<SocketAddr>,
    /// Their processes, where known (always for a broker started here), to sample.
    pub pids: Vec<u32>,
    pub proto: Proto,
    embedded: Option<EmbeddedBroker>,
}

impl UnderTest {
    /// The brokers at `targets` (with `pids`), or with no targets a hubbub started with
    /// `extra` broker flags; another protocol needs its targets given.
    pub fn resolve(
        targets: &[SocketAddr],
        pids: &[u32],
        proto: Proto,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        if !targets.is_empty() {
            return Ok(Self {
                addrs: targets.to_vec(),
                pids: pids.to_vec(),
                proto,
                embedded: None,
            });
        }
        if proto != Proto::Hubbub {
            bail!(
                "loadgen starts only hubbub itself; for --proto {proto} give --target \
                 (scripts/peers.sh start {proto}; scripts/peers.sh addr|pid {proto})"
            );
        }
        let broker = EmbeddedBroker::start(extra)?;
        Ok(Self {
            addrs: vec![broker.addr],
            pids: vec![broker.pid],
            proto,
            embedded: Some(broker),
        })
    }

    /// Whether loadgen started the broker itself.
    pub fn started_here(&self) -> bool {
        self.embedded.is_some()
    }

    /// "hubbub at 127.0.0.1:40123 (started by loadgen)", "redis at 127.0.0.1:6390".
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        format!(
            "{} at {}{}",
            self.proto,
            addrs.join(", "),
            if self.started_here() {
                " (started by loadgen)"
            } else {
                ""
            }
        )
    }

    /// Stops the broker if loadgen started it; leaves a given one running.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.embedded {
            Some(b) => b.stop().await,
            None => Ok(()),
        }
    }
}
