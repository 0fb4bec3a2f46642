//! What a coordinator and an agent say before the relay starts: one JSON object per line.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bumped when these messages or the worker protocol change: an agent and a coordinator of
/// different builds refuse each other by name instead of misreading each other.
pub const VERSION: u32 = 1;

/// The longest line either side reads before the relay (a hello with its token): an
/// unauthenticated peer cannot make the agent buffer more.
pub const MAX_LINE: usize = 4096;

/// Coordinator → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToAgent {
    /// First, always.
    Hello { token: String, version: u32 },
    /// Answered with the agent's raw monotonic clock.
    Clock,
    /// Start a worker allowed `max_files` open files and relay this connection to it.
    Worker { max_files: u64 },
}

/// Agent → coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromAgent {
    Welcome(HostInfo),
    Refused { why: String },
    Clock { now_ns: u64 },
}

/// What the coordinator needs to know of an agent's host to size and report its workers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host's name (a container's is its id, unless given a hostname).
    pub host: String,
    /// The open-files hard limit an agent's workers get.
    pub nofile_hard: u64,
    pub cores: usize,
    /// Ephemeral ports per destination (the size of ip_local_port_range).
    pub ephemeral_ports: u64,
    /// loadgen's version there.
    pub version: String,
}

/// Writes `msg` as one JSON line.
pub async fn write_message<T: Serialize>(
    write: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    Ok(())
}

/// Reads one message, a line of at most [`MAX_LINE`] bytes; `None` when the peer closed the
/// connection between messages.
pub async fn read_message<T: DeserializeOwned>(
    read: &mut (impl AsyncBufRead + Unpin),
) -> anyhow::Result<Option<T>> {
    let mut line = Vec::new();
    let n = (&mut *read)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        anyhow::bail!("a line longer than {MAX_LINE} bytes, or cut short");
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("the token file {path} holds {len} characters on its first line; at least 16 are needed (scripts/images.sh makes one)")]
    TooShort { path: String, len: usize },
}

/// The token: the first line of `path`, trimmed; at least 16 characters.
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(TokenError::TooShort {
            path: path.display().to_string(),
            len: token.len(),
        });
    }
    Ok(token)
}

/// Whether `given` is the token, in time that does not depend on where they first differ
/// (written out here: six lines, against a dependency for one comparison).
pub fn token_matches(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= usize::from(x ^ a.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_lines() {
        let hello = ToAgent::Hello {
            token: "t".into(),
            version: VERSION,
        };
        let line = serde_json::to_string(&hello).unwrap();
        assert_eq!(line, r#"{"op":"hello","token":"t","version":1}"#);
        assert_eq!(serde_json::from_str::<ToAgent>(&line).unwrap(), hello);
        let line = serde_json::to_string(&FromAgent::Clock { now_ns: 5 }).unwrap();
        assert_eq!(line, r#"{"op":"clock","now_ns":5}"#);
    }

    #[test]
    fn only_the_whole_token_matches() {
        let token = "0123456789abcdef";
        assert!(token_matches(token, token));
        for other in [
            "",
            "0123456789abcde",
            "0123456789abcdefg",
            "1123456789abcdef",
            "0123456789abcdeF",
        ] {
            assert!(!token_matches(other, token), "{other}");
        }
    }

    #[test]
    fn a_short_or_missing_token_file_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("loadgen-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let err = read_token(&short).unwrap_err().to_string();
        assert!(err.contains("holds 3 characters"), "{err}");
        let good = dir.join("good");
        std::fs::write(&good, "  0123456789abcdef  \nsecond line\n").unwrap();
        assert_eq!(read_token(&good).unwrap(), "0123456789abcdef");
        let err = read_token(&dir.join("none")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the token file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
