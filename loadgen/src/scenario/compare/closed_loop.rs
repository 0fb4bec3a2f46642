//! The scenarios measured by repeated closed-loop runs, every broker in turn with repeats
//! interleaved: fan-out at each window, and connect + subscribe; and the same with TLS and
//! without, side by side (`tls`).

use super::scenarios::At;
use super::setup::{Collected, Running, Scenario, CONNECTORS};
use crate::model::compare::{Judged, Measurement};
use crate::model::fanout::{Run, Spec};
use crate::proto::dial::Dial;
use crate::scenario::{connect, fanout};

/// Fan-out in `scenario`'s shape at each of `--windows`, every broker in turn.
pub(super) async fn fanout(at: &At<'_>, scenario: Scenario, got: &mut Collected) {
    for &window in &at.opts.windows {
        let name = format!("{}-w{window}", scenario.name());
        let spec = &fanout_spec(at, scenario, window);
        let rows =
            interleaved(
                at,
                &name,
                ("deliveries_per_sec", "deliveries/s"),
                |b, dial, tag| async move {
                    fanout::measure(b.addr, Some(b.pid), dial, spec, &tag).await
                },
            )
            .await;
        got.measurements.extend(rows);
    }
}

/// A fan-out run in `scenario`'s shape at `window`, sized by the comparison's options.
pub(super) fn fanout_spec(at: &At<'_>, scenario: Scenario, window: u64) -> Spec {
    let (publishers, subscribers, channels, size) =
        scenario.fanout_shape().expect("a fan-out scenario");
    Spec {
        publishers,
        subscribers,
        channels,
        size,
        window,
        warmup: at.opts.warmup,
        duration: at.opts.duration,
    }
}

/// A connect + subscribe run, sized by the comparison's options.
pub(super) fn connect_spec(at: &At<'_>) -> connect::Spec {
    connect::Spec {
        connectors: CONNECTORS,
        channels: 1_000,
        warmup: at.opts.warmup,
        duration: at.opts.duration,
    }
}

/// Connect + subscribe at steady state, every broker in turn, repeated runs interleaved.
pub(super) async fn connect(at: &At<'_>, got: &mut Collected) {
    let spec = &connect_spec(at);
    let rows = interleaved(
        at,
        "connect",
        ("connects_per_sec", "connects/s"),
        |b, dial, tag| async move { connect::measure(b.addr, Some(b.pid), dial, spec, &tag).await },
    )
    .await;
    got.measurements.extend(rows);
}

/// One contestant of an interleaved scenario: a broker, how it is reached, and the name of
/// the scenario its runs are reported under.
#[derive(Clone)]
pub(super) struct Entry {
    pub running: Running,
    pub dial: Dial,
    pub scenario: String,
}

/// `measure` run `--repeat` times against every broker, interleaved (each repeat visits every
/// broker before the next begins, so a noisy minute falls on all of them): a row per broker of
/// the rate as `metric`, with each run's steadiness and what set it. `metric` is the name and
/// the words the progress line uses for its unit.
async fn interleaved<F, Fut>(
    at: &At<'_>,
    name: &str,
    metric: (&'static str, &str),
    measure: F,
) -> Vec<Measurement>
where
    F: Fn(Running, Dial, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Run>>,
{
    let entries: Vec<Entry> = at
        .brokers
        .iter()
        .map(|b| Entry {
            running: *b,
            dial: b.broker.proto().into(),
            scenario: name.into(),
        })
        .collect();
    interleaved_entries(at, &entries, metric, measure).await
}

/// [`interleaved`] over any list of contestants, in its order: a row per entry.
pub(super) async fn interleaved_entries<F, Fut>(
    at: &At<'_>,
    entries: &[Entry],
    (metric, per_second): (&'static str, &str),
    measure: F,
) -> Vec<Measurement>
where
    F: Fn(Running, Dial, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Run>>,
{
    let mut rows: Vec<Measurement> = entries
        .iter()
        .map(|e| Measurement::new(&e.scenario, e.running.broker.name(), metric, "/s", true))
        .collect();
    for rep in 0..at.opts.repeat {
        for (entry, row) in entries.iter().zip(&mut rows) {
            if at.interrupt.is_cancelled() {
                break;
            }
            let (b, name) = (&entry.running, &entry.scenario);
            let tag = format!("{name}-{}-{rep}", std::process::id());
            match measure(*b, entry.dial.clone(), tag).await {
                Ok(r) => {
                    eprintln!(
                        "{name} {} run {}: {:.0} {per_second}, {}{}",
                        b.broker.name(),
                        rep + 1,
                        r.rate(),
                        r.bottleneck.class.name(),
                        if r.steadiness.steady {
                            ""
                        } else {
                            ", NOT steady"
                        }
                    );
                    row.runs.push(r.rate());
                    row.judged.push(Judged {
                        loadgen_us_per_delivery: r.loadgen_us_per_delivery(),
                        steady: r.steadiness.steady,
                        bottleneck: r.bottleneck,
                    });
                }
                Err(e) => {
                    eprintln!("{name} {} run {}: failed: {e:#}", b.broker.name(), rep + 1);
                    row.notes.push(format!("run {} failed: {e:#}", rep + 1));
                }
            }
        }
    }
    rows
}
