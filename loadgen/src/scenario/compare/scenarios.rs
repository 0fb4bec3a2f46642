//! One function per kind of scenario: each measures every broker (repeated runs interleaved
//! where the scenario repeats) and adds what it measured to the [`Collected`] results.
//!
//! Each runs the same code a user reaches through its own command, with that command's
//! options built as values: the command's defaults ([`defaults`]), then the fields this
//! scenario sets, by name, so that renaming an option breaks here at compile time.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use super::setup::{hubbub_args, Broker, Collected, Opts, Running, LATENCY_SHAPES, MEMORY_SHAPES};
use crate::model::compare::{Judged, Measurement};
use crate::model::units::grouped;
use crate::model::StepResult;
use crate::os::listener;
use crate::proto::Proto;
use crate::report::plots::compare::{Ramp, Spectrum};
use crate::rig::broker::UnderTest;
use crate::rig::options::{defaults, Audience, Common};
use crate::scenario::{latency, memory, ramp, throughput};

/// What every scenario is measured with: the comparison's options, the brokers, where the
/// detailed reports go, and the token that interrupts the run.
pub(super) struct At<'a> {
    pub opts: &'a Opts,
    pub brokers: &'a [Running],
    pub out: &'a Path,
    pub interrupt: &'a CancellationToken,
}

/// The options that point a rig-based command at `b`, writing its report into `out`.
fn aimed_at(b: &Running, out: &Path, warmup: Duration) -> Common {
    Common {
        target: vec![b.addr.into()],
        proto: b.broker.proto(),
        broker_pid: vec![b.pid],
        out: Some(out.to_path_buf()),
        warmup,
        ..Common::default()
    }
}

/// What a rig step's figure rests on, as the comparison keeps it.
fn judged(step: &StepResult) -> Option<Judged> {
    let bottleneck = step.bottleneck.clone()?;
    let cpu_secs = bottleneck.loadgen.total_pct / 100.0 * step.hold_secs;
    Some(Judged {
        loadgen_us_per_delivery: cpu_secs * 1e6 / step.delivered.max(1) as f64,
        steady: step.steady.unwrap_or(true),
        bottleneck,
    })
}

/// One broker's latency measurements: a row per percentile.
struct LatencyRows {
    p50: Measurement,
    p99: Measurement,
    p999: Measurement,
    /// Each run's whole histogram, for the chart.
    histograms: Vec<hdrhistogram::Histogram<u64>>,
}

pub(super) async fn latency(at: &At<'_>, got: &mut Collected) {
    for shape in LATENCY_SHAPES {
        let name = shape.name;
        let mut rows: Vec<LatencyRows> = at
            .brokers
            .iter()
            .map(|b| {
                let m = |metric| Measurement::new(name, b.broker.name(), metric, "ms", false);
                LatencyRows {
                    p50: m("p50_ms"),
                    p99: m("p99_ms"),
                    p999: m("p999_ms"),
                    histograms: Vec::new(),
                }
            })
            .collect();
        for rep in 0..at.opts.repeat {
            for (b, row) in at.brokers.iter().zip(&mut rows) {
                if at.interrupt.is_cancelled() {
                    break;
                }
                let dir =
                    at.out
                        .join("detail")
                        .join(format!("{name}-{}-{}", b.broker.name(), rep + 1));
                let run_opts = latency::Opts {
                    audience: Audience {
                        subscribers: shape.subscribers,
                        channels: 1,
                    },
                    rate: shape.rate,
                    duration: at.opts.duration,
                    common: Common {
                        publishers: shape.publishers,
                        ..aimed_at(b, &dir, at.opts.warmup)
                    },
                    ..defaults::<latency::Opts>()
                };
                match latency::execute(&run_opts, at.interrupt).await {
                    Ok((full, _)) if full.run.interrupted => {}
                    Ok((full, histogram)) => {
                        let summary = full.run;
                        let l = summary.latency;
                        let judged = summary.steps.first().and_then(judged);
                        for (m, us) in [
                            (&mut row.p50, l.p50_us),
                            (&mut row.p99, l.p99_us),
                            (&mut row.p999, l.p999_us),
                        ] {
                            m.runs.push(us as f64 / 1000.0);
                            m.judged.extend(judged.clone());
                        }
                        if let Some(why) = summary.stopped_because {
                            row.p99.notes.push(format!("run {}: {why}", rep + 1));
                        }
                        got.slo_p99_us = summary.slo_p99_us;
                        row.histograms.push(histogram);
                    }
                    Err(e) => row.p99.notes.push(format!("run {} failed: {e:#}", rep + 1)),
                }
            }
        }
        for (b, mut row) in at.brokers.iter().zip(rows) {
            // The run with the median p99 stands for its broker in the chart.
            let hs = &mut row.histograms;
            hs.sort_by_key(|h| h.value_at_quantile(0.99));
            if !hs.is_empty() {
                got.spectra.push(Spectrum {
                    scenario: name.into(),
                    broker: b.broker.name().into(),
                    class: row.p99.usual_class().map(|(c, _)| c.name()),
                    histogram: hs.swap_remove(hs.len() / 2),
                });
            }
            got.measurements.extend([row.p50, row.p99, row.p999]);
        }
    }
}

/// The highest rate each broker delivers in full within the objective, 1 publisher to 100
/// subscribers: `loadgen throughput`, once per broker, its stages shortened (`--search-hold`)
/// so a search of a dozen rates stays within minutes.
pub(super) async fn sustainable(at: &At<'_>, got: &mut Collected) {
    let name = "sustainable-1x100";
    for b in at.brokers {
        if at.interrupt.is_cancelled() {
            break;
        }
        let dir = at
            .out
            .join("detail")
            .join(format!("{name}-{}", b.broker.name()));
        let run_opts = throughput::Opts {
            audience: Audience {
                subscribers: 100,
                channels: 1,
            },
            start_rate: 1_000.0,
            factor: 2.0,
            refine: 3,
            hold: at.opts.search_hold,
            common: Common {
                publishers: 1,
                // Two worker processes, so the subscribers' side can use both cores.
                per_process: Some(50),
                ..aimed_at(b, &dir, Duration::from_secs(1))
            },
            ..defaults::<throughput::Opts>()
        };
        let mut rate = Measurement::new(name, b.broker.name(), "msgs_per_sec", "msg/s", true);
        let mut deliveries =
            Measurement::new(name, b.broker.name(), "deliveries_per_sec", "/s", true);
        match throughput::execute(&run_opts, at.interrupt).await {
            Ok(summary) if summary.interrupted => {}
            Ok(summary) => {
                let best = summary
                    .steps
                    .iter()
                    .find(|s| s.offered_rate == summary.rate);
                rate.runs.push(summary.rate);
                deliveries.runs.push(summary.deliveries_per_sec);
                if let Some(j) = best.and_then(judged) {
                    rate.judged.push(j.clone());
                    deliveries.judged.push(j);
                }
                rate.notes
                    .extend(summary.stopped_because.map(|w| format!("fell behind {w}")));
            }
            Err(e) => rate.notes.push(format!("failed: {e:#}")),
        }
        got.measurements.extend([rate, deliveries]);
    }
}

/// Every memory shape against every broker, each on a freshly started process where it can
/// be: hubbub's own for each shape, the peers restarted by `--restart-peers`. Updates the
/// peers' pids when they were restarted.
pub(super) async fn memory(
    opts: &Opts,
    brokers: &mut [Running],
    interrupt: &CancellationToken,
    got: &mut Collected,
) {
    for (shape, (name, channels_for)) in MEMORY_SHAPES.into_iter().enumerate() {
        let sizes = (
            opts.memory_clients,
            channels_for(opts.memory_clients),
            opts.repeat,
        );
        for b in brokers.iter_mut() {
            if interrupt.is_cancelled() {
                break;
            }
            let mut rss = Measurement::new(name, b.broker.name(), "rss_per_conn_bytes", "B", false);
            let mut slab = Measurement::new(
                name,
                b.broker.name(),
                "kernel_slab_per_conn_bytes",
                "B",
                false,
            );
            slab.notes.push(
                "machine-wide, both ends of each connection; other programs move it too".into(),
            );
            let result = match fresh(opts, b, shape).await {
                Ok((fresh, note)) => {
                    rss.notes.extend(note);
                    let pid = fresh.as_ref().map_or(b.pid, |f| f.pids[0]);
                    let addr = fresh.as_ref().map_or(b.addr, |f| f.addrs[0]);
                    let result =
                        memory::measure_broker(addr, pid, b.broker.proto(), sizes, interrupt).await;
                    if let Some(f) = fresh {
                        if let Err(e) = f.stop().await {
                            eprintln!("{name}: the hubbub started for it did not stop: {e:#}");
                        }
                    }
                    result
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(summary) => {
                    eprintln!(
                        "{name} {}: {:.0} B per connection (median of {})",
                        b.broker.name(),
                        summary.median_rss_per_conn,
                        summary.runs.len()
                    );
                    rss.runs = summary.runs.iter().map(|r| r.rss_per_conn).collect();
                    slab.runs = summary
                        .runs
                        .iter()
                        .filter_map(|r| r.kernel_slab_per_conn)
                        .collect();
                }
                Err(e) => {
                    eprintln!("{name} {}: failed: {e:#}", b.broker.name());
                    rss.notes.push(format!("failed: {e:#}"));
                }
            }
            got.measurements.extend([rss, slab]);
        }
    }
}

/// A fresh broker for memory shape number `shape`: a hubbub of its own (returned, to be
/// stopped after), or the peer `b` restarted by `--restart-peers` (its new pid written into
/// `b`). Without that command a peer is measured as found, with a note from the second shape
/// on.
async fn fresh(
    opts: &Opts,
    b: &mut Running,
    shape: usize,
) -> anyhow::Result<(Option<UnderTest>, Option<String>)> {
    if b.broker == Broker::Hubbub {
        let own = UnderTest::resolve(&[], &[], Proto::Hubbub, &hubbub_args(opts))?;
        return Ok((Some(own), None));
    }
    let Some(command) = &opts.restart_peers else {
        let note = (shape > 0).then(|| {
            "measured on a process that had already held the earlier shape's connections (no \
             --restart-peers): it may read too little"
                .to_string()
        });
        return Ok((None, note));
    };
    let name = b.broker.name();
    // The peers' scripts print what they did; that is not this run's output.
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} {name}"))
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .with_context(|| format!("run the --restart-peers command for {name}"))?;
    if !status.success() {
        bail!("`{command} {name}` failed ({status})");
    }
    b.pid = listener::pid_listening_on(b.addr.port())
        .with_context(|| format!("nothing listens on {} after `{command} {name}`", b.addr))?;
    Ok((None, None))
}

pub(super) async fn ramp(at: &At<'_>, got: &mut Collected) {
    for b in at.brokers {
        if at.interrupt.is_cancelled() {
            break;
        }
        let dir = at
            .out
            .join("detail")
            .join(format!("ramp-{}", b.broker.name()));
        let ramp_opts = ramp::Opts {
            max_clients: at.opts.ramp_max,
            step: Some(at.opts.ramp_max / 5),
            hold: Duration::from_secs(3),
            common: aimed_at(b, &dir, Duration::from_secs(1)),
            ..defaults::<ramp::Opts>()
        };
        let mut held = Measurement::new("ramp", b.broker.name(), "clients_held", "clients", true);
        match ramp::execute(&ramp_opts, at.interrupt).await {
            Ok(summary) if summary.interrupted => {}
            Ok(summary) => {
                held.runs.push(summary.clients_held as f64);
                held.notes.push(format!(
                    "stopped because {}: {}",
                    summary.binding_limit.kind.describe(),
                    summary.binding_limit.evidence
                ));
                got.slo_p99_us = summary.slo_p99_us;
                got.ramps.push(Ramp {
                    broker: b.broker.name().into(),
                    stopped: format!(
                        "held {}; {}",
                        grouped(summary.clients_held),
                        summary.binding_limit.kind.describe()
                    ),
                    steps: summary.steps,
                });
            }
            Err(e) => held.notes.push(format!("failed: {e:#}")),
        }
        got.measurements.push(held);
    }
}
