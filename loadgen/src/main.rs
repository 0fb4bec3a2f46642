//! The `loadgen` program; everything it does lives in the `loadgen` library.

use clap::Parser;

/// The broker's allocator (see `broker/src/bin/broker.rs`), because the broker loadgen starts
/// for itself is this same executable.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    loadgen::run(loadgen::Opts::parse())
}
