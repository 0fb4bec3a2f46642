//! `loadgen fanout` sweeping subscriber counts, run as a user runs it: the real binary against
//! the broker it starts itself, and the report it writes read back.

mod common;

use common::{loadgen, tempdir};

#[test]
fn a_sweep_writes_every_run_and_a_chart() {
    let dir = tempdir("sweep");
    let args = [
        "fanout",
        "--subscribers",
        "1,10,50",
        "--deliveries",
        "20000",
        "--repeat",
        "2",
        "--out",
        dir.to_str().expect("a UTF-8 temp dir"),
    ];
    let run = loadgen(&args);
    run.expect_ok();
    assert_eq!(
        run.stdout.matches("median: ").count(),
        3,
        "{}",
        run.transcript()
    );

    let csv = std::fs::read_to_string(dir.join("fanout.csv")).expect("fanout.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(
        header,
        [
            "subscribers",
            "run",
            "publishes",
            "deliveries",
            "elapsed_s",
            "deliveries_per_sec",
            "publishes_per_sec"
        ],
        "{csv}"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().expect(v)).collect())
        .collect();
    let subscribers: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(subscribers, [1.0, 1.0, 10.0, 10.0, 50.0, 50.0], "{csv}");
    for r in &rows {
        let (subscribers, publishes, deliveries) = (r[0], r[2], r[3]);
        // 20000 deliveries per run divide evenly at 1, 10 and 50 subscribers.
        assert_eq!(publishes * subscribers, 20_000.0, "{csv}");
        assert_eq!(deliveries, publishes * subscribers, "{csv}");
        assert!(r[4] > 0.0 && r[5] > 0.0 && r[6] > 0.0, "{csv}");
    }

    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    for count in ["| 1 |", "| 10 |", "| 50 |"] {
        assert!(summary.contains(count), "{summary}");
    }
    let png = std::fs::metadata(dir.join("fanout.png")).expect("fanout.png");
    assert!(png.len() > 10_000, "fanout.png is only {} bytes", png.len());
}
