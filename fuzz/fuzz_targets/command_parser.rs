//! The command parser and the protocol's limits against any frame: never a panic, and what
//! they accept is what the protocol says, checked against serde_json's own reading of the
//! frame.
#![no_main]

use hubbub::protocol::{limits, parse_command, Command, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_channel: 64,
    max_depth: 8,
};

fuzz_target!(|line: &[u8]| {
    let Ok(command) = parse_command(line) else {
        return;
    };
    // Accepted: the frame is a JSON object whose "command" is a string.
    let value = json(line).expect("accepted but not JSON");
    let name = value["command"]
        .as_str()
        .expect("accepted without a string command");
    match &command {
        Command::Subscribe { channel }
        | Command::Unsubscribe { channel }
        | Command::Publish { channel, .. } => {
            assert_eq!(value["args"]["channel"].as_str(), Some(channel.as_ref()));
        }
        Command::Auth { user, password } => {
            assert_eq!(value["args"]["user"].as_str(), Some(user.as_ref()));
            assert_eq!(
                value["args"]["password"].as_str(),
                Some(password.0.as_ref())
            );
        }
        Command::Ping | Command::Stats | Command::Link { .. } => {}
    }
    if let Command::Publish { message, .. } = &command {
        // Relayed byte for byte: it must be one JSON value by itself.
        let relayed = json(message.get().as_bytes()).expect("a message that is not JSON");
        assert_eq!(relayed, value["args"]["message"]);
        // The depth check agrees with a count of the value's own nesting.
        let deep = limits::deeper_than(message.get(), LIMITS.max_depth);
        assert_eq!(
            deep,
            depth(&relayed) > LIMITS.max_depth,
            "{name}: {}",
            message.get()
        );
    }
    let _ = limits::check(&command, &LIMITS);
});

/// `bytes` as one JSON value, however deep (the parser under test has no depth limit of its
/// own, and serde_json's default of 128 levels would refuse what it rightly accepts).
fn json(bytes: &[u8]) -> serde_json::Result<serde_json::Value> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = serde_json::Value::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// How deeply arrays and objects nest in `v`.
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
