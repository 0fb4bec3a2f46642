//! Socket setup shared by every simulated client. What goes over the socket is
//! [`crate::proto`]'s business.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Connects with TCP_NODELAY, as every broker measured here sets it on its side.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
