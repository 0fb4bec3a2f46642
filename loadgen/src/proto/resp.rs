//! Redis pub/sub over RESP2.
//!
//! A subscribed connection receives arrays of bulk strings:
//! `*3\r\n$7\r\nmessage\r\n$<n>\r\n<channel>\r\n$<m>\r\n<payload>\r\n` for a message and
//! `*3\r\n$9\r\nsubscribe\r\n$<n>\r\n<channel>\r\n:<count>\r\n` for the confirmation. A
//! publishing connection receives `:<receivers>\r\n` for every PUBLISH. In RESP2 a subscribed
//! connection may not PUBLISH, so publishers and subscribers are always separate connections.

use super::{parse_decimal, push_decimal, Frame, Parsed, Proto, ProtoError, MAX_FRAME};

/// Arrays nest no deeper than this (pub/sub replies do not nest at all).
const MAX_DEPTH: usize = 8;

fn malformed(what: &'static str) -> ProtoError {
    ProtoError::Malformed {
        proto: Proto::Redis,
        what,
    }
}

/// Parses the first reply in `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let parsed = reply(buf)?;
    if parsed.is_none() && buf.len() > MAX_FRAME {
        // An array's elements are each within bounds, but not their number.
        return Err(ProtoError::TooLong {
            proto: Proto::Redis,
            len: buf.len(),
        });
    }
    Ok(parsed)
}

fn reply(buf: &[u8]) -> Parsed<'_> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        b'*' => array(buf),
        b'-' => match line(buf, 0)? {
            None => Ok(None),
            Some((text, _)) => Err(ProtoError::Server {
                proto: Proto::Redis,
                message: String::from_utf8_lossy(&text[1..]).into_owned(),
            }),
        },
        b'+' | b':' | b'$' => Ok(element(buf, 0, 0)?.map(|(text, end)| {
            let frame = if text.eq_ignore_ascii_case(b"pong") {
                Frame::Pong
            } else if kind == b'+' && text == b"OK" {
                // The reply to AUTH, the one command loadgen sends that Redis answers so.
                Frame::Hello
            } else {
                Frame::Other
            };
            (frame, end)
        })),
        _ => Err(malformed("a reply that starts with none of + - : $ *")),
    }
}

/// A top-level array: a pub/sub event, or a reply to some other command.
fn array(buf: &[u8]) -> Parsed<'_> {
    let Some((header, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let count = match &header[1..] {
        b"-1" => return Ok(Some((Frame::Other, at))),
        digits => parse_decimal(digits).ok_or(malformed("an array length that is not a number"))?,
    };
    // The first element says what the array is; a message's payload is its last.
    let (mut kind, mut last): (&[u8], &[u8]) = (b"", b"");
    for i in 0..count {
        let Some((text, end)) = element(buf, at, 1)? else {
            return Ok(None);
        };
        if i == 0 {
            kind = text;
        }
        last = text;
        at = end;
    }
    Ok(Some((classify(count, kind, last), at)))
}

fn classify<'a>(count: usize, kind: &[u8], last: &'a [u8]) -> Frame<'a> {
    let is = |name: &[u8]| kind.eq_ignore_ascii_case(name);
    match count {
        3 if is(b"message") || is(b"smessage") => Frame::Message(last),
        4 if is(b"pmessage") => Frame::Message(last),
        3 if is(b"subscribe") || is(b"psubscribe") || is(b"ssubscribe") => Frame::Subscribed,
        2 if is(b"pong") => Frame::Pong,
        _ => Frame::Other,
    }
}

/// One element starting at `at`: a bulk string's bytes, a simple string's, error's or
/// integer's text (without its type byte), or nothing for a nested array or a null. Returns
/// where the next element starts.
fn element(buf: &[u8], at: usize, depth: usize) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let Some((header, next)) = line(buf, at)? else {
        return Ok(None);
    };
    match header[0] {
        b'+' | b'-' | b':' => Ok(Some((&header[1..], next))),
        b'$' => {
            let len = match &header[1..] {
                b"-1" => return Ok(Some((b"", next))),
                digits => {
                    parse_decimal(digits).ok_or(malformed("a bulk length that is not a number"))?
                }
            };
            if len > MAX_FRAME {
                return Err(ProtoError::TooLong {
                    proto: Proto::Redis,
                    len,
                });
            }
            let end = next + len;
            match buf.get(end..end + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((&buf[next..end], end + 2))),
                Some(_) => Err(malformed("a bulk string longer than its length")),
            }
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(malformed("arrays nested too deep"));
            }
            let count = match &header[1..] {
                b"-1" => 0,
                digits => parse_decimal(digits)
                    .ok_or(malformed("an array length that is not a number"))?,
            };
            let mut at = next;
            for _ in 0..count {
                let Some((_, end)) = element(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                at = end;
            }
            Ok(Some((b"", at)))
        }
        _ => Err(malformed("an element that starts with none of + - : $ *")),
    }
}

/// The line starting at `at`, without its `\r\n`, and where the next one starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
        if buf.len() - at > MAX_FRAME {
            return Err(ProtoError::TooLong {
                proto: Proto::Redis,
                len: buf.len() - at,
            });
        }
        return Ok(None);
    };
    match buf[at..at + nl].strip_suffix(b"\r") {
        Some(text) if !text.is_empty() => Ok(Some((text, at + nl + 1))),
        _ => Err(malformed("a line that does not end in \\r\\n")),
    }
}

/// Appends a command as an array of bulk strings.
fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `SUBSCRIBE <channel>`.
pub fn encode_subscribe(out: &mut Vec<u8>, channel: &str) {
    push_command(out, &[b"SUBSCRIBE", channel.as_bytes()]);
}

/// `AUTH <user> <password>` (Redis 6's ACL form), or `AUTH <password>` without a user.
pub fn encode_auth(out: &mut Vec<u8>, user: Option<&str>, password: &str) {
    match user {
        Some(user) => push_command(out, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
        None => push_command(out, &[b"AUTH", password.as_bytes()]),
    }
}

/// `PUBLISH <channel> <payload>`.
pub fn encode_publish(out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    push_command(out, &[b"PUBLISH", channel.as_bytes(), payload]);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_every_split, feed_error};
    use super::*;

    /// What Redis sends a subscriber for one message.
    fn message(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_command(&mut out, &[b"message", channel, payload]);
        out
    }

    /// Decodes an array of bulk strings with the parser's own element reader.
    fn decode_command(wire: &[u8]) -> Vec<Vec<u8>> {
        let (header, mut at) = line(wire, 0).unwrap().unwrap();
        let count = parse_decimal(&header[1..]).unwrap();
        let mut args = Vec::new();
        for _ in 0..count {
            let (arg, end) = element(wire, at, 1).unwrap().unwrap();
            args.push(arg.to_vec());
            at = end;
        }
        assert_eq!(at, wire.len());
        args
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_publish(&mut out, "c", b"12:3:xx");
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$7\r\n12:3:xx\r\n");
        let payload = vec![b'\n'; 300];
        let mut out = Vec::new();
        encode_publish(&mut out, "ch-10", &payload);
        assert_eq!(
            decode_command(&out),
            [b"PUBLISH".to_vec(), b"ch-10".to_vec(), payload]
        );
        let mut out = Vec::new();
        encode_subscribe(&mut out, "d");
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nd\r\n");
    }

    #[test]
    fn payloads_come_back_whatever_the_split() {
        // What a publisher's command carries is what a subscriber's message carries.
        let mut publish = Vec::new();
        encode_publish(&mut publish, "c", b"99:1:x\r\n$3");
        let sent = decode_command(&publish);
        check_every_split(
            Proto::Redis,
            &message(&sent[1], &sent[2]),
            &[b"99:1:x\r\n$3"],
            b"",
        );
    }

    #[test]
    fn several_replies_of_every_kind_in_one_buffer() {
        let mut wire = Vec::new();
        wire.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
        wire.extend_from_slice(&message(b"c", b"1:0:x"));
        wire.extend_from_slice(b":3\r\n+OK\r\n$-1\r\n*-1\r\n$0\r\n\r\n");
        wire.extend_from_slice(b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$1\r\nc\r\n$5\r\n2:1:x\r\n");
        wire.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        wire.extend_from_slice(b"*2\r\n*2\r\n:1\r\n$1\r\na\r\n*0\r\n");
        wire.extend_from_slice(&message(b"c", b""));
        wire.extend_from_slice(b"*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$5\r\n3:2:x\r\n");
        check_every_split(
            Proto::Redis,
            &wire,
            &[b"1:0:x", b"2:1:x", b"", b"3:2:x"],
            b"",
        );
        assert_eq!(
            parse(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n").unwrap(),
            Some((Frame::Subscribed, 30))
        );
    }

    #[test]
    fn errors_and_malformed_replies() {
        match feed_error(Proto::Redis, b":1\r\n-ERR unknown command 'x'\r\n") {
            ProtoError::Server { message, .. } => assert_eq!(message, "ERR unknown command 'x'"),
            other => panic!("{other:?}"),
        }
        for junk in [
            &b"?x\r\n"[..],
            b":1\n",
            b"*x\r\n",
            b"$3\r\nabcd\r\n",
            b"*1\r\n!x\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(
                matches!(feed_error(Proto::Redis, junk), ProtoError::Malformed { .. }),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        assert!(matches!(
            parse(b"$999999999\r\n"),
            Err(ProtoError::TooLong { .. })
        ));
        let mut endless = b"*100000000\r\n".to_vec();
        endless.extend(std::iter::repeat(b":1\r\n").take(MAX_FRAME / 4).flatten());
        assert!(matches!(parse(&endless), Err(ProtoError::TooLong { .. })));
    }
}
