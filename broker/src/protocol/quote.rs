//! Untrusted text (a LINK name, an unknown command) quoted for a log line or an ERROR:
//! escaped, so that a newline, an ANSI escape or a NUL in it cannot forge or garble a line, and
//! cut, so that a megabyte name costs a line, not a megabyte.

use std::fmt;

/// Characters of untrusted text shown; the rest is counted, not shown.
pub const SHOWN: usize = 64;

/// Displays its text in double quotes with Rust's escapes (`\n`, `\u{1b}`, `\0`), at most
/// [`SHOWN`] characters of it, followed by how many bytes were cut.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let cut = text
            .char_indices()
            .nth(SHOWN)
            .map_or(text.len(), |(i, _)| i);
        write!(f, "{:?}", &text[..cut])?;
        if cut < text.len() {
            write!(f, "… ({} more bytes)", text.len() - cut)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_or_garble_a_line() {
        let forged = "leaf\n2026-12-02T00:00:00Z ERROR hubbub::server: \u{1b}[31mfire\0";
        assert_eq!(
            Quoted(forged).to_string(),
            r#""leaf\n2026-12-02T00:00:00Z ERROR hubbub::server: \u{1b}[31mfire\0""#
        );
        assert_eq!(Quoted("plain").to_string(), r#""plain""#);
    }

    #[test]
    fn cuts_long_text_and_says_how_much() {
        let long = "é".repeat(1000);
        let shown = "é".repeat(SHOWN);
        assert_eq!(
            Quoted(&long).to_string(),
            format!("\"{shown}\"… ({} more bytes)", 2 * (1000 - SHOWN))
        );
    }
}
