//! The wire protocol (see `PROTOCOL.md` at the repository root), as pure functions over bytes.
//!
//! - [`command`]: parsing what clients send ([`parse_command`]), with an exact error for every
//!   row of the bad-input table.
//! - [`encode`]: the bytes the broker sends. A MESSAGE is encoded once per publish and shared
//!   by every subscriber.
//! - [`event`]: parsing what the broker sends, for the client library and loadgen.
//! - [`limits`]: how long a channel name and how deep a message may be.
//! - [`quote`]: untrusted text escaped and cut for logs and ERRORs.
//!
//! Nothing here touches a socket, so every rule is unit-testable.

pub mod command;
pub mod encode;
pub mod event;
pub mod limits;
pub mod quote;

pub use command::{parse_command, Command, ProtocolError, Secret};
pub use event::{parse_event, Event};
pub use limits::Limits;
pub use quote::Quoted;
