//! `loadgen memory` run as a user runs it: the real binary, the broker it starts itself, and
//! the files it writes read back.

mod common;

use common::{loadgen, summary, tempdir};

#[test]
fn small_memory_run_writes_a_consistent_report() {
    let dir = tempdir("memory");
    let args = [
        "memory",
        "--clients",
        "500",
        "--channels",
        "10",
        "--repeat",
        "2",
        "--out",
        dir.to_str().expect("a UTF-8 temp dir"),
    ];
    let run = loadgen(&args);
    run.expect_ok();
    assert!(
        run.stdout.contains("median: broker"),
        "{}",
        run.transcript()
    );

    let summary = summary(&dir);
    assert_eq!(summary["clients"], 500);
    assert_eq!(summary["embedded"], true);
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        let baseline = run["rss_baseline"].as_u64().expect("rss_baseline");
        let after = run["rss_after"].as_u64().expect("rss_after");
        // 500 subscribers cost the broker something, and nowhere near 1 MiB each.
        assert!(after > baseline, "{run}");
        assert!(after - baseline < 500 << 20, "{run}");
    }
    let median = summary["median_rss_per_conn"].as_f64().expect("median");
    assert!(median > 0.0, "{summary}");

    let csv = std::fs::read_to_string(dir.join("memory.csv")).expect("memory.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("run,clients,channels,rss_baseline"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
