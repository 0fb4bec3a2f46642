//! Delivery at scale: who gets what, order and loss over many messages, many clients at once,
//! and the slow-consumer policy against the real `broker` program.

mod common;

use common::*;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

#[tokio::test]
async fn messages_reach_only_their_channels_subscribers() {
    let b = broker().await;
    let channels = ["red", "green", "blue"];
    let audience = [2usize, 3, 4];
    let published = [3u64, 5, 7];
    // (client, channels it is on)
    let mut clients = Vec::new();
    for (ch, n) in channels.iter().zip(audience) {
        for _ in 0..n {
            let mut c = Raw::connect(b.addr).await;
            c.subscribe(ch, 1).await;
            clients.push((c, vec![*ch]));
        }
    }
    let mut both = Raw::connect(b.addr).await;
    both.subscribe("red", 1).await;
    both.subscribe("blue", 2).await;
    clients.push((both, vec!["red", "blue"]));
    let mut idle = Raw::connect(b.addr).await;
    idle.subscribe("nobody-publishes-here", 1).await;
    clients.push((idle, vec!["nobody-publishes-here"]));

    // One publisher, channel after channel: once "blue" is delivered, all publishes are done.
    let mut publisher = Raw::connect(b.addr).await;
    for (ch, n) in channels.iter().zip(published) {
        for i in 0..n {
            publisher.publish(ch, &json!(format!("{ch}-{i}"))).await;
        }
    }
    for (c, on) in &mut clients {
        for (ch, n) in channels.iter().zip(published) {
            if on.contains(ch) {
                for i in 0..n {
                    c.expect(message(ch, json!(format!("{ch}-{i}")))).await;
                }
            }
        }
    }
    for (c, _) in &mut clients {
        c.ping().await; // nothing more for anyone
    }
    let s = publisher.stats().await;
    assert_eq!(s["messages_in"], 15);
    // 3 × (2 + 1) + 5 × 3 + 7 × (4 + 1)
    assert_eq!(s["messages_out"], 9 + 15 + 35);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_messages_arrive_in_order_without_loss() {
    const N: u64 = 20_000;
    let b = broker().await;
    let mut readers = JoinSet::new();
    for _ in 0..3 {
        let mut s = Raw::connect(b.addr).await;
        s.subscribe("seq", 1).await;
        readers.spawn(async move {
            for i in 0..N {
                let line = s.line().await;
                assert_eq!(
                    line,
                    format!(r#"{{"type":"MESSAGE","channel":"seq","message":{{"seq":{i}}}}}"#)
                );
            }
            s.ping().await;
        });
    }
    let mut publisher = Raw::connect(b.addr).await;
    let frames: Vec<String> = (0..N)
        .map(|i| {
            format!(r#"{{"command":"PUBLISH","args":{{"channel":"seq","message":{{"seq":{i}}}}}}}"#)
        })
        .collect();
    for chunk in frames.chunks(500) {
        publisher
            .send(format!("{}\n", chunk.join("\n")).as_bytes())
            .await;
    }
    while let Some(r) = readers.join_next().await {
        r.unwrap();
    }
    let s = publisher.stats().await;
    assert_eq!(s["messages_in"], N);
    assert_eq!(s["messages_out"], 3 * N);
    assert_eq!(s["slow_consumers"], 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_each_get_exactly_their_channel() {
    const CHANNELS: usize = 10;
    const PER_CHANNEL: usize = 100;
    const MESSAGES: u64 = 20;
    // Two sockets per client in this one process (ours and the broker's).
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let b = broker().await;
    let mut subscribers = Vec::new();
    for i in 0..CHANNELS * PER_CHANNEL {
        let ch = format!("ch{}", i % CHANNELS);
        let mut c = Raw::connect(b.addr).await;
        c.subscribe(&ch, 1).await;
        subscribers.push((c, ch));
    }
    let mut publishers = Vec::new();
    for _ in 0..CHANNELS {
        publishers.push(Raw::connect(b.addr).await);
    }
    // Everyone, plus the connection asking.
    let everyone = CHANNELS * PER_CHANNEL + CHANNELS + 1;
    let s = wait_for_stats(b.addr, |s| s["connections_current"] == everyone).await;
    assert_eq!(s["subscriptions"], CHANNELS * PER_CHANNEL);
    assert_eq!(s["channels"], CHANNELS);

    let mut tasks = JoinSet::new();
    for (i, mut p) in publishers.into_iter().enumerate() {
        tasks.spawn(async move {
            for n in 0..MESSAGES {
                p.publish(&format!("ch{i}"), &json!({"from": i, "n": n}))
                    .await;
            }
            p
        });
    }
    let mut readers = JoinSet::new();
    for (mut c, ch) in subscribers {
        readers.spawn(async move {
            let i: usize = ch[2..].parse().unwrap();
            for n in 0..MESSAGES {
                c.expect(message(&ch, json!({"from": i, "n": n}))).await;
            }
            c
        });
    }
    let mut done = Vec::new();
    while let Some(r) = readers.join_next().await {
        done.push(r.unwrap());
    }
    // Every publish has been fanned out; anything extra would now come before the PONG.
    for c in &mut done {
        c.ping().await;
    }
    let mut publishers = Vec::new();
    while let Some(p) = tasks.join_next().await {
        publishers.push(p.unwrap());
    }
    let s = publishers[0].stats().await;
    assert_eq!(s["messages_in"], CHANNELS as u64 * MESSAGES);
    assert_eq!(
        s["messages_out"],
        (CHANNELS * PER_CHANNEL) as u64 * MESSAGES
    );
    assert_eq!(s["slow_consumers"], 0);
    b.stop().await;
}

#[tokio::test]
async fn a_disconnected_client_leaves_no_subscriptions_behind() {
    let b = broker().await;
    let mut stays = Raw::connect(b.addr).await;
    stays.subscribe("a", 1).await;
    let mut leaves = Raw::connect(b.addr).await;
    leaves.subscribe("a", 1).await;
    leaves.subscribe("b", 2).await;
    leaves.subscribe("c", 3).await;
    // Leaves in the middle of a frame, too.
    let mut half = Raw::connect(b.addr).await;
    half.subscribe("d", 1).await;
    half.send(br#"{"command":"SUBSCRIBE","args":{"chan"#).await;
    let s = stays.stats().await;
    assert_eq!(
        (s["subscriptions"].clone(), s["channels"].clone()),
        (json!(5), json!(4))
    );

    drop(leaves);
    drop(half);
    let s = wait_for_stats(b.addr, |s| s["connections_current"] == 2).await;
    assert_eq!(
        (s["subscriptions"].clone(), s["channels"].clone()),
        (json!(1), json!(1))
    );
    stays.publish("a", &json!("still here")).await;
    stays.expect(message("a", json!("still here"))).await;
    drop(stays);
    wait_for_stats(b.addr, |s| {
        s["connections_current"] == 1 && s["subscriptions"] == 0 && s["channels"] == 0
    })
    .await;
    b.stop().await;
}

/// Message `i` of the flood: a sequence number and 4 KiB of padding.
fn frame(i: u64) -> String {
    format!(r#"{{"seq":{i},"pad":"{}"}}"#, "x".repeat(4096))
}

/// The exact line a subscriber gets for [`frame`]`(i)`.
fn line(i: u64) -> String {
    format!(
        r#"{{"type":"MESSAGE","channel":"flood","message":{}}}"#,
        frame(i)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_alone_is_disconnected_and_memory_stays_bounded() {
    const N: u64 = 25_000; // × 4 KiB ≈ 100 MiB through the broker
    const BATCH: u64 = 100; // ≈ 400 KiB: below --max-pending even if the reader lags a batch
    const RSS_LIMIT: u64 = 64 << 20;
    let broker = BrokerProcess::spawn(&["--max-pending", "1M"]);

    let mut slow = Raw::connect(broker.addr).await;
    slow.subscribe("flood", 1).await; // and never reads again until the end
    let mut normal = Raw::connect(broker.addr).await;
    normal.subscribe("flood", 1).await;
    let (progress, mut received) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        for i in 0..N {
            assert_eq!(normal.line().await, line(i), "message {i}");
            progress.send_replace(i + 1);
        }
        normal
    });

    let mut publisher = Raw::connect(broker.addr).await;
    let mut max_rss = broker.rss();
    for start in (0..N).step_by(BATCH as usize) {
        let end = (start + BATCH).min(N);
        let mut batch = String::new();
        for i in start..end {
            batch += &format!(
                r#"{{"command":"PUBLISH","args":{{"channel":"flood","message":{}}}}}"#,
                frame(i)
            );
            batch.push('\n');
        }
        publisher.send(batch.as_bytes()).await;
        // Flow control against the normal reader, so that it never lags by more than a batch.
        tokio::time::timeout(TIMEOUT, received.wait_for(|&n| n >= end))
            .await
            .unwrap_or_else(|_| panic!("normal subscriber stuck before {end}"))
            .expect("normal reader failed");
        max_rss = max_rss.max(broker.rss());
    }
    let mut normal = reader.await.unwrap();
    assert!(max_rss < RSS_LIMIT, "broker RSS reached {max_rss} bytes");

    // The broker disconnected the slow consumer by itself, before it read anything. Left:
    // the normal subscriber, the publisher and the connection asking.
    let s = wait_for_stats(broker.addr, |s| {
        s["slow_consumers"] != 0 && s["connections_current"] == 3
    })
    .await;
    assert_eq!(s["slow_consumers"], 1, "{s}");
    assert_eq!(s["subscriptions"], 1, "{s}");
    assert_eq!(s["messages_in"], N, "{s}");
    broker.wait_for_log("slow consumer disconnected").await;

    // What reached the slow socket is an in-order prefix of the stream, then the end.
    // An ERROR saying why may come last, if the socket took it before the broker gave up.
    let mut got = 0;
    let tail = loop {
        match slow.try_line().await {
            Ok(l) if l.starts_with(br#"{"type":"ERROR""#) => {
                let text = String::from_utf8(l).unwrap();
                assert!(text.contains("slow consumer"), "{text}");
                slow.expect_closed().await;
                break Vec::new();
            }
            Ok(l) => {
                assert_eq!(String::from_utf8(l).unwrap(), line(got), "message {got}");
                got += 1;
            }
            Err(End::Closed(tail)) => break tail,
        }
    };
    assert!(got < N, "the slow consumer got everything");
    assert!(line(got).as_bytes().starts_with(&tail));

    // The normal subscriber is still connected and nothing else is queued for it.
    normal.ping().await;
    assert!(broker.rss() < RSS_LIMIT);
}

/// A 20 MB burst published in one go, to a subscriber reading as fast as it can: past the
/// soft limit (8 MiB) for the moment it takes to read, under the hard one (32 MiB), so it is
/// never cut and gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_keeps_up_is_not_cut_by_a_burst() {
    const N: u64 = 5_000; // × 4 KiB ≈ 20 MiB
    let broker = BrokerProcess::spawn(&[]);
    let mut reader = Raw::connect(broker.addr).await;
    reader.subscribe("flood", 1).await;
    let reading = tokio::spawn(async move {
        for i in 0..N {
            assert_eq!(reader.line().await, line(i), "message {i}");
        }
        reader
    });
    let mut burst = String::new();
    for i in 0..N {
        burst += &format!(
            r#"{{"command":"PUBLISH","args":{{"channel":"flood","message":{}}}}}"#,
            frame(i)
        );
        burst.push('\n');
    }
    let mut publisher = Raw::connect(broker.addr).await;
    publisher.send(burst.as_bytes()).await;
    let mut reader = reading.await.unwrap();
    reader.ping().await;
    let s = publisher.stats().await;
    assert_eq!(
        (&s["slow_consumers"], &s["messages_out"]),
        (&json!(0), &json!(N))
    );
}

/// A subscriber that stops reading stays past the soft limit: once it has for
/// --pending-soft-for it is cut, and told why before the connection closes, even though it
/// never came near the hard limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stays_behind_is_cut_after_the_soft_limits_time_and_told_why() {
    let broker = BrokerProcess::spawn(&["--pending-soft", "256K", "--pending-soft-for", "300ms"]);
    let mut stalled = Raw::connect(broker.addr).await;
    stalled.subscribe("flood", 1).await; // and reads nothing until it has been cut
    let mut publisher = Raw::connect(broker.addr).await;
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        // 400 KiB a round, 20 rounds a second: past 256 KiB and the socket buffers within
        // the first rounds, and far from 32 MiB before 300 ms are up.
        let mut batch = String::new();
        for i in sent..sent + 100 {
            batch += &format!(
                r#"{{"command":"PUBLISH","args":{{"channel":"flood","message":{}}}}}"#,
                frame(i)
            );
            batch.push('\n');
        }
        publisher.send(batch.as_bytes()).await;
        sent += 100;
        if publisher.stats().await["slow_consumers"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never cut after {sent} messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = 0;
    loop {
        let l = stalled.line().await;
        if l.starts_with(r#"{"type":"ERROR""#) {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&l).unwrap(),
                error(
                    "slow consumer: more than 33554432 bytes waiting, or more than 262144 for \
                     300ms; disconnected"
                )
            );
            break;
        }
        assert_eq!(l, line(got), "message {got}");
        got += 1;
    }
    stalled.expect_closed().await;
    assert!(got < sent, "the cut subscriber got everything");
}
