//! One module per loadgen command: each a walk over the [`rig`](crate::rig) (or, for the
//! burst and memory measurements, its own drivers), writing its report through
//! [`report`](crate::report).

pub mod agent;
pub mod compare;
pub mod connect;
pub mod counted;
pub mod fanout;
pub mod latency;
pub mod memory;
pub mod ramp;
pub mod soak;
pub mod throughput;
