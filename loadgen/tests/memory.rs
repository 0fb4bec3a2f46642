//! `loadgen memory` run as a user runs it: the real binary, the broker it starts itself, and
//! the files it writes read back.

use std::process::Command;

use serde_json::Value;

#[test]
fn small_memory_run_writes_a_consistent_report() {
    let dir = std::env::temp_dir().join(format!("loadgen-test-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env("LOADGEN_EXE", env!("CARGO_BIN_EXE_loadgen"))
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen {args:?} failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("median: broker"), "{stdout}");

    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    let summary: Value = serde_json::from_str(&text).expect("summary.json is JSON");
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
