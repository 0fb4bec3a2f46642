//! Asking a broker which version it is, each in its protocol's way: hubbub's STATS, Redis's
//! `INFO server`, the NATS greeting, Mosquitto's `$SYS/broker/version` topic.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::credentials::Credentials;
use super::inbound::{Deliveries, Inbound};
use super::{socket, Proto, MAX_FRAME};

/// How long a broker may take to say its version.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The version the broker at `addr` reports, or `None` if it does not say in time.
pub async fn ask_version(proto: Proto, addr: SocketAddr) -> Option<String> {
    ask_version_as(proto, addr, &Credentials::NONE).await
}

/// [`ask_version`], authenticated with `auth` first where the protocol has it (a hubbub with
/// users answers STATS only to a user allowed it).
pub async fn ask_version_as(proto: Proto, addr: SocketAddr, auth: &Credentials) -> Option<String> {
    tokio::time::timeout(ASK_TIMEOUT, ask(proto, addr, auth))
        .await
        .ok()
        .flatten()
}

async fn ask(proto: Proto, addr: SocketAddr, auth: &Credentials) -> Option<String> {
    let mut stream = socket::connect(addr).await.ok()?;
    let mut buf = Vec::new();
    let login = auth.auth_command(proto);
    match proto {
        Proto::Hubbub => {
            if let Some(login) = login {
                // The reply first: hubbub refuses what is sent while an AUTH is checked.
                stream.write_all(&login).await.ok()?;
                let line = read_until(&mut stream, &mut buf, |b| b.contains(&b'\n')).await?;
                let reply: serde_json::Value = serde_json::from_slice(line.trim_ascii()).ok()?;
                if reply["type"] != "AUTH" {
                    return None;
                }
                buf.clear();
            }
            stream.write_all(b"{\"command\":\"STATS\"}\n").await.ok()?;
            let line = read_until(&mut stream, &mut buf, |b| b.contains(&b'\n')).await?;
            let stats: serde_json::Value = serde_json::from_slice(line.trim_ascii()).ok()?;
            stats["version"].as_str().map(String::from)
        }
        Proto::Redis => {
            // Redis answers in order: the AUTH's +OK, then INFO's text.
            let mut request = login.unwrap_or_default();
            request.extend_from_slice(b"INFO server\r\n");
            stream.write_all(&request).await.ok()?;
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
            let setup = proto.within(ASK_TIMEOUT);
            let pending = setup.handshake_as(&mut stream, &id, auth).await.ok()?;
            let early = proto
                .subscribe(&mut stream, "$SYS/broker/version", pending)
                .await
                .ok()?;
            let mut inbound = Inbound::new(proto, early);
            let mut version = Version(None);
            loop {
                inbound.parse(&mut version).ok()?;
                if version.0.is_some() {
                    return version.0;
                }
                if !inbound.read_from(&mut stream).await.ok()? {
                    return None;
                }
            }
        }
    }
}

/// The version Mosquitto publishes on `$SYS/broker/version`.
struct Version(Option<String>);

impl Deliveries for Version {
    /// "mosquitto version 2.0.11": the version alone, as the others give.
    fn payload(&mut self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let v = text.strip_prefix("mosquitto version ").unwrap_or(&text);
        self.0 = Some(v.trim().to_string());
    }
}

/// Reads until `done` holds for what was read; returns all of it. `None` if the server hangs
/// up first, or sends more than [`MAX_FRAME`] without `done` holding (an endless line would
/// otherwise fill memory at loopback speed until [`ASK_TIMEOUT`]).
async fn read_until<'a>(
    stream: &mut tokio::net::TcpStream,
    buf: &'a mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> Option<&'a [u8]> {
    while !done(buf) {
        if buf.len() > MAX_FRAME {
            return None;
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A server that sends more than a frame's worth of one endless line and then waits: the
    /// question (without its outer time limit) gives up at the frame limit instead of reading
    /// forever.
    #[tokio::test]
    async fn an_endless_line_ends_the_question() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // The client may hang up before the last bytes are written.
            let _ = stream.write_all(&vec![b'x'; MAX_FRAME + 2]).await;
            // Hold the connection open until the client lets go.
            let _ = stream.read(&mut [0; 64]).await;
        });
        let asked = tokio::time::timeout(
            Duration::from_secs(20),
            ask(Proto::Hubbub, addr, &Credentials::NONE),
        )
        .await;
        assert_eq!(asked.expect("no hang"), None);
        server.await.unwrap();
    }

    /// A server that accepts and never answers: the version is unknown, after
    /// [`ASK_TIMEOUT`] and not forever.
    #[tokio::test]
    async fn a_silent_server_has_no_version() {
        // The kernel completes the connections; nothing ever reads or answers them.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut asks = tokio::task::JoinSet::new();
        for proto in Proto::ALL {
            asks.spawn(async move { (proto, ask_version(proto, addr).await) });
        }
        while let Some(done) = tokio::time::timeout(Duration::from_secs(10), asks.join_next())
            .await
            .expect("no hang")
        {
            let (proto, version) = done.unwrap();
            assert_eq!(version, None, "{proto}");
        }
        drop(listener);
    }
}
