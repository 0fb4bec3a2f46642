//! The plain tokio broker: the baseline hubbub has to beat.
//!
//! What a user who knows tokio could write in an afternoon, speaking hubbub's protocol (so
//! loadgen's hubbub driver measures it unchanged): a reader task and a writer task per
//! connection, one `RwLock<HashMap>` from channel to its subscribers' senders, each MESSAGE
//! encoded once per publish and shared, and the writer draining everything queued into one
//! buffered write per wake-up. No thread-local batching, no write-through, no packed
//! subscription sets: if hubbub's design is worth its complexity, it is ahead of this.
//!
//! It follows the rules a load test depends on: acknowledgements before the subscription
//! takes effect (protocol rule 2), per-publisher order, bounded queues with a slow consumer
//! disconnected. It leaves out what no benchmark exercises: STATS, LINK, limits on frames and
//! connections beyond a maximum line length.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use hubbub::protocol::encode::{self, Ack};
use hubbub::protocol::{parse_command, Command};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames one subscriber may have queued. Overflow policy: the publish that finds the queue
/// full disconnects that subscriber (as hubbub's slow-consumer limit does; 65,536 frames of
/// ~100 B is about hubbub's default 8 MiB), and the publisher goes on to the others.
pub const QUEUE_FRAMES: usize = 65_536;
/// Frames taken from the queue per buffered write.
const BATCH: usize = 256;
/// Longest line read; a longer one ends the connection, so a client cannot grow the broker.
const MAX_LINE: usize = 1 << 20;

/// One subscriber as a publisher sees it: where to queue, and how to cut it off.
#[derive(Clone)]
struct Subscriber {
    queue: mpsc::Sender<Bytes>,
    kick: CancellationToken,
}

/// Channel → its subscribers by connection id.
type Registry = RwLock<HashMap<String, HashMap<u64, Subscriber>>>;

/// What every connection shares.
#[derive(Default)]
struct Shared {
    registry: Registry,
    /// The two counters loadgen's STATS probe reads (to see clients leave, and slow consumers).
    connections: AtomicU64,
    slow_consumers: AtomicU64,
}

/// Serves `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
    let shared = Arc::new(Shared::default());
    let ids = AtomicU64::new(1);
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // EMFILE and its kind: keep serving the clients already here.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(
            stream,
            id,
            Arc::clone(&shared),
            shutdown.child_token(),
        ));
    }
}

/// One client: reads and handles its commands; a writer task of its own sends what it is owed.
async fn connection(stream: TcpStream, id: u64, shared: Arc<Shared>, kick: CancellationToken) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let registry = &shared.registry;
    let (read, write) = stream.into_split();
    let (queue, frames) = mpsc::channel(QUEUE_FRAMES);
    let writer = tokio::spawn(write_loop(write, frames, kick.clone()));
    let me = Subscriber { queue, kick };
    let mut channels: Vec<String> = Vec::new();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        let n = tokio::select! {
            _ = me.kick.cancelled() => break,
            n = limited.read_until(b'\n', &mut line) => n,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) if !line.ends_with(b"\n") && line.len() >= MAX_LINE => break,
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        let reply = match parse_command(text) {
            Ok(Command::Publish { channel, message }) => {
                publish(&shared, &channel, message.get());
                None
            }
            Ok(Command::Subscribe { channel }) => {
                let known = channels.iter().any(|c| *c == channel);
                if !known {
                    channels.push(channel.to_string());
                }
                // Queued before the subscription takes effect (protocol rule 2).
                let ack = encode::ack(Ack::Subscribe, &channel, channels.len());
                if me.queue.send(ack).await.is_err() {
                    break;
                }
                if !known {
                    let mut map = registry.write().expect("registry lock");
                    map.entry(channel.to_string())
                        .or_default()
                        .insert(id, me.clone());
                }
                None
            }
            Ok(Command::Unsubscribe { channel }) => {
                if let Some(i) = channels.iter().position(|c| *c == channel) {
                    channels.swap_remove(i);
                    remove(registry, &channel, id);
                }
                Some(encode::ack(Ack::Unsubscribe, &channel, channels.len()))
            }
            Ok(Command::Ping) => Some(encode::pong()),
            Ok(Command::Stats) => Some(stats(&shared)),
            Ok(_) => Some(encode::error("not supported by the plain baseline broker")),
            Err(e) => Some(encode::error(&e.to_string())),
        };
        if let Some(frame) = reply {
            if me.queue.send(frame).await.is_err() {
                break;
            }
        }
    }
    for channel in &channels {
        remove(registry, channel, id);
    }
    me.kick.cancel();
    drop(me);
    let _ = writer.await;
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// `{"type":"STATS",...}` with the counters kept and this crate's version.
fn stats(shared: &Shared) -> Bytes {
    let mut frame = serde_json::to_vec(&serde_json::json!({
        "type": "STATS",
        "version": env!("CARGO_PKG_VERSION"),
        "connections_current": shared.connections.load(Ordering::Relaxed),
        "slow_consumers": shared.slow_consumers.load(Ordering::Relaxed),
    }))
    .expect("a JSON value encodes");
    frame.push(b'\n');
    Bytes::from(frame)
}

/// Encodes the MESSAGE once and queues it for every subscriber of `channel`.
fn publish(shared: &Shared, channel: &str, raw_message: &str) {
    let map = shared.registry.read().expect("registry lock");
    let Some(subscribers) = map.get(channel) else {
        return;
    };
    let frame = encode::message(&encode::message_prefix(channel), raw_message);
    for subscriber in subscribers.values() {
        if subscriber.queue.try_send(frame.clone()).is_err() && !subscriber.kick.is_cancelled() {
            // Full: a slow consumer. Its connection removes it from the registry as it goes.
            shared.slow_consumers.fetch_add(1, Ordering::Relaxed);
            subscriber.kick.cancel();
        }
    }
}

fn remove(registry: &Registry, channel: &str, id: u64) {
    let mut map = registry.write().expect("registry lock");
    if let Some(subscribers) = map.get_mut(channel) {
        subscribers.remove(&id);
        if subscribers.is_empty() {
            map.remove(channel);
        }
    }
}

/// Sends queued frames: everything waiting, up to [`BATCH`] frames, in one buffered write.
async fn write_loop(
    write: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Bytes>,
    kick: CancellationToken,
) {
    let mut out = BufWriter::new(write);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let got = tokio::select! {
            _ = kick.cancelled() => 0,
            got = frames.recv_many(&mut batch, BATCH) => got,
        };
        if got == 0 {
            break;
        }
        for frame in batch.drain(..) {
            if out.write_all(&frame).await.is_err() {
                kick.cancel();
                return;
            }
        }
        if out.flush().await.is_err() {
            kick.cancel();
            return;
        }
    }
    let _ = out.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(run(listener, shutdown.clone()));
        (addr, shutdown)
    }

    async fn line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut s = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), r.read_line(&mut s))
            .await
            .expect("a frame within 5 s")
            .unwrap();
        s
    }

    #[tokio::test]
    async fn speaks_hubbubs_protocol_to_a_subscriber_and_a_publisher() {
        let (addr, shutdown) = start().await;
        let (r, mut sub) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut sub_in = BufReader::new(r);
        sub.write_all(b"{\"command\":\"SUBSCRIBE\",\"args\":{\"channel\":\"a\"}}\r\n")
            .await
            .unwrap();
        assert_eq!(
            line(&mut sub_in).await,
            "{\"type\":\"SUBSCRIBE\",\"channel\":\"a\",\"count\":1}\n"
        );
        let mut publisher = TcpStream::connect(addr).await.unwrap();
        for m in ["1", "{\"x\":2}"] {
            let frame = format!(
                "{{\"command\":\"PUBLISH\",\"args\":{{\"channel\":\"a\",\"message\":{m}}}}}\n"
            );
            publisher.write_all(frame.as_bytes()).await.unwrap();
        }
        assert_eq!(
            line(&mut sub_in).await,
            "{\"type\":\"MESSAGE\",\"channel\":\"a\",\"message\":1}\n"
        );
        assert_eq!(
            line(&mut sub_in).await,
            "{\"type\":\"MESSAGE\",\"channel\":\"a\",\"message\":{\"x\":2}}\n"
        );
        sub.write_all(b"{\"command\":\"UNSUBSCRIBE\",\"args\":{\"channel\":\"a\"}}\nnope\n")
            .await
            .unwrap();
        assert_eq!(
            line(&mut sub_in).await,
            "{\"type\":\"UNSUBSCRIBE\",\"channel\":\"a\",\"count\":0}\n"
        );
        assert!(line(&mut sub_in).await.starts_with("{\"type\":\"ERROR\""));
        shutdown.cancel();
    }
}
