//! The broker loadgen starts for itself: the project's own broker in a child process (this
//! same executable, run with the hidden `broker` subcommand), so that its CPU and memory can
//! be measured apart from loadgen's and no separate binary has to be built first. It is
//! started the way every broker in the project is, through [`hubbub::launch`].
//!
//! Past what one process's descriptors hold, loadgen starts a hub of them instead: one hub and
//! leaves linked to it, as `scripts/hub.sh` does, and loads the leaves.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use hubbub::launch::BrokerProcess;
use hubbub::Client;

use crate::proto::Proto;

/// How long the broker may take to shut down after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a leaf may take to link to its hub.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The brokers started here, the hub first where there is one.
    embedded: Vec<EmbeddedBroker>,
    /// Of those, leaves linked to a hub (0: one broker, or none started here).
    leaves: usize,
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
                embedded: Vec::new(),
                leaves: 0,
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
            embedded: vec![broker],
            leaves: 0,
        })
    }

    /// Like [`UnderTest::resolve`], but with no targets and `brokers` above one, a hub and
    /// `brokers` leaves linked to it, started here; the clients are to be spread over the
    /// leaves, whose addresses are `addrs`. Returns once every leaf's link is up.
    pub async fn resolve_hub(
        common: &super::options::Common,
        brokers: usize,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        if !common.target.is_empty() || brokers <= 1 {
            let targets = common.targets().await?;
            return Self::resolve(&targets, &common.broker_pid, common.proto, extra);
        }
        if common.proto != Proto::Hubbub {
            return Self::resolve(&[], &[], common.proto, extra);
        }
        // More brokers than cores share the cores already: a second worker thread each would
        // only add threads to switch between (measured in reports/README.md, "A million").
        let one_thread: Vec<String> = match brokers + 1 > crate::os::threads::online_cores() {
            true => vec!["--threads".into(), "1".into()],
            false => Vec::new(),
        };
        let extra: &[String] = &[extra, &one_thread].concat();
        let hub = EmbeddedBroker::start(&[extra, &["--name".into(), "hub".into()]].concat())?;
        let mut under = Self {
            addrs: Vec::new(),
            pids: vec![hub.pid],
            proto: common.proto,
            embedded: vec![hub],
            leaves: brokers,
        };
        let upstream = under.embedded[0].addr.to_string();
        for i in 1..=brokers {
            let leaf_flags = ["--upstream".into(), upstream.clone()];
            let name = ["--name".into(), format!("leaf-{i}")];
            // Started and stopped with the others; on an error, `under` drops and kills those
            // already running.
            let leaf = EmbeddedBroker::start(&[extra, &leaf_flags, &name].concat())?;
            under.addrs.push(leaf.addr);
            under.pids.push(leaf.pid);
            under.embedded.push(leaf);
        }
        for &leaf in &under.addrs {
            tokio::time::timeout(LINK_TIMEOUT, linked(leaf))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the leaf at {leaf} did not link to its hub at {upstream} within {}",
                        humantime::format_duration(LINK_TIMEOUT)
                    )
                })??;
        }
        Ok(under)
    }

    /// Whether loadgen started the broker itself.
    pub fn started_here(&self) -> bool {
        !self.embedded.is_empty()
    }

    /// "hubbub at 127.0.0.1:40123 (started by loadgen)", "redis at 127.0.0.1:6390",
    /// "hubbub: a hub at 127.0.0.1:40123 and 3 leaves, started by loadgen".
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        if self.leaves > 0 {
            // The leaves' addresses are in the report's provenance; a plot's subtitle has no
            // room for fifty of them.
            return format!(
                "{}: a hub at {} and {} leaves, started by loadgen",
                self.proto, self.embedded[0].addr, self.leaves
            );
        }
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

    /// Every broker as (name, protocol, address) for the run's provenance: with a hub, the hub
    /// and each leaf by name.
    pub fn named(&self) -> Vec<(String, Proto, SocketAddr)> {
        if self.leaves == 0 {
            let name = self.proto.to_string();
            return self
                .addrs
                .iter()
                .map(|&a| (name.clone(), self.proto, a))
                .collect();
        }
        let hub = (
            format!("{} hub", self.proto),
            self.proto,
            self.embedded[0].addr,
        );
        let leaves = self.addrs.iter().enumerate();
        std::iter::once(hub)
            .chain(leaves.map(|(i, &a)| (format!("{} leaf-{}", self.proto, i + 1), self.proto, a)))
            .collect()
    }

    /// Stops the brokers loadgen started, all at once; leaves given ones running.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut stops = tokio::task::JoinSet::new();
        for broker in self.embedded {
            stops.spawn(broker.stop());
        }
        while let Some(stopped) = stops.join_next().await {
            stopped??;
        }
        Ok(())
    }
}

/// Waits until the leaf at `addr` says (in STATS) that its link to the hub is up.
async fn linked(addr: SocketAddr) -> anyhow::Result<()> {
    let mut client = Client::connect(addr)
        .await
        .with_context(|| format!("connecting to the leaf at {addr}"))?;
    loop {
        let stats = super::probe::ask(&mut client)
            .await
            .map_err(|why| anyhow::anyhow!("the leaf at {addr}: {why}"))?;
        if stats.get("upstream").and_then(|u| u.get("connected")) == Some(&true.into()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
