//! `summary.json` for tools and `summary.md` for a person.
//!
//! The markdown leads with the answer (clients held, and why the ramp stopped, with the
//! numbers), then the limits read at start, the steps, and what to change to go further: the
//! order in which someone reading it decides what to do next.

use std::fmt::Write as _;
use std::path::Path;

use super::files::{write_json, write_text, ReportError};
use super::plots::Verdict;
use crate::model::units::{grouped, mib, ms, ms_number, to_mib};
use crate::model::{LimitKind, Limits, StepResult, Summary};

/// Writes `summary.json` (pretty) and `summary.md` into `dir`.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<(), ReportError> {
    write_json(&dir.join("summary.json"), summary)?;
    write_text(&dir.join("summary.md"), &summary_markdown(summary))
}

/// The verdict in words: how many clients were held (and at which step, so a held count
/// from a step that also had failures reads right), and why the ramp stopped.
pub fn verdict_text(s: &Summary) -> String {
    let kind = s.binding_limit.kind;
    let held = s
        .steps
        .iter()
        .rfind(|st| st.clients == s.clients_held && st.delivered_within(s.slo_p99_us));
    let at = match held {
        None => String::new(),
        Some(st) if st.clients == st.target_clients => format!(
            " (step {}: every one of them got every message within the {} objective)",
            st.step,
            ms(s.slo_p99_us)
        ),
        Some(st) => format!(
            " (step {}: {} of {} planned connected, and every one of them got every message \
             within the {} objective)",
            st.step,
            grouped(st.clients),
            grouped(st.target_clients),
            ms(s.slo_p99_us)
        ),
    };
    let stopped = match kind {
        LimitKind::Interrupted => "the ramp was interrupted",
        _ => "the ramp stopped because",
    };
    let because = match kind {
        LimitKind::Interrupted => String::new(),
        _ => format!(" {}", kind.describe()),
    };
    format!(
        "held {} clients{at}; {stopped}{because}: {}",
        grouped(s.clients_held),
        s.binding_limit.evidence
    )
}

impl Verdict {
    /// The lines a ramp's charts carry: the failing step, and the limit it ran into where
    /// that limit is a number of clients.
    pub fn of(s: &Summary) -> Verdict {
        let b = &s.binding_limit;
        let failed_at = b
            .step
            .and_then(|n| s.steps.iter().find(|st| st.step == n))
            .map(|st| {
                (
                    st.clients as f64,
                    format!("step {} failed: {}", st.step, b.kind.describe()),
                )
            });
        let limit = match b.kind {
            LimitKind::BrokerOpenFiles => s
                .limits
                .broker_nofile_soft
                .map(|n| (n as f64, format!("broker open-files limit: {}", grouped(n)))),
            LimitKind::EphemeralPorts => {
                let (lo, hi) = s.limits.ephemeral_ports;
                let ports = u64::from(hi.saturating_sub(lo)) + 1;
                let n = ports * s.limits.source_addresses.max(1) as u64;
                Some((n as f64, format!("source ports: {}", grouped(n))))
            }
            _ => None,
        };
        Verdict { failed_at, limit }
    }
}

/// The text of `summary.md`.
pub fn summary_markdown(s: &Summary) -> String {
    let kind = s.binding_limit.kind;
    let mut md = String::new();
    md.push_str(if s.interrupted {
        "# hubbub load test (interrupted)\n\n"
    } else {
        "# hubbub load test\n\n"
    });
    let _ = writeln!(md, "**{}**\n", verdict_text(s));
    let _ = writeln!(
        md,
        "Clients held: the most subscribers connected at once while every one of them received \
         every message with a delivery p99 within the objective of {}. The ramp goes on while \
         a step also has no connect errors and the broker is still running.\n",
        ms(s.slo_p99_us)
    );
    md.push_str("## To go further\n\n");
    let _ = writeln!(md, "{}\n", kind.advice());
    md.push_str("## Limits read at start\n\n");
    md.push_str(&limits_table_markdown(&s.limits));
    md.push_str("\n## Steps\n\n");
    md.push_str(&steps_table_markdown(&s.steps));
    md.push_str("\n## Connecting, the accept queue, and memory per client\n\n");
    md.push_str(&scale_table_markdown(&s.steps));
    if !s.agents.is_empty() {
        md.push_str("\n## Agents\n\n");
        md.push_str(&agents_table_markdown(&s.agents));
    }
    if !s.command_line.is_empty() {
        let _ = writeln!(md, "\n## Command\n\n```\n{}\n```", s.command_line);
    }
    if let Some(p) = &s.provenance {
        let _ = writeln!(md, "\nMeasured on {}.", p.line());
    }
    md
}

/// Per agent: where it ran, its clock against the coordinator's at the start and the end,
/// and what its workers used. Latencies are measured on the coordinator's clock: a stamp
/// made here and read there is corrected by the offset, so each latency may be off by up to
/// the uncertainty, plus the drift between start and end for a delivery late in the run.
pub fn agents_table_markdown(agents: &[crate::model::hosts::AgentReport]) -> String {
    let mut md = String::from(
        "Each agent's clock was measured against the coordinator's (16 round trips, the \
         shortest taken) before its first worker started and again at the end; its workers \
         read their clock corrected by the first offset. A latency is true to within the \
         uncertainty, plus the drift (end less start) for deliveries late in the run.\n\n\
         | agent | host | cores | open files | workers | clients | clock offset (µs) | ± (µs) | offset at end (µs) | drift (µs) | workers' CPU mean / max (%) | RSS max | machine CPU max (%) | lost |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let us = |ns: i64| format!("{:.1}", ns as f64 / 1e3);
    for a in agents {
        let end = a.clock_offset_end_ns.map_or("–".into(), |e| {
            format!(
                "{} ± {}",
                us(e),
                us(a.clock_uncertainty_end_ns.unwrap_or(0) as i64)
            )
        });
        let drift = a
            .clock_offset_end_ns
            .map_or("–".into(), |e| us(e - a.clock_offset_ns));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {} | {} |",
            a.address,
            a.host,
            a.cores,
            grouped(a.nofile_hard),
            a.workers,
            grouped(a.clients),
            us(a.clock_offset_ns),
            us(a.clock_uncertainty_ns as i64),
            end,
            drift,
            a.cpu_pct_mean,
            a.cpu_pct_max,
            mib(a.rss_max_bytes),
            a.machine_cpu_pct_max
                .map_or("–".into(), |c| format!("{c:.0}")),
            a.lost.as_deref().unwrap_or("no"),
        );
    }
    md
}

/// Per step: how fast its new clients connected, what the listeners' accept queues
/// dropped meanwhile, and what each client added since step 1 cost the brokers, loadgen and
/// the kernel.
pub fn scale_table_markdown(steps: &[StepResult]) -> String {
    let mut md = String::from(
        "| step | clients | connects/s | connect p50 (ms) | connect p99 (ms) | accept-queue \
         overflows | listen drops | broker B/client | loadgen B/client | kernel slab B/client |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "–".into());
    let first = steps.first();
    for s in steps {
        // Growth since step 1 over the clients added since: what one more client costs,
        // without the processes' own start-up memory.
        let per_client = |read: fn(&StepResult) -> Option<u64>| -> String {
            let Some(first) = first.filter(|f| s.clients > f.clients) else {
                return "–".into();
            };
            match (read(s), read(first)) {
                (Some(now), Some(then)) => {
                    let grew = now as f64 - then as f64;
                    format!("{:.0}", grew / (s.clients - first.clients) as f64)
                }
                _ => "–".into(),
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            s.step,
            s.clients,
            s.connect_rate,
            ms_number(s.connect_p50_us),
            ms_number(s.connect_p99_us),
            opt(s.listen_overflows),
            opt(s.listen_drops),
            per_client(|x| Some(x.broker_rss_bytes)),
            per_client(|x| Some(x.loadgen_rss_bytes)),
            per_client(|x| x.kernel_slab_bytes),
        );
    }
    md.push_str(
        "\nOverflows and drops are the kernel's counters (`/proc/net/netstat`, machine-wide) over \
         each step: a connection an accept queue had no room for is retried by its client after \
         a second. Per client: each peak resident set (brokers, loadgen with its workers) and \
         the kernel's slab (machine-wide: both ends of every loopback connection, its file, \
         inode and epoll entries) at the step, less step 1's, over the clients added since.\n",
    );
    md
}

/// One line per finished step, for the terminal.
pub fn step_line(s: &StepResult, failed: Option<&str>) -> String {
    format!(
        "step {:>2}: {:>6} clients ({} errors), {:.0} msg/s offered, delivered {}/{}, latency p50 {:.2} ms p99 {:.2} ms{}",
        s.step,
        s.clients,
        s.errors.total(),
        s.offered_rate,
        s.delivered,
        s.expected,
        s.latency.p50_us as f64 / 1000.0,
        s.latency.p99_us as f64 / 1000.0,
        failed.map(|why| format!("  <- {why}")).unwrap_or_default(),
    )
}

/// The steps as a markdown table, one row per step.
pub fn steps_table_markdown(steps: &[StepResult]) -> String {
    let mut md = String::from(
        "| step | clients | connect errors | connect p99 (ms) | delivered / expected | \
         latency p50 (ms) | latency p99 (ms) | broker CPU % | broker RSS (MiB) | loadgen CPU % |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in steps {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            s.step,
            s.clients,
            s.errors.total(),
            ms_number(s.connect_p99_us),
            s.delivered,
            s.expected,
            ms_number(s.latency.p50_us),
            ms_number(s.latency.p99_us),
            s.broker_cpu_pct,
            to_mib(s.broker_rss_bytes),
            s.loadgen_cpu_pct,
        );
    }
    md
}

/// The limits as a two-column markdown table.
fn limits_table_markdown(l: &Limits) -> String {
    let or_unknown = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
    let (lo, hi) = l.ephemeral_ports;
    let ports = u64::from(hi.saturating_sub(lo)) + 1;
    let rows = [
        (
            "loadgen open files (soft / hard)",
            format!("{} / {}", l.loadgen_nofile_soft, l.loadgen_nofile_hard),
        ),
        (
            "broker open files (soft / hard)",
            format!(
                "{} / {}",
                or_unknown(l.broker_nofile_soft),
                or_unknown(l.broker_nofile_hard)
            ),
        ),
        (
            "ephemeral ports (ip_local_port_range)",
            format!("{lo}–{hi} ({ports} ports)"),
        ),
        ("loopback source addresses", l.source_addresses.to_string()),
        ("net.core.somaxconn", or_unknown(l.somaxconn)),
        ("fs.file-max", or_unknown(l.file_max)),
        (
            "net.netfilter.nf_conntrack_max",
            l.conntrack_max
                .map_or("not loaded".into(), |n| n.to_string()),
        ),
        (
            "memory",
            format!("{:.1} GiB", to_mib(l.mem_total_bytes) / 1024.0),
        ),
        ("cores", l.cores.to_string()),
    ];
    let mut md = String::from("| limit | value |\n|---|---:|\n");
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BindingLimit, LimitKind, Percentiles};

    fn summary() -> Summary {
        let step = |i: usize, clients: u64, p99_us: u64| StepResult {
            step: i,
            target_clients: clients,
            clients,
            connect_p99_us: 2_500,
            expected: clients * 10,
            delivered: clients * 10,
            latency: Percentiles {
                p50_us: 1_200,
                p99_us,
                ..Default::default()
            },
            broker_cpu_pct: 55.4,
            broker_rss_bytes: 512 * 1024 * 1024,
            loadgen_cpu_pct: 20.0,
            broker_alive: true,
            ..Default::default()
        };
        Summary {
            clients_held: 20_000,
            interrupted: false,
            binding_limit: BindingLimit {
                step: Some(2),
                kind: LimitKind::LatencyObjective,
                evidence: "At step 2 (30000 clients connected of 30000 planned) delivery p99 \
                           was 72.5 ms against an objective of 50.0 ms."
                    .into(),
            },
            agents: Vec::new(),
            limits: Limits {
                loadgen_nofile_soft: 1_048_576,
                loadgen_nofile_hard: 1_048_576,
                broker_nofile_soft: Some(65_536),
                broker_nofile_hard: None,
                ephemeral_ports: (32_768, 60_999),
                somaxconn: Some(4_096),
                file_max: None,
                conntrack_max: Some(262_144),
                mem_total_bytes: 24 * 1024 * 1024 * 1024,
                cores: 2,
                source_addresses: 4,
            },
            command_line: "loadgen ramp --max-clients 100000".into(),
            provenance: None,
            slo_p99_us: 50_000,
            steps: vec![
                step(0, 10_000, 8_000),
                step(1, 20_000, 20_000),
                step(2, 30_000, 72_500),
            ],
        }
    }

    #[test]
    fn markdown_leads_with_the_verdict() {
        let md = summary_markdown(&summary());
        let verdict = "**held 20,000 clients (step 1: every one of them got every message \
                       within the 50.0 ms objective); the ramp stopped because deliveries \
                       missed the latency objective: At step 2 (30000 clients";
        assert!(md.contains(verdict), "{md}");
        assert!(md.find(verdict) < md.find("## Steps"));
        assert!(md.contains(LimitKind::LatencyObjective.advice()));
        assert!(
            md.contains("| broker open files (soft / hard) | 65536 / unknown |"),
            "{md}"
        );
        assert!(
            md.contains("| ephemeral ports (ip_local_port_range) | 32768–60999 (28232 ports) |")
        );
        assert!(md.contains("| memory | 24.0 GiB |"));
        assert!(md.contains("loadgen ramp --max-clients 100000"));
        assert!(md.contains(&steps_table_markdown(&summary().steps)));
    }

    #[test]
    fn the_held_count_says_which_step_and_how_many_of_its_clients() {
        let mut s = summary();
        s.steps[2].clients = 29_983;
        s.steps[2].latency.p99_us = 1_000;
        s.clients_held = 29_983;
        let text = verdict_text(&s);
        assert!(
            text.starts_with(
                "held 29,983 clients (step 2: 29,983 of 30,000 planned connected, and every \
                 one of them got every message within the 50.0 ms objective); the ramp \
                 stopped because"
            ),
            "{text}"
        );
        let marks = Verdict::of(&s);
        assert_eq!(
            marks.failed_at,
            Some((
                29_983.0,
                "step 2 failed: deliveries missed the latency objective".into()
            ))
        );
        assert_eq!(marks.limit, None);
        s.binding_limit.kind = LimitKind::BrokerOpenFiles;
        assert_eq!(
            Verdict::of(&s).limit,
            Some((65_536.0, "broker open-files limit: 65,536".into()))
        );
    }

    #[test]
    fn steps_table_has_a_row_per_step() {
        let table = steps_table_markdown(&summary().steps);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 3);
        assert!(lines[0].starts_with("| step | clients |"));
        assert_eq!(
            lines[4],
            "| 2 | 30000 | 0 | 2.5 | 300000 / 300000 | 1.2 | 72.5 | 55 | 512 | 20 |"
        );
    }

    #[test]
    fn the_scale_table_gives_what_each_client_added_cost() {
        let mut steps = summary().steps;
        for (i, s) in steps.iter_mut().enumerate() {
            let i = i as u64;
            s.connect_rate = 25_000.4;
            s.connect_p50_us = 900;
            s.broker_rss_bytes = 100_000_000 + i * 9_000_000;
            s.loadgen_rss_bytes = 800_000_000 + i * 1_200_000;
            s.kernel_slab_bytes = Some(2_000_000_000 + i * 80_000_000);
            s.listen_overflows = Some(i * 3);
            s.listen_drops = Some(i * 4);
        }
        steps[1].kernel_slab_bytes = None;
        let table = scale_table_markdown(&steps);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("| step | clients | connects/s |"),
            "{table}"
        );
        // Step 1 is the baseline; each later one over the 10,000 clients added per step.
        assert_eq!(
            lines[2],
            "| 0 | 10000 | 25000 | 0.900 | 2.5 | 0 | 0 | – | – | – |"
        );
        assert_eq!(
            lines[3],
            "| 1 | 20000 | 25000 | 0.900 | 2.5 | 3 | 4 | 900 | 120 | – |"
        );
        assert_eq!(
            lines[4],
            "| 2 | 30000 | 25000 | 0.900 | 2.5 | 6 | 8 | 900 | 120 | 8000 |"
        );
        steps[2].listen_drops = None;
        assert!(
            scale_table_markdown(&steps).contains("| 2 | 30000 | 25000 | 0.900 | 2.5 | 6 | – |")
        );
    }

    #[test]
    fn writes_json_and_markdown() {
        let dir = std::env::temp_dir().join(format!("loadgen-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_summary(&dir, &summary()).unwrap();
        let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary());
        assert!(json.contains("\"kind\": \"latency_objective\""), "{json}");
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        assert_eq!(md, summary_markdown(&summary()));
    }
}
