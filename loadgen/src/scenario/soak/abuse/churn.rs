//! Churn: connections that come and go at a steady pace. Each connects, subscribes to a random
//! channel of the healthy traffic, reads and drops what it is sent, and leaves after a random
//! few seconds; a new one starts `--churn-rate` times a second while fewer than `--churn` are
//! alive. They load the broker's connect, subscribe, unsubscribe-on-close and fan-out paths
//! while the healthy subscribers are counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::MissedTickBehavior;
use tokio_util::task::TaskTracker;

use super::shared::{until, Opts, Shared};
use crate::model::stats::SplitMix;
use crate::proto::inbound::Inbound;
use crate::proto::Proto;
use crate::rig::plan::channel_name;
use crate::rig::stamp;

/// Starts churn connections at `--churn-rate` while fewer than `--churn` are alive (the
/// semaphore is the bound: at the bound a due start is skipped, not queued), each on
/// `tracker`, until the soak stops.
pub async fn run(shared: Arc<Shared>, tracker: TaskTracker, opts: Opts, channels: u64) {
    if opts.churn == 0 {
        return;
    }
    let alive = Arc::new(Semaphore::new(opts.churn as usize));
    let mean_life = opts.churn as f64 / opts.churn_rate;
    let mut rng = SplitMix(stamp::now_ns() ^ u64::from(std::process::id()) << 32);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.churn_rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(permit) = alive.clone().try_acquire_owned() else {
            continue;
        };
        let channel = channel_name(rng.below(channels.max(1) as usize) as u64);
        // Uniform over half to one and a half times the mean.
        let life = mean_life * (0.5 + rng.below(1_000) as f64 / 1_000.0);
        let one = live(
            shared.clone(),
            channel,
            Duration::from_secs_f64(life),
            permit,
        );
        until(&tracker, &shared.stop, one);
    }
}

/// One churn connection: subscribed, reading, for `life`; the permit goes when it ends.
async fn live(shared: Arc<Shared>, channel: String, life: Duration, _alive: OwnedSemaphorePermit) {
    let Some((mut stream, early)) = shared.subscribed(&channel, None).await else {
        shared.count(|c| c.churn_failures += 1);
        return;
    };
    shared.count(|c| c.churn_connects += 1);
    let mut inbound = Inbound::new(Proto::Hubbub, early);
    match tokio::time::timeout(life, inbound.serve(&mut stream, &mut ())).await {
        // Its life is over: it leaves, closing the connection.
        Err(_) => shared.count(|c| c.churn_disconnects += 1),
        // The broker closed it, or sent what does not parse, before that.
        Ok(_) => shared.count(|c| c.churn_failures += 1),
    }
}
