//! The comparison's files: `comparison.md` (the targets judged, then per scenario what ran
//! and its table), `comparison.csv`, `comparison.json` and the charts. What each scenario did
//! is worded here, where the options are known.

use std::fmt::Write as _;
use std::path::Path;

use super::setup::{goals, Broker, Collected, Opts, Scenario, LATENCY_SHAPES};
use crate::model::compare::judge;
use crate::model::units::{counted, grouped, in_words};
use crate::report::compare::{scenario_table, tls_cost_table, verdict_line};
use crate::report::files::{write_json, write_text};
use crate::report::plots::compare as plots;

/// The whole comparison in markdown: the goals judged, then per scenario what ran and its
/// table.
pub(super) fn markdown(opts: &Opts, scenarios: &[Scenario], got: &Collected) -> String {
    let others: Vec<&str> = opts
        .brokers
        .iter()
        .filter(|b| **b != Broker::Hubbub)
        .map(|b| b.title())
        .collect();
    let mut md = format!("# hubbub compared with {}\n\n", in_words(&others));
    let _ = writeln!(
        md,
        "Measured by `{}`. Ratios are hubbub ÷ the broker in that row, the medians', with a 95% \
         bootstrap interval; an interval that holds 1.0 is no measurable difference. For latency \
         and memory lower is better, so a ratio under 1 favours hubbub. What set each figure, \
         from every broker and loadgen thread's CPU over the counted window: broker-bound (the \
         broker's threads saturated), client-bound (loadgen saturated: a lower bound for the \
         broker), window-bound (neither, with publishers held to an in-flight window: the \
         window and the latency set the rate), rate-bound (neither, at a fixed offered rate: \
         the latency is the broker's at that load), machine-bound (the cores together). Steady: the per-second rates varied by at most \
         10% and drifted by at most 10% over the window.\n\nMeasured on {}; versions: {}.\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        got.provenance.line(),
        got.provenance
            .brokers
            .iter()
            .map(|b| format!("{} {}", b.broker, b.version.as_deref().unwrap_or("unknown")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let verdicts: Vec<String> = goals(&opts.windows)
        .iter()
        .filter_map(|g| judge(&got.measurements, g))
        .map(|v| format!("- {}", verdict_line(&v)))
        .collect();
    if !verdicts.is_empty() {
        let _ = writeln!(md, "## Targets\n\n{}\n", verdicts.join("\n"));
    }
    for s in scenarios {
        for name in s.reported_as(&opts.windows) {
            let _ = writeln!(md, "## {name}\n\n{}\n", describe(opts, *s, &name));
            md.push_str(&scenario_table(&got.measurements, &name));
            md.push('\n');
        }
        if let Some((plain, tls)) = s.tls_halves() {
            let _ = writeln!(
                md,
                "## What TLS costs ({})\n\nEach broker's median with TLS ÷ its median \
                 without, from the two tables above.\n\n{}",
                s.name(),
                tls_cost_table(&got.measurements, plain, tls)
            );
        }
    }
    md
}

/// What a scenario did, in a sentence, with its sizes.
fn describe(opts: &Opts, s: Scenario, name: &str) -> String {
    let runs = format!(
        "{} warm-up then {} counted, second by second; {} runs per broker, interleaved",
        humantime::format_duration(opts.warmup),
        humantime::format_duration(opts.duration),
        opts.repeat
    );
    if let Some((p, sub, c, size)) = s.fanout_shape() {
        let window = name.rsplit("-w").next().unwrap_or_default();
        return format!(
            "Fan-out at steady state: {p} publisher(s) on {c} channel(s), {sub} subscribers each \
             subscribed to every channel, {size}-byte messages, the publishers at most {window} \
             messages ahead of the slowest subscriber; {runs}. Chart: `fanout.png`."
        );
    }
    match s {
        Scenario::Fanout1x100Tls | Scenario::ConnectTls => describe_tls(opts, s, name, &runs),
        Scenario::Latency => {
            let l = LATENCY_SHAPES
                .iter()
                .find(|l| l.name == name)
                .expect("a latency shape");
            format!(
                "`loadgen latency`: {} publisher(s), {} subscribers of one channel, 64-byte \
                 messages at {} msg/s, latency from each message's intended send time; {runs}. \
                 Chart: `{name}.png` (each broker's median run).",
                l.publishers,
                l.subscribers,
                grouped(l.rate as u64)
            )
        }
        Scenario::Memory => format!(
            "`loadgen memory`: {} idle connections, {}; growth of the broker's resident memory \
             over its idle baseline, per connection; {} runs per broker. Chart: `memory.png`.",
            grouped(opts.memory_clients as u64),
            match name {
                "memory-own-channel" => "each subscribed to a channel of its own",
                _ => "each subscribed to one of 100 channels",
            },
            opts.repeat
        ),
        Scenario::Sustainable => format!(
            "`loadgen throughput`: 1 publisher, 100 subscribers of one channel (in two worker \
             processes), 64-byte messages; the offered rate doubles from 1,000 msg/s until a \
             rate is not delivered in full within the 50 ms p99 objective, then 3 bisections; \
             each rate 1 s warm-up then {} counted. The highest rate sustained, once per broker; \
             what set it is that stage's. Every stage: `detail/`.",
            humantime::format_duration(opts.search_hold)
        ),
        Scenario::Connect => format!(
            "Connect + subscribe at steady state: {} connectors, each over and over connecting, \
             opening the session, subscribing to one of 1,000 channels and waiting for the \
             broker's confirmation, then leaving with a reset (no TIME_WAIT); completed \
             connect + subscribes per second (and loadgen's µs per connect + subscribe in the \
             column for its CPU per delivery); {runs}.",
            super::setup::CONNECTORS
        ),
        _ => format!(
            "`loadgen ramp --max-clients {} --step {} --hold 3s`: subscribers added step by \
             step, 2,000 msg/s over 1,000 channels at each step, until a step fails. Chart: \
             `ramp.png`; every broker's own report is in `detail/`.",
            grouped(opts.ramp_max),
            grouped(opts.ramp_max / 5)
        ),
    }
}

/// What one half of a TLS scenario did.
fn describe_tls(opts: &Opts, s: Scenario, name: &str, runs: &str) -> String {
    let what = match s {
        Scenario::ConnectTls => format!(
            "connect + subscribe as in `connect`, {} connectors",
            super::setup::CONNECTORS
        ),
        _ => format!(
            "fanout-1x100 at a window of {}",
            grouped(super::setup::TLS_WINDOW)
        ),
    };
    let half = match name.ends_with("-tls") {
        true => {
            "over TLS to each broker's TLS listener (loadgen's side is rustls with \
                 ring, which prefers TLS 1.3; a handshake counts in its connect)"
        }
        false => "without TLS, each run just before the same broker's run over TLS",
    };
    format!(
        "The TLS scenario: {what}, {half}; brokers without TLS (plain tokio) are left out. \
         Certificates: {}. {runs}.",
        opts.tls_dir.display()
    )
}

/// `comparison.json`: where the figures came from, and every measurement.
#[derive(serde::Serialize)]
pub(super) struct Comparison<'a> {
    provenance: &'a crate::model::provenance::Provenance,
    measurements: &'a [crate::model::compare::Measurement],
}

impl<'a> Comparison<'a> {
    pub(super) fn of(got: &'a Collected) -> Self {
        Comparison {
            provenance: &got.provenance,
            measurements: &got.measurements,
        }
    }
}

pub(super) fn write_report(
    out: &Path,
    opts: &Opts,
    scenarios: &[Scenario],
    got: &Collected,
) -> anyhow::Result<()> {
    crate::report::compare::write_csv(&out.join("comparison.csv"), &got.measurements)?;
    write_json(&out.join("comparison.json"), &Comparison::of(got))?;
    write_text(&out.join("comparison.md"), &markdown(opts, scenarios, got))?;
    let runs = runs_line(opts);
    draw_fanout(out, opts, scenarios, &got.measurements)?;
    let mem_setup = format!(
        "{} idle connections over 100 shared channels, and each on a channel of its own; \
         growth of the broker's resident memory over its idle baseline, per connection",
        grouped(opts.memory_clients as u64)
    );
    plots::memory(&out.join("memory.png"), &got.measurements, &mem_setup)?;
    for l in LATENCY_SHAPES {
        let setup = format!(
            "{} publisher(s), {} subscribers of one channel, 64 B messages at {} msg/s; {runs}",
            l.publishers,
            l.subscribers,
            grouped(l.rate as u64)
        );
        let path = out.join(format!("{}.png", l.name));
        plots::spectra(&path, l.name, &got.spectra, got.slo_p99_us, &setup)?;
    }
    let ramp_setup = format!(
        "up to {} subscribers in steps of {} over 1,000 channels, 2,000 msg/s for 3s per step",
        grouped(opts.ramp_max),
        grouped(opts.ramp_max / 5)
    );
    plots::ramps(
        &out.join("ramp.png"),
        &got.ramps,
        got.slo_p99_us,
        &ramp_setup,
    )?;
    Ok(())
}

/// How every repeated run was measured, for the charts' subtitles.
fn runs_line(opts: &Opts) -> String {
    let threads = opts
        .hubbub_threads
        .map(|n| format!("; hubbub on {}", counted(u64::from(n), "worker thread")))
        .unwrap_or_default();
    format!(
        "{} warm-up + {} counted; {} runs per broker, interleaved; on loopback, brokers and \
         loadgen sharing the machine{threads}",
        humantime::format_duration(opts.warmup),
        humantime::format_duration(opts.duration),
        opts.repeat
    )
}

/// `fanout.png`: a panel per fan-out shape, captioned with the shape.
fn draw_fanout(
    out: &Path,
    opts: &Opts,
    scenarios: &[Scenario],
    measurements: &[crate::model::compare::Measurement],
) -> anyhow::Result<()> {
    let shapes: Vec<(String, Vec<String>)> = scenarios
        .iter()
        .filter_map(|s| {
            let (publishers, subscribers, channels, size) = s.fanout_shape()?;
            let caption = format!(
                "{} on {}, {} of {}, {size} B messages",
                counted(publishers as u64, "publisher"),
                counted(channels as u64, "channel"),
                counted(subscribers as u64, "subscriber"),
                if channels == 1 { "it" } else { "every one" },
            );
            Some((caption, s.reported_as(&opts.windows)))
        })
        .collect();
    let setup = format!(
        "fan-out at steady state; window N: the publishers at most N messages ahead of the \
         slowest subscriber; {}",
        runs_line(opts)
    );
    plots::fanout(&out.join("fanout.png"), measurements, &shapes, &setup)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redraws `fanout.png` of a comparison run from its `comparison.json`, for when the
    /// chart's drawing changed and the data did not; COMPARISON_ARGS repeats the run's own
    /// scenarios and sizes where they were not the defaults:
    /// `COMPARISON=../reports/compare cargo test -p loadgen --release redraw -- --ignored`.
    #[test]
    #[ignore]
    fn redraw_fanout_chart() {
        #[derive(serde::Deserialize)]
        struct Saved {
            measurements: Vec<crate::model::compare::Measurement>,
        }
        let dir = std::path::PathBuf::from(std::env::var("COMPARISON").expect("COMPARISON=DIR"));
        let text = std::fs::read_to_string(dir.join("comparison.json")).unwrap();
        let saved: Saved = serde_json::from_str(&text).unwrap();
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            opts: Opts,
        }
        let args = std::env::var("COMPARISON_ARGS").unwrap_or_default();
        let argv = std::iter::once("compare").chain(args.split_whitespace());
        let opts = <Cli as clap::Parser>::parse_from(argv).opts;
        let scenarios = match opts.scenarios.is_empty() {
            true => Scenario::ALL.to_vec(),
            false => opts.scenarios.clone(),
        };
        draw_fanout(&dir, &opts, &scenarios, &saved.measurements).unwrap();
    }
}
