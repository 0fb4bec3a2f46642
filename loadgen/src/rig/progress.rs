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
    /// Each worker's latest progress line.
    workers: Mutex<Vec<Arc<Mutex<Progress>>>>,
    /// The machine's cores, for "of 200%".
    pub cores: AtomicUsize,
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
        expected_per_sec: f64,
    },
    Draining,
}

impl Position {
    pub fn watch_workers(&self, workers: Vec<Arc<Mutex<Progress>>>) {
        *self.workers.lock().expect("position lock") = workers;
    }

    /// Connecting `new` subscribers, each given `timeout`.
    pub fn connecting(&self, new: u64, timeout: Duration) {
        *self.doing.lock().expect("position lock") = Doing::Connecting { new, timeout };
    }

    /// Publishing `rate` messages a second, each owed to `expected_per_sec / rate`
    /// subscribers on average.
    pub fn holding(&self, rate: f64, expected_per_sec: f64) {
        *self.doing.lock().expect("position lock") = Doing::Holding {
            rate,
            expected_per_sec,
        };
    }

    pub fn draining(&self) {
        *self.doing.lock().expect("position lock") = Doing::Draining;
    }

    /// The workers' progress, summed.
    fn progress(&self) -> Progress {
        let workers = self.workers.lock().expect("position lock");
        workers.iter().fold(Progress::default(), |mut sum, w| {
            let p = *w.lock().expect("progress lock");
            sum.delivered_total += p.delivered_total;
            sum.delivered_per_sec += p.delivered_per_sec;
            sum.clients += p.clients;
            sum.connected += p.connected;
            sum.connect_failed += p.connect_failed;
            sum
        })
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
) -> JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let live = std::io::stderr().is_terminal();
        let mut samples: Vec<Sample> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let r = sampler.read();
            let p = position.progress();
            let doing = *position.doing.lock().expect("position lock");
            let (phase, expected) = match doing {
                Doing::Starting => (Phase::Starting, 0.0),
                Doing::Connecting { .. } => (Phase::Connecting, 0.0),
                Doing::Holding {
                    expected_per_sec, ..
                } => (Phase::Holding, expected_per_sec),
                Doing::Draining => (Phase::Draining, 0.0),
            };
            let sample = Sample {
                t_secs: started.elapsed().as_secs_f64(),
                step: position.step.load(Relaxed),
                phase,
                clients: p.clients,
                delivered_per_sec: p.delivered_per_sec.round() as u64,
                expected_per_sec: expected.round() as u64,
                broker_cpu_pct: r.broker_cpu_pct,
                broker_rss_bytes: r.broker_rss_bytes,
                loadgen_cpu_pct: r.loadgen_cpu_pct,
                loadgen_rss_bytes: r.loadgen_rss_bytes,
                host_mem_used_bytes: r.host_mem_used_bytes,
                host_mem_total_bytes: r.host_mem_total_bytes,
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
        samples
    })
}

/// `[  14s] step 4/10  connecting 3,420 of 4,000 (12 failed; each may take up to 5s)  …` or
/// `[  20s] step 4/10  publishing 2,000 msg/s  clients 20,000  delivered 40.0k/s of 40.0k/s …`.
fn live_line(position: &Position, doing: Doing, p: &Progress, s: &Sample) -> String {
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
            "publishing {} msg/s  clients {}  delivered {}/s of {}/s",
            grouped(rate.round() as u64),
            grouped(s.clients),
            short(s.delivered_per_sec as f64, Style::Axis),
            short(s.expected_per_sec as f64, Style::Axis),
        ),
        Doing::Draining => format!(
            "waiting for the last deliveries  clients {}  delivered {}/s",
            grouped(s.clients),
            short(s.delivered_per_sec as f64, Style::Axis),
        ),
    };
    let ceiling = 100 * position.cores.load(Relaxed).max(1);
    format!(
        "[{:>5.0}s] {step}  {what}  broker cpu {:.0}%/{ceiling}% rss {}  loadgen cpu {:.0}%/{ceiling}%",
        s.t_secs,
        s.broker_cpu_pct,
        mib(s.broker_rss_bytes),
        s.loadgen_cpu_pct,
    )
}
