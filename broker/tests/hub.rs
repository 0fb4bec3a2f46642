//! The hub topology: brokers linked to an upstream broker, messages crossing the tree exactly
//! once in every direction, interest following subscriptions, and a link that survives its
//! upstream restarting.
//!
//! The tree in these tests:  hub ← a ← c,  hub ← b.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{broker, broker_with, message, wait_for_stats, Config, Raw, RunningBroker};
use serde_json::{json, Value};

async fn leaf(upstream: SocketAddr, name: &str) -> RunningBroker {
    broker_with(Config {
        upstream: Some(upstream.into()),
        name: Some(name.into()),
        ..Default::default()
    })
    .await
}

async fn wait_linked(addr: SocketAddr) {
    wait_for_stats(addr, |s| s["upstream"]["connected"] == true).await;
}

/// Waits until `addr` holds `n` subscriptions (its clients' and its links').
async fn wait_subscriptions(addr: SocketAddr, n: u64) {
    wait_for_stats(addr, |s| s["subscriptions"] == n).await;
}

struct Tree {
    hub: RunningBroker,
    a: RunningBroker,
    b: RunningBroker,
    c: RunningBroker,
}

async fn tree() -> Tree {
    let hub = broker().await;
    let a = leaf(hub.addr, "a").await;
    let b = leaf(hub.addr, "b").await;
    let c = leaf(a.addr, "c").await;
    for addr in [a.addr, b.addr, c.addr] {
        wait_linked(addr).await;
    }
    wait_for_stats(hub.addr, |s| s["links"] == 2).await;
    wait_for_stats(a.addr, |s| s["links"] == 1).await;
    Tree { hub, a, b, c }
}

/// Reads `n` MESSAGE lines and returns their messages as a set.
async fn messages(sub: &mut Raw, n: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for _ in 0..n {
        let v: Value = sub.value().await;
        assert_eq!(v["type"], "MESSAGE", "{v}");
        assert!(
            got.insert(v["message"].as_str().unwrap().to_string()),
            "duplicate {v}"
        );
    }
    got
}

#[tokio::test]
async fn every_subscriber_gets_every_message_once_from_every_broker() {
    let t = tree().await;
    let brokers = [
        ("hub", t.hub.addr),
        ("a", t.a.addr),
        ("b", t.b.addr),
        ("c", t.c.addr),
    ];
    let mut subs = Vec::new();
    for (_, addr) in brokers {
        let mut s = Raw::connect(addr).await;
        s.subscribe("x", 1).await;
        subs.push(s);
    }
    // hub: its client and the links of a and b; a: its client and c's link.
    wait_subscriptions(t.hub.addr, 3).await;
    wait_subscriptions(t.a.addr, 2).await;

    for (name, addr) in brokers {
        let mut publisher = Raw::connect(addr).await;
        publisher.publish("x", &json!(format!("from {name}"))).await;
        publisher.ping().await;
    }
    let all: BTreeSet<String> = brokers.iter().map(|(n, _)| format!("from {n}")).collect();
    for sub in &mut subs {
        assert_eq!(messages(sub, 4).await, all);
        sub.expect_silence().await;
    }
}

#[tokio::test]
async fn order_per_publisher_holds_two_hops_away() {
    let t = tree().await;
    let mut far = Raw::connect(t.b.addr).await;
    far.subscribe("seq", 1).await;
    wait_subscriptions(t.hub.addr, 1).await;
    let mut publisher = Raw::connect(t.c.addr).await;
    for i in 0..2_000 {
        publisher.publish("seq", &json!(i)).await;
    }
    for i in 0..2_000 {
        far.expect(message("seq", json!(i))).await;
    }
    far.expect_silence().await;
}

#[tokio::test]
async fn unsubscribing_withdraws_interest_up_the_tree() {
    let t = tree().await;
    let mut sub_c = Raw::connect(t.c.addr).await;
    let mut sub_a = Raw::connect(t.a.addr).await;
    let mut sub_b = Raw::connect(t.b.addr).await;
    for s in [&mut sub_c, &mut sub_a, &mut sub_b] {
        s.subscribe("x", 1).await;
    }
    wait_subscriptions(t.a.addr, 2).await;
    wait_subscriptions(t.hub.addr, 2).await;

    sub_c.unsubscribe("x", 0).await;
    wait_subscriptions(t.a.addr, 1).await; // c's link let go
    wait_subscriptions(t.hub.addr, 2).await; // a still has sub_a
    sub_a.unsubscribe("x", 0).await;
    wait_subscriptions(t.a.addr, 0).await;
    wait_subscriptions(t.hub.addr, 1).await; // only b's link is left

    let mut publisher = Raw::connect(t.hub.addr).await;
    publisher.publish("x", &json!("only b")).await;
    sub_b.expect(message("x", json!("only b"))).await;
    sub_a.expect_silence().await;
    sub_c.expect_silence().await;
    let a = wait_for_stats(t.a.addr, |_| true).await;
    assert_eq!(
        a["upstream"]["received"], 0,
        "nothing was sent down to a: {a}"
    );
}

#[tokio::test]
async fn the_link_reconnects_resubscribes_and_loses_only_what_was_sent_while_down() {
    let t = tree().await;
    let mut sub_a = Raw::connect(t.a.addr).await;
    let mut sub_b = Raw::connect(t.b.addr).await;
    sub_a.subscribe("x", 1).await;
    sub_b.subscribe("x", 1).await;
    wait_subscriptions(t.hub.addr, 2).await;

    let hub_addr = t.hub.addr;
    t.hub.stop().await;
    wait_for_stats(t.a.addr, |s| s["upstream"]["connected"] == false).await;
    let mut pub_a = Raw::connect(t.a.addr).await;
    pub_a.publish("x", &json!("while down")).await;
    // Delivered where it was published, and nowhere else.
    sub_a.expect(message("x", json!("while down"))).await;

    // The same address again (broker_with would pick a new port).
    let hub = hubbub::start(Config {
        listen: hub_addr,
        ..Default::default()
    })
    .await
    .expect("the hub restarts on its old address");
    wait_for_stats(t.a.addr, |s| s["upstream"]["connected"] == true).await;
    wait_for_stats(t.b.addr, |s| s["upstream"]["connected"] == true).await;
    wait_subscriptions(hub.addr, 2).await;

    pub_a.publish("x", &json!("after")).await;
    sub_b.expect(message("x", json!("after"))).await;
    sub_a.expect(message("x", json!("after"))).await;
    sub_a.expect_silence().await;
    sub_b.expect_silence().await;
    let a = wait_for_stats(t.a.addr, |_| true).await;
    assert_eq!(a["upstream"]["connects"], 2, "{a}");
    assert_eq!(a["upstream"]["dropped"], 1, "{a}");
}

#[tokio::test]
async fn plain_clients_see_nothing_of_links() {
    let t = tree().await;
    let mut plain = Raw::connect(t.hub.addr).await;
    plain.subscribe("x", 1).await;
    plain.publish("x", &json!("echo")).await;
    // A plain client still gets its own message (rule 3); only links are spared the echo.
    plain.expect(message("x", json!("echo"))).await;
    plain.expect_silence().await;
    let _ = (t.a, t.b, t.c);
}

/// A port nothing listens on yet, for a broker whose upstream must be named before it starts.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A broker on `listen` linked to `upstream`, even one not started yet (it retries).
async fn linked(listen: SocketAddr, upstream: SocketAddr) -> RunningBroker {
    hubbub::start(Config {
        listen,
        upstream: Some(upstream.into()),
        stats_interval: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("broker starts")
}

/// Subscribes a client at each broker to "x", publishes one message at each, and checks
/// that every subscriber gets each exactly once: a loop would repeat them without end.
async fn each_message_once(brokers: &[SocketAddr]) {
    let mut subs = Vec::new();
    for &addr in brokers {
        let mut s = Raw::connect(addr).await;
        s.subscribe("x", 1).await;
        subs.push(s);
    }
    for (i, &addr) in brokers.iter().enumerate() {
        let mut p = Raw::connect(addr).await;
        p.publish("x", &json!(i)).await;
        p.ping().await;
    }
    for s in &mut subs {
        let mut got = Vec::new();
        for _ in brokers {
            got.push(s.value().await["message"].as_u64().unwrap());
        }
        got.sort();
        assert_eq!(got, (0..brokers.len() as u64).collect::<Vec<_>>());
        s.expect_silence().await;
    }
}

/// `--upstream` naming the broker's own address: the LINK is refused (an ERROR, counted) and
/// nothing is repeated.
#[tokio::test]
async fn a_broker_linked_to_itself_refuses_the_link() {
    let addr = free_port();
    let b = linked(addr, addr).await;
    wait_for_stats(addr, |s| {
        s["protocol_errors"] == 1 && s["upstream"]["connects"] == 1
    })
    .await;
    wait_for_stats(addr, |s| {
        s["upstream"]["connected"] == false && s["links"] == 0
    })
    .await;
    each_message_once(&[addr]).await;
    b.stop().await;
}

/// A links to B and B to A, both at once. Both links come up, each broker then learns that
/// the brokers above it include itself and drops its link; they retry after a random pause, and
/// whichever comes back first stands: the other's LINK is refused (an ERROR, counted), as the
/// first's path holds it. Every subscriber on either gets each message once.
#[tokio::test]
async fn two_brokers_linked_to_each_other_settle_on_one_link() {
    let b_addr = free_port();
    let a = linked("127.0.0.1:0".parse().unwrap(), b_addr).await;
    let b = linked(b_addr, a.addr).await;
    let settled = |up: &Value, down: &Value| {
        up["upstream"]["connected"] == true
            && up["links"] == 0
            && down["upstream"]["connected"] == false
            && down["links"] == 1
            && down["protocol_errors"] == 0
            && up["protocol_errors"].as_u64() >= Some(1)
    };
    // The random pause after a loop is at most 5 s; two rounds of it, and then some.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let sa = Raw::connect(a.addr).await.stats().await;
        let sb = Raw::connect(b_addr).await.stats().await;
        if settled(&sa, &sb) || settled(&sb, &sa) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled:\n{sa}\n{sb}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    each_message_once(&[a.addr, b_addr]).await;
    a.stop().await;
    b.stop().await;
}

/// An upstream that takes the link but reads nothing until told to, then counts the PUBLISH
/// lines it is sent on every connection the link makes: a hub stopped under load.
async fn stalled_upstream() -> (
    SocketAddr,
    tokio::sync::watch::Sender<bool>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::AsyncBufReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, stalled) = tokio::sync::watch::channel(false);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (mut stalled, counted) = (stalled.clone(), counted.clone());
            tokio::spawn(async move {
                let _ = stalled.wait_for(|&go| go).await;
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with(r#"{"command":"PUBLISH""#) {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, go, received)
}

/// The upstream stops reading under load: the link overflows its outbox and is dropped (and
/// comes back). Every publish is then either `forwarded` — and the upstream received
/// exactly those — or `dropped`: queued publishes lost with the link are not counted as
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_lost_with_an_overflowing_link_are_counted_dropped_not_forwarded() {
    const N: u64 = 20_000;
    let (upstream, go, received) = stalled_upstream().await;
    let leaf = broker_with(Config {
        upstream: Some(upstream.into()),
        max_pending: 64 << 10,
        ..Default::default()
    })
    .await;
    wait_linked(leaf.addr).await;
    let mut publisher = Raw::connect(leaf.addr).await;
    let pad = "x".repeat(1000);
    for start in (0..N).step_by(1000) {
        let mut batch = String::new();
        for i in start..start + 1000 {
            batch += &common::publish_cmd("x", &json!(format!("{i} {pad}")));
            batch.push('\n');
        }
        publisher.send(batch.as_bytes()).await;
    }
    let s = publisher.stats().await;
    assert_eq!(s["messages_in"], N);
    assert!(
        s["upstream"]["dropped"].as_u64() > Some(0),
        "the link never overflowed: {s}"
    );
    go.send_replace(true);
    wait_for_stats(leaf.addr, |s| {
        let up = &s["upstream"];
        up["forwarded"]
            .as_u64()
            .zip(up["dropped"].as_u64())
            .is_some_and(|(f, d)| {
                f + d == N && f == received.load(std::sync::atomic::Ordering::SeqCst)
            })
    })
    .await;
    leaf.stop().await;
}

/// `--upstream` takes a name, looked up at each connect: a leaf across hosts names its hub.
#[tokio::test]
async fn a_leaf_finds_its_upstream_by_name() {
    let hub = broker().await;
    let leaf = broker_with(Config {
        upstream: Some(format!("localhost:{}", hub.addr.port()).parse().unwrap()),
        ..Default::default()
    })
    .await;
    wait_linked(leaf.addr).await;
    let mut sub = Raw::connect(leaf.addr).await;
    sub.subscribe("x", 1).await;
    wait_subscriptions(hub.addr, 1).await;
    let mut publisher = Raw::connect(hub.addr).await;
    publisher.publish("x", &json!("across")).await;
    sub.expect(message("x", json!("across"))).await;
    let s = sub.stats().await;
    assert_eq!(
        s["upstream"]["addr"],
        format!("localhost:{}", hub.addr.port())
    );
}

/// An upstream that takes the link and reads it but never answers, as a frozen or cut-off hub
/// looks from the leaf: after a third of `--upstream-timeout` in silence the link sends one
/// PING; after the whole of it, it drops the connection and makes a new one.
#[tokio::test]
async fn a_silent_upstream_is_pinged_then_dropped_and_linked_again() {
    use tokio::io::AsyncBufReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leaf = broker_with(Config {
        upstream: Some(listener.local_addr().unwrap().into()),
        upstream_timeout: std::time::Duration::from_millis(900),
        ..Default::default()
    })
    .await;
    let (first, _) = listener.accept().await.unwrap();
    let started = std::time::Instant::now();
    let mut lines = tokio::io::BufReader::new(first).lines();
    let mut heard = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        heard.push(serde_json::from_str::<Value>(&line).unwrap()["command"].clone());
    }
    let closed_after = started.elapsed();
    assert_eq!(
        heard,
        [json!("LINK"), json!("PING")],
        "then the leaf closed it"
    );
    assert!(
        closed_after >= std::time::Duration::from_millis(900),
        "closed after {closed_after:?}, before the timeout"
    );
    let again = tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept()).await;
    assert!(again.is_ok(), "the leaf did not link again");
    leaf.stop().await;
}

/// A frozen hub thawing with a leaf's old links and its new one all open (`crate::epochs`):
/// the newest LINK of a broker below supersedes its older links, whose publishes from then on
/// are discarded (and counted) and which are closed, so that none of them can be delivered
/// after the newer link's; a LINK older than the current one is closed at once.
#[tokio::test]
async fn a_newer_link_of_the_same_broker_supersedes_the_older_ones() {
    let hub = broker().await;
    let mut sub = Raw::connect(hub.addr).await;
    sub.subscribe("x", 1).await;
    let link = |epoch: u64| {
        format!(
            r#"{{"command":"LINK","args":{{"name":"leaf","id":"00000000000000aa","epoch":{epoch}}}}}"#
        )
    };
    let mut old = Raw::connect(hub.addr).await;
    old.send_line(&link(1)).await;
    assert_eq!(old.value().await["type"], "LINK");
    old.publish("x", &json!("from the old link")).await;
    sub.expect(message("x", json!("from the old link"))).await;

    let mut new = Raw::connect(hub.addr).await;
    new.send_line(&link(3)).await;
    assert_eq!(new.value().await["type"], "LINK");
    old.publish("x", &json!("stale")).await;
    old.expect(common::error(
        "LINK: superseded, the broker of this link has linked again since; closing this one",
    ))
    .await;
    old.expect_closed().await;

    let mut late = Raw::connect(hub.addr).await;
    late.send_line(&link(2)).await;
    assert_eq!(late.value().await["type"], "LINK");
    // Superseded from the start: closed at the end of the read that brought its LINK.
    late.expect(common::error(
        "LINK: superseded, the broker of this link has linked again since; closing this one",
    ))
    .await;
    late.expect_closed().await;

    new.publish("x", &json!("from the new link")).await;
    sub.expect(message("x", json!("from the new link"))).await;
    sub.expect_silence().await;
    // The superseded links are closed (as the broker sees it, once their linger ends).
    let s = wait_for_stats(hub.addr, |s| s["links"] == 1).await;
    assert_eq!(s["link_superseded"], 1, "the stale one: {s}");
    assert_eq!(s["messages_in"], 3, "{s}");
}
