//! What a client supplies, made safe to log: control characters (line breaks among them) and
//! characters that reorder text are escaped, and length is capped, so that a client can neither
//! forge log lines nor fill the log with one field.

use std::fmt::{self, Write};

/// Most characters of one client-supplied field in a log line.
pub(crate) const MAX_LOGGED_CHARS: usize = 256;

/// A client-supplied text for a log field.
pub(crate) struct Untrusted<'a>(pub(crate) &'a str);

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

/// Session properties as `key=value` pairs, each part as [`Untrusted`], at most
/// [`MAX_LOGGED_PROPERTIES`] of them.
pub(crate) struct Properties<'a>(pub(crate) &'a [(String, String)]);

/// Most properties shown in a log line.
pub(crate) const MAX_LOGGED_PROPERTIES: usize = 16;

impl fmt::Display for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, (key, value)) in self.0.iter().take(MAX_LOGGED_PROPERTIES).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", Untrusted(key), Untrusted(value))?;
        }
        if self.0.len() > MAX_LOGGED_PROPERTIES {
            write!(f, ", ...({} in all)", self.0.len())?;
        }
        f.write_char(']')
    }
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
    fn a_long_field_is_cut_with_its_size() {
        let shown = Untrusted(&"p".repeat(65_536)).to_string();
        assert_eq!(shown, format!("{}...(65536 bytes in all)", "p".repeat(MAX_LOGGED_CHARS)));
        let many: Vec<(String, String)> = (0..1000).map(|i| (format!("k{i}"), "v\n".into())).collect();
        let shown = Properties(&many).to_string();
        assert!(shown.ends_with(", ...(1000 in all)]") && !shown.contains('\n'), "{shown}");
    }
}
