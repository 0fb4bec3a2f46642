//! Slow consumers on demand, for `loadgen latency --stalled N`: subscribers that subscribe and
//! then never read, opened by the coordinating process so that no count of the healthy
//! subscribers includes them, and afterwards a count of how many the broker cut off.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

use super::plan::channel_name;
use super::Rig;
use crate::proto::socket;
use crate::proto::stream::Stream;

/// SO_RCVBUF of a stalled subscriber (Linux doubles it, and the window follows it): small,
/// so that what the client does not read piles up in the broker, where the slow-consumer
/// limit counts it, rather than in loopback's socket buffers.
const STALLED_RCVBUF: u32 = 4096;
/// The segment size a stalled subscriber announces (TCP_MAXSEG). The broker's kernel sizes
/// its send buffer by segments (2 × cwnd × the segment's memory): loopback's 64 KiB segments
/// let ~2.8 MB wait in the kernel per stalled connection before the broker's outbox holds a
/// byte, 1 KB segments (a network's are 1.5 KB) under 100 KB (`ss -tm`: 2.8 MB and 87 KB).
const STALLED_MSS: u32 = 1024;
/// How long [`Stalled::count_closed`] drains each stalled subscriber. One the broker closed
/// reaches its EOF (or a reset) once the kernels' buffered bytes are read, a few hundred KB
/// at most, milliseconds on loopback; one still open yields its backlog and then nothing.
const STALLED_DRAIN: Duration = Duration::from_secs(2);

/// Subscribers that subscribe to every channel and then never read their sockets: slow
/// consumers, held by the coordinating process itself rather than by a worker, so that no
/// count of the healthy subscribers (`clients`, `expected`, `delivered`, latency) includes
/// them. Dropping this closes them.
pub struct Stalled {
    streams: Vec<Stream>,
}

impl Rig {
    /// Opens `count` stalled subscribers, spread over the targets, each subscribed to every
    /// channel of the run (`ch-0` … `ch-{channels-1}`), so each one is owed every message
    /// published. Each step (connect, handshake, each subscribe) may take `--connect-timeout`.
    pub async fn open_stalled(&self, count: u64) -> anyhow::Result<Stalled> {
        let (dial, proto) = (&self.dial, self.dial.proto);
        let timeout = self.common.connect_timeout;
        let channels: Vec<String> = (0..self.channels).map(channel_name).collect();
        let mut streams = Vec::with_capacity(count as usize);
        for i in 0..count {
            let target = self.targets()[i as usize % self.targets().len()];
            // Unique per connection: an MQTT broker drops the older of two with one id.
            let client_id = format!("loadgen-{}-stalled-{i}", std::process::id());
            let who = format!("stalled subscriber {i}");
            let socket = stalled_socket(target)?;
            let tcp = socket::connect_within(target, timeout, socket.connect(target))
                .await
                .with_context(|| format!("{who}: connect to {target}"))?;
            tcp.set_nodelay(true)?;
            let (mut stream, mut pending) = dial
                .open(tcp, timeout, &client_id)
                .await
                .with_context(|| format!("{who}: handshake"))?;
            let setup = proto.within(timeout);
            for channel in &channels {
                pending = setup
                    .subscribe(&mut stream, channel, pending)
                    .await
                    .with_context(|| format!("{who}: subscribe to {channel}"))?;
            }
            streams.push(stream);
        }
        Ok(Stalled { streams })
    }
}

/// A socket for a subscriber that will not read, not yet connected: a small receive buffer and
/// segment size ([`STALLED_RCVBUF`], [`STALLED_MSS`]), set before connect because the window
/// scale and the segment size are agreed in the handshake. Also `loadgen soak`'s slow
/// consumers'.
pub fn stalled_socket(target: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_recv_buffer_size(STALLED_RCVBUF)?;
    socket::announce_mss(&socket, STALLED_MSS)?;
    Ok(socket)
}

impl Stalled {
    /// How many the broker has closed, found by reading each to its end: what the kernel
    /// buffered before the close drains, then comes EOF (or ECONNRESET). One still open gives
    /// up its backlog and then nothing until [`STALLED_DRAIN`] runs out. Call it after the
    /// traffic stops (a drained socket no longer counts as slow) and before the broker does.
    /// Closes every one of them.
    pub async fn count_closed(self) -> u64 {
        let mut drains = JoinSet::new();
        for mut stream in self.streams {
            drains.spawn(async move {
                let deadline = tokio::time::Instant::now() + STALLED_DRAIN;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => return true,
                        Ok(Ok(_)) => {}
                        Err(_) => return false,
                    }
                }
            });
        }
        let mut closed = 0;
        while let Some(done) = drains.join_next().await {
            closed += u64::from(done.unwrap_or(false));
        }
        closed
    }
}
