//! The scenarios measured by repeated closed-loop runs, every broker in turn with repeats
//! interleaved: fan-out at each window, and connect + subscribe.

use super::scenarios::At;
use super::setup::{Collected, Running, Scenario, CONNECTORS};
use crate::model::compare::{Judged, Measurement};
use crate::model::fanout::{Run, Spec};
use crate::scenario::{connect, fanout};

/// Fan-out in `scenario`'s shape at each of `--windows`, every broker in turn.
pub(super) async fn fanout(at: &At<'_>, scenario: Scenario, got: &mut Collected) {
    let (publishers, subscribers, channels, size) =
        scenario.fanout_shape().expect("a fan-out scenario");
    for &window in &at.opts.windows {
        let name = format!("{}-w{window}", scenario.name());
        let spec = &Spec {
            publishers,
            subscribers,
            channels,
            size,
            window,
            warmup: at.opts.warmup,
            duration: at.opts.duration,
        };
        let rows = interleaved(
            at,
            &name,
            ("deliveries_per_sec", "deliveries/s"),
            |b, tag| async move {
                fanout::measure(b.addr, Some(b.pid), b.broker.proto(), spec, &tag).await
            },
        )
        .await;
        got.measurements.extend(rows);
    }
}

/// Connect + subscribe at steady state, every broker in turn, repeated runs interleaved.
pub(super) async fn connect(at: &At<'_>, got: &mut Collected) {
    let spec = &connect::Spec {
        connectors: CONNECTORS,
        channels: 1_000,
        warmup: at.opts.warmup,
        duration: at.opts.duration,
    };
    let rows = interleaved(
        at,
        "connect",
        ("connects_per_sec", "connects/s"),
        |b, tag| async move {
            connect::measure(b.addr, Some(b.pid), b.broker.proto(), spec, &tag).await
        },
    )
    .await;
    got.measurements.extend(rows);
}

/// `measure` run `--repeat` times against every broker, interleaved (each repeat visits every
/// broker before the next begins, so a noisy minute falls on all of them): a row per broker of
/// the rate as `metric`, with each run's steadiness and what set it. `metric` is the name and
/// the words the progress line uses for its unit.
async fn interleaved<F, Fut>(
    at: &At<'_>,
    name: &str,
    (metric, per_second): (&'static str, &str),
    measure: F,
) -> Vec<Measurement>
where
    F: Fn(Running, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Run>>,
{
    let mut rows: Vec<Measurement> = at
        .brokers
        .iter()
        .map(|b| Measurement::new(name, b.broker.name(), metric, "/s", true))
        .collect();
    for rep in 0..at.opts.repeat {
        for (b, row) in at.brokers.iter().zip(&mut rows) {
            if at.interrupt.is_cancelled() {
                break;
            }
            let tag = format!("{name}-{}-{rep}", std::process::id());
            match measure(*b, tag).await {
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
