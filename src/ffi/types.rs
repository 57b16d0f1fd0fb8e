//! C types shared by several families of functions, and the one mapping from Rust errors and
//! states to their C numbers.

use std::ffi::{c_char, c_int, c_void};

use super::boundary::malloc_string;
use crate::error::{Error, ErrorCode};
use crate::protocol::SessionId;
use crate::session::State;

/// Value a callback returns when it handled the event.
pub const HANDLER_SUCCESS: c_int = 0;
/// Value a callback returns when it failed to handle the event.
pub const HANDLER_FAILURE: c_int = -1;

/// Error codes. Numbers are stable and never reused; libsession's own codes start at 200.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ERROR_CODE_T {
    /// No error.
    DIFF_ERR_SUCCESS = 0,
    /// An error not covered by another code.
    DIFF_ERR_UNKNOWN = 1,
    /// The session could not be created.
    DIFF_ERR_SESSION_CREATE_FAILED = 3,
    /// The transport could not be created.
    DIFF_ERR_TRANSPORT_CREATE_FAILED = 4,
    /// The server's host name did not resolve.
    DIFF_ERR_ADDR_LOOKUP_FAIL = 10,
    /// A socket could not be created.
    DIFF_ERR_SOCKET_CREATE_FAIL = 11,
    /// The TCP connection was refused or the host is unreachable.
    DIFF_ERR_SOCKET_CONNECT_FAIL = 12,
    /// The WebSocket upgrade request could not be sent.
    DIFF_ERR_HANDSHAKE_SEND_FAIL = 13,
    /// The WebSocket upgrade was refused or its response was not understood (the message has the
    /// HTTP status).
    DIFF_ERR_HANDSHAKE_RECV_FAIL = 14,
    /// The peer does not speak the session protocol.
    DIFF_ERR_INVALID_CONNECTION_PROTOCOL = 15,
    /// The server rejected the connection.
    DIFF_ERR_CONNECTION_REJECTED = 18,
    /// The connection failed for an unspecified reason.
    DIFF_ERR_CONNECTION_ERROR_UNDEFINED = 19,
    /// The URL is malformed or breaks the URL rules; the message names the bad part.
    DIFF_ERR_PARSE_URL = 22,
    /// The URL's scheme is not a transport libsession provides.
    DIFF_ERR_UNKNOWN_TRANSPORT = 23,
    /// Reading from the connection failed.
    DIFF_ERR_SOCKET_READ_FAIL = 24,
    /// Writing to the connection failed.
    DIFF_ERR_SOCKET_WRITE_FAIL = 25,
    /// The requested kind of connection is not supported by this build.
    DIFF_ERR_CONNECTION_UNSUPPORTED = 27,
    /// Reconnection is not supported.
    DIFF_ERR_RECONNECTION_UNSUPPORTED = 29,
    /// The server broke the session protocol.
    DIFF_ERR_CONNECTION_PROTOCOL_ERROR = 30,
    /// The server refused the principal or credentials.
    DIFF_ERR_AUTHENTICATION_FAILED = 31,
    /// Client and server share no protocol version.
    DIFF_ERR_PROTOCOL_VERSION = 32,
    /// The server does not know the session.
    DIFF_ERR_UNKNOWN_SESSION = 33,
    /// Messages were lost.
    DIFF_ERR_MESSAGE_LOSS = 34,
    /// The call is not allowed now, or on this thread (a blocking call inside a callback).
    DIFF_ERR_ILLEGAL_STATE = 36,
    /// An argument is NULL, not UTF-8, or out of range.
    DIFF_ERR_ILLEGAL_ARGUMENT = 48,
    /// The connection to the server was lost.
    DIFF_ERR_COMMUNICATION_ERROR = 100,
    /// The session is closed.
    DIFF_ERR_SESSION_CLOSED = 101,
    /// The server did not answer within the connection timeout.
    DIFF_ERR_REQUEST_TIME_OUT = 102,
    /// Access was denied.
    DIFF_ERR_ACCESS_DENIED = 103,
    /// libsession: the proxy could not be reached (refused, unreachable, unresolved). Retried by
    /// the initial retry strategy.
    DIFF_ERR_PROXY_UNREACHABLE = 200,
    /// libsession: the proxy refused the proxy credentials (407, or 401 from some proxies), asked
    /// for credentials that were not configured, or kept challenging past the conversation bound.
    /// The message names the proxy, its status line and the schemes it offered. Never retried.
    DIFF_ERR_PROXY_AUTHENTICATION_FAILED = 201,
    /// libsession: the proxy refused to open the tunnel (403 or another status, or a SOCKS5
    /// refusal); the message has the proxy's status line or reply.
    DIFF_ERR_PROXY_TUNNEL_REFUSED = 202,
    /// libsession: the proxy's answer was malformed, larger than 64 KiB of headers, or cut short.
    DIFF_ERR_PROXY_PROTOCOL_ERROR = 203,
    /// libsession: the server's certificate does not chain to a trusted CA (unknown issuer, bad
    /// signature). Trust its CA with diffusion_session_factory_certificate_authority.
    DIFF_ERR_TLS_CERTIFICATE_UNTRUSTED = 210,
    /// libsession: the server's certificate has expired or is not valid yet.
    DIFF_ERR_TLS_CERTIFICATE_EXPIRED = 211,
    /// libsession: the server's certificate is not valid for the host name (or the name given
    /// with diffusion_session_factory_tls_server_name); the message lists the names it has.
    DIFF_ERR_TLS_CERTIFICATE_NAME_MISMATCH = 212,
    /// libsession: the TLS handshake failed, e.g. the peer sent an alert (named in the message).
    DIFF_ERR_TLS_HANDSHAKE_FAILED = 213,
    /// libsession: the peer answered the TLS handshake with plain text (a ws:// port, say).
    DIFF_ERR_TLS_NOT_TLS = 214,
    /// libsession: the certificate validation callback rejected the certificate.
    DIFF_ERR_TLS_CERTIFICATE_REJECTED = 215,
    /// libsession: maximum_queue_size messages are already waiting to be sent; nothing was
    /// queued, nothing already queued is lost.
    DIFF_ERR_QUEUE_FULL = 220,
    /// libsession: the message exceeds the maximum message size (the client's, or the server's
    /// once connected).
    DIFF_ERR_MESSAGE_TOO_LARGE = 221,
}

impl From<ErrorCode> for ERROR_CODE_T {
    fn from(code: ErrorCode) -> Self {
        use ERROR_CODE_T::*;
        match code {
            ErrorCode::Unknown => DIFF_ERR_UNKNOWN,
            ErrorCode::SessionCreateFailed => DIFF_ERR_SESSION_CREATE_FAILED,
            ErrorCode::AddrLookupFail => DIFF_ERR_ADDR_LOOKUP_FAIL,
            ErrorCode::SocketConnectFail => DIFF_ERR_SOCKET_CONNECT_FAIL,
            ErrorCode::HandshakeSendFail => DIFF_ERR_HANDSHAKE_SEND_FAIL,
            ErrorCode::HandshakeRecvFail => DIFF_ERR_HANDSHAKE_RECV_FAIL,
            ErrorCode::InvalidConnectionProtocol => DIFF_ERR_INVALID_CONNECTION_PROTOCOL,
            ErrorCode::ConnectionRejected => DIFF_ERR_CONNECTION_REJECTED,
            ErrorCode::ParseUrl => DIFF_ERR_PARSE_URL,
            ErrorCode::UnknownTransport => DIFF_ERR_UNKNOWN_TRANSPORT,
            ErrorCode::SocketReadFail => DIFF_ERR_SOCKET_READ_FAIL,
            ErrorCode::SocketWriteFail => DIFF_ERR_SOCKET_WRITE_FAIL,
            ErrorCode::ConnectionUnsupported => DIFF_ERR_CONNECTION_UNSUPPORTED,
            ErrorCode::ConnectionProtocolError => DIFF_ERR_CONNECTION_PROTOCOL_ERROR,
            ErrorCode::AuthenticationFailed => DIFF_ERR_AUTHENTICATION_FAILED,
            ErrorCode::ProtocolVersion => DIFF_ERR_PROTOCOL_VERSION,
            ErrorCode::UnknownSession => DIFF_ERR_UNKNOWN_SESSION,
            ErrorCode::MessageLoss => DIFF_ERR_MESSAGE_LOSS,
            ErrorCode::IllegalState => DIFF_ERR_ILLEGAL_STATE,
            ErrorCode::IllegalArgument => DIFF_ERR_ILLEGAL_ARGUMENT,
            ErrorCode::CommunicationError => DIFF_ERR_COMMUNICATION_ERROR,
            ErrorCode::SessionClosed => DIFF_ERR_SESSION_CLOSED,
            ErrorCode::RequestTimeOut => DIFF_ERR_REQUEST_TIME_OUT,
            ErrorCode::ProxyUnreachable => DIFF_ERR_PROXY_UNREACHABLE,
            ErrorCode::ProxyAuthenticationFailed => DIFF_ERR_PROXY_AUTHENTICATION_FAILED,
            ErrorCode::ProxyTunnelRefused => DIFF_ERR_PROXY_TUNNEL_REFUSED,
            ErrorCode::ProxyProtocolError => DIFF_ERR_PROXY_PROTOCOL_ERROR,
            ErrorCode::TlsCertificateUntrusted => DIFF_ERR_TLS_CERTIFICATE_UNTRUSTED,
            ErrorCode::TlsCertificateExpired => DIFF_ERR_TLS_CERTIFICATE_EXPIRED,
            ErrorCode::TlsCertificateNameMismatch => DIFF_ERR_TLS_CERTIFICATE_NAME_MISMATCH,
            ErrorCode::TlsHandshakeFailed => DIFF_ERR_TLS_HANDSHAKE_FAILED,
            ErrorCode::TlsNotTls => DIFF_ERR_TLS_NOT_TLS,
            ErrorCode::TlsCertificateRejected => DIFF_ERR_TLS_CERTIFICATE_REJECTED,
            ErrorCode::QueueFull => DIFF_ERR_QUEUE_FULL,
            ErrorCode::MessageTooLarge => DIFF_ERR_MESSAGE_TOO_LARGE,
            ErrorCode::AccessDenied => DIFF_ERR_ACCESS_DENIED,
        }
    }
}

/// Session states, with the vendor API's numbers. Closed states are terminal.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SESSION_STATE_T {
    /// No session, or a state that cannot be determined.
    SESSION_STATE_UNKNOWN = -1,
    /// Establishing the connection.
    CONNECTING = 0,
    /// Deprecated; never reported.
    CONNECTED_INITIALISING = 1,
    /// Connected and usable.
    CONNECTED_ACTIVE = 2,
    /// Connection lost, recovering the session.
    RECOVERING_RECONNECT = 3,
    /// Deprecated; never reported.
    RECOVERING_FAILOVER = 4,
    /// Closed by the application (session_close).
    CLOSED_BY_CLIENT = 5,
    /// Closed by the server.
    CLOSED_BY_SERVER = 6,
    /// Closed by a failure; session_get_error says which.
    CLOSED_FAILED = 7,
}

impl From<State> for SESSION_STATE_T {
    fn from(state: State) -> Self {
        match state {
            State::Unknown => SESSION_STATE_T::SESSION_STATE_UNKNOWN,
            State::Connecting => SESSION_STATE_T::CONNECTING,
            State::ConnectedActive => SESSION_STATE_T::CONNECTED_ACTIVE,
            State::RecoveringReconnect => SESSION_STATE_T::RECOVERING_RECONNECT,
            State::ClosedByClient => SESSION_STATE_T::CLOSED_BY_CLIENT,
            State::ClosedByServer => SESSION_STATE_T::CLOSED_BY_SERVER,
            State::ClosedFailed => SESSION_STATE_T::CLOSED_FAILED,
        }
    }
}

/// A session's identity: the server instance that holds it and its number there.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SESSION_ID_T {
    /// The server instance holding the session.
    pub server_instance: u64,
    /// The session's number within that instance.
    pub value: u64,
}

impl From<SessionId> for SESSION_ID_T {
    fn from(id: SessionId) -> Self {
        SESSION_ID_T { server_instance: id.server_instance, value: id.value }
    }
}

/// An error report. `message` is allocated with malloc: release it with `free(message)` or
/// `diffusion_error_free(&error)`. `context` is always NULL.
#[repr(C)]
#[derive(Debug)]
pub struct DIFFUSION_ERROR_T {
    /// What kind of failure.
    pub code: ERROR_CODE_T,
    /// What failed, where and what to do; never contains credentials.
    pub message: *mut c_char,
    /// Reserved; NULL.
    pub context: *mut c_void,
}

super::handle::handles! { Borrowed: DIFFUSION_ERROR_T; }

impl DIFFUSION_ERROR_T {
    pub(crate) fn from_error(error: &Error) -> Self {
        DIFFUSION_ERROR_T {
            code: error.code().into(),
            message: malloc_string(error.message()),
            context: std::ptr::null_mut(),
        }
    }
}
