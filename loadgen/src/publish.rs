//! Open-loop publishers: messages go out on a fixed schedule, whatever the broker does.
//!
//! Message `n` (counting over all publishers) is due at `start + n / rate` and goes to channel
//! `n % channels` from publisher `n % publishers`. A publisher wakes, writes every message that
//! is due in one write, and sleeps until the next is due; if the broker pushes back, messages
//! go out late, and their latency is still measured from when they were due.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hubbub::protocol::encode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinSet;

use crate::latency;
use crate::wire;

/// Connected publishers, reused for every step.
pub struct Publishers {
    conns: Vec<OwnedWriteHalf>,
}

/// What a hold published, per channel.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub per_channel: Vec<u64>,
}

impl Published {
    pub fn total(&self) -> u64 {
        self.per_channel.iter().sum()
    }
}

impl Publishers {
    /// Connects `count` publishers, spread over `targets`.
    pub async fn connect(targets: &[SocketAddr], count: usize) -> anyhow::Result<Self> {
        let mut conns = Vec::with_capacity(count);
        for i in 0..count {
            let stream = wire::connect(targets[i % targets.len()])
                .await
                .context("publisher could not connect")?;
            let (mut read, write) = stream.into_split();
            // Publishers get no replies but ERRORs; drain so the broker never blocks on them.
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
            });
            conns.push(write);
        }
        Ok(Self { conns })
    }

    /// Publishes at `rate` messages per second in all, for `hold`.
    pub async fn publish(
        &mut self,
        rate: f64,
        hold: Duration,
        channels: u64,
        size: usize,
    ) -> anyhow::Result<Published> {
        let count = self.conns.len() as u64;
        let start = latency::now_ns();
        let interval_ns = 1e9 / rate;
        let total = (hold.as_secs_f64() * rate).round() as u64;
        let mut tasks = JoinSet::new();
        for (p, mut conn) in std::mem::take(&mut self.conns).into_iter().enumerate() {
            tasks.spawn(async move {
                let mut per_channel = vec![0u64; channels as usize];
                let mut n = p as u64;
                let mut batch = Vec::new();
                let mut batch_channels = Vec::new();
                let due = |n: u64| start + (n as f64 * interval_ns) as u64;
                while n < total {
                    let now = latency::now_ns();
                    if due(n) > now {
                        tokio::time::sleep(Duration::from_nanos(due(n) - now)).await;
                    }
                    let now = latency::now_ns();
                    batch.clear();
                    batch_channels.clear();
                    while n < total && due(n) <= now {
                        let channel = n % channels;
                        let message = latency::payload(due(n), n, size);
                        batch.extend(encode::publish_command(&format!("ch-{channel}"), &message));
                        batch_channels.push(channel as usize);
                        n += count;
                    }
                    if conn.write_all(&batch).await.is_err() {
                        // The broker is gone or cut this publisher off: what was not written
                        // was not published, and the publisher drops out of later steps.
                        return (p, None, per_channel);
                    }
                    for &c in &batch_channels {
                        per_channel[c] += 1;
                    }
                }
                (p, Some(conn), per_channel)
            });
        }
        let mut published = Published {
            per_channel: vec![0; channels as usize],
        };
        let mut back = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (p, conn, per_channel) = done?;
            for (sum, n) in published.per_channel.iter_mut().zip(per_channel) {
                *sum += n;
            }
            if let Some(conn) = conn {
                back.push((p, conn));
            }
        }
        back.sort_by_key(|(p, _)| *p);
        self.conns = back.into_iter().map(|(_, c)| c).collect();
        Ok(published)
    }
}
