//! Every row of protocol.md's bad-input table: the exact ERROR, then proof that the connection
//! (or, for an oversize frame, the broker) still serves.

mod common;

use common::*;
use serde_json::json;

/// Sends `input` + `\n`, expects exactly `{"type":"ERROR","message":<expected>}`, then shows the
/// connection still works and that the bad frame did nothing: the next SUBSCRIBE gets count 1,
/// and a subscriber on channel `c` received nothing.
async fn refused(input: &[u8], expected: &str) {
    let b = broker().await;
    let mut watcher = Raw::connect(b.addr).await;
    watcher.subscribe("c", 1).await;
    let mut c = Raw::connect(b.addr).await;
    let mut frame = input.to_vec();
    frame.push(b'\n');
    c.send(&frame).await;
    c.expect(error(expected)).await;
    c.subscribe("after", 1).await;
    c.ping().await;
    watcher.ping().await;
    let s = c.stats().await;
    assert_eq!(s["protocol_errors"], 1, "{s}");
    assert_eq!(s["messages_in"], 0, "{s}");
    assert_eq!(s["subscriptions"], 2, "{s}");
    b.stop().await;
}

#[tokio::test]
async fn not_json() {
    refused(
        b"hello",
        "frame is not valid JSON: unexpected character at column 1",
    )
    .await;
    refused(
        b"{nope",
        "frame is not valid JSON: unexpected character at column 2",
    )
    .await;
    refused(
        br#"{"command":"SUBSCRIBE","args":{"channel":"c"}"#,
        "frame is not valid JSON: the frame ends inside a value",
    )
    .await;
    refused(
        br#"{"command":"PUBLISH","args":{"channel":"c","message":1}} trailing"#,
        "frame is not valid JSON: unexpected characters after the object, at column 58",
    )
    .await;
}

#[tokio::test]
async fn not_an_object() {
    for input in [
        &b"[1,2]"[..],
        b"[1,2,3]",
        b"[]",
        br#""SUBSCRIBE""#,
        b"42",
        b"null",
        b"true",
    ] {
        refused(input, "frame must be a JSON object").await;
    }
}

#[tokio::test]
async fn not_utf8() {
    refused(b"\xff\xfe", "frame is not valid UTF-8").await;
    refused(
        b"{\"command\":\"SUBSCRIBE\",\"args\":{\"channel\":\"\xc3\x28\"}}",
        "frame is not valid UTF-8",
    )
    .await;
}

#[tokio::test]
async fn missing_or_wrongly_typed_command() {
    refused(b"{}", r#"missing "command""#).await;
    refused(br#"{"args":{"channel":"c"}}"#, r#"missing "command""#).await;
    refused(
        br#"{"command":5,"args":{"channel":"c"}}"#,
        r#""command" must be a string"#,
    )
    .await;
    refused(br#"{"command":null}"#, r#""command" must be a string"#).await;
}

#[tokio::test]
async fn unknown_command() {
    refused(
        br#"{"command":"FLY","args":{"channel":"c"}}"#,
        r#"unknown command "FLY""#,
    )
    .await;
    refused(br#"{"command":""}"#, r#"unknown command """#).await;
    // Echoed escaped and cut: a megabyte name costs the reply a line, not a megabyte.
    let long = format!(r#"{{"command":"{}\n"}}"#, "X".repeat(100_000));
    let shown = "X".repeat(64);
    refused(
        long.as_bytes(),
        &format!(r#"unknown command "{shown}"… (99937 more bytes)"#),
    )
    .await;
}

/// A LINK name is the client's text: in the log it is one escaped, cut field, so a newline in
/// it cannot forge a log line of its own.
#[tokio::test]
async fn a_link_name_cannot_forge_a_log_line() {
    let broker = BrokerProcess::spawn(&[]);
    let mut c = Raw::connect(broker.addr).await;
    let forged = r"leaf\nERROR hubbub::server: forged";
    c.send_line(&format!(
        r#"{{"command":"LINK","args":{{"name":"{forged}{}"}}}}"#,
        "y".repeat(10_000)
    ))
    .await;
    c.line().await; // the LINK reply
    broker.wait_for_log("link from a broker below").await;
    let log = broker.log();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("ERROR hubbub::server: forged")),
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("link from a broker below"))
        .unwrap();
    assert!(
        line.contains(r#"name="leaf\nERROR hubbub::server: forged"#),
        "{line}"
    );
    assert!(line.contains("more bytes)"), "{line}");
    assert!(line.len() < 400, "{line}");
}

#[tokio::test]
async fn missing_args() {
    refused(
        br#"{"command":"SUBSCRIBE"}"#,
        r#"SUBSCRIBE: missing "args""#,
    )
    .await;
    refused(
        br#"{"command":"unsubscribe"}"#,
        r#"UNSUBSCRIBE: missing "args""#,
    )
    .await;
    refused(
        br#"{"command":"PUBLISH","channel":"c","message":1}"#,
        r#"PUBLISH: missing "args""#,
    )
    .await;
}

#[tokio::test]
async fn args_not_an_object() {
    for args in [r#""c""#, "[\"c\"]", "null", "7"] {
        let frame = format!(r#"{{"command":"SUBSCRIBE","args":{args}}}"#);
        refused(frame.as_bytes(), r#"SUBSCRIBE: "args" must be an object"#).await;
    }
    refused(
        br#"{"command":"PUBLISH","args":["c",1]}"#,
        r#"PUBLISH: "args" must be an object"#,
    )
    .await;
}

#[tokio::test]
async fn missing_channel() {
    refused(
        br#"{"command":"SUBSCRIBE","args":{}}"#,
        r#"SUBSCRIBE: missing "args.channel""#,
    )
    .await;
    refused(
        br#"{"command":"UNSUBSCRIBE","args":{"chanel":"c"}}"#,
        r#"UNSUBSCRIBE: missing "args.channel""#,
    )
    .await;
    refused(
        br#"{"command":"PUBLISH","args":{"message":"m"}}"#,
        r#"PUBLISH: missing "args.channel""#,
    )
    .await;
}

#[tokio::test]
async fn channel_not_a_string() {
    for channel in ["5", "null", "[\"c\"]", r#"{"name":"c"}"#, "true"] {
        let frame =
            format!(r#"{{"command":"PUBLISH","args":{{"channel":{channel},"message":1}}}}"#);
        refused(
            frame.as_bytes(),
            r#"PUBLISH: "args.channel" must be a string"#,
        )
        .await;
    }
    refused(
        br#"{"command":"SUBSCRIBE","args":{"channel":1}}"#,
        r#"SUBSCRIBE: "args.channel" must be a string"#,
    )
    .await;
}

#[tokio::test]
async fn missing_message() {
    refused(
        br#"{"command":"PUBLISH","args":{"channel":"c"}}"#,
        r#"PUBLISH: missing "args.message""#,
    )
    .await;
}

/// A frame of exactly `len` bytes (without its newline): a PUBLISH on `channel`.
fn publish_of_len(channel: &str, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"command":"PUBLISH","args":{{"channel":"{channel}","message":""#);
    let tail = r#""}}"#;
    let mut frame = head.into_bytes();
    frame.resize(len - tail.len(), b'x');
    frame.extend_from_slice(tail.as_bytes());
    assert_eq!(frame.len(), len);
    frame
}

/// Sends a frame one byte longer than `max`: ERROR, then the connection closes, and the broker
/// goes on serving everyone else, including the subscriber that never got the frame.
async fn oversize(config: Config, max: usize) {
    let b = broker_with(config).await;
    let mut watcher = Raw::connect(b.addr).await;
    watcher.subscribe("c", 1).await;
    let mut c = Raw::connect(b.addr).await;

    // At the limit is fine.
    let frame = publish_of_len("c", max);
    c.send_line(std::str::from_utf8(&frame).unwrap()).await;
    let sent: serde_json::Value = serde_json::from_slice(&frame).unwrap();
    watcher
        .expect(message("c", sent["args"]["message"].clone()))
        .await;

    // One byte more is not.
    let frame = publish_of_len("c", max + 1);
    c.send_line(std::str::from_utf8(&frame).unwrap()).await;
    c.expect(error(&format!(
        "frame longer than the maximum of {max} bytes"
    )))
    .await;
    c.expect_closed().await;
    drop(c);

    watcher.ping().await; // the oversize PUBLISH was not relayed
    let mut fresh = Raw::connect(b.addr).await;
    fresh.subscribe("c", 1).await;
    let s = wait_for_stats(b.addr, |s| s["connections_current"] == 3).await;
    assert_eq!(s["protocol_errors"], 1);
    assert_eq!(s["messages_in"], 1);
    b.stop().await;
}

#[tokio::test]
async fn oversize_frame_closes_the_connection_small_limit() {
    let config = Config {
        max_frame: 1024,
        ..Config::default()
    };
    oversize(config, 1024).await;
}

#[tokio::test]
async fn oversize_frame_closes_the_connection_default_limit() {
    assert_eq!(Config::default().max_frame, 1 << 20);
    oversize(Config::default(), 1 << 20).await;
}

#[tokio::test]
async fn an_endless_line_is_cut_off_without_waiting_for_its_newline() {
    let b = broker_with(Config {
        max_frame: 1024,
        ..Config::default()
    })
    .await;
    let mut c = Raw::connect(b.addr).await;
    c.send(&[b' '; 4096]).await;
    c.expect(error("frame longer than the maximum of 1024 bytes"))
        .await;
    c.expect_closed().await;
    let mut fresh = Raw::connect(b.addr).await;
    fresh.subscribe("still", 1).await;
    fresh.publish("still", &json!("serving")).await;
    fresh.expect(message("still", json!("serving"))).await;
    b.stop().await;
}

#[tokio::test]
async fn a_channel_name_past_max_channel() {
    let long = "c".repeat(1025);
    for verb in ["SUBSCRIBE", "UNSUBSCRIBE"] {
        refused(
            format!(r#"{{"command":"{verb}","args":{{"channel":"{long}"}}}}"#).as_bytes(),
            &format!(r#"{verb}: "args.channel" is longer than the maximum of 1024 bytes"#),
        )
        .await;
    }
    refused(
        format!(r#"{{"command":"PUBLISH","args":{{"channel":"{long}","message":1}}}}"#).as_bytes(),
        r#"PUBLISH: "args.channel" is longer than the maximum of 1024 bytes"#,
    )
    .await;
}

/// Refused and not relayed: the watcher on "c" receives nothing.
#[tokio::test]
async fn a_message_nested_past_max_depth() {
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    refused(
        format!(r#"{{"command":"PUBLISH","args":{{"channel":"c","message":{deep}}}}}"#).as_bytes(),
        r#"PUBLISH: "args.message" is nested deeper than the maximum of 128 levels"#,
    )
    .await;
}

/// One SUBSCRIBE past the limit is refused and changes nothing; a channel the connection is
/// already on, or one after an UNSUBSCRIBE, is still taken.
#[tokio::test]
async fn subscriptions_past_max_subscriptions() {
    let b = broker_with(hubbub::Config {
        max_subscriptions: 2,
        ..Default::default()
    })
    .await;
    let mut c = Raw::connect(b.addr).await;
    c.subscribe("a", 1).await;
    c.subscribe("b", 2).await;
    c.send_line(&subscribe_cmd("x")).await;
    c.expect(error(
        "SUBSCRIBE: already subscribed to the maximum of 2 channels",
    ))
    .await;
    c.subscribe("b", 2).await;
    c.unsubscribe("a", 1).await;
    c.subscribe("x", 2).await;
    let s = c.stats().await;
    assert_eq!(
        (&s["subscriptions"], &s["protocol_errors"]),
        (&json!(2), &json!(1))
    );
    b.stop().await;
}

#[tokio::test]
async fn a_channel_holding_a_lone_surrogate() {
    refused(
        br#"{"command":"SUBSCRIBE","args":{"channel":"a\ud800"}}"#,
        r#"SUBSCRIBE: "args.channel" holds an escape that is no character (a lone surrogate)"#,
    )
    .await;
}
