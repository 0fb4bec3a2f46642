//! The coordinator's side of its agents: finding them (`--agents`, names looked up until
//! `--agent-count` addresses answer or `--agent-wait` runs out), the hello, the clock, and a
//! connection handed over to a worker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hubbub::address::HostPort;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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

/// Resolves `names` until they give at least `count` addresses (or, without a count, any),
/// retrying until `wait` has passed: a Compose or Kubernetes name appears once its container
/// or pod has started.
pub async fn resolve(
    names: &[HostPort],
    count: Option<usize>,
    wait: Duration,
) -> anyhow::Result<Vec<SocketAddr>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut found = Vec::new();
        let mut failure = None;
        for name in names {
            match tokio::net::lookup_host(name.as_pair()).await {
                Ok(addrs) => {
                    for a in addrs.filter(SocketAddr::is_ipv4) {
                        if !found.contains(&a) {
                            found.push(a);
                        }
                    }
                }
                Err(e) => failure = Some(format!("{name}: {e}")),
            }
        }
        found.sort();
        let enough = match count {
            Some(n) => found.len() >= n,
            None => !found.is_empty() && failure.is_none(),
        };
        if enough {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "found {} agent address(es) of the {} wanted within {}: {}",
                found.len(),
                count.map_or("any".into(), |n| n.to_string()),
                humantime::format_duration(wait),
                failure.unwrap_or_else(|| format!("{found:?}")),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
        send(&mut self.write, &ToAgent::Worker { max_files }).await?;
        Ok((self.read, self.write))
    }

    async fn ask(&mut self, msg: &ToAgent) -> anyhow::Result<FromAgent> {
        send(&mut self.write, msg).await?;
        let mut line = Vec::new();
        let mut limited = (&mut self.read).take(wire::MAX_LINE as u64);
        let n = tokio::time::timeout(ANSWER_WITHIN, limited.read_until(b'\n', &mut line))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "agent {} did not answer within {ANSWER_WITHIN:?}",
                    self.addr
                )
            })??;
        if n == 0 {
            bail!("agent {} closed the connection", self.addr);
        }
        serde_json::from_slice(&line)
            .with_context(|| format!("agent {} sent something unreadable", self.addr))
    }
}

async fn send(write: &mut OwnedWriteHalf, msg: &ToAgent) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    Ok(())
}
