//! Client-supplied fields for the server's log lines: each text as [`Untrusted`], and session
//! properties capped in number.

use std::fmt::{self, Write};

pub(crate) use session::protocol::untrusted::Untrusted;

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
    fn many_properties_are_cut_with_their_number_and_escaped() {
        let many: Vec<(String, String)> = (0..1000).map(|i| (format!("k{i}"), "v\n".into())).collect();
        let shown = Properties(&many).to_string();
        assert!(shown.ends_with(", ...(1000 in all)]") && !shown.contains('\n'), "{shown}");
    }
}
