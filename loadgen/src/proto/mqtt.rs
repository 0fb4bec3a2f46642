//! MQTT 3.1.1 at QoS 0, the client side.
//!
//! Every packet is a type byte, a remaining length (a little-endian base-128 varint of one to
//! four bytes) and that many bytes. A QoS 0 PUBLISH is the same packet in both directions:
//! a 2-byte topic length, the topic, then the payload up to the end of the packet (no packet
//! id, no acknowledgement). loadgen subscribes at QoS 0, so a server may not deliver at any
//! higher QoS; a packet that does is an error rather than something to acknowledge.
//!
//! Sessions are clean and keep-alive is 0, so the server never expects a PINGREQ.

use super::credentials::Credentials;
use super::{Frame, Parsed, Proto, ProtoError, MAX_FRAME};

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const PINGRESP: u8 = 13;

/// The largest remaining length four varint bytes can say.
const MAX_REMAINING: usize = 268_435_455;

/// The packet id of every SUBSCRIBE: a connection waits for each SUBACK before it subscribes
/// again, so one id never has two subscriptions in flight.
const SUBSCRIBE_ID: u16 = 1;

fn malformed(what: &'static str) -> ProtoError {
    ProtoError::Malformed {
        proto: Proto::Mqtt,
        what,
    }
}

fn refused(message: String) -> ProtoError {
    ProtoError::Server {
        proto: Proto::Mqtt,
        message,
    }
}

/// Parses the first packet in `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (mut len, mut shift, mut at) = (0usize, 0, 1);
    loop {
        let Some(&b) = buf.get(at) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << shift;
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if at == 5 {
            return Err(malformed("a remaining length of more than four bytes"));
        }
    }
    if len > MAX_FRAME {
        return Err(ProtoError::TooLong {
            proto: Proto::Mqtt,
            len,
        });
    }
    let end = at + len;
    let Some(body) = buf.get(at..end) else {
        return Ok(None);
    };
    let frame = match first >> 4 {
        PUBLISH => {
            if first & 0b0110 != 0 {
                return Err(malformed(
                    "a PUBLISH above QoS 0 (loadgen subscribes at QoS 0)",
                ));
            }
            let [hi, lo, rest @ ..] = body else {
                return Err(malformed("a PUBLISH without a topic"));
            };
            let topic = usize::from(u16::from_be_bytes([*hi, *lo]));
            Frame::Message(
                rest.get(topic..)
                    .ok_or(malformed("a PUBLISH shorter than its topic"))?,
            )
        }
        CONNACK => match body {
            [_, 0] => Frame::Hello,
            [_, code] => {
                return Err(refused(format!(
                    "CONNACK refused the connection: {}",
                    connack_reason(*code)
                )))
            }
            _ => return Err(malformed("a CONNACK that is not 2 bytes")),
        },
        SUBACK => match body {
            [_, _, codes @ ..] if !codes.is_empty() => {
                if codes.contains(&0x80) {
                    return Err(refused("SUBACK refused the subscription".into()));
                }
                Frame::Subscribed
            }
            _ => return Err(malformed("a SUBACK without return codes")),
        },
        PINGRESP => Frame::Pong,
        _ => Frame::Other,
    };
    Ok(Some((frame, end)))
}

fn connack_reason(code: u8) -> String {
    let why = match code {
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    };
    format!("{why} ({code})")
}

/// Appends a remaining length.
fn push_remaining(out: &mut Vec<u8>, mut len: usize) {
    assert!(len <= MAX_REMAINING, "an MQTT packet of {len} bytes");
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a length-prefixed string.
fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).expect("an MQTT string is at most 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT: protocol "MQTT" level 4 (3.1.1), clean session, keep-alive 0, no will, no
/// credentials.
pub fn connect(client_id: &str) -> Vec<u8> {
    connect_as(client_id, &Credentials::NONE)
}

/// [`connect`] presenting `auth`: the user name and password flags, and the two strings
/// after the client id (a password only with a user: 3.1.1 allows no password alone).
pub fn connect_as(client_id: &str, auth: &Credentials) -> Vec<u8> {
    let user = auth.user.as_deref().map(str::as_bytes);
    let password = user.and(auth.password.as_deref()).map(str::as_bytes);
    let mut flags = 0b0000_0010; // clean session
    let mut extra = 0;
    if let Some(u) = user {
        flags |= 0b1000_0000;
        extra += 2 + u.len();
    }
    if let Some(p) = password {
        flags |= 0b0100_0000;
        extra += 2 + p.len();
    }
    let mut out = vec![CONNECT << 4];
    push_remaining(&mut out, 10 + 2 + client_id.len() + extra);
    push_str(&mut out, b"MQTT");
    out.push(4); // protocol level
    out.push(flags);
    out.extend_from_slice(&0u16.to_be_bytes()); // keep-alive off
    push_str(&mut out, client_id.as_bytes());
    for s in [user, password].into_iter().flatten() {
        push_str(&mut out, s);
    }
    out
}

/// SUBSCRIBE to one topic at QoS 0.
pub fn encode_subscribe(out: &mut Vec<u8>, channel: &str) {
    out.push(SUBSCRIBE << 4 | 0b0010); // the flags 3.1.1 requires
    push_remaining(out, 2 + 2 + channel.len() + 1);
    out.extend_from_slice(&SUBSCRIBE_ID.to_be_bytes());
    push_str(out, channel.as_bytes());
    out.push(0); // QoS 0
}

/// PUBLISH at QoS 0, not retained.
pub fn encode_publish(out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    out.push(PUBLISH << 4);
    push_remaining(out, 2 + channel.len() + payload.len());
    push_str(out, channel.as_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_every_split, feed_error};
    use super::*;

    #[test]
    fn remaining_lengths_at_every_width() {
        for (len, wire) in [
            (0, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING, &[0xff, 0xff, 0xff, 0x7f]),
        ] {
            let mut out = Vec::new();
            push_remaining(&mut out, len);
            assert_eq!(out, wire, "{len}");
        }
    }

    #[test]
    fn publish_round_trips_at_every_length_width() {
        // A QoS 0 PUBLISH reaches subscribers as it was sent.
        let mut wire = Vec::new();
        let mut want = Vec::new();
        let mut small = 0;
        // Remaining lengths (3 + size) of 3, 8, 127, 128, 203, 16383, 16384 and 20003 bytes.
        for size in [0, 5, 124, 125, 200, 16_380, 16_381, 20_000] {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            encode_publish(&mut wire, "c", &payload);
            want.push(payload);
            if size == 200 {
                small = wire.len();
            }
        }
        let want: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
        // Splitting 37 kB at every byte is slow in debug builds: the small packets are split
        // at every byte, and the whole sequence fed byte by byte.
        check_every_split(Proto::Mqtt, &wire[..small], &want[..5], b"");
        let (got, _) = super::super::testing::feed_bytewise(Proto::Mqtt, &wire);
        assert_eq!(got, want);
    }

    #[test]
    fn several_packets_of_every_kind_in_one_buffer() {
        let mut wire = vec![0x20, 2, 0, 0]; // CONNACK accepted
        wire.extend_from_slice(&[0x90, 3, 0, 1, 0]); // SUBACK QoS 0
        encode_publish(&mut wire, "c", b"1:0:x");
        wire.extend_from_slice(&[0xd0, 0]); // PINGRESP
        wire.extend_from_slice(&[0x31, 8, 0, 1, b'c', b'2', b':', b'1', b':', b'x']); // retained
        wire.extend_from_slice(&[0xb0, 2, 0, 1]); // UNSUBACK
        encode_publish(&mut wire, "ch/with/levels", b"3:2:x");
        check_every_split(Proto::Mqtt, &wire, &[b"1:0:x", b"2:1:x", b"3:2:x"], b"");
        assert_eq!(parse(&[0x20, 2, 0, 0]).unwrap(), Some((Frame::Hello, 4)));
        assert_eq!(
            parse(&[0x90, 3, 0, 1, 0]).unwrap(),
            Some((Frame::Subscribed, 5))
        );
    }

    #[test]
    fn client_packets_are_well_formed() {
        let connect = connect("sub-7");
        assert_eq!(
            connect,
            [
                &[0x10, 17, 0, 4][..],
                b"MQTT",
                &[4, 2, 0, 0, 0, 5],
                b"sub-7"
            ]
            .concat()
        );
        let mut sub = Vec::new();
        encode_subscribe(&mut sub, "c");
        assert_eq!(sub, [0x82, 6, 0, 1, 0, 1, b'c', 0]);
    }

    #[test]
    fn refusals_and_malformed_packets() {
        match feed_error(Proto::Mqtt, &[0x20, 2, 0, 2]) {
            ProtoError::Server { message, .. } => assert!(message.contains("identifier")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            feed_error(Proto::Mqtt, &[0x90, 3, 0, 1, 0x80]),
            ProtoError::Server { .. }
        ));
        for junk in [
            &[0x32, 5, 0, 1, b'c', 0, 1][..], // QoS 1
            &[0x30, 1, 0],
            &[0x30, 3, 0, 5, b'c'],
            &[0x20, 1, 0],
            &[0x90, 2, 0, 1],
            &[0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
        ] {
            assert!(
                matches!(feed_error(Proto::Mqtt, junk), ProtoError::Malformed { .. }),
                "{junk:?}"
            );
        }
        assert!(matches!(
            parse(&[0x30, 0xff, 0xff, 0xff, 0x7f]),
            Err(ProtoError::TooLong { .. })
        ));
    }
}
