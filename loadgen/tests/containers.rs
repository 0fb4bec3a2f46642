//! A distributed ramp across containers, each with its own address and its own descriptor
//! limit: a broker and two agents in containers of scripts/images.sh's images, the
//! coordinator on the host. Its merged report must add up to what the agents' workers say
//! they measured, in their own logs. Needs Docker and the images: scripts/faults.sh runs it.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{loadgen, summary, tempdir, u};

/// Runs `docker` with `args`; its stdout, or a panic naming what failed.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Containers and a network, removed when dropped (a failed assertion included).
struct Deployment {
    prefix: String,
    containers: Vec<String>,
}

impl Deployment {
    fn new() -> Self {
        let prefix = format!("hubbub-dist-{}", std::process::id());
        docker(&["network", "create", &prefix]);
        Self {
            prefix,
            containers: Vec::new(),
        }
    }

    /// Starts `image` as `<prefix>-<name>` on the network with `args`; its address.
    fn run(&mut self, name: &str, extra: &[&str], image: &str, args: &[&str]) -> String {
        let full = format!("{}-{name}", self.prefix);
        let mut cmd = vec!["run", "-d", "--name", &full, "--network", &self.prefix];
        cmd.extend_from_slice(extra);
        cmd.push(image);
        cmd.extend_from_slice(args);
        docker(&cmd);
        self.containers.push(full.clone());
        docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &full,
        ])
    }

    fn logs(&self, name: &str) -> String {
        let out = Command::new("docker")
            .args(["logs", &format!("{}-{name}", self.prefix)])
            .output()
            .expect("docker logs");
        // The agent and its workers write to stderr.
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.prefix])
            .output();
    }
}

/// What a worker said it measured of one window (`loadgen worker N: measured window W:
/// delivered D late L latency_count C latency_max_us M`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Measured {
    delivered: u64,
    late: u64,
    count: u64,
    max_us: u64,
    workers: u64,
}

fn measured_by_window(log: &str, into: &mut BTreeMap<u64, Measured>) {
    for line in log.lines().filter(|l| l.contains(": measured window ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| -> u64 {
            let at = words
                .iter()
                .position(|w| w.trim_end_matches(':') == key)
                .unwrap();
            words[at + 1].trim_end_matches(':').parse().unwrap()
        };
        let m = into.entry(after("window")).or_default();
        m.delivered += after("delivered");
        m.late += after("late");
        m.count += after("latency_count");
        m.max_us = m.max_us.max(after("latency_max_us"));
        m.workers += 1;
    }
}

#[test]
#[ignore = "needs Docker and scripts/images.sh's images: scripts/faults.sh runs it"]
fn a_ramp_across_two_agent_containers_adds_up_to_what_the_agents_measured() {
    let dir = tempdir("containers");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let token = token.to_str().unwrap().to_string();
    let mount = format!("{token}:/token:ro");
    let mut d = Deployment::new();
    let broker = d.run(
        "broker",
        &[],
        "hubbub-broker:local",
        &["--listen", "0.0.0.0:4243"],
    );
    let agent_args = [
        "agent",
        "--listen",
        "0.0.0.0:7700",
        "--token-file",
        "/token",
    ];
    let a = d.run(
        "agent-a",
        &["-v", &mount],
        "hubbub-loadgen:local",
        &agent_args,
    );
    let b = d.run(
        "agent-b",
        &["-v", &mount],
        "hubbub-loadgen:local",
        &agent_args,
    );
    let out = dir.join("report");
    let run = loadgen(&[
        "ramp",
        "--max-clients",
        "2000",
        "--step",
        "1000",
        "--hold",
        "2s",
        "--warmup",
        "1s",
        "--rate",
        "500",
        "--channels",
        "100",
        "--slo-p99",
        "2s",
        "--target",
        &format!("{broker}:4243"),
        "--agents",
        &format!("{a}:7700,{b}:7700"),
        "--agent-token-file",
        &token,
        "--out",
        out.to_str().unwrap(),
    ]);
    run.expect_ok();
    let s = summary(&out);
    let mut measured = BTreeMap::new();
    measured_by_window(&d.logs("agent-a"), &mut measured);
    measured_by_window(&d.logs("agent-b"), &mut measured);
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{}", run.transcript());
    for step in steps {
        let window = u(&step["window_from_ns"]);
        let m = measured[&window];
        eprintln!(
            "step {}: merged delivered {} late {} max {} µs; the agents' workers said {m:?}",
            step["step"], step["delivered"], step["late"], step["latency"]["max_us"]
        );
        assert_eq!(
            m.workers, 2,
            "both agents' workers measured step {}",
            step["step"]
        );
        assert!(m.delivered > 0);
        assert_eq!(
            m.delivered,
            u(&step["delivered"]),
            "deliveries merged without loss"
        );
        assert_eq!(m.count, m.delivered, "every delivery in a histogram");
        assert_eq!(m.late, u(&step["late"]));
        assert_eq!(
            m.max_us,
            u(&step["latency"]["max_us"]),
            "the merged histogram's max"
        );
        assert_eq!(step["delivered"], step["expected"], "{step}");
    }
    let agents = s["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    for agent in agents {
        assert_eq!(u(&agent["clients"]), 1000, "{agent}");
        // One kernel, one monotonic clock: the true offset is 0, within the measured bound.
        let offset = agent["clock_offset_ns"].as_i64().unwrap();
        assert!(
            offset.unsigned_abs() <= u(&agent["clock_uncertainty_ns"]),
            "{agent}"
        );
        // Each container has its own descriptor limit, read there.
        assert!(u(&agent["nofile_hard"]) > 0, "{agent}");
    }
    assert_ne!(
        agents[0]["host"], agents[1]["host"],
        "two containers, two host names"
    );
}
