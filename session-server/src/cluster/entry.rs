//! What the cluster's stream holds, byte for byte: one entry per publication, subscription
//! change and refusal, and the subjects they are stored under. Entries are read back from NATS,
//! a peer: [`decode`] takes any bytes without panicking.

use bytes::Bytes;
use session::protocol::{Message, RefusedAction, SessionId};

/// One entry of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A publication on `path`.
    Publish { path: String, data: Bytes },
    /// Session `session` subscribes to `path` from this entry on.
    Subscribe { session: SessionId, path: String },
    /// Session `session` no longer subscribes to `path`.
    Unsubscribe { session: SessionId, path: String },
    /// Session `session` is told that `action` on `path` was refused (a denial by the
    /// permissions, or a subscription withdrawn, which also ends it).
    Refuse { session: SessionId, action: RefusedAction, path: String, message: String },
}

const PUBLISH: u8 = 1;
const SUBSCRIBE: u8 = 2;
const UNSUBSCRIBE: u8 = 3;
const REFUSE: u8 = 4;

/// Longest path or message an entry carries (the protocol's paths are far shorter).
const MAX_TEXT: usize = u16::MAX as usize;

impl Entry {
    /// The session whose own entry this is, if any.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Entry::Publish { .. } => None,
            Entry::Subscribe { session, .. } | Entry::Unsubscribe { session, .. } | Entry::Refuse { session, .. } => {
                Some(*session)
            }
        }
    }

    /// The subject the entry is stored under, below `prefix`: `prefix.t.<path>` for
    /// publications (see [`path_subject`]), `prefix.s.<session>` for a session's own entries.
    pub fn subject(&self, prefix: &str) -> String {
        match (self, self.session()) {
            (Entry::Publish { path, .. }, _) => format!("{prefix}.t.{}", path_subject(path)),
            (_, Some(session)) => format!("{prefix}.s.{}", key(session)),
            (_, None) => unreachable!("only publications have no session"),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Entry::Publish { path, data } => {
                out.push(PUBLISH);
                put_text(&mut out, path);
                out.extend_from_slice(data);
            }
            Entry::Subscribe { session, path } | Entry::Unsubscribe { session, path } => {
                out.push(if matches!(self, Entry::Subscribe { .. }) { SUBSCRIBE } else { UNSUBSCRIBE });
                put_session(&mut out, *session);
                put_text(&mut out, path);
            }
            Entry::Refuse { session, action, path, message } => {
                out.push(REFUSE);
                put_session(&mut out, *session);
                out.push(action_to_byte(*action));
                put_text(&mut out, path);
                put_text(&mut out, message);
            }
        }
        out.into()
    }
}

/// Reads an entry; an error names what is wrong.
pub fn decode(bytes: &Bytes) -> Result<Entry, String> {
    let mut r = Reader { bytes, at: 0 };
    let entry = match r.byte()? {
        PUBLISH => {
            let path = r.text()?;
            Entry::Publish { path, data: bytes.slice(r.at..) }
        }
        kind @ (SUBSCRIBE | UNSUBSCRIBE) => {
            let session = r.session()?;
            let path = r.text()?;
            if kind == SUBSCRIBE {
                Entry::Subscribe { session, path }
            } else {
                Entry::Unsubscribe { session, path }
            }
        }
        REFUSE => {
            let session = r.session()?;
            let action = action_from_byte(r.byte()?).ok_or("unknown refused action")?;
            Entry::Refuse { session, action, path: r.text()?, message: r.text()? }
        }
        other => return Err(format!("unknown entry kind {other}")),
    };
    if !matches!(entry, Entry::Publish { .. }) && r.at != bytes.len() {
        return Err("bytes after the entry".into());
    }
    Ok(entry)
}

/// The REFUSED message an [`Entry::Refuse`] becomes.
pub fn refused(action: RefusedAction, path: String, message: String) -> Message {
    Message::Refused { action, path, message }
}

pub(crate) fn action_to_byte(action: RefusedAction) -> u8 {
    match action {
        RefusedAction::Publish => 1,
        RefusedAction::Subscribe => 2,
        _ => 3,
    }
}

pub(crate) fn action_from_byte(byte: u8) -> Option<RefusedAction> {
    match byte {
        1 => Some(RefusedAction::Publish),
        2 => Some(RefusedAction::Subscribe),
        3 => Some(RefusedAction::Withdrawn),
        _ => None,
    }
}

/// A session's name in subjects, message ids and the session bucket's keys.
pub fn key(session: SessionId) -> String {
    format!("{:016x}-{:016x}", session.server_instance, session.value)
}

/// A path as NATS subject tokens: each `/`-separated segment is a token, its bytes outside
/// `A-Z a-z 0-9 - _` written `~XX` (hex), an empty segment `~`. A subscription to the prefix
/// `news/` covers the subjects `<prefix>.t.news.>`.
pub fn path_subject(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if segment.is_empty() {
            out.push('~');
        }
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                out.push(byte as char);
            } else {
                out.push_str(&format!("~{byte:02X}"));
            }
        }
    }
    out
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    let text = &text.as_bytes()[..text.len().min(MAX_TEXT)];
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text);
}

fn put_session(out: &mut Vec<u8>, session: SessionId) {
    out.extend_from_slice(&session.server_instance.to_be_bytes());
    out.extend_from_slice(&session.value.to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or("entry cut short")?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(eight))
    }

    fn session(&mut self) -> Result<SessionId, String> {
        Ok(SessionId { server_instance: self.u64()?, value: self.u64()? })
    }

    fn text(&mut self) -> Result<String, String> {
        let len = u16::from_be_bytes([self.byte()?, self.byte()?]) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "text that is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: SessionId = SessionId { server_instance: 7, value: 9 };

    #[test]
    fn entries_survive_encoding() {
        for entry in [
            Entry::Publish { path: "news/sport".into(), data: Bytes::from_static(b"goal") },
            Entry::Publish { path: "p".into(), data: Bytes::new() },
            Entry::Subscribe { session: ID, path: "news/".into() },
            Entry::Unsubscribe { session: ID, path: "news/".into() },
            Entry::Refuse {
                session: ID,
                action: RefusedAction::Subscribe,
                path: "secret".into(),
                message: "no".into(),
            },
        ] {
            assert_eq!(decode(&entry.encode()).unwrap(), entry);
        }
    }

    #[test]
    fn bad_entries_are_errors() {
        for bytes in [&b""[..], &[9], &[PUBLISH, 0], &[PUBLISH, 0, 5, b'a'], &[SUBSCRIBE, 0, 0], &[REFUSE; 30]] {
            assert!(decode(&Bytes::copy_from_slice(bytes)).is_err(), "{bytes:?}");
        }
        let mut extra = Entry::Subscribe { session: ID, path: "a".into() }.encode().to_vec();
        extra.push(0);
        assert!(decode(&extra.into()).is_err());
    }

    #[test]
    fn paths_become_subject_tokens() {
        assert_eq!(path_subject("news/sport"), "news.sport");
        assert_eq!(path_subject("a b/c.d/*/>"), "a~20b.c~2Ed.~2A.~3E");
        assert_eq!(path_subject("/x//"), "~.x.~.~");
        assert_eq!(path_subject("é"), "~C3~A9");
        let entry = Entry::Subscribe { session: ID, path: "a".into() };
        assert_eq!(entry.subject("ls"), "ls.s.0000000000000007-0000000000000009");
    }
}
