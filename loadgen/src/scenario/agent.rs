//! `loadgen agent`: serves worker processes to a coordinator on another host.
//!
//! Each connection is one worker: the hello (with the token; anything else, or a wrong token,
//! is refused and closed), any number of clock probes, then `worker`, after which the agent
//! relays the connection and the worker's stdin and stdout both ways until either ends. A
//! worker exits when its stdin closes, so a coordinator that goes away takes its workers with
//! it; a worker that dies closes its connection, which the coordinator reports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::os::read_limits;
use crate::rig::agents::wire::{self, FromAgent, HostInfo, ToAgent};
use crate::rig::pool::spawn_worker;
use crate::rig::progress::say;
use crate::rig::stamp;

/// How long a new connection may take to say hello: one that never does holds nothing longer.
const HELLO_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Where to listen for coordinators.
    #[arg(long, default_value = "0.0.0.0:7700")]
    pub listen: SocketAddr,
    /// A file whose first line is the token coordinators must present (at least 16
    /// characters; the coordinator's --agent-token-file holds the same).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Exit once the coordinator's workers have all ended (for a container or a Job that is
    /// done when its run is).
    #[arg(long)]
    pub once: bool,
    /// Workers at most at once; one more is refused.
    #[arg(long, default_value_t = 64)]
    pub max_workers: usize,
}

/// Serves until `interrupt` (or, with `--once`, until the workers of a run have all ended).
pub async fn run(opts: Opts, interrupt: &CancellationToken) -> anyhow::Result<()> {
    let token = Arc::new(wire::read_token(&opts.token_file)?);
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let info = Arc::new(host_info());
    say(&format!(
        "agent {} listening on {} ({} cores, {} open files per worker at most)",
        info.host,
        listener.local_addr()?,
        info.cores,
        info.nofile_hard,
    ));
    let active = Arc::new(AtomicUsize::new(0));
    let done = interrupt.child_token();
    loop {
        let (stream, peer) = tokio::select! {
            _ = done.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    say(&format!("agent: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (token, info, active, done) =
            (token.clone(), info.clone(), active.clone(), done.clone());
        let (once, max_workers) = (opts.once, opts.max_workers);
        tokio::spawn(async move {
            let ran = session(stream, &token, &info, &active, max_workers).await;
            match ran {
                Ok(false) => {}
                Ok(true) => {
                    // Only a connection that ran a worker ends a `--once` agent's run.
                    if once && active.load(SeqCst) == 0 {
                        say("agent: every worker has ended; exiting (--once)");
                        done.cancel();
                    }
                }
                Err(e) => say(&format!("agent: connection from {peer}: {e:#}")),
            }
        });
    }
}

/// What this host offers a coordinator.
fn host_info() -> HostInfo {
    let limits = read_limits(None, 0);
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let (low, high) = limits.ephemeral_ports;
    HostInfo {
        host,
        nofile_hard: limits.loadgen_nofile_hard,
        cores: limits.cores,
        ephemeral_ports: u64::from(high.saturating_sub(low)) + 1,
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// One coordinator connection; `Ok(true)` when it ran a worker.
async fn session(
    stream: TcpStream,
    token: &str,
    info: &HostInfo,
    active: &AtomicUsize,
    max_workers: usize,
) -> anyhow::Result<bool> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello = tokio::time::timeout(HELLO_WITHIN, next(&mut read)).await;
    let refusal = match hello {
        Err(_) => Some(format!("no hello within {HELLO_WITHIN:?}")),
        Ok(Err(e)) => Some(e.to_string()),
        Ok(Ok(None)) => Some("closed before saying hello".to_string()),
        Ok(Ok(Some(ToAgent::Hello {
            token: given,
            version,
        }))) => {
            if !wire::token_matches(&given, token) {
                Some("wrong token".to_string())
            } else if version != wire::VERSION {
                Some(format!(
                    "this agent speaks version {}, the coordinator {version}: run the same loadgen on both",
                    wire::VERSION
                ))
            } else {
                None
            }
        }
        Ok(Ok(Some(_))) => Some("the first message must be hello".to_string()),
    };
    if let Some(why) = refusal {
        let _ = reply(&mut write, &FromAgent::Refused { why: why.clone() }).await;
        anyhow::bail!("refused: {why}");
    }
    reply(&mut write, &FromAgent::Welcome(info.clone())).await?;
    loop {
        let Some(msg) = next(&mut read).await? else {
            return Ok(false);
        };
        match msg {
            ToAgent::Clock => {
                let now_ns = stamp::raw_ns();
                reply(&mut write, &FromAgent::Clock { now_ns }).await?;
            }
            ToAgent::Hello { .. } => anyhow::bail!("a second hello"),
            ToAgent::Worker { max_files } => {
                if active.fetch_add(1, SeqCst) >= max_workers {
                    active.fetch_sub(1, SeqCst);
                    let why =
                        format!("this agent runs {max_workers} workers at most (--max-workers)");
                    let _ = reply(&mut write, &FromAgent::Refused { why: why.clone() }).await;
                    anyhow::bail!("refused: {why}");
                }
                let ran = relay(read, write, max_files).await;
                active.fetch_sub(1, SeqCst);
                ran?;
                return Ok(true);
            }
        }
    }
}

/// Starts a worker and relays the connection to it until either side ends.
async fn relay(
    mut from_coordinator: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut to_coordinator: OwnedWriteHalf,
    max_files: u64,
) -> anyhow::Result<()> {
    let mut child = spawn_worker(max_files)?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    // What the buffered reader holds past the `worker` line is the worker's already.
    let down = async {
        let _ = tokio::io::copy_buf(&mut from_coordinator, &mut stdin).await;
        drop(stdin);
    };
    let up = async {
        let _ = tokio::io::copy(&mut stdout, &mut to_coordinator).await;
        let _ = to_coordinator.shutdown().await;
    };
    tokio::select! {
        _ = down => {
            // The coordinator is gone or done: the worker exits on its closed stdin; one that
            // does not within a moment is killed (on drop).
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        }
        _ = up => {}
    }
    Ok(())
}

/// The next message; `None` when the coordinator closed the connection between messages
/// (as it does after measuring a clock).
async fn next(read: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<Option<ToAgent>> {
    wire::read_message(read)
        .await
        .context("not a message this agent understands")
}

async fn reply(write: &mut OwnedWriteHalf, msg: &FromAgent) -> anyhow::Result<()> {
    wire::write_message(write, msg).await
}
