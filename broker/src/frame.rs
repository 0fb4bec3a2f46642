//! Newline framing, pure and separate from socket I/O.
//!
//! [`LineReader`] turns arbitrary chunks of bytes (one byte at a time, or many frames in one
//! read) into complete lines. It owns only the bytes of a frame that has not ended yet, and
//! holds no buffer at all between frames: an idle connection costs nothing here, which matters
//! when one broker holds tens of thousands of them.

use thiserror::Error;

/// A frame grew past the configured maximum before its newline arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("frame longer than the maximum of {max} bytes")]
pub struct FrameTooLong {
    /// The configured maximum frame length, in bytes, not counting the line ending.
    pub max: usize,
}

/// Splits a byte stream into lines of at most `max` bytes.
///
/// Lines end in `\n`; a `\r` before it is dropped; empty lines are skipped, as the protocol
/// asks.
#[derive(Debug)]
pub struct LineReader {
    /// The start of a frame whose newline has not arrived yet. Bounded by `max + 1` bytes
    /// (the `+ 1` leaves room for a `\r` that may turn out to be part of a `\r\n`).
    partial: Vec<u8>,
    max: usize,
}

impl LineReader {
    /// A reader that refuses frames longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            max,
        }
    }

    /// Bytes held for an unfinished frame.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Bytes of memory held for an unfinished frame (what the broker's budget counts).
    pub fn held(&self) -> usize {
        self.partial.capacity()
    }

    /// Feeds `data` in, calling `on_line` with each complete, non-empty line (without its line
    /// ending). Bytes after the last newline are kept for the next call.
    ///
    /// On [`FrameTooLong`] the stream is beyond repair (the reader cannot tell where the next
    /// frame starts), so the caller should close it; lines before the long one were delivered.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on_line: impl FnMut(&[u8]),
    ) -> Result<(), FrameTooLong> {
        let mut rest = data;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', rest) {
                None => {
                    if self.partial.len() + rest.len() > self.max + 1 {
                        return Err(self.too_long());
                    }
                    self.keep(rest);
                    return Ok(());
                }
                Some(i) => {
                    // Drop the buffer once the frame is complete: idle connections hold none.
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&rest[..i]);
                    self.emit(&line, &mut on_line)?;
                    rest = &rest[i + 1..];
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.emit(&rest[..i], &mut on_line)?;
            rest = &rest[i + 1..];
        }
        if rest.len() > self.max + 1 {
            return Err(self.too_long());
        }
        self.keep(rest);
        Ok(())
    }

    /// Keeps `rest` of an unfinished frame (at most `max + 1` bytes in all, checked by the
    /// caller). Grows the buffer by doubling, as `Vec` does, but never past `max + 1`: a frame
    /// just under the limit would otherwise hold twice its size (a thousand clients each
    /// holding an unfinished 1 MiB frame would hold 2 GiB).
    fn keep(&mut self, rest: &[u8]) {
        let needed = self.partial.len() + rest.len();
        if needed > self.partial.capacity() {
            let target = needed.max(2 * self.partial.capacity()).min(self.max + 1);
            self.partial.reserve_exact(target - self.partial.len());
        }
        self.partial.extend_from_slice(rest);
    }

    fn emit(&self, line: &[u8], on_line: &mut impl FnMut(&[u8])) -> Result<(), FrameTooLong> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max {
            return Err(self.too_long());
        }
        if !line.is_empty() {
            on_line(line);
        }
        Ok(())
    }

    fn too_long(&self) -> FrameTooLong {
        FrameTooLong { max: self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(reader: &mut LineReader, chunks: &[&[u8]]) -> Result<Vec<String>, FrameTooLong> {
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, |l| out.push(String::from_utf8_lossy(l).into_owned()))?;
        }
        Ok(out)
    }

    #[test]
    fn splits_many_frames_in_one_chunk() {
        let mut r = LineReader::new(100);
        assert_eq!(
            lines(&mut r, &[b"a\nbb\nccc\n"]).unwrap(),
            ["a", "bb", "ccc"]
        );
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn joins_a_frame_fed_one_byte_at_a_time() {
        let mut r = LineReader::new(100);
        let data = b"{\"x\":1}\r\n{\"y\":2}\n";
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(lines(&mut r, &chunks).unwrap(), ["{\"x\":1}", "{\"y\":2}"]);
    }

    #[test]
    fn strips_crlf_and_skips_empty_lines() {
        let mut r = LineReader::new(100);
        assert_eq!(lines(&mut r, &[b"\n\r\na\r\n\n"]).unwrap(), ["a"]);
    }

    #[test]
    fn keeps_an_unfinished_frame_and_frees_it_when_done() {
        let mut r = LineReader::new(100);
        assert!(lines(&mut r, &[b"abc"]).unwrap().is_empty());
        assert_eq!(r.buffered(), 3);
        assert_eq!(lines(&mut r, &[b"def\nx"]).unwrap(), ["abcdef"]);
        assert_eq!(r.buffered(), 1);
    }

    #[test]
    fn accepts_exactly_max_and_refuses_one_more() {
        let mut r = LineReader::new(4);
        assert_eq!(lines(&mut r, &[b"abcd\r\n"]).unwrap(), ["abcd"]);
        assert_eq!(lines(&mut r, &[b"abcde\n"]), Err(FrameTooLong { max: 4 }));
    }

    #[test]
    fn refuses_an_endless_frame_without_buffering_it() {
        let mut r = LineReader::new(8);
        assert!(r.feed(b"0123456", |_| {}).is_ok());
        assert_eq!(r.feed(b"789ab", |_| {}), Err(FrameTooLong { max: 8 }));
        let mut r = LineReader::new(8);
        assert_eq!(r.feed(&[b'x'; 100], |_| {}), Err(FrameTooLong { max: 8 }));
    }

    #[test]
    fn an_unfinished_frame_never_holds_more_than_the_limit() {
        let mut r = LineReader::new(1000);
        for _ in 0..9 {
            r.feed(&[b'x'; 100], |_| {}).unwrap();
        }
        r.feed(&[b'x'; 101], |_| {}).unwrap();
        assert_eq!(r.buffered(), 1001);
        assert_eq!(r.held(), 1001);
    }

    #[test]
    fn delivers_lines_before_a_long_one() {
        let mut r = LineReader::new(3);
        let mut got = Vec::new();
        let err = r.feed(b"ok\ntoolong\n", |l| got.push(l.to_vec()));
        assert_eq!(err, Err(FrameTooLong { max: 3 }));
        assert_eq!(got, vec![b"ok".to_vec()]);
    }
}
