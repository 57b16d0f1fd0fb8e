//! Proxy authentication: the built-in Basic and Digest schemes and the custom challenge handler.

use std::fmt;
use std::sync::Arc;

/// Default bound on challenge rounds before proxy authentication fails.
pub const DEFAULT_MAXIMUM_CONVERSATIONS: u32 = 3;

/// One challenge from the proxy, as a custom handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    /// 1 for the first challenge, 2 for the next...; 0 before the first CONNECT (a chance to send
    /// credentials preemptively).
    pub round: u32,
    /// 407, or 401 from proxies that use it; 0 in round 0.
    pub status: u16,
    /// The response's status line, e.g. `HTTP/1.1 407 Proxy Authentication Required`.
    pub status_line: &'a str,
    /// Every header of the response, in order, names as sent.
    pub headers: &'a [(String, String)],
    /// Whether the proxy kept the connection open, so the next CONNECT goes on the same one.
    /// Connection-bound schemes (NTLM, Negotiate) need it.
    pub connection_kept_alive: bool,
}

/// Answers proxy challenges for schemes the library does not implement.
pub trait ChallengeHandler: Send + Sync {
    /// The headers to send with the next CONNECT, or `None` to give up.
    fn respond(&self, challenge: &Challenge<'_>) -> Option<Vec<(String, String)>>;

    /// The most challenges to answer before failing.
    fn maximum_conversations(&self) -> u32 {
        DEFAULT_MAXIMUM_CONVERSATIONS
    }
}

/// How to authenticate to an HTTP proxy.
#[derive(Clone)]
pub enum ProxyAuth {
    /// Basic, sent with the first CONNECT (and only to the proxy).
    Basic { user: String, password: String },
    /// Digest, in answer to the proxy's challenge.
    Digest { user: String, password: String },
    /// Whichever of Basic and Digest the proxy asks for, preferring Digest.
    Any { user: String, password: String },
    /// A custom handler.
    Custom(Arc<dyn ChallengeHandler>),
}

impl ProxyAuth {
    /// How many challenges may be answered.
    pub fn maximum_conversations(&self) -> u32 {
        match self {
            ProxyAuth::Custom(handler) => handler.maximum_conversations().max(1),
            _ => DEFAULT_MAXIMUM_CONVERSATIONS,
        }
    }
}

impl fmt::Debug for ProxyAuth {
    // Never print credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyAuth::Basic { user, .. } => write!(f, "Basic(user={user:?}, password=<redacted>)"),
            ProxyAuth::Digest { user, .. } => write!(f, "Digest(user={user:?}, password=<redacted>)"),
            ProxyAuth::Any { user, .. } => write!(f, "Any(user={user:?}, password=<redacted>)"),
            ProxyAuth::Custom(_) => f.write_str("Custom"),
        }
    }
}
