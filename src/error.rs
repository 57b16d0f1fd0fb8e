//! The one error type of the library and its codes.
//!
//! Every failure the library reports is an [`Error`]: a stable [`ErrorCode`] plus a message that says
//! what failed, where, and what to do. Messages never contain credentials. The C boundary maps
//! [`ErrorCode`] to `ERROR_CODE_T` in exactly one place (`ffi::types`).

use std::fmt;

/// What kind of failure happened. Mirrors `ERROR_CODE_T` in the C header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Anything not covered by a more specific code.
    Unknown,
    /// The session could not be created.
    SessionCreateFailed,
    /// A host name did not resolve.
    AddrLookupFail,
    /// A TCP connection could not be made (refused, unreachable).
    SocketConnectFail,
    /// The WebSocket upgrade request could not be sent.
    HandshakeSendFail,
    /// The WebSocket upgrade response was missing or wrong.
    HandshakeRecvFail,
    /// The peer does not speak the session protocol.
    InvalidConnectionProtocol,
    /// The server rejected the connection.
    ConnectionRejected,
    /// The URL could not be parsed or breaks the URL rules.
    ParseUrl,
    /// The URL names a transport this library does not provide.
    UnknownTransport,
    /// Reading from the connection failed.
    SocketReadFail,
    /// Writing to the connection failed.
    SocketWriteFail,
    /// The requested kind of connection is not supported (yet).
    ConnectionUnsupported,
    /// The peer broke the session protocol.
    ConnectionProtocolError,
    /// The server refused the principal and credentials.
    AuthenticationFailed,
    /// Client and server share no protocol version.
    ProtocolVersion,
    /// The server does not know the session.
    UnknownSession,
    /// Messages were lost.
    MessageLoss,
    /// The call is not allowed in the current state or on the current thread.
    IllegalState,
    /// An argument was NULL, malformed or out of range.
    IllegalArgument,
    /// The connection to the server was lost or failed.
    CommunicationError,
    /// The session is closed.
    SessionClosed,
    /// The server did not answer in time.
    RequestTimeOut,
    /// The proxy could not be reached (refused, unreachable, unresolved).
    ProxyUnreachable,
    /// The proxy refused the proxy credentials, or asked for ones that were not configured.
    ProxyAuthenticationFailed,
    /// The proxy refused to open the tunnel (403 and other statuses, or a SOCKS refusal).
    ProxyTunnelRefused,
    /// The proxy's answer was malformed, oversized or cut short.
    ProxyProtocolError,
    /// The server's certificate does not chain to a trusted CA.
    TlsCertificateUntrusted,
    /// The server's certificate has expired or is not valid yet.
    TlsCertificateExpired,
    /// The server's certificate is not valid for the host name.
    TlsCertificateNameMismatch,
    /// The TLS handshake failed (an alert from the peer, no common parameters, ...).
    TlsHandshakeFailed,
    /// The peer answered the TLS handshake with something that is not TLS.
    TlsNotTls,
    /// The application's certificate validation callback rejected the certificate.
    TlsCertificateRejected,
    /// Too many messages are waiting to be sent.
    QueueFull,
    /// A message is larger than the maximum message size.
    MessageTooLarge,
    /// The server's permissions do not allow a subscription or publication (or no longer allow a
    /// subscription).
    AccessDenied,
}

/// A failure reported by the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    try_later: bool,
}

impl Error {
    /// An error with `code` and a human-readable `message` (which must not contain credentials).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), try_later: false }
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for an [`ErrorCode::IllegalArgument`] error.
    pub fn illegal_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::IllegalArgument, message)
    }

    /// Shorthand for an [`ErrorCode::IllegalState`] error.
    pub fn illegal_state(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::IllegalState, message)
    }

    /// Marks the error as the peer saying "try later" (HTTP 502, 503, 504), which makes it
    /// transient whatever its code.
    pub fn try_later(mut self) -> Self {
        self.try_later = true;
        self
    }

    /// Whether trying again later might succeed: refused, unreachable, unresolved, timed out, or
    /// told to try later. Authentication, URL and protocol errors are never transient.
    pub fn is_transient(&self) -> bool {
        self.try_later
            || matches!(
                self.code,
                ErrorCode::ProxyUnreachable
                    | ErrorCode::AddrLookupFail
                    | ErrorCode::SocketConnectFail
                    | ErrorCode::RequestTimeOut
                    | ErrorCode::CommunicationError
                    | ErrorCode::SocketReadFail
                    | ErrorCode::SocketWriteFail
                    | ErrorCode::HandshakeSendFail
            )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
