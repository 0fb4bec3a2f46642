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
        "--warmup",
        "200ms",
        "--duration",
        "1s",
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

    let mut csv = csv::Reader::from_path(dir.join("fanout.csv")).expect("fanout.csv");
    let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "subscribers",
            "run",
            "deliveries",
            "elapsed_s",
            "deliveries_per_sec",
            "publishes_per_sec",
            "cv",
            "trend",
            "steady",
            "bottleneck",
            "broker_cpu_pct",
            "loadgen_cpu_pct",
            "loadgen_us_per_delivery"
        ]
    );
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let subscribers: Vec<&str> = rows.iter().map(|r| &r[col("subscribers")]).collect();
    assert_eq!(subscribers, ["1", "1", "10", "10", "50", "50"]);
    for r in &rows {
        let num = |name: &str| r[col(name)].parse::<f64>().unwrap();
        // One second counted: the deliveries are the rate.
        assert!(num("deliveries") > 0.0 && num("elapsed_s") >= 1.0, "{r:?}");
        // elapsed_s is written to the millisecond, so the rate agrees to within that.
        let rate = num("deliveries") / num("elapsed_s");
        assert!(
            (num("deliveries_per_sec") - rate).abs() <= rate * 0.0005 / num("elapsed_s") + 0.1,
            "{r:?}"
        );
        assert!(
            [
                "broker-bound",
                "client-bound",
                "window-bound",
                "machine-bound"
            ]
            .contains(&&r[col("bottleneck")]),
            "{r:?}"
        );
        assert!(num("loadgen_us_per_delivery") > 0.0, "{r:?}");
    }

    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    for count in ["| 1 |", "| 10 |", "| 50 |"] {
        assert!(summary.contains(count), "{summary}");
    }
    let png = std::fs::metadata(dir.join("fanout.png")).expect("fanout.png");
    assert!(png.len() > 10_000, "fanout.png is only {} bytes", png.len());
}
