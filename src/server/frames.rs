//! The server's side of WebSocket framing (RFC 6455, section 5), without the copies a general
//! WebSocket library makes: bytes read go into one buffer that is not zero-filled first, each
//! message's payload is unmasked in place and handed on as it lies there, and a frame goes out as
//! its header and its payload in one vectored write. tungstenite parses the headers.
//!
//! [`Decoder`] is the state machine over the bytes read (tested without sockets); [`ServerWs`]
//! runs it on a connection.

use std::io::{Cursor, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use crate::transport::Stream;

/// Opcodes of the frames the server sends.
pub(crate) const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PONG: u8 = 0xA;

/// The longest control frame payload.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Bytes read at a time from a quiet connection: the buffer an idle connection holds.
const CHUNK: usize = 4 * 1024;
/// Bytes read at a time while data streams in (a read filled the buffer).
const BULK: usize = 64 * 1024;

/// A whole message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why the client's bytes are not acceptable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A message over the size limit.
    TooLarge(String),
    /// Not a WebSocket frame as a client must send it.
    Protocol(String),
}

/// Takes frames out of the bytes read, reassembling fragmented messages.
pub(crate) struct Decoder {
    /// The largest message accepted.
    limit: usize,
    /// The header of the frame whose payload is awaited, and the payload's length.
    header: Option<(FrameHeader, usize)>,
    /// A message begun in fragments: whether it is text, and its payload so far.
    fragments: Option<(bool, BytesMut)>,
}

impl Decoder {
    pub(crate) fn new(limit: usize) -> Decoder {
        Decoder { limit, header: None, fragments: None }
    }

    /// The next event, taking its bytes from `buf`; `None`: more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, FrameError> {
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
                unmask(&mut payload, mask);
            }
            if let Some(event) = self.take(header, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Bytes still missing from the frame begun in `buf` (0 when no header has been read).
    pub(crate) fn wanted(&self, buf: &BytesMut) -> usize {
        self.header.as_ref().map_or(0, |(_, length)| length.saturating_sub(buf.len()))
    }

    /// Checks a header against what a client may send; returns the payload length.
    fn check(&self, header: &FrameHeader, length: u64) -> Result<usize, FrameError> {
        let refuse = |why: &str| Err(FrameError::Protocol(why.into()));
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return refuse("reserved bits set without an extension");
        }
        if header.mask.is_none() {
            return refuse("a client frame must be masked");
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

/// XORs `data` with the client's masking key, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
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

/// The header of a final, unmasked frame (the server's) with `opcode` and `length` bytes of
/// payload; the bytes used of the array.
pub(crate) fn header(opcode: u8, length: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    let used = match length {
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
    (head, used)
}

/// The server's end of a WebSocket connection, after the upgrade.
pub(crate) struct ServerWs {
    stream: Stream,
    /// Bytes read and not yet taken.
    buf: BytesMut,
    decoder: Decoder,
    /// Whether the last read filled the buffer (data is streaming in).
    bulk: bool,
    /// Bytes to write before the next frame (the upgrade response, to leave in one segment with
    /// the first frame: split, an intermediary with Nagle's algorithm on would hold the second
    /// part until the client's delayed ACK).
    prefix: Vec<u8>,
}

impl ServerWs {
    /// `read`: bytes the client sent after its upgrade request, already read; `prefix`: written
    /// with the first frame; `limit`: the largest message accepted.
    pub(crate) fn new(stream: Stream, read: &[u8], prefix: Vec<u8>, limit: usize) -> ServerWs {
        ServerWs { stream, buf: BytesMut::from(read), decoder: Decoder::new(limit), bulk: false, prefix }
    }

    /// The next event from the client; an I/O failure or the end of the connection is reported
    /// as its reason.
    pub(crate) async fn recv(&mut self) -> Result<Result<Event, FrameError>, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(event)) => return Ok(Ok(event)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
            if self.buf.is_empty() && !self.bulk && self.buf.capacity() > 2 * BULK {
                // Quiet again: an idle connection keeps a small buffer.
                self.buf = BytesMut::new();
            }
            let wanted = self.decoder.wanted(&self.buf).max(if self.bulk { BULK } else { CHUNK });
            self.buf.reserve(wanted);
            let room = self.buf.capacity() - self.buf.len();
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.bulk = n == room,
                Err(e) => return Err(format!("connection failed: {e}")),
            }
        }
    }

    /// Sends one frame (the upgrade response first, if it has not gone yet) and flushes.
    pub(crate) async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.send_parts(opcode, &[payload]).await
    }

    /// Sends one frame whose payload is `parts`, one after the other, in one vectored write.
    pub(crate) async fn send_parts(&mut self, opcode: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let (head, used) = header(opcode, parts.iter().map(|p| p.len()).sum());
        let prefix = std::mem::take(&mut self.prefix);
        let mut slices = Vec::with_capacity(parts.len() + 2);
        slices.push(IoSlice::new(&prefix));
        slices.push(IoSlice::new(&head[..used]));
        slices.extend(parts.iter().map(|p| IoSlice::new(p)));
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            let written = self.stream.write_vectored(rest).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        self.stream.flush().await
    }

    /// Writes the upgrade response if it has not gone with a frame yet.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.prefix.is_empty() {
            let prefix = std::mem::take(&mut self.prefix);
            self.stream.write_all(&prefix).await?;
        }
        self.stream.flush().await
    }

    /// Answers a ping.
    pub(crate) async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.send(PONG, payload).await
    }

    /// Sends a close frame (normal closure) and flushes; the connection may then be dropped.
    pub(crate) async fn close(&mut self) -> std::io::Result<()> {
        self.send(CLOSE, &1000u16.to_be_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
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
            assert_eq!(decode_all(&mut Decoder::new(1 << 20), &bytes), vec![Ok(Event::Binary(payload.clone().into()))]);
            if size <= 300 {
                let mut decoder = Decoder::new(1 << 20);
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
            decode_all(&mut Decoder::new(1024), &bytes),
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
        let protocol = |bytes: Vec<u8>| match decode_all(&mut Decoder::new(1024), &bytes).pop() {
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
        let mut decoder = Decoder::new(100);
        // Only the header of a 1 MiB frame: refused before any payload is awaited.
        let mut buf = BytesMut::from(&client_frame(0x82, &vec![0u8; 1 << 20])[..14]);
        assert!(matches!(decoder.decode(&mut buf), Err(FrameError::TooLarge(_))));
        // Fragments are counted together.
        let mut bytes = client_frame(0x02, &[1u8; 60]);
        bytes.extend(client_frame(0x80, &[2u8; 60]));
        assert!(matches!(decode_all(&mut Decoder::new(100), &bytes).pop(), Some(Err(FrameError::TooLarge(_)))));
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
            let mut decoder = Decoder::new(32);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
            // Never more than the limit (or a control frame's 125 bytes) is awaited.
            assert!(decoder.wanted(&buf) <= 125);
        }
    }

    #[test]
    fn the_decoder_asks_for_the_rest_of_a_frame() {
        let bytes = client_frame(0x82, &[5u8; 1000]);
        let mut decoder = Decoder::new(4096);
        let mut buf = BytesMut::from(&bytes[..100]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.wanted(&buf), 1000 - (100 - 8));
    }

    #[test]
    fn server_headers_take_the_shortest_length_form() {
        assert_eq!(&header(BINARY, 5).0[..2], &[0x82, 5]);
        assert_eq!(header(BINARY, 125).1, 2);
        assert_eq!(&header(BINARY, 126).0[..4], &[0x82, 126, 0, 126]);
        assert_eq!(header(BINARY, 65_535).1, 4);
        assert_eq!(&header(BINARY, 65_536).0[..], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[tokio::test]
    async fn frames_go_out_after_the_prefix_and_come_back_whole() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut ws =
            ServerWs::new(Box::new(server), &client_frame(0x82, b"early"), b"HTTP/1.1 101 ...\r\n\r\n".to_vec(), 1024);
        assert_eq!(ws.recv().await, Ok(Ok(Event::Binary(Bytes::from_static(b"early")))));
        ws.send(BINARY, &[9u8; 300]).await.unwrap();
        ws.close().await.unwrap();
        drop(ws);
        let mut client = client;
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        let mut expected = b"HTTP/1.1 101 ...\r\n\r\n".to_vec();
        expected.extend_from_slice(&[0x82, 126, 1, 44]);
        expected.extend_from_slice(&[9u8; 300]);
        expected.extend_from_slice(&[0x88, 2, 0x03, 0xE8]);
        assert_eq!(all, expected);
    }
}
