//! What loadgen reads from the operating system: the limits that decide how many clients fit,
//! read once at start, and the CPU and memory of the broker and of loadgen, once a second.
//!
//! # Layout
//! - [`procfs`]: parsers of `/proc` files and the readers around them.
//! - [`limits`]: the limits read at the start of a run.
//! - [`sampler`]: CPU and memory of groups of processes.
//! - [`threads`]: every thread's CPU, and the CPU a process may use.
//! - [`listener`]: which process listens on a port.

pub mod limits;
pub mod listener;
pub mod procfs;
pub mod sampler;
pub mod threads;

pub use self::limits::read_limits;
pub use self::procfs::{nofile_of, running};
pub use self::sampler::{Reading, Sampler};
