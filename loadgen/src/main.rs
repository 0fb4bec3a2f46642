//! The `loadgen` program; everything it does lives in the `loadgen` library.

use std::process::ExitCode;

use clap::Parser;

/// The broker's allocator (see `broker/src/bin/broker.rs`), because the broker loadgen starts
/// for itself is this same executable.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs the command; the exit status says how it ended (`loadgen --help` lists them).
fn main() -> ExitCode {
    match loadgen::run(loadgen::Opts::parse()) {
        Ok(outcome) => ExitCode::from(outcome.exit_status()),
        Err(e) => match e.downcast::<clap::Error>() {
            // A flag refused once parsed (a combination clap cannot check), as clap refuses
            // one: its message, exit status 2.
            Ok(refused) => refused.exit(),
            Err(e) => {
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
    }
}
