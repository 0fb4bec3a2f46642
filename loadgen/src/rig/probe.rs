//! Reads hubbub's counters (the STATS extension) from each target, between steps. A broker
//! that does not answer STATS (another product) simply reports zeros.

use std::net::SocketAddr;
use std::time::Duration;

use hubbub::protocol::Event;
use hubbub::Client;

use super::progress::say;
use crate::proto::credentials::Credentials;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters summed over every target that answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerCounters {
    pub accept_errors: u64,
    pub slow_consumers: u64,
    pub connections: u64,
}

/// One control connection per target; the default probes nothing (a broker without STATS).
#[derive(Default)]
pub struct StatsProbe {
    clients: Vec<(SocketAddr, Client)>,
}

impl StatsProbe {
    /// Connects to each target, each within [`ANSWER_TIMEOUT`]; a target that cannot be
    /// reached is left out (and said), as the run goes on without its counters.
    /// With credentials, each connection authenticates first (its user needs `stats`).
    pub async fn connect(targets: &[SocketAddr], auth: &Credentials) -> Self {
        let mut clients = Vec::new();
        for &t in targets {
            let connect = async {
                let mut c = Client::connect(t).await?;
                if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
                    c.auth(user, password).await?;
                }
                Ok::<_, hubbub::client::ClientError>(c)
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, connect).await {
                Ok(Ok(c)) => clients.push((t, c)),
                Ok(Err(e)) => say(&format!("no STATS from {t}: {e}")),
                Err(_) => say(&format!(
                    "no STATS from {t}: no answer to connecting within {}",
                    humantime::format_duration(ANSWER_TIMEOUT)
                )),
            }
        }
        Self { clients }
    }

    /// Current counters; a target that fails to answer within [`ANSWER_TIMEOUT`] is dropped
    /// from the probe, and said, since its counters read as zero from then on.
    pub async fn read(&mut self) -> BrokerCounters {
        let mut sum = BrokerCounters::default();
        let mut alive = Vec::new();
        for (t, mut c) in self.clients.drain(..) {
            match tokio::time::timeout(ANSWER_TIMEOUT, ask(&mut c)).await {
                Ok(Ok(stats)) => {
                    let get = |k: &str| stats.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                    sum.accept_errors += get("accept_errors");
                    sum.slow_consumers += get("slow_consumers");
                    sum.connections += get("connections_current");
                    alive.push((t, c));
                }
                Ok(Err(why)) => say(&format!("no more STATS from {t}: {why}")),
                Err(_) => say(&format!(
                    "no more STATS from {t}: no answer within {}",
                    humantime::format_duration(ANSWER_TIMEOUT)
                )),
            }
        }
        self.clients = alive;
        sum
    }
}

/// The broker's counters, or why it gave none.
pub(super) async fn ask(
    c: &mut Client,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    c.sender()
        .send_raw(b"{\"command\":\"STATS\"}\n")
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match c.next_event().await.map_err(|e| e.to_string())? {
            Event::Stats(map) => return Ok(map),
            Event::Error { message } => return Err(format!("it answered STATS with {message:?}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A fake hubbub that takes one connection, reads its STATS and answers with `reply`
    /// (`None`: never answers), then hangs up if `close` or else holds the connection.
    async fn fake(reply: Option<&'static [u8]>, close: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).await;
            if let Some(reply) = reply {
                stream.write_all(reply).await.unwrap();
            }
            if !close {
                while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            }
        });
        addr
    }

    /// Garbage, a hang-up in the middle of a line, and silence each end the probe of that
    /// broker (no counters, the target dropped) within the answer's time limit, never a hang.
    #[tokio::test]
    async fn a_broker_that_garbles_hangs_up_or_stalls_is_dropped() {
        let cases = [
            (Some(&b"not json\n"[..]), false),
            (Some(&b"{\"type\":\"STA"[..]), true),
            (None, false),
        ];
        for (reply, close) in cases {
            let addr = fake(reply, close).await;
            let mut probe = StatsProbe::connect(&[addr], &Credentials::NONE).await;
            assert_eq!(probe.clients.len(), 1);
            let guard = ANSWER_TIMEOUT + Duration::from_secs(5);
            let counters = tokio::time::timeout(guard, probe.read())
                .await
                .expect("no hang");
            assert_eq!(counters.connections, 0, "{reply:?}");
            assert!(probe.clients.is_empty(), "{reply:?}: dropped");
        }
    }

    /// The control: a broker that answers is read, and kept.
    #[tokio::test]
    async fn a_broker_that_answers_is_read() {
        let addr = fake(
            Some(b"{\"type\":\"STATS\",\"connections_current\":7}\n"),
            false,
        )
        .await;
        let mut probe = StatsProbe::connect(&[addr], &Credentials::NONE).await;
        assert_eq!(probe.read().await.connections, 7);
        assert_eq!(probe.clients.len(), 1);
    }
}
