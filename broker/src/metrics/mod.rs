//! The optional HTTP endpoint for Prometheus (`--metrics ADDR`): `GET /metrics` shows the
//! counters STATS shows, `GET /ready` whether the broker takes clients, `GET /health` that the
//! process answers.
//!
//! Nothing here is counted: a scrape reads the broker's own atomics (the same ones STATS
//! reads) at the moment it is asked, so the endpoint costs the broker nothing between scrapes,
//! and nothing at all when it is off.
//!
//! # Layout
//! - `encode`: the counters as OpenMetrics text (pure).
//! - `routes`: what each request is answered with (pure).
//! - `serve`: the listener and HTTP/1 (hyper): the only I/O.

mod encode;
mod routes;
mod serve;

pub use encode::{render, Scrape, CONTENT_TYPE};
pub use routes::{health, ready, route, Page, Reply};
pub use serve::bind;
pub(crate) use serve::serve;
