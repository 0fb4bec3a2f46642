//! The `chat` program: listen on channels and publish what is typed, both at once.

use std::collections::BTreeSet;
use std::io::BufRead;

use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::client::{Client, Sender};
use crate::protocol::Event;

/// A two-way chat: prints messages on the channels you joined and publishes each line you type
/// to the current channel.
#[derive(Debug, Parser)]
#[command(
    name = "chat",
    version,
    after_help = "While it runs, type a line to publish it on the current channel, or:\n  \
                  /join CH    subscribe to CH and make it the current channel\n  \
                  /leave CH   unsubscribe from CH\n  \
                  /quit       leave (Ctrl-C and Ctrl-D too)"
)]
pub struct Opts {
    /// Broker address.
    #[arg(long, default_value = super::DEFAULT_SERVER)]
    pub server: String,
    /// Name shown with your messages (default: $USER).
    #[arg(long)]
    pub nick: Option<String>,
    /// Channels to join at start; the last one is where your lines go.
    #[arg(default_value = "lobby")]
    pub channels: Vec<String>,
}

/// What a chat line is published as.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    pub nick: String,
    pub text: String,
}

/// One line typed by the user.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    Join(&'a str),
    Leave(&'a str),
    Quit,
    Help,
    Say(&'a str),
    Nothing,
}

/// Parses a typed line (pure, for testing).
pub fn parse_input(line: &str) -> Input<'_> {
    let line = line.trim();
    let (word, rest) = line
        .split_once(' ')
        .map_or((line, ""), |(w, r)| (w, r.trim()));
    match word {
        "" => Input::Nothing,
        "/join" if !rest.is_empty() => Input::Join(rest),
        "/leave" if !rest.is_empty() => Input::Leave(rest),
        "/quit" | "/exit" => Input::Quit,
        w if w.starts_with('/') => Input::Help,
        _ => Input::Say(line),
    }
}

/// How an incoming message is shown: chat lines as `nick: text`, anything else as its JSON.
pub fn show(channel: &str, message: &serde_json::value::RawValue) -> String {
    match serde_json::from_str::<Line>(message.get()) {
        Ok(line) => format!("[{channel}] {}: {}", line.nick, line.text),
        Err(_) => match serde_json::from_str::<String>(message.get()) {
            Ok(text) => format!("[{channel}] {text}"),
            Err(_) => format!("[{channel}] {}", message.get()),
        },
    }
}

/// Lines typed while the screen is busy wait here. Overflow policy: the stdin reader waits
/// (a person cannot out-type 64 lines), and incoming messages keep flowing meanwhile.
const TYPED_LINES: usize = 64;

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let shutdown = super::shutdown_on_signal();
    let nick = opts
        .nick
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("guest{}", std::process::id()));
    let (mut sender, mut receiver) = Client::connect(opts.server.as_str()).await?.split();
    let mut joined = BTreeSet::new();
    let mut current = None;
    for channel in &opts.channels {
        sender.subscribe(channel).await?;
        joined.insert(channel.clone());
        current = Some(channel.clone());
    }

    // Reading stdin is its own thread, so typing never blocks listening. A plain thread, not
    // `tokio::io::stdin`: that one reads on the runtime's blocking pool, which the runtime
    // waits for on exit, so `/quit` (or Ctrl-C) would hang until the next line was typed.
    let (typed_tx, mut typed) = mpsc::channel::<String>(TYPED_LINES);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if typed_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    println!("connected as {nick}; type to talk, /join CH, /leave CH, /quit");

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = receiver.next_event() => match event? {
                Event::Message { channel, message } => println!("{}", show(&channel, &message)),
                Event::Subscribed { channel, .. } => println!("* joined {channel}"),
                Event::Unsubscribed { channel, .. } => println!("* left {channel}"),
                other => println!("* {}", super::client::describe(&other)),
            },
            line = typed.recv() => {
                let Some(line) = line else { break };
                let state = (&mut joined, &mut current);
                if !handle(&mut sender, &nick, state, parse_input(&line)).await? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Acts on one typed line; returns `false` to quit.
async fn handle(
    sender: &mut Sender,
    nick: &str,
    (joined, current): (&mut BTreeSet<String>, &mut Option<String>),
    input: Input<'_>,
) -> anyhow::Result<bool> {
    match input {
        Input::Quit => return Ok(false),
        Input::Nothing => {}
        Input::Help => println!("* commands: /join CH, /leave CH, /quit"),
        Input::Join(channel) => {
            sender.subscribe(channel).await?;
            joined.insert(channel.to_string());
            *current = Some(channel.to_string());
        }
        Input::Leave(channel) => {
            sender.unsubscribe(channel).await?;
            joined.remove(channel);
            if current.as_deref() == Some(channel) {
                *current = joined.iter().next_back().cloned();
            }
        }
        Input::Say(text) => match current {
            Some(channel) => {
                let line = Line {
                    nick: nick.to_string(),
                    text: text.to_string(),
                };
                sender.publish(channel, &line).await?;
            }
            None => println!("* join a channel first: /join CH"),
        },
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines() {
        assert_eq!(parse_input("/join  news "), Input::Join("news"));
        assert_eq!(parse_input("/leave news"), Input::Leave("news"));
        assert_eq!(parse_input("/quit"), Input::Quit);
        assert_eq!(parse_input("/join"), Input::Help);
        assert_eq!(parse_input("  hello there "), Input::Say("hello there"));
        assert_eq!(parse_input("   "), Input::Nothing);
    }

    #[test]
    fn shows_chat_lines_strings_and_other_json() {
        let raw = |s: &str| serde_json::value::RawValue::from_string(s.into()).unwrap();
        assert_eq!(
            show("c", &raw(r#"{"nick":"ann","text":"hi"}"#)),
            "[c] ann: hi"
        );
        assert_eq!(show("c", &raw(r#""plain""#)), "[c] plain");
        assert_eq!(show("c", &raw(r#"{"seq":1}"#)), r#"[c] {"seq":1}"#);
    }
}
