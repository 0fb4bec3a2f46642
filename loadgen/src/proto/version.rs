//! Asking a broker which version it is, each in its protocol's way: hubbub's STATS, Redis's
//! `INFO server`, the NATS greeting, Mosquitto's `$SYS/broker/version` topic.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{socket, Proto, Reader};

/// How long a broker may take to say its version.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The version the broker at `addr` reports, or `None` if it does not say in time.
pub async fn ask_version(proto: Proto, addr: SocketAddr) -> Option<String> {
    tokio::time::timeout(ASK_TIMEOUT, ask(proto, addr))
        .await
        .ok()
        .flatten()
}

async fn ask(proto: Proto, addr: SocketAddr) -> Option<String> {
    let mut stream = socket::connect(addr).await.ok()?;
    let mut buf = Vec::new();
    match proto {
        Proto::Hubbub => {
            stream.write_all(b"{\"command\":\"STATS\"}\n").await.ok()?;
            let line = read_until(&mut stream, &mut buf, |b| b.contains(&b'\n')).await?;
            let stats: serde_json::Value = serde_json::from_slice(line.trim_ascii()).ok()?;
            stats["version"].as_str().map(String::from)
        }
        Proto::Redis => {
            stream.write_all(b"INFO server\r\n").await.ok()?;
            let text = read_until(&mut stream, &mut buf, |b| {
                b.windows(14).any(|w| w == b"redis_version:") && b.ends_with(b"\r\n")
            })
            .await?;
            let text = String::from_utf8_lossy(text);
            let line = text.lines().find(|l| l.starts_with("redis_version:"))?;
            Some(line["redis_version:".len()..].trim().to_string())
        }
        Proto::Nats => {
            let line = read_until(&mut stream, &mut buf, |b| b.ends_with(b"\r\n")).await?;
            let text = std::str::from_utf8(line).ok()?.strip_prefix("INFO ")?;
            let info: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
            info["version"].as_str().map(String::from)
        }
        Proto::Mqtt => {
            let id = format!("loadgen-version-{}", std::process::id());
            let pending = proto.handshake(&mut stream, &id).await.ok()?;
            let early = proto
                .subscribe(&mut stream, "$SYS/broker/version", pending)
                .await
                .ok()?;
            let mut reader = Reader::new(proto);
            let mut version = None;
            buf = early;
            loop {
                let used = reader
                    .feed(
                        &buf,
                        // "mosquitto version 2.0.11": the version alone, as the others give.
                        |p| {
                            let text = String::from_utf8_lossy(p);
                            let v = text.strip_prefix("mosquitto version ").unwrap_or(&text);
                            version = Some(v.trim().to_string());
                        },
                        &mut Vec::new(),
                    )
                    .ok()?;
                buf.drain(..used);
                if version.is_some() {
                    return version;
                }
                if stream.read_buf(&mut buf).await.ok()? == 0 {
                    return None;
                }
            }
        }
    }
}

/// Reads until `done` holds for what was read; returns all of it.
async fn read_until<'a>(
    stream: &mut tokio::net::TcpStream,
    buf: &'a mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> Option<&'a [u8]> {
    while !done(buf) {
        buf.reserve(4096);
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
    Some(buf)
}
