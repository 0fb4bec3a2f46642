//! How fast a broker takes on new subscribers, at steady state: a fixed number of connectors,
//! each over and over connecting, opening the protocol's session, subscribing to a channel
//! (and waiting for the broker to confirm it), then leaving. A warm-up that is not counted,
//! then the completed connect + subscribes counted second by second while every thread of the
//! broker and of loadgen is timed, to say what set the rate.
//!
//! Closed loop, like fan-out's window: the connectors are the "in flight", so with neither
//! side saturated the round trip sets the rate (window-bound). Each connection leaves with a
//! reset (`SO_LINGER` 0) rather than a FIN: an orderly close leaves the port in TIME_WAIT
//! for a minute, and at tens of thousands of connects a second the loopback's ~28,000
//! ephemeral ports would be gone within a second, which would measure the port range rather
//! than the broker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::task::JoinSet;

use crate::model::fanout::Run;
use crate::proto::dial::Dial;
use crate::proto::socket;
use crate::scenario::counted;

/// One connect + subscribe run's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Connections being opened at any moment.
    pub connectors: usize,
    /// Channels the subscriptions go round.
    pub channels: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// One run on fresh channels `connect-{tag}-{n}` (and MQTT client ids
/// `connect-{tag}-{connector}-{n}`): `tag` must differ between runs that may overlap on one
/// broker. The returned [`Run`]'s `deliveries` are the connect + subscribes completed in the
/// measured window; with TLS in `dial`, each includes its handshake. Every connector is stopped
/// when this returns.
pub async fn measure(
    addr: SocketAddr,
    broker_pid: Option<u32>,
    dial: impl Into<Dial>,
    spec: &Spec,
    tag: &str,
) -> anyhow::Result<Run> {
    let dial = dial.into();
    if spec.connectors == 0 || spec.channels == 0 {
        bail!("a connect run needs at least one connector and one channel");
    }
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for c in 0..spec.connectors {
        let connector = Connector {
            addr,
            dial: dial.clone(),
            channels: spec.channels,
            prefix: format!("connect-{tag}"),
            index: c,
            done: done.clone(),
        };
        tasks.spawn(connector.run());
    }
    let span = (spec.warmup, spec.duration);
    let outcome = counted::window(broker_pid, span, "connect + subscribe", &mut tasks, || {
        done.load(Relaxed)
    })
    .await;
    tasks.shutdown().await;
    outcome
}

/// One of the connectors: connect, open the session, subscribe, leave, over and over.
struct Connector {
    addr: SocketAddr,
    dial: Dial,
    channels: usize,
    prefix: String,
    index: usize,
    done: Arc<AtomicU64>,
}

impl Connector {
    /// Runs until aborted, or fails on the first connection that does not complete.
    async fn run(self) -> anyhow::Result<()> {
        for n in 0u64.. {
            let id = format!("{}-{}-{n}", self.prefix, self.index);
            let channel = format!("{}-{}", self.prefix, n as usize % self.channels);
            self.once(&id, &channel)
                .await
                .with_context(|| format!("{id}: connect and subscribe to {channel}"))?;
            self.done.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    async fn once(&self, id: &str, channel: &str) -> anyhow::Result<()> {
        let tcp = socket::connect(self.addr).await?;
        let (mut stream, early) = self.dial.open_default(tcp, id).await?;
        self.dial
            .proto
            .subscribe(&mut stream, channel, early)
            .await?;
        // A reset, not a FIN: no TIME_WAIT (see the module's comment).
        stream.set_zero_linger()?;
        Ok(())
    }
}
