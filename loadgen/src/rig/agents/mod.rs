//! Load from many hosts: `loadgen agent` (`crate::scenario::agent`) serves worker processes
//! to a coordinator over TCP; this is what both sides say, and the coordinator's side.
//!
//! A coordinator given `--agents` opens one connection per worker it wants on an agent. Each
//! connection says hello with the shared token (refused and closed otherwise: an agent starts
//! processes for whoever it lets in), measures the agent's clock against its own, then asks for
//! a worker: the agent starts `loadgen worker` and from then on relays the connection to the
//! worker's stdin and the worker's stdout to the connection, byte for byte. The coordinator
//! speaks to it exactly as to a local worker ([`crate::rig::control`]), so a distributed run
//! is the same run with its workers elsewhere, and its report has the same form. The
//! publishers run in those workers too, each with its block of the one schedule.
//!
//! - [`wire`]: what the coordinator and an agent say before the relay starts, and the token.
//! - [`clock`]: the offset between two hosts' monotonic clocks, from round trips (pure).
//! - [`dial`]: the coordinator's side: finding the agents, the hello, the clock, the worker.

pub mod clock;
pub mod dial;
pub mod wire;
