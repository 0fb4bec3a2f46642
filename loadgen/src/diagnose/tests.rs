//! Each limit kind from made-up steps: a passing ramp up to the step that breaks it.

use super::*;
use crate::model::Percentiles;

const SLO: u64 = 50_000;
const MIB: u64 = 1024 * 1024;

/// A healthy step: every delivery on time, modest CPU, broker alive.
fn ok_step(step: usize, clients: u64) -> StepResult {
    StepResult {
        step,
        target_clients: clients,
        clients,
        connect_rate: 2_000.0,
        connect_p50_us: 300,
        connect_p99_us: 2_000,
        published: 1_000,
        expected: clients * 10,
        delivered: clients * 10,
        latency: Percentiles {
            p50_us: 800,
            p90_us: 2_000,
            p99_us: 5_000,
            p999_us: 9_000,
            max_us: 20_000,
        },
        broker_cpu_pct: 40.0,
        broker_rss_bytes: 200 * MIB,
        loadgen_cpu_pct: 30.0,
        loadgen_rss_bytes: 100 * MIB,
        broker_alive: true,
        ..Default::default()
    }
}

fn limits() -> Limits {
    Limits {
        loadgen_nofile_soft: 1_048_576,
        loadgen_nofile_hard: 1_048_576,
        broker_nofile_soft: Some(10_000),
        broker_nofile_hard: Some(524_288),
        ephemeral_ports: (32_768, 60_999),
        somaxconn: Some(4096),
        file_max: Some(9_223_372_036_854_775_807),
        conntrack_max: Some(262_144),
        mem_total_bytes: 24 * 1024 * MIB,
        cores: 2,
        source_addresses: 1,
    }
}

/// Two passing steps (1000 and 2000 clients), then `last` as step 2.
fn ramp(last: StepResult) -> Vec<StepResult> {
    vec![ok_step(0, 1_000), ok_step(1, 2_000), last]
}

fn verdict(steps: &[StepResult]) -> (u64, BindingLimit) {
    diagnose(steps, &[], &limits(), SLO, 100_000)
}

#[test]
fn step_failed_names_each_reason() {
    let ok = ok_step(0, 10);
    assert_eq!(step_failed(&ok, SLO), None);
    let mut s = ok.clone();
    s.errors.timeout = 1;
    assert_eq!(step_failed(&s, SLO), Some("connect errors"));
    let mut s = ok.clone();
    s.lost = 1;
    assert_eq!(step_failed(&s, SLO), Some("lost deliveries"));
    let mut s = ok.clone();
    s.latency.p99_us = SLO + 1;
    assert_eq!(step_failed(&s, SLO), Some("late deliveries"));
    let mut s = ok.clone();
    s.latency.p99_us = SLO;
    assert_eq!(
        step_failed(&s, SLO),
        None,
        "p99 equal to the objective passes"
    );
    s.broker_alive = false;
    s.errors.refused = 5;
    assert_eq!(step_failed(&s, SLO), Some("broker gone"));
}

#[test]
fn clients_held_is_the_largest_passing_step() {
    let mut late = ok_step(2, 3_000);
    late.latency.p99_us = 80_000;
    let mut steps = ramp(late);
    // A later passing step with fewer clients does not lower it; one with more raises it.
    steps.push(ok_step(3, 1_500));
    assert_eq!(verdict(&steps).0, 2_000);
    steps.push(ok_step(4, 2_500));
    assert_eq!(verdict(&steps).0, 2_500);
}

#[test]
fn clients_held_counts_connected_clients_of_a_step_with_connect_errors() {
    // The broker held 19,983 and refused the rest: those 19,983 got everything in time.
    let mut full = ok_step(4, 19_983);
    full.errors.timeout = 17;
    let steps = vec![ok_step(3, 15_000), full];
    assert_eq!(verdict(&steps).0, 19_983);
}

#[test]
fn clients_held_is_zero_when_nothing_passed() {
    let mut s = ok_step(0, 100);
    s.lost = 1;
    assert_eq!(verdict(&[s]).0, 0);
    assert_eq!(verdict(&[]).0, 0);
}

#[test]
fn max_clients_when_nothing_failed() {
    let steps = vec![ok_step(0, 50_000), ok_step(1, 100_000)];
    let (held, b) = verdict(&steps);
    assert_eq!(held, 100_000);
    assert_eq!(b.kind, LimitKind::MaxClients);
    assert!(
        b.evidence.contains("reached --max-clients 100000"),
        "{}",
        b.evidence
    );

    let (_, b) = verdict(&steps[..1]);
    assert_eq!(b.kind, LimitKind::MaxClients);
    assert!(b.evidence.contains("below --max-clients"), "{}", b.evidence);
}

#[test]
fn broker_gone_beats_every_other_symptom() {
    let mut s = ok_step(2, 2_100);
    s.target_clients = 3_000;
    s.broker_alive = false;
    s.errors.refused = 900;
    s.errors.emfile = 3;
    s.lost = 500;
    let (held, b) = verdict(&ramp(s));
    assert_eq!(held, 2_000);
    assert_eq!(b.kind, LimitKind::BrokerGone);
    assert!(
        b.evidence
            .contains("At step 2 (2100 clients connected of 3000 planned)"),
        "{}",
        b.evidence
    );
    assert!(b.evidence.contains("900 refused"), "{}", b.evidence);
}

#[test]
fn loadgen_open_files() {
    let mut s = ok_step(2, 2_900);
    s.errors.emfile = 100;
    s.errors.timeout = 4;
    let mut l = limits();
    l.loadgen_nofile_soft = 3_000;
    l.loadgen_nofile_hard = 4_096;
    let (_, b) = diagnose(&ramp(s), &[], &l, SLO, 100_000);
    assert_eq!(b.kind, LimitKind::LoadgenOpenFiles);
    assert!(
        b.evidence.contains("100 connects failed with EMFILE"),
        "{}",
        b.evidence
    );
    assert!(
        b.evidence.contains("3000 soft / 4096 hard"),
        "{}",
        b.evidence
    );
}

#[test]
fn ephemeral_ports() {
    let mut s = ok_step(2, 28_232);
    s.errors.eaddrnotavail = 1_768;
    let mut l = limits();
    l.source_addresses = 2;
    let (_, b) = diagnose(&ramp(s), &[], &l, SLO, 100_000);
    assert_eq!(b.kind, LimitKind::EphemeralPorts);
    assert!(
        b.evidence
            .contains("1768 connects failed with EADDRNOTAVAIL"),
        "{}",
        b.evidence
    );
    assert!(
        b.evidence
            .contains("32768–60999 gives 28232 ports × 2 source address(es) = 56464"),
        "{}",
        b.evidence
    );
}

#[test]
fn broker_open_files_from_accept_errors() {
    let mut s = ok_step(2, 4_000);
    s.broker_accept_errors = 12;
    s.errors.timeout = 12;
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::BrokerOpenFiles);
    assert!(
        b.evidence
            .contains("accept failed 12 time(s) for lack of descriptors"),
        "{}",
        b.evidence
    );
    assert!(
        b.evidence
            .contains("clients it cannot take in time fail to connect: connect errors: 12 timeout"),
        "{}",
        b.evidence
    );
    assert_eq!(b.step, Some(2));
    assert!(
        b.evidence.contains("10000 soft / 524288 hard"),
        "{}",
        b.evidence
    );
}

#[test]
fn broker_open_files_from_errors_at_its_limit() {
    // Limit 10000, margin max(200, 64) = 200: errors at 9 990 clients are the limit...
    let mut s = ok_step(2, 9_990);
    s.target_clients = 12_000;
    s.errors.timeout = 2_000;
    s.errors.closed = 10;
    let (_, b) = verdict(&ramp(s.clone()));
    assert_eq!(b.kind, LimitKind::BrokerOpenFiles);
    assert!(
        b.evidence.contains("2000 timeout, 10 closed by broker"),
        "{}",
        b.evidence
    );
    assert!(
        b.evidence.contains("9990 clients is all it can hold"),
        "{}",
        b.evidence
    );
    // ...errors far below it are not.
    s.clients = 5_000;
    assert_eq!(verdict(&ramp(s)).1.kind, LimitKind::ConnectErrors);
}

#[test]
fn memory_from_host_samples() {
    let s = ok_step(2, 3_000);
    let total = 24 * 1024 * MIB;
    let sample = |step, used| Sample {
        step,
        host_mem_used_bytes: used,
        host_mem_total_bytes: total,
        ..Default::default()
    };
    let mut failing = s.clone();
    failing.lost = 10;
    // Memory was full in an earlier step's sample only: not this step's cause.
    let samples = vec![sample(1, total), sample(2, total / 2)];
    let (_, b) = diagnose(&ramp(failing.clone()), &samples, &limits(), SLO, 100_000);
    assert_eq!(b.kind, LimitKind::MessageLoss);

    let samples = vec![sample(2, total / 2), sample(2, total / 100 * 97)];
    let (_, b) = diagnose(&ramp(failing), &samples, &limits(), SLO, 100_000);
    assert_eq!(b.kind, LimitKind::Memory);
    assert!(
        b.evidence.contains("host memory reached 97%"),
        "{}",
        b.evidence
    );
    assert!(b.evidence.contains("broker RSS 200 MiB"), "{}", b.evidence);
}

#[test]
fn loadgen_cpu_when_host_saturated_and_loadgen_bigger() {
    let mut s = ok_step(2, 3_000);
    s.latency.p99_us = 90_000;
    s.broker_cpu_pct = 70.0;
    s.loadgen_cpu_pct = 115.0;
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::LoadgenCpu);
    assert!(
        b.evidence
            .contains("broker CPU 70%, loadgen CPU 115% of 200% (2 cores)"),
        "{}",
        b.evidence
    );
    assert!(b.evidence.contains("not the broker"), "{}", b.evidence);
}

#[test]
fn broker_cpu_alone_or_as_the_bigger_user() {
    let mut s = ok_step(2, 3_000);
    s.latency.p99_us = 90_000;
    s.broker_cpu_pct = 185.0;
    s.loadgen_cpu_pct = 5.0;
    let (_, b) = verdict(&ramp(s.clone()));
    assert_eq!(b.kind, LimitKind::BrokerCpu);
    assert!(b.evidence.contains("broker CPU 185%"), "{}", b.evidence);
    assert!(
        b.evidence
            .contains("p99 90.0 ms against an objective of 50.0 ms"),
        "{}",
        b.evidence
    );

    s.broker_cpu_pct = 110.0;
    s.loadgen_cpu_pct = 75.0;
    assert_eq!(verdict(&ramp(s.clone())).1.kind, LimitKind::BrokerCpu);

    // The kernel's work outside both (softirqs in ksoftirqd) fills the machine: the
    // machine's figure says so where the two processes' do not.
    s.broker_cpu_pct = 100.0;
    s.loadgen_cpu_pct = 37.0;
    assert_eq!(
        verdict(&ramp(s.clone())).1.kind,
        LimitKind::LatencyObjective
    );
    s.host_cpu_pct = Some(195.0);
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::BrokerCpu);
    assert!(
        b.evidence
            .contains("broker CPU 100%, loadgen CPU 37%, the machine 195% of 200% (2 cores)"),
        "{}",
        b.evidence
    );
}

#[test]
fn latency_objective() {
    let mut s = ok_step(2, 3_000);
    s.latency.p99_us = 72_500;
    s.late = 420;
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::LatencyObjective);
    assert!(
        b.evidence
            .contains("p99 was 72.5 ms against an objective of 50.0 ms"),
        "{}",
        b.evidence
    );
    assert!(
        b.evidence.contains("420 of 30000 deliveries late"),
        "{}",
        b.evidence
    );
}

#[test]
fn message_loss() {
    let mut s = ok_step(2, 3_000);
    s.lost = 300;
    s.delivered -= 300;
    s.broker_slow_consumers = 30;
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::MessageLoss);
    assert!(
        b.evidence
            .contains("300 of 30000 expected deliveries were lost (1.00%)"),
        "{}",
        b.evidence
    );
    assert!(b.evidence.contains("30 slow consumers"), "{}", b.evidence);
}

#[test]
fn connect_errors_otherwise() {
    let mut s = ok_step(2, 2_990);
    s.errors.reset = 7;
    s.errors.other = 3;
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::ConnectErrors);
    assert!(
        b.evidence.contains("10 connects failed: 7 reset, 3 other"),
        "{}",
        b.evidence
    );
}

#[test]
fn unknown_broker_limit_never_guesses_open_files() {
    let mut s = ok_step(2, 9_990);
    s.errors.timeout = 5;
    let mut l = limits();
    l.broker_nofile_soft = None;
    l.broker_nofile_hard = None;
    let (_, b) = diagnose(&ramp(s), &[], &l, SLO, 100_000);
    assert_eq!(b.kind, LimitKind::ConnectErrors);
}

#[test]
fn the_machines_file_table_from_samples_at_file_max() {
    let mut s = ok_step(2, 3_000);
    s.target_clients = 4_000;
    s.errors.emfile = 40;
    let sample = |step, open| Sample {
        step,
        open_files: Some(open),
        ..Default::default()
    };
    let file_max = Limits {
        file_max: Some(2_466_290),
        ..limits()
    };
    // Far from full: the process's own limit, as before.
    let (_, b) = diagnose(
        &ramp(s.clone()),
        &[sample(2, 1_000_000)],
        &file_max,
        SLO,
        100_000,
    );
    assert_eq!(b.kind, LimitKind::LoadgenOpenFiles, "{}", b.evidence);
    let full = [sample(2, 2_000_000), sample(2, 2_466_290)];
    let (_, b) = diagnose(&ramp(s.clone()), &full, &file_max, SLO, 100_000);
    assert_eq!(b.kind, LimitKind::FileTable);
    assert!(
        b.evidence
            .contains("2466290 files open of its 2466290 (fs.file-max)")
            && b.evidence.contains("about 1233145 connections")
            && b.evidence.contains("connects failed (40 EMFILE"),
        "{}",
        b.evidence
    );
    // Full, but nothing failed to connect: not a wall.
    s.errors.emfile = 0;
    s.latency.p99_us = SLO * 2;
    let (_, b) = diagnose(&ramp(s), &full, &file_max, SLO, 100_000);
    assert_eq!(b.kind, LimitKind::LatencyObjective);
}

#[test]
fn conntrack_table_from_samples_at_its_maximum() {
    let mut s = ok_step(2, 3_000);
    s.target_clients = 4_000;
    s.errors.timeout = 1_000;
    let sample = |step, entries| Sample {
        step,
        conntrack_entries: Some(entries),
        ..Default::default()
    };
    // The table was full in an earlier step only, or not quite full: not this step's cause.
    for samples in [
        vec![sample(1, 262_144), sample(2, 200_000)],
        vec![sample(2, 250_000)],
    ] {
        let (_, b) = diagnose(&ramp(s.clone()), &samples, &limits(), SLO, 100_000);
        assert_eq!(b.kind, LimitKind::ConnectErrors, "{}", b.evidence);
    }
    let samples = vec![sample(2, 100_000), sample(2, 262_000)];
    let (_, b) = diagnose(&ramp(s.clone()), &samples, &limits(), SLO, 100_000);
    assert_eq!(b.kind, LimitKind::ConnTrack);
    assert!(
        b.evidence
            .contains("held 262000 entries of its 262144 (net.netfilter.nf_conntrack_max)")
            && b.evidence.contains("connects failed (1000 timeout)"),
        "{}",
        b.evidence
    );
    // Without the module loaded there is no maximum, and no such verdict.
    let untracked = Limits {
        conntrack_max: None,
        ..limits()
    };
    let (_, b) = diagnose(&ramp(s), &samples, &untracked, SLO, 100_000);
    assert_eq!(b.kind, LimitKind::ConnectErrors);
}

/// A broker in another container or on another host is not sampled (no resident set, CPU
/// 0): a full machine is then the machine's, not loadgen's, however small the broker's 0 is.
#[test]
fn machine_cpu_when_the_broker_was_not_sampled() {
    let mut s = ok_step(2, 3_000);
    s.latency.p99_us = 90_000;
    (s.broker_cpu_pct, s.broker_rss_bytes) = (0.0, 0);
    s.loadgen_cpu_pct = 40.0;
    s.host_cpu_pct = Some(196.0);
    let (_, b) = verdict(&ramp(s));
    assert_eq!(b.kind, LimitKind::MachineCpu);
    assert!(b.evidence.contains("the machine 196%"), "{}", b.evidence);
    assert!(b.evidence.contains("not measured"), "{}", b.evidence);
}
