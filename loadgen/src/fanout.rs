//! Burst fan-out: one publisher sends `publishes` messages to `subscribers` subscribers of one
//! channel as fast as they are delivered; the result is deliveries per second.
//!
//! The publisher is flow-controlled against the slowest subscriber (at most `window` messages
//! ahead) so that the measurement is of delivery speed, not of how fast a broker can drop
//! slow consumers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::embedded::EmbeddedBroker;
use crate::proto::Proto;
use crate::wire;

/// Publishes per write: the publisher pipelines, as real high-rate publishers do.
const BATCH: u64 = 100;
/// Longest a run may wait for its last deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Broker to measure (HOST:PORT); without it loadgen starts its own on a free port.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// Subscribers of the channel.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Messages published per run.
    #[arg(long, default_value_t = 100_000)]
    pub publishes: u64,
    /// Message size in bytes (a JSON string of that length).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Most messages the publisher may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 5_000)]
    pub window: u64,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

/// One run's result.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub deliveries: u64,
    pub elapsed: Duration,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let embedded = match opts.target {
        Some(_) => None,
        None => Some(EmbeddedBroker::start(&[]).await?),
    };
    let addr = opts
        .target
        .or(embedded.as_ref().map(|b| b.addr))
        .expect("an address");
    println!(
        "fan-out: {} publishes of {} B to {} subscribers, broker {addr}{}",
        opts.publishes,
        opts.size,
        opts.subscribers,
        if embedded.is_some() {
            " (started by loadgen)"
        } else {
            ""
        }
    );
    let mut runs = Vec::new();
    for i in 0..opts.repeat {
        let r = measure(addr, &opts, &format!("fanout-{}-{i}", std::process::id())).await?;
        println!(
            "run {}: {} deliveries in {:.3} s = {:.0} deliveries/s",
            i + 1,
            r.deliveries,
            r.elapsed.as_secs_f64(),
            r.per_second()
        );
        runs.push(r);
    }
    let mut rates: Vec<f64> = runs.iter().map(Run::per_second).collect();
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} deliveries/s", rates[rates.len() / 2]);
    if let Some(broker) = embedded {
        broker.stop().await?;
    }
    Ok(())
}

/// One run on a fresh channel.
pub async fn measure(addr: SocketAddr, opts: &Opts, channel: &str) -> anyhow::Result<Run> {
    let counts: Vec<Arc<AtomicU64>> = (0..opts.subscribers).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for count in &counts {
        let mut stream = wire::connect(addr).await.context("subscriber connect")?;
        let early = Proto::Hubbub
            .subscribe(&mut stream, channel, Vec::new())
            .await?;
        count.fetch_add(wire::count_frames(&early), Relaxed);
        let count = count.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                count.fetch_add(wire::count_frames(&buf[..n]), Relaxed);
            }
        }));
    }
    let slowest = || {
        counts
            .iter()
            .map(|c| c.load(Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    };

    let mut publisher = wire::connect(addr).await.context("publisher connect")?;
    let one = wire::publish_of_size(channel, opts.size);
    let batch = one.repeat(BATCH as usize);
    let start = Instant::now();
    let mut sent = 0;
    while sent < opts.publishes {
        while sent.saturating_sub(slowest()) > opts.window {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let n = BATCH.min(opts.publishes - sent);
        publisher
            .write_all(&batch[..one.len() * n as usize])
            .await?;
        sent += n;
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while slowest() < opts.publishes {
        if Instant::now() > deadline {
            bail!(
                "lost deliveries: the slowest subscriber got {} of {}",
                slowest(),
                opts.publishes
            );
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = start.elapsed();
    for reader in readers {
        reader.abort();
    }
    let deliveries = counts.iter().map(|c| c.load(Relaxed)).sum();
    Ok(Run {
        deliveries,
        elapsed,
    })
}
