//! Session protocol v1: frames, their binary encoding, and the connect handshake.
//!
//! The format is specified in `docs/PROTOCOL.md`. Every frame is `u32 length | u8 type | body`
//! (big-endian), so frames can be concatenated in one WebSocket message or one HTTP body alike.
//! Nothing here touches a socket: callers feed bytes in and get frames or bytes out.

mod codec;
mod handshake;
pub mod reliable;
#[doc(hidden)]
pub mod untrusted;
mod upgrade;

pub use codec::{
    batch_buffer, decode_all, decode_owned, encode, encode_into, encode_leaving_out, FrameDecoder, BATCH_BYTES,
    MAX_REASON_LEN,
};
#[doc(hidden)]
pub use handshake::frame_name;
pub use handshake::{ClientHandshake, Established};
pub use upgrade::{connect_from_header, connect_header, CONNECT_ACCEPTED, CONNECT_HEADER, MAX_CONNECT_HEADER};

/// The protocol versions this build speaks.
pub const MIN_VERSION: u8 = 1;
/// The newest protocol version this build speaks.
pub const MAX_VERSION: u8 = 1;

/// Frames larger than this are refused unless both sides agree on less.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// The smallest frame size limit a peer may announce: room for any control frame.
pub const MIN_MAX_FRAME_SIZE: u32 = 1024;

/// Bytes of the frame header: `u32` length plus `u8` type.
pub const FRAME_HEADER_LEN: usize = 5;

/// Identifies a session: the server instance that created it and a number unique there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId {
    /// The server instance holding the session.
    pub server_instance: u64,
    /// The session's number within that instance.
    pub value: u64,
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{:016x}", self.server_instance, self.value)
    }
}

/// The credentials a client presents in the connect request.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials.
    #[default]
    None,
    /// A password.
    Password(Vec<u8>),
    /// Opaque bytes understood by the server's authenticator.
    Custom(Vec<u8>),
}

impl std::fmt::Debug for Credentials {
    // Never print the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Password(_) => f.write_str("Password(<redacted>)"),
            Credentials::Custom(b) => write!(f, "Custom(<{} bytes redacted>)", b.len()),
        }
    }
}

/// Connect response codes (numbers as in the API reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    Ok,
    Reconnected,
    ReconnectedWithMessageLoss,
    Rejected,
    AuthenticationFailed,
    UnknownSession,
    ReconnectionFailedMessageLoss,
    Error,
}

impl ResponseCode {
    /// The code's number on the wire.
    pub fn to_wire(self) -> u8 {
        match self {
            ResponseCode::Ok => 100,
            ResponseCode::Reconnected => 105,
            ResponseCode::ReconnectedWithMessageLoss => 106,
            ResponseCode::Rejected => 111,
            ResponseCode::AuthenticationFailed => 116,
            ResponseCode::UnknownSession => 117,
            ResponseCode::ReconnectionFailedMessageLoss => 118,
            ResponseCode::Error => 127,
        }
    }

    /// The code for a wire number, if it is one.
    pub fn from_wire(b: u8) -> Option<Self> {
        Some(match b {
            100 => ResponseCode::Ok,
            105 => ResponseCode::Reconnected,
            106 => ResponseCode::ReconnectedWithMessageLoss,
            111 => ResponseCode::Rejected,
            116 => ResponseCode::AuthenticationFailed,
            117 => ResponseCode::UnknownSession,
            118 => ResponseCode::ReconnectionFailedMessageLoss,
            127 => ResponseCode::Error,
            _ => return None,
        })
    }
}

/// Why a session was closed, as carried by a CLOSE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The sender closed the session on purpose (client: `session_close`).
    Normal,
    /// The server is shutting down.
    ServerShutdown,
    /// The peer broke the protocol.
    ProtocolError,
    /// A frame exceeded the agreed maximum size.
    FrameTooLarge,
    /// Nothing was received within the keep-alive deadline.
    KeepAliveTimeout,
    /// An administrator or the server application closed the session.
    ClosedByServer,
    /// The session could not keep every message (its recovery buffer overflowed).
    MessageLoss,
    /// A reason number this build does not know.
    Other(u8),
}

impl CloseReason {
    /// The reason's number on the wire.
    pub fn to_wire(self) -> u8 {
        match self {
            CloseReason::Normal => 0,
            CloseReason::ServerShutdown => 1,
            CloseReason::ProtocolError => 2,
            CloseReason::FrameTooLarge => 3,
            CloseReason::KeepAliveTimeout => 4,
            CloseReason::ClosedByServer => 5,
            CloseReason::MessageLoss => 6,
            CloseReason::Other(b) => b,
        }
    }

    /// The reason for a wire number.
    pub fn from_wire(b: u8) -> Self {
        match b {
            0 => CloseReason::Normal,
            1 => CloseReason::ServerShutdown,
            2 => CloseReason::ProtocolError,
            3 => CloseReason::FrameTooLarge,
            4 => CloseReason::KeepAliveTimeout,
            5 => CloseReason::ClosedByServer,
            6 => CloseReason::MessageLoss,
            other => CloseReason::Other(other),
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Normal => f.write_str("normal close"),
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
            CloseReason::ProtocolError => f.write_str("protocol error"),
            CloseReason::FrameTooLarge => f.write_str("frame too large"),
            CloseReason::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            CloseReason::ClosedByServer => f.write_str("closed by the server"),
            CloseReason::MessageLoss => f.write_str("messages lost"),
            CloseReason::Other(n) => write!(f, "reason {n}"),
        }
    }
}

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Oldest protocol version the client speaks.
    pub min_version: u8,
    /// Newest protocol version the client speaks.
    pub max_version: u8,
    /// Who the client says it is; empty for anonymous.
    pub principal: String,
    /// Proof of identity.
    pub credentials: Credentials,
    /// Session properties the client proposes.
    pub properties: Vec<(String, String)>,
    /// Token of the session to resume; empty for a new session.
    pub reconnect_token: Vec<u8>,
    /// Sequence number of the last message the client received (resume only).
    pub last_received: u64,
    /// Largest frame the client accepts.
    pub max_frame_size: u32,
}

/// The server's answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Version chosen; on a version mismatch, the newest the server speaks.
    pub version: u8,
    /// Outcome.
    pub code: ResponseCode,
    /// The session's id (zero unless accepted).
    pub session_id: SessionId,
    /// Secret token that lets the client resume this session (empty unless accepted).
    pub token: Vec<u8>,
    /// How often the server sends PING when otherwise idle, in milliseconds.
    pub ping_interval_ms: u32,
    /// Largest frame the server accepts.
    pub max_frame_size: u32,
    /// Sequence number of the last message the server received (resume only).
    pub last_received: u64,
    /// Explanation for the client, mainly for refusals.
    pub message: String,
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    ConnectRequest(ConnectRequest),
    ConnectResponse(ConnectResponse),
    Ping(u64),
    Pong(u64),
    Close {
        reason: CloseReason,
        message: String,
    },
    /// A numbered message (client to server: publish, subscribe, unsubscribe; server to client:
    /// deliver, refused). Numbers start at 1 in each direction and survive reconnection.
    Message {
        seq: u64,
        body: Message,
    },
    /// "Everything up to and including `seq` arrived": the sender may forget those messages.
    Ack(u64),
}

/// The topic path of a publication: one allocation, shared by the copies of the message (one
/// per subscriber, and each sent again after a reconnect).
pub type TopicPath = std::sync::Arc<str>;

/// What a numbered message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client: deliver `data` to every subscriber of `path`.
    Publish { path: TopicPath, data: bytes::Bytes },
    /// Client: deliver messages published on `path` (or below it, when it ends with `/`).
    Subscribe { path: String },
    /// Client: stop a subscription.
    Unsubscribe { path: String },
    /// Server: `data` was published on `path`. Shared, not copied, between subscribers.
    Deliver { path: TopicPath, data: bytes::Bytes },
    /// Server: the client may not do `action` on `path` (or no longer may, for a subscription);
    /// `message` says why, for people.
    Refused { action: RefusedAction, path: String, message: String },
}

/// What a [`Message::Refused`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedAction {
    /// A PUBLISH was not published.
    Publish,
    /// A SUBSCRIBE was not registered.
    Subscribe,
    /// A subscription was removed because the client no longer may subscribe to its path.
    Withdrawn,
}

impl RefusedAction {
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            RefusedAction::Publish => 1,
            RefusedAction::Subscribe => 2,
            RefusedAction::Withdrawn => 3,
        }
    }

    pub(crate) fn from_wire(value: u8) -> Option<Self> {
        match value {
            1 => Some(RefusedAction::Publish),
            2 => Some(RefusedAction::Subscribe),
            3 => Some(RefusedAction::Withdrawn),
            _ => None,
        }
    }
}

impl Message {
    /// The path the message is about.
    pub fn path(&self) -> &str {
        match self {
            Message::Publish { path, .. } | Message::Deliver { path, .. } => path,
            Message::Subscribe { path } | Message::Unsubscribe { path } | Message::Refused { path, .. } => path,
        }
    }

    /// The bytes it holds (path and data), as counted against byte limits.
    pub fn size(&self) -> usize {
        match self {
            Message::Publish { path, data } | Message::Deliver { path, data } => path.len() + data.len(),
            Message::Subscribe { path } | Message::Unsubscribe { path } => path.len(),
            Message::Refused { path, message, .. } => path.len() + message.len(),
        }
    }
}

/// Longest topic path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Checks a topic path: 1 to 1024 bytes of UTF-8 without control characters. A trailing `/`
/// in a subscription means "everything below".
pub fn validate_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err(format!("a path has 1 to {MAX_PATH_LEN} bytes; this one has {}", path.len()));
    }
    if path.chars().any(char::is_control) {
        return Err("a path must not contain control characters".into());
    }
    Ok(())
}

/// Whether a subscription to `subscription` covers a message on `path`.
pub fn path_matches(subscription: &str, path: &str) -> bool {
    subscription == path || (subscription.ends_with('/') && path.starts_with(subscription))
}

/// Frame type numbers on the wire.
pub(crate) mod frame_type {
    pub const CONNECT_REQUEST: u8 = 1;
    pub const CONNECT_RESPONSE: u8 = 2;
    pub const PING: u8 = 3;
    pub const PONG: u8 = 4;
    pub const CLOSE: u8 = 5;
    pub const PUBLISH: u8 = 6;
    pub const SUBSCRIBE: u8 = 7;
    pub const UNSUBSCRIBE: u8 = 8;
    pub const DELIVER: u8 = 9;
    pub const ACK: u8 = 10;
    pub const REFUSED: u8 = 11;
}

/// Why bytes could not be decoded into a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A frame announced more bytes than the limit allows.
    TooLarge { size: u64, limit: u32 },
    /// A frame's body ended before its fields did, or had bytes left over.
    Malformed(&'static str),
    /// A frame type this version does not know.
    UnknownType(u8),
    /// The input ended inside a frame (only for complete buffers).
    Truncated,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { size, limit } => {
                write!(f, "frame of {size} bytes exceeds the limit of {limit} bytes")
            }
            DecodeError::Malformed(what) => write!(f, "malformed frame: {what}"),
            DecodeError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            DecodeError::Truncated => f.write_str("input ends inside a frame"),
        }
    }
}
