//! loadgen against a hubbub that wants an AUTH (`--users`): with `--user` and
//! `--password-file` every connection it makes (subscribers in its worker processes,
//! publishers, the STATS probe) authenticates, and a wrong password is an error that says so.
//! The other protocols' credentials are checked byte for byte in `proto::credentials`' tests.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use common::{loadgen, tempdir, Run};

/// A hubbub whose one user, `bench`, may do everything.
async fn broker_with_a_user() -> hubbub::RunningBroker {
    let hash = hubbub::auth::hash_password("bench-pw").unwrap();
    let users = format!(
        "[users.bench]\npassword = \"{hash}\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\n\
         stats = true\n"
    );
    hubbub::start(hubbub::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        users: Some(Arc::new(hubbub::auth::Users::parse(&users).unwrap())),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// `loadgen latency` against `target` as `bench` with `password`, on a blocking thread.
async fn latency(target: String, password: &str, name: &str) -> (Run, std::path::PathBuf) {
    let dir = tempdir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let (pw, out) = (
        password_file.to_str().unwrap().to_string(),
        dir.join("report").to_str().unwrap().to_string(),
    );
    let run = tokio::task::spawn_blocking(move || {
        loadgen(&[
            "latency",
            "--json",
            "--target",
            &target,
            "--user",
            "bench",
            "--password-file",
            &pw,
            "--subscribers",
            "10",
            "--publishers",
            "1",
            "--rate",
            "200",
            "--warmup",
            "200ms",
            "--duration",
            "1s",
            "--slo-p99",
            "2s",
            "--out",
            &out,
        ])
    })
    .await
    .unwrap();
    (run, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_authenticates_and_everything_is_delivered() {
    let broker = broker_with_a_user().await;
    let (run, dir) = latency(broker.addr.to_string(), "bench-pw", "auth-ok").await;
    run.expect_ok();
    let s: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.transcript()));
    assert_eq!(s["steps"][0]["delivered"], 200 * 10, "{}", run.transcript());
    // The version is asked as the user too.
    assert_eq!(s["provenance"]["brokers"][0]["version"], "0.1.0");
    // Nothing was refused: no connection sent a command before its AUTH, none failed one.
    assert_eq!(broker.stats.auth_failures.load(Relaxed), 0);
    assert_eq!(broker.stats.permission_denials.load(Relaxed), 0);
    broker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_error_that_says_so() {
    let broker = broker_with_a_user().await;
    let (run, dir) = latency(broker.addr.to_string(), "wrong", "auth-wrong").await;
    assert_ne!(run.code(), Some(0), "{}", run.transcript());
    assert!(
        run.stderr
            .contains("replied with an error: AUTH: wrong user or password"),
        "{}",
        run.transcript()
    );
    assert!(broker.stats.auth_failures.load(Relaxed) >= 1);
    broker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn credentials_a_protocol_cannot_carry_are_refused_before_anything_starts() {
    let dir = tempdir("auth-flags");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "t0k\n").unwrap();
    let run = loadgen(&[
        "latency",
        "--proto",
        "redis",
        "--target",
        "127.0.0.1:9",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_ne!(run.code(), Some(0));
    assert!(
        run.stderr
            .contains("--token-file: redis has no tokens (NATS has)"),
        "{}",
        run.transcript()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
