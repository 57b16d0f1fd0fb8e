//! Text a peer supplies, made safe to show in a log line or an error message: control characters
//! (line breaks among them) and characters that reorder text are escaped, and length is capped,
//! so that a peer can neither forge lines nor flood them with one field.

use std::fmt::{self, Write};

/// Most characters shown of one peer-supplied text.
pub(crate) const MAX_LOGGED_CHARS: usize = 256;

/// A peer-supplied text, for a log field or an error message.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == MAX_LOGGED_CHARS {
                return write!(f, "...({} bytes in all)", self.0.len());
            }
            if c.is_control() || reorders(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Unicode's line and paragraph separators and bidirectional controls, which change how a log
/// line reads without being control characters.
fn reorders(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_reordering_characters_are_escaped() {
        let shown = Untrusted("eve\n2026-01-01T00:00:00Z  INFO session opened\r\u{202e}x").to_string();
        assert!(!shown.contains(['\n', '\r', '\u{202e}']), "{shown}");
        assert!(shown.starts_with("eve\\u{a}2026"), "{shown}");
    }

    #[test]
    fn a_long_text_is_cut_with_its_size() {
        let shown = Untrusted(&"p".repeat(65_536)).to_string();
        assert_eq!(shown, format!("{}...(65536 bytes in all)", "p".repeat(MAX_LOGGED_CHARS)));
    }
}
