//! The per-command limits a client's frame is held to, past what the grammar says: how long a
//! channel name may be and how deeply a message may nest. Pure, like the rest of the protocol;
//! the broker applies them to every parsed command (the connection applies the one limit that
//! needs its state, subscriptions per connection).
//!
//! Why they exist: a channel name is stored once per channel and copied into every MESSAGE
//! frame on it, so 400 subscriptions to 500 KB names cost 612 MB and a 1-byte message a 512 KB
//! frame; and a message nested half a million levels deep was relayed whole, to subscribers
//! whose JSON parsers (serde_json's among them, at 128 levels) refuse it.

use super::command::{Command, ProtocolError};

/// What a command is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest channel name, in bytes.
    pub max_channel: usize,
    /// Deepest nesting of arrays and objects inside a PUBLISH's message.
    pub max_depth: usize,
}

/// Refuses `command` if it passes a limit, with the ERROR the client is to be sent.
pub fn check(command: &Command<'_>, limits: &Limits) -> Result<(), ProtocolError> {
    let (verb, channel) = match command {
        Command::Subscribe { channel } => ("SUBSCRIBE", channel),
        Command::Unsubscribe { channel } => ("UNSUBSCRIBE", channel),
        Command::Publish { channel, .. } => ("PUBLISH", channel),
        Command::Ping | Command::Stats | Command::Link { .. } | Command::Auth { .. } => {
            return Ok(())
        }
    };
    if channel.len() > limits.max_channel {
        return Err(ProtocolError::ChannelTooLong(verb, limits.max_channel));
    }
    if let Command::Publish { message, .. } = command {
        if deeper_than(message.get(), limits.max_depth) {
            return Err(ProtocolError::TooDeep(limits.max_depth));
        }
    }
    Ok(())
}

/// Whether `json` (valid JSON) nests arrays and objects more than `max` deep. One pass over
/// the bytes, stopping as soon as it knows; a scalar is not scanned at all.
pub fn deeper_than(json: &str, max: usize) -> bool {
    if !json.trim_start().starts_with(['[', '{']) {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_command;

    const LIMITS: Limits = Limits {
        max_channel: 8,
        max_depth: 3,
    };

    fn checked(line: &str) -> Result<(), String> {
        check(&parse_command(line.as_bytes()).unwrap(), &LIMITS).map_err(|e| e.to_string())
    }

    #[test]
    fn measures_nesting_outside_strings_only() {
        assert!(!deeper_than(r#"[[[1]]]"#, 3));
        assert!(deeper_than(r#"[[[[1]]]]"#, 3));
        assert!(!deeper_than(r#"{"a":[{"b":1}],"c":[2]}"#, 3));
        assert!(deeper_than(r#"{"a":[{"b":[1]}]}"#, 3));
        // Brackets and escaped quotes inside strings are text, not structure.
        assert!(!deeper_than(r#"["[[[[\"[[[[", "{{{{"]"#, 1));
        assert!(!deeper_than(r#""[[[[[[""#, 0));
        assert!(!deeper_than("12345", 0));
    }

    #[test]
    fn refuses_a_long_channel_or_a_deep_message_with_its_limit() {
        assert_eq!(
            checked(r#"{"command":"SUBSCRIBE","args":{"channel":"123456789"}}"#),
            Err(r#"SUBSCRIBE: "args.channel" is longer than the maximum of 8 bytes"#.into())
        );
        assert_eq!(
            checked(r#"{"command":"UNSUBSCRIBE","args":{"channel":"12345678"}}"#),
            Ok(())
        );
        assert_eq!(
            checked(r#"{"command":"PUBLISH","args":{"channel":"c","message":[[[[0]]]]}}"#),
            Err(r#"PUBLISH: "args.message" is nested deeper than the maximum of 3 levels"#.into())
        );
        assert_eq!(
            checked(r#"{"command":"PUBLISH","args":{"channel":"c","message":[[["[[[["]]]}}"#),
            Ok(())
        );
        assert_eq!(checked(r#"{"command":"PING"}"#), Ok(()));
    }
}
