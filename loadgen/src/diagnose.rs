//! Reads a finished ramp and says which limit stopped it, with the numbers behind the verdict.
//!
//! Pure functions over [`crate::model`] data, so every verdict can be tested with made-up steps.
//! The first failing step decides: by then the broker no longer keeps up, and what broke
//! first is what to fix first. Causes are checked from the most specific (the broker exited,
//! a named errno, a limit read at start) to the least (late or lost deliveries, errors in
//! general), because a specific cause also produces the general symptoms: a broker out of
//! descriptors makes clients time out, and a saturated CPU makes deliveries late.
//!
//! [`soak`] holds the checks of a soak's verdict, which judge a whole run rather than a step.

pub mod soak;

use crate::model::units::{mib, ms, percent};
use crate::model::{BindingLimit, LimitKind, Limits, Sample, StepResult};

/// Host memory use, as a fraction of the total, at which memory counts as the limit.
const MEMORY_FULL: f64 = 0.95;
/// CPU use, in % of one core per core, at which a core counts as saturated.
const CPU_SATURATED_PCT_PER_CORE: f64 = 90.0;
/// The connection-tracking table counts as full at this share of its maximum: entries of
/// connections just closed linger in it for a while, so it sits just under the maximum once
/// full rather than at it.
const CONNTRACK_FULL: f64 = 0.98;
/// The machine's file table counts as full at this share of fs.file-max.
const FILE_TABLE_FULL: f64 = 0.98;
/// The broker needs a few descriptors of its own (listener, log, epoll, links), so errors that
/// start this close to its open-files limit mean the limit was hit: ~2%, at least 64.
const BROKER_NOFILE_MARGIN_MIN: u64 = 64;

/// Why this step shows the broker no longer keeps up, or `None` if it passed.
///
/// A broker that exited explains everything else, so it is reported first.
pub fn step_failed(step: &StepResult, slo_p99_us: u64) -> Option<&'static str> {
    if !step.broker_alive {
        Some("broker gone")
    } else if step.errors.total() > 0 {
        Some("connect errors")
    } else if step.lost > 0 {
        Some("lost deliveries")
    } else if step.latency.p99_us > slo_p99_us {
        Some("late deliveries")
    } else {
        None
    }
}

/// Returns the clients held (the largest `clients` of a step whose connected subscribers all
/// got every delivery within the objective, 0 if none did) and the limit that stopped the
/// ramp, decided from the first failing step.
pub fn diagnose(
    steps: &[StepResult],
    samples: &[Sample],
    limits: &Limits,
    slo_p99_us: u64,
    max_clients: u64,
) -> (u64, BindingLimit) {
    let clients_held = steps
        .iter()
        .filter(|s| s.delivered_within(slo_p99_us))
        .map(|s| s.clients)
        .max()
        .unwrap_or(0);
    let binding = match steps.iter().find(|s| step_failed(s, slo_p99_us).is_some()) {
        Some(step) => {
            let step_samples: Vec<&Sample> =
                samples.iter().filter(|s| s.step == step.step).collect();
            classify(step, &step_samples, limits, slo_p99_us)
        }
        None => no_failure(steps, max_clients),
    };
    (clients_held, binding)
}

/// The verdict when no step failed: the ramp ran out of plan, not the broker out of room.
fn no_failure(steps: &[StepResult], max_clients: u64) -> BindingLimit {
    let evidence = match steps.last() {
        None => "No step ran, so nothing was measured.".to_string(),
        Some(last) if last.clients >= max_clients => format!(
            "Every step passed, up to {} clients at step {}, which reached --max-clients {}.",
            last.clients, last.step, max_clients
        ),
        Some(last) => format!(
            "Every step passed; the plan ended at {} clients (step {}), below --max-clients {}.",
            last.clients, last.step, max_clients
        ),
    };
    BindingLimit {
        kind: LimitKind::MaxClients,
        evidence,
        step: None,
    }
}

/// Picks the most specific explanation for a failing step.
fn classify(step: &StepResult, samples: &[&Sample], limits: &Limits, slo: u64) -> BindingLimit {
    let at = format!(
        "At step {} ({} clients connected of {} planned)",
        step.step, step.clients, step.target_clients
    );
    let errs = step.errors.by_kind();
    let cores = limits.cores.max(1) as f64;
    let cpu_capacity = CPU_SATURATED_PCT_PER_CORE * cores;
    // The machine's own figure, where sampled, also counts the kernel's work done outside
    // either's processes (softirqs in ksoftirqd).
    let cpu_total = step.broker_cpu_pct + step.loadgen_cpu_pct;
    let host_saturated = cpu_total.max(step.host_cpu_pct.unwrap_or(0.0)) >= cpu_capacity;
    let host = match step.host_cpu_pct {
        Some(pct) => format!(", the machine {pct:.0}%"),
        None => String::new(),
    };
    let cpu_line = format!(
        "broker CPU {:.0}%, loadgen CPU {:.0}%{host} of {:.0}% ({} cores)",
        step.broker_cpu_pct,
        step.loadgen_cpu_pct,
        cores * 100.0,
        limits.cores.max(1)
    );

    let (kind, evidence) = if !step.broker_alive {
        (
            LimitKind::BrokerGone,
            format!("{at} the broker process was no longer running; connect errors: {errs}; broker RSS was {}.", mib(step.broker_rss_bytes)),
        )
    } else if let Some(evidence) = file_table_full(step, samples, limits, &at, &errs) {
        (LimitKind::FileTable, evidence)
    } else if step.errors.emfile > 0 {
        (
            LimitKind::LoadgenOpenFiles,
            format!(
                "{at} {} connects failed with EMFILE/ENFILE: loadgen's open-files limit is {} soft / {} hard, and every client holds one descriptor in loadgen.",
                step.errors.emfile, limits.loadgen_nofile_soft, limits.loadgen_nofile_hard
            ),
        )
    } else if step.errors.eaddrnotavail > 0 {
        let (lo, hi) = limits.ephemeral_ports;
        let ports = u64::from(hi.saturating_sub(lo)) + 1;
        let addrs = limits.source_addresses.max(1) as u64;
        (
            LimitKind::EphemeralPorts,
            format!(
                "{at} {} connects failed with EADDRNOTAVAIL: the ephemeral port range {lo}–{hi} gives {ports} ports × {addrs} source address(es) = {} connections to one broker address.",
                step.errors.eaddrnotavail,
                ports * addrs
            ),
        )
    } else if let Some(evidence) = conntrack_full(step, samples, limits, &at, &errs) {
        (LimitKind::ConnTrack, evidence)
    } else if let Some(evidence) = broker_open_files(step, limits, &at, &errs) {
        (LimitKind::BrokerOpenFiles, evidence)
    } else if let Some(evidence) = memory_full(step, samples, &at) {
        (LimitKind::Memory, evidence)
    } else if host_saturated && !crate::model::broker_sampled(step.broker_rss_bytes) {
        (
            LimitKind::MachineCpu,
            format!(
                "{at} the machine's CPU was saturated ({cpu_line}), and the broker's own use was not measured (it runs where loadgen cannot sample it); delivery p99 {} against an objective of {}.",
                ms(step.latency.p99_us),
                ms(slo)
            ),
        )
    } else if host_saturated && step.loadgen_cpu_pct > step.broker_cpu_pct {
        (
            LimitKind::LoadgenCpu,
            format!(
                "{at} the host's CPU was saturated ({cpu_line}) and loadgen used more than the broker: this result is bounded by the load generator, not the broker. Give loadgen its own cores or its own machine and rerun."
            ),
        )
    } else if step.broker_cpu_pct >= cpu_capacity || host_saturated {
        (
            LimitKind::BrokerCpu,
            format!(
                "{at} the broker was out of CPU ({cpu_line}); delivery p99 {} against an objective of {}.",
                ms(step.latency.p99_us),
                ms(slo)
            ),
        )
    } else if step.latency.p99_us > slo {
        (
            LimitKind::LatencyObjective,
            format!(
                "{at} delivery p99 was {} against an objective of {} ({} of {} deliveries late); {cpu_line}.",
                ms(step.latency.p99_us),
                ms(slo),
                step.late,
                step.delivered
            ),
        )
    } else if step.lost > 0 {
        (
            LimitKind::MessageLoss,
            format!(
                "{at} {} of {} expected deliveries were lost ({:.2}%); the broker cut off {} slow consumers.",
                step.lost,
                step.expected,
                percent(step.lost, step.expected),
                step.broker_slow_consumers
            ),
        )
    } else {
        (
            LimitKind::ConnectErrors,
            format!("{at} {} connects failed: {errs}.", step.errors.total()),
        )
    };
    BindingLimit {
        kind,
        evidence,
        step: Some(step.step),
    }
}

/// The broker ran out of descriptors if it said so (failed accepts), or if connects start
/// failing the way a broker that cannot accept makes them fail, right at its limit.
fn broker_open_files(step: &StepResult, limits: &Limits, at: &str, errs: &str) -> Option<String> {
    let limit_text = match (limits.broker_nofile_soft, limits.broker_nofile_hard) {
        (Some(soft), Some(hard)) => format!("{soft} soft / {hard} hard"),
        (Some(soft), None) => format!("{soft} soft"),
        _ => "unknown (loadgen could not read it)".to_string(),
    };
    if step.broker_accept_errors > 0 {
        return Some(format!(
            "{at} the broker's accept failed {} time(s) for lack of descriptors (EMFILE), with its open-files limit at {limit_text}. A failed accept leaves the client waiting in the listen queue while the broker backs off and retries, so clients it cannot take in time fail to connect: connect errors: {errs}.",
            step.broker_accept_errors
        ));
    }
    let soft = limits.broker_nofile_soft?;
    let margin = (soft / 50).max(BROKER_NOFILE_MARGIN_MIN);
    let e = &step.errors;
    let accept_like = e.timeout + e.refused + e.closed;
    (accept_like > 0 && step.clients.saturating_add(margin) >= soft).then(|| {
        format!(
            "{at} connects failed ({errs}) just under the broker's open-files limit of {limit_text}: the broker needs a few descriptors of its own, so {} clients is all it can hold.",
            step.clients
        )
    })
}

/// The highest of a machine-wide count the step's samples read, and the table's maximum,
/// when that count reached `full` of the maximum.
fn at_maximum(
    samples: &[&Sample],
    read: fn(&Sample) -> Option<u64>,
    max: Option<u64>,
    full: f64,
) -> Option<(u64, u64)> {
    let max = max?;
    let most = samples.iter().filter_map(|s| read(s)).max()?;
    (most as f64 >= full * max as f64).then_some((most, max))
}

/// Connects failed while the kernel's connection-tracking table was full (its count, sampled
/// each second, at its maximum): the kernel dropped their SYNs.
fn conntrack_full(
    step: &StepResult,
    samples: &[&Sample],
    limits: &Limits,
    at: &str,
    errs: &str,
) -> Option<String> {
    let (most, max) = at_maximum(
        samples,
        |s| s.conntrack_entries,
        limits.conntrack_max,
        CONNTRACK_FULL,
    )?;
    let failed = step.errors.timeout + step.errors.refused + step.errors.other;
    (failed > 0).then(|| {
        format!(
            "{at} connects failed ({errs}) while the kernel's connection-tracking table held {most} entries of its {max} (net.netfilter.nf_conntrack_max): every TCP connection on this machine takes one, loopback ones too, and a full table drops new connections' SYNs."
        )
    })
}

/// Connects failed while the machine's open files (sampled each second) were at fs.file-max:
/// a socket could not be opened at either end (ENFILE), whatever each process's own limit.
fn file_table_full(
    step: &StepResult,
    samples: &[&Sample],
    limits: &Limits,
    at: &str,
    errs: &str,
) -> Option<String> {
    let (most, max) = at_maximum(samples, |s| s.open_files, limits.file_max, FILE_TABLE_FULL)?;
    (step.errors.total() > 0).then(|| {
        format!(
            "{at} connects failed ({errs}) while the machine had {most} files open of its {max} (fs.file-max): each loopback connection is two open files, one at each end, so the machine holds about {} connections.",
            max / 2
        )
    })
}

/// Host memory from the step's samples; without samples, what the broker and loadgen held.
fn memory_full(step: &StepResult, samples: &[&Sample], at: &str) -> Option<String> {
    let fullest = samples
        .iter()
        .filter(|s| s.host_mem_total_bytes > 0)
        .max_by(|a, b| mem_fraction(a).total_cmp(&mem_fraction(b)))?;
    (mem_fraction(fullest) >= MEMORY_FULL).then(|| {
        format!(
            "{at} host memory reached {:.0}% ({} used of {}); broker RSS {}, loadgen RSS {}.",
            mem_fraction(fullest) * 100.0,
            mib(fullest.host_mem_used_bytes),
            mib(fullest.host_mem_total_bytes),
            mib(step.broker_rss_bytes),
            mib(step.loadgen_rss_bytes)
        )
    })
}

fn mem_fraction(s: &Sample) -> f64 {
    s.host_mem_used_bytes as f64 / s.host_mem_total_bytes as f64
}

#[cfg(test)]
mod tests;
