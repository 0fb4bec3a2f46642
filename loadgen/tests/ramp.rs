//! loadgen run as a user runs it: the real binary, real brokers on loopback, and the files it
//! writes read back.

mod common;

use common::{csv_rows, loadgen, summary, tempdir, u};

/// A small ramp against the broker loadgen starts itself, split over four worker processes
/// (each held to its share by its own open-files limit) and two source addresses.
#[test]
fn small_ramp_writes_a_consistent_report() {
    let dir = tempdir("ramp");
    let run = loadgen(&[
        "ramp",
        "--max-clients",
        "2000",
        "--step",
        "500",
        "--hold",
        "1s",
        "--rate",
        "400",
        "--channels",
        "20",
        "--publishers",
        "2",
        "--slo-p99",
        "2s",
        "--per-process",
        "600",
        "--sources",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_ok();
    assert!(
        run.stdout.contains("held 2,000 clients"),
        "{}",
        run.transcript()
    );

    for file in ["steps.csv", "samples.csv", "summary.json", "summary.md"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let pngs = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert!(pngs >= 4, "only {pngs} plots");

    let s = summary(&dir);
    assert_eq!(s["binding_limit"]["kind"], "max_clients");
    assert_eq!(u(&s["clients_held"]), 2000);
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    for (i, step) in steps.iter().enumerate() {
        let target = 500 * (i as u64 + 1);
        assert_eq!(u(&step["target_clients"]), target);
        assert_eq!(
            u(&step["clients"]),
            target,
            "step {i}: every subscriber connected"
        );
        let errors: u64 = step["errors"].as_object().unwrap().values().map(u).sum();
        assert_eq!(errors, 0, "step {i}: no errors (worker split held)");
        // 400 msg/s for 1 s, spread evenly over 20 channels of target/20 subscribers each.
        assert_eq!(u(&step["published"]), 400);
        assert_eq!(u(&step["expected"]), 400 * target / 20);
        let (expected, delivered) = (u(&step["expected"]), u(&step["delivered"]));
        assert!(delivered <= expected);
        assert_eq!(u(&step["lost"]), expected - delivered);
        assert!(step["broker_alive"].as_bool().unwrap());
    }

    let mut csv = csv_rows(&dir.join("steps.csv"));
    let header = csv.remove(0);
    assert_eq!(csv.len(), 4);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, step) in csv.iter().zip(steps) {
        assert_eq!(
            row[col("clients")].parse::<u64>().unwrap(),
            u(&step["clients"])
        );
        assert_eq!(
            row[col("delivered")].parse::<u64>().unwrap(),
            u(&step["delivered"])
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Against a broker that accepts only 300 connections, the ramp stops at the step that
/// crosses it and reports the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_when_the_broker_refuses_clients() {
    let broker = hubbub::start(hubbub::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections: Some(300),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempdir("refuse");
    let (target, out_dir) = (broker.addr.to_string(), dir.to_str().unwrap().to_string());
    let run = tokio::task::spawn_blocking(move || {
        loadgen(&[
            "ramp",
            "--target",
            &target,
            "--max-clients",
            "600",
            "--step",
            "200",
            "--hold",
            "500ms",
            "--rate",
            "200",
            "--channels",
            "10",
            "--publishers",
            "1",
            "--slo-p99",
            "2s",
            "--out",
            &out_dir,
        ])
    })
    .await
    .unwrap();
    // The ramp found its limit below --max-clients: the objective was not met.
    run.expect_code(3);
    let s = summary(&dir);
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{}", run.transcript());
    // 300 connections: 1 publisher, 1 stats probe, 298 subscribers, each of which still got
    // every message: the broker held 298 and refused the rest.
    assert_eq!(u(&steps[1]["clients"]), 298);
    assert_eq!(u(&steps[1]["lost"]), 0);
    assert_eq!(u(&s["clients_held"]), 298);
    // Refused with an ERROR and a close; depending on timing the client sees the ERROR, the
    // EOF, or a reset (the broker closed with the client's SUBSCRIBE unread).
    let e = &steps[1]["errors"];
    assert_eq!(u(&e["closed"]) + u(&e["reset"]), 102, "{e}");
    assert_ne!(s["binding_limit"]["kind"], "max_clients");
    broker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `throughput` raises the rate by --factor up to --max-rate; with a lenient objective every
/// stage passes and the answer is the highest rate offered.
#[test]
fn throughput_search_reports_every_stage() {
    let dir = tempdir("throughput");
    let run = loadgen(&[
        "throughput",
        "--subscribers",
        "10",
        "--start-rate",
        "250",
        "--factor",
        "2",
        "--max-rate",
        "1000",
        "--hold",
        "500ms",
        "--slo-p99",
        "2s",
        "--publishers",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_ok();
    let s = summary(&dir);
    assert_eq!(s["kind"], "throughput");
    let stages = s["steps"].as_array().unwrap();
    let rates: Vec<f64> = stages
        .iter()
        .map(|st| st["offered_rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [250.0, 500.0, 1000.0]);
    assert_eq!(s["rate"].as_f64(), Some(1000.0));
    for st in stages {
        // One channel, ten subscribers: every publish is ten deliveries.
        assert_eq!(u(&st["expected"]), 10 * u(&st["published"]));
        assert_eq!(u(&st["delivered"]), u(&st["expected"]));
    }
    assert!(dir.join("throughput.png").is_file() && dir.join("steps.csv").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `latency` holds one rate and reports its percentiles, in order.
#[test]
fn latency_run_reports_ordered_percentiles() {
    let dir = tempdir("latency");
    let run = loadgen(&[
        "latency",
        "--subscribers",
        "20",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--slo-p99",
        "2s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_ok();
    let s = summary(&dir);
    assert_eq!(s["kind"], "latency");
    let step = &s["steps"][0];
    assert_eq!(u(&step["published"]), 200);
    assert_eq!(u(&step["delivered"]), 200 * 20);
    let l = &s["latency"];
    let order = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"].map(|k| u(&l[k]));
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]) && order[0] > 0,
        "{l}"
    );
    assert!(dir.join("latency.png").is_file() && dir.join("summary.md").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// With more clients than one broker process's descriptors hold, the ramp starts a hub and
/// enough leaves by itself, spreads the clients over the leaves, and stops them all after.
#[test]
fn a_ramp_past_one_process_starts_a_hub_by_itself() {
    use std::os::unix::process::CommandExt;
    let dir = tempdir("ramp-hub");
    let args = [
        "ramp",
        "--max-clients",
        "400",
        "--step",
        "200",
        "--hold",
        "1s",
        "--rate",
        "200",
        "--channels",
        "10",
        "--publishers",
        "2",
        "--slo-p99",
        "2s",
        "--out",
        dir.to_str().unwrap(),
    ];
    let mut command = common::command(&args);
    // 250 descriptors, 100 of them loadgen's margin: 150 clients a process, so 402 clients
    // need three leaves (and three workers).
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            rlimit::setrlimit(rlimit::Resource::NOFILE, 250, 250)?;
            Ok(())
        });
    }
    let run = common::finish(command, &args);
    run.expect_ok();
    assert!(
        run.stdout.contains("held 400 clients") && run.stderr.contains("and 3 leaves"),
        "{}",
        run.transcript()
    );
    let s = summary(&dir);
    let brokers = s["provenance"]["brokers"].as_array().unwrap();
    let names: Vec<&str> = brokers
        .iter()
        .map(|b| b["broker"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "hubbub hub",
            "hubbub leaf-1",
            "hubbub leaf-2",
            "hubbub leaf-3"
        ]
    );
    for step in s["steps"].as_array().unwrap() {
        // Every subscriber's share of every message, wherever its publisher was: through the hub.
        assert_eq!(u(&step["delivered"]), u(&step["expected"]), "{step}");
        assert!(u(&step["expected"]) > 0, "{step}");
        assert!(step["broker_alive"].as_bool().unwrap());
    }
    // Every broker it started was stopped: none of them listens any more.
    for b in brokers {
        let addr = b["address"].as_str().unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "the broker at {addr} still listens after the ramp"
        );
    }
}
