//! [`Rig::hold`]: traffic at a rate through a warm-up and a counted window, and what it
//! measured.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::control::{FromWorker, ToWorker};
use super::pool::Worker;
use super::publish::Schedule;
use super::{stamp, Interrupted, Rig};
use crate::model::bottleneck::{classify, Pacing};
use crate::model::histogram::{new_histogram, percentiles};
use crate::model::stats::Steadiness;
use crate::model::{ErrorCounts, StepResult};
use crate::os::{running, threads};

/// What a hold measured beyond the step's figures: the latency histogram, and one per
/// second of the counted window (from `from_ns`), for the interval log.
pub struct Held {
    pub histogram: Histogram<u64>,
    pub intervals: Vec<Histogram<u64>>,
    pub from_ns: u64,
}

impl Rig {
    /// Publishes at `rate` through `--warmup` (not counted) and then `hold` (counted), waits
    /// for the last deliveries, and fills the traffic fields of `result`: what was delivered,
    /// how steadily second by second, and what set it (every thread of the broker and of
    /// loadgen timed over the counted window).
    pub async fn hold(
        &mut self,
        result: &mut StepResult,
        rate: f64,
        hold: Duration,
    ) -> anyhow::Result<Held> {
        self.check_interrupt()?;
        let warmup = self.common.warmup;
        let before = self.probe.read().await;
        // Start afresh: drop deliveries counted so far, keep connections lost.
        let (_, lost, _, _, _, _) = self.report_all().await?;
        result.errors.add(&lost);
        // A moment ahead, so every worker has its window before the first message is due.
        let start_ns = stamp::now_ns() + 50_000_000;
        let mut schedule = Schedule::new(rate, start_ns, warmup, hold);
        (schedule.channels, schedule.size) = (self.channels, self.common.size);
        let (from_ns, to_ns) = schedule.counted;
        for w in &mut self.workers {
            w.send(&ToWorker::Measure { from_ns, to_ns }).await?;
        }
        let subscribers: u64 = self.subscribers_per_channel.iter().sum();
        // Messages go to every channel in turn, so each reaches the average audience.
        self.position
            .holding(rate, rate * subscribers as f64 / self.channels as f64);
        let pids: Vec<u32> = self
            .workers
            .iter()
            .map(|w| w.pid)
            .filter(|&p| p > 0)
            .collect();
        let loadgen: Vec<u32> = [std::process::id()].into_iter().chain(pids).collect();
        let brokers = self.brokers.pids.clone();
        let timed = async {
            sleep_until_ns(from_ns).await;
            let at_start = (threads::snapshot(&brokers), threads::snapshot(&loadgen));
            sleep_until_ns(to_ns).await;
            let broker = threads::usage(&at_start.0, &threads::snapshot(&brokers));
            (
                broker,
                threads::usage(&at_start.1, &threads::snapshot(&loadgen)),
            )
        };
        let watches = Worker::watches(&self.workers);
        let (workers, publishers, shares) = (
            &mut self.workers,
            &mut self.publishers,
            &self.publisher_shares,
        );
        let interrupt = &self.interrupt;
        let publish = async move {
            match shares.is_empty() {
                true => publishers.publish(schedule, interrupt).await,
                false => publish_on_agents(workers, shares, schedule).await,
            }
        };
        // The publishers stop on an interrupt by themselves; the timing must not outlast them.
        let (published, (broker_cpu, loadgen_cpu)) = tokio::select! {
            both = async { tokio::join!(publish, timed) } => both,
            _ = self.interrupt.cancelled() => return Err(Interrupted.into()),
            lost = Worker::first_lost(watches) => return Err(lost),
        };
        let published = published?;
        self.check_interrupt()?;
        self.position.draining();
        // Give the last messages time to arrive; later than this they are late anyway.
        let drain = Duration::from_secs(1) + self.common.slo_p99 * 2;
        tokio::select! {
            _ = tokio::time::sleep(drain) => {}
            _ = self.interrupt.cancelled() => return Err(Interrupted.into()),
        }
        let (delivered, lost, late, latency, intervals, clients) = self.report_all().await?;
        let after = self.probe.read().await;
        result.errors.add(&lost);
        result.clients = clients;
        result.offered_rate = rate;
        result.window_from_ns = Some(from_ns);
        result.warmup_secs = warmup.as_secs_f64();
        result.hold_secs = hold.as_secs_f64();
        result.published = published.total();
        result.expected = published
            .per_channel
            .iter()
            .zip(&self.subscribers_per_channel)
            .map(|(p, s)| p * s)
            .sum();
        result.delivered = delivered;
        result.lost = result.expected.saturating_sub(delivered);
        result.late = late;
        result.latency = percentiles(&latency);
        let per_second: Vec<f64> = intervals.iter().map(|h| h.len() as f64).collect();
        let steadiness = Steadiness::of(&per_second);
        result.steady = Some(steadiness.steady);
        result.bottleneck = Some(classify(
            &broker_cpu,
            &loadgen_cpu,
            self.limits.cores as f64,
            Pacing::Offered,
        ));
        result.broker_alive = self.brokers.pids.iter().all(|&p| running(p));
        result.broker_accept_errors = after.accept_errors.saturating_sub(before.accept_errors);
        result.broker_slow_consumers = after.slow_consumers.saturating_sub(before.slow_consumers);
        let tag = format!("step-{}", result.step);
        self.intervals.push((tag, from_ns, intervals.clone()));
        Ok(Held {
            histogram: latency,
            intervals,
            from_ns,
        })
    }

    /// Asks every worker for its counts since the last report, and merges them.
    #[allow(clippy::type_complexity)]
    async fn report_all(
        &mut self,
    ) -> anyhow::Result<(
        u64,
        ErrorCounts,
        u64,
        Histogram<u64>,
        Vec<Histogram<u64>>,
        u64,
    )> {
        for w in &mut self.workers {
            w.send(&ToWorker::Report).await?;
        }
        let (mut delivered, mut late, mut clients) = (0, 0, 0);
        let mut errors = ErrorCounts::default();
        let mut hist = new_histogram();
        let mut seconds: Vec<Histogram<u64>> = Vec::new();
        for w in &mut self.workers {
            let FromWorker::Report {
                delivered: d,
                late: l,
                latency_hist,
                intervals,
                errors: e,
                clients: c,
            } = w.reply().await?
            else {
                anyhow::bail!("{} answered Report with something else", w.label);
            };
            delivered += d;
            late += l;
            clients += c;
            errors.add(&e);
            latency_hist.merge_into(&mut hist);
            // Every worker's seconds are the same seconds (of intended send time): merged.
            seconds.resize_with(seconds.len().max(intervals.len()), new_histogram);
            for (merged, h) in seconds.iter_mut().zip(&intervals) {
                h.merge_into(merged);
            }
        }
        Ok((delivered, errors, late, hist, seconds, clients))
    }
}

/// Has each worker publish its publishers' share of `schedule` (`shares`: each worker's
/// first publisher's global index and its count), and merges what they published.
async fn publish_on_agents(
    workers: &mut [Worker],
    shares: &[(u64, u64)],
    schedule: super::publish::Schedule,
) -> anyhow::Result<super::publish::Published> {
    let all: u64 = shares.iter().map(|&(_, n)| n).sum();
    for (w, &(first, _)) in workers.iter_mut().zip(shares) {
        let mut mine = schedule;
        mine.publishers = Some((first, all));
        w.send(&ToWorker::Publish { schedule: mine }).await?;
    }
    let mut published = super::publish::Published {
        per_channel: vec![0; schedule.channels as usize],
    };
    for w in workers.iter_mut() {
        let FromWorker::Published { per_channel } = w.reply().await? else {
            anyhow::bail!("{} answered Publish with something else", w.label);
        };
        published.add(&per_channel);
    }
    Ok(published)
}

/// Sleeps until `at_ns` on the monotonic clock the payloads are stamped with.
async fn sleep_until_ns(at_ns: u64) {
    let now = stamp::now_ns();
    if at_ns > now {
        tokio::time::sleep(Duration::from_nanos(at_ns - now)).await;
    }
}
