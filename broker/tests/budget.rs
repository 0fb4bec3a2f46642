//! What a client may hold of the broker, and for how long: the deadlines for a first command
//! and for a frame, the broker-wide memory budget, and the memory given back once clients go.

mod common;

use std::time::Duration;

use common::{broker_with, error, wait_for_stats, BrokerProcess, Config, Raw};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const FIRST: Duration = Duration::from_millis(300);
const FRAME: Duration = Duration::from_millis(300);

fn deadlines() -> Config {
    Config {
        first_command_deadline: FIRST,
        frame_deadline: FRAME,
        ..Config::default()
    }
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_told_and_closed() {
    let broker = broker_with(deadlines()).await;
    let mut silent = Raw::connect(broker.addr).await;
    let mut speaks = Raw::connect(broker.addr).await;
    speaks.ping().await;
    silent
        .expect(error("no command within 300ms of connecting; closing"))
        .await;
    silent.expect_closed().await;
    // One that spoke in time has no deadline left.
    tokio::time::sleep(FIRST * 2).await;
    speaks.ping().await;
    assert_eq!(speaks.stats().await["deadlines_missed"], 1);
}

#[tokio::test]
async fn half_a_first_command_does_not_stop_the_clock() {
    let broker = broker_with(deadlines()).await;
    let mut c = Raw::connect(broker.addr).await;
    c.send(br#"{"command":"PI"#).await;
    c.expect(error("no command within 300ms of connecting; closing"))
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn a_frame_left_unfinished_is_told_and_closed() {
    let broker = broker_with(deadlines()).await;
    let mut c = Raw::connect(broker.addr).await;
    c.subscribe("x", 1).await;
    c.send(br#"{"command":"PUBLISH","args":{"chan"#).await;
    c.expect(error(
        "frame unfinished 300ms after its first byte; closing",
    ))
    .await;
    c.expect_closed().await;
    let stats = wait_for_stats(broker.addr, |s| s["connections_current"] == 1).await;
    assert_eq!(stats["deadlines_missed"], 1);
}

/// A publisher whose every write ends in the middle of a frame, for several deadlines in a
/// row: each frame is finished in time, so it is never cut and everything is delivered.
#[tokio::test]
async fn a_publisher_that_keeps_finishing_frames_is_never_cut() {
    let broker = broker_with(deadlines()).await;
    let mut sub = Raw::connect(broker.addr).await;
    sub.subscribe("x", 1).await;
    let mut publisher = Raw::connect(broker.addr).await;
    publisher.ping().await;
    let frame = |n: u32| format!("{}\n", common::publish_cmd("x", &json!(n)));
    let rounds = 12; // 12 × 100 ms: four deadlines
    publisher.send(&frame(0).as_bytes()[..20]).await;
    for n in 0..rounds {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (this, next) = (frame(n), frame(n + 1));
        let mut bytes = this.as_bytes()[20..].to_vec();
        bytes.extend_from_slice(&next.as_bytes()[..20]);
        publisher.send(&bytes).await;
    }
    publisher.send(&frame(rounds).as_bytes()[20..]).await;
    for n in 0..=rounds {
        sub.expect(common::message("x", json!(n))).await;
    }
    publisher.ping().await;
}

fn budgeted() -> Config {
    Config {
        memory_budget: 4 << 20,
        // Room for the test's backlog: only the budget is to bind here.
        max_pending: 256 << 20,
        pending_soft: 256 << 20,
        ..Config::default()
    }
}

/// A subscriber that does not read lets the broker's output queue grow to the budget: a
/// PUBLISH past it is refused with an ERROR, a frame still growing is refused and its
/// connection closed, and once the subscriber has read everything, publishing works again.
#[tokio::test]
async fn past_the_memory_budget_new_work_is_refused_until_it_drains() {
    let broker = broker_with(budgeted()).await;
    let mut sub = Raw::connect(broker.addr).await;
    sub.subscribe("x", 1).await;
    let mut publisher = Raw::connect(broker.addr).await;
    publisher.ping().await;
    // 32 MiB: more than the kernel's socket buffers take, so most of it waits in the broker.
    // Each message is under one 16 KiB granule of the budget: a frame of the publisher's own
    // that happened to be half read when the budget ran out would otherwise be a growing
    // frame, refused and its connection closed (seen once on a loaded machine), where this
    // test is about refused PUBLISHes.
    let big = "m".repeat(8 << 10);
    let messages = 4096;
    let mut bytes = Vec::new();
    for _ in 0..messages {
        bytes.extend_from_slice(common::publish_cmd("x", &json!(big)).as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"{\"command\":\"PING\"}\n");
    publisher.send(&bytes).await;
    let refusal = error(
        "PUBLISH: refused, the broker's memory budget of 4194304 bytes is spent; try again later",
    );
    let mut refused = 0;
    loop {
        let reply = publisher.value().await;
        if reply == json!({"type": "PONG"}) {
            break;
        }
        assert_eq!(reply, refusal);
        refused += 1;
    }
    assert!(refused > 0, "nothing was refused");
    // The budget is now held at its limit, give or take a message: a frame growing by more
    // than that is refused.
    let mut grower = Raw::connect(broker.addr).await;
    grower.ping().await;
    grower.send(&vec![b' '; 256 << 10]).await;
    grower
        .expect(error(
            "frame refused: the broker's memory budget of 4194304 bytes is spent; closing",
        ))
        .await;
    grower.expect_closed().await;

    for _ in 0..messages - refused {
        sub.expect(common::message("x", json!(big))).await;
    }
    wait_for_stats(broker.addr, |s| s["memory_held"] == 0).await;
    publisher.publish("x", &json!("accepted")).await;
    sub.expect(common::message("x", json!("accepted"))).await;
    let stats = sub.stats().await;
    assert_eq!(stats["budget_refusals"], refused + 1, "{stats}");
}

/// The broker gives memory back: 200 clients each holding an unfinished 1 MiB frame, and
/// 100 clients subscribed to 5,000 channels each, grow it by hundreds of megabytes; once they
/// have gone, its resident memory falls back to near where it started.
#[tokio::test]
async fn memory_is_given_back_after_a_mass_disconnect() {
    let broker = BrokerProcess::spawn(&[]);
    let mut probe = Raw::connect(broker.addr).await;
    probe.ping().await;
    let base = broker.rss();

    let chunk = vec![b' '; 1 << 20];
    let mut holders = Vec::new();
    for _ in 0..200 {
        let mut c = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
        c.write_all(br#"{"command":"PING"}"#).await.unwrap();
        c.write_all(b"\n").await.unwrap();
        c.write_all(&chunk[..(1 << 20) - 64]).await.unwrap();
        holders.push(c);
    }
    let mut subscribers = Vec::new();
    for i in 0..100 {
        let mut c = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
        let mut lines = String::new();
        for ch in 0..5_000 {
            lines.push_str(&common::subscribe_cmd(&format!("c{i}.{ch}")));
            lines.push('\n');
        }
        c.write_all(lines.as_bytes()).await.unwrap();
        subscribers.push(c);
    }
    wait_for_stats(broker.addr, |s| s["subscriptions"] == 500_000).await;
    let grown = broker.rss();
    assert!(
        grown > base + (200 << 20),
        "the load was to grow the broker by 200 MB or more: {base} → {grown}"
    );

    drop(holders);
    drop(subscribers);
    wait_for_stats(broker.addr, |s| {
        // The probe and the one asking.
        s["connections_current"] == 2 && s["subscriptions"] == 0
    })
    .await;
    // jemalloc hands freed pages back within about a second (its decay time); allow ten.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let given_back = loop {
        let rss = broker.rss();
        if rss < base + (32 << 20) || tokio::time::Instant::now() > deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        given_back < base + (32 << 20),
        "RSS {base} at the start, {grown} under load, still {given_back} after everyone left"
    );
    probe.ping().await;
}
