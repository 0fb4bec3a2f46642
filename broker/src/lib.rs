//! hubbub: a fast publish/subscribe broker speaking newline-delimited JSON over TCP, with its
//! client library and the small programs to try it by hand.
//!
//! # Layout
//! - [`protocol`]: pure parsing and encoding of every frame (no I/O).
//! - [`frame`]: newline framing with a maximum frame length (no I/O).
//! - [`registry`]: channel → subscribers; a publish walks only its channel's subscribers, and
//!   one read's publishes reach each subscriber as one frame.
//! - [`outbox`]: each connection's bounded output queue.
//! - [`pending`]: the slow-consumer policy it applies (a hard limit, and a soft one with a time).
//! - `connection`: one task per client; the only code that touches a client socket.
//! - `live`: every open connection, so that shutdown reaches them all.
//! - [`auth`]: users and permissions (`--users`, the AUTH extension), checked off the workers.
//! - [`server`]: the accept loop (with back-off), counters, shutdown by token.
//! - [`metrics`]: the optional Prometheus endpoint (`--metrics`), read from the counters.
//! - [`tls`]: the TLS flags and the rustls configurations they load; `transport`: a
//!   connection's bytes, plain or inside TLS.
//! - [`client`]: the async client that the tools and loadgen build on.
//! - [`tools`]: `client`, `publisher` and `chat`, as library functions the binaries call.
//! - [`link`] and [`upstream`]: this broker as a leaf of another; `silence`: when a quiet
//!   upstream's link is dropped; `epochs`: a broker below's newest link supersedes its older
//!   ones; [`address`]: `HOST:PORT`, a name looked up at each connect.

pub mod address;
mod audience;
pub mod auth;
pub mod budget;
pub mod client;
pub mod config;
mod connection;
pub mod deadline;
mod epochs;
pub mod frame;
pub mod launch;
pub mod link;
mod live;
pub mod metrics;
pub mod outbox;
pub mod pending;
pub mod protocol;
mod reaper;
pub mod registry;
pub mod server;
mod session;
mod shared;
mod silence;
pub mod stats;
mod subscriptions;
pub mod tls;
pub mod tools;
mod transport;
pub mod upstream;
mod write;

pub use client::Client;
pub use config::Config;
pub use server::{run, start, Broker, RunningBroker};
pub use stats::{Stats, StatsSnapshot};
