//! `HOST:PORT` as given on a command line: an address, or a name to look up at each connect.
//!
//! A leaf across hosts names its hub (`--upstream hub:4243`): in a container network the name
//! is the stable part and the address may change when the hub's container is started again,
//! so it is resolved on every attempt, never once at start.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// A host (an IP address or a name) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// Why a `HOST:PORT` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("{0:?}: expected HOST:PORT (e.g. hub:4243 or 10.0.0.2:4243)")]
    NoPort(String),
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    BadPort(String),
    #[error("{0:?}: the host is empty")]
    NoHost(String),
}

impl HostPort {
    /// The host as an IP address, when it is one (no lookup).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// What `tokio::net::TcpStream::connect` and `ToSocketAddrs` take; names are looked up
    /// by the system's resolver on each call.
    pub fn as_pair(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| HostPortError::NoPort(text.into()))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(HostPortError::BadPort(text.into())),
        };
        // A bracketed IPv6 address without a valid port was caught above; brackets around
        // anything else, or a bare IPv6 address, are not a host name.
        if host.is_empty() || host.contains([':', '[', ']', ' ', '/']) {
            return Err(HostPortError::NoHost(text.into()));
        }
        Ok(Self {
            host: host.into(),
            port,
        })
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_parse_and_print_back() {
        for text in [
            "10.0.0.2:4243",
            "[::1]:4243",
            "hub:4243",
            "leaf-1.leaf.default.svc:7",
        ] {
            assert_eq!(text.parse::<HostPort>().unwrap().to_string(), text);
        }
        let hub: HostPort = "hub:4243".parse().unwrap();
        assert_eq!((hub.ip(), hub.as_pair()), (None, ("hub", 4243)));
        let ip: HostPort = "10.0.0.2:1".parse().unwrap();
        assert_eq!(ip.ip(), Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn what_is_not_host_and_port_is_refused_by_name() {
        use HostPortError::*;
        let cases = [
            ("hub", NoPort("hub".into())),
            ("hub:", BadPort("hub:".into())),
            ("hub:0", BadPort("hub:0".into())),
            ("hub:99999", BadPort("hub:99999".into())),
            (":4243", NoHost(":4243".into())),
            ("::1:4243", NoHost("::1:4243".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<HostPort>(), Err(want), "{text}");
        }
    }
}
