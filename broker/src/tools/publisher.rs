//! The `publisher` program: publish a counted message on channels at a steady interval.

use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::client::{Client, ClientError};

/// Publish to one or more channels in a loop (every second by default), with a counter in
/// each message.
#[derive(Debug, Parser)]
#[command(name = "publisher", version)]
pub struct Opts {
    /// Broker address.
    #[arg(long, default_value = super::DEFAULT_SERVER)]
    pub server: String,
    /// Time between publishes (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Stop after this many rounds (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Text carried in each message.
    #[arg(long, default_value = "hello")]
    pub text: String,
    /// Channels to publish to.
    #[arg(default_value = "news")]
    pub channels: Vec<String>,
}

/// The message published: `{"seq": N, "text": "..."}`.
#[derive(Debug, Serialize)]
pub struct Counted<'a> {
    pub seq: u64,
    pub text: &'a str,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let shutdown = super::shutdown_on_signal();
    let (mut sender, mut receiver) = Client::connect(opts.server.as_str()).await?.split();
    let mut tick = tokio::time::interval(opts.interval);
    let mut seq = 0;
    while opts.count != Some(seq) {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // A publisher gets no replies, but it must notice a broker that went away.
            event = receiver.next_event() => match event {
                Err(ClientError::Closed) => anyhow::bail!("the broker closed the connection"),
                Err(e) => return Err(e.into()),
                Ok(event) => eprintln!("{}", super::client::describe(&event)),
            },
            _ = tick.tick() => {
                seq += 1;
                for channel in &opts.channels {
                    sender.publish(channel, &Counted { seq, text: &opts.text }).await?;
                    println!("published #{seq} to {channel}");
                }
            }
        }
    }
    Ok(())
}
