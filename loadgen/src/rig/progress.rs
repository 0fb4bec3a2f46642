//! The once-a-second sampler: records a [`Sample`] and shows a live progress line.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::Sample;
use crate::os::Sampler;

/// What the engine tells the sampler about where the run is.
#[derive(Debug, Default)]
pub struct Position {
    pub step: AtomicUsize,
    pub steps: AtomicUsize,
    /// Each worker's deliveries so far and subscribers now (from their progress lines).
    pub workers: Mutex<Vec<(Arc<AtomicU64>, Arc<AtomicU64>)>>,
}

impl Position {
    fn delivered(&self) -> u64 {
        let workers = self.workers.lock().expect("position lock");
        workers.iter().map(|(d, _)| d.load(Relaxed)).sum()
    }

    fn clients(&self) -> u64 {
        let workers = self.workers.lock().expect("position lock");
        workers.iter().map(|(_, c)| c.load(Relaxed)).sum()
    }
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
        let mut last_delivered = position.delivered();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let r = sampler.read();
            let delivered = position.delivered();
            let sample = Sample {
                t_secs: started.elapsed().as_secs_f64(),
                step: position.step.load(Relaxed),
                clients: position.clients(),
                delivered_per_sec: delivered.saturating_sub(last_delivered),
                broker_cpu_pct: r.broker_cpu_pct,
                broker_rss_bytes: r.broker_rss_bytes,
                loadgen_cpu_pct: r.loadgen_cpu_pct,
                loadgen_rss_bytes: r.loadgen_rss_bytes,
                host_mem_used_bytes: r.host_mem_used_bytes,
                host_mem_total_bytes: r.host_mem_total_bytes,
            };
            last_delivered = delivered;
            let line = format!(
                "[{:>5.0}s] step {}{}  clients {:>6}  delivered {:>8}/s  broker cpu {:>4.0}% rss {:>6.1} MiB  loadgen cpu {:>4.0}%",
                sample.t_secs,
                sample.step,
                // A throughput search does not know how many stages it will take.
                match position.steps.load(Relaxed) {
                    0 => String::new(),
                    n => format!("/{n}"),
                },
                sample.clients,
                sample.delivered_per_sec,
                sample.broker_cpu_pct,
                sample.broker_rss_bytes as f64 / 1048576.0,
                sample.loadgen_cpu_pct,
            );
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
            eprintln!();
        }
        samples
    })
}
