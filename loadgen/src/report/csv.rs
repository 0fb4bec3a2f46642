//! `steps.csv` and `samples.csv`.
//!
//! Steps go through [`StepRow`], a flat row with the error kinds in their own columns and
//! sizes in MiB, because nested fields do not map to CSV columns and bytes are unreadable in a
//! spreadsheet. Samples are already flat and are written as they are, losslessly.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{write_rows, ReportError};
use crate::model::units::to_mib;
use crate::model::{Sample, StepResult};

/// One row of `steps.csv`; the field order is the column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub step: usize,
    pub target_clients: u64,
    pub clients: u64,
    /// New connections per second, to 0.1.
    pub connect_rate: f64,
    pub connect_p50_us: u64,
    pub connect_p99_us: u64,
    pub err_refused: u64,
    pub err_timeout: u64,
    pub err_emfile: u64,
    pub err_eaddrnotavail: u64,
    pub err_reset: u64,
    pub err_closed: u64,
    pub err_other: u64,
    /// Messages per second asked of the publishers, for how long before counting, and for
    /// how long counted.
    pub offered_rate: f64,
    pub warmup_secs: f64,
    pub hold_secs: f64,
    pub published: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub late: u64,
    pub lat_p50_us: u64,
    pub lat_p90_us: u64,
    pub lat_p99_us: u64,
    pub lat_p999_us: u64,
    pub lat_max_us: u64,
    /// Whether each second's deliveries held still, and what set the step (its class).
    pub steady: Option<bool>,
    pub bottleneck: Option<String>,
    /// % of one core, to 0.1.
    pub broker_cpu_pct: f64,
    /// MiB (2^20 bytes), to 0.01.
    pub broker_rss_mb: f64,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_mb: f64,
    /// The whole machine's, the kernel's work included.
    pub host_cpu_pct: Option<f64>,
    pub broker_alive: bool,
    pub broker_accept_errors: u64,
    pub broker_slow_consumers: u64,
    /// Peak, MiB, machine-wide.
    pub kernel_slab_mb: Option<f64>,
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
}

impl From<&StepResult> for StepRow {
    fn from(s: &StepResult) -> Self {
        StepRow {
            step: s.step,
            target_clients: s.target_clients,
            clients: s.clients,
            connect_rate: round_to(s.connect_rate, 10.0),
            connect_p50_us: s.connect_p50_us,
            connect_p99_us: s.connect_p99_us,
            offered_rate: round_to(s.offered_rate, 10.0),
            warmup_secs: round_to(s.warmup_secs, 1000.0),
            hold_secs: round_to(s.hold_secs, 1000.0),
            err_refused: s.errors.refused,
            err_timeout: s.errors.timeout,
            err_emfile: s.errors.emfile,
            err_eaddrnotavail: s.errors.eaddrnotavail,
            err_reset: s.errors.reset,
            err_closed: s.errors.closed,
            err_other: s.errors.other,
            published: s.published,
            expected: s.expected,
            delivered: s.delivered,
            lost: s.lost,
            late: s.late,
            lat_p50_us: s.latency.p50_us,
            lat_p90_us: s.latency.p90_us,
            lat_p99_us: s.latency.p99_us,
            lat_p999_us: s.latency.p999_us,
            lat_max_us: s.latency.max_us,
            steady: s.steady,
            bottleneck: s.bottleneck.as_ref().map(|b| b.class.name().to_string()),
            broker_cpu_pct: round_to(s.broker_cpu_pct, 10.0),
            broker_rss_mb: round_to(to_mib(s.broker_rss_bytes), 100.0),
            loadgen_cpu_pct: round_to(s.loadgen_cpu_pct, 10.0),
            loadgen_rss_mb: round_to(to_mib(s.loadgen_rss_bytes), 100.0),
            host_cpu_pct: s.host_cpu_pct.map(|c| round_to(c, 10.0)),
            broker_alive: s.broker_alive,
            broker_accept_errors: s.broker_accept_errors,
            broker_slow_consumers: s.broker_slow_consumers,
            kernel_slab_mb: s.kernel_slab_bytes.map(|b| round_to(to_mib(b), 100.0)),
            listen_overflows: s.listen_overflows,
            listen_drops: s.listen_drops,
        }
    }
}

/// Writes `steps.csv`: a header, then one [`StepRow`] per step.
pub fn write_steps_csv(path: &Path, steps: &[StepResult]) -> Result<(), ReportError> {
    write_rows(path, steps.iter().map(StepRow::from))
}

/// Writes `samples.csv`: a header named after [`Sample`]'s fields, then one row per sample.
pub fn write_samples_csv(path: &Path, samples: &[Sample]) -> Result<(), ReportError> {
    write_rows(path, samples.iter())
}

/// `hosts.csv`: each host's workers, second by second (a distributed run's).
pub fn write_hosts_csv(
    path: &Path,
    hosts: &[crate::model::hosts::HostSample],
) -> Result<(), ReportError> {
    write_rows(path, hosts.iter())
}

fn round_to(v: f64, per_unit: f64) -> f64 {
    (v * per_unit).round() / per_unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorCounts, Percentiles};

    fn step(i: usize) -> StepResult {
        StepResult {
            step: i,
            window_from_ns: None,
            target_clients: 1_000 * (i as u64 + 1),
            clients: 990 * (i as u64 + 1),
            connect_rate: 1234.56,
            connect_p50_us: 310,
            connect_p99_us: 4_200,
            errors: ErrorCounts {
                refused: 1,
                timeout: 2,
                emfile: 3,
                eaddrnotavail: 4,
                reset: 5,
                closed: 6,
                other: 7,
            },
            offered_rate: 100.0,
            warmup_secs: 2.0,
            hold_secs: 5.0,
            published: 500,
            expected: 50_000,
            delivered: 49_990,
            lost: 10,
            late: 11,
            latency: Percentiles {
                p50_us: 900,
                p90_us: 2_100,
                p99_us: 7_700,
                p999_us: 15_000,
                max_us: 42_000,
            },
            steady: Some(true),
            bottleneck: None,
            broker_cpu_pct: 87.349,
            broker_rss_bytes: 300 * 1024 * 1024 + 5_000,
            loadgen_cpu_pct: 45.05,
            loadgen_rss_bytes: 64 * 1024 * 1024,
            host_cpu_pct: Some(150.04),
            broker_alive: i == 0,
            broker_accept_errors: 12,
            broker_slow_consumers: 13,
            kernel_slab_bytes: Some(2_000 * 1024 * 1024),
            listen_overflows: Some(14),
            listen_drops: Some(15),
        }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn steps_round_trip_with_the_documented_columns() {
        let path = temp_path("steps.csv");
        let steps = [step(0), step(1)];
        write_steps_csv(&path, &steps).unwrap();

        let mut r = ::csv::Reader::from_path(&path).unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header.join(","),
            "step,target_clients,clients,connect_rate,connect_p50_us,connect_p99_us,\
             err_refused,err_timeout,err_emfile,err_eaddrnotavail,err_reset,err_closed,err_other,\
             offered_rate,warmup_secs,hold_secs,published,expected,delivered,lost,late,\
             lat_p50_us,lat_p90_us,lat_p99_us,lat_p999_us,lat_max_us,steady,bottleneck,\
             broker_cpu_pct,broker_rss_mb,loadgen_cpu_pct,loadgen_rss_mb,host_cpu_pct,\
             broker_alive,broker_accept_errors,broker_slow_consumers,\
             kernel_slab_mb,listen_overflows,listen_drops"
        );
        let rows: Vec<StepRow> = r.deserialize().map(Result::unwrap).collect();
        assert_eq!(rows, steps.iter().map(StepRow::from).collect::<Vec<_>>());
        assert_eq!(rows[0].connect_rate, 1234.6);
        assert_eq!(rows[0].broker_cpu_pct, 87.3);
        assert_eq!(rows[0].broker_rss_mb, 300.0);
        assert_eq!(rows[0].loadgen_rss_mb, 64.0);
        assert_eq!(rows[1].clients, 1_980);
        assert!(rows[0].broker_alive && !rows[1].broker_alive);
        assert_eq!((rows[1].err_emfile, rows[1].err_other), (3, 7));
        assert_eq!(rows[0].kernel_slab_mb, Some(2000.0));
        assert_eq!(rows[0].host_cpu_pct, Some(150.0));
        assert_eq!(
            (rows[0].listen_overflows, rows[0].listen_drops),
            (Some(14), Some(15))
        );
    }

    #[test]
    fn samples_round_trip_exactly() {
        let path = temp_path("samples.csv");
        let samples = vec![
            Sample {
                t_secs: 0.5,
                step: 0,
                phase: crate::model::Phase::Holding,
                clients: 100,
                delivered_per_sec: 12_345,
                expected_per_sec: 12_000,
                broker_cpu_pct: 33.333_333,
                broker_rss_bytes: 123_456_789,
                loadgen_cpu_pct: 12.5,
                loadgen_rss_bytes: 98_765_432,
                host_mem_used_bytes: 5_000_000_000,
                host_mem_total_bytes: 25_000_000_000,
                host_cpu_pct: Some(187.5),
                conntrack_entries: Some(262_144),
                kernel_slab_bytes: Some(1_234_567_890),
                open_files: Some(2_000_123),
                listen_overflows: Some(3),
                listen_drops: Some(4),
            },
            Sample {
                t_secs: 1.5,
                step: 1,
                ..Default::default()
            },
        ];
        write_samples_csv(&path, &samples).unwrap();
        let back: Vec<Sample> = ::csv::Reader::from_path(&path)
            .unwrap()
            .deserialize()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, samples);
    }

    #[test]
    fn unwritable_path_names_the_file() {
        let err = write_steps_csv(Path::new("/nonexistent-dir/steps.csv"), &[step(0)]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-dir/steps.csv"),
            "{err}"
        );
    }
}
