//! Binary encoding of [`Frame`]s.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    frame_type as ft, CloseReason, ConnectRequest, ConnectResponse, Credentials, DecodeError, Frame, Message,
    RefusedAction, ResponseCode, SessionId,
};

const CREDENTIALS_NONE: u8 = 0;
const CREDENTIALS_PASSWORD: u8 = 1;
const CREDENTIALS_CUSTOM: u8 = 2;

/// Longest reason text (CONNECT_RESPONSE and CLOSE `message`) a sender puts on the wire, in bytes.
pub const MAX_REASON_LEN: usize = 4096;

/// Frames travel batched: a WebSocket message (or HTTP body) is closed once it holds this many
/// bytes.
pub const BATCH_BYTES: usize = 64 * 1024;

/// An empty batch with room for [`BATCH_BYTES`] and one more typical frame, so that filling it
/// does not reallocate (and copy) as it grows.
pub fn batch_buffer() -> Vec<u8> {
    Vec::with_capacity(BATCH_BYTES + 17 * 1024)
}

/// Encodes one frame, header included.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let hint = match frame {
        Frame::Message { body: Message::Publish { path, data } | Message::Deliver { path, data }, .. } => {
            32 + path.len() + data.len()
        }
        _ => 64,
    };
    let mut out = Vec::with_capacity(hint);
    encode_into(frame, &mut out);
    out
}

/// Appends one encoded frame to `out` (so that frames batch without copies in between).
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    encode_leaving_out(frame, out, usize::MAX);
}

/// As [`encode_into`], except that the data of a message of at least `least` bytes is left out
/// and returned: it belongs right after what was appended (the frame's length counts it), for a
/// writer that sends it from where it lies instead of copying it.
pub fn encode_leaving_out(frame: &Frame, out: &mut Vec<u8>, least: usize) -> Option<Bytes> {
    let start = out.len();
    let mut left_out = None;
    // The length and type, patched in once the body is written.
    out.put_u32(0);
    out.put_u8(0);
    let body = out;
    let kind = match frame {
        Frame::ConnectRequest(r) => {
            body.put_u8(r.min_version);
            body.put_u8(r.max_version);
            put_str16(body, &r.principal);
            match &r.credentials {
                Credentials::None => {
                    body.put_u8(CREDENTIALS_NONE);
                    put_bytes32(body, &[]);
                }
                Credentials::Password(p) => {
                    body.put_u8(CREDENTIALS_PASSWORD);
                    put_bytes32(body, p);
                }
                Credentials::Custom(c) => {
                    body.put_u8(CREDENTIALS_CUSTOM);
                    put_bytes32(body, c);
                }
            }
            debug_assert!(r.properties.len() <= u16::MAX as usize, "checked before connecting");
            body.put_u16(r.properties.len().min(u16::MAX as usize) as u16);
            for (k, v) in r.properties.iter().take(u16::MAX as usize) {
                put_str16(body, k);
                put_str16(body, v);
            }
            put_bytes16(body, &r.reconnect_token);
            body.put_u64(r.last_received);
            body.put_u32(r.max_frame_size);
            ft::CONNECT_REQUEST
        }
        Frame::ConnectResponse(r) => {
            body.put_u8(r.version);
            body.put_u8(r.code.to_wire());
            body.put_u64(r.session_id.server_instance);
            body.put_u64(r.session_id.value);
            put_bytes16(body, &r.token);
            body.put_u32(r.ping_interval_ms);
            body.put_u32(r.max_frame_size);
            body.put_u64(r.last_received);
            put_reason(body, &r.message);
            ft::CONNECT_RESPONSE
        }
        Frame::Ping(n) => {
            body.put_u64(*n);
            ft::PING
        }
        Frame::Pong(n) => {
            body.put_u64(*n);
            ft::PONG
        }
        Frame::Close { reason, message } => {
            body.put_u8(reason.to_wire());
            put_reason(body, message);
            ft::CLOSE
        }
        Frame::Message { seq, body: message } => {
            body.put_u64(*seq);
            put_str16(body, message.path());
            match message {
                Message::Publish { data, .. } | Message::Deliver { data, .. } => {
                    if data.len() >= least {
                        body.put_u32(data.len() as u32);
                        left_out = Some(data.clone());
                    } else {
                        put_bytes32(body, data);
                    }
                    if matches!(message, Message::Publish { .. }) {
                        ft::PUBLISH
                    } else {
                        ft::DELIVER
                    }
                }
                Message::Subscribe { .. } => ft::SUBSCRIBE,
                Message::Unsubscribe { .. } => ft::UNSUBSCRIBE,
                Message::Refused { action, message, .. } => {
                    body.put_u8(action.to_wire());
                    put_reason(body, message);
                    ft::REFUSED
                }
            }
        }
        Frame::Ack(seq) => {
            body.put_u64(*seq);
            ft::ACK
        }
    };
    let length = (body.len() - start - 4 + left_out.as_ref().map_or(0, Bytes::len)) as u32;
    body[start..start + 4].copy_from_slice(&length.to_be_bytes());
    body[start + 4] = kind;
    left_out
}

/// Decodes every frame in `buf`, which must hold whole frames only.
pub fn decode_all(buf: &[u8], limit: u32) -> Result<Vec<Frame>, DecodeError> {
    decode_owned(Bytes::copy_from_slice(buf), limit)
}

/// As [`decode_all`], taking the buffer: message data stays in it, shared rather than copied.
pub fn decode_owned(buf: impl Into<Bytes>, limit: u32) -> Result<Vec<Frame>, DecodeError> {
    let mut buf: Bytes = buf.into();
    let mut frames = Vec::new();
    while !buf.is_empty() {
        let Some(len) = frame_length(&buf, limit)? else { return Err(DecodeError::Truncated) };
        if buf.len() < 4 + len {
            return Err(DecodeError::Truncated);
        }
        buf.advance(4);
        frames.push(decode_frame(buf.split_to(len))?);
    }
    Ok(frames)
}

/// The body length announced by the frame header at the start of `buf`, checked against `limit`;
/// `None` while the header is incomplete.
fn frame_length(buf: &[u8], limit: u32) -> Result<Option<usize>, DecodeError> {
    let Some(header) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len == 0 {
        return Err(DecodeError::Malformed("zero-length frame"));
    }
    if len > limit {
        return Err(DecodeError::TooLarge { size: len as u64, limit });
    }
    Ok(Some(len as usize))
}

/// Decodes one frame's type and body (the length already stripped).
fn decode_frame(mut body: Bytes) -> Result<Frame, DecodeError> {
    let kind = body.get_u8();
    decode_body(kind, &mut body)
}

/// Incremental decoder: push bytes as they arrive, take frames out as they complete.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    limit: u32,
}

impl FrameDecoder {
    /// A decoder refusing frames whose length field exceeds `limit`.
    pub fn new(limit: u32) -> Self {
        FrameDecoder { buf: BytesMut::new(), limit }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` if more bytes are needed. The size check happens as soon as
    /// the header is in, so an oversized frame is refused before its body is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let Some(len) = frame_length(&self.buf, self.limit)? else { return Ok(None) };
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        decode_frame(self.buf.split_to(len).freeze()).map(Some)
    }
}

fn decode_body(kind: u8, b: &mut Bytes) -> Result<Frame, DecodeError> {
    let frame = match kind {
        ft::CONNECT_REQUEST => {
            let min_version = get_u8(b)?;
            let max_version = get_u8(b)?;
            let principal = get_str16(b)?;
            let cred_kind = get_u8(b)?;
            let cred = get_bytes32(b)?;
            let credentials = match cred_kind {
                CREDENTIALS_NONE => Credentials::None,
                CREDENTIALS_PASSWORD => Credentials::Password(cred),
                CREDENTIALS_CUSTOM => Credentials::Custom(cred),
                _ => return Err(DecodeError::Malformed("unknown credentials type")),
            };
            let count = get_u16(b)?;
            let mut properties = Vec::with_capacity(count.min(64) as usize);
            for _ in 0..count {
                properties.push((get_str16(b)?, get_str16(b)?));
            }
            Frame::ConnectRequest(ConnectRequest {
                min_version,
                max_version,
                principal,
                credentials,
                properties,
                reconnect_token: get_bytes16(b)?,
                last_received: get_u64(b)?,
                max_frame_size: get_u32(b)?,
            })
        }
        ft::CONNECT_RESPONSE => {
            let version = get_u8(b)?;
            let code =
                ResponseCode::from_wire(get_u8(b)?).ok_or(DecodeError::Malformed("unknown connect response code"))?;
            let session_id = SessionId { server_instance: get_u64(b)?, value: get_u64(b)? };
            Frame::ConnectResponse(ConnectResponse {
                version,
                code,
                session_id,
                token: get_bytes16(b)?,
                ping_interval_ms: get_u32(b)?,
                max_frame_size: get_u32(b)?,
                last_received: get_u64(b)?,
                message: get_str16(b)?,
            })
        }
        ft::PING => Frame::Ping(get_u64(b)?),
        ft::PONG => Frame::Pong(get_u64(b)?),
        ft::CLOSE => {
            let reason = CloseReason::from_wire(get_u8(b)?);
            Frame::Close { reason, message: get_str16(b)? }
        }
        ft::PUBLISH | ft::DELIVER => {
            let seq = get_u64(b)?;
            let path = get_path16(b)?;
            let data = get_shared32(b)?;
            let body =
                if kind == ft::PUBLISH { Message::Publish { path, data } } else { Message::Deliver { path, data } };
            Frame::Message { seq, body }
        }
        ft::SUBSCRIBE | ft::UNSUBSCRIBE => {
            let seq = get_u64(b)?;
            let path = get_str16(b)?;
            let body = if kind == ft::SUBSCRIBE { Message::Subscribe { path } } else { Message::Unsubscribe { path } };
            Frame::Message { seq, body }
        }
        ft::REFUSED => {
            let seq = get_u64(b)?;
            let path = get_str16(b)?;
            let action =
                RefusedAction::from_wire(get_u8(b)?).ok_or(DecodeError::Malformed("unknown refused action"))?;
            Frame::Message { seq, body: Message::Refused { action, path, message: get_str16(b)? } }
        }
        ft::ACK => Frame::Ack(get_u64(b)?),
        other => return Err(DecodeError::UnknownType(other)),
    };
    if b.has_remaining() {
        return Err(DecodeError::Malformed("trailing bytes after the last field"));
    }
    Ok(frame)
}

fn put_str16(b: &mut impl BufMut, s: &str) {
    put_bytes16(b, s.as_bytes());
}

/// Reasons for people (refusals, closes) are shortened to [`MAX_REASON_LEN`] bytes, at a
/// character boundary, so that the field stays valid UTF-8 whatever text the sender built.
fn put_reason(b: &mut impl BufMut, s: &str) {
    let mut end = s.len().min(MAX_REASON_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_str16(b, &s[..end]);
}

/// Every other 16-bit length field holds what was checked before it got here: principals,
/// property keys and values and their count by the session before it connects
/// (`SessionOptions::check_wire_lengths`), paths by `validate_path`, tokens by their makers.
fn put_bytes16(b: &mut impl BufMut, v: &[u8]) {
    debug_assert!(v.len() <= u16::MAX as usize, "a 16-bit length field of {} bytes", v.len());
    let v = &v[..v.len().min(u16::MAX as usize)];
    b.put_u16(v.len() as u16);
    b.put_slice(v);
}

fn put_bytes32(b: &mut impl BufMut, v: &[u8]) {
    b.put_u32(v.len() as u32);
    b.put_slice(v);
}

fn need(b: &Bytes, n: usize) -> Result<(), DecodeError> {
    if b.remaining() < n {
        Err(DecodeError::Malformed("field runs past the end of the frame"))
    } else {
        Ok(())
    }
}

fn get_u8(b: &mut Bytes) -> Result<u8, DecodeError> {
    need(b, 1)?;
    Ok(b.get_u8())
}

fn get_u16(b: &mut Bytes) -> Result<u16, DecodeError> {
    need(b, 2)?;
    Ok(b.get_u16())
}

fn get_u32(b: &mut Bytes) -> Result<u32, DecodeError> {
    need(b, 4)?;
    Ok(b.get_u32())
}

fn get_u64(b: &mut Bytes) -> Result<u64, DecodeError> {
    need(b, 8)?;
    Ok(b.get_u64())
}

fn get_vec(b: &mut Bytes, n: usize) -> Result<Vec<u8>, DecodeError> {
    need(b, n)?;
    Ok(b.split_to(n).to_vec())
}

fn get_bytes16(b: &mut Bytes) -> Result<Vec<u8>, DecodeError> {
    let n = get_u16(b)? as usize;
    get_vec(b, n)
}

fn get_bytes32(b: &mut Bytes) -> Result<Vec<u8>, DecodeError> {
    let n = get_u32(b)? as usize;
    get_vec(b, n)
}

/// A length-prefixed field as a view of the frame's buffer, without copying.
fn get_shared32(b: &mut Bytes) -> Result<Bytes, DecodeError> {
    let n = get_u32(b)? as usize;
    need(b, n)?;
    Ok(b.split_to(n))
}

fn get_str16(b: &mut Bytes) -> Result<String, DecodeError> {
    String::from_utf8(get_bytes16(b)?).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
}

/// A length-prefixed topic path, in one allocation.
fn get_path16(b: &mut Bytes) -> Result<super::TopicPath, DecodeError> {
    let n = get_u16(b)? as usize;
    need(b, n)?;
    let raw = b.split_to(n);
    std::str::from_utf8(&raw).map(super::TopicPath::from).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_shortened_at_a_character_boundary_not_cut_inside_one() {
        // 70,000 two-byte characters: a cut at 65,535 bytes would split one.
        let message = "é".repeat(70_000);
        let frame = Frame::Close { reason: CloseReason::Normal, message: message.clone() };
        let decoded = |frame: &Frame| decode_all(&encode(frame), u32::MAX).expect("decodable").remove(0);
        let Frame::Close { message: sent, .. } = decoded(&frame) else { panic!() };
        assert_eq!(sent.len(), MAX_REASON_LEN);
        assert!(message.starts_with(&sent));
        let Frame::ConnectResponse(mut response) = decoded(&Frame::ConnectResponse(ConnectResponse {
            version: 1,
            code: ResponseCode::Error,
            session_id: SessionId::default(),
            token: Vec::new(),
            ping_interval_ms: 1,
            max_frame_size: 1024,
            last_received: 0,
            message: String::new(),
        })) else {
            panic!()
        };
        response.message = format!("x{message}");
        let Frame::ConnectResponse(sent) = decoded(&Frame::ConnectResponse(response)) else { panic!() };
        assert_eq!(sent.message.len(), MAX_REASON_LEN - 1, "the last whole character before the limit");
    }

    #[test]
    fn data_left_out_of_an_encoding_completes_it_where_it_belongs() {
        let big = Bytes::from(vec![3u8; 5000]);
        let frames = [
            Frame::Ack(7),
            Frame::Message { seq: 1, body: Message::Deliver { path: "a/b".into(), data: big.clone() } },
            Frame::Message { seq: 2, body: Message::Publish { path: "c".into(), data: Bytes::from_static(b"small") } },
            Frame::Message { seq: 3, body: Message::Publish { path: "d".into(), data: big.clone() } },
        ];
        let mut whole = Vec::new();
        let mut pieced = Vec::new();
        for frame in &frames {
            encode_into(frame, &mut whole);
            if let Some(data) = encode_leaving_out(frame, &mut pieced, 1024) {
                assert_eq!(data, big, "only data of 1024 bytes or more is left out");
                pieced.extend_from_slice(&data);
            }
        }
        assert_eq!(pieced, whole);
        assert_eq!(decode_all(&whole, 1 << 20).unwrap(), frames);
    }
    use crate::protocol::{DEFAULT_MAX_FRAME_SIZE, MAX_VERSION, MIN_VERSION};

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::ConnectRequest(ConnectRequest {
                min_version: MIN_VERSION,
                max_version: MAX_VERSION,
                principal: "alice".into(),
                credentials: Credentials::Password(b"secret".to_vec()),
                properties: vec![("colour".into(), "blue".into())],
                reconnect_token: vec![1, 2, 3],
                last_received: 42,
                max_frame_size: 4096,
            }),
            Frame::ConnectResponse(ConnectResponse {
                version: 1,
                code: ResponseCode::Ok,
                session_id: SessionId { server_instance: 7, value: 9 },
                token: vec![0xaa; 16],
                ping_interval_ms: 15_000,
                max_frame_size: DEFAULT_MAX_FRAME_SIZE,
                last_received: 0,
                message: String::new(),
            }),
            Frame::Ping(5),
            Frame::Pong(5),
            Frame::Close { reason: CloseReason::ServerShutdown, message: "bye".into() },
            Frame::Message { seq: 1, body: Message::Publish { path: "a/b".into(), data: vec![0, 1, 2].into() } },
            Frame::Message { seq: 2, body: Message::Subscribe { path: "a/".into() } },
            Frame::Message { seq: 3, body: Message::Unsubscribe { path: "a/".into() } },
            Frame::Message { seq: u64::MAX, body: Message::Deliver { path: "x".into(), data: Default::default() } },
            Frame::Ack(42),
            Frame::Message {
                seq: 4,
                body: Message::Refused {
                    action: RefusedAction::Withdrawn,
                    path: "a/".into(),
                    message: "subscribing to a/ is not permitted for alice".into(),
                },
            },
        ]
    }

    #[test]
    fn every_refused_action_round_trips() {
        for action in [RefusedAction::Publish, RefusedAction::Subscribe, RefusedAction::Withdrawn] {
            let frame = Frame::Message {
                seq: 9,
                body: Message::Refused { action, path: "p/q".into(), message: "not permitted".into() },
            };
            assert_eq!(decode_all(&encode(&frame), 1024).unwrap(), vec![frame]);
        }
    }

    #[test]
    fn a_refused_with_an_unknown_action_is_malformed() {
        let frame = Frame::Message {
            seq: 1,
            body: Message::Refused { action: RefusedAction::Publish, path: "p".into(), message: "m".into() },
        };
        let mut bytes = encode(&frame);
        // length, type, seq, path (2 + 1): the action follows.
        bytes[4 + 1 + 8 + 3] = 0;
        assert_eq!(decode_all(&bytes, 1024), Err(DecodeError::Malformed("unknown refused action")));
        bytes[4 + 1 + 8 + 3] = 4;
        assert_eq!(decode_all(&bytes, 1024), Err(DecodeError::Malformed("unknown refused action")));
    }

    #[test]
    fn a_truncated_refused_is_malformed_not_a_panic() {
        let frame = Frame::Message {
            seq: 1,
            body: Message::Refused { action: RefusedAction::Subscribe, path: "p".into(), message: "why".into() },
        };
        let whole = encode(&frame);
        for cut in 1..whole.len() - 5 {
            let mut bytes = whole[..whole.len() - cut].to_vec();
            let length = (bytes.len() - 4) as u32;
            bytes[..4].copy_from_slice(&length.to_be_bytes());
            assert!(matches!(decode_all(&bytes, 1024), Err(DecodeError::Malformed(_))), "cut {cut}");
        }
    }

    #[test]
    fn message_data_is_a_view_of_the_received_buffer() {
        let frame =
            Frame::Message { seq: 1, body: Message::Deliver { path: "p".into(), data: Bytes::from(vec![7u8; 4096]) } };
        let received = Bytes::from(encode(&frame));
        let range = received.as_ptr_range();
        let Ok(mut frames) = decode_owned(received.clone(), DEFAULT_MAX_FRAME_SIZE) else { panic!("decodes") };
        let Some(Frame::Message { body: Message::Deliver { data, .. }, .. }) = frames.pop() else {
            panic!("a DELIVER")
        };
        assert_eq!(data.len(), 4096);
        assert!(range.contains(&data.as_ptr()), "the data was copied");
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in sample_frames() {
            let bytes = encode(&frame);
            assert_eq!(decode_all(&bytes, DEFAULT_MAX_FRAME_SIZE).unwrap(), vec![frame]);
        }
    }

    #[test]
    fn concatenated_frames_decode_in_order() {
        let frames = sample_frames();
        let bytes: Vec<u8> = frames.iter().flat_map(encode).collect();
        assert_eq!(decode_all(&bytes, DEFAULT_MAX_FRAME_SIZE).unwrap(), frames);
    }

    #[test]
    fn decoder_waits_for_a_frame_split_across_reads() {
        let bytes = encode(&Frame::Ping(77));
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE);
        for byte in &bytes[..bytes.len() - 1] {
            d.push(&[*byte]);
            assert_eq!(d.next_frame().unwrap(), None);
        }
        d.push(&bytes[bytes.len() - 1..]);
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Ping(77)));
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        let mut d = FrameDecoder::new(1024);
        d.push(&[0, 0, 0x10, 0, ft::PING]);
        assert_eq!(d.next_frame(), Err(DecodeError::TooLarge { size: 4096, limit: 1024 }));
    }

    #[test]
    fn truncated_field_is_malformed_not_a_panic() {
        let mut bytes = encode(&Frame::Ping(1));
        bytes.truncate(bytes.len() - 3);
        bytes[3] -= 3;
        assert!(matches!(decode_all(&bytes, 1024), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = encode(&Frame::Ping(1));
        bytes.push(0);
        bytes[3] += 1;
        assert!(matches!(decode_all(&bytes, 1024), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn unknown_type_and_zero_length_are_errors() {
        assert_eq!(decode_all(&[0, 0, 0, 1, 200], 1024), Err(DecodeError::UnknownType(200)));
        assert!(matches!(decode_all(&[0, 0, 0, 0], 1024), Err(DecodeError::Malformed(_))));
        assert_eq!(decode_all(&[0, 0, 0, 9, 3], 1024), Err(DecodeError::Truncated));
    }

    #[test]
    fn hostile_string_length_is_malformed() {
        // A CLOSE frame whose string claims 65535 bytes but carries none.
        let bytes = [0, 0, 0, 4, ft::CLOSE, 0, 0xff, 0xff];
        assert!(matches!(decode_all(&bytes, 1024), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn invalid_utf8_in_strings_is_malformed() {
        let bytes = [0, 0, 0, 6, ft::CLOSE, 0, 0, 2, 0xff, 0xfe];
        assert!(matches!(decode_all(&bytes, 1024), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn credentials_debug_output_hides_the_secret() {
        let text = format!("{:?}", Credentials::Password(b"hunter2".to_vec()));
        assert!(!text.contains("hunter2"));
    }
}
