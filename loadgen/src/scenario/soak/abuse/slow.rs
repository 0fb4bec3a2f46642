//! Slow consumers: subscribe to the bursts and stop reading, so that what the broker owes them
//! piles up until its slow-consumer policy cuts them (an ERROR where the socket takes it, then
//! the close). A client that does not read cannot see the close, so each one looks after
//! `--slow-stall`: it reads what is left to its end, noting an ERROR, and then starts again.
//!
//! Its socket is `loadgen latency --stalled`'s ([`stalled_socket`]: a small receive buffer and
//! segment size), so that the backlog waits in the broker, where the policy counts it, rather
//! than in loopback's buffers.

use std::sync::Arc;
use std::time::Duration;

use super::burst::CHANNEL;
use super::shared::Shared;
use crate::proto::inbound::Inbound;
use crate::proto::{Proto, ProtoError};
use crate::rig::stalled::stalled_socket;
/// A slow consumer that looks and reads nothing for this long is still connected.
const QUIET: Duration = Duration::from_secs(2);

/// What a slow consumer found when it looked.
enum Found {
    /// The broker had closed it; `told`: with an ERROR first.
    Cut { told: bool },
    /// Still connected: it read its backlog and nothing more came.
    Open,
}

/// One slow consumer, stalling, looking and starting again until the soak stops.
pub async fn run(shared: Arc<Shared>, stall: Duration) {
    loop {
        let Ok(socket) = stalled_socket(shared.target) else {
            shared.failed_connect().await;
            continue;
        };
        let Some((mut stream, early)) = shared.subscribed(CHANNEL, Some(socket)).await else {
            continue;
        };
        tokio::time::sleep(stall).await;
        let mut inbound = Inbound::new(Proto::Hubbub, early);
        let found = loop {
            if let Err(e) = inbound.parse(&mut ()) {
                break Found::Cut {
                    told: matches!(e, ProtoError::Server { .. }),
                };
            }
            match tokio::time::timeout(QUIET, inbound.read_from(&mut stream)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false) | Err(_)) => break Found::Cut { told: false },
                Err(_) => break Found::Open,
            }
        };
        match found {
            Found::Cut { told } => shared.count(|c| {
                c.slow_cuts += 1;
                c.slow_cuts_told += u64::from(told);
            }),
            Found::Open => shared.count(|c| c.slow_uncut += 1),
        }
    }
}
