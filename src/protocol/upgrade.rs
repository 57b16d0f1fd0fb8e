//! The CONNECT_REQUEST carried in the WebSocket upgrade request, saving a round trip.
//!
//! The client may put its encoded CONNECT_REQUEST frame, base64url without padding, in the
//! [`CONNECT_HEADER`] request header. A server that takes it answers the upgrade with
//! `CONNECT_HEADER: accepted` and sends its CONNECT_RESPONSE as its first message without waiting;
//! the client then sends no CONNECT_REQUEST message. Without that answer (a server that ignores
//! the header, an intermediary that drops it), the client sends its CONNECT_REQUEST as the first
//! message, as usual.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{decode_all, ConnectRequest, Frame};

/// The header, in both directions.
pub const CONNECT_HEADER: &str = "x-session-connect";

/// The server's answer when it took the request from the header.
pub const CONNECT_ACCEPTED: &str = "accepted";

/// Longest header value a client sends; larger requests (many session properties) go as the first
/// message instead, well inside what proxies and balancers accept in a header.
pub const MAX_CONNECT_HEADER: usize = 4096;

/// The header value for an encoded CONNECT_REQUEST frame, `None` when it would be too long.
pub fn connect_header(encoded_request: &[u8]) -> Option<String> {
    (encoded_request.len().div_ceil(3) * 4 <= MAX_CONNECT_HEADER).then(|| URL_SAFE_NO_PAD.encode(encoded_request))
}

/// The CONNECT_REQUEST in a header value; `None` unless it is exactly one well-formed
/// CONNECT_REQUEST frame within `limit`.
pub fn connect_from_header(value: &[u8], limit: u32) -> Option<ConnectRequest> {
    if value.len() > MAX_CONNECT_HEADER {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    match decode_all(&bytes, limit).ok()?.as_mut_slice() {
        [Frame::ConnectRequest(request)] => Some(std::mem::take(request)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, Credentials, DEFAULT_MAX_FRAME_SIZE};

    fn request() -> ConnectRequest {
        ConnectRequest {
            min_version: 1,
            max_version: 1,
            principal: "alice".into(),
            credentials: Credentials::Password(b"secret".to_vec()),
            properties: vec![("k".into(), "v".into())],
            max_frame_size: 65536,
            ..Default::default()
        }
    }

    #[test]
    fn a_request_survives_the_header() {
        let value = connect_header(&encode(&Frame::ConnectRequest(request()))).unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(connect_from_header(value.as_bytes(), DEFAULT_MAX_FRAME_SIZE), Some(request()));
    }

    #[test]
    fn a_large_request_does_not_go_in_the_header() {
        let mut big = request();
        big.properties = (0..200).map(|i| (format!("key{i}"), "x".repeat(20))).collect();
        assert_eq!(connect_header(&encode(&Frame::ConnectRequest(big))), None);
    }

    #[test]
    fn anything_but_one_connect_request_is_ignored() {
        let two = [encode(&Frame::ConnectRequest(request())), encode(&Frame::ConnectRequest(request()))].concat();
        for value in [
            "not base64!".to_string(),
            URL_SAFE_NO_PAD.encode(b"\x00\x00\x00\x05\x01"),
            URL_SAFE_NO_PAD.encode(encode(&Frame::Ping(1))),
            URL_SAFE_NO_PAD.encode(two),
            "A".repeat(MAX_CONNECT_HEADER + 4),
        ] {
            assert_eq!(connect_from_header(value.as_bytes(), DEFAULT_MAX_FRAME_SIZE), None, "{value:.40}");
        }
    }
}
