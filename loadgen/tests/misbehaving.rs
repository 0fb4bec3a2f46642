//! Brokers that misbehave: a fake server on a real loopback socket per misbehaviour — garbage,
//! a hang-up in the middle of a frame, silence — for each protocol, met through the entry
//! points loadgen sets up every session with ([`Proto::within`], [`Proto::handshake`],
//! [`Proto::subscribe`]), its publishers, and the `loadgen` program itself. Each must end in
//! an error that names the protocol, the server's address and what happened, and never hang:
//! every wait here is under a guard of a few seconds that fails the test if it runs out.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use loadgen::proto::session::{SessionError, REPLY_TIMEOUT};
use loadgen::proto::{hubbub, mqtt, nats, resp, socket, Proto, ProtoError, MAX_FRAME};
use loadgen::rig::publish::Publishers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any one setup may take before the test calls it a hang.
const GUARD: Duration = Duration::from_secs(10);
/// The bound each setup step is given where the test does not test the default.
const LIMIT: Duration = Duration::from_millis(300);
/// The client id every session here opens with (it is part of what the fake expects).
const ID: &str = "loadgen-misbehaving";

/// What the fake server does on each connection, in order.
#[derive(Debug, Clone)]
enum Step {
    /// Reads exactly these bytes (what loadgen must send), and fails the test on others.
    Expect(Vec<u8>),
    /// Reads whatever arrives first, at least a byte.
    ReadSome,
    Send(Vec<u8>),
    /// Hangs up. Everything the client sent has been read, so the close is a FIN, not a
    /// reset.
    Close,
    /// Reads and discards whatever arrives and never answers, until the client hangs up.
    Stall,
}

use Step::*;

/// A fake server on 127.0.0.1 that plays `script` on every connection it accepts.
async fn fake(script: Vec<Step>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(play(stream, script.clone()));
        }
    });
    addr
}

async fn play(mut stream: TcpStream, script: Arc<Vec<Step>>) {
    let mut buf = vec![0u8; 64 << 10];
    for step in script.iter() {
        match step {
            Expect(want) => {
                let mut got = vec![0u8; want.len()];
                if stream.read_exact(&mut got).await.is_err() {
                    return;
                }
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want),
                    "what loadgen sent"
                );
            }
            ReadSome => {
                if !matches!(stream.read(&mut buf).await, Ok(1..)) {
                    return;
                }
            }
            Send(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Close => return,
            Stall => while matches!(stream.read(&mut buf).await, Ok(1..)) {},
        }
    }
}

/// What loadgen sends to subscribe to "c".
fn subscribe(proto: Proto) -> Vec<u8> {
    let mut out = Vec::new();
    match proto {
        Proto::Hubbub => hubbub::encode_subscribe(&mut out, "c"),
        Proto::Redis => resp::encode_subscribe(&mut out, "c"),
        Proto::Nats => {
            nats::encode_subscribe(&mut out, "c");
            out.extend_from_slice(nats::PING);
        }
        Proto::Mqtt => mqtt::encode_subscribe(&mut out, "c"),
    }
    out
}

/// What a faithful server confirms that subscription with.
fn confirmation(proto: Proto) -> Vec<u8> {
    match proto {
        Proto::Hubbub => b"{\"type\":\"SUBSCRIBE\",\"channel\":\"c\",\"count\":1}\n".to_vec(),
        Proto::Redis => b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n".to_vec(),
        Proto::Nats => nats::PONG.to_vec(),
        Proto::Mqtt => vec![0x90, 3, 0, 1, 0],
    }
}

/// A faithful server's part up to the subscription's confirmation: the handshake, then
/// reading the subscribe.
fn opening(proto: Proto) -> Vec<Step> {
    let mut steps = match proto {
        Proto::Hubbub | Proto::Redis => vec![],
        Proto::Nats => vec![
            Send(b"INFO {\"server_id\":\"fake\",\"proto\":1}\r\n".to_vec()),
            Expect(nats::connect(ID)),
            Send(nats::PONG.to_vec()),
        ],
        Proto::Mqtt => vec![Expect(mqtt::connect(ID)), Send(vec![0x20, 2, 0, 0])],
    };
    steps.push(Expect(subscribe(proto)));
    steps
}

/// `opening(proto)` followed by `then`.
fn after_opening(proto: Proto, then: Vec<Step>) -> Vec<Step> {
    let mut steps = opening(proto);
    steps.extend(then);
    steps
}

/// Connects, opens the session and subscribes to "c" as loadgen's clients do, each step
/// within `limit`; fails the test on a hang.
async fn set_up(proto: Proto, addr: SocketAddr, limit: Duration) -> io::Result<Vec<u8>> {
    let run = async {
        let mut stream = socket::connect(addr).await?;
        let setup = proto.within(limit);
        let pending = setup.handshake(&mut stream, ID).await?;
        setup.subscribe(&mut stream, "c", pending).await
    };
    tokio::time::timeout(GUARD, run)
        .await
        .unwrap_or_else(|_| panic!("{proto}: set-up still waiting after {GUARD:?}"))
}

/// What a failed setup against `script` returned, checked: an [`io::Error`] of `kind` that
/// reads "<proto> server at <its address> <deed>, waiting for <awaited>", holding a
/// [`SessionError`] that names the fake's address. Returns the protocol error inside.
async fn failure(
    proto: Proto,
    script: Vec<Step>,
    kind: io::ErrorKind,
    deed: &str,
    awaited: &str,
) -> ProtoError {
    let addr = fake(script).await;
    let e = set_up(proto, addr, LIMIT)
        .await
        .expect_err("the setup fails");
    assert_eq!(e.kind(), kind, "{proto}: {e}");
    let text = format!("{proto} server at {addr} {deed}, waiting for {awaited}");
    assert_eq!(e.to_string(), text, "{proto}");
    let inner = e.into_inner().expect("an error inside");
    let session = inner
        .downcast::<SessionError>()
        .unwrap_or_else(|e| panic!("{proto}: not a session error: {e:?}"));
    assert_eq!(session.peer, Some(addr));
    session.error
}

/// [`failure`] of a server that opens the session faithfully and then does `then` where the
/// subscription's confirmation should be.
async fn at_subscribe(
    proto: Proto,
    then: Vec<Step>,
    kind: io::ErrorKind,
    deed: &str,
) -> ProtoError {
    failure(
        proto,
        after_opening(proto, then),
        kind,
        deed,
        awaited(proto),
    )
    .await
}

/// What loadgen waits for at the subscribe, as its errors name it.
fn awaited(proto: Proto) -> &'static str {
    match proto {
        Proto::Hubbub => "the SUBSCRIBE ack",
        Proto::Redis => "the subscribe reply",
        Proto::Nats => "the PONG after SUB",
        Proto::Mqtt => "SUBACK",
    }
}

/// The control: the fake, played faithfully, sets every protocol up, so the failures below
/// are the misbehaviours' and not the fake's.
#[tokio::test]
async fn a_faithful_fake_server_sets_up_every_protocol() {
    for proto in Proto::ALL {
        let addr = fake(after_opening(proto, vec![Send(confirmation(proto)), Stall])).await;
        let rest = set_up(proto, addr, LIMIT).await.unwrap();
        assert!(rest.is_empty(), "{proto}: {rest:?}");
    }
}

const INVALID: io::ErrorKind = io::ErrorKind::InvalidData;
const EOF: io::ErrorKind = io::ErrorKind::UnexpectedEof;

/// Bytes that are not the protocol, where the subscription's confirmation should be, are a
/// malformed frame; an error reply is the server's refusal.
#[tokio::test]
async fn garbage_for_a_confirmation_is_a_malformed_frame() {
    let http = b"HTTP/1.1 400 Bad Request\r\n".to_vec();
    let cases = [
        (
            Proto::Hubbub,
            http.clone(),
            "a line that is not a JSON object with a type",
        ),
        (
            Proto::Redis,
            http.clone(),
            "a reply that starts with none of + - : $ *",
        ),
        (Proto::Nats, http, "an unknown operation"),
        (
            Proto::Mqtt,
            vec![0x90, 0xff, 0xff, 0xff, 0xff, 0x01],
            "a remaining length of more than four bytes",
        ),
    ];
    for (proto, garbage, what) in cases {
        let deed = format!("sent a malformed frame: {what}");
        let error = at_subscribe(proto, vec![Send(garbage), Stall], INVALID, &deed).await;
        assert!(matches!(error, ProtoError::Malformed { what: w, .. } if w == what));
    }
    let refusal = Send(b"-ERR no pubsub here\r\n".to_vec());
    let deed = "replied with an error: ERR no pubsub here";
    let error = at_subscribe(Proto::Redis, vec![refusal], INVALID, deed).await;
    assert!(matches!(error, ProtoError::Server { .. }));
}

/// Garbage instead of a greeting fails the handshake, naming the greeting awaited.
#[tokio::test]
async fn garbage_for_a_greeting_fails_the_handshake() {
    let ssh = Send(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec());
    let deed = "sent a malformed frame: an unknown operation";
    let error = failure(Proto::Nats, vec![ssh, Stall], INVALID, deed, "INFO").await;
    assert!(matches!(error, ProtoError::Malformed { .. }));
    let connack = Send(vec![0x20, 3, 0, 0, 0]);
    let script = vec![Expect(mqtt::connect(ID)), connack, Stall];
    let deed = "sent a malformed frame: a CONNACK that is not 2 bytes";
    let error = failure(Proto::Mqtt, script, INVALID, deed, "CONNACK").await;
    assert!(matches!(error, ProtoError::Malformed { .. }));
}

/// An endless line, or a declared length past the frame limit, is refused as too long at
/// once, before the buffer grows to hold it.
#[tokio::test]
async fn endless_lines_and_huge_lengths_are_too_long() {
    let cases = [
        (Proto::Hubbub, vec![b'x'; MAX_FRAME + 1], MAX_FRAME + 1),
        (Proto::Redis, b"$999999999\r\n".to_vec(), 999_999_999),
        (Proto::Nats, b"MSG c c 999999999\r\n".to_vec(), 999_999_999),
        (Proto::Mqtt, vec![0x30, 0xff, 0xff, 0xff, 0x7f], 268_435_455),
    ];
    for (proto, frame, len) in cases {
        let deed =
            format!("sent a frame of {len} bytes or more, over loadgen's limit of {MAX_FRAME}");
        let error = at_subscribe(proto, vec![Send(frame), Stall], INVALID, &deed).await;
        assert!(
            matches!(error, ProtoError::TooLong { len: l, .. } if l == len),
            "{proto}: {error:?}"
        );
    }
}

/// What a close in the middle of a frame of `unfinished` bytes reads as.
fn cut_off(unfinished: usize) -> String {
    format!(
        "closed the connection in the middle of a frame ({unfinished} bytes of an unfinished \
         frame)"
    )
}

/// A hang-up half-way through the confirmation says how many bytes of it had arrived.
#[tokio::test]
async fn a_close_in_the_middle_of_a_confirmation_counts_its_bytes() {
    for proto in Proto::ALL {
        let whole = confirmation(proto);
        let half = whole.len() / 2;
        let then = vec![Send(whole[..half].to_vec()), Close];
        let error = at_subscribe(proto, then, EOF, &cut_off(half)).await;
        assert!(
            matches!(error, ProtoError::Closed { unfinished, .. } if unfinished == half),
            "{proto}: {error:?}"
        );
    }
}

/// A hang-up half-way through the greeting, too.
#[tokio::test]
async fn a_close_in_the_middle_of_a_greeting_counts_its_bytes() {
    let script = vec![Send(b"INFO {\"server_id\"".to_vec()), Close];
    let error = failure(Proto::Nats, script, EOF, &cut_off(17), "INFO").await;
    assert!(matches!(error, ProtoError::Closed { unfinished: 17, .. }));
    let script = vec![Expect(mqtt::connect(ID)), Send(vec![0x20, 2, 0]), Close];
    let error = failure(Proto::Mqtt, script, EOF, &cut_off(3), "CONNACK").await;
    assert!(matches!(error, ProtoError::Closed { unfinished: 3, .. }));
}

/// A hang-up between frames is told apart from one inside a frame: whole frames that came
/// first (a Redis `+OK`) are not counted as unfinished.
#[tokio::test]
async fn a_close_between_frames_is_a_plain_close() {
    for proto in Proto::ALL {
        let before: Vec<u8> = match proto {
            Proto::Hubbub => b"\n".to_vec(),
            Proto::Redis | Proto::Nats => b"+OK\r\n".to_vec(),
            Proto::Mqtt => vec![0xd0, 0], // a PINGRESP
        };
        let then = vec![Send(before), Close];
        let error = at_subscribe(proto, then, EOF, "closed the connection").await;
        assert!(
            matches!(error, ProtoError::Closed { unfinished: 0, .. }),
            "{proto}: {error:?}"
        );
    }
}

/// A server that stops answering — after the handshake, or before it — is no reply within
/// the limit the caller gave, not a hang.
#[tokio::test]
async fn silence_is_no_reply_within_the_limit() {
    let mut cases: Vec<(Proto, Vec<Step>, &str)> = Proto::ALL
        .into_iter()
        .map(|p| (p, after_opening(p, vec![Stall]), awaited(p)))
        .collect();
    cases.push((Proto::Nats, vec![Stall], "INFO"));
    cases.push((
        Proto::Nats,
        vec![Send(b"INFO {}\r\n".to_vec()), Stall],
        "the PONG after CONNECT",
    ));
    cases.push((Proto::Mqtt, vec![Stall], "CONNACK"));
    for (proto, script, awaited) in cases {
        let started = tokio::time::Instant::now();
        let deed = "sent no reply within 300ms";
        let error = failure(proto, script, io::ErrorKind::TimedOut, deed, awaited).await;
        assert!(matches!(error, ProtoError::NoReply { limit: LIMIT, .. }));
        assert!(started.elapsed() >= LIMIT, "{proto}: waited the limit");
    }
}

/// A caller that sets no bound of its own (the scenarios that connect once) still gets one:
/// [`REPLY_TIMEOUT`].
#[tokio::test]
async fn without_a_bound_of_its_own_a_setup_waits_at_most_the_default() {
    let addr = fake(vec![Stall]).await;
    let run = async {
        let mut stream = socket::connect(addr).await.unwrap();
        Proto::Redis.subscribe(&mut stream, "c", Vec::new()).await
    };
    let e = tokio::time::timeout(REPLY_TIMEOUT + GUARD, run)
        .await
        .expect("no hang")
        .expect_err("no reply");
    assert_eq!(
        e.to_string(),
        format!("redis server at {addr} sent no reply within 5s, waiting for the subscribe reply")
    );
    assert!(matches!(
        ProtoError::found_in(&e),
        Some(ProtoError::NoReply {
            limit: REPLY_TIMEOUT,
            ..
        })
    ));
}

/// The rig's publishers open their sessions within `--connect-timeout`, and a silent server
/// is an error that says so.
#[tokio::test]
async fn publishers_give_up_on_a_silent_server() {
    let addr = fake(vec![Stall]).await;
    let targets = [addr];
    let connect = Publishers::connect(&targets, 1, Proto::Nats, LIMIT);
    let e = match tokio::time::timeout(GUARD, connect).await.expect("no hang") {
        Ok(_) => panic!("publishers connected to a silent server"),
        Err(e) => e,
    };
    assert_eq!(
        format!("{e:#}"),
        format!(
            "publisher 0: open the nats session: nats server at {addr} sent no reply within \
             300ms, waiting for INFO"
        )
    );
}

/// Runs `loadgen latency` against the misbehaving broker at `addr`, checks that it exits with
/// status 1 within a bound, and returns what it printed on stderr.
fn latency_fails(addr: SocketAddr, proto: Proto) -> String {
    let dir = common::tempdir(&format!("misbehaving-{proto}"));
    let (addr, proto) = (addr.to_string(), proto.to_string());
    let mut run = common::Background::start(&[
        "latency",
        "--target",
        &addr,
        "--proto",
        &proto,
        "--subscribers",
        "2",
        "--publishers",
        "1",
        "--connect-timeout",
        "1s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let status = run.wait(Duration::from_secs(30));
    let stderr = run.stderr.lock().unwrap().clone();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

/// A NATS server that accepts and never speaks: the publishers' handshake gives up after
/// `--connect-timeout`, and loadgen exits 1 naming the server and what it waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_exits_1_against_a_silent_server() {
    let addr = fake(vec![Stall]).await;
    let stderr = tokio::task::spawn_blocking(move || latency_fails(addr, Proto::Nats))
        .await
        .unwrap();
    let want = format!("nats server at {addr} sent no reply within 1s, waiting for INFO");
    assert!(stderr.contains(&want), "{stderr}");
}

/// A Redis server that hangs up in the middle of every subscribe reply: the subscribers in
/// the worker process all fail, and loadgen exits 1 with the first of their reasons rather
/// than measuring an audience of none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_exits_1_when_no_subscriber_can_subscribe() {
    let half = confirmation(Proto::Redis)[..14].to_vec();
    let addr = fake(vec![ReadSome, Send(half), Close]).await;
    let stderr = tokio::task::spawn_blocking(move || latency_fails(addr, Proto::Redis))
        .await
        .unwrap();
    let want = format!(
        "none of the 2 subscribers could connect to redis at {addr}: redis server at {addr} \
         closed the connection in the middle of a frame (14 bytes of an unfinished frame), \
         waiting for the subscribe reply (2 closed by broker)"
    );
    assert!(stderr.contains(&want), "{stderr}");
}
