//! The coordinator's side of its agents: finding them (`--agents`, names looked up until
//! `--agent-count` addresses answer or `--agent-wait` runs out), the hello, the clock, and a
//! connection handed over to a worker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hubbub::address::HostPort;
use tokio::io::BufReader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::clock::{self, Offset, Probe};
use super::wire::{self, FromAgent, HostInfo, ToAgent};
use crate::rig::stamp;

/// Round trips per clock measurement: enough that one of them is near the shortest the
/// network allows.
const PROBES: usize = 16;

/// How long an agent may take to answer a hello, a clock probe or a request for a worker.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The flags of a run whose subscribers are held by agents on other hosts.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentOpts {
    /// Agents to run the subscribers and publishers on, HOST:PORT[,HOST:PORT…] (`loadgen
    /// agent`); a name stands for every address it resolves to (a Compose service's replicas,
    /// a headless Service's pods). Without it they run here.
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<HostPort>,
    /// How many agent addresses to wait for before starting [default: as many as first
    /// resolve].
    #[arg(long, requires = "agents")]
    pub agent_count: Option<usize>,
    /// How long to wait for them.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub agent_wait: Duration,
    /// The file holding the agents' token (first line).
    #[arg(long, requires = "agents")]
    pub agent_token_file: Option<PathBuf>,
}

impl AgentOpts {
    pub fn enabled(&self) -> bool {
        !self.agents.is_empty()
    }
}

/// A connection to an agent that has said welcome.
pub struct Session {
    pub addr: SocketAddr,
    pub info: HostInfo,
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Session {
    /// Connects and says hello; the agent's refusal is the error.
    pub async fn open(addr: SocketAddr, token: &str) -> anyhow::Result<Session> {
        let stream = tokio::time::timeout(ANSWER_WITHIN, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("agent {addr} did not answer within {ANSWER_WITHIN:?}"))?
            .with_context(|| format!("cannot reach agent {addr}"))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut s = Session {
            addr,
            info: HostInfo::default(),
            read: BufReader::new(read),
            write,
        };
        let hello = ToAgent::Hello {
            token: token.into(),
            version: wire::VERSION,
        };
        match s.ask(&hello).await? {
            FromAgent::Welcome(info) => s.info = info,
            FromAgent::Refused { why } => bail!("agent {addr} refused: {why}"),
            other => bail!("agent {addr} answered hello with {other:?}"),
        }
        Ok(s)
    }

    /// The agent's clock less this one's ([`clock::estimate`]).
    pub async fn clock(&mut self) -> anyhow::Result<Offset> {
        let mut probes = Vec::with_capacity(PROBES);
        for _ in 0..PROBES {
            let sent_ns = stamp::now_ns();
            let FromAgent::Clock { now_ns } = self.ask(&ToAgent::Clock).await? else {
                bail!(
                    "agent {} answered a clock probe with something else",
                    self.addr
                );
            };
            probes.push(Probe {
                sent_ns,
                agent_ns: now_ns,
                received_ns: stamp::now_ns(),
            });
        }
        Ok(clock::estimate(&probes).expect("probes were taken"))
    }

    /// Asks for a worker allowed `max_files` open files; the connection is the worker's
    /// from here on (its stdin and stdout, relayed).
    pub async fn into_worker(
        mut self,
        max_files: u64,
    ) -> anyhow::Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
        wire::write_message(&mut self.write, &ToAgent::Worker { max_files }).await?;
        Ok((self.read, self.write))
    }

    async fn ask(&mut self, msg: &ToAgent) -> anyhow::Result<FromAgent> {
        wire::write_message(&mut self.write, msg).await?;
        let addr = self.addr;
        let answer = tokio::time::timeout(ANSWER_WITHIN, wire::read_message(&mut self.read))
            .await
            .map_err(|_| anyhow::anyhow!("agent {addr} did not answer within {ANSWER_WITHIN:?}"))?
            .with_context(|| format!("agent {addr} sent something unreadable"))?;
        answer.ok_or_else(|| anyhow::anyhow!("agent {addr} closed the connection"))
    }
}
