//! The counted part of a closed-loop run, shared by fan-out and connect + subscribe: the
//! connections' tasks run through a warm-up that is not counted, then a counter is read second
//! by second over the measured window while every thread of the broker and of loadgen is
//! timed, to say what set the rate.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::task::JoinSet;

use crate::model::bottleneck::{classify, Pacing};
use crate::model::fanout::Run;
use crate::model::stats::Steadiness;
use crate::os::threads;

/// Waits out `warmup`, then counts what `counter` gains over `duration`, second by second;
/// the [`Run`]'s `deliveries` are that gain. Fails if a task in `tasks` ends (they run until
/// aborted) or nothing was counted (`what` names it in the error).
pub async fn window(
    broker_pid: Option<u32>,
    (warmup, duration): (Duration, Duration),
    what: &str,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    counter: impl Fn() -> u64,
) -> anyhow::Result<Run> {
    wait(warmup, tasks).await?;
    let (broker, loadgen) = (
        broker_pid.into_iter().collect::<Vec<_>>(),
        [std::process::id()],
    );
    let (broker_before, loadgen_before) = (threads::snapshot(&broker), threads::snapshot(&loadgen));
    let start = Instant::now();
    let first = counter();
    let (mut last, mut per_second) = (first, Vec::new());
    let seconds = duration.as_secs().max(1);
    for s in 1..=seconds {
        let until = start + Duration::from_secs(s);
        wait(until.saturating_duration_since(Instant::now()), tasks).await?;
        let now = counter();
        per_second.push((now - last) as f64);
        last = now;
    }
    let elapsed = start.elapsed();
    let broker_cpu = threads::usage(&broker_before, &threads::snapshot(&broker));
    let loadgen_cpu = threads::usage(&loadgen_before, &threads::snapshot(&loadgen));
    if last == first {
        bail!("no {what} in the measured {seconds} s");
    }
    let cores = threads::online_cores() as f64;
    Ok(Run {
        deliveries: last - first,
        elapsed,
        steadiness: Steadiness::of(&per_second),
        per_second,
        bottleneck: classify(&broker_cpu, &loadgen_cpu, cores, Pacing::Window),
    })
}

/// Sleeps for `span` while every connection's task runs; one that ended has failed.
async fn wait(span: Duration, tasks: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(span) => Ok(()),
        // No tasks at all disables this branch (the pattern fails) and the sleep decides.
        Some(ended) = tasks.join_next() => {
            ended.context("a connection's task panicked")??;
            bail!("a connection's task ended in the middle of the run");
        }
    }
}
