//! The numbered rules of protocol.md, one test per rule: raw bytes on a real socket to a real
//! broker, asserting exact replies. Framing and the extensions are in `framing.rs`, the
//! bad-input table in `bad_input.rs`.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn rule1_disconnect_drops_subscriptions_and_reconnecting_needs_a_new_subscribe() {
    let b = broker().await;
    let mut sub = Raw::connect(b.addr).await;
    sub.subscribe("news", 1).await;
    sub.subscribe("sport", 2).await;
    let mut publisher = Raw::connect(b.addr).await;
    let s = publisher.stats().await;
    assert_eq!(
        (s["subscriptions"].clone(), s["channels"].clone()),
        (json!(2), json!(2))
    );

    drop(sub);
    wait_for_stats(b.addr, |s| s["subscriptions"] == 0 && s["channels"] == 0).await;

    // Nobody is subscribed any more: the publish goes nowhere.
    publisher.publish("news", &json!("lost")).await;
    let s = publisher.stats().await;
    assert_eq!(s["messages_in"], 1);
    assert_eq!(s["messages_out"], 0);

    // A new connection from the same client starts with nothing.
    let mut again = Raw::connect(b.addr).await;
    publisher.publish("news", &json!("still lost")).await;
    again.expect_silence().await;
    again.subscribe("news", 1).await;
    publisher.publish("news", &json!("found")).await;
    again.expect(message("news", json!("found"))).await;
    again.ping().await;
    b.stop().await;
}

#[tokio::test]
async fn rule2_nothing_from_before_the_subscribe_and_the_ack_comes_first() {
    let b = broker().await;
    // A witness proves the early message was really processed before the late subscriber came.
    let mut witness = Raw::connect(b.addr).await;
    witness.subscribe("c", 1).await;
    let mut publisher = Raw::connect(b.addr).await;
    publisher.publish("c", &json!("before")).await;
    witness.expect(message("c", json!("before"))).await;

    let mut late = Raw::connect(b.addr).await;
    late.send_line(&subscribe_cmd("c")).await;
    late.expect(ack("SUBSCRIBE", "c", 1)).await;
    publisher.publish("c", &json!("after")).await;
    late.expect(message("c", json!("after"))).await;
    late.ping().await;
    b.stop().await;
}

#[tokio::test]
async fn rule2_subscribing_during_a_burst_gets_the_ack_then_a_gapless_tail() {
    const N: u64 = 2_000;
    let b = broker().await;
    let mut witness = Raw::connect(b.addr).await;
    witness.subscribe("c", 1).await;
    let mut publisher = Raw::connect(b.addr).await;
    let mut late = Raw::connect(b.addr).await;
    let burst = tokio::spawn(async move {
        for i in 0..N {
            publisher.publish("c", &json!(i)).await;
        }
        publisher
    });
    late.send_line(&subscribe_cmd("c")).await;
    late.expect(ack("SUBSCRIBE", "c", 1)).await;
    let _publisher = burst.await.unwrap();
    for i in 0..N {
        witness.expect(message("c", json!(i))).await;
    }
    // Every publish has been fanned out (the witness has them all), so the PONG comes after
    // anything queued for the late subscriber: a contiguous run ending at N - 1, maybe empty.
    late.send_line(r#"{"command":"PING"}"#).await;
    let first = late.value().await;
    if first != json!({"type": "PONG"}) {
        let start = first["message"].as_u64().expect("a MESSAGE with a number");
        assert_eq!(first, message("c", json!(start)));
        for i in start + 1..N {
            late.expect(message("c", json!(i))).await;
        }
        late.expect(json!({"type": "PONG"})).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn rule3_publish_has_no_reply_and_echoes_only_to_a_subscribed_publisher() {
    let b = broker().await;
    let mut other = Raw::connect(b.addr).await;
    other.subscribe("c", 1).await;
    let mut publisher = Raw::connect(b.addr).await;

    publisher.publish("c", &json!("one")).await;
    other.expect(message("c", json!("one"))).await;
    publisher.ping().await; // no reply to PUBLISH, no echo
    publisher.publish("empty", &json!("x")).await;
    publisher.ping().await;

    publisher.subscribe("c", 1).await;
    publisher.publish("c", &json!("two")).await;
    publisher.expect(message("c", json!("two"))).await;
    other.expect(message("c", json!("two"))).await;
    publisher.ping().await;
    other.ping().await;
    b.stop().await;
}

#[tokio::test]
async fn rule4_double_subscribe_and_stray_unsubscribe_are_harmless() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    c.subscribe("foo", 1).await;
    c.subscribe("foo", 1).await;
    c.subscribe("bar", 2).await;
    let s = c.stats().await;
    assert_eq!(
        (s["subscriptions"].clone(), s["channels"].clone()),
        (json!(2), json!(2))
    );

    let mut publisher = Raw::connect(b.addr).await;
    publisher.publish("foo", &json!(1)).await;
    c.expect(message("foo", json!(1))).await;
    c.ping().await; // exactly one copy

    c.unsubscribe("baz", 2).await;
    c.unsubscribe("foo", 1).await;
    c.unsubscribe("foo", 1).await;
    publisher.publish("foo", &json!(2)).await;
    publisher.publish("bar", &json!(3)).await;
    c.expect(message("bar", json!(3))).await;
    c.ping().await;
    c.unsubscribe("bar", 0).await;
    c.unsubscribe("bar", 0).await;
    let s = c.stats().await;
    assert_eq!(
        (s["subscriptions"].clone(), s["channels"].clone()),
        (json!(0), json!(0))
    );
    b.stop().await;
}

#[tokio::test]
async fn rule5_one_publishers_messages_arrive_in_order() {
    const N: u64 = 1_000;
    let b = broker().await;
    let mut subs = Vec::new();
    for _ in 0..2 {
        let mut s = Raw::connect(b.addr).await;
        s.subscribe("seq", 1).await;
        subs.push(s);
    }
    let mut publisher = Raw::connect(b.addr).await;
    let mut batch = String::new();
    for i in 0..N {
        batch += &publish_cmd("seq", &json!({"n": i}));
        batch.push('\n');
    }
    publisher.send(batch.as_bytes()).await;
    for s in &mut subs {
        for i in 0..N {
            s.expect(message("seq", json!({"n": i}))).await;
        }
        s.ping().await;
    }
    b.stop().await;
}

/// Publishes `raw` (JSON text) as the message and checks the line a subscriber gets, byte for
/// byte: the broker relays the publisher's encoding.
async fn relayed(raw: &str) -> String {
    let b = broker().await;
    let mut sub = Raw::connect(b.addr).await;
    sub.subscribe("r", 1).await;
    let mut publisher = Raw::connect(b.addr).await;
    publisher
        .send_line(&format!(
            r#"{{"command":"PUBLISH","args":{{"channel":"r","message":{raw}}}}}"#
        ))
        .await;
    let line = sub.line().await;
    b.stop().await;
    line
}

#[tokio::test]
async fn rule6_messages_are_relayed_as_encoded() {
    let cases = [
        (r#""hello world""#, json!("hello world")),
        (r#""42""#, json!("42")),
        (
            r#""{\"not\": \"an object\"}""#,
            json!("{\"not\": \"an object\"}"),
        ),
        (r#""line\nbreak \u00e9 é ✓""#, json!("line\nbreak é é ✓")),
        (
            r#"{"a b": [1, {"c": "d e"}], "n": null, "t": true}"#,
            json!({"a b": [1, {"c": "d e"}], "n": null, "t": true}),
        ),
        ("{}", json!({})),
        ("null", Value::Null),
        ("0", json!(0)),
        ("-12.5e3", json!(-12.5e3)),
        ("[1, \"two\", [3]]", json!([1, "two", [3]])),
        ("true", json!(true)),
        ("false", json!(false)),
    ];
    for (raw, value) in cases {
        let line = relayed(raw).await;
        assert_eq!(
            line,
            format!(r#"{{"type":"MESSAGE","channel":"r","message":{raw}}}"#)
        );
        let got: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(got, message("r", value));
    }
    // Digits beyond f64 survive because the payload is never re-encoded.
    let big = "123456789012345678901234567890";
    assert_eq!(
        relayed(big).await,
        format!(r#"{{"type":"MESSAGE","channel":"r","message":{big}}}"#)
    );
}

#[tokio::test]
async fn rule7_a_publish_nobody_hears_is_dropped_and_never_stored() {
    let b = broker().await;
    let mut publisher = Raw::connect(b.addr).await;
    publisher.publish("void", &json!("gone")).await;
    let s = publisher.stats().await;
    assert_eq!(s["messages_in"], 1);
    assert_eq!(s["messages_out"], 0);
    assert_eq!(s["channels"], 0);

    let mut late = Raw::connect(b.addr).await;
    late.subscribe("void", 1).await;
    late.expect_silence().await;
    publisher.publish("void", &json!("heard")).await;
    late.expect(message("void", json!("heard"))).await;
    b.stop().await;
}
