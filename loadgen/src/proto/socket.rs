//! Socket setup shared by every simulated client. What goes over the socket is
//! [`crate::proto`]'s business.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects with TCP_NODELAY, as every broker measured here sets it on its side.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Waits at most `limit` for `connecting`, a connect to `target`: an unanswered SYN (a full
/// accept queue drops them) would otherwise wait minutes for the kernel to give up. Running
/// out of time is an [`io::ErrorKind::TimedOut`] that names the address; other errors keep
/// their OS error number, by which callers count them.
pub async fn connect_within(
    target: SocketAddr,
    limit: Duration,
    connecting: impl Future<Output = io::Result<TcpStream>>,
) -> io::Result<TcpStream> {
    match tokio::time::timeout(limit, connecting).await {
        Ok(connected) => connected,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer from {target} to connecting within {}",
                humantime::format_duration(limit)
            ),
        )),
    }
}

/// A socket of `target`'s address family, bound to `source` (when of the same family) with
/// the port left for `connect` to choose: see [`defer_port_choice`].
pub fn from_source(target: SocketAddr, source: IpAddr) -> io::Result<TcpSocket> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if source.is_ipv4() == target.is_ipv4() {
        defer_port_choice(&socket)?;
        socket.bind(SocketAddr::new(source, 0))?;
    }
    Ok(socket)
}

/// IP_BIND_ADDRESS_NO_PORT: binding a source address normally reserves a port at `bind`,
/// before the destination is known, which limits each source address to one connection per
/// port across *all* destinations. Deferring the choice to `connect` lets the kernel reuse a
/// port for different destinations (more brokers, more ports per source address).
fn defer_port_choice(socket: &TcpSocket) -> io::Result<()> {
    setsockopt(&socket.as_fd(), sockopt::IpBindAddressNoPort, &true).map_err(io::Error::from)
}

/// Sets TCP_MAXSEG on a socket not yet connected, which caps the segment size its SYN
/// announces (and so, on loopback, how much the peer's kernel buffers per segment).
pub fn announce_mss(socket: &TcpSocket, mss: u32) -> io::Result<()> {
    setsockopt(&socket.as_fd(), sockopt::TcpMaxSeg, &mss).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_a_source_address_and_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let socket = from_source(target, "127.0.0.2".parse().unwrap()).unwrap();
        announce_mss(&socket, 1024).unwrap();
        let stream = socket.connect(target).await.unwrap();
        assert_eq!(stream.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        let (accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        drop(accepted);
    }

    /// A listener that never accepts, with a backlog of one: once its queue is full the
    /// kernel drops further SYNs unanswered, and the connect gives up at its limit.
    #[tokio::test]
    async fn a_connect_nobody_answers_ends_at_its_limit() {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let target = listener.local_addr().unwrap();
        let limit = Duration::from_millis(300);
        let mut queued = Vec::new();
        let e = loop {
            let connecting = connect_within(target, limit, connect(target));
            match tokio::time::timeout(Duration::from_secs(10), connecting).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(e)) => break e,
                Err(_) => panic!("a connect outlived its limit"),
            }
            assert!(queued.len() < 10, "the listen queue never filled");
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            e.to_string(),
            format!("no answer from {target} to connecting within 300ms")
        );
    }
}
