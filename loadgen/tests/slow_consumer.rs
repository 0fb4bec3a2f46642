//! What a slow consumer costs the others: `loadgen latency --stalled` run as a user runs it,
//! against a broker started here with a small slow-consumer limit (`--max-pending 64K`), so
//! that the stalled subscribers are cut off within a short run. The default 8 MiB takes
//! seconds per stalled subscriber to fill.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A `loadgen broker` child process, killed when dropped; its log is kept for failures.
struct Broker {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Broker {
    fn start(extra: &[&str]) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--stats-interval",
                "0s",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("loadgen broker starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let kept = log.clone();
        // Reads the whole log, so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the broker did not listen:\n{}", log.lock().unwrap());
            }
        };
        Broker { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Two subscribers that never read, on a broker that cuts a connection off past 64 KiB of
/// pending output: both are closed during the run, the broker counts them as slow consumers,
/// and the twenty healthy subscribers get every message, counted without the stalled two.
#[test]
fn stalled_subscribers_are_cut_off_and_the_others_get_everything() {
    let broker = Broker::start(&["--max-pending", "64K"]);
    let dir = std::env::temp_dir().join(format!("loadgen-test-stalled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pid = broker.child.id().to_string();
    let args = [
        "latency",
        "--target",
        &broker.addr,
        "--broker-pid",
        &pid,
        "--subscribers",
        "20",
        "--stalled",
        "2",
        "--rate",
        "2000",
        "--size",
        "512",
        "--duration",
        "3s",
        "--out",
        dir.to_str().unwrap(),
    ];
    let out: Output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env("LOADGEN_EXE", env!("CARGO_BIN_EXE_loadgen"))
        .output()
        .expect("loadgen runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let everything = format!(
        "--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- broker log\n{}",
        broker.log()
    );
    assert!(
        out.status.success(),
        "loadgen {args:?} failed\n{everything}"
    );

    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    let s: Value = serde_json::from_str(&text).expect("summary.json is JSON");
    assert_eq!(s["kind"], "latency");
    assert_eq!(u(&s["subscribers"]), 20, "the stalled are not subscribers");
    assert_eq!(u(&s["stalled"]), 2);
    assert_eq!(
        u(&s["stalled_disconnected"]),
        2,
        "both stalled subscribers closed by the broker\n{everything}"
    );

    let steps = s["steps"].as_array().unwrap();
    let mut slow_consumers = 0;
    for step in steps {
        assert_eq!(u(&step["clients"]), 20, "only the healthy are clients");
        // One channel: each publish is owed to the 20 healthy subscribers, not to the 22.
        assert_eq!(u(&step["expected"]), 20 * u(&step["published"]));
        assert!(u(&step["published"]) > 0);
        assert_eq!(
            u(&step["delivered"]),
            u(&step["expected"]),
            "every healthy delivery arrived\n{everything}"
        );
        assert_eq!(u(&step["lost"]), 0);
        assert!(step["broker_alive"].as_bool().unwrap());
        slow_consumers += u(&step["broker_slow_consumers"]);
    }
    assert!(
        slow_consumers >= 2,
        "the broker counted {slow_consumers} slow consumers\n{everything}"
    );
    assert!(
        stdout.contains("stalled subscribers: 2, closed by the broker during the run: 2;"),
        "{everything}"
    );
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Stalled subscribers"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
