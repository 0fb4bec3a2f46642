//! Framing, the extensions (PING, STATS) and a plain Python client: raw bytes on a real socket
//! to a real broker, asserting exact replies. The numbered rules are in `protocol.rs`.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn framing_several_frames_in_one_write() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    let frames = [
        subscribe_cmd("a"),
        subscribe_cmd("b"),
        publish_cmd("a", &json!("x")),
        publish_cmd("b", &json!("y")),
        r#"{"command":"PING"}"#.to_string(),
    ];
    c.send(format!("{}\n", frames.join("\n")).as_bytes()).await;
    c.expect(ack("SUBSCRIBE", "a", 1)).await;
    c.expect(ack("SUBSCRIBE", "b", 2)).await;
    c.expect(message("a", json!("x"))).await;
    c.expect(message("b", json!("y"))).await;
    c.expect(json!({"type": "PONG"})).await;
    b.stop().await;
}

#[tokio::test]
async fn framing_one_frame_a_byte_at_a_time() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    let frame = subscribe_cmd("slow");
    for byte in frame.as_bytes() {
        c.send(&[*byte]).await;
        tokio::task::yield_now().await;
    }
    c.expect_silence().await; // a frame is not complete before its newline
    c.send(b"\n").await;
    c.expect(ack("SUBSCRIBE", "slow", 1)).await;
    // A second frame split at awkward places, including between \r and \n.
    let frame = format!("{}\r\n", publish_cmd("slow", &json!({"k": "v w"})));
    let (head, tail) = frame.as_bytes().split_at(frame.len() - 1);
    for chunk in head.chunks(7) {
        c.send(chunk).await;
    }
    c.send(tail).await;
    c.expect(message("slow", json!({"k": "v w"}))).await;
    b.stop().await;
}

#[tokio::test]
async fn framing_crlf_and_empty_lines() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    c.send(b"\n\r\n\n").await;
    c.send(format!("{}\r\n\r\n\n", subscribe_cmd("crlf")).as_bytes())
        .await;
    c.expect(ack("SUBSCRIBE", "crlf", 1)).await;
    c.send(format!("{}\r\n", publish_cmd("crlf", &json!(7))).as_bytes())
        .await;
    c.expect(message("crlf", json!(7))).await;
    c.ping().await; // no ERROR for any of the empty lines
    b.stop().await;
}

#[tokio::test]
async fn framing_keys_in_any_order_and_extra_whitespace() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    c.send_line(r#"{"args":{"channel":"k"},"command":"SUBSCRIBE"}"#)
        .await;
    c.expect(ack("SUBSCRIBE", "k", 1)).await;
    c.send_line(
        r#"  { "args" : { "message" : [1, 2] , "channel" : "k" } , "command" : "PUBLISH" }  "#,
    )
    .await;
    c.expect(message("k", json!([1, 2]))).await;
    b.stop().await;
}

#[tokio::test]
async fn framing_commands_are_case_insensitive_replies_upper_case() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    c.send_line(r#"{"command":"subscribe","args":{"channel":"m"}}"#)
        .await;
    assert_eq!(
        c.line().await,
        r#"{"type":"SUBSCRIBE","channel":"m","count":1}"#
    );
    c.send_line(r#"{"command":"PuBlIsH","args":{"channel":"m","message":"hi"}}"#)
        .await;
    assert_eq!(
        c.line().await,
        r#"{"type":"MESSAGE","channel":"m","message":"hi"}"#
    );
    c.send_line(r#"{"command":"Unsubscribe","args":{"channel":"m"}}"#)
        .await;
    assert_eq!(
        c.line().await,
        r#"{"type":"UNSUBSCRIBE","channel":"m","count":0}"#
    );
    c.send_line(r#"{"command":"ping"}"#).await;
    assert_eq!(c.line().await, r#"{"type":"PONG"}"#);
    b.stop().await;
}

#[tokio::test]
async fn extension_ping_pong() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    c.send_line(r#"{"command":"PING"}"#).await;
    assert_eq!(c.line().await, r#"{"type":"PONG"}"#);
    // Args are allowed and ignored.
    c.send_line(r#"{"command":"PING","args":{}}"#).await;
    c.expect(json!({"type": "PONG"})).await;
    b.stop().await;
}

#[tokio::test]
async fn extension_stats_fields_and_counts() {
    let b = broker().await;
    let mut a = Raw::connect(b.addr).await;
    let mut c = Raw::connect(b.addr).await;
    a.subscribe("x", 1).await;
    a.subscribe("y", 2).await;
    c.subscribe("x", 1).await;
    c.publish("x", &json!("m")).await;
    c.expect(message("x", json!("m"))).await;
    a.expect(message("x", json!("m"))).await;
    c.send_line("nonsense").await;
    c.expect(error(
        "frame is not valid JSON: unexpected character at column 2",
    ))
    .await;
    let s = c.stats().await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{s}");
    let fields = [
        "type",
        "uptime_ms",
        "connections_current",
        "connections_total",
        "connections_rejected",
        "channels",
        "subscriptions",
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "slow_consumers",
        "protocol_errors",
        "accept_errors",
        "links",
        "link_superseded",
        "budget_refusals",
        "deadlines_missed",
        "memory_held",
        "auth_failures",
        "permission_denials",
        "tls_handshake_failures",
    ];
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    let mut want = fields.to_vec();
    want.push("version");
    want.sort_unstable();
    assert_eq!(keys, want, "{s}");
    for f in &fields[1..] {
        assert!(s[f].is_u64(), "{f} in {s}");
    }
    let counts = |names: &[&str]| names.iter().map(|n| s[n].clone()).collect::<Vec<_>>();
    assert_eq!(
        counts(&[
            "connections_current",
            "connections_total",
            "connections_rejected",
            "channels",
            "subscriptions",
            "messages_in",
            "messages_out",
            "slow_consumers",
            "protocol_errors",
            "accept_errors",
        ]),
        [2, 2, 0, 2, 3, 1, 2, 0, 1, 0].map(|n| json!(n))
    );
    assert!(s["bytes_in"].as_u64().unwrap() > 0);
    assert!(s["bytes_out"].as_u64().unwrap() > 0);
    b.stop().await;
}

#[tokio::test]
async fn a_python_client_reading_one_byte_at_a_time() {
    const SCRIPT: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port))
s.sendall(b'{"command": "SUBSCRIBE", "args": {"channel": "py"}}\n')
for _ in range(n):
    line = b""
    while True:
        c = s.recv(1)
        if not c:
            sys.exit("connection closed")
        if c == b"\n":
            break
        line += c
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()
"#;
    use tokio::io::AsyncBufReadExt;
    let b = broker().await;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", SCRIPT, "127.0.0.1", &b.addr.port().to_string(), "4"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    macro_rules! next {
        () => {
            tokio::time::timeout(TIMEOUT, out.next_line())
                .await
                .expect("python output timed out")
                .unwrap()
        };
    }
    // Publish only once its subscription is acknowledged.
    assert_eq!(
        next!().as_deref(),
        Some(r#"{"type":"SUBSCRIBE","channel":"py","count":1}"#)
    );
    let mut publisher = Raw::connect(b.addr).await;
    publisher.publish("other", &json!("not for python")).await;
    publisher.publish("py", &json!("hello world")).await;
    publisher
        .publish("py", &json!({"nested": {"list": [1, 2]}, "s": "a\nb"}))
        .await;
    publisher.publish("py", &json!("héllo ✓")).await;
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(next!().expect("a line"));
    }
    assert_eq!(
        lines,
        [
            r#"{"type":"MESSAGE","channel":"py","message":"hello world"}"#,
            r#"{"type":"MESSAGE","channel":"py","message":{"nested":{"list":[1,2]},"s":"a\nb"}}"#,
            r#"{"type":"MESSAGE","channel":"py","message":"héllo ✓"}"#,
        ]
    );
    assert_eq!(next!(), None);
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    b.stop().await;
}
