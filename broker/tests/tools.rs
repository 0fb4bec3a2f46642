//! The programs run as processes, the way a person runs them: `broker`, then `client`,
//! `publisher` and `chat` against it, checking what each prints, byte for byte.
//!
//! No test sleeps or asserts timing: before anything is published the test waits for the
//! subscriber's acknowledgement on stdout, so every outcome is determined. Every wait has a
//! generous timeout so that a bug fails the test instead of hanging it, and a failing test
//! prints each process's stdout and stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest wait for any one line or exit. Only reached when something is broken.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A program under test. Killed when dropped; on a failing test, prints what it said.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Everything written to stdout and stderr so far, for failure reports.
    transcript: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(bin: &str, args: &[&str]) -> Self {
        let name = format!("{} {}", bin_name(bin), args.join(" "));
        let mut child = Command::new(bin)
            .args(args)
            // Keep failure output short and the broker's start-up line present.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
        let transcript = Arc::new(Mutex::new(String::new()));
        let stdout = read_lines(child.stdout.take().expect("stdout"), "out", &transcript);
        let stderr = read_lines(child.stderr.take().expect("stderr"), "err", &transcript);
        Self {
            name,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            transcript,
        }
    }

    /// The next line on stdout; fails the test on a timeout or end of output.
    fn next_line(&self) -> String {
        match self.stdout.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no line on stdout in time", self.name),
            Err(RecvTimeoutError::Disconnected) => panic!("{}: stdout ended", self.name),
        }
    }

    /// Asserts the next lines on stdout, in order and exactly.
    fn expect_lines(&self, expected: &[&str]) {
        for want in expected {
            assert_eq!(
                &self.next_line(),
                want,
                "{}: unexpected stdout line",
                self.name
            );
        }
    }

    /// Types a line on the program's stdin.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot write to stdin: {e}", self.name));
    }

    /// Waits for the program to exit on its own (stdin stays open: the program must not need
    /// it closed).
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running after {TIMEOUT:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit and returns the rest of stdout and all of stderr not yet read.
    fn finish(&mut self) -> (ExitStatus, Vec<String>, String) {
        let status = self.wait();
        // The reader threads end at end of file, which follows the exit.
        let out = drain(&self.stdout);
        let err = drain(&self.stderr).join("\n");
        (status, out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let transcript = self.transcript.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- {} ---\n{transcript}", self.name);
        }
    }
}

fn bin_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Forwards each line of `from` to the returned channel, and records it in `transcript`.
fn read_lines(
    from: impl Read + Send + 'static,
    label: &'static str,
    transcript: &Arc<Mutex<String>>,
) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let transcript = Arc::clone(transcript);
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut t) = transcript.lock() {
                t.push_str(&format!("{label}| {line}\n"));
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line still to come on a stream whose writer has exited.
fn drain(lines: &Receiver<String>) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        match lines.recv_timeout(TIMEOUT) {
            Ok(line) => all.push(line),
            Err(RecvTimeoutError::Disconnected) => return all,
            Err(RecvTimeoutError::Timeout) => panic!("output did not end after exit"),
        }
    }
}

/// A `broker --listen 127.0.0.1:0`, started the project's one way ([`hubbub::launch`]).
struct Broker {
    addr: String,
    _proc: hubbub::launch::BrokerProcess,
}

impl Broker {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
        command
            .args(["--listen", "127.0.0.1:0", "--stats-interval", "0"])
            .args(extra);
        let proc = hubbub::launch::BrokerProcess::start(command).unwrap_or_else(|e| panic!("{e}"));
        Self {
            addr: proc.addr.to_string(),
            _proc: proc,
        }
    }

    fn run(&self, bin: &str, args: &[&str]) -> Proc {
        let mut all = vec!["--server", &self.addr];
        all.extend_from_slice(args);
        Proc::spawn(bin, &all)
    }
}

const CLIENT: &str = env!("CARGO_BIN_EXE_client");
const PUBLISHER: &str = env!("CARGO_BIN_EXE_publisher");
const CHAT: &str = env!("CARGO_BIN_EXE_chat");

/// Runs `publisher` to completion and checks it succeeded.
fn publish(broker: &Broker, args: &[&str]) {
    let mut publisher = broker.run(PUBLISHER, args);
    let (status, _, err) = publisher.finish();
    assert!(status.success(), "publisher failed: {status}\n{err}");
}

#[test]
fn client_prints_acks_then_what_the_publisher_sends() {
    let broker = Broker::start();
    let mut client = broker.run(CLIENT, &["--count", "4", "CH1", "CH2"]);
    client.expect_lines(&["subscribed to CH1 (count 1)", "subscribed to CH2 (count 2)"]);

    publish(&broker, &["--interval", "50ms", "--count", "3", "CH1"]);
    client.expect_lines(&[
        r#"[CH1] {"seq":1,"text":"hello"}"#,
        r#"[CH1] {"seq":2,"text":"hello"}"#,
        r#"[CH1] {"seq":3,"text":"hello"}"#,
    ]);
    // The three are in; a message on the second channel is the fourth and last.
    publish(&broker, &["--count", "1", "--text", "bye", "CH2"]);

    let (status, rest, err) = client.finish();
    assert!(status.success(), "client failed: {status}\n{err}");
    assert_eq!(rest, [r#"[CH2] {"seq":1,"text":"bye"}"#]);
}

/// `--threads 1` (one runtime worker) serves exactly as the default does.
#[test]
fn a_single_threaded_broker_delivers_the_same() {
    let broker = Broker::start_with(&["--threads", "1"]);
    let mut client = broker.run(CLIENT, &["--count", "3", "CH1"]);
    client.expect_lines(&["subscribed to CH1 (count 1)"]);
    publish(&broker, &["--interval", "10ms", "--count", "3", "CH1"]);
    let (status, rest, err) = client.finish();
    assert!(status.success(), "client failed: {status}\n{err}");
    assert_eq!(
        rest,
        [1, 2, 3].map(|n| format!(r#"[CH1] {{"seq":{n},"text":"hello"}}"#))
    );
}

#[test]
fn client_raw_prints_the_brokers_frames_exactly() {
    let broker = Broker::start();
    let mut client = broker.run(CLIENT, &["--raw", "--count", "1", "CH1"]);
    client.expect_lines(&[r#"{"type":"SUBSCRIBE","channel":"CH1","count":1}"#]);

    publish(&broker, &["--count", "1", "--text", "tab\there", "CH1"]);

    let (status, rest, err) = client.finish();
    assert!(status.success(), "client failed: {status}\n{err}");
    assert_eq!(
        rest,
        [r#"{"type":"MESSAGE","channel":"CH1","message":{"seq":1,"text":"tab\there"}}"#]
    );
}

#[test]
fn publisher_reports_each_publish_and_exits_after_count() {
    let broker = Broker::start();
    let mut publisher = broker.run(PUBLISHER, &["--interval", "1ms", "--count", "2", "a", "b"]);
    let (status, out, err) = publisher.finish();
    assert!(status.success(), "publisher failed: {status}\n{err}");
    assert_eq!(
        out,
        [
            "published #1 to a",
            "published #1 to b",
            "published #2 to a",
            "published #2 to b"
        ]
    );
}

#[test]
fn chat_between_two_people_across_channels() {
    let broker = Broker::start();
    let mut alice = broker.run(CHAT, &["--nick", "alice", "room"]);
    let mut bob = broker.run(CHAT, &["--nick", "bob", "room"]);
    for (who, person) in [("alice", &alice), ("bob", &bob)] {
        person.expect_lines(&[
            &format!("connected as {who}; type to talk, /join CH, /leave CH, /quit"),
            "* joined room",
        ]);
    }

    // Alice's line reaches bob, and alice too: she is subscribed like anyone else.
    alice.type_line("hello bob, tab\there");
    bob.expect_lines(&["[room] alice: hello bob, tab\there"]);
    alice.expect_lines(&["[room] alice: hello bob, tab\there"]);
    bob.type_line("hi alice");
    alice.expect_lines(&["[room] bob: hi alice"]);
    bob.expect_lines(&["[room] bob: hi alice"]);

    // A second channel: lines go to the channel joined last.
    bob.type_line("/join other");
    bob.expect_lines(&["* joined other"]);
    alice.type_line("/join other");
    alice.expect_lines(&["* joined other"]);
    alice.type_line("over here");
    bob.expect_lines(&["[other] alice: over here"]);
    alice.expect_lines(&["[other] alice: over here"]);

    // Leaving the current channel sends lines to the one left over.
    alice.type_line("/leave other");
    alice.expect_lines(&["* left other"]);
    alice.type_line("back in the room");
    bob.expect_lines(&["[room] alice: back in the room"]);
    alice.expect_lines(&["[room] alice: back in the room"]);

    // Bob leaves the room: he gets nothing more from it. Alice's next line, on `other`,
    // reaches him right after, which shows the one in between was not delivered to him.
    bob.type_line("/leave room");
    bob.expect_lines(&["* left room"]);
    alice.type_line("anyone?");
    alice.expect_lines(&["[room] alice: anyone?"]);
    alice.type_line("/join other");
    alice.expect_lines(&["* joined other"]);
    alice.type_line("found you");
    bob.expect_lines(&["[other] alice: found you"]);
    alice.expect_lines(&["[other] alice: found you"]);

    // `/quit` ends the program at once, with stdin still open.
    for person in [&mut alice, &mut bob] {
        person.type_line("/quit");
        let (status, rest, err) = person.finish();
        assert!(status.success(), "chat failed: {status}\n{err}");
        assert!(rest.is_empty(), "unexpected output: {rest:?}");
    }
}

/// A local port with nothing listening on it.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    addr.to_string()
}

fn assert_fails_cleanly(mut proc: Proc, expected: &str) {
    let (status, _, err) = proc.finish();
    assert!(!status.success(), "{}: exited with {status}", proc.name);
    assert!(err.contains(expected), "{}: stderr was\n{err}", proc.name);
    assert!(
        !err.contains("panicked"),
        "{}: stderr was\n{err}",
        proc.name
    );
}

#[test]
fn every_tool_says_when_no_broker_is_there() {
    let addr = closed_port();
    for (bin, args) in [
        (CLIENT, &["CH1"][..]),
        (PUBLISHER, &["--count", "1", "CH1"][..]),
        (CHAT, &["--nick", "alice", "room"][..]),
    ] {
        let mut all = vec!["--server", addr.as_str()];
        all.extend_from_slice(args);
        let mut proc = Proc::spawn(bin, &all);
        let (status, _, err) = proc.finish();
        assert!(!status.success(), "{}: exited with {status}", proc.name);
        assert!(
            err.contains(&format!("could not connect to the broker at {addr}")),
            "{}: stderr was\n{err}",
            proc.name
        );
        // The cause is told once, under "Caused by", not also inside the message.
        assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Each program opens its `--help` with what it is; `chat` lists what can be typed; the
/// broker's help holds no measured figures (they belong in reports, and go stale).
#[test]
fn each_program_says_what_it_is() {
    let first_line = |bin: &str| {
        let out = Command::new(bin).arg("--help").output().expect("runs");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).expect("UTF-8");
        (text.lines().next().unwrap_or_default().to_string(), text)
    };
    let broker = env!("CARGO_BIN_EXE_broker");
    let firsts: Vec<String> = [broker, CLIENT, PUBLISHER, CHAT]
        .iter()
        .map(|b| first_line(b).0)
        .collect();
    for (i, a) in firsts.iter().enumerate() {
        assert!(!a.is_empty());
        assert!(!firsts[..i].contains(a), "two programs open with {a:?}");
    }
    let (_, chat) = first_line(CHAT);
    for command in ["/join CH", "/leave CH", "/quit"] {
        assert!(
            chat.contains(command),
            "chat --help lacks {command}:\n{chat}"
        );
    }
    let (_, help) = first_line(broker);
    assert!(
        !help.contains(" ms") && !help.contains("M deliveries"),
        "{help}"
    );
}

#[test]
fn broker_says_when_its_address_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let broker = Proc::spawn(env!("CARGO_BIN_EXE_broker"), &["--listen", &addr]);
    assert_fails_cleanly(broker, &format!("cannot listen on {addr}"));
}
