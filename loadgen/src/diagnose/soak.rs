//! The verdict of a soak: five checks over its windows and bursts, each with the numbers
//! behind it, so that a failed soak says which check failed and by how much.

use crate::model::soak::{Check, CheckKind, RssRule, SoakSummary};
use crate::model::units::{grouped, ms, trimmed};

/// How much the broker's RSS may grow from the first third of a soak to the last, as a
/// fraction of the first third's largest, plus [`RSS_SLACK_MIB`]: an allocator's arenas and
/// a burst that lands in one third but not the other move RSS by a few MiB without any leak,
/// while a leak of even a few bytes per message over 30 minutes grows it by far more.
pub const RSS_GROWTH: f64 = 0.10;
pub const RSS_SLACK_MIB: f64 = 8.0;
/// Windows a soak needs for its RSS to be judged: a first one (connecting), and a baseline
/// and an end that do not overlap.
pub const MIN_WINDOWS: usize = 3;

/// The checks of `s` (its own `checks` and `rss_rule` are not read), in the order a reader
/// takes them: clients held, no loss, bursts whole, RSS flat, latency.
pub fn judge(s: &SoakSummary) -> (Vec<Check>, RssRule) {
    let rule = rss_rule(s);
    let checks = vec![
        held(s),
        no_loss(s),
        bursts(s),
        flat_rss(s, &rule),
        latency(s),
    ];
    (checks, rule)
}

fn check(kind: CheckKind, passed: bool, evidence: String) -> Check {
    Check {
        kind,
        passed,
        evidence,
    }
}

fn held(s: &SoakSummary) -> Check {
    let healthy = s.populations.healthy;
    let short = s.windows.iter().find(|w| w.figures.clients < healthy);
    let errors = s.steps.iter().find(|st| st.errors.total() > 0);
    let n = s.windows.len();
    match (short, errors) {
        (None, None) => check(
            CheckKind::Held,
            true,
            format!(
                "{} of {} healthy subscribers connected and stayed connected through {n} \
                 window(s)",
                grouped(healthy),
                grouped(healthy)
            ),
        ),
        (short, errors) => {
            let mut parts = Vec::new();
            if let Some(w) = short {
                parts.push(format!(
                    "window {}: {} of {} healthy subscribers connected",
                    w.figures.window,
                    grouped(w.figures.clients),
                    grouped(healthy)
                ));
            }
            if let Some(st) = errors {
                parts.push(format!(
                    "window {}: connection errors {}",
                    st.step,
                    st.errors.by_kind()
                ));
            }
            check(CheckKind::Held, false, parts.join("; "))
        }
    }
}

fn no_loss(s: &SoakSummary) -> Check {
    let (expected, lost) = s.windows.iter().fold((0, 0), |(e, l), w| {
        (e + w.figures.expected, l + w.figures.lost)
    });
    match s.windows.iter().find(|w| w.figures.lost > 0) {
        None => check(
            CheckKind::NoLoss,
            true,
            format!(
                "0 lost of {} deliveries expected over {} window(s)",
                grouped(expected),
                s.windows.len()
            ),
        ),
        Some(w) => {
            let bad = s.windows.iter().filter(|w| w.figures.lost > 0).count();
            check(
                CheckKind::NoLoss,
                false,
                format!(
                    "{} lost of {} expected in all; {bad} window(s) lost deliveries, the first \
                     window {}: {} of {}",
                    grouped(lost),
                    grouped(expected),
                    w.figures.window,
                    grouped(w.figures.lost),
                    grouped(w.figures.expected)
                ),
            )
        }
    }
}

fn bursts(s: &SoakSummary) -> Check {
    let p = &s.populations;
    if p.burst_readers == 0 {
        return check(
            CheckKind::Bursts,
            true,
            "not judged: no burst readers".into(),
        );
    }
    let cuts = s.abuse_total().burst_reader_cuts;
    if s.bursts.is_empty() && cuts == 0 {
        return check(
            CheckKind::Bursts,
            true,
            format!(
                "not judged: no burst was due (one every {} s)",
                trimmed(p.burst_every_secs)
            ),
        );
    }
    let incomplete: Vec<_> = s.bursts.iter().filter(|b| !b.complete()).collect();
    let whole = s.bursts.len() - incomplete.len();
    let mut evidence = format!(
        "{whole} of {} burst(s) of {} × {} B received whole by all {} readers",
        s.bursts.len(),
        grouped(p.burst_messages),
        grouped(p.burst_bytes),
        p.burst_readers
    );
    if let Some(b) = incomplete.first() {
        let least = b.received.iter().min().copied().unwrap_or(0);
        let most = b.received.iter().max().copied().unwrap_or(0);
        evidence += &format!(
            "; the first incomplete, burst {} at {} s{}: readers received {}–{} of {}",
            b.id,
            trimmed(b.at_ms as f64 / 1000.0),
            if b.sent_whole {
                ""
            } else {
                " (not sent whole)"
            },
            grouped(least),
            grouped(most),
            grouped(b.messages)
        );
    }
    if cuts > 0 {
        evidence += &format!("; burst reader connections lost: {cuts}");
    }
    check(
        CheckKind::Bursts,
        incomplete.is_empty() && cuts == 0,
        evidence,
    )
}

/// The baseline (windows 2 to the end of the first third) and the end (the last third) of
/// the windows measured, with their largest RSS.
fn rss_rule(s: &SoakSummary) -> RssRule {
    let n = s.windows.len();
    let third = n.div_ceil(3).max(1);
    let baseline_windows = (2, third.max(2));
    let final_windows = ((n + 1).saturating_sub(third).max(1), n);
    let max_in = |(from, to): (usize, usize)| {
        s.windows
            .iter()
            .map(|w| &w.figures)
            .filter(|f| (from..=to).contains(&f.window))
            .map(|f| f.broker_rss_mib)
            .fold(0.0, f64::max)
    };
    let baseline_max_mib = max_in(baseline_windows);
    RssRule {
        growth: RSS_GROWTH,
        slack_mib: RSS_SLACK_MIB,
        baseline_windows,
        final_windows,
        baseline_max_mib,
        final_max_mib: max_in(final_windows),
        limit_mib: baseline_max_mib * (1.0 + RSS_GROWTH) + RSS_SLACK_MIB,
    }
}

fn flat_rss(s: &SoakSummary, r: &RssRule) -> Check {
    let n = s.windows.len();
    if n < MIN_WINDOWS {
        let why = format!("not judged: {n} window(s) measured, {MIN_WINDOWS} needed");
        return check(CheckKind::FlatRss, true, why);
    }
    if r.baseline_max_mib <= 0.0 {
        let why = "not judged: the broker's RSS was not sampled (give --broker-pid)";
        return check(CheckKind::FlatRss, true, why.into());
    }
    let passed = r.final_max_mib <= r.limit_mib;
    let evidence = format!(
        "largest RSS in windows {}–{} (the last third) {} MiB {} the limit of {} MiB: the \
         largest in windows {}–{} (the first third, after the first window) {} MiB + {}% + {} \
         MiB",
        r.final_windows.0,
        r.final_windows.1,
        trimmed(r.final_max_mib),
        if passed { "within" } else { "over" },
        trimmed(r.limit_mib),
        r.baseline_windows.0,
        r.baseline_windows.1,
        trimmed(r.baseline_max_mib),
        trimmed(r.growth * 100.0),
        trimmed(r.slack_mib)
    );
    check(CheckKind::FlatRss, passed, evidence)
}

fn latency(s: &SoakSummary) -> Check {
    let worst = s
        .windows
        .iter()
        .map(|w| &w.figures)
        .max_by_key(|f| f.p99_us);
    let Some(worst) = worst else {
        return check(CheckKind::Latency, true, "not judged: no window".into());
    };
    let over = s
        .windows
        .iter()
        .filter(|w| w.figures.p99_us > s.slo_p99_us)
        .count();
    let passed = over == 0;
    let mut evidence = format!(
        "worst window {}: p99 {} (p50 {}, max {}) against the objective of {}",
        worst.window,
        ms(worst.p99_us),
        ms(worst.p50_us),
        ms(worst.max_us),
        ms(s.slo_p99_us)
    );
    if !passed {
        evidence += &format!("; {over} window(s) over it");
    }
    check(CheckKind::Latency, passed, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::soak::{AbuseCounts, Burst, Figures, Populations, Window};
    use crate::model::StepResult;

    fn window(i: usize, rss: f64, lost: u64, p99_us: u64) -> Window {
        Window {
            figures: Figures {
                window: i,
                clients: 100,
                expected: 1_000,
                delivered: 1_000 - lost,
                lost,
                p50_us: 300,
                p99_us,
                broker_rss_mib: rss,
                ..Default::default()
            },
            abuse: AbuseCounts::default(),
        }
    }

    fn soak(rss: &[f64]) -> SoakSummary {
        SoakSummary {
            passed: false,
            interrupted: false,
            checks: Vec::new(),
            rss_rule: RssRule::default(),
            populations: Populations {
                clients: 130,
                healthy: 100,
                burst_readers: 2,
                burst_messages: 10,
                burst_bytes: 1024,
                burst_every_secs: 30.0,
                ..Default::default()
            },
            rate: 100.0,
            channels: 10,
            window_secs: 60.0,
            windows_planned: rss.len(),
            wall_secs: 0.0,
            slo_p99_us: 50_000,
            nofile_raised: None,
            clients_capped: None,
            windows: (1..=rss.len())
                .map(|i| window(i, rss[i - 1], 0, 1_000))
                .collect(),
            bursts: vec![Burst {
                id: 0,
                at_ms: 30_000,
                messages: 10,
                sent_whole: true,
                received: vec![10, 10],
            }],
            steps: (1..=rss.len())
                .map(|step| StepResult {
                    step,
                    ..Default::default()
                })
                .collect(),
            limits: Default::default(),
            command_line: String::new(),
            provenance: None,
        }
    }

    fn passed(s: &SoakSummary, kind: CheckKind) -> (bool, String) {
        let (checks, _) = judge(s);
        let c = checks.into_iter().find(|c| c.kind == kind).unwrap();
        (c.passed, c.evidence)
    }

    #[test]
    fn a_quiet_soak_passes_every_check() {
        let (checks, rule) = judge(&soak(&[50.0, 100.0, 101.0, 102.0, 104.0, 110.0]));
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        assert_eq!(rule.baseline_windows, (2, 2));
        assert_eq!(rule.final_windows, (5, 6));
        assert_eq!(rule.limit_mib, 100.0 * 1.1 + 8.0);
        assert_eq!(rule.final_max_mib, 110.0);
    }

    #[test]
    fn thirds_of_thirty_windows() {
        let rss: Vec<f64> = (0..30).map(|i| 100.0 + i as f64).collect();
        let (_, rule) = judge(&soak(&rss));
        assert_eq!(rule.baseline_windows, (2, 10));
        assert_eq!(rule.final_windows, (21, 30));
        assert_eq!(rule.baseline_max_mib, 109.0);
        assert_eq!(rule.final_max_mib, 129.0);
    }

    #[test]
    fn rss_that_keeps_growing_fails_with_its_numbers() {
        let s = soak(&[50.0, 100.0, 130.0, 160.0]);
        let (ok, evidence) = passed(&s, CheckKind::FlatRss);
        assert!(!ok);
        assert!(
            evidence.starts_with(
                "largest RSS in windows 3–4 (the last third) 160 MiB over the limit of 118 MiB"
            ),
            "{evidence}"
        );
        let (ok, evidence) = passed(&soak(&[50.0, 100.0]), CheckKind::FlatRss);
        assert!(ok && evidence.starts_with("not judged"), "{evidence}");
    }

    #[test]
    fn loss_latency_and_bursts_say_which_window_and_how_much() {
        let mut s = soak(&[10.0, 10.0, 10.0]);
        s.windows[1] = window(2, 10.0, 7, 80_000);
        let (ok, evidence) = passed(&s, CheckKind::NoLoss);
        assert!(!ok);
        assert!(evidence.contains("window 2: 7 of 1,000"), "{evidence}");
        let (ok, evidence) = passed(&s, CheckKind::Latency);
        assert!(!ok);
        assert!(
            evidence.starts_with("worst window 2: p99 80.0 ms"),
            "{evidence}"
        );
        s.bursts[0].received[1] = 9;
        let (ok, evidence) = passed(&s, CheckKind::Bursts);
        assert!(!ok);
        assert!(
            evidence.contains("readers received 9–10 of 10"),
            "{evidence}"
        );
        s.bursts.clear();
        let (ok, evidence) = passed(&s, CheckKind::Bursts);
        assert!(ok && evidence.starts_with("not judged"), "{evidence}");
        s.windows[2].abuse.burst_reader_cuts = 1;
        assert!(!passed(&s, CheckKind::Bursts).0, "a cut reader fails");
    }

    #[test]
    fn a_subscriber_short_or_a_connection_error_fails_held() {
        let mut s = soak(&[10.0, 10.0, 10.0]);
        assert!(passed(&s, CheckKind::Held).0);
        s.windows[2].figures.clients = 99;
        s.steps[0].errors.timeout = 1;
        let (ok, evidence) = passed(&s, CheckKind::Held);
        assert!(!ok);
        assert_eq!(
            evidence,
            "window 3: 99 of 100 healthy subscribers connected; window 1: connection errors \
             1 timeout"
        );
    }
}
