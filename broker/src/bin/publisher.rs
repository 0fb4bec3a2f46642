//! The `publisher` program; everything it does lives in [`hubbub::tools::publisher`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hubbub::tools::publisher::run(hubbub::tools::publisher::Opts::parse()).await
}
