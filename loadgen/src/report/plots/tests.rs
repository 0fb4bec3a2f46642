//! Renders the charts from a made-up but plausible ramp: a broker on 2 cores that keeps up
//! to ~30k clients, then misses the 50 ms objective as its CPU saturates.

use std::path::{Path, PathBuf};

use super::draw::{count, log_bounds, number};
use super::*;
use crate::model::Percentiles;
use crate::model::{Sample, StepResult};

const HOLD_SECS: f64 = 10.0;
const SLO_US: u64 = 50_000;
const MIB: u64 = 1024 * 1024;

fn plausible_run() -> (Vec<StepResult>, Vec<Sample>) {
    let targets = [
        1_000u64, 2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000,
    ];
    let load = |clients: u64| clients as f64 / 40_000.0; // 0..1
    let broker_cpu = |c: u64| 8.0 + 175.0 * load(c).powf(1.3);
    let loadgen_cpu = |c: u64| 5.0 + 60.0 * load(c);
    let broker_rss = |c: u64| 40 * MIB + c * 24 * 1024;
    let loadgen_rss = |c: u64| 30 * MIB + c * 12 * 1024;
    let mut steps = Vec::new();
    let mut samples = Vec::new();
    let mut previous = 0;
    for (i, &clients) in targets.iter().enumerate() {
        let p50 = 300.0 + 25_000.0 * load(clients).powi(4);
        let expected = clients * 10; // one message a second per client, 10 s hold
        let lost = if i == targets.len() - 1 {
            expected / 50
        } else {
            0
        };
        steps.push(StepResult {
            step: i,
            target_clients: clients,
            clients,
            offered_rate: 2_000.0 * (i + 1) as f64,
            hold_secs: HOLD_SECS,
            connect_rate: 4_000.0 - 1_500.0 * load(clients),
            connect_p50_us: (250.0 + 3_000.0 * load(clients).powi(3)) as u64,
            connect_p99_us: (2_000.0 + 90_000.0 * load(clients).powi(3)) as u64,
            published: expected / 100,
            expected,
            delivered: expected - lost,
            lost,
            latency: Percentiles {
                p50_us: p50 as u64,
                p90_us: (p50 * 2.5) as u64,
                p99_us: (p50 * 5.0) as u64,
                p999_us: (p50 * 9.0) as u64,
                max_us: (p50 * 20.0) as u64,
            },
            broker_cpu_pct: broker_cpu(clients),
            broker_rss_bytes: broker_rss(clients),
            loadgen_cpu_pct: loadgen_cpu(clients),
            loadgen_rss_bytes: loadgen_rss(clients),
            broker_alive: true,
            ..Default::default()
        });
        // 5 s of connecting from the previous step's clients, then a 10 s hold.
        for k in 0..15u64 {
            let c = previous + (clients - previous) * (k + 1).min(5) / 5;
            // Deterministic wobble, so the dots scatter around the step mean.
            let wobble = ((k * 7 + i as u64 * 3) % 11) as f64 / 10.0 - 0.5;
            samples.push(Sample {
                t_secs: (i * 15) as f64 + k as f64,
                step: i,
                phase: if k < 5 {
                    crate::model::Phase::Connecting
                } else {
                    crate::model::Phase::Holding
                },
                clients: c,
                delivered_per_sec: c,
                expected_per_sec: c,
                broker_cpu_pct: broker_cpu(c) * (1.0 + 0.15 * wobble),
                broker_rss_bytes: broker_rss(c),
                loadgen_cpu_pct: loadgen_cpu(c) * (1.0 - 0.2 * wobble),
                loadgen_rss_bytes: loadgen_rss(c),
                host_mem_used_bytes: 4 * 1024 * MIB,
                host_mem_total_bytes: 24 * 1024 * MIB,
                host_cpu_pct: None,
                conntrack_entries: None,
                kernel_slab_bytes: None,
                open_files: None,
                listen_overflows: None,
                listen_drops: None,
            });
        }
        previous = clients;
    }
    (steps, samples)
}

/// The context a ramp of this run would draw with: it stopped at its last step, for lack of
/// CPU, below a 40,000-descriptor limit.
fn ctx<'a>(x: XAxis, verdict: &'a Verdict) -> Context<'a> {
    Context {
        slo_p99_us: SLO_US,
        x,
        setup: "hubbub at 127.0.0.1:4243 (started by loadgen), 40,000 subscribers over 1,000 channels; 2,000 msg/s for 10s per step",
        cores: 2,
        verdict: Some(verdict),
    }
}

fn verdict() -> Verdict {
    Verdict {
        failed_at: Some((40_000.0, "step 10 failed: the broker ran out of CPU".into())),
        limit: Some((42_000.0, "broker open-files limit: 42,000".into())),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn renders_four_valid_pngs() {
    let dir = temp_dir("plots");
    let (steps, samples) = plausible_run();
    let written = plot_all(&dir, &steps, &samples, &ctx(XAxis::Clients, &verdict())).unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["latency.png", "throughput.png", "broker.png", "connect.png"]
    );
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        // IHDR: width and height, big-endian, right after the signature and chunk header.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!(width, 1000, "{}", path.display());
        assert!(height >= 600, "{}", path.display());
        assert!(
            bytes.len() > 20_000,
            "{} is only {} bytes",
            path.display(),
            bytes.len()
        );
    }
}

#[test]
fn renders_a_single_step_and_zero_values() {
    let dir = temp_dir("plots-degenerate");
    let step = StepResult {
        broker_alive: false,
        ..Default::default()
    };
    let written = plot_all(
        &dir,
        &[step],
        &[],
        &ctx(XAxis::Clients, &Verdict::default()),
    )
    .unwrap();
    assert_eq!(written.len(), 4);
}

#[test]
fn nothing_to_draw_without_steps() {
    let dir = temp_dir("plots-empty");
    assert!(plot_all(&dir, &[], &[], &ctx(XAxis::Clients, &verdict()))
        .unwrap()
        .is_empty());
}

#[test]
fn against_the_offered_rate_there_is_no_connect_chart() {
    let dir = temp_dir("plots-rate");
    let (steps, samples) = plausible_run();
    let written = plot_all(&dir, &steps, &samples, &ctx(XAxis::OfferedRate, &verdict())).unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["latency.png", "throughput.png", "broker.png"]);
}

#[test]
fn subtitles_wrap_at_their_commas() {
    let lines = super::draw::wrap("a long setup, with parts; and more parts, to wrap", 20);
    assert_eq!(
        lines,
        ["a long setup,", "with parts;", "and more parts,", "to wrap"]
    );
    assert_eq!(super::draw::wrap("short", 20), ["short"]);
    assert_eq!(
        super::draw::wrap("at 2,000 msg/s, for 5s", 12),
        ["at 2,000 msg/s,", "for 5s"]
    );
}

#[test]
fn axis_numbers_are_short() {
    assert_eq!(count(0.0), "0");
    assert_eq!(count(950.0), "950");
    assert_eq!(count(1_500.0), "1.5k");
    assert_eq!(count(20_000.0), "20k");
    assert_eq!(count(1_250_000.0), "1.2M");
    assert_eq!(number(0.25), "0.25");
    assert_eq!(number(50.0), "50");
    assert_eq!(log_bounds([0.0].into_iter()), (0.01, 10.0));
}

/// Writes the sample charts to /tmp/plots for a person to look at:
/// `cargo test -p loadgen sample_plots -- --ignored`.
#[test]
#[ignore]
fn sample_plots() {
    let dir = Path::new("/tmp/plots");
    std::fs::create_dir_all(dir).unwrap();
    let (steps, samples) = plausible_run();
    plot_all(dir, &steps, &samples, &ctx(XAxis::Clients, &verdict())).unwrap();
}
