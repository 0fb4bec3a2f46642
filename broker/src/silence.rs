//! How long a link's upstream has been silent, and what that calls for (`--upstream-timeout`):
//! a PING after a third of it, the link dropped after the whole of it. Pure but for the
//! clock, so the rule is tested without a network.

use std::time::Duration;

/// When the upstream was last heard from, and what to do about a silence
/// (`--upstream-timeout`). Pure but for the clock, so the rule is tested without a network.
pub(crate) struct Heard {
    timeout: Duration,
    last: tokio::time::Instant,
    /// Whether a PING went up since the last byte came down: one per silence is enough.
    asked: bool,
    ticks: Option<tokio::time::Interval>,
}

/// What a silence calls for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Quiet {
    Fine,
    /// A third of the timeout in silence: send a PING (its PONG will end the silence).
    Ask,
    /// The whole timeout in silence: the link is gone.
    Gone(Duration),
}

impl Heard {
    pub(crate) fn new(timeout: Duration) -> Self {
        let ticks = (!timeout.is_zero()).then(|| {
            let mut t = tokio::time::interval(timeout / 6);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        Self {
            timeout,
            last: tokio::time::Instant::now(),
            asked: false,
            ticks,
        }
    }

    /// Something came down the link.
    pub(crate) fn now(&mut self) {
        self.last = tokio::time::Instant::now();
        self.asked = false;
    }

    /// Ready every sixth of the timeout; never when there is none.
    pub(crate) async fn tick(&mut self) {
        match &mut self.ticks {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    pub(crate) fn check(&mut self) -> Quiet {
        let silent = self.last.elapsed();
        if silent >= self.timeout {
            Quiet::Gone(silent)
        } else if silent >= self.timeout / 3 && !self.asked {
            self.asked = true;
            Quiet::Ask
        } else {
            Quiet::Fine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silence_asks_once_then_gives_up_and_any_byte_ends_it() {
        let mut heard = Heard::new(Duration::from_secs(3));
        assert_eq!(heard.check(), Quiet::Fine);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(heard.check(), Quiet::Fine);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(heard.check(), Quiet::Ask);
        assert_eq!(heard.check(), Quiet::Fine, "one PING per silence");
        tokio::time::advance(Duration::from_millis(1500)).await;
        heard.now();
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(heard.check(), Quiet::Ask, "a new silence asks again");
        tokio::time::advance(Duration::from_millis(2000)).await;
        assert_eq!(heard.check(), Quiet::Gone(Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_never_ticks() {
        let mut heard = Heard::new(Duration::ZERO);
        let ticked = tokio::time::timeout(Duration::from_secs(3600), heard.tick()).await;
        assert!(ticked.is_err());
    }
}
