//! Helpers shared by the integration tests: brokers (in-process or as a child process), a raw
//! line-based socket that asserts exact replies, and a process's resident memory.
//!
//! Timeouts here only keep a broken test from hanging; no test asserts how fast anything is.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use hubbub::{Config, RunningBroker};

/// Upper bound for anything that should happen; hit only when a test is broken.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(200);

/// A broker on a free port of 127.0.0.1, on the test's runtime.
pub async fn broker() -> RunningBroker {
    broker_with(Config::default()).await
}

/// A broker with `config`, listening on a free port of 127.0.0.1.
pub async fn broker_with(config: Config) -> RunningBroker {
    hubbub::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stats_interval: Duration::ZERO,
        ..config
    })
    .await
    .expect("broker starts")
}

/// `{"command":"SUBSCRIBE","args":{"channel":...}}` and friends, as one line.
pub fn subscribe_cmd(channel: &str) -> String {
    json!({"command": "SUBSCRIBE", "args": {"channel": channel}}).to_string()
}

pub fn unsubscribe_cmd(channel: &str) -> String {
    json!({"command": "UNSUBSCRIBE", "args": {"channel": channel}}).to_string()
}

pub fn publish_cmd(channel: &str, message: &Value) -> String {
    json!({"command": "PUBLISH", "args": {"channel": channel, "message": message}}).to_string()
}

pub fn ack(kind: &str, channel: &str, count: u64) -> Value {
    json!({"type": kind, "channel": channel, "count": count})
}

pub fn message(channel: &str, message: Value) -> Value {
    json!({"type": "MESSAGE", "channel": channel, "message": message})
}

pub fn error(text: &str) -> Value {
    json!({"type": "ERROR", "message": text})
}

/// A client that speaks bytes: writes exactly what it is given, reads one line at a time.
pub struct Raw {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
}

/// What a read ended with, when it did not end with a line.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The broker closed the connection (EOF or reset); carries any unterminated tail.
    Closed(Vec<u8>),
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        Raw {
            read,
            write,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Writes `bytes` exactly as given, in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.expect("write");
    }

    /// Writes `text` followed by `\n`, in one write.
    pub async fn send_line(&mut self, text: &str) {
        self.send(format!("{text}\n").as_bytes()).await;
    }

    /// The next line (without `\n`), or how the connection ended. Panics after [`TIMEOUT`].
    pub async fn try_line(&mut self) -> Result<Vec<u8>, End> {
        tokio::time::timeout(TIMEOUT, self.read_line())
            .await
            .expect("no line from the broker within the timeout")
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, End> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 1;
                return Ok(line);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            // On the heap: a stack buffer would make every future holding a read huge.
            self.buf.reserve(64 * 1024);
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(End::Closed(std::mem::take(&mut self.buf))),
                Ok(_) => {}
            }
        }
    }

    /// The next line as text. Panics if the connection closes first.
    pub async fn line(&mut self) -> String {
        match self.try_line().await {
            Ok(line) => String::from_utf8(line).expect("broker sent UTF-8"),
            Err(end) => panic!("expected a line, connection ended: {end:?}"),
        }
    }

    /// The next line, parsed as JSON.
    pub async fn value(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("broker sent {line:?}: {e}"))
    }

    /// Asserts that the next line is exactly `expected` as JSON (key order aside).
    pub async fn expect(&mut self, expected: Value) {
        assert_eq!(self.value().await, expected);
    }

    /// Asserts that nothing arrives within [`QUIET`].
    pub async fn expect_silence(&mut self) {
        if let Ok(got) = tokio::time::timeout(QUIET, self.read_line()).await {
            panic!("expected silence, got {got:?}");
        }
    }

    /// Asserts that the broker closes the connection with no further line.
    pub async fn expect_closed(&mut self) {
        match self.try_line().await {
            Err(End::Closed(tail)) => assert!(tail.is_empty(), "unterminated tail {tail:?}"),
            Ok(line) => panic!("expected the connection to close, got {line:?}"),
        }
    }

    /// Subscribes and asserts the exact acknowledgement.
    pub async fn subscribe(&mut self, channel: &str, count: u64) {
        self.send_line(&subscribe_cmd(channel)).await;
        self.expect(ack("SUBSCRIBE", channel, count)).await;
    }

    pub async fn unsubscribe(&mut self, channel: &str, count: u64) {
        self.send_line(&unsubscribe_cmd(channel)).await;
        self.expect(ack("UNSUBSCRIBE", channel, count)).await;
    }

    pub async fn publish(&mut self, channel: &str, msg: &Value) {
        self.send_line(&publish_cmd(channel, msg)).await;
    }

    /// PING, and the very next line must be PONG: proves nothing else was queued before it.
    pub async fn ping(&mut self) {
        self.send_line(r#"{"command":"PING"}"#).await;
        self.expect(json!({"type": "PONG"})).await;
    }

    /// The STATS reply (the next line must be it).
    pub async fn stats(&mut self) -> Value {
        self.send_line(r#"{"command":"STATS"}"#).await;
        let v = self.value().await;
        assert_eq!(v["type"], "STATS", "{v}");
        v
    }
}

/// Polls STATS on a connection of its own until `done` holds; returns that reply.
/// Only for state the broker reaches asynchronously (a disconnect being noticed).
pub async fn wait_for_stats(addr: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let mut c = Raw::connect(addr).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let s = c.stats().await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "STATS never reached the expected state; last: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `broker` program running as a child process, started through the project's one way
/// of starting a broker ([`hubbub::launch`]); killed when dropped.
pub struct BrokerProcess(pub hubbub::launch::BrokerProcess);

impl std::ops::Deref for BrokerProcess {
    type Target = hubbub::launch::BrokerProcess;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl BrokerProcess {
    /// Starts `broker --listen 127.0.0.1:0 <args>` and waits until it listens.
    pub fn spawn(args: &[&str]) -> BrokerProcess {
        Self::spawn_with_nofile(args, None)
    }

    /// Like [`BrokerProcess::spawn`], with the broker's open-files limit (soft and hard) set
    /// to `nofile`, so that it cannot raise it and runs out of descriptors early.
    pub fn spawn_with_nofile(args: &[&str], nofile: Option<u64>) -> BrokerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
        command
            .args(["--listen", "127.0.0.1:0", "--stats-interval", "0"])
            .args(args)
            .env("RUST_LOG", "info");
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    rlimit::setrlimit(rlimit::Resource::NOFILE, n, n)?;
                    Ok(())
                });
            }
        }
        BrokerProcess(
            hubbub::launch::BrokerProcess::start(command).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// Sends SIGTERM and waits (up to the timeout) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.0
            .terminate(TIMEOUT)
            .expect("the broker ignored SIGTERM")
    }

    /// Resident memory of the broker process, in bytes.
    pub fn rss(&self) -> u64 {
        rss_bytes(self.pid())
    }

    /// Waits until the broker has logged a line containing `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !self.logged(text) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker never logged {text:?}; stderr:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `VmRSS` of process `pid`, from /proc/PID/status, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    assert!(line.ends_with("kB"), "{line}");
    kb * 1024
}
