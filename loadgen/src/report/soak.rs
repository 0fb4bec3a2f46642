//! The report of a soak: `soak.csv` (a row per window: the healthy traffic and the broker,
//! then what the misbehaving clients did), `samples.csv`, `summary.json`, `summary.md` (the
//! verdict and each check with its numbers first) and `soak.png`.

use std::fmt::Write as _;
use std::path::Path;

use super::csv::write_samples_csv;
use super::files::{write_json, write_rows, write_text, ReportError};
use super::plots::soak::plot_soak;
use crate::model::soak::{AbuseCounts, SoakSummary, Window};
use crate::model::units::{grouped, ms, ms_number, trimmed};
use crate::model::Sample;

/// Writes every file of a soak's report into `dir`; `p99_per_second` is each counted
/// second's delivery p99 (seconds since the start, µs), for the chart.
pub fn write_soak(
    dir: &Path,
    s: &SoakSummary,
    samples: &[Sample],
    p99_per_second: &[(f64, u64)],
) -> Result<(), ReportError> {
    write_windows_csv(&dir.join("soak.csv"), &s.windows)?;
    write_samples_csv(&dir.join("samples.csv"), samples)?;
    write_json(&dir.join("summary.json"), s)?;
    write_text(&dir.join("summary.md"), &soak_markdown(s))?;
    plot_soak(&dir.join("soak.png"), s, samples, p99_per_second)
}

/// Writes `soak.csv`: the columns of [`Figures`](crate::model::soak::Figures) then those of
/// [`AbuseCounts`], a row per window.
pub fn write_windows_csv(path: &Path, windows: &[Window]) -> Result<(), ReportError> {
    write_rows(path, windows.iter().map(|w| (&w.figures, &w.abuse)))
}

/// The verdict in a sentence: passed, or which checks failed, and what was held for how long.
pub fn verdict_text(s: &SoakSummary) -> String {
    let p = &s.populations;
    let held = format!(
        "{} clients ({} healthy subscribers, {} misbehaving) for {} window(s) of {} s",
        grouped(p.clients),
        grouped(p.healthy),
        grouped(p.clients - p.healthy),
        s.windows.len(),
        trimmed(s.window_secs),
    );
    let mut failed: Vec<String> = s
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.kind.question(), c.evidence))
        .collect();
    if let Some(w) = s.windows.iter().find(|w| !w.figures.broker_alive) {
        failed.insert(
            0,
            format!("the broker exited during window {}", w.figures.window),
        );
    } else if s.windows.len() < s.windows_planned {
        failed.insert(
            0,
            format!(
                "{} of {} windows measured",
                s.windows.len(),
                s.windows_planned
            ),
        );
    }
    match (s.interrupted, s.passed) {
        (true, _) => format!(
            "soak interrupted after {held} (of {} planned); nothing is judged",
            s.windows_planned
        ),
        (false, true) => format!("soak passed: {held}; every check met"),
        (false, false) => format!("soak failed: {held}; not met: {}", failed.join("; ")),
    }
}

/// One line per finished window, for the terminal.
pub fn window_line(w: &Window, slo_p99_us: u64) -> String {
    let (f, a) = (&w.figures, &w.abuse);
    let flag = match (f.lost > 0, f.p99_us > slo_p99_us) {
        (false, false) => "",
        (true, _) => "  <- lost deliveries",
        (false, true) => "  <- late deliveries",
    };
    format!(
        "window {:>3} ({:>5.0}–{:>5.0} s): {} healthy, delivered {}/{} (lost {}), p50 {} p99 {}; \
         broker rss {:.0} MiB, {} conns; churn {}+/{}−/{} failed; slow cut {} (told {}); \
         malformed ERRORs {} (unanswered {}); burst reader cuts {}{flag}",
        f.window,
        f.start_secs,
        f.end_secs,
        grouped(f.clients),
        grouped(f.delivered),
        grouped(f.expected),
        grouped(f.lost),
        ms(f.p50_us),
        ms(f.p99_us),
        f.broker_rss_mib,
        grouped(f.broker_connections),
        a.churn_connects,
        a.churn_disconnects,
        a.churn_failures,
        a.slow_cuts,
        a.slow_cuts_told,
        a.malformed_errors,
        a.malformed_unanswered,
        a.burst_reader_cuts,
    )
}

/// The text of `summary.md`.
pub fn soak_markdown(s: &SoakSummary) -> String {
    let mut md = String::from("# hubbub soak\n\n");
    let _ = writeln!(md, "**{}**\n", verdict_text(s));
    md.push_str("## Checks\n\n| check | result | evidence |\n|---|---|---|\n");
    for c in &s.checks {
        let result = if c.passed { "met" } else { "**not met**" };
        let _ = writeln!(md, "| {} | {result} | {} |", c.kind.question(), c.evidence);
    }
    let r = &s.rss_rule;
    let _ = writeln!(
        md,
        "\nFlat RSS, as judged here: the broker's largest resident set in the last third of \
         the windows may exceed the largest in the first third (the first window left out: it \
         holds the connecting) by at most {}% plus {} MiB. Each window's RSS is the largest of \
         its once-a-second samples. Latency is measured from each message's intended send \
         time; the objective is p99 within {}.\n",
        trimmed(r.growth * 100.0),
        trimmed(r.slack_mib),
        ms(s.slo_p99_us)
    );
    clients_section(&mut md, s);
    windows_section(&mut md, s);
    let _ = writeln!(md, "\n## Command\n\n```\n{}\n```", s.command_line);
    if let Some(p) = &s.provenance {
        let _ = writeln!(md, "\nMeasured on {}.", p.line());
    }
    md
}

fn clients_section(md: &mut String, s: &SoakSummary) {
    let p = &s.populations;
    let t = s.abuse_total();
    let _ = writeln!(
        md,
        "## Clients\n\n| clients | how many | what they do | what they got, in all |\n\
         |---|---:|---|---|"
    );
    let rows = [
        (
            "healthy subscribers",
            p.healthy,
            format!(
                "one channel each of {}; {} msg/s published over all of them",
                grouped(s.channels),
                grouped(s.rate.round() as u64)
            ),
            "see the checks".to_string(),
        ),
        (
            "churn",
            p.churn,
            format!(
                "{} new connections a second, each subscribes to a random channel, reads, and \
                 leaves after a few seconds",
                trimmed(p.churn_per_sec)
            ),
            format!(
                "{} connected, {} left, {} failed",
                grouped(t.churn_connects),
                grouped(t.churn_disconnects),
                grouped(t.churn_failures)
            ),
        ),
        (
            "burst readers",
            p.burst_readers,
            format!(
                "read, as fast as they can, a burst of {} × {} B every {} s",
                grouped(p.burst_messages),
                grouped(p.burst_bytes),
                trimmed(p.burst_every_secs)
            ),
            format!(
                "{} of {} bursts whole, {} messages, {} connections lost",
                s.bursts.iter().filter(|b| b.complete()).count(),
                s.bursts.len(),
                grouped(t.burst_messages_received),
                t.burst_reader_cuts
            ),
        ),
        (
            "slow consumers",
            p.slow,
            format!(
                "subscribe to the bursts and do not read for {} s, then look whether they \
                 were cut, and start again",
                trimmed(p.slow_stall_secs)
            ),
            format!(
                "cut {} times ({} with an ERROR first), {} stalls not cut",
                t.slow_cuts, t.slow_cuts_told, t.slow_uncut
            ),
        ),
        (
            "malformed",
            p.malformed,
            "send bad JSON, an unknown command, an over-long channel and a non-object, then \
             half a frame and silence; reconnect when closed"
                .to_string(),
            malformed_outcome(&t),
        ),
    ];
    for (who, n, what, got) in rows {
        let _ = writeln!(md, "| {who} | {} | {what} | {got} |", grouped(n));
    }
    if let Some(capped) = &s.clients_capped {
        let _ = writeln!(md, "\n{capped} (`--clients`).");
    }
    if let Some((from, to)) = s.nofile_raised {
        let _ = writeln!(
            md,
            "\nloadgen raised the open-files hard limit from {} to {} (as root) so that the \
             broker it started could hold every client.",
            grouped(from),
            grouped(to)
        );
    }
}

fn malformed_outcome(t: &AbuseCounts) -> String {
    format!(
        "{} ERRORs for {} bad lines ({} unanswered); half frames: {} closed by the broker ({} \
         with an ERROR), {} still held when given up on; {} failed connects (all misbehaving \
         clients)",
        grouped(t.malformed_errors),
        grouped(t.malformed_sent),
        t.malformed_unanswered,
        t.half_frames_closed,
        t.half_frames_told,
        t.half_frames_held,
        t.abuser_connect_failures
    )
}

fn windows_section(md: &mut String, s: &SoakSummary) {
    md.push_str(
        "\n## Windows\n\n| window | span (s) | healthy | delivered / expected | lost | p50 (ms) \
         | p99 (ms) | broker RSS (MiB) | broker conns | churn in / out | bursts whole / sent | \
         slow cut (told) | malformed ERRORs | loadgen RSS (MiB) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|\n",
    );
    for w in &s.windows {
        let (f, a) = (&w.figures, &w.abuse);
        let _ = writeln!(
            md,
            "| {} | {:.0}–{:.0} | {} | {} / {} | {} | {} | {} | {:.1} | {} | {} / {} | {} / {} \
             | {} ({}) | {} | {:.0} |",
            f.window,
            f.start_secs,
            f.end_secs,
            f.clients,
            f.delivered,
            f.expected,
            f.lost,
            ms_number(f.p50_us),
            ms_number(f.p99_us),
            f.broker_rss_mib,
            f.broker_connections,
            a.churn_connects,
            a.churn_disconnects,
            a.bursts_complete,
            a.bursts_sent,
            a.slow_cuts,
            a.slow_cuts_told,
            a.malformed_errors,
            f.loadgen_rss_mib,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::soak::{Burst, Check, CheckKind, Figures, Populations, RssRule};

    /// A made-up 30-minute soak: 30 windows of 60 s, a burst every 30 s, RSS with a slow
    /// sawtooth, the first three windows very late (as on a busy machine) and one a little.
    fn soak() -> (SoakSummary, Vec<Sample>, Vec<(f64, u64)>) {
        let windows: Vec<Window> = (1..=30)
            .map(|i| {
                let start = 20.0 + (i - 1) as f64 * 63.0;
                Window {
                    figures: Figures {
                        window: i,
                        start_secs: start,
                        end_secs: start + 63.0,
                        counted_from_secs: start + 2.0,
                        counted_secs: 60.0,
                        clients: 19_659,
                        expected: 2_360_000,
                        delivered: 2_360_000,
                        p50_us: 300 + i as u64 * 5,
                        p99_us: match i {
                            1..=3 => 1_900_000,
                            17 => 61_000,
                            _ => 2_000 + i as u64 * 50,
                        },
                        broker_rss_mib: 30.0 + (i % 4) as f64,
                        broker_alive: true,
                        ..Default::default()
                    },
                    abuse: AbuseCounts {
                        churn_connects: 3_000,
                        malformed_errors: 200,
                        ..Default::default()
                    },
                }
            })
            .collect();
        let samples = (0..1_910)
            .map(|t| Sample {
                t_secs: t as f64,
                broker_rss_bytes: ((28.0 + (t % 90) as f64 / 20.0) * 1048576.0) as u64,
                loadgen_rss_bytes: 250 << 20,
                ..Default::default()
            })
            .collect();
        let p99s = (22..1_900).map(|t| (t as f64 + 0.5, 1_500 + (t % 30) as u64 * 100));
        let s = SoakSummary {
            passed: false,
            interrupted: false,
            checks: vec![
                Check {
                    kind: CheckKind::NoLoss,
                    passed: true,
                    evidence: "0 lost".into(),
                },
                Check {
                    kind: CheckKind::Latency,
                    passed: false,
                    evidence: "worst window 17: p99 61.0 ms".into(),
                },
            ],
            rss_rule: RssRule {
                growth: 0.1,
                slack_mib: 8.0,
                baseline_windows: (2, 10),
                final_windows: (21, 30),
                baseline_max_mib: 33.0,
                final_max_mib: 33.0,
                limit_mib: 44.3,
            },
            populations: Populations {
                clients: 19_929,
                healthy: 19_659,
                churn: 200,
                churn_per_sec: 50.0,
                burst_readers: 10,
                burst_messages: 5_000,
                burst_bytes: 1_024,
                burst_every_secs: 30.0,
                slow: 10,
                slow_stall_secs: 100.0,
                malformed: 50,
            },
            rate: 2_000.0,
            channels: 1_000,
            window_secs: 60.0,
            windows_planned: 30,
            wall_secs: 1_910.0,
            slo_p99_us: 50_000,
            nofile_raised: None,
            clients_capped: Some("19,929 clients held, not the default 20,000: test".into()),
            windows,
            bursts: (0..63)
                .map(|id| Burst {
                    id,
                    at_ms: 50_000 + id * 30_000,
                    messages: 5_000,
                    sent_whole: true,
                    received: vec![5_000; 10],
                })
                .collect(),
            steps: Vec::new(),
            limits: Default::default(),
            command_line: "loadgen soak".into(),
            provenance: None,
        };
        (s, samples, p99s.collect())
    }

    #[test]
    fn writes_every_file_with_the_verdict_first() {
        let dir = std::env::temp_dir().join(format!("loadgen-soak-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (s, samples, p99s) = soak();
        write_soak(&dir, &s, &samples, &p99s).unwrap();
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        assert!(md.starts_with(
            "# hubbub soak\n\n**soak failed: 19,929 clients (19,659 healthy subscribers, 270 \
             misbehaving) for 30 window(s) of 60 s; not met: delivery p99 within the objective \
             in every window: worst window 17"
        ));
        assert!(md.contains("| delivery p99 within the objective in every window | **not met** |"));
        assert!(md.contains("\n19,929 clients held, not the default 20,000: test (`--clients`).\n"));
        let csv = std::fs::read_to_string(dir.join("soak.csv")).unwrap();
        assert_eq!(csv.lines().count(), 31);
        assert!(csv.starts_with("window,start_secs,end_secs,"));
        let back: SoakSummary =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(back, s);
        assert!(std::fs::metadata(dir.join("soak.png")).unwrap().len() > 30_000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Draws the made-up 30-minute soak into target/ to look at (`--ignored`).
    #[test]
    #[ignore]
    fn sample_chart() {
        let (s, samples, p99s) = soak();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/soak-sample.png");
        crate::report::plots::soak::plot_soak(&path, &s, &samples, &p99s).unwrap();
    }
}
