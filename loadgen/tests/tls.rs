//! loadgen over TLS: a handshake against a server whose certificate another CA signed fails
//! with an error that says so (against a rustls server on 127.0.0.1:0, with the same server
//! trusted as the control); then every protocol driver against the real servers with TLS on,
//! as installed from the distribution and started here on a free loopback port with
//! certificates made here (Redis's tls-port, NATS's tls block, a Mosquitto TLS listener): a
//! fan-out and connect + subscribes as `loadgen compare` runs them, and `loadgen latency`
//! (worker processes and the blocking publishers) with every message delivered.
//!
//! A missing server binary fails the test (with the command that installs it) rather than
//! skipping it, as in peers.rs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{loadgen, summary, tempdir, u};
use loadgen::proto::dial::Dial;
use loadgen::proto::tls::Tls;
use loadgen::proto::{Proto, ProtoError};
use loadgen::scenario::{connect, fanout};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const INSTALL: &str = "run `apt-get install redis-server nats-server mosquitto` (as root)";

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files in
/// `dir/name/`: `ca.pem`, `server.pem`, `server.key` (the layout `scripts/peers.sh` makes).
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The server's certificate and key, for a rustls server in this process.
    der: (CertificateDer<'static>, Vec<u8>),
}

fn certs(dir: &Path, name: &str) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let file = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    };
    Certs {
        ca: file("ca.pem", ca.pem()),
        cert: file("server.pem", cert.pem()),
        key: file("server.key", key.serialize_pem()),
        der: (cert.der().clone(), key.serialize_der()),
    }
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A rustls server on 127.0.0.1:0 serving `certs`' server certificate: it completes
/// handshakes and then answers nothing (a hubbub client's session needs no greeting).
async fn rustls_server(certs: &Certs) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::try_from(certs.der.1.clone()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certs.der.0.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(stream);
                }
            });
        }
    });
    addr
}

async fn open(addr: SocketAddr, tls: Tls) -> std::io::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let dial = Dial::new(Proto::Hubbub, Some(tls));
    dial.open(tcp, Duration::from_secs(5), "tls-test").await?;
    Ok(())
}

#[tokio::test]
async fn a_handshake_against_the_wrong_ca_fails_and_says_so() {
    let dir = dir("wrong-ca");
    let (server, other) = (certs(&dir, "server"), certs(&dir, "other"));
    let addr = rustls_server(&server).await;

    // The control: the CA that signed the server's certificate is trusted.
    open(addr, Tls::new(&server.ca, None, None).unwrap())
        .await
        .expect("the right CA is trusted");

    let e = open(addr, Tls::new(&other.ca, None, None).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "hubbub server at {addr} failed the TLS handshake: its certificate is not signed by a \
             CA loadgen trusts (--tls-ca; rustls: invalid peer certificate: UnknownIssuer), \
             waiting for the TLS handshake"
        )
    );
    assert!(
        matches!(ProtoError::found_in(&e), Some(ProtoError::Tls { .. })),
        "{e:?}"
    );
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);

    let named = Tls::new(&server.ca, Some("broker.example"), None).unwrap();
    let e = open(addr, named).await.unwrap_err().to_string();
    assert!(
        e.contains(
            "failed the TLS handshake: its certificate is not valid for the name loadgen \
                    expected (--tls-name"
        ),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn options_that_cannot_be_used_say_which_and_why() {
    let dir = dir("options");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = Tls::new(&empty, None, None).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{} holds no CA certificate (PEM)", empty.display())
    );
    let missing = dir.join("missing.pem");
    let e = Tls::new(&missing, None, None).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot read CA certificate from {}: ",
            missing.display()
        )),
        "{e}"
    );
    let server = certs(&dir, "server");
    let e = Tls::new(&server.ca, Some("not a name!"), None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--tls-name \"not a name!\" is neither a DNS name nor an IP address"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// --- the real servers, with TLS on ---------------------------------------------------------

/// A server process, killed when the test ends however it ends.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: {INSTALL}"))
}

/// Starts `name` with the arguments `args(port)` gives, its TLS listener on `port`, and waits
/// until that port accepts connections (another port on a clash, up to three times).
fn start(name: &str, dir: &Path, args: impl Fn(u16) -> Vec<String>) -> Server {
    let mut log = String::new();
    for attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = dir.join(format!("{name}-{attempt}.log"));
        let file = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(find(name))
            .args(args(port))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start ({e}): {INSTALL}"));
        let mut server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok() {
                return server;
            }
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
    }
    panic!("{name} did not start listening for TLS; its last log:\n{log}");
}

/// Each server with TLS only, on the certificates of `c`.
fn tls_server(proto: Proto, dir: &Path, c: &Certs) -> Server {
    let path = |p: &Path| p.display().to_string();
    match proto {
        Proto::Redis => start("redis-server", dir, |port| {
            let port = port.to_string();
            let args = [
                "--port",
                "0",
                "--tls-port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ];
            let mut args: Vec<String> = args.map(String::from).to_vec();
            for (flag, file) in [
                ("--tls-cert-file", &c.cert),
                ("--tls-key-file", &c.key),
                ("--tls-ca-cert-file", &c.ca),
            ] {
                args.extend([flag.to_string(), path(file)]);
            }
            args
        }),
        Proto::Nats => start("nats-server", dir, |port| {
            let config = dir.join("nats.conf");
            let text = format!(
                "listen: 127.0.0.1:{port}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  \
                 ca_file: \"{}\"\n  timeout: 5\n}}\n",
                path(&c.cert),
                path(&c.key),
                path(&c.ca)
            );
            std::fs::write(&config, text).unwrap();
            vec!["-c".into(), path(&config)]
        }),
        Proto::Mqtt => start("mosquitto", dir, |port| {
            let config = dir.join("mosquitto.conf");
            let text = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 certfile {}\nkeyfile {}\ncafile {}\n",
                path(&c.cert),
                path(&c.key),
                path(&c.ca)
            );
            std::fs::write(&config, text).unwrap();
            vec!["-c".into(), path(&config)]
        }),
        Proto::Hubbub => unreachable!("hubbub's TLS is its own test"),
    }
}

/// The measurements `loadgen compare`'s TLS scenarios run, against the `proto` server at
/// `addr` (process `pid`) over TLS trusting `ca`: a steady-state fan-out that delivers, and
/// connect + subscribes that complete (each with its handshake); a plain client refused;
/// then `loadgen latency` with worker processes and the blocking publishers over TLS, every
/// message delivered.
async fn over_tls(proto: Proto, (addr, pid): (SocketAddr, u32), ca: &Path, dir: &Path) {
    let dial = || Dial::new(proto, Some(Tls::new(ca, None, None).unwrap()));

    let spec = loadgen::model::fanout::Spec {
        publishers: 1,
        subscribers: 3,
        channels: 1,
        size: 16,
        window: 200,
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs(1),
    };
    let run = tokio::time::timeout(
        Duration::from_secs(20),
        fanout::measure(addr, Some(pid), dial(), &spec, "tls-test"),
    )
    .await
    .unwrap_or_else(|_| panic!("{proto}: fan-out did not finish in 20 s"))
    .unwrap_or_else(|e| panic!("{proto}: fan-out over TLS: {e:#}"));
    assert!(run.deliveries > 0, "{proto}: {run:?}");
    assert_eq!(run.per_second.len(), 1, "{proto}: {run:?}");

    let spec = connect::Spec {
        connectors: 4,
        channels: 3,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
    };
    let run = tokio::time::timeout(
        Duration::from_secs(20),
        connect::measure(addr, Some(pid), dial(), &spec, "tls-test"),
    )
    .await
    .unwrap_or_else(|_| panic!("{proto}: connect did not finish in 20 s"))
    .unwrap_or_else(|e| panic!("{proto}: connect over TLS: {e:#}"));
    assert!(run.deliveries > 0, "{proto}: {run:?}");

    // Without TLS the same server refuses the session (a plain client gets nowhere).
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let plain = Dial::from(proto)
        .open(tcp, Duration::from_secs(2), "tls-test-plain")
        .await;
    let plain = match plain {
        Ok((mut stream, early)) => proto
            .within(Duration::from_secs(2))
            .subscribe(&mut stream, "c", early)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    assert!(plain.is_err(), "{proto}: a plain client was served");

    let out = dir.join("latency");
    let run = loadgen(&[
        "latency",
        "--target",
        &addr.to_string(),
        "--broker-pid",
        &pid.to_string(),
        "--proto",
        &proto.to_string(),
        "--tls-ca",
        &ca.display().to_string(),
        "--subscribers",
        "5",
        "--publishers",
        "2",
        "--rate",
        "200",
        "--warmup",
        "500ms",
        "--duration",
        "1s",
        "--slo-p99",
        "2s",
        "--out",
        out.to_str().unwrap(),
    ]);
    run.expect_ok();
    let step = &summary(&out)["steps"][0];
    assert_eq!(u(&step["published"]), 200, "{}", run.transcript());
    assert_eq!(u(&step["delivered"]), 200 * 5, "{}", run.transcript());
}

/// [`over_tls`] against a peer started here with TLS only.
async fn peer_over_tls(proto: Proto) {
    let dir = dir(&proto.to_string());
    let c = certs(&dir, "peer");
    let server = tls_server(proto, &dir, &c);
    over_tls(proto, (server.addr, server.child.id()), &c.ca, &dir).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    peer_over_tls(Proto::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_tls() {
    peer_over_tls(Proto::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_over_tls() {
    peer_over_tls(Proto::Mqtt).await;
}

/// hubbub with its TLS listener (`--tls-cert`, `--tls-key`), in a process of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubbub_over_tls() {
    let dir = dir("hubbub");
    let c = certs(&dir, "broker");
    let (cert, key) = (c.cert.display().to_string(), c.key.display().to_string());
    let broker = common::broker(&["--tls-cert", &cert, "--tls-key", &key]);
    over_tls(Proto::Hubbub, (broker.addr, broker.pid()), &c.ca, &dir).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_needs_a_target_as_loadgen_starts_its_hubbub_without() {
    let out = tempdir("tls-no-target");
    let run = loadgen(&[
        "latency",
        "--tls-ca",
        "/nonexistent/ca.pem",
        "--out",
        out.to_str().unwrap(),
    ]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("--tls-ca needs --target: the hubbub loadgen starts itself speaks no TLS"),
        "{}",
        run.transcript()
    );
}

/// `loadgen compare connect-tls` end to end against hubbub (which it starts twice, once with
/// TLS) and a real Redis listening both ways: the two halves' tables and what TLS costs each.
#[test]
fn compare_tls_against_redis() {
    let dir = dir("compare");
    let c = certs(&dir, "tls");
    let plain_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let path = |p: &Path| p.display().to_string();
    let redis = start("redis-server", &dir, |port| {
        let (plain, tls) = (plain_port.to_string(), port.to_string());
        let args = [
            "--port",
            &plain,
            "--tls-port",
            &tls,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-auth-clients",
            "no",
        ];
        let mut args: Vec<String> = args.map(String::from).to_vec();
        for (flag, file) in [
            ("--tls-cert-file", &c.cert),
            ("--tls-key-file", &c.key),
            ("--tls-ca-cert-file", &c.ca),
        ] {
            args.extend([flag.to_string(), path(file)]);
        }
        args
    });
    let out = dir.join("out");
    let run = loadgen(&[
        "compare",
        "connect-tls",
        "--brokers",
        "hubbub,redis",
        "--redis",
        &format!("127.0.0.1:{plain_port}"),
        "--redis-tls",
        &redis.addr.to_string(),
        "--tls-dir",
        &path(&dir.join("tls")),
        "--repeat",
        "1",
        "--warmup",
        "300ms",
        "--duration",
        "1s",
        "--out",
        &path(&out),
    ]);
    run.expect_ok();
    let md = std::fs::read_to_string(out.join("comparison.md")).unwrap();
    for text in [
        "## connect-plain",
        "## connect-tls",
        "## What TLS costs (connect-tls)",
        "| hubbub | connects_per_sec | ",
        "| redis | connects_per_sec | ",
    ] {
        assert!(
            md.contains(text),
            "{text} missing from:\n{md}\n{}",
            run.transcript()
        );
    }
    let costs = md.split("## What TLS costs").nth(1).unwrap();
    for broker in ["hubbub", "redis"] {
        let row = costs
            .lines()
            .find(|l| l.starts_with(&format!("| {broker} |")))
            .unwrap_or_else(|| panic!("no {broker} row in:\n{costs}"));
        assert!(!row.contains("failed") && row.contains("×"), "{row}\n{md}");
    }
    let csv = std::fs::read_to_string(out.join("comparison.csv")).unwrap();
    for half in [
        "connect-plain,hubbub,",
        "connect-tls,hubbub,",
        "connect-plain,redis,",
        "connect-tls,redis,",
    ] {
        assert_eq!(
            csv.lines().filter(|l| l.starts_with(half)).count(),
            1,
            "{half}: {csv}"
        );
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
