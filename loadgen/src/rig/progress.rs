//! The once-a-second sampler: records a [`Sample`] and shows a live line saying what the run
//! is doing (connecting, publishing, waiting for the last deliveries), so a step that waits
//! on connect timeouts does not look like a stall.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::control::Progress;
use super::stamp;
use crate::model::hosts::HostSample;
use crate::model::units::{grouped, mib, short, Style};
use crate::model::{Phase, Sample};
use crate::os::Sampler;

/// What the engine tells the sampler about where the run is.
#[derive(Debug, Default)]
pub struct Position {
    pub step: AtomicUsize,
    /// Steps in the run, 0 when not known in advance (a throughput search).
    pub steps: AtomicUsize,
    doing: Mutex<Doing>,
    /// The last hold: when it started and ended, and the deliveries it called for.
    hold: Mutex<Option<Hold>>,
    /// Each worker's host (an index into `hosts`) and latest progress line.
    workers: Mutex<Vec<(usize, Arc<Mutex<Progress>>)>>,
    /// The hosts' names: "here", then each agent's.
    hosts: Mutex<Vec<String>>,
    /// The machine's cores, for "of 200%".
    pub cores: AtomicUsize,
}

/// A hold's deliveries per second called for, from `start_ns` to `end_ns` (on the
/// machine-wide monotonic clock).
#[derive(Debug, Clone, Copy)]
struct Hold {
    expected_per_sec: f64,
    start_ns: u64,
    end_ns: Option<u64>,
}

impl Hold {
    /// Deliveries per second called for over `from_ns..to_ns`: the full rate over the part of
    /// it the hold covers, so a second that straddles the start of a hold expects part of it.
    fn expected_over(&self, from_ns: u64, to_ns: u64) -> f64 {
        let end = self.end_ns.unwrap_or(to_ns);
        let covered = end.min(to_ns).saturating_sub(self.start_ns.max(from_ns));
        self.expected_per_sec * covered as f64 / to_ns.saturating_sub(from_ns).max(1) as f64
    }
}

/// The phase, with what the live line says about it.
#[derive(Debug, Clone, Copy, Default)]
enum Doing {
    #[default]
    Starting,
    Connecting {
        new: u64,
        timeout: Duration,
    },
    Holding {
        rate: f64,
    },
    Draining,
}

impl Position {
    pub fn watch_workers(&self, workers: Vec<(usize, Arc<Mutex<Progress>>)>) {
        *self.workers.lock().expect("position lock") = workers;
    }

    pub fn name_hosts(&self, hosts: Vec<String>) {
        *self.hosts.lock().expect("position lock") = hosts;
    }

    /// Connecting `new` subscribers, each given `timeout`.
    pub fn connecting(&self, new: u64, timeout: Duration) {
        *self.doing.lock().expect("position lock") = Doing::Connecting { new, timeout };
    }

    /// Publishing `rate` messages a second, each owed to `expected_per_sec / rate`
    /// subscribers on average.
    pub fn holding(&self, rate: f64, expected_per_sec: f64) {
        *self.doing.lock().expect("position lock") = Doing::Holding { rate };
        *self.hold.lock().expect("position lock") = Some(Hold {
            expected_per_sec,
            start_ns: stamp::now_ns(),
            end_ns: None,
        });
    }

    pub fn draining(&self) {
        *self.doing.lock().expect("position lock") = Doing::Draining;
        if let Some(hold) = self.hold.lock().expect("position lock").as_mut() {
            hold.end_ns = Some(stamp::now_ns());
        }
    }

    /// Each worker's latest progress.
    fn progress(&self) -> Vec<Progress> {
        let workers = self.workers.lock().expect("position lock");
        workers
            .iter()
            .map(|(_, w)| *w.lock().expect("progress lock"))
            .collect()
    }

    /// Each worker's host.
    fn worker_hosts(&self) -> Vec<usize> {
        let workers = self.workers.lock().expect("position lock");
        workers.iter().map(|(h, _)| *h).collect()
    }
}

/// Per host, what its workers used between two readings of their progress: their CPU from
/// the CPU time each reported (over the time between its own two reports), their resident
/// sets, and the machine's CPU from the /proc/uptime one of them read.
fn host_usage(
    now: &[Progress],
    before: &[Progress],
    worker_hosts: &[usize],
    names: &[String],
    t_secs: f64,
) -> Vec<HostSample> {
    let mut out: Vec<HostSample> = Vec::new();
    for (h, name) in names.iter().enumerate() {
        let mine: Vec<usize> = (0..now.len())
            .filter(|&i| worker_hosts.get(i) == Some(&h))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut sample = HostSample {
            t_secs,
            host: name.clone(),
            workers_cpu_pct: 0.0,
            workers_rss_bytes: 0,
            machine_cpu_pct: None,
        };
        for &i in &mine {
            let (p, b) = (&now[i], before.get(i).copied().unwrap_or_default());
            sample.workers_rss_bytes += p.rss_bytes;
            let secs = p.at_ns.saturating_sub(b.at_ns) as f64 / 1e9;
            if b.at_ns > 0 && secs > 0.0 {
                sample.workers_cpu_pct += p.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e7 / secs;
            }
            let up = p.machine_up_ns.saturating_sub(b.machine_up_ns) as f64;
            if sample.machine_cpu_pct.is_none() && b.machine_up_ns > 0 && up > 0.0 {
                let idle = p.machine_idle_ns.saturating_sub(b.machine_idle_ns) as f64;
                let busy = (up * f64::from(p.machine_cores) - idle).max(0.0);
                sample.machine_cpu_pct = Some(busy / up * 100.0);
            }
        }
        out.push(sample);
    }
    out
}

/// The workers' progress summed, with their delivery rate: each worker's deliveries since the
/// last reading divided by the time between its own two reports.
#[derive(Debug, Clone, Copy, Default)]
struct Summed {
    /// `None` until every worker has reported twice.
    delivered_per_sec: Option<f64>,
    clients: u64,
    connected: u64,
    connect_failed: u64,
}

fn sum(now: &[Progress], before: &[Progress]) -> Summed {
    let mut s = Summed {
        delivered_per_sec: Some(0.0),
        ..Summed::default()
    };
    for (i, p) in now.iter().enumerate() {
        s.clients += p.clients;
        s.connected += p.connected;
        s.connect_failed += p.connect_failed;
        let rate = before.get(i).and_then(|b| {
            let secs = p.at_ns.saturating_sub(b.at_ns) as f64 / 1e9;
            (b.at_ns > 0 && secs > 0.0)
                .then(|| p.delivered_total.saturating_sub(b.delivered_total) as f64 / secs)
        });
        s.delivered_per_sec = s.delivered_per_sec.zip(rate).map(|(a, b)| a + b);
    }
    s
}

/// Where a command's results go: its tables and verdict on stdout for a person, or, with
/// `--json`, its summary as JSON on stdout for a program (the tables then go to stderr, with
/// the progress).
#[derive(Debug, Clone, Copy, Default)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// A line of the human result.
    pub fn line(&self, text: &str) {
        match self.json {
            false => println!("{text}"),
            true => say(text),
        }
    }

    /// The machine-readable result: printed only with `--json`.
    pub fn summary(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(())
    }
}

/// Prints a line on stderr, first clearing the live line if one is showing.
pub fn say(text: &str) {
    let mut err = std::io::stderr().lock();
    if std::io::stderr().is_terminal() {
        let _ = write!(err, "\r\x1b[K");
    }
    let _ = writeln!(err, "{text}");
}

/// Samples every second until `stop` is cancelled; returns every sample taken.
pub fn spawn(
    mut sampler: Sampler,
    position: Arc<Position>,
    stop: CancellationToken,
) -> JoinHandle<(Vec<Sample>, Vec<HostSample>)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let live = std::io::stderr().is_terminal();
        let mut samples: Vec<Sample> = Vec::new();
        let mut hosts: Vec<HostSample> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut before, mut before_ns) = (position.progress(), stamp::now_ns());
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let r = sampler.read();
            let (now, now_ns) = (position.progress(), stamp::now_ns());
            let p = sum(&now, &before);
            let names = position.hosts.lock().expect("position lock").clone();
            let t_secs = started.elapsed().as_secs_f64();
            hosts.extend(host_usage(
                &now,
                &before,
                &position.worker_hosts(),
                &names,
                t_secs,
            ));
            let hold = *position.hold.lock().expect("position lock");
            // Nothing is compared until every worker's rate is known (its second report).
            let expected = match p.delivered_per_sec {
                Some(_) => hold.map_or(0.0, |h| h.expected_over(before_ns, now_ns)),
                None => 0.0,
            };
            (before, before_ns) = (now, now_ns);
            let doing = *position.doing.lock().expect("position lock");
            let phase = match doing {
                Doing::Starting => Phase::Starting,
                Doing::Connecting { .. } => Phase::Connecting,
                Doing::Holding { .. } => Phase::Holding,
                Doing::Draining => Phase::Draining,
            };
            let sample = Sample {
                t_secs,
                step: position.step.load(Relaxed),
                phase,
                clients: p.clients,
                delivered_per_sec: p.delivered_per_sec.unwrap_or(0.0).round() as u64,
                expected_per_sec: expected.round() as u64,
                broker_cpu_pct: r.broker_cpu_pct,
                broker_rss_bytes: r.broker_rss_bytes,
                loadgen_cpu_pct: r.loadgen_cpu_pct,
                loadgen_rss_bytes: r.loadgen_rss_bytes,
                host_mem_used_bytes: r.host_mem_used_bytes,
                host_cpu_pct: r.host_cpu_pct,
                host_mem_total_bytes: r.host_mem_total_bytes,
                conntrack_entries: r.conntrack_entries,
                kernel_slab_bytes: r.kernel_slab_bytes,
                open_files: r.open_files,
                listen_overflows: r.listen_drops.map(|d| d.0),
                listen_drops: r.listen_drops.map(|d| d.1),
            };
            let line = live_line(&position, doing, &p, &sample);
            let mut err = std::io::stderr().lock();
            if live {
                let _ = write!(err, "\r{line}\x1b[K");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
            samples.push(sample);
        }
        if live {
            eprint!("\r\x1b[K");
        }
        (samples, hosts)
    })
}

/// `[  14s] step 4/10  connecting 3,420 of 4,000 (12 failed; each may take up to 5s)  …` or
/// `[  20s] step 4/10  publishing 2,000 msg/s  clients 20,000  delivered 40.0k/s of 40.0k/s …`.
fn live_line(position: &Position, doing: Doing, p: &Summed, s: &Sample) -> String {
    let step = match position.steps.load(Relaxed) {
        // A throughput search does not know how many stages it will take.
        0 => format!("step {}", s.step),
        n => format!("step {}/{n}", s.step),
    };
    let what = match doing {
        Doing::Starting => "starting".to_string(),
        Doing::Connecting { new, timeout } => format!(
            "connecting {} of {} new ({} failed; each may take up to {})  clients {}",
            grouped(p.connected),
            grouped(new),
            grouped(p.connect_failed),
            humantime::format_duration(timeout),
            grouped(s.clients),
        ),
        Doing::Holding { rate, .. } => format!(
            "publishing {} msg/s  clients {}  delivered {}",
            grouped(rate.round() as u64),
            grouped(s.clients),
            match p.delivered_per_sec {
                Some(_) => format!(
                    "{}/s of {}/s",
                    short(s.delivered_per_sec as f64, Style::Axis),
                    short(s.expected_per_sec as f64, Style::Axis)
                ),
                None => "(measuring)".into(),
            },
        ),
        Doing::Draining => format!(
            "waiting for the last deliveries  clients {}  delivered {}/s",
            grouped(s.clients),
            short(s.delivered_per_sec as f64, Style::Axis),
        ),
    };
    let ceiling = 100 * position.cores.load(Relaxed).max(1);
    let broker = match crate::model::broker_sampled(s.broker_rss_bytes) {
        false => "broker not sampled".to_string(),
        true => format!(
            "broker cpu {:.0}%/{ceiling}% rss {}",
            s.broker_cpu_pct,
            mib(s.broker_rss_bytes)
        ),
    };
    format!(
        "[{:>5.0}s] {step}  {what}  {broker}  loadgen cpu {:.0}%/{ceiling}%",
        s.t_secs, s.loadgen_cpu_pct,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_second_straddling_a_hold_expects_the_part_it_covers() {
        let hold = Hold {
            expected_per_sec: 2_000.0,
            start_ns: 10 * SEC + SEC / 4,
            end_ns: Some(20 * SEC),
        };
        assert_eq!(hold.expected_over(10 * SEC, 11 * SEC), 1_500.0);
        assert_eq!(hold.expected_over(15 * SEC, 16 * SEC), 2_000.0);
        assert_eq!(
            hold.expected_over(19 * SEC + SEC / 2, 20 * SEC + SEC / 2),
            1_000.0
        );
        assert_eq!(hold.expected_over(21 * SEC, 22 * SEC), 0.0);
    }

    #[test]
    fn rates_are_taken_over_each_workers_own_interval() {
        let at = |ns, total| Progress {
            at_ns: ns,
            delivered_total: total,
            clients: 10,
            ..Default::default()
        };
        // One worker reported 0.9 s apart, the other 1.1 s: both delivered 1,000 a second.
        let before = [at(SEC, 0), at(SEC, 5_000)];
        let now = [at(SEC + 9 * SEC / 10, 900), at(2 * SEC + SEC / 10, 6_100)];
        let s = sum(&now, &before);
        assert!(
            (s.delivered_per_sec.unwrap() - 2_000.0).abs() < 1e-6,
            "{s:?}"
        );
        assert_eq!(s.clients, 20);
        // Before a worker's first report there is no rate to give.
        assert_eq!(
            sum(&now, &[Progress::default(), before[1]]).delivered_per_sec,
            None
        );
    }
}
