//! Frames over a WebSocket: one or more protocol frames per binary message.
//!
//! The upgrade and the framing are the library's own, over the shared framing of
//! [`super::wsframe`]: bytes read go into one buffer that is not zero-filled first, and the
//! messages' payloads (and the data of the deliveries in them) are handed on as they lie there;
//! an outgoing message is masked in place and written as its header and payload in one vectored
//! write.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::wsframe::{self, Decoder, Event, FrameError, Peer, BINARY, CLOSE, PONG};
use super::TransportOptions;
use super::{Loan, Stream};
use crate::error::{Error, ErrorCode, Result};
use crate::http::cookies::CookieJar;
use crate::http::response::{ProxyResponse, ResponseReader};
use crate::http::url::ServerUrl;
use crate::net::ReadBuffer;
use crate::protocol::{self, Frame, FRAME_HEADER_LEN};
use std::sync::Arc;

/// What the server sent next.
#[derive(Debug)]
pub enum Received {
    Frame(Frame),
    /// The server closed the WebSocket.
    Closed,
    /// A WebSocket ping, to be answered by the next flush.
    PongDue,
}

/// An open WebSocket to the server carrying protocol frames.
pub struct WsConnection {
    reader: ReadHalf<Stream>,
    /// Bytes read and not yet taken.
    read: ReadBuffer,
    decoder: Decoder,
    /// `None` while lent ([`WsConnection::lend`]).
    writer: Option<WsWriter>,
    /// Where the writer is while lent.
    loan: Arc<Loan>,
    /// The frames of the last message read, not yet taken; no memory once all are.
    pending: std::vec::IntoIter<Frame>,
    max_frame_size: u32,
    write_timeout: Duration,
    peer: String,
    /// Whether the server took the CONNECT_REQUEST from the upgrade request.
    connect_sent: bool,
    /// The payload of a ping to answer.
    pong_due: Option<Bytes>,
}

impl WsConnection {
    /// Connects TCP and performs the WebSocket upgrade on `url`'s request path, offering the
    /// encoded CONNECT_REQUEST `connect` in the upgrade request. Frames larger than the options'
    /// maximum message size are refused when received.
    pub(crate) async fn open(
        url: &ServerUrl,
        options: &TransportOptions,
        cookies: &CookieJar,
        connect: &[u8],
        loan: Arc<Loan>,
    ) -> Result<WsConnection> {
        let peer = url.authority();
        let max_frame_size = options.max_frame_size;
        let mut stream = super::open_stream(url, options).await?;
        let key = generate_key();
        let offer = protocol::connect_header(connect);
        let request = upgrade_request(url, options, cookies, &key, offer.as_deref());
        if let Err(e) = async {
            stream.write_all(&request).await?;
            stream.flush().await
        }
        .await
        {
            return Err(Error::new(
                ErrorCode::HandshakeSendFail,
                format!("cannot send the WebSocket upgrade request to {peer}: {e}"),
            )
            .try_later());
        }
        let (response, rest) = read_upgrade_response(&mut stream, &peer).await?;
        cookies.store(url, &response.headers);
        check_upgrade(&response, &key, &peer, &url.path)?;
        let accepted = response.header(protocol::CONNECT_HEADER).is_some_and(|v| v == protocol::CONNECT_ACCEPTED);
        let vectored = stream.is_write_vectored();
        let (reader, writer) = tokio::io::split(stream);
        Ok(WsConnection {
            reader,
            read: ReadBuffer::new(&rest),
            decoder: Decoder::new(Peer::Server, max_frame_size as usize + FRAME_HEADER_LEN),
            writer: Some(WsWriter { half: writer, vectored, out: VecDeque::new() }),
            loan,
            pending: Vec::new().into_iter(),
            max_frame_size,
            write_timeout: options.write_timeout,
            peer,
            connect_sent: offer.is_some() && accepted,
            pong_due: None,
        })
    }

    /// `host:port` of the server.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the server took the CONNECT_REQUEST from the upgrade request (and the client must
    /// not send it again).
    pub fn connect_sent(&self) -> bool {
        self.connect_sent
    }

    /// Sends one frame, within the write timeout.
    pub async fn send(&mut self, frame: &Frame) -> Result<()> {
        self.send_encoded(protocol::encode(frame)).await
    }

    /// Sends already encoded frames (one or more) as one message, within the write timeout.
    pub async fn send_encoded(&mut self, frames: Vec<u8>) -> Result<()> {
        self.send_batch(WsBatch::message(BINARY, frames)).await
    }

    /// Sends gathered messages, within the write timeout.
    pub async fn send_batch(&mut self, batch: WsBatch) -> Result<()> {
        self.write(Some(batch)).await
    }

    /// Finishes sending what a borrower of the writer left unwritten, and answers a ping, within
    /// the write timeout.
    pub async fn flush(&mut self) -> Result<()> {
        self.write(None).await
    }

    /// Finishes what was begun, answers a due ping, then sends `batch`.
    async fn write(&mut self, batch: Option<WsBatch>) -> Result<()> {
        self.hold();
        let peer = &self.peer;
        let Some(writer) = self.writer.as_mut() else {
            return Err(Error::new(ErrorCode::SocketWriteFail, format!("cannot send to {peer}: the writer is gone")));
        };
        let batch = match (self.pong_due.take(), batch) {
            (Some(payload), batch) => {
                let mut with_pong = WsBatch::message(PONG, payload.to_vec());
                with_pong.append(batch);
                Some(with_pong)
            }
            (None, batch) => batch,
        };
        let work = async {
            writer.drain().await?;
            if let Some(batch) = batch {
                writer.start(batch);
                writer.drain().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(self.write_timeout, work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(ErrorCode::SocketWriteFail, format!("cannot send to {peer}: {e}"))),
            Err(_) => Err(Error::new(
                ErrorCode::SocketWriteFail,
                format!("cannot send to {peer}: write not completed within {} ms", self.write_timeout.as_millis()),
            )),
        }
    }

    /// Takes the writer back if it is lent.
    pub fn hold(&mut self) {
        if self.writer.is_none() {
            self.writer = self.loan.reclaim();
        }
    }

    /// Lends the writer to the application's threads ([`Loan`]) until the next write, which
    /// takes it back.
    pub fn lend(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.loan.lend(writer);
        }
    }

    /// The next frame; `Ok(None)` when the server closed the WebSocket. Answers pings itself,
    /// so the writer must not be lent.
    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        loop {
            match self.next().await? {
                Received::Frame(frame) => return Ok(Some(frame)),
                Received::Closed => return Ok(None),
                Received::PongDue => self.flush().await?,
            }
        }
    }

    /// A frame of a message already read, without waiting.
    pub fn decoded(&mut self) -> Option<Frame> {
        let frame = self.pending.next();
        if frame.is_some() && self.pending.len() == 0 {
            self.pending = Vec::new().into_iter();
        }
        frame
    }

    /// What the server sent next. Cancel-safe.
    pub async fn next(&mut self) -> Result<Received> {
        loop {
            if let Some(frame) = self.decoded() {
                return Ok(Received::Frame(frame));
            }
            match self.decoder.decode(self.read.bytes()) {
                Ok(Some(Event::Binary(payload))) => {
                    let frames = protocol::decode_owned(payload, self.max_frame_size).map_err(|e| {
                        Error::new(
                            ErrorCode::ConnectionProtocolError,
                            format!("server {} sent a bad frame: {e}", self.peer),
                        )
                    })?;
                    // Empty: the loop took every frame before.
                    self.pending = frames.into_iter();
                    continue;
                }
                Ok(Some(Event::Text)) => {
                    return Err(Error::new(
                        ErrorCode::InvalidConnectionProtocol,
                        format!("server {} sent a text message; it does not speak the session protocol", self.peer),
                    ))
                }
                Ok(Some(Event::Ping(payload))) => {
                    self.pong_due = Some(payload);
                    return Ok(Received::PongDue);
                }
                Ok(Some(Event::Pong)) => continue,
                Ok(Some(Event::Close)) => return Ok(Received::Closed),
                Ok(None) => {}
                Err(FrameError::TooLarge(why)) => {
                    return Err(Error::new(
                        ErrorCode::ConnectionProtocolError,
                        format!("server {} sent a message over the size limit: {why}", self.peer),
                    ))
                }
                Err(FrameError::Protocol(why)) => {
                    return Err(Error::new(
                        ErrorCode::ConnectionProtocolError,
                        format!("server {} broke the WebSocket protocol: {why}", self.peer),
                    ))
                }
            }
            self.fill().await?;
        }
    }

    /// Reads what the socket has (see [`ReadBuffer`]), at least the rest of a frame begun.
    async fn fill(&mut self) -> Result<()> {
        let wanted = self.decoder.wanted(self.read.bytes());
        match self.read.fill(&mut self.reader, wanted).await {
            Ok(0) => Err(Error::new(
                ErrorCode::CommunicationError,
                format!("connection to {} lost: closed without a closing handshake", self.peer),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(Error::new(ErrorCode::CommunicationError, format!("connection to {} lost: {e}", self.peer))),
        }
    }

    /// Closes the WebSocket politely; errors are irrelevant at this point.
    pub async fn close(mut self) {
        if self.write(Some(WsBatch::message(CLOSE, 1000u16.to_be_bytes().to_vec()))).await.is_ok() {
            if let Some(writer) = self.writer.as_mut() {
                let _ = tokio::time::timeout(self.write_timeout, writer.half.shutdown()).await;
            }
        }
    }
}

impl Drop for WsConnection {
    /// A writer still lent goes with the connection.
    fn drop(&mut self) {
        drop(self.loan.reclaim());
    }
}

/// The upgrade request (RFC 6455, section 4.1) for `url`, with the options' headers, the
/// session's cookies and the offered CONNECT_REQUEST.
fn upgrade_request(
    url: &ServerUrl,
    options: &TransportOptions,
    cookies: &CookieJar,
    key: &str,
    offer: Option<&str>,
) -> Vec<u8> {
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
    ];
    // The options' headers were checked when they were set: no CR, LF or NUL in them.
    let cookie = cookies.header(url);
    let headers = upgrade
        .into_iter()
        .chain(options.http_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .chain(cookie.as_deref().map(|c| ("Cookie", c)))
        .chain(offer.map(|offer| (protocol::CONNECT_HEADER, offer)));
    crate::http::request("GET", &url.path, &url.authority(), headers, &[])
}

/// Reads the answer to the upgrade request: its head, and the bytes after it.
async fn read_upgrade_response(stream: &mut Stream, peer: &str) -> Result<(ProxyResponse, Vec<u8>)> {
    let mut reader = ResponseReader::upgrade(peer);
    // Waiting for the answer holds no buffer (thousands of sessions may be connecting at once).
    let mut read = ReadBuffer::default();
    loop {
        match read.fill(stream, 0).await {
            Ok(0) => {
                return Err(Error::new(
                    ErrorCode::HandshakeRecvFail,
                    format!("server {peer} closed the connection during the WebSocket upgrade"),
                )
                .try_later())
            }
            Ok(_) => {}
            // A connection cut during the upgrade is the network's doing: worth trying again.
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::HandshakeRecvFail,
                    format!("connection to {peer} failed during the WebSocket upgrade: {e}"),
                )
                .try_later())
            }
        };
        if let Some(response) = reader.push(&read.bytes().split())? {
            return Ok((response, reader.into_rest()));
        }
    }
}

/// Checks that the answer completes the upgrade.
fn check_upgrade(response: &ProxyResponse, key: &str, peer: &str, path: &str) -> Result<()> {
    if response.status != 101 {
        let status = response.status;
        let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let error = Error::new(
            ErrorCode::HandshakeRecvFail,
            format!("server {peer} answered the WebSocket upgrade on '{path}' with HTTP {status} {reason}"),
        );
        return Err(if matches!(status, 502..=504) { error.try_later() } else { error });
    }
    let has = |name: &str, token: &str| {
        response.header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let why = if !has("upgrade", "websocket") {
        "no 'Upgrade: websocket' in the answer"
    } else if !has("connection", "upgrade") {
        "no 'Connection: upgrade' in the answer"
    } else if response.header("sec-websocket-accept").as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        "a wrong Sec-WebSocket-Accept in the answer"
    } else {
        return Ok(());
    };
    Err(Error::new(
        ErrorCode::InvalidConnectionProtocol,
        format!("server {peer} did not complete the WebSocket upgrade: {why}"),
    ))
}

/// Protocol frames gathered into WebSocket messages for one write. Small frames are encoded
/// together into one message, masked as a whole. A frame whose data was masked beforehand (see
/// [`WsBatch::add_masked`]) goes as a message of its own, its data sent from where it lies: a
/// large publication is copied once, when it is published, and not again.
#[derive(Default)]
pub struct WsBatch {
    /// Whole messages, headers and payloads, in order.
    parts: Vec<Bytes>,
    /// Frames encoded for the next small message.
    small: Vec<u8>,
    /// Bytes in `parts`.
    gathered: usize,
}

impl WsBatch {
    /// One message with opcode `opcode` and this payload.
    pub fn message(opcode: u8, payload: Vec<u8>) -> WsBatch {
        let mut batch = WsBatch::default();
        batch.push_message(opcode, payload);
        batch
    }

    /// An empty batch with room for a burst of small frames.
    pub fn for_burst() -> WsBatch {
        WsBatch { small: protocol::batch_buffer(), ..WsBatch::default() }
    }

    /// Adds `frame` to the small message.
    pub fn add(&mut self, frame: &Frame) {
        if self.small.capacity() == 0 {
            self.small = protocol::encode(frame);
        } else {
            protocol::encode_into(frame, &mut self.small);
        }
    }

    /// Adds `frame` as a message of its own, masked with `key`. The data of the publication in
    /// it is masked already, as its place in the frame's encoding requires
    /// ([`wsframe::mask_at`]); only the bytes before it are masked here.
    pub fn add_masked(&mut self, frame: &Frame, key: [u8; 4]) {
        self.end_small();
        let mut head = Vec::with_capacity(64);
        let data = protocol::encode_leaving_out(frame, &mut head, 0).unwrap_or_default();
        wsframe::apply_mask(&mut head, key);
        let (header, used) = wsframe::header(BINARY, head.len() + data.len(), Some(key));
        head.splice(0..0, header[..used].iter().copied());
        self.gathered += head.len() + data.len();
        self.parts.push(head.into());
        self.parts.push(data);
    }

    /// Adds the messages of `other` after these.
    fn append(&mut self, other: Option<WsBatch>) {
        if let Some(other) = other {
            self.end_small();
            self.gathered += other.len();
            self.parts.extend(other.into_parts());
        }
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.gathered + self.small.len()
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the small message.
    fn end_small(&mut self) {
        if !self.small.is_empty() {
            let payload = std::mem::take(&mut self.small);
            self.push_message(BINARY, payload);
        }
    }

    /// Adds a message: masks the payload in place with a fresh key (RFC 6455, section 5.3).
    fn push_message(&mut self, opcode: u8, mut payload: Vec<u8>) {
        let key: [u8; 4] = rand::random();
        wsframe::apply_mask(&mut payload, key);
        let (header, used) = wsframe::header(opcode, payload.len(), Some(key));
        self.gathered += used + payload.len();
        self.parts.push(Bytes::copy_from_slice(&header[..used]));
        self.parts.push(payload.into());
    }

    /// All the bytes, one after the other.
    #[cfg(test)]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.into_parts().iter().map(|p| &p[..]).collect::<Vec<&[u8]>>().concat()
    }

    /// The bytes to write, in order.
    fn into_parts(mut self) -> VecDeque<Bytes> {
        self.end_small();
        self.parts.into()
    }
}

/// The sending half of a WebSocket, which a session lends to the threads that publish while its
/// own task waits, so that a message can go out from the publishing thread without a hand-over.
/// Used without waiting: what the socket does not take at once stays for the owner's next
/// [`WsConnection::flush`], and `cx` is woken when the owner should do so.
pub struct WsWriter {
    half: WriteHalf<Stream>,
    /// Whether the stream takes several buffers in one write.
    vectored: bool,
    /// What is left to write of the batch begun.
    out: VecDeque<Bytes>,
}

/// The most buffers given to one write.
const MAX_WRITE_PARTS: usize = 64;

impl WsWriter {
    /// Whether a batch may be started now (the last one is all written).
    pub fn ready(&self) -> bool {
        self.out.is_empty()
    }

    /// Starts sending `batch` and writes what the socket takes at once: true when all of it went
    /// out, false when some is left for the owner (or the connection failed, which the owner will
    /// find).
    pub fn send_now(&mut self, batch: WsBatch, cx: &mut Context<'_>) -> bool {
        self.start(batch);
        matches!(self.poll_drain(cx), Poll::Ready(Ok(())))
    }

    fn start(&mut self, batch: WsBatch) {
        let mut parts = batch.into_parts();
        if !self.vectored && parts.len() > 1 {
            // One write for all: a header written alone would go out as a packet (or a TLS
            // record) of its own.
            parts = VecDeque::from([Bytes::from(parts.iter().map(|p| &p[..]).collect::<Vec<&[u8]>>().concat())]);
        }
        self.out.extend(parts);
    }

    /// Writes the batch begun, then flushes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.out.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.out.iter().take(MAX_WRITE_PARTS).map(|p| IoSlice::new(p)).collect();
            let mut n = ready!(Pin::new(&mut self.half).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            while let Some(first) = self.out.front_mut() {
                if first.len() > n {
                    first.advance(n);
                    break;
                }
                n -= first.len();
                self.out.pop_front();
            }
        }
        Pin::new(&mut self.half).poll_flush(cx)
    }

    async fn drain(&mut self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxySetting;
    use bytes::BytesMut;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    /// A server that answers the upgrade, saying it took the CONNECT_REQUEST or not; returns the
    /// header value it got.
    // The upgrade callback's result type is tungstenite's.
    #[allow(clippy::result_large_err)]
    async fn upgrade_answering(accept: bool) -> (bool, Option<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = ServerUrl::parse(&format!("ws://{}/diffusion", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut offered = None;
            let callback = |request: &Request, mut response: Response| {
                offered = request.headers().get(protocol::CONNECT_HEADER).map(|v| v.to_str().unwrap().to_string());
                if accept {
                    response
                        .headers_mut()
                        .insert(protocol::CONNECT_HEADER, protocol::CONNECT_ACCEPTED.parse().unwrap());
                }
                Ok(response)
            };
            let ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await.unwrap();
            drop(ws);
            offered
        });
        let options =
            TransportOptions { proxy: ProxySetting::Disabled, max_frame_size: 1 << 20, ..TransportOptions::default() };
        let request = protocol::encode(&Frame::Ping(9));
        let conn = WsConnection::open(&url, &options, &CookieJar::default(), &request, Arc::default()).await.unwrap();
        (conn.connect_sent(), server.await.unwrap())
    }

    #[tokio::test]
    async fn a_message_the_socket_takes_in_pieces_goes_out_whole_and_masked() {
        for vectored in [true, false] {
            // Room for 5 bytes at a time: the header itself is cut.
            let (near, mut far) = tokio::io::duplex(5);
            let (_, half) = tokio::io::split(Box::new(near) as Stream);
            let mut writer = WsWriter { half, vectored, out: VecDeque::new() };
            let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
            let waker = std::task::Waker::noop();
            let batch = WsBatch::message(BINARY, payload.clone());
            assert!(!writer.send_now(batch, &mut Context::from_waker(waker)), "not all at once");
            assert!(!writer.ready());
            let reading = tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let mut decoder = Decoder::new(Peer::Client, 1024);
                loop {
                    if let Some(event) = decoder.decode(&mut buf).unwrap() {
                        return event;
                    }
                    far.read_buf(&mut buf).await.unwrap();
                }
            });
            writer.drain().await.unwrap();
            assert!(writer.ready());
            assert_eq!(reading.await.unwrap(), Event::Binary(payload.into()));
        }
    }

    #[tokio::test]
    async fn the_connect_request_goes_in_the_upgrade_and_counts_once_the_server_says_so() {
        let header = protocol::connect_header(&protocol::encode(&Frame::Ping(9)));
        assert_eq!(upgrade_answering(true).await, (true, header.clone()));
        // Without the server's word, the client must still send it as its first message.
        assert_eq!(upgrade_answering(false).await, (false, header));
    }
}
