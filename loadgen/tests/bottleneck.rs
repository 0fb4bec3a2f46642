//! What set a figure, judged on a real run: loadgen held to a fifth of a core by a cgroup CPU
//! quota, against a broker free to use the machine, must call its fan-out client-bound; and
//! `--json` gives the summary, with its provenance, to a program.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{broker, loadgen, tempdir, LOADGEN};

/// A cgroup (v1 `cpu`, or v2 with the cpu controller) holding its processes to `cores`;
/// removed when dropped. Needs root, as this project's test machines give.
struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    fn new(name: &str, cores: f64) -> CpuLimit {
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let period = 100_000u64;
        let quota = (cores * period as f64) as u64;
        let dir = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            let _ = std::fs::create_dir(&dir);
            std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()).unwrap();
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).unwrap();
            dir
        } else {
            let controllers =
                std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
            assert!(
                controllers.split_whitespace().any(|c| c == "cpu"),
                "no cgroup cpu controller here (v1 /sys/fs/cgroup/cpu or v2 with cpu): this \
                 test needs one, and root"
            );
            let dir = v2.join(name);
            let _ = std::fs::create_dir(&dir);
            std::fs::write(dir.join("cpu.max"), format!("{quota} {period}")).unwrap();
            dir
        };
        CpuLimit { dir }
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // A cgroup is removed once its processes have left it (they have exited by now).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn loadgen_held_to_a_fifth_of_a_core_is_client_bound() {
    let hubbub = broker(&[]);
    let limit = CpuLimit::new(&format!("loadgen-test-{}", std::process::id()), 0.2);
    let dir = tempdir("client-bound");
    // The shell joins the cgroup and then becomes loadgen, so loadgen runs in it from its
    // first instruction; the broker, started here, is not in it.
    let script = format!(
        "echo $$ > {} && exec {LOADGEN} fanout --target {} --broker-pid {} --subscribers 100 \
         --warmup 1s --duration 3s --repeat 1 --out {}",
        limit.procs().display(),
        hubbub.addr,
        hubbub.pid(),
        dir.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let mut csv = csv::Reader::from_path(dir.join("fanout.csv")).expect("fanout.csv");
    let header = csv.headers().unwrap().clone();
    let row = csv.records().next().expect("a run").unwrap();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&row[col("bottleneck")], "client-bound", "{text}");
    let loadgen_cpu: f64 = row[col("loadgen_cpu_pct")].parse().unwrap();
    assert!(
        loadgen_cpu <= 25.0,
        "held to 20%, used {loadgen_cpu}%: {text}"
    );
    assert!(text.contains("client-bound: broker"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_puts_the_summary_on_stdout() {
    let dir = tempdir("json");
    let run = loadgen(&[
        "latency",
        "--json",
        "--subscribers",
        "10",
        "--rate",
        "200",
        "--warmup",
        "200ms",
        "--duration",
        "1s",
        "--slo-p99",
        "2s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_ok();
    let s: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.transcript()));
    assert_eq!(s["kind"], "latency");
    assert_eq!(s["steps"][0]["delivered"], 200 * 10);
    let p = &s["provenance"];
    assert_eq!(p["loadgen_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["brokers"][0]["version"], "0.1.0");
    assert!(p["command"].as_str().unwrap().contains("--json"));
    assert!(p["cores"].as_u64().unwrap() >= 1);
    // The tables went to stderr, with the progress.
    assert!(run.stderr.contains("| step |"), "{}", run.transcript());
    assert!(dir.join("latency.hlog").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
