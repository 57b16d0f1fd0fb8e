//! WebSocket framing (RFC 6455, section 5) for both ends, without the copies a general WebSocket
//! library makes: the bytes read go into one buffer that is not zero-filled first, each
//! message's payload is unmasked in place and handed on as it lies there, and a frame goes out as
//! its header and its payload, side by side in one vectored write. tungstenite parses the
//! headers.
//!
//! [`Decoder`] is the state machine over the bytes read, tested without sockets.

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// Opcodes of the frames sent.
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PONG: u8 = 0xA;

/// The longest control frame payload.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte masking key.
pub(crate) const MAX_HEADER: usize = 14;

/// Which end sent the frames a [`Decoder`] takes: a client must mask its frames, a server must
/// not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

/// A whole message or control frame from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why the peer's bytes are not acceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A message over the size limit.
    TooLarge(String),
    /// Not a WebSocket frame as the peer must send it.
    Protocol(String),
}

/// Takes frames out of the bytes read, reassembling fragmented messages.
pub struct Decoder {
    /// The largest message accepted.
    limit: usize,
    from: Peer,
    /// The header of the frame whose payload is awaited, and the payload's length.
    header: Option<(FrameHeader, usize)>,
    /// A message begun in fragments: whether it is text, and its payload so far.
    fragments: Option<(bool, BytesMut)>,
}

impl Decoder {
    /// Takes frames sent `from` a client or a server, messages of up to `limit` bytes.
    pub fn new(from: Peer, limit: usize) -> Decoder {
        Decoder { limit, from, header: None, fragments: None }
    }

    /// The next event, taking its bytes from `buf`; `None`: more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, FrameError> {
        loop {
            if self.header.is_none() {
                let mut cursor = Cursor::new(&buf[..]);
                let parsed = FrameHeader::parse(&mut cursor).map_err(|e| FrameError::Protocol(e.to_string()))?;
                let Some((header, length)) = parsed else { return Ok(None) };
                let length = self.check(&header, length)?;
                buf.advance(cursor.position() as usize);
                self.header = Some((header, length));
            }
            let Some((_, length)) = &self.header else { return Ok(None) };
            if buf.len() < *length {
                return Ok(None);
            }
            let Some((header, length)) = self.header.take() else { return Ok(None) };
            let mut payload = buf.split_to(length);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask);
            }
            if let Some(event) = self.take(header, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Bytes still missing from the frame begun in `buf` (0 when no header has been read).
    pub fn wanted(&self, buf: &BytesMut) -> usize {
        self.header.as_ref().map_or(0, |(_, length)| length.saturating_sub(buf.len()))
    }

    /// Checks a header against what the peer may send; returns the payload length.
    fn check(&self, header: &FrameHeader, length: u64) -> Result<usize, FrameError> {
        let refuse = |why: &str| Err(FrameError::Protocol(why.into()));
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return refuse("reserved bits set without an extension");
        }
        match (self.from, header.mask) {
            (Peer::Client, None) => return refuse("a client frame must be masked"),
            (Peer::Server, Some(_)) => return refuse("a server frame must not be masked"),
            _ => {}
        }
        match header.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return refuse("unknown opcode");
            }
            OpCode::Control(_) if !header.is_final || length > MAX_CONTROL_PAYLOAD => {
                return refuse("control frames are short and not fragmented");
            }
            OpCode::Data(Data::Continue) if self.fragments.is_none() => {
                return refuse("a continuation frame without a message begun");
            }
            OpCode::Data(Data::Text | Data::Binary) if self.fragments.is_some() => {
                return refuse("a new message began before the last one ended");
            }
            _ => {}
        }
        let so_far = self.fragments.as_ref().map_or(0, |(_, payload)| payload.len() as u64);
        if matches!(header.opcode, OpCode::Data(_)) && so_far.saturating_add(length) > self.limit as u64 {
            return Err(FrameError::TooLarge(format!(
                "Message too long: {} > {}",
                so_far.saturating_add(length),
                self.limit
            )));
        }
        Ok(length as usize)
    }

    /// What a whole frame makes: an event, or `None` for a fragment of a message.
    fn take(&mut self, header: FrameHeader, payload: BytesMut) -> Result<Option<Event>, FrameError> {
        let event = |text: bool, payload: BytesMut| if text { Event::Text } else { Event::Binary(payload.freeze()) };
        Ok(match header.opcode {
            OpCode::Control(Control::Ping) => Some(Event::Ping(payload.freeze())),
            OpCode::Control(Control::Pong) => Some(Event::Pong),
            OpCode::Control(_) => Some(Event::Close),
            OpCode::Data(Data::Continue) => {
                let Some((_, so_far)) = self.fragments.as_mut() else {
                    return Err(FrameError::Protocol("a continuation frame without a message begun".into()));
                };
                so_far.extend_from_slice(&payload);
                match self.fragments.take() {
                    Some((text, whole)) if header.is_final => Some(event(text, whole)),
                    begun => {
                        self.fragments = begun;
                        None
                    }
                }
            }
            OpCode::Data(data) => {
                let text = matches!(data, Data::Text);
                if header.is_final {
                    Some(event(text, payload))
                } else {
                    self.fragments = Some((text, payload));
                    None
                }
            }
        })
    }
}

/// XORs `data` with a masking key, eight bytes at a time: masks and unmasks.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let key = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ key).to_ne_bytes());
    }
    // The words took a multiple of 8 bytes, so the key starts afresh here.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// XORs `data` with a masking key as the bytes at `offset` of a masked payload.
pub(crate) fn mask_at(data: &mut [u8], key: [u8; 4], offset: usize) {
    let turn = offset % 4;
    apply_mask(data, [key[turn], key[(turn + 1) % 4], key[(turn + 2) % 4], key[(turn + 3) % 4]]);
}

/// The header of a final frame with `opcode` and `length` bytes of payload, masked with `mask`
/// (a client's) or not (a server's); the bytes used of the array.
pub fn header(opcode: u8, length: usize, mask: Option<[u8; 4]>) -> ([u8; MAX_HEADER], usize) {
    let mut head = [0u8; MAX_HEADER];
    head[0] = 0x80 | opcode;
    let mut used = match length {
        0..=125 => {
            head[1] = length as u8;
            2
        }
        126..=0xFFFF => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(length as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(length as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        head[1] |= 0x80;
        head[used..used + 4].copy_from_slice(&key);
        used += 4;
    }
    (head, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        client_frame_with(first_byte, payload, [0x37, 0xfa, 0x21, 0x3d])
    }

    /// A client frame masked with `key`, byte by byte.
    fn client_frame_with(first_byte: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first_byte];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Result<Event, FrameError>> {
        let mut buf = BytesMut::from(bytes);
        let mut events = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => events.push(Ok(event)),
                Ok(None) => return events,
                Err(e) => {
                    events.push(Err(e));
                    return events;
                }
            }
        }
    }

    #[test]
    fn messages_of_every_length_class_arrive_unmasked_even_a_byte_at_a_time() {
        for size in [0usize, 1, 7, 8, 9, 125, 126, 65_535, 65_536, 100_003] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let bytes = client_frame(0x82, &payload);
            assert_eq!(
                decode_all(&mut Decoder::new(Peer::Client, 1 << 20), &bytes),
                vec![Ok(Event::Binary(payload.clone().into()))]
            );
            if size <= 300 {
                let mut decoder = Decoder::new(Peer::Client, 1 << 20);
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for byte in &bytes {
                    buf.extend_from_slice(&[*byte]);
                    if let Some(event) = decoder.decode(&mut buf).unwrap() {
                        got.push(event);
                    }
                }
                assert_eq!(got, vec![Event::Binary(payload.into())]);
            }
        }
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_come_between() {
        let mut bytes = client_frame(0x02, b"hello ");
        bytes.extend(client_frame(0x89, b"ping!"));
        bytes.extend(client_frame(0x00, b"big "));
        bytes.extend(client_frame(0x80, b"world"));
        bytes.extend(client_frame(0x8A, b""));
        bytes.extend(client_frame(0x81, b"text"));
        bytes.extend(client_frame(0x88, &1000u16.to_be_bytes()));
        assert_eq!(
            decode_all(&mut Decoder::new(Peer::Client, 1024), &bytes),
            vec![
                Ok(Event::Ping(Bytes::from_static(b"ping!"))),
                Ok(Event::Binary(Bytes::from_static(b"hello big world"))),
                Ok(Event::Pong),
                Ok(Event::Text),
                Ok(Event::Close),
            ]
        );
    }

    #[test]
    fn what_a_client_may_not_send_is_refused() {
        let protocol = |bytes: Vec<u8>| match decode_all(&mut Decoder::new(Peer::Client, 1024), &bytes).pop() {
            Some(Err(FrameError::Protocol(_))) => {}
            other => panic!("{other:?}"),
        };
        protocol(vec![0x82, 0x03, b'a', b'b', b'c']); // unmasked
        protocol(client_frame(0xC2, b"x")); // RSV1 without an extension
        protocol(client_frame(0x83, b"x")); // reserved data opcode
        protocol(client_frame(0x8B, b"x")); // reserved control opcode
        protocol(client_frame(0x09, b"x")); // fragmented ping
        protocol(client_frame(0x89, &[0u8; 126])); // ping over 125 bytes
        protocol(client_frame(0x80, b"x")); // continuation of nothing
        let mut twice = client_frame(0x02, b"a");
        twice.extend(client_frame(0x82, b"b"));
        protocol(twice); // a new message inside a fragmented one
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header_alone() {
        let mut decoder = Decoder::new(Peer::Client, 100);
        // Only the header of a 1 MiB frame: refused before any payload is awaited.
        let mut buf = BytesMut::from(&client_frame(0x82, &vec![0u8; 1 << 20])[..14]);
        assert!(matches!(decoder.decode(&mut buf), Err(FrameError::TooLarge(_))));
        // Fragments are counted together.
        let mut bytes = client_frame(0x02, &[1u8; 60]);
        bytes.extend(client_frame(0x80, &[2u8; 60]));
        assert!(matches!(
            decode_all(&mut Decoder::new(Peer::Client, 100), &bytes).pop(),
            Some(Err(FrameError::TooLarge(_)))
        ));
    }

    #[test]
    fn arbitrary_bytes_end_in_events_errors_or_a_wait_never_a_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let length = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            if let Some(first) = bytes.get_mut(1) {
                *first |= 0x80; // mostly masked, to get past the first check
            }
            let mut decoder = Decoder::new(Peer::Client, 32);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
            // Never more than the limit (or a control frame's 125 bytes) is awaited.
            assert!(decoder.wanted(&buf) <= 125);
        }
    }

    #[test]
    fn the_decoder_asks_for_the_rest_of_a_frame() {
        let bytes = client_frame(0x82, &[5u8; 1000]);
        let mut decoder = Decoder::new(Peer::Client, 4096);
        let mut buf = BytesMut::from(&bytes[..100]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.wanted(&buf), 1000 - (100 - 8));
    }

    #[test]
    fn headers_take_the_shortest_length_form() {
        assert_eq!(&header(BINARY, 5, None).0[..2], &[0x82, 5]);
        assert_eq!(header(BINARY, 125, None).1, 2);
        assert_eq!(&header(BINARY, 126, None).0[..4], &[0x82, 126, 0, 126]);
        assert_eq!(header(BINARY, 65_535, None).1, 4);
        assert_eq!(&header(BINARY, 65_536, None).0[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_masked_frame_is_what_a_client_sends_and_a_server_refuses_what_a_client_must_not() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        for (length, key) in [(5usize, [1, 2, 3, 4]), (300, [0x37, 0xfa, 0x21, 0x3d])] {
            let (head, used) = header(BINARY, length, Some(key));
            let mut body = payload[..length].to_vec();
            apply_mask(&mut body, key);
            let mut bytes = head[..used].to_vec();
            bytes.extend_from_slice(&body);
            // The same bytes as the reference encoder's.
            assert_eq!(bytes, client_frame_with(0x82, &payload[..length], key));
            let events = decode_all(&mut Decoder::new(Peer::Client, 1024), &bytes);
            assert_eq!(events, vec![Ok(Event::Binary(payload[..length].to_vec().into()))]);
        }
        // Frames from a server are not masked; a masked one is refused.
        let plain = [0x82, 3, b'a', b'b', b'c'];
        let events = decode_all(&mut Decoder::new(Peer::Server, 1024), &plain);
        assert_eq!(events, vec![Ok(Event::Binary(Bytes::from_static(b"abc")))]);
        let masked = client_frame(0x82, b"abc");
        assert!(matches!(
            decode_all(&mut Decoder::new(Peer::Server, 1024), &masked).pop(),
            Some(Err(FrameError::Protocol(_)))
        ));
    }
}
