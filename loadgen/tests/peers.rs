//! loadgen's protocol drivers ([`loadgen::proto`]) against the real servers they will
//! measure: Redis, NATS and Mosquitto as installed from the distribution, each started here on
//! a free loopback port, and hubbub in this process. Then the one-broker measurements
//! ([`loadgen::scenario::fanout`], [`loadgen::scenario::memory`]) run as library calls against each, hubbub
//! included as its own process (loadgen's hidden `broker` command) so its memory is its own.
//!
//! A missing server binary fails the test (with the command that installs it) rather than
//! skipping it: a comparison that silently lost a peer would look like a passing one.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use loadgen::proto::{Proto, Reader};
use loadgen::rig::stamp;
use loadgen::scenario::{connect, fanout, memory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INSTALL: &str = "run `apt-get install redis-server nats-server mosquitto` (as root)";

/// Messages the publisher sends on "c".
const MESSAGES: u64 = 1_000;

/// How long a subscriber that has everything it expects keeps reading, to catch extras.
const LINGER: Duration = Duration::from_millis(300);

/// A server process, killed when the test ends however it ends.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `name` is installed: on PATH, or in the sbin directories a user's PATH may lack
/// (Debian puts nats-server and mosquitto in /usr/sbin).
fn find(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: {INSTALL}"))
}

fn free_port() -> u16 {
    // Bind, read the port, release it: a small race with anything else picking ports, which
    // `start` covers by trying again.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a local address").port()
}

/// Starts `name` with the arguments `args(port, dir)` gives (`dir` is the server's own temp
/// directory) and waits until its port accepts connections.
fn start(name: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Server {
    start_bin(find(name), name, args)
}

/// [`start`] for the executable at `bin`.
fn start_bin(bin: PathBuf, name: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Server {
    let mut last_log = String::new();
    for attempt in 0..3 {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = std::env::temp_dir().join(format!(
            "loadgen-peers-{name}-{}-{attempt}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp directory");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).expect("a log file");
        let child = Command::new(&bin)
            .args(args(port, &dir))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start ({e}): {INSTALL}", bin.display()));
        let mut server = Server { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                return server;
            }
            let exited = server.child.try_wait().expect("wait on the server");
            if exited.is_some() || Instant::now() > deadline {
                last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                break; // maybe the port was taken in between: try another
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{name} did not start listening; its last log:\n{last_log}");
}

fn redis() -> Server {
    start("redis-server", |port, _| {
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
        .to_vec()
    })
}

fn nats() -> Server {
    start("nats-server", |port, _| {
        ["-a", "127.0.0.1", "-p", &port.to_string()]
            .map(String::from)
            .to_vec()
    })
}

fn mosquitto() -> Server {
    start("mosquitto", |port, dir| {
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write mosquitto.conf");
        vec!["-c".into(), config.display().to_string()]
    })
}

async fn connect(proto: Proto, addr: SocketAddr, client_id: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{proto}: connect to {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    let pending = proto
        .handshake(&mut stream, client_id)
        .await
        .unwrap_or_else(|e| panic!("{proto}: handshake: {e}"));
    (stream, pending)
}

/// Reads payloads until it has `want` of them and nothing more arrives for [`LINGER`],
/// answering what the protocol requires.
async fn collect(
    proto: Proto,
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    want: usize,
) -> Vec<Vec<u8>> {
    let mut reader = Reader::new(proto);
    let (mut got, mut reply) = (Vec::new(), Vec::new());
    loop {
        let used = reader
            .feed(&buf, |p| got.push(p.to_vec()), &mut reply)
            .unwrap_or_else(|e| panic!("{proto}: subscriber: {e}"));
        buf.drain(..used);
        if !reply.is_empty() {
            stream.write_all(&reply).await.unwrap();
            reply.clear();
        }
        buf.reserve(4096);
        let read = stream.read_buf(&mut buf);
        let n = if got.len() >= want {
            match tokio::time::timeout(LINGER, read).await {
                Ok(n) => n,
                Err(_) => return got,
            }
        } else {
            read.await
        };
        match n {
            Ok(0) => panic!(
                "{proto}: the server closed a subscriber after {} payloads",
                got.len()
            ),
            Ok(_) => {}
            Err(e) => panic!("{proto}: subscriber read: {e}"),
        }
    }
}

/// Three subscribers on "c" and one on "d"; a publisher sends [`MESSAGES`] on "c", then one
/// marker on "d". Every "c" subscriber gets exactly the payloads, in order; the "d" subscriber
/// gets the marker and nothing else (so it was listening, and "c" did not leak into it).
async fn fan_out(proto: Proto, addr: SocketAddr) {
    // Payloads as loadgen's publishers build them: `<intended_ns>:<seq>:xxx…`, 40 bytes.
    let expected: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|seq| {
            let mut p = format!("{}:{seq}:", stamp::now_ns()).into_bytes();
            p.resize(p.len().max(40), b'x');
            p
        })
        .collect();
    let marker = b"end-of-c".to_vec();

    let mut subscribers = Vec::new();
    for (i, channel) in ["c", "c", "c", "d"].into_iter().enumerate() {
        let (mut stream, pending) = connect(proto, addr, &format!("loadgen-peers-sub-{i}")).await;
        let rest = proto
            .subscribe(&mut stream, channel, pending)
            .await
            .unwrap_or_else(|e| panic!("{proto}: subscribe to {channel}: {e}"));
        let want = if channel == "c" { expected.len() } else { 1 };
        subscribers.push((channel, tokio::spawn(collect(proto, stream, rest, want))));
    }

    let (stream, pending) = connect(proto, addr, "loadgen-peers-pub").await;
    let (mut read_half, mut write_half) = stream.into_split();
    // The publisher reads too: Redis answers every PUBLISH, and any server may send an error.
    let drain = tokio::spawn(async move {
        let mut reader = Reader::new(proto);
        let (mut buf, mut reply) = (pending, Vec::new());
        loop {
            let used = reader
                .feed(
                    &buf,
                    |p| panic!("{proto}: the publisher received {p:?}"),
                    &mut reply,
                )
                .unwrap_or_else(|e| panic!("{proto}: publisher: {e}"));
            buf.drain(..used);
            // A PING to the publisher would need an answer; none comes in a test this short.
            assert!(reply.is_empty(), "{proto}: the publisher was pinged");
            buf.reserve(4096);
            if read_half.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    });
    // Several publishes per write, as loadgen's publishers batch what is due.
    for chunk in expected.chunks(64) {
        let mut out = Vec::new();
        for payload in chunk {
            proto.encode_publish(&mut out, "c", payload);
        }
        write_half.write_all(&out).await.unwrap();
    }
    let mut out = Vec::new();
    proto.encode_publish(&mut out, "d", &marker);
    write_half.write_all(&out).await.unwrap();

    for (channel, task) in subscribers {
        let got = task.await.expect("subscriber task");
        if channel == "c" {
            assert_eq!(got.len(), expected.len(), "{proto}: payloads on c");
            for (seq, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(
                    g,
                    e,
                    "{proto}: payload {seq}: got {:?}, want {:?}",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(e)
                );
            }
        } else {
            assert_eq!(
                got,
                std::slice::from_ref(&marker),
                "{proto}: the d subscriber"
            );
        }
    }
    drop(write_half);
    drain.abort();
    if let Err(e) = drain.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

async fn within_time(proto: Proto, addr: SocketAddr) {
    tokio::time::timeout(Duration::from_secs(30), fan_out(proto, addr))
        .await
        .unwrap_or_else(|_| panic!("{proto}: fan-out did not finish in 30 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubbub_in_process() {
    let broker = hubbub::start(hubbub::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..hubbub::Config::default()
    })
    .await
    .expect("hubbub starts");
    within_time(Proto::Hubbub, broker.addr).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub() {
    let server = redis();
    within_time(Proto::Redis, server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_core() {
    let server = nats();
    within_time(Proto::Nats, server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_qos0() {
    let server = mosquitto();
    within_time(Proto::Mqtt, server.addr).await;
}

/// The servers' refusals reach the caller as errors, not hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_say_no() {
    let redis = redis();
    let (mut stream, _) = connect(Proto::Redis, redis.addr, "x").await;
    stream.write_all(b"*1\r\n$6\r\nNOSUCH\r\n").await.unwrap();
    let e = Proto::Redis
        .subscribe(&mut stream, "c", Vec::new())
        .await
        .expect_err("an unknown command is refused");
    assert!(e.to_string().contains("unknown command"), "{e}");

    let nats = nats();
    let (mut stream, _) = connect(Proto::Nats, nats.addr, "x").await;
    let e = Proto::Nats
        .subscribe(&mut stream, "a..b", Vec::new())
        .await
        .expect_err("an invalid subject is refused");
    assert!(
        e.to_string().to_lowercase().contains("invalid subject"),
        "{e}"
    );

    let mosquitto = mosquitto();
    let (mut stream, _) = connect(Proto::Mqtt, mosquitto.addr, "x").await;
    // A PUBLISH to a wildcard topic is a protocol violation: Mosquitto hangs up.
    let mut out = Vec::new();
    Proto::Mqtt.encode_publish(&mut out, "a/#", b"x");
    stream.write_all(&out).await.unwrap();
    let e = Proto::Mqtt
        .subscribe(&mut stream, "c", Vec::new())
        .await
        .expect_err("Mosquitto disconnects");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
}

/// `fanout::measure` and `memory::measure_broker` as a comparison calls them: a steady-state
/// fan-out (2 publishers on two channels to 3 subscribers of both, a 300 ms warm-up, 2 s
/// counted) that delivers, second by second, with the broker's threads timed; `connect::measure`
/// (4 connectors, 1 s counted) completing connect + subscribes; then one memory run of 200 idle
/// subscribers.
async fn burst_measurements(proto: Proto, (addr, pid): (SocketAddr, u32)) {
    let spec = loadgen::model::fanout::Spec {
        publishers: 2,
        subscribers: 3,
        channels: 2,
        size: 16,
        window: 200,
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs(2),
    };
    let run = tokio::time::timeout(
        Duration::from_secs(10),
        fanout::measure(addr, Some(pid), proto, &spec, "peers-test"),
    )
    .await
    .unwrap_or_else(|_| panic!("{proto}: fan-out did not finish in 10 s"))
    .unwrap_or_else(|e| panic!("{proto}: fan-out: {e:#}"));
    assert!(run.deliveries > 0, "{proto}: {run:?}");
    assert_eq!(run.per_second.len(), 2, "{proto}: {run:?}");
    assert_eq!(
        run.per_second.iter().sum::<f64>(),
        run.deliveries as f64,
        "{proto}: {run:?}"
    );
    assert!(run.elapsed >= Duration::from_secs(2), "{proto}: {run:?}");
    // The broker's threads were timed: it did some work.
    assert!(run.bottleneck.broker.total_pct > 0.0, "{proto}: {run:?}");

    let spec = connect::Spec {
        connectors: 4,
        channels: 3,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
    };
    let run = tokio::time::timeout(
        Duration::from_secs(10),
        connect::measure(addr, Some(pid), proto, &spec, "peers-test"),
    )
    .await
    .unwrap_or_else(|_| panic!("{proto}: connect did not finish in 10 s"))
    .unwrap_or_else(|e| panic!("{proto}: connect: {e:#}"));
    assert!(run.deliveries > 0, "{proto}: {run:?}");
    assert_eq!(
        run.per_second,
        vec![run.deliveries as f64],
        "{proto}: {run:?}"
    );

    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        memory::measure_broker(addr, pid, proto, (200, 10, 1), &Default::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("{proto}: the memory run did not finish in 60 s"))
    .unwrap_or_else(|e| panic!("{proto}: memory: {e:#}"));
    assert_eq!(summary.proto, proto);
    assert_eq!(summary.runs.len(), 1, "{proto}: {summary:?}");
    assert!(summary.runs[0].rss_after > 0, "{proto}: {summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubbub_burst_measurements() {
    // In a process of its own, as `loadgen fanout` and `loadgen memory` start it.
    let hubbub = common::broker(&[]);
    burst_measurements(Proto::Hubbub, (hubbub.addr, hubbub.pid())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_burst_measurements() {
    let server = redis();
    burst_measurements(Proto::Redis, (server.addr, server.child.id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_burst_measurements() {
    let server = nats();
    burst_measurements(Proto::Nats, (server.addr, server.child.id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_burst_measurements() {
    let server = mosquitto();
    burst_measurements(Proto::Mqtt, (server.addr, server.child.id())).await;
}

/// `loadgen compare` end to end against hubbub (which it starts) and a real Redis: the table,
/// the CSV with one row per run, the charts, and the baseline check passing and failing.
#[test]
fn compare_against_redis() {
    let redis = redis();
    let dir = std::env::temp_dir().join(format!("loadgen-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let baseline = dir.join("baseline.json");
    std::fs::create_dir_all(&dir).unwrap();
    let write_baseline = |ratio: f64| {
        let text = format!(
            r#"{{"measured_by": "test", "entries": [{{"scenario": "fanout-1x100-w1000",
            "metric": "deliveries_per_sec", "against": ["redis"], "ratio": {ratio},
            "tolerance": 0.5}}]}}"#
        );
        std::fs::write(&baseline, text).unwrap();
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "compare",
            "fanout-1x100",
            "latency",
            "--brokers",
            "hubbub,redis",
            "--redis",
            &redis.addr.to_string(),
            "--repeat",
            "2",
            "--windows",
            "1000",
            "--warmup",
            "300ms",
            "--duration",
            "1s",
            "--out",
            &dir.join("out").display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // A baseline no broker could fall short of by half passes...
    write_baseline(0.001);
    let check = ["--check", &baseline.display().to_string()];
    let args_ok = args(&check);
    let run = common::loadgen(&args_ok.iter().map(String::as_str).collect::<Vec<_>>());
    run.expect_ok();
    assert!(run
        .stdout
        .contains("ok   fanout-1x100-w1000 deliveries_per_sec (hubbub ÷ best of redis)"));
    let out = dir.join("out");
    let md = std::fs::read_to_string(out.join("comparison.md")).unwrap();
    for row in [
        "## fanout-1x100-w1000",
        "| hubbub | deliveries_per_sec (higher is better) |",
        "| redis | deliveries_per_sec (higher is better) |",
        "## latency-1x10-20k",
        "## latency-4x100-2k",
        "| redis | p99_ms (lower is better) |",
    ] {
        assert!(md.contains(row), "{row} missing from:\n{md}");
    }
    // Every fan-out and latency run says what set it.
    for class in ["-bound |", "-bound ("] {
        assert!(md.contains(class) || md.contains("-bound"), "{md}");
    }
    let csv = std::fs::read_to_string(out.join("comparison.csv")).unwrap();
    let runs = |broker: &str, metric: &str| {
        csv.lines()
            .filter(|l| l.starts_with(&format!("fanout-1x100-w1000,{broker},{metric},")))
            .count()
    };
    assert_eq!(runs("hubbub", "deliveries_per_sec"), 2, "{csv}");
    assert_eq!(runs("redis", "deliveries_per_sec"), 2, "{csv}");
    for chart in ["fanout.png", "latency-1x10-20k.png", "latency-4x100-2k.png"] {
        assert!(std::fs::metadata(out.join(chart)).unwrap().len() > 10_000);
    }
    // ...one that asks a thousand times Redis fails, and says which ratio fell.
    write_baseline(1000.0);
    let mut a = args(&check);
    a.retain(|s| s != "latency");
    let run = common::loadgen(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // A regression is an objective not met: exit status 3.
    run.expect_code(3);
    assert!(
        run.stdout
            .contains("FAIL fanout-1x100-w1000 deliveries_per_sec"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr
            .contains("1 of 1 ratios fell past their tolerance"),
        "{}",
        run.transcript()
    );
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `loadgen latency` against `server` with `extra` flags (credentials); what it delivered, or
/// the run when it failed.
fn latency_with(proto: &str, server: &Server, extra: &[&str]) -> Result<u64, common::Run> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = server.dir.join(format!("out-{n}"));
    let target = server.addr.to_string();
    let mut args = vec![
        "latency",
        "--json",
        "--proto",
        proto,
        "--target",
        &target,
        "--subscribers",
        "5",
        "--publishers",
        "1",
        "--rate",
        "100",
        "--warmup",
        "200ms",
        "--duration",
        "1s",
        "--slo-p99",
        "2s",
        "--out",
    ];
    let out = out.to_str().unwrap().to_string();
    args.push(&out);
    args.extend_from_slice(extra);
    let run = common::loadgen(&args);
    if run.code() != Some(0) {
        return Err(run);
    }
    let s: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    Ok(s["steps"][0]["delivered"].as_u64().unwrap())
}

/// Every peer with authentication on takes loadgen's credentials, each in its own form
/// (Redis `AUTH user password` and `AUTH password`, NATS CONNECT `user`/`pass` and
/// `auth_token`, MQTT CONNECT's user name and password), and refuses loadgen without them.
#[test]
fn every_peer_takes_loadgens_credentials() {
    let redis = start("redis-server", |port, dir| {
        let config = dir.join("redis.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass pw1\n\
                 user bench on >bench-pw ~* &* +@all\n"
            ),
        )
        .unwrap();
        vec![config.display().to_string()]
    });
    let nats_user = start("nats-server", |port, _| {
        let port = port.to_string();
        [
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "--user",
            "bench",
            "--pass",
            "bench-pw",
        ]
        .map(String::from)
        .to_vec()
    });
    let nats_token = start("nats-server", |port, _| {
        let port = port.to_string();
        ["-a", "127.0.0.1", "-p", &port, "--auth", "t0k3n"]
            .map(String::from)
            .to_vec()
    });
    let mosquitto = start("mosquitto", |port, dir| {
        let passwords = dir.join("passwords");
        let made = Command::new(find("mosquitto_passwd"))
            .args(["-b", "-c", passwords.to_str().unwrap(), "bench", "bench-pw"])
            .status()
            .unwrap();
        assert!(made.success());
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n\
                 password_file {}\n",
                passwords.display()
            ),
        )
        .unwrap();
        vec!["-c".into(), config.display().to_string()]
    });
    let files = redis.dir.join("secrets");
    std::fs::create_dir_all(&files).unwrap();
    let file = |name: &str, text: &str| {
        let path = files.join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path.display().to_string()
    };
    let (bench, pw1, token) = (
        file("bench", "bench-pw"),
        file("pw1", "pw1"),
        file("token", "t0k3n"),
    );
    let user = ["--user", "bench", "--password-file", &bench];
    // 100 messages a second for 1 s to 5 subscribers.
    let cases: [(&str, &Server, Vec<&str>, &str); 5] = [
        (
            "redis",
            &redis,
            user.to_vec(),
            "NOAUTH Authentication required.",
        ),
        (
            "redis",
            &redis,
            vec!["--password-file", &pw1],
            "NOAUTH Authentication required.",
        ),
        ("nats", &nats_user, user.to_vec(), "Authorization Violation"),
        (
            "nats",
            &nats_token,
            vec!["--token-file", &token],
            "Authorization Violation",
        ),
        ("mqtt", &mosquitto, user.to_vec(), "not authorized (5)"),
    ];
    for (proto, server, credentials, refusal) in cases {
        match latency_with(proto, server, &credentials) {
            Ok(delivered) => assert_eq!(delivered, 500, "{proto} {credentials:?}"),
            Err(run) => panic!("{proto} {credentials:?}: {}", run.transcript()),
        }
        let run = latency_with(proto, server, &[]).expect_err("refused without credentials");
        assert!(
            run.stderr.contains(refusal),
            "{proto}: {}",
            run.transcript()
        );
    }
}
