//! Reads hubbub's counters (the STATS extension) from each target, between steps. A broker
//! that does not answer STATS (another product) simply reports zeros.

use std::net::SocketAddr;
use std::time::Duration;

use hubbub::protocol::Event;
use hubbub::Client;

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
    clients: Vec<Client>,
}

impl StatsProbe {
    pub async fn connect(targets: &[SocketAddr]) -> Self {
        let mut clients = Vec::new();
        for t in targets {
            if let Ok(c) = Client::connect(*t).await {
                clients.push(c);
            }
        }
        Self { clients }
    }

    /// Current counters; a target that fails to answer is dropped from the probe.
    pub async fn read(&mut self) -> BrokerCounters {
        let mut sum = BrokerCounters::default();
        let mut alive = Vec::new();
        for mut c in self.clients.drain(..) {
            if let Ok(Some(stats)) = tokio::time::timeout(ANSWER_TIMEOUT, ask(&mut c)).await {
                let get = |k: &str| stats.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                sum.accept_errors += get("accept_errors");
                sum.slow_consumers += get("slow_consumers");
                sum.connections += get("connections_current");
                alive.push(c);
            }
        }
        self.clients = alive;
        sum
    }
}

async fn ask(c: &mut Client) -> Option<serde_json::Map<String, serde_json::Value>> {
    c.sender()
        .send_raw(b"{\"command\":\"STATS\"}\n")
        .await
        .ok()?;
    loop {
        match c.next_event().await.ok()? {
            Event::Stats(map) => return Some(map),
            Event::Error { .. } => return None,
            _ => {}
        }
    }
}
