//! NATS core, the client side of its text protocol.
//!
//! The server sends `INFO {...}` on connect, then `MSG <subject> <sid> [reply-to] <#bytes>`
//! followed by the payload for every delivery, `PING` (which a client must answer with
//! `PONG`, or be disconnected as stale), `PONG`, `+OK` and `-ERR '<why>'`. loadgen connects
//! with `verbose: false` (no `+OK` after every command) and `echo: false` (a connection never
//! receives what it published itself).
//!
//! NATS does not confirm a SUB. A PING sent after it is answered in order, so its PONG is
//! the confirmation; that is what [`super::Proto::subscribe`] waits for.

use super::credentials::Credentials;
use super::{parse_decimal, push_decimal, Frame, Parsed, Proto, ProtoError, MAX_FRAME};

/// A client's ping (and the server's).
pub const PING: &[u8] = b"PING\r\n";
/// The answer to a ping.
pub const PONG: &[u8] = b"PONG\r\n";

fn malformed(what: &'static str) -> ProtoError {
    ProtoError::Malformed {
        proto: Proto::Nats,
        what,
    }
}

/// Parses the first operation in `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_FRAME {
            return Err(ProtoError::TooLong {
                proto: Proto::Nats,
                len: buf.len(),
            });
        }
        return Ok(None);
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = &line[line.iter().take_while(|b| blank(b)).count()..];
    let (op, rest) = line.split_at(line.iter().position(blank).unwrap_or(line.len()));
    let args = rest.split(blank).filter(|arg| !arg.is_empty());
    let next = nl + 1;
    let is = |name: &[u8]| op.eq_ignore_ascii_case(name);
    if is(b"MSG") || is(b"HMSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
        let mut sizes = [0usize; 5];
        let mut count = 0;
        for arg in args {
            if count == sizes.len() {
                return Err(malformed("a MSG with too many arguments"));
            }
            // Only the trailing sizes need to be numbers; the subject and sid are skipped.
            sizes[count] = parse_decimal(arg).unwrap_or(usize::MAX);
            count += 1;
        }
        let (headers, total) = match (is(b"HMSG"), count) {
            (false, 3 | 4) => (0, sizes[count - 1]),
            (true, 4 | 5) => (sizes[count - 2], sizes[count - 1]),
            _ => return Err(malformed("a MSG with the wrong number of arguments")),
        };
        if total == usize::MAX || headers > total {
            return Err(malformed("a MSG whose sizes are not numbers"));
        }
        if total > MAX_FRAME {
            return Err(ProtoError::TooLong {
                proto: Proto::Nats,
                len: total,
            });
        }
        let end = next + total;
        return match buf.get(end..end + 2) {
            None => Ok(None),
            Some(b"\r\n") => Ok(Some((Frame::Message(&buf[next + headers..end]), end + 2))),
            Some(_) => Err(malformed("a MSG payload longer than its size")),
        };
    }
    let frame = if is(b"PING") {
        Frame::Reply(PONG)
    } else if is(b"PONG") {
        Frame::Pong
    } else if is(b"INFO") {
        Frame::Hello
    } else if is(b"+OK") {
        Frame::Other
    } else if is(b"-ERR") {
        let why = rest.trim_ascii();
        let why = why
            .strip_prefix(b"'")
            .and_then(|w| w.strip_suffix(b"'"))
            .unwrap_or(why);
        return Err(ProtoError::Server {
            proto: Proto::Nats,
            message: String::from_utf8_lossy(why).into_owned(),
        });
    } else {
        return Err(malformed("an unknown operation"));
    };
    Ok(Some((frame, next)))
}

/// `CONNECT {...}` then `PING`: the client's half of the handshake.
pub fn connect(client_id: &str) -> Vec<u8> {
    connect_as(client_id, &Credentials::NONE)
}

/// [`connect`] presenting `auth`: `user` and `pass`, or `auth_token`, in CONNECT's options.
pub fn connect_as(client_id: &str, auth: &Credentials) -> Vec<u8> {
    let mut options = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "echo": false,
        "tls_required": false,
        "headers": false,
        "no_responders": false,
        "protocol": 1,
        "name": client_id,
        "lang": "rust-loadgen",
        "version": env!("CARGO_PKG_VERSION"),
    });
    let fields = [
        ("user", &auth.user),
        ("pass", &auth.password),
        ("auth_token", &auth.token),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            options[key] = value.as_str().into();
        }
    }
    let mut out = b"CONNECT ".to_vec();
    serde_json::to_writer(&mut out, &options).expect("options encode");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(PING);
    out
}

/// `SUB <channel> <sid>`. The sid is the channel itself: unique per subscription on the
/// connection (a repeated sid is ignored by the server), and never needs a counter.
pub fn encode_subscribe(out: &mut Vec<u8>, channel: &str) {
    debug_assert!(!channel.contains(char::is_whitespace), "a NATS subject");
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(channel.as_bytes());
    out.push(b' ');
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `PUB <channel> <#bytes>\r\n<payload>\r\n`.
pub fn encode_publish(out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    debug_assert!(!channel.contains(char::is_whitespace), "a NATS subject");
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(channel.as_bytes());
    out.push(b' ');
    push_decimal(out, payload.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_every_split, feed_error};
    use super::*;

    /// What the server delivers for a PUB, as a subscriber with `sid` sees it.
    fn relay(publish: &[u8], sid: &str) -> Vec<u8> {
        let nl = memchr::memchr(b'\n', publish).unwrap();
        let head = std::str::from_utf8(&publish[..nl - 1]).unwrap();
        let mut parts = head.split(' ');
        assert_eq!(parts.next(), Some("PUB"));
        let (subject, size) = (parts.next().unwrap(), parts.next().unwrap());
        let mut out = format!("MSG {subject} {sid} {size}\r\n").into_bytes();
        out.extend_from_slice(&publish[nl + 1..]);
        out
    }

    #[test]
    fn publish_round_trips_through_a_delivery() {
        let mut out = Vec::new();
        encode_publish(&mut out, "c", b"5:1:xx");
        assert_eq!(out, b"PUB c 6\r\n5:1:xx\r\n");
        check_every_split(Proto::Nats, &relay(&out, "c"), &[b"5:1:xx"], b"");
        // Payloads are opaque bytes: line ends inside one do not confuse the framing.
        let mut out = Vec::new();
        encode_publish(&mut out, "ch.1", b"a\r\nMSG x 1 1\r\n");
        check_every_split(
            Proto::Nats,
            &relay(&out, "7"),
            &[b"a\r\nMSG x 1 1\r\n"],
            b"",
        );
        let mut out = Vec::new();
        encode_subscribe(&mut out, "ch-3");
        assert_eq!(out, b"SUB ch-3 ch-3\r\n");
    }

    #[test]
    fn several_operations_in_one_buffer_and_pings_answered() {
        let wire = b"INFO {\"server_id\":\"x\",\"proto\":1}\r\n+OK\r\nMSG c c 5\r\n1:0:x\r\n\
            PING\r\nmsg c 1 inbox.1 5\r\n2:1:x\r\nPONG\r\nMSG  c\t1 0\r\n\r\n\
            HMSG c 1 12 17\r\nNATS/1.0\r\n\r\n3:2:x\r\nping\r\n";
        check_every_split(
            Proto::Nats,
            wire,
            &[b"1:0:x", b"2:1:x", b"", b"3:2:x"],
            b"PONG\r\nPONG\r\n",
        );
        assert_eq!(parse(b"PONG\r\n").unwrap(), Some((Frame::Pong, 6)));
        assert_eq!(parse(b"INFO {}\r\n").unwrap(), Some((Frame::Hello, 9)));
    }

    #[test]
    fn connect_asks_for_no_echo_and_no_acks() {
        let connect = connect("sub-1");
        let text = std::str::from_utf8(&connect).unwrap();
        let json = text
            .strip_prefix("CONNECT ")
            .and_then(|t| t.strip_suffix("\r\nPING\r\n"))
            .unwrap();
        let options: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(options["echo"], false);
        assert_eq!(options["verbose"], false);
        assert_eq!(options["name"], "sub-1");
    }

    #[test]
    fn errors_and_malformed_operations() {
        match feed_error(
            Proto::Nats,
            b"+OK\r\n-ERR 'Maximum Connections Exceeded'\r\n",
        ) {
            ProtoError::Server { message, .. } => {
                assert_eq!(message, "Maximum Connections Exceeded")
            }
            other => panic!("{other:?}"),
        }
        for junk in [
            &b"WHAT\r\n"[..],
            b"MSG c 1\r\n",
            b"MSG c 1 x\r\nabc\r\n",
            b"MSG c 1 2\r\nabc\r\n",
            b"HMSG c 1 9 5\r\n12345\r\n",
            b"MSG a b c d e 1\r\nx\r\n",
        ] {
            assert!(
                matches!(feed_error(Proto::Nats, junk), ProtoError::Malformed { .. }),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        assert!(matches!(
            parse(b"MSG c 1 999999999\r\n"),
            Err(ProtoError::TooLong { .. })
        ));
    }
}
