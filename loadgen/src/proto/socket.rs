//! Socket setup shared by every simulated client. What goes over the socket is
//! [`crate::proto`]'s business.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects with TCP_NODELAY, as every broker measured here sets it on its side.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
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
}
