//! The `client` program; everything it does lives in [`hubbub::tools::client`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hubbub::tools::client::run(hubbub::tools::client::Opts::parse()).await
}
