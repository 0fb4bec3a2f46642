//! TLS for clients (`--tls-cert`, `--tls-key`, `--tls-client-ca`) and for the link to an
//! upstream (`--upstream-tls-*`), against real sockets, with certificates made here (rcgen)
//! and tokio-rustls as the client.

mod common;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{broker_with, message, publish_cmd, subscribe_cmd, Config, Raw, TIMEOUT};
use hubbub::tls::TlsConfig;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ClientConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A certificate authority made for one test.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate it signs for `names` (DNS names or IP addresses), with its key.
    fn issue(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Identity { cert, key }
    }
}

/// A certificate and its private key.
struct Identity {
    cert: Certificate,
    key: KeyPair,
}

/// A directory of PEM files, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hubbub-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// `ca`'s certificate as a PEM file.
    fn ca(&self, name: &str, ca: &Ca) -> PathBuf {
        self.write(name, &ca.cert.pem())
    }

    /// `id`'s certificate and key as PEM files.
    fn identity(&self, name: &str, id: &Identity) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.crt"), &id.cert.pem()),
            self.write(&format!("{name}.key"), &id.key.serialize_pem()),
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, the broker's certificate from it (for 127.0.0.1 and localhost), and their files.
struct Pki {
    files: Files,
    ca: Ca,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    let files = Files::new();
    let ca = Ca::new("hubbub test CA");
    let ca_file = files.ca("ca.crt", &ca);
    let (cert, key) = files.identity("broker", &ca.issue(&["127.0.0.1", "localhost"]));
    Pki {
        files,
        ca,
        ca_file,
        cert,
        key,
    }
}

impl Pki {
    /// A TLS listener with the broker's certificate.
    fn listener(&self) -> TlsConfig {
        TlsConfig {
            tls_cert: Some(self.cert.clone()),
            tls_key: Some(self.key.clone()),
            ..Default::default()
        }
    }
}

/// A client that trusts `ca` and, given `identity`, presents it.
fn client_config(ca: &Ca, identity: Option<&Identity>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(id) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.serialize_der()));
            builder
                .with_client_auth_cert(vec![id.cert.der().clone()], key)
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// A line-at-a-time client over TLS.
struct TlsClient {
    read: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    write: WriteHalf<TlsStream<TcpStream>>,
}

impl TlsClient {
    /// Connects and runs the handshake (its error, if it fails).
    async fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsClient> {
        Self::connect_with(TcpStream::connect(addr).await?, config).await
    }

    /// Connects with a small receive buffer, so that the broker's side of the socket fills
    /// after a few kilobytes and the broker has to wait for it to drain.
    async fn open_small(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        Self::connect_with(tcp, config)
            .await
            .expect("TLS handshake")
    }

    async fn connect_with(tcp: TcpStream, config: &Arc<ClientConfig>) -> io::Result<TlsClient> {
        let addr = tcp.peer_addr()?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let handshake = TlsConnector::from(config.clone()).connect(name, tcp);
        let stream = tokio::time::timeout(TIMEOUT, handshake)
            .await
            .expect("the handshake never ended")?;
        let (read, write) = tokio::io::split(stream);
        Ok(TlsClient {
            read: BufReader::new(read),
            write,
        })
    }

    /// Connects; the handshake must succeed.
    async fn open(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsClient {
        Self::connect(addr, config).await.expect("TLS handshake")
    }

    async fn try_send_line(&mut self, line: &str) -> io::Result<()> {
        self.write.write_all(format!("{line}\n").as_bytes()).await?;
        self.write.flush().await
    }

    async fn send_line(&mut self, line: &str) {
        self.try_send_line(line).await.expect("write");
    }

    /// The next line, or `None` once the broker has closed (or broken off) the connection.
    async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(TIMEOUT, self.read.read_line(&mut line))
            .await
            .expect("no line from the broker within the timeout");
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                assert_eq!(line.pop(), Some('\n'), "an unterminated line {line:?}");
                Some(line)
            }
        }
    }

    async fn value(&mut self) -> Value {
        let line = self.try_line().await.expect("a line, not the end");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("broker sent {line:?}: {e}"))
    }

    async fn expect(&mut self, expected: Value) {
        assert_eq!(self.value().await, expected);
    }

    async fn subscribe(&mut self, channel: &str, count: u64) {
        self.send_line(&subscribe_cmd(channel)).await;
        self.expect(common::ack("SUBSCRIBE", channel, count)).await;
    }

    async fn ping(&mut self) {
        self.send_line(r#"{"command":"PING"}"#).await;
        self.expect(json!({"type": "PONG"})).await;
    }

    async fn stats(&mut self) -> Value {
        self.send_line(r#"{"command":"STATS"}"#).await;
        let v = self.value().await;
        assert_eq!(v["type"], "STATS", "{v}");
        v
    }
}

/// Polls STATS over TLS until `done` holds; returns that reply.
async fn wait_for_stats(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut c = TlsClient::open(addr, config).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let s = c.stats().await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "STATS never reached the expected state; last: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything a plain TCP client gets until the broker closes, after sending `bytes`.
async fn plain_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    // An error (a reset: the broker closed with the client's bytes unread) ends it too.
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut got))
        .await
        .expect("the broker never closed the connection");
    got
}

/// The `n`th message of the ordered test: sizes from a few bytes to a few kilobytes, so that
/// records, `writev`s and a full socket all cut frames at different places.
fn nth(i: usize) -> Value {
    json!([i, "x".repeat(i * 37 % 4_000)])
}

#[tokio::test]
async fn a_tls_subscriber_gets_what_a_tls_publisher_publishes_exactly_and_in_order() {
    let pki = pki();
    let b = broker_with(Config {
        tls: pki.listener(),
        ..Default::default()
    })
    .await;
    let config = client_config(&pki.ca, None);
    let mut sub = TlsClient::open_small(b.addr, &config).await;
    sub.subscribe("tls", 1).await;
    let mut publisher = TlsClient::open(b.addr, &config).await;
    // About 8 MB, all published before the subscriber reads a byte: its socket fills and the
    // rest waits in its outbox and in its TLS session, then goes out as it reads.
    const N: usize = 4_000;
    for i in 0..N {
        publisher.send_line(&publish_cmd("tls", &nth(i))).await;
    }
    publisher.ping().await;
    for i in 0..N {
        sub.expect(message("tls", nth(i))).await;
    }
    sub.ping().await;
    let s = publisher.stats().await;
    assert_eq!(s["messages_in"], N);
    assert_eq!(s["connections_current"], 2);
    assert_eq!(s["tls_handshake_failures"], 0);
}

#[tokio::test]
async fn a_client_without_tls_is_refused_and_nothing_it_sends_is_delivered() {
    let pki = pki();
    let b = broker_with(Config {
        tls: pki.listener(),
        ..Default::default()
    })
    .await;
    let config = client_config(&pki.ca, None);
    let mut sub = TlsClient::open(b.addr, &config).await;
    sub.subscribe("x", 1).await;
    let plain = format!(
        "{}\n{}\n",
        subscribe_cmd("x"),
        publish_cmd("x", &json!("in the clear"))
    );
    let got = plain_exchange(b.addr, plain.as_bytes()).await;
    // Closed, with at most a TLS alert (record type 21) saying why: no line of the protocol.
    assert!(
        got.is_empty() || got[0] == 21,
        "the plain client got {got:?}"
    );
    // Counted just after the connection is dropped: waited for, not raced.
    let s = wait_for_stats(b.addr, &config, |s| s["tls_handshake_failures"] == 1).await;
    assert_eq!(s["messages_in"], 0);
    sub.ping().await;
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_closed_at_the_first_command_deadline() {
    let pki = pki();
    let b = broker_with(Config {
        tls: pki.listener(),
        first_command_deadline: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    assert_eq!(plain_exchange(b.addr, b"").await, b"");
    let config = client_config(&pki.ca, None);
    let s = wait_for_stats(b.addr, &config, |s| s["tls_handshake_failures"] == 1).await;
    assert_eq!(s["connections_current"], 1);
    assert_eq!(
        s["deadlines_missed"], 0,
        "a handshake's deadline counts as a failed handshake"
    );
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_fails_the_handshake() {
    let pki = pki();
    let b = broker_with(Config {
        tls: pki.listener(),
        ..Default::default()
    })
    .await;
    let stranger = client_config(&Ca::new("another CA"), None);
    let e = TlsClient::connect(b.addr, &stranger).await.err().unwrap();
    assert_eq!(e.to_string(), "invalid peer certificate: UnknownIssuer");
    // The client's alert reaches the broker's handshake, which counts it.
    let config = client_config(&pki.ca, None);
    wait_for_stats(b.addr, &config, |s| s["tls_handshake_failures"] == 1).await;
}

/// Whether the broker turns `config`'s client away: at the handshake, or (TLS 1.3, where the
/// client finishes before the broker has checked its certificate) at its first command.
async fn refused(addr: SocketAddr, config: &Arc<ClientConfig>) -> bool {
    let Ok(mut c) = TlsClient::connect(addr, config).await else {
        return true;
    };
    if c.try_send_line(&subscribe_cmd("x")).await.is_err() {
        return true;
    }
    c.try_line().await.is_none()
}

#[tokio::test]
async fn with_a_client_ca_only_a_client_with_a_certificate_it_signed_gets_in() {
    let pki = pki();
    let clients = Ca::new("hubbub clients");
    let b = broker_with(Config {
        tls: TlsConfig {
            tls_client_ca: Some(pki.files.ca("clients.crt", &clients)),
            ..pki.listener()
        },
        ..Default::default()
    })
    .await;
    assert!(refused(b.addr, &client_config(&pki.ca, None)).await);
    // Signed, but by a CA the broker does not take client certificates from.
    let other = pki.ca.issue(&["someone"]);
    assert!(refused(b.addr, &client_config(&pki.ca, Some(&other))).await);

    let member = clients.issue(&["member"]);
    let config = client_config(&pki.ca, Some(&member));
    let mut c = TlsClient::open(b.addr, &config).await;
    c.subscribe("x", 1).await;
    let s = wait_for_stats(b.addr, &config, |s| s["tls_handshake_failures"] == 2).await;
    assert_eq!(s["connections_current"], 2);
}

#[tokio::test]
async fn a_leaf_linked_to_a_hub_over_tls_carries_messages_both_ways() {
    let pki = pki();
    // The hub takes only clients with a certificate: the link presents one.
    let clients = Ca::new("hubbub links");
    let hub = broker_with(Config {
        tls: TlsConfig {
            tls_client_ca: Some(pki.files.ca("links.crt", &clients)),
            ..pki.listener()
        },
        ..Default::default()
    })
    .await;
    let (cert, key) = pki.files.identity("leaf", &clients.issue(&["leaf"]));
    let leaf = broker_with(Config {
        upstream: Some(hub.addr.into()),
        name: Some("leaf".into()),
        tls: TlsConfig {
            upstream_tls_ca: Some(pki.ca_file.clone()),
            upstream_tls_cert: Some(cert),
            upstream_tls_key: Some(key),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    common::wait_for_stats(leaf.addr, |s| s["upstream"]["connected"] == true).await;

    let hub_config = client_config(&pki.ca, Some(&clients.issue(&["client"])));
    let mut at_hub = TlsClient::open(hub.addr, &hub_config).await;
    at_hub.subscribe("up", 1).await;
    let mut at_leaf = Raw::connect(leaf.addr).await;
    at_leaf.subscribe("down", 1).await;
    // The hub's client, and the link following the leaf's client.
    wait_for_stats(hub.addr, &hub_config, |s| s["subscriptions"] == 2).await;

    let mut leaf_publisher = Raw::connect(leaf.addr).await;
    leaf_publisher.publish("up", &json!("from the leaf")).await;
    at_hub.expect(message("up", json!("from the leaf"))).await;
    at_hub
        .send_line(&publish_cmd("down", &json!("from the hub")))
        .await;
    at_leaf.expect(message("down", json!("from the hub"))).await;

    let s = at_hub.stats().await;
    assert_eq!(s["links"], 1);
    assert_eq!(s["tls_handshake_failures"], 0);
    let s = leaf_publisher.stats().await;
    assert_eq!(s["upstream"]["forwarded"], 1);
    assert_eq!(s["upstream"]["received"], 1);
    assert_eq!(s["tls_handshake_failures"], 0);
}

#[tokio::test]
async fn a_leaf_that_does_not_trust_its_hub_stays_unlinked_and_counts_why() {
    let pki = pki();
    let hub = broker_with(Config {
        tls: pki.listener(),
        ..Default::default()
    })
    .await;
    let stranger = pki.files.ca("stranger.crt", &Ca::new("another CA"));
    let leaf = broker_with(Config {
        upstream: Some(hub.addr.into()),
        tls: TlsConfig {
            upstream_tls_ca: Some(stranger),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let s = common::wait_for_stats(leaf.addr, |s| s["tls_handshake_failures"] == 1).await;
    assert_eq!(s["upstream"]["connected"], false);
    assert_eq!(s["upstream"]["connects"], 0);
    let config = client_config(&pki.ca, None);
    let s = TlsClient::open(hub.addr, &config).await.stats().await;
    assert_eq!(s["links"], 0);
}

#[tokio::test]
async fn a_broker_with_an_incomplete_or_unreadable_certificate_refuses_to_start() {
    let pki = pki();
    let start = |tls: TlsConfig| {
        hubbub::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls,
            ..Default::default()
        })
    };
    let e = start(TlsConfig {
        tls_cert: Some(pki.cert.clone()),
        ..Default::default()
    })
    .await
    .err()
    .unwrap();
    assert_eq!(e.to_string(), "--tls-cert needs --tls-key");
    let missing = pki.files.0.join("missing.crt");
    let e = start(TlsConfig {
        tls_cert: Some(missing.clone()),
        ..pki.listener()
    })
    .await
    .err()
    .unwrap();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{e}"
    );
    let e = start(TlsConfig {
        tls_key: Some(pki.cert.clone()),
        ..pki.listener()
    })
    .await
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        format!("{} holds no private key", pki.cert.display())
    );
}

/// A TLS client authenticates like a plain one (its socket is not in its outbox, where the
/// throttle used to look for its address: the AUTH cut its connection off).
#[tokio::test]
async fn a_tls_client_authenticates_and_is_held_to_its_user() {
    let pki = pki();
    let hash = hubbub::auth::hash_password("alice-pw").unwrap();
    let users = format!("[users.alice]\npassword = \"{hash}\"\nsubscribe = [\"news.*\"]\n");
    let b = broker_with(Config {
        tls: pki.listener(),
        users: Some(Arc::new(hubbub::auth::Users::parse(&users).unwrap())),
        ..Default::default()
    })
    .await;
    let mut c = TlsClient::open(b.addr, &client_config(&pki.ca, None)).await;
    c.send_line(r#"{"command":"AUTH","args":{"user":"alice","password":"alice-pw"}}"#)
        .await;
    c.expect(json!({"type": "AUTH", "user": "alice"})).await;
    c.subscribe("news.tls", 1).await;
    c.send_line(&subscribe_cmd("sport")).await;
    c.expect(common::error(
        r#"SUBSCRIBE: user "alice" may not subscribe to "sport""#,
    ))
    .await;
}
