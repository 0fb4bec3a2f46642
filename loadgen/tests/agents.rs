//! Load from several hosts: `loadgen agent` processes serving a coordinator's workers over
//! TCP, here on loopback (scripts/faults.sh runs the same across containers). One report of
//! the same form as a local run, the agents' clocks measured, a wrong token refused, and an
//! agent that goes silent mid-run reported rather than waited on.

mod common;

use std::time::{Duration, Instant};

use common::{loadgen, summary, tempdir, u, Background};

/// A token file of `token` in `dir`.
fn token_file(dir: &std::path::Path, token: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

/// An agent on a free loopback port, and its address.
fn agent(token: &str) -> (Background, String) {
    let a = Background::start(&["agent", "--listen", "127.0.0.1:0", "--token-file", token]);
    let line = a.line_with("listening on", Duration::from_secs(10));
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    (a, addr)
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn a_ramp_over_two_agents_is_one_report_that_adds_up() {
    let dir = tempdir("agents-ramp");
    let token = token_file(&dir.join("secret"), TOKEN);
    let (_a, a_addr) = agent(&token);
    let (_b, b_addr) = agent(&token);
    let out = dir.join("report");
    let run = loadgen(&[
        "ramp",
        "--max-clients",
        "600",
        "--step",
        "300",
        "--hold",
        "1s",
        "--warmup",
        "500ms",
        "--rate",
        "300",
        "--channels",
        "30",
        "--slo-p99",
        "2s",
        "--agents",
        &format!("{a_addr},{b_addr}"),
        "--agent-token-file",
        &token,
        "--out",
        out.to_str().unwrap(),
    ]);
    run.expect_ok();
    assert!(
        run.stderr.contains("on 2 agent(s), the publishers too"),
        "{}",
        run.transcript()
    );
    let s = summary(&out);
    assert_eq!(
        s["binding_limit"]["kind"],
        "max_clients",
        "{}",
        run.transcript()
    );
    let agents = s["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    let mut held = 0;
    for a in agents {
        assert_eq!(u(&a["workers"]), 1, "{a}");
        held += u(&a["clients"]);
        // Both clocks are this machine's: the true offset is 0, so the measured one must be
        // within its own bound of it.
        let offset = a["clock_offset_ns"].as_i64().unwrap();
        assert!(
            offset.unsigned_abs() <= u(&a["clock_uncertainty_ns"]),
            "{a}"
        );
        assert!(
            a["clock_offset_end_ns"].is_i64(),
            "measured again at the end: {a}"
        );
        assert!(a["lost"].is_null(), "{a}");
    }
    assert_eq!(held, 600, "the agents' clients are the run's");
    // Every step's deliveries: all of them, counted once, from both agents' histograms.
    for step in s["steps"].as_array().unwrap() {
        assert_eq!(step["delivered"], step["expected"], "{step}");
        // 300 msg/s for 1 s counted, from the agents' publishers: the schedule kept whole.
        assert_eq!(u(&step["published"]), 300, "{step}");
        assert!(u(&step["expected"]) > 0);
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("## Agents") && md.contains(&a_addr) && md.contains(&b_addr),
        "{md}"
    );
    let hosts = std::fs::read_to_string(out.join("hosts.csv")).unwrap();
    assert!(
        hosts.contains(&a_addr) && hosts.contains(&b_addr),
        "{hosts}"
    );
}

#[test]
fn a_coordinator_without_the_token_is_refused_by_name() {
    let dir = tempdir("agents-token");
    let token = token_file(&dir.join("right"), TOKEN);
    let wrong = token_file(&dir.join("wrong"), "ffffffffffffffffffffffffffffffff");
    let (a, addr) = agent(&token);
    let run = loadgen(&[
        "ramp",
        "--max-clients",
        "10",
        "--agents",
        &addr,
        "--agent-token-file",
        &wrong,
    ]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains(&format!("agent {addr} refused: wrong token")),
        "{}",
        run.transcript()
    );
    assert!(a.stderr.lock().unwrap().contains("refused: wrong token"));
}

/// An agent stopped mid-run (SIGSTOP: its host frozen, as `docker pause` does) sends nothing
/// more: the coordinator names it lost within a few seconds, ends the run with what it had
/// measured, and says so in the verdict.
#[test]
fn an_agent_that_goes_silent_is_reported_lost_not_waited_on() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = tempdir("agents-lost");
    let token = token_file(&dir.join("secret"), TOKEN);
    let (_a, a_addr) = agent(&token);
    let (b, b_addr) = agent(&token);
    let out = dir.join("report");
    let out_arg = out.to_str().unwrap().to_string();
    let agents = format!("{a_addr},{b_addr}");
    let mut run = Background::start(&[
        "ramp",
        "--max-clients",
        "400",
        "--step",
        "200",
        "--hold",
        "30s",
        "--warmup",
        "500ms",
        "--rate",
        "200",
        "--channels",
        "20",
        "--agents",
        &agents,
        "--agent-token-file",
        &token,
        "--out",
        &out_arg,
    ]);
    run.wait_for_line("step 1/2  publishing", Duration::from_secs(30));
    let frozen = Pid::from_raw(b.child.id() as i32);
    kill(frozen, Signal::SIGSTOP).unwrap();
    let stopped_at = Instant::now();
    let status = run.wait(Duration::from_secs(60));
    let took = stopped_at.elapsed();
    kill(frozen, Signal::SIGCONT).unwrap();
    assert_eq!(status.code(), Some(3), "{}", run.stderr.lock().unwrap());
    // The hold had 30 s to go: it ended on the loss, not on the hold's end.
    assert!(took < Duration::from_secs(25), "took {took:?}");
    let s = summary(&out);
    assert_eq!(s["binding_limit"]["kind"], "worker_lost");
    let evidence = s["binding_limit"]["evidence"].as_str().unwrap();
    assert!(evidence.contains(&format!("agent {b_addr}")), "{evidence}");
    // Agents are listed by address: find each by its own.
    let agents = s["agents"].as_array().unwrap();
    let by = |addr: &str| agents.iter().find(|a| a["address"] == addr).unwrap();
    let lost = by(&b_addr);
    assert!(
        lost["lost"].as_str().unwrap().starts_with("during step 1"),
        "{lost}"
    );
    assert!(by(&a_addr)["lost"].is_null());
}
