//! The `loadgen` program; everything it does lives in the `loadgen` library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    loadgen::run(loadgen::Opts::parse())
}
