//! The `broker` program; everything it does lives in [`hubbub::tools::broker`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hubbub::tools::broker::run(hubbub::tools::broker::Opts::parse()).await
}
