//! No client stalls the others: a connection with a vast number of subscriptions leaving is
//! undone a channel at a time, and other clients are served while it is.

mod common;

use common::{wait_for_stats, BrokerProcess, Raw};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHANNELS: u64 = 500_000;

/// A link (which `--max-subscriptions` does not bind: it subscribes to every channel of its
/// leaf) on half a million channels disconnects. While its subscriptions go, a STATS shows
/// some gone and some not, and a message published then is delivered: removing them never
/// holds the registry for all of them at once.
#[tokio::test]
async fn a_link_on_half_a_million_channels_leaving_does_not_stall_the_others() {
    let broker = BrokerProcess::spawn(&[]);
    let mut link = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let mut lines = String::from("{\"command\":\"LINK\",\"args\":{\"name\":\"below\"}}\n");
    for ch in 0..CHANNELS {
        lines.push_str(&common::subscribe_cmd(&format!("leaf.{ch}")));
        lines.push('\n');
    }
    // The subscriber and the other client are here first, so that they are served from the
    // moment the link goes.
    let mut sub = Raw::connect(broker.addr).await;
    sub.subscribe("x", 1).await;
    let mut other = Raw::connect(broker.addr).await;
    other.ping().await;

    lines.push_str("{\"command\":\"PING\"}\n");
    let (mut link_in, mut link_out) = link.split();
    // Every acknowledgement is read, up to the PONG after them, while the subscriptions are
    // sent: unread, they would fill the socket and the link would be cut as a slow consumer.
    let drain = async {
        let mut buf = vec![0; 1 << 16];
        let mut tail = Vec::new();
        loop {
            let n = link_in.read(&mut buf).await.unwrap();
            assert!(n > 0, "the broker closed the link");
            tail.extend_from_slice(&buf[..n]);
            if tail.ends_with(b"{\"type\":\"PONG\"}\n") {
                return;
            }
            let keep = tail.len().saturating_sub(32);
            tail.drain(..keep);
        }
    };
    let send = async { link_out.write_all(lines.as_bytes()).await.unwrap() };
    tokio::join!(send, drain);
    let stats = other.stats().await;
    assert_eq!(stats["subscriptions"], CHANNELS + 1, "{stats}");
    drop(link);

    let (mut midway, mut served_midway) = (0, 0);
    for n in 0.. {
        let left = other.stats().await["subscriptions"].as_u64().unwrap() - 1;
        if left == 0 {
            break;
        }
        if left < CHANNELS {
            midway += 1;
            other.publish("x", &json!(n)).await;
            sub.expect(common::message("x", json!(n))).await;
            served_midway += 1;
        }
    }
    assert!(
        midway > 0 && served_midway == midway,
        "no client was served while the link's subscriptions were being removed \
         (seen midway {midway} times, served {served_midway})"
    );
    // The last channel's own counter follows its subscription's.
    wait_for_stats(broker.addr, |s| s["channels"] == 1).await;
}

/// Threads of process `pid`, from /proc/PID/status.
fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads line")
}

/// Two hundred clients of 2,000 subscriptions each leave at once. Their subscriptions all go,
/// and the broker takes at most one more thread to remove them, however many leave: each
/// departure used to take a blocking thread of its own.
#[tokio::test]
async fn many_large_departures_share_one_thread() {
    const CLIENTS: usize = 200;
    const EACH: usize = 2_000;
    let broker = BrokerProcess::spawn(&["--threads", "2"]);
    let mut clients = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let mut client = Raw::connect(broker.addr).await;
        let mut lines = String::new();
        for ch in 0..EACH {
            lines.push_str(&common::subscribe_cmd(&format!("c{c}.{ch}")));
            lines.push('\n');
        }
        client.send(lines.as_bytes()).await;
        clients.push(client);
    }
    let subscribed = wait_for_stats(broker.addr, |s| {
        s["subscriptions"] == (CLIENTS * EACH) as u64
    })
    .await;
    let mut probe = Raw::connect(broker.addr).await;
    let before = threads(broker.pid());
    drop(clients);
    let mut most = before;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        most = most.max(threads(broker.pid()));
        let stats = probe.stats().await;
        if stats["subscriptions"] == 0 && stats["channels"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions left 30 s after everyone left: {stats} (was {subscribed})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    most = most.max(threads(broker.pid()));
    assert!(
        most <= before + 1,
        "removing {CLIENTS} departures took the broker from {before} to {most} threads"
    );
}
