//! loadgen's command line as a user meets it: values it cannot measure with are refused
//! before anything starts, each naming its flag; the exit status says how a run ended; and a
//! run stopped by Ctrl-C or SIGTERM keeps its report and leaves no process behind.

mod common;

use std::time::Duration;

use common::{alive, children_of, loadgen, summary, tempdir, u, wait_for, Background};
use nix::sys::signal::Signal;

/// Every refused value exits with status 2 and a message that names the flag.
#[test]
fn values_that_cannot_be_measured_are_refused_by_name() {
    let cases: [(&[&str], &str); 14] = [
        (&["ramp", "--channels", "0"], "--channels"),
        (&["ramp", "--sources", "0"], "--sources"),
        (&["ramp", "--per-process", "0"], "--per-process"),
        (&["ramp", "--step", "0"], "--step"),
        (&["ramp", "--max-clients", "0"], "--max-clients"),
        (&["ramp", "--rate", "0"], "--rate"),
        (&["ramp", "--hold", "0s"], "--hold"),
        (&["ramp", "--publishers", "0"], "--publishers"),
        (&["ramp", "--slo-p99", "0ms"], "--slo-p99"),
        (&["latency", "--subscribers", "0"], "--subscribers"),
        (&["latency", "--duration", "0s"], "--duration"),
        (&["throughput", "--factor", "1"], "--factor"),
        (&["fanout", "--repeat", "0"], "--repeat"),
        (&["memory", "--clients", "0"], "--clients"),
    ];
    for (args, flag) in cases {
        let run = loadgen(args);
        run.expect_code(2);
        assert!(
            run.stderr.contains(flag) && run.stderr.contains("invalid value"),
            "{}",
            run.transcript()
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.transcript());
    }
}

/// A split that would need thousands of worker processes is refused before one is started.
#[test]
fn a_split_into_too_many_processes_is_refused() {
    let run = loadgen(&["ramp", "--max-clients", "10000", "--per-process", "1"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("--per-process 1 would need 10000 worker processes"),
        "{}",
        run.transcript()
    );
}

/// A ramp whose broker is killed under it reports `broker_gone` and exits with status 4.
#[test]
fn a_broker_that_dies_mid_ramp_exits_4() {
    let mut broker = common::broker(&[]);
    let dir = tempdir("broker-gone");
    let (addr, pid) = (broker.addr.to_string(), broker.pid().to_string());
    let mut run = Background::start(&[
        "ramp",
        "--target",
        &addr,
        "--broker-pid",
        &pid,
        "--max-clients",
        "300",
        "--step",
        "100",
        "--hold",
        "1s",
        "--rate",
        "100",
        "--channels",
        "10",
        "--publishers",
        "1",
        "--connect-timeout",
        "1s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.wait_for_line("step  1: ", Duration::from_secs(30));
    let broker_pid = nix::unistd::Pid::from_raw(broker.pid() as i32);
    nix::sys::signal::kill(broker_pid, Signal::SIGKILL).expect("kill the broker");
    let _ = broker.try_wait(); // reap it, as its parent
    let status = run.wait(Duration::from_secs(60));
    let stderr = run.stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(4), "{stderr}");
    let s = summary(&dir);
    assert_eq!(s["binding_limit"]["kind"], "broker_gone", "{s}");
    assert_eq!(u(&s["clients_held"]), 100, "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C in the middle of a ramp: the steps measured so far are written, marked as
/// interrupted; the broker and the worker processes loadgen started are gone; status 130.
#[test]
fn an_interrupted_ramp_keeps_its_report_and_leaves_no_process() {
    let dir = tempdir("interrupted");
    let mut run = Background::start(&[
        "ramp",
        "--max-clients",
        "1000",
        "--step",
        "100",
        "--hold",
        "2s",
        "--rate",
        "200",
        "--channels",
        "10",
        "--publishers",
        "1",
        "--per-process",
        "400",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.wait_for_line("step  1: ", Duration::from_secs(30));
    // The embedded broker and three workers, all children of loadgen.
    let started = children_of(run.child.id());
    assert_eq!(started.len(), 4, "{started:?}");
    run.signal(Signal::SIGINT);
    let status = run.wait(Duration::from_secs(30));
    let stderr = run.stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        wait_for(Duration::from_secs(5), || !started
            .iter()
            .any(|&p| alive(p))),
        "left running: {:?}",
        started.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    let s = summary(&dir);
    assert_eq!(s["interrupted"], true, "{s}");
    assert_eq!(s["binding_limit"]["kind"], "interrupted", "{s}");
    let steps = s["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{s}");
    for step in steps {
        assert_eq!(u(&step["delivered"]), u(&step["expected"]), "{s}");
    }
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.starts_with("# hubbub load test (interrupted)"), "{md}");
    assert!(dir.join("steps.csv").is_file() && dir.join("latency.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM stops a fixed-rate run the same way: status 130, a report marked interrupted.
#[test]
fn sigterm_stops_a_latency_run_cleanly() {
    let dir = tempdir("sigterm");
    let mut run = Background::start(&[
        "latency",
        "--subscribers",
        "10",
        "--rate",
        "100",
        "--duration",
        "60s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.wait_for_line("publishing", Duration::from_secs(30));
    let started = children_of(run.child.id());
    run.signal(Signal::SIGTERM);
    let status = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{}", run.stderr.lock().unwrap());
    assert!(wait_for(Duration::from_secs(5), || !started
        .iter()
        .any(|&p| alive(p))));
    let s = summary(&dir);
    assert_eq!(s["interrupted"], true, "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}
