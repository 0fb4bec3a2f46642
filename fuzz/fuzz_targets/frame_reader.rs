//! The frame reader against any bytes, split into any chunks: it never panics, never hands
//! back a line longer than its maximum or holding a newline, and delivers exactly the
//! complete non-empty lines of the stream (the ones a one-pass split finds), in order, up to
//! the first line that is too long.
#![no_main]

use hubbub::frame::LineReader;
use libfuzzer_sys::fuzz_target;

// The first byte sets the maximum (1–256), the second the chunk size (1–256), the rest is the
// stream.
fuzz_target!(|data: &[u8]| {
    let [max, chunk, stream @ ..] = data else {
        return;
    };
    let (max, chunk) = (usize::from(*max) + 1, usize::from(*chunk) + 1);
    let mut reader = LineReader::new(max);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut too_long = false;
    for piece in stream.chunks(chunk) {
        if reader
            .feed(piece, |line| {
                assert!(
                    line.len() <= max,
                    "a line of {} past the maximum {max}",
                    line.len()
                );
                assert!(!line.contains(&b'\n'));
                got.push(line.to_vec());
            })
            .is_err()
        {
            too_long = true;
            break;
        }
    }
    // What a one-pass split of the whole stream gives, up to the first line that is too long.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut complete = stream.split(|&b| b == b'\n').collect::<Vec<_>>();
    complete.pop(); // after the last newline: not a complete line
    for line in complete {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max {
            break;
        }
        if !line.is_empty() {
            expected.push(line.to_vec());
        }
    }
    if too_long {
        assert!(got.len() <= expected.len() && expected[..got.len()] == got[..]);
    } else {
        assert_eq!(got, expected);
    }
});
