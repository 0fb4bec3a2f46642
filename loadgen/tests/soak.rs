//! `loadgen soak` run as a user runs it, small and short: the broker loadgen starts itself,
//! real sockets, every misbehaving population at work, and the report read back.

mod common;

use common::{csv_rows, loadgen, summary, tempdir, u};

/// The columns of `soak.csv`: a window's figures, then what the misbehaving clients did.
const COLUMNS: &str = "window,start_secs,end_secs,counted_from_secs,counted_secs,clients,\
published,expected,delivered,lost,late,p50_us,p99_us,p999_us,max_us,broker_rss_mib,\
broker_cpu_pct,loadgen_rss_mib,broker_connections,broker_slow_consumers,broker_accept_errors,\
broker_alive,churn_connects,churn_disconnects,churn_failures,bursts_sent,bursts_complete,\
burst_messages_received,burst_reader_cuts,slow_cuts,slow_cuts_told,slow_uncut,malformed_sent,\
malformed_errors,malformed_unanswered,half_frames_closed,half_frames_told,half_frames_held,\
abuser_connect_failures";

/// 300 clients for three windows of 2 s: 270 healthy subscribers lose nothing, the burst
/// readers get every burst whole, the malformed clients get their ERRORs, and the report has
/// every file and column. Slow consumers are there but not cut in so short a run (that takes
/// the broker's 10 s soft limit time at the least).
#[test]
fn a_small_soak_passes_and_writes_its_report() {
    let dir = tempdir("soak");
    let run = loadgen(&[
        "soak",
        "--clients",
        "300",
        "--duration",
        "6s",
        "--window",
        "2s",
        "--warmup",
        "1s",
        "--churn",
        "20",
        "--churn-rate",
        "10",
        "--burst-readers",
        "3",
        "--burst-every",
        "2s",
        "--burst-messages",
        "500",
        "--slow",
        "2",
        "--malformed",
        "5",
        // The machine is shared (with builds, say): latency is not what this test is about.
        // (Each window waits twice the objective for its last deliveries: not longer.)
        "--slo-p99",
        "1s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_ok();
    let everything = run.transcript();
    assert!(
        run.stdout.contains(
            "soak passed: 300 clients (270 healthy subscribers, 30 misbehaving) for 3 \
             window(s) of 2 s; every check met"
        ),
        "{everything}"
    );
    for file in [
        "soak.csv",
        "samples.csv",
        "summary.json",
        "summary.md",
        "soak.png",
        "latency.hlog",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing\n{everything}");
    }
    let png = std::fs::read(dir.join("soak.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000);

    let rows = csv_rows(&dir.join("soak.csv"));
    assert_eq!(rows[0].join(","), COLUMNS);
    assert_eq!(rows.len(), 1 + 3, "a row per window");
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let sum = |name: &str| -> u64 {
        rows[1..]
            .iter()
            .map(|r| r[col(name)].parse::<u64>().unwrap())
            .sum()
    };
    for (i, row) in rows[1..].iter().enumerate() {
        let at = |name: &str| row[col(name)].clone();
        assert_eq!(at("window"), (i + 1).to_string());
        assert_eq!(at("clients"), "270", "{everything}");
        assert_eq!(
            at("lost"),
            "0",
            "window {}: healthy lost\n{everything}",
            i + 1
        );
        assert_eq!(at("delivered"), at("expected"));
        assert!(at("expected").parse::<u64>().unwrap() > 0);
        assert_eq!(at("broker_alive"), "true");
        assert!(at("broker_rss_mib").parse::<f64>().unwrap() > 0.0);
    }
    assert!(
        sum("malformed_errors") > 0,
        "no ERROR counted\n{everything}"
    );
    assert_eq!(sum("malformed_unanswered"), 0, "{everything}");
    assert!(sum("churn_connects") > 0, "{everything}");
    assert!(sum("bursts_sent") > 0, "{everything}");
    assert_eq!(sum("bursts_complete"), sum("bursts_sent"), "{everything}");
    assert_eq!(sum("burst_reader_cuts"), 0, "{everything}");

    let s = summary(&dir);
    assert_eq!(s["passed"], true);
    assert_eq!(s["interrupted"], false);
    let checks = s["checks"].as_array().unwrap();
    let kinds: Vec<&str> = checks.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["held", "no_loss", "bursts", "flat_rss", "latency"]);
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
    assert_eq!(u(&s["populations"]["healthy"]), 270);
    let bursts = s["bursts"].as_array().unwrap();
    assert_eq!(bursts.len() as u64, sum("bursts_sent"));
    for b in bursts {
        assert_eq!(b["received"], serde_json::json!([500, 500, 500]), "{b}");
    }
    assert_eq!(s["windows"].as_array().unwrap().len(), 3);
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Checks") && md.contains("Flat RSS, as judged here"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What cannot make a soak is refused before anything starts, with exit status 2 and the flag
/// named.
#[test]
fn flags_that_cannot_make_a_soak_are_refused() {
    for (args, named) in [
        (&["--duration", "5s", "--window", "2s"][..], "--duration"),
        (
            &["--clients", "100"][..],
            "--clients 100 leaves no healthy subscriber",
        ),
        (
            &["--proto", "redis", "--target", "127.0.0.1:9"][..],
            "--proto",
        ),
    ] {
        let mut all = vec!["soak"];
        all.extend_from_slice(args);
        let run = loadgen(&all);
        run.expect_code(2);
        assert!(run.stderr.contains(named), "{}", run.transcript());
    }
}
