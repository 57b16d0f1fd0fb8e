//! The client's side of the connect handshake, as a state machine without I/O.

use std::time::Duration;

use super::{ConnectRequest, Frame, ResponseCode, SessionId, MAX_VERSION, MIN_MAX_FRAME_SIZE, MIN_VERSION};
use crate::error::{Error, ErrorCode};

/// What the client knows once the server accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The negotiated protocol version.
    pub version: u8,
    /// The session's id.
    pub session_id: SessionId,
    /// Secret that lets the client resume the session.
    pub token: Vec<u8>,
    /// The server's keep-alive interval.
    pub ping_interval: Duration,
    /// Largest frame the server accepts.
    pub server_max_frame_size: u32,
    /// Last message sequence the server received (resume).
    pub last_received: u64,
    /// Whether the server resumed an existing session (RECONNECTED) rather than creating one.
    pub resumed: bool,
}

/// Sends one CONNECT_REQUEST, then judges the first frame that comes back.
#[derive(Debug)]
pub struct ClientHandshake {
    request: ConnectRequest,
    server: String,
}

impl ClientHandshake {
    /// A handshake for `request`; `server` (host:port) is only used in error messages.
    pub fn new(mut request: ConnectRequest, server: impl Into<String>) -> Self {
        request.min_version = MIN_VERSION;
        request.max_version = MAX_VERSION;
        ClientHandshake { request, server: server.into() }
    }

    /// The frame to send first.
    pub fn request_frame(&self) -> Frame {
        Frame::ConnectRequest(self.request.clone())
    }

    /// Judges the server's first frame.
    pub fn on_frame(&self, frame: Frame) -> Result<Established, Error> {
        let server = &self.server;
        let response = match frame {
            Frame::ConnectResponse(r) => r,
            Frame::Close { message, .. } => {
                return Err(Error::new(
                    ErrorCode::ConnectionRejected,
                    format!("server {server} closed the connection during the handshake: {message}"),
                ))
            }
            other => {
                return Err(Error::new(
                    ErrorCode::ConnectionProtocolError,
                    format!("server {server} sent {} instead of a connect response", frame_name(&other)),
                ))
            }
        };
        let detail = if response.message.is_empty() {
            String::new()
        } else {
            format!(": {}", super::untrusted::Untrusted(&response.message))
        };
        let version_ok = (MIN_VERSION..=MAX_VERSION).contains(&response.version);
        match response.code {
            ResponseCode::Ok | ResponseCode::Reconnected if version_ok => {
                if response.max_frame_size < MIN_MAX_FRAME_SIZE {
                    return Err(Error::new(
                        ErrorCode::ConnectionProtocolError,
                        format!(
                            "server {server} announced a maximum frame size of {} bytes, below the protocol minimum of {MIN_MAX_FRAME_SIZE}",
                            response.max_frame_size
                        ),
                    ));
                }
                if response.ping_interval_ms == 0 {
                    return Err(Error::new(
                        ErrorCode::ConnectionProtocolError,
                        format!("server {server} announced a keep-alive interval of 0 ms"),
                    ));
                }
                Ok(Established {
                    version: response.version,
                    session_id: response.session_id,
                    token: response.token,
                    ping_interval: Duration::from_millis(response.ping_interval_ms as u64),
                    server_max_frame_size: response.max_frame_size,
                    last_received: response.last_received,
                    resumed: response.code == ResponseCode::Reconnected,
                })
            }
            _ if !version_ok => Err(Error::new(
                ErrorCode::ProtocolVersion,
                format!(
                    "server {server} speaks protocol version {}, this client speaks {MIN_VERSION} to {MAX_VERSION}{detail}",
                    response.version
                ),
            )),
            ResponseCode::AuthenticationFailed => Err(Error::new(
                ErrorCode::AuthenticationFailed,
                format!("server {server} refused the principal or credentials{detail}"),
            )),
            ResponseCode::Rejected => Err(Error::new(
                ErrorCode::ConnectionRejected,
                format!("server {server} rejected the connection{detail}"),
            )),
            ResponseCode::UnknownSession => Err(Error::new(
                ErrorCode::UnknownSession,
                format!("server {server} does not know this session{detail}"),
            )),
            ResponseCode::ReconnectionFailedMessageLoss | ResponseCode::ReconnectedWithMessageLoss => {
                Err(Error::new(
                    ErrorCode::MessageLoss,
                    format!("server {server} could not resume the session without losing messages{detail}"),
                ))
            }
            ResponseCode::Error | ResponseCode::Ok | ResponseCode::Reconnected => Err(Error::new(
                ErrorCode::ConnectionRejected,
                format!("server {server} reported an error{detail}"),
            )),
        }
    }
}

/// A frame's name for messages.
pub fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::ConnectRequest(_) => "CONNECT_REQUEST",
        Frame::ConnectResponse(_) => "CONNECT_RESPONSE",
        Frame::Ping(_) => "PING",
        Frame::Pong(_) => "PONG",
        Frame::Close { .. } => "CLOSE",
        Frame::Message { body: super::Message::Publish { .. }, .. } => "PUBLISH",
        Frame::Message { body: super::Message::Subscribe { .. }, .. } => "SUBSCRIBE",
        Frame::Message { body: super::Message::Unsubscribe { .. }, .. } => "UNSUBSCRIBE",
        Frame::Message { body: super::Message::Deliver { .. }, .. } => "DELIVER",
        Frame::Message { body: super::Message::Refused { .. }, .. } => "REFUSED",
        Frame::Ack(_) => "ACK",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CloseReason, ConnectResponse, Credentials};

    fn handshake() -> ClientHandshake {
        ClientHandshake::new(
            ConnectRequest {
                principal: "alice".into(),
                credentials: Credentials::Password(b"pw".to_vec()),
                ..Default::default()
            },
            "127.0.0.1:8080",
        )
    }

    fn response(code: ResponseCode) -> ConnectResponse {
        ConnectResponse {
            version: 1,
            code,
            session_id: SessionId { server_instance: 1, value: 2 },
            token: vec![9; 16],
            ping_interval_ms: 1000,
            max_frame_size: 65536,
            last_received: 0,
            message: "because".into(),
        }
    }

    #[test]
    fn request_announces_the_supported_versions() {
        match handshake().request_frame() {
            Frame::ConnectRequest(r) => {
                assert_eq!((r.min_version, r.max_version), (MIN_VERSION, MAX_VERSION))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ok_response_establishes_the_session() {
        let e = handshake().on_frame(Frame::ConnectResponse(response(ResponseCode::Ok))).unwrap();
        assert_eq!(e.session_id, SessionId { server_instance: 1, value: 2 });
        assert_eq!(e.ping_interval, Duration::from_secs(1));
    }

    #[test]
    fn refusals_map_to_their_error_codes() {
        let cases = [
            (ResponseCode::AuthenticationFailed, ErrorCode::AuthenticationFailed),
            (ResponseCode::Rejected, ErrorCode::ConnectionRejected),
            (ResponseCode::UnknownSession, ErrorCode::UnknownSession),
            (ResponseCode::ReconnectionFailedMessageLoss, ErrorCode::MessageLoss),
            (ResponseCode::Error, ErrorCode::ConnectionRejected),
        ];
        for (code, expected) in cases {
            let err = handshake().on_frame(Frame::ConnectResponse(response(code))).unwrap_err();
            assert_eq!(err.code(), expected, "{code:?}");
            assert!(err.message().contains("127.0.0.1:8080") && err.message().contains("because"));
        }
    }

    #[test]
    fn version_outside_our_range_is_a_protocol_version_error() {
        let mut r = response(ResponseCode::Error);
        r.version = 9;
        let err = handshake().on_frame(Frame::ConnectResponse(r)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProtocolVersion);
    }

    #[test]
    fn other_first_frames_are_protocol_errors() {
        let err = handshake().on_frame(Frame::Ping(1)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConnectionProtocolError);
        let err = handshake()
            .on_frame(Frame::Close { reason: CloseReason::ServerShutdown, message: "down".into() })
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConnectionRejected);
    }

    #[test]
    fn absurd_limits_from_the_server_are_refused() {
        let mut r = response(ResponseCode::Ok);
        r.max_frame_size = 10;
        assert!(handshake().on_frame(Frame::ConnectResponse(r)).is_err());
        let mut r = response(ResponseCode::Ok);
        r.ping_interval_ms = 0;
        assert!(handshake().on_frame(Frame::ConnectResponse(r)).is_err());
    }
}
