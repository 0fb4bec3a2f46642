//! Authentication and permissions (`--users`, the AUTH extension): without a users file
//! nothing changes; with one, nothing but PING and AUTH before an AUTH succeeds, wrong
//! passwords and denied channels refused with exact ERRORs and counted, and links that need
//! the link permission.
//!
//! The throttle's delays are asserted on a paused clock in `hubbub::auth`'s unit tests; here
//! only what a client sees, on real sockets.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use clap::Parser;
use common::{broker, broker_with, error, message, Config, Raw, RunningBroker};
use hubbub::auth::Users;
use hubbub::protocol::Secret;
use serde_json::{json, Value};

/// An argon2id hash at the lowest cost (8 KiB, one pass): the tests check real hashes without
/// spending the default's milliseconds on each.
fn hash(password: &str) -> String {
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string()
}

/// alice may do everything; bob may subscribe to news.* and publish to chat; leaf may link;
/// mallory may publish and subscribe everywhere but not link.
fn users_file() -> String {
    format!(
        r#"
[users.alice]
password = "{}"
publish = ["*"]
subscribe = ["*"]
stats = true

[users.bob]
password = "{}"
subscribe = ["news.*"]
publish = ["chat"]

[users.leaf]
password = "{}"
publish = ["*"]
subscribe = ["*"]
link = true

[users.mallory]
password = "{}"
publish = ["*"]
subscribe = ["*"]
"#,
        hash("alice-pw"),
        hash("bob-pw"),
        hash("leaf-pw"),
        hash("mallory-pw"),
    )
}

fn with_users() -> Config {
    Config {
        users: Some(Arc::new(Users::parse(&users_file()).unwrap())),
        ..Default::default()
    }
}

fn auth_cmd(user: &str, password: &str) -> String {
    json!({"command": "AUTH", "args": {"user": user, "password": password}}).to_string()
}

/// Authenticates `c` and asserts the exact confirmation.
async fn auth(c: &mut Raw, user: &str, password: &str) {
    c.send_line(&auth_cmd(user, password)).await;
    c.expect(json!({"type": "AUTH", "user": user})).await;
}

/// A connection authenticated as `user`.
async fn client(addr: SocketAddr, user: &str) -> Raw {
    let mut c = Raw::connect(addr).await;
    auth(&mut c, user, &format!("{user}-pw")).await;
    c
}

/// STATS, asked as alice (who may).
async fn stats(addr: SocketAddr) -> Value {
    client(addr, "alice").await.stats().await
}

/// Polls STATS as alice until `done` holds.
async fn wait_for(addr: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let mut c = client(addr, "alice").await;
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    loop {
        let s = c.stats().await;
        if done(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "last STATS: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn without_a_users_file_auth_is_refused_and_nothing_else_changes() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr).await;
    c.send_line(&auth_cmd("alice", "alice-pw")).await;
    c.expect(error(
        "AUTH: authentication is not configured on this broker",
    ))
    .await;
    c.subscribe("news", 1).await;
    c.publish("news", &json!("hi")).await;
    c.expect(message("news", json!("hi"))).await;
    let s = c.stats().await;
    assert_eq!(s["auth_failures"], 0);
    assert_eq!(s["permission_denials"], 0);
    assert_eq!(s["protocol_errors"], 1);
}

#[tokio::test]
async fn before_auth_only_ping_and_auth_are_allowed() {
    let b = broker_with(with_users()).await;
    let mut c = Raw::connect(b.addr).await;
    c.ping().await;
    c.send_line(&common::subscribe_cmd("news")).await;
    c.expect(error(
        "SUBSCRIBE: authenticate first (send AUTH and wait for its reply)",
    ))
    .await;
    c.publish("news", &json!(1)).await;
    c.expect(error(
        "PUBLISH: authenticate first (send AUTH and wait for its reply)",
    ))
    .await;
    for verb in ["STATS", "LINK"] {
        c.send_line(&json!({ "command": verb }).to_string()).await;
        c.expect(error(&format!(
            "{verb}: authenticate first (send AUTH and wait for its reply)"
        )))
        .await;
    }
    // Bad input is still bad input, before or after AUTH.
    c.send_line("{nope").await;
    c.expect(error(
        "frame is not valid JSON: unexpected character at column 2",
    ))
    .await;
    let s = stats(b.addr).await;
    assert_eq!(s["permission_denials"], 4);
    assert_eq!(s["auth_failures"], 0);
    assert_eq!(s["subscriptions"], 0);
}

#[tokio::test]
async fn an_authenticated_client_works_exactly_as_before() {
    let b = broker_with(with_users()).await;
    let mut sub = client(b.addr, "alice").await;
    let mut publisher = client(b.addr, "alice").await;
    sub.subscribe("news", 1).await;
    publisher.publish("news", &json!({"n": 1})).await;
    sub.expect(message("news", json!({"n": 1}))).await;
    sub.unsubscribe("news", 0).await;
    sub.ping().await;
    // One AUTH per connection.
    sub.send_line(&auth_cmd("bob", "bob-pw")).await;
    sub.expect(error("AUTH: already authenticated as \"alice\""))
        .await;
    let s = sub.stats().await;
    assert_eq!(s["permission_denials"], 0);
    assert_eq!(s["auth_failures"], 0);
}

#[tokio::test]
async fn a_wrong_password_or_user_is_refused_and_counted() {
    let b = broker_with(with_users()).await;
    let mut c = Raw::connect(b.addr).await;
    c.send_line(&auth_cmd("alice", "wrong")).await;
    c.expect(error("AUTH: wrong user or password")).await;
    // An unknown user gets the same answer: the ERROR does not tell which names exist. This
    // second failure from the address waits out the throttle's first delay (asserted on a
    // paused clock in hubbub::auth's tests) and is then answered all the same.
    c.send_line(&auth_cmd("nobody", "alice-pw")).await;
    c.expect(error("AUTH: wrong user or password")).await;
    c.send_line(&common::subscribe_cmd("news")).await;
    c.expect(error(
        "SUBSCRIBE: authenticate first (send AUTH and wait for its reply)",
    ))
    .await;
    // The right password still works on the same connection, after its wait.
    auth(&mut c, "alice", "alice-pw").await;
    c.subscribe("news", 1).await;
    let s = c.stats().await;
    assert_eq!(s["auth_failures"], 2);
    assert_eq!(s["permission_denials"], 1);
}

#[tokio::test]
async fn commands_sent_while_an_auth_is_checked_are_refused() {
    let b = broker_with(with_users()).await;
    let mut c = Raw::connect(b.addr).await;
    c.send_line(&auth_cmd("alice", "wrong")).await;
    c.expect(error("AUTH: wrong user or password")).await;
    // After a failure the next AUTH waits 100 ms before it is checked: the commands sent with
    // it in one write are handled long before its answer.
    let burst = format!(
        "{}\n{}\n{}\n",
        auth_cmd("alice", "alice-pw"),
        common::subscribe_cmd("news"),
        auth_cmd("alice", "alice-pw")
    );
    c.send(burst.as_bytes()).await;
    c.expect(error(
        "SUBSCRIBE: authenticate first (send AUTH and wait for its reply)",
    ))
    .await;
    c.expect(error(
        "AUTH: the previous AUTH is still being checked; wait for its reply",
    ))
    .await;
    c.expect(json!({"type": "AUTH", "user": "alice"})).await;
    c.subscribe("news", 1).await;
}

#[tokio::test]
async fn channels_outside_a_users_patterns_are_denied_for_publish_and_subscribe_apart() {
    let b = broker_with(with_users()).await;
    let mut bob = client(b.addr, "bob").await;
    let mut alice = client(b.addr, "alice").await;
    // bob subscribes to news.* only.
    bob.subscribe("news.sport", 1).await;
    bob.send_line(&common::subscribe_cmd("secret")).await;
    bob.expect(error(
        "SUBSCRIBE: user \"bob\" may not subscribe to \"secret\"",
    ))
    .await;
    bob.send_line(&common::subscribe_cmd("news")).await;
    bob.expect(error(
        "SUBSCRIBE: user \"bob\" may not subscribe to \"news\"",
    ))
    .await;
    // bob publishes to chat only; a denied PUBLISH is not relayed.
    alice.subscribe("news.sport", 1).await;
    alice.subscribe("chat", 2).await;
    bob.publish("news.sport", &json!("fake")).await;
    bob.expect(error(
        "PUBLISH: user \"bob\" may not publish to \"news.sport\"",
    ))
    .await;
    bob.publish("chat", &json!("hello")).await;
    alice.expect(message("chat", json!("hello"))).await;
    alice.publish("news.sport", &json!("goal")).await;
    bob.expect(message("news.sport", json!("goal"))).await;
    alice.expect(message("news.sport", json!("goal"))).await;
    // Without the stats permission, no STATS; UNSUBSCRIBE is always allowed.
    bob.send_line(r#"{"command":"STATS"}"#).await;
    bob.expect(error("STATS: user \"bob\" may not ask for STATS"))
        .await;
    bob.unsubscribe("secret", 1).await;
    let s = alice.stats().await;
    assert_eq!(s["permission_denials"], 4);
    assert_eq!(s["messages_in"], 2);
    assert_eq!(s["subscriptions"], 3);
}

async fn leaf_as(hub: SocketAddr, user: &str, password: &str) -> RunningBroker {
    broker_with(Config {
        upstream: Some(hub.into()),
        name: Some(format!("leaf-of-{user}")),
        upstream_user: Some(user.into()),
        upstream_password: Some(Secret(password.to_owned().into())),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_client_without_the_link_permission_cannot_become_a_link() {
    let hub = broker_with(with_users()).await;
    let mut c = client(hub.addr, "mallory").await;
    c.send_line(r#"{"command":"LINK","args":{"name":"x"}}"#)
        .await;
    c.expect(error("LINK: user \"mallory\" may not link")).await;
    // Still an ordinary client: it gets its own messages back (a link would not).
    c.subscribe("x", 1).await;
    c.publish("x", &json!(1)).await;
    c.expect(message("x", json!(1))).await;
    let s = stats(hub.addr).await;
    assert_eq!(s["links"], 0);
    assert_eq!(s["permission_denials"], 1);
}

#[tokio::test]
async fn a_leaf_without_the_link_permission_is_refused_and_one_with_it_links() {
    let hub = broker_with(with_users()).await;
    let refused = leaf_as(hub.addr, "mallory", "mallory-pw").await;
    let wrong = leaf_as(hub.addr, "leaf", "not-the-password").await;
    let linked = leaf_as(hub.addr, "leaf", "leaf-pw").await;
    let mut sub = Raw::connect(linked.addr).await;
    sub.subscribe("x", 1).await;
    // The refused leaves report it and wait (5 s at first) before they knock again.
    let s = common::wait_for_stats(refused.addr, |s| s["upstream"]["refused"] == 1).await;
    assert_eq!(s["upstream"]["connected"], false);
    common::wait_for_stats(wrong.addr, |s| s["upstream"]["refused"] == 1).await;
    common::wait_for_stats(linked.addr, |s| s["upstream"]["connected"] == true).await;
    let s = wait_for(hub.addr, |s| s["links"] == 1 && s["subscriptions"] == 1).await;
    assert_eq!(s["permission_denials"], 1);
    assert_eq!(s["auth_failures"], 1);
    // Messages cross the authenticated link.
    client(hub.addr, "alice")
        .await
        .publish("x", &json!("down"))
        .await;
    sub.expect(message("x", json!("down"))).await;
}

#[tokio::test]
async fn a_leaf_without_credentials_at_a_hub_with_users_is_refused() {
    let hub = broker_with(with_users()).await;
    let leaf = broker_with(Config {
        upstream: Some(hub.addr.into()),
        ..Default::default()
    })
    .await;
    let s = common::wait_for_stats(leaf.addr, |s| s["upstream"]["refused"] == 1).await;
    assert_eq!(s["upstream"]["connected"], false);
    let s = stats(hub.addr).await;
    assert_eq!(s["links"], 0);
    assert_eq!(s["permission_denials"], 1, "its LINK, and nothing after it");
}

#[test]
fn the_users_flag_reads_the_file_and_refuses_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("hubbub-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("users.toml");
    std::fs::write(&good, users_file()).unwrap();
    let opts =
        hubbub::tools::broker::Opts::try_parse_from(["broker", "--users", good.to_str().unwrap()])
            .unwrap();
    let users = opts.config.users.expect("read");
    assert!(users.find("alice").is_some());
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[users.x]\npassword = \"plain\"\n").unwrap();
    let e =
        hubbub::tools::broker::Opts::try_parse_from(["broker", "--users", bad.to_str().unwrap()])
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("user \"x\": \"password\" is not an argon2 hash in PHC form"),
        "{e}"
    );
    // The password of --upstream-user comes from a file, and both flags go together.
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let opts = hubbub::tools::broker::Opts::try_parse_from([
        "broker",
        "--upstream-user",
        "leaf",
        "--upstream-password-file",
        pw.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(opts.config.upstream_password, Some(Secret("s3cret".into())));
    assert!(!format!("{:?}", opts.config).contains("s3cret"));
    assert!(
        hubbub::tools::broker::Opts::try_parse_from(["broker", "--upstream-user", "leaf"]).is_err()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hash_password_hashes_the_first_line_of_its_input() {
    let mut out = Vec::new();
    hubbub::tools::broker::hash_password(&b"correct horse\nignored\n"[..], &mut out).unwrap();
    let hash = String::from_utf8(out).unwrap();
    let users = Users::parse(&format!("[users.u]\npassword = \"{}\"\n", hash.trim())).unwrap();
    assert!(users.verify(users.find("u"), "correct horse"));
    assert!(!users.verify(users.find("u"), "correct horse\n"));
    let e = hubbub::tools::broker::hash_password(&b"\n"[..], Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "the password is empty");
}

/// The `broker` program with `args`, logging at debug level.
fn broker_process(args: &[&str]) -> hubbub::launch::BrokerProcess {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_broker"));
    command
        .args(["--stats-interval", "0"])
        .args(args)
        .env("RUST_LOG", "debug");
    hubbub::launch::BrokerProcess::start(command).expect("the broker starts")
}

/// Waits until the broker's log holds `text`.
fn wait_logged(b: &hubbub::launch::BrokerProcess, text: &str) {
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while !b.logged(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in {}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn listening_beyond_loopback_without_a_users_file_is_warned_about() {
    const WARNING: &str = "listening beyond loopback without a users file";
    let open = broker_process(&["--listen", "0.0.0.0:0"]);
    wait_logged(&open, WARNING);
    let dir = std::env::temp_dir().join(format!("hubbub-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.toml");
    std::fs::write(&users, users_file()).unwrap();
    let guarded = broker_process(&["--listen", "0.0.0.0:0", "--users", users.to_str().unwrap()]);
    let local = broker_process(&["--listen", "127.0.0.1:0"]);
    for quiet in [&guarded, &local] {
        // A connection is logged after whatever the broker logs as it starts listening.
        let port = quiet.addr.port();
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        wait_logged(quiet, "connected");
        assert!(!quiet.logged(WARNING), "{}", quiet.log());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
