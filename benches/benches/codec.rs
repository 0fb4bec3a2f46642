//! The broker's per-frame CPU cost, with no socket in the way: splitting a read buffer into
//! lines, parsing the commands a client sends, and encoding the MESSAGE every subscriber gets.
//!
//! Every bench sets a throughput, so the report reads as bytes/s (framing, parsing, encoding)
//! besides time per operation.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hubbub::frame::LineReader;
use hubbub::protocol::{encode, parse_command, Command};

/// Payload sizes: a small chat-like message and a larger record.
const PAYLOADS: [(&str, usize); 2] = [("64B", 64), ("1KiB", 1024)];
/// PUBLISH lines in the framing buffer.
const LINES: usize = 1000;
/// What the broker reads per `read` call (its per-thread scratch buffer).
const BROKER_READ: usize = 64 * 1024;

/// A JSON object of exactly `len` bytes: `{"text":"aaa…"}`.
fn payload(len: usize) -> String {
    let empty = r#"{"text":""}"#;
    assert!(len >= empty.len(), "payload too small");
    format!(r#"{{"text":"{}"}}"#, "a".repeat(len - empty.len()))
}

fn publish_line(channel: &str, message: &str) -> String {
    format!(r#"{{"command":"PUBLISH","args":{{"channel":"{channel}","message":{message}}}}}"#)
}

/// `LineReader::feed` over many PUBLISH lines, as the broker sees them arrive: in 64 KiB
/// reads, and in 1 KiB reads where most frames straddle two reads (the partial-frame path).
fn framing(c: &mut Criterion) {
    let line = publish_line("news", &payload(64));
    let stream: Vec<u8> = format!("{line}\n").repeat(LINES).into_bytes();
    let mut group = c.benchmark_group("codec/frame_feed");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for (name, chunk) in [("64KiB_reads", BROKER_READ), ("1KiB_reads", 1024)] {
        group.bench_with_input(BenchmarkId::new(name, LINES), &chunk, |b, &chunk| {
            let mut reader = LineReader::new(1 << 20);
            b.iter(|| {
                let mut lines = 0usize;
                for piece in stream.chunks(chunk) {
                    reader
                        .feed(black_box(piece), |l| {
                            black_box(l);
                            lines += 1;
                        })
                        .expect("frames are short");
                }
                assert_eq!(lines, LINES);
            })
        });
    }
    group.finish();
}

/// `parse_command` on one frame (without its newline).
fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/parse_command");
    let subscribe = r#"{"command":"SUBSCRIBE","args":{"channel":"news"}}"#.to_string();
    let mut cases = vec![("SUBSCRIBE".to_string(), subscribe)];
    for (name, len) in PAYLOADS {
        cases.push((
            format!("PUBLISH_{name}"),
            publish_line("news", &payload(len)),
        ));
    }
    for (name, line) in &cases {
        // Check once, outside the timing, that the bench parses what it claims to.
        match parse_command(line.as_bytes()).expect("valid command") {
            Command::Subscribe { .. } => assert!(name.starts_with("SUBSCRIBE")),
            Command::Publish { .. } => assert!(name.starts_with("PUBLISH")),
            other => panic!("unexpected {other:?}"),
        }
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let command = parse_command(black_box(line.as_bytes()));
                black_box(command.is_ok())
            })
        });
    }
    group.finish();
}

/// `encode::message`: the one MESSAGE frame a publish builds (then shares with every
/// subscriber), from the channel's prefix and the raw payload.
fn encoding(c: &mut Criterion) {
    let prefix = encode::message_prefix("news");
    let mut group = c.benchmark_group("codec/encode_message");
    for (name, len) in PAYLOADS {
        let message = payload(len);
        let frame_len = encode::message(&prefix, &message).len();
        group.throughput(Throughput::Bytes(frame_len as u64));
        group.bench_function(name, |b| {
            b.iter(|| encode::message(black_box(&prefix), black_box(&message)))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = codec;
    config = config();
    targets = framing, parsing, encoding
}
criterion_main!(codec);
