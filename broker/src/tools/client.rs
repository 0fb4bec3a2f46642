//! The `client` program: subscribe, then print every acknowledgement and message.

use std::io::Write;

use clap::Parser;

use crate::client::Client;
use crate::protocol::Event;

/// Subscribe to channels and print each acknowledgement and message as it arrives.
#[derive(Debug, Parser)]
#[command(name = "client", version)]
pub struct Opts {
    /// Broker address.
    #[arg(long, default_value = super::DEFAULT_SERVER)]
    pub server: String,
    /// Print the broker's frames exactly as received.
    #[arg(long)]
    pub raw: bool,
    /// Exit after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Channels to subscribe to.
    #[arg(required = true)]
    pub channels: Vec<String>,
}

/// Human-readable form of one event.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Subscribed { channel, count } => format!("subscribed to {channel} (count {count})"),
        Event::Unsubscribed { channel, count } => {
            format!("unsubscribed from {channel} (count {count})")
        }
        Event::Message { channel, message } => format!("[{channel}] {}", message.get()),
        Event::Error { message } => format!("error from broker: {message}"),
        Event::Pong => "pong".into(),
        Event::Stats(map) => format!("stats {}", serde_json::Value::Object(map.clone())),
        Event::Other { kind } => format!("({kind} message, not understood)"),
    }
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let shutdown = super::shutdown_on_signal();
    let mut client = Client::connect(opts.server.as_str()).await?;
    for channel in &opts.channels {
        client.subscribe(channel).await?;
    }
    let (_sender, mut receiver) = client.split();
    let mut messages = 0;
    let mut stdout = std::io::stdout();
    while opts.count != Some(messages) {
        let line = tokio::select! {
            _ = shutdown.cancelled() => break,
            line = receiver.next_line() => line?.to_vec(),
        };
        let event = crate::protocol::parse_event(&line)?;
        if matches!(event, Event::Message { .. }) {
            messages += 1;
        }
        if opts.raw {
            stdout.write_all(&line)?;
            stdout.write_all(b"\n")?;
        } else {
            writeln!(stdout, "{}", describe(&event))?;
        }
        stdout.flush()?;
    }
    Ok(())
}
