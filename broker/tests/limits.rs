//! The broker at its limits: out of file descriptors, at --max-connections, and asked to stop.

mod common;

use std::time::Duration;

use common::{broker, error, BrokerProcess, Raw};
use serde_json::json;
use tokio::net::TcpStream;

/// With 64 descriptors and `--max-connections` set above them, the broker runs out after a
/// few dozen clients. `accept` then fails with EMFILE: every client waiting is accepted with
/// the descriptor kept in reserve and refused with an ERROR, rather than left unanswered; with
/// none waiting the broker backs off (not spin), logs it, keeps serving the clients it has,
/// and accepts again once descriptors are free.
#[tokio::test]
async fn out_of_descriptors_clients_are_refused_and_accept_is_backed_off() {
    let broker = BrokerProcess::spawn_with_nofile(&["--max-connections", "1000"], Some(64));
    let mut first = Raw::connect(broker.addr).await;
    first.subscribe("x", 1).await;

    // More connections than the broker has descriptors; the kernel completes them all.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(broker.addr).await.unwrap());
    }
    // Behind all of them in the queue: refused like those past the descriptors.
    let mut refused = Raw::connect(broker.addr).await;
    refused.expect(error("too many connections")).await;
    refused.expect_closed().await;
    broker.wait_for_log("accept failed").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Still serving the clients it has.
    first.publish("x", &json!("still here")).await;
    first
        .expect(common::message("x", json!("still here")))
        .await;
    let stats = first.stats().await;
    let errors = stats["accept_errors"].as_u64().unwrap();
    // Backing off from 5 ms doubling to 1 s allows about ten failures in these ~2 s; a broker
    // that spun on EMFILE would count hundreds of thousands.
    assert!((1..=30).contains(&errors), "accept_errors = {errors}");
    // The broker's own descriptors (listener, runtime, reserve, stdio) and the 1 + 100 + 1
    // clients: about 60 held and the rest refused, none left waiting.
    let held = stats["connections_current"].as_u64().unwrap();
    let rejected = stats["connections_rejected"].as_u64().unwrap();
    assert_eq!(held + rejected, 102, "{stats}");

    // Descriptors come free: the broker accepts again.
    drop(idle);
    let mut late = Raw::connect(broker.addr).await;
    late.subscribe("x", 1).await;
    first.publish("x", &json!("welcome")).await;
    late.expect(common::message("x", json!("welcome"))).await;
}

/// Without `--max-connections` the broker takes its limit from the open-files limit, keeping
/// 32 descriptors for itself: with 64, the 33rd client is refused with an ERROR.
#[tokio::test]
async fn max_connections_defaults_to_what_the_open_files_limit_allows() {
    let broker = BrokerProcess::spawn_with_nofile(&[], Some(64));
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut c = Raw::connect(broker.addr).await;
        c.ping().await;
        held.push(c);
    }
    let mut refused = Raw::connect(broker.addr).await;
    refused.expect(error("too many connections")).await;
    refused.expect_closed().await;
    let stats = held[0].stats().await;
    assert_eq!(
        (
            stats["connections_current"].as_u64(),
            stats["connections_rejected"].as_u64()
        ),
        (Some(32), Some(1))
    );
}

#[tokio::test]
async fn max_connections_refuses_with_an_error() {
    let broker = common::broker_with(hubbub::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections: Some(2),
        ..Default::default()
    })
    .await;
    let mut a = Raw::connect(broker.addr).await;
    let b = Raw::connect(broker.addr).await;
    a.ping().await;
    let mut refused = Raw::connect(broker.addr).await;
    refused.expect(error("too many connections")).await;
    refused.expect_closed().await;

    drop(b);
    // Poll on `a`: a connection of its own would be over the limit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.stats().await["connections_current"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's departure never noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = Raw::connect(broker.addr).await;
    c.subscribe("y", 1).await;
    let stats = a.stats().await;
    assert_eq!(stats["connections_rejected"], 1);
}

/// Stopping an embedded broker ends every connection, whatever it was doing, well within the
/// shutdown grace (after which the broker would leave them open and `connections_current`
/// would still count them).
#[tokio::test]
async fn stopping_the_broker_closes_every_connection() {
    let b = broker().await;
    let mut idle = Raw::connect(b.addr).await;
    idle.ping().await;
    let mut subscribed = Raw::connect(b.addr).await;
    subscribed.subscribe("x", 1).await;
    let mut mid_frame = Raw::connect(b.addr).await;
    mid_frame.ping().await;
    mid_frame.send(br#"{"command":"PUBLISH","chan"#).await;
    let stats = b.stats.clone();
    assert_eq!(stats.snapshot().connections_current, 3);
    b.stop().await;
    assert_eq!(stats.snapshot().connections_current, 0);
    for c in [&mut idle, &mut subscribed, &mut mid_frame] {
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn sigterm_closes_clients_and_exits_cleanly() {
    let mut broker = BrokerProcess::spawn(&[]);
    let mut client = Raw::connect(broker.addr).await;
    client.subscribe("x", 1).await;
    let status = broker.terminate();
    assert!(status.success(), "exit status {status}");
    client.expect_closed().await;
    broker.wait_for_log("shutting down").await;
}

/// An idle broker logs its counters once, then again only when one of them changed: its log
/// does not fill with identical lines.
#[tokio::test]
async fn the_stats_line_is_logged_only_when_a_counter_changed() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_broker"));
    command
        .args(["--listen", "127.0.0.1:0", "--stats-interval", "100ms"])
        .env("RUST_LOG", "info");
    let broker = hubbub::launch::BrokerProcess::start(command).expect("the broker starts");
    let stats_lines = || {
        broker
            .log()
            .lines()
            .filter(|l| l.contains(" stats "))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(stats_lines(), 1, "{}", broker.log());
    let mut client = Raw::connect(broker.addr).await;
    client.subscribe("x", 1).await;
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while stats_lines() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{}", broker.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(stats_lines(), 2, "{}", broker.log());
}
