//! The `chat` program; everything it does lives in [`hubbub::tools::chat`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hubbub::tools::chat::run(hubbub::tools::chat::Opts::parse()).await
}
