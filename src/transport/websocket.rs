//! Frames over a WebSocket: one or more protocol frames per binary message.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig, Message};
use tokio_tungstenite::WebSocketStream;

use super::Stream;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{self, Frame, FRAME_HEADER_LEN};
use crate::session::cookies::CookieJar;
use crate::session::url::ServerUrl;
use crate::session::SessionOptions;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4 * 1024;

/// An open WebSocket to the server carrying protocol frames.
pub struct WsConnection {
    reader: SplitStream<WebSocketStream<Stream>>,
    /// `None` while lent ([`WsConnection::lend`]).
    writer: Option<WsWriter>,
    pending: VecDeque<Frame>,
    max_frame_size: u32,
    write_timeout: std::time::Duration,
    peer: String,
    /// Whether the server took the CONNECT_REQUEST from the upgrade request.
    connect_sent: bool,
}

impl WsConnection {
    /// Connects TCP and performs the WebSocket upgrade on `url`'s request path, offering the
    /// encoded CONNECT_REQUEST `connect` in the upgrade request. Frames larger than the options'
    /// maximum message size are refused when received.
    pub(crate) async fn open(
        url: &ServerUrl,
        options: &SessionOptions,
        cookies: &CookieJar,
        connect: &[u8],
    ) -> Result<WsConnection> {
        let peer = url.authority();
        let max_frame_size = options.frame_limit();
        let stream = super::open_stream(url, options).await?;
        let mut request = url.to_url_string().into_client_request().map_err(|e| {
            Error::new(ErrorCode::ParseUrl, format!("cannot build the upgrade request for {peer}: {e}"))
        })?;
        let extra = options.http_headers.iter().map(|(n, v)| (n.clone(), v.clone()));
        for (name, value) in extra.chain(cookies.header(url).map(|c| ("Cookie".to_string(), c))) {
            let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
            else {
                return Err(Error::illegal_argument(format!("header '{name}' cannot be sent")));
            };
            request.headers_mut().append(name, value);
        }
        // The request carries the credentials: marked sensitive, it never shows in debug output.
        let offered = match protocol::connect_header(connect).map(HeaderValue::try_from) {
            Some(Ok(mut value)) => {
                value.set_sensitive(true);
                request.headers_mut().insert(protocol::CONNECT_HEADER, value).is_none()
            }
            _ => false,
        };
        let message_limit = max_frame_size as usize + FRAME_HEADER_LEN;
        // The codec reads in chunks of up to READ_CHUNK bytes: the chunk is memory every idle
        // session holds, so it stays small; ReadAhead reads in bulk underneath while data streams.
        let config = WebSocketConfig::default()
            .max_message_size(Some(message_limit))
            .max_frame_size(Some(message_limit))
            .read_buffer_size(READ_CHUNK)
            .write_buffer_size(0);
        let stream: Stream = Box::new(super::readahead::ReadAhead::new(stream));
        let (ws, response) = match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                if let tungstenite::Error::Http(response) = &e {
                    cookies.store(url, response.headers());
                }
                return Err(upgrade_error(&peer, &url.path, e));
            }
        };
        cookies.store(url, response.headers());
        let accepted =
            response.headers().get(protocol::CONNECT_HEADER).is_some_and(|v| v == protocol::CONNECT_ACCEPTED);
        let (sink, reader) = ws.split();
        Ok(WsConnection {
            reader,
            writer: Some(WsWriter { sink }),
            pending: VecDeque::new(),
            max_frame_size,
            write_timeout: options.write_timeout,
            peer,
            connect_sent: offered && accepted,
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
        self.write(|sink| sink.send(Message::binary(frames))).await
    }

    /// Finishes sending what a borrower of the writer left in its buffer, within the write timeout.
    pub async fn flush(&mut self) -> Result<()> {
        self.write(|sink| sink.flush()).await
    }

    async fn write<'a, F>(&'a mut self, op: impl FnOnce(&'a mut WsSink) -> F) -> Result<()>
    where
        F: std::future::Future<Output = std::result::Result<(), tungstenite::Error>>,
    {
        let peer = &self.peer;
        let Some(writer) = self.writer.as_mut() else {
            return Err(Error::new(ErrorCode::SocketWriteFail, format!("cannot send to {peer}: the writer is lent")));
        };
        match tokio::time::timeout(self.write_timeout, op(&mut writer.sink)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(ErrorCode::SocketWriteFail, format!("cannot send to {peer}: {e}"))),
            Err(_) => Err(Error::new(
                ErrorCode::SocketWriteFail,
                format!("cannot send to {peer}: write not completed within {} ms", self.write_timeout.as_millis()),
            )),
        }
    }

    /// Hands the writer out (see [`WsWriter`]); sends fail until it is given back.
    pub fn lend(&mut self) -> Option<WsWriter> {
        self.writer.take()
    }

    /// Takes the writer back.
    pub fn reclaim(&mut self, writer: WsWriter) {
        self.writer = Some(writer);
    }

    /// The next frame; `Ok(None)` when the server closed the WebSocket. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(Some(frame));
            }
            let message = match self.reader.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(read_error(&self.peer, e)),
            };
            match message {
                Message::Binary(bytes) => {
                    let frames = protocol::decode_owned(bytes, self.max_frame_size).map_err(|e| {
                        Error::new(
                            ErrorCode::ConnectionProtocolError,
                            format!("server {} sent a bad frame: {e}", self.peer),
                        )
                    })?;
                    self.pending.extend(frames);
                }
                Message::Text(_) => {
                    return Err(Error::new(
                        ErrorCode::InvalidConnectionProtocol,
                        format!("server {} sent a text message; it does not speak the session protocol", self.peer),
                    ))
                }
                // WebSocket-level pings are answered by tungstenite itself.
                _ => {}
            }
        }
    }

    /// Closes the WebSocket politely; errors are irrelevant at this point.
    pub async fn close(mut self) {
        if let Some(writer) = self.writer.as_mut() {
            let _ = writer.sink.close().await;
        }
    }
}

type WsSink = SplitSink<WebSocketStream<Stream>, Message>;

/// The sending half of a WebSocket, which a session lends to the threads that publish while its
/// own task waits, so that a message can go out from the publishing thread without a hand-over.
/// Used without waiting: what the socket does not take at once stays buffered for the owner's
/// next [`WsConnection::flush`], and `cx` is woken when the owner should do so.
pub struct WsWriter {
    sink: WsSink,
}

impl WsWriter {
    /// Whether a message may be started now (not while the reading side is busy).
    pub fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.sink.poll_ready_unpin(cx), Poll::Ready(Ok(())))
    }

    /// Starts sending encoded frames as one message and writes what the socket takes at once:
    /// true when all of it went out, false when some is left for the owner (or the connection
    /// failed, which the owner will find).
    pub fn send_now(&mut self, frames: Vec<u8>, cx: &mut Context<'_>) -> bool {
        if self.sink.start_send_unpin(Message::binary(frames)).is_err() {
            return false;
        }
        matches!(self.sink.poll_flush_unpin(cx), Poll::Ready(Ok(())))
    }
}

fn upgrade_error(peer: &str, path: &str, e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let error = Error::new(
                ErrorCode::HandshakeRecvFail,
                format!(
                    "server {peer} answered the WebSocket upgrade on '{path}' with HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
            );
            if matches!(status.as_u16(), 502..=504) {
                error.try_later()
            } else {
                error
            }
        }
        // A connection cut during the upgrade is the network's doing: worth trying again.
        tungstenite::Error::Io(io) => Error::new(
            ErrorCode::HandshakeRecvFail,
            format!("connection to {peer} failed during the WebSocket upgrade: {io}"),
        )
        .try_later(),
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HandshakeIncomplete) => Error::new(
            ErrorCode::HandshakeRecvFail,
            format!("server {peer} closed the connection during the WebSocket upgrade"),
        )
        .try_later(),
        other => Error::new(
            ErrorCode::InvalidConnectionProtocol,
            format!("server {peer} did not complete the WebSocket upgrade: {other}"),
        ),
    }
}

fn read_error(peer: &str, e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Capacity(c) => Error::new(
            ErrorCode::ConnectionProtocolError,
            format!("server {peer} sent a message over the size limit: {c}"),
        ),
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => Error::new(
            ErrorCode::CommunicationError,
            format!("connection to {peer} lost: reset without a closing handshake"),
        ),
        tungstenite::Error::Protocol(p) => {
            Error::new(ErrorCode::ConnectionProtocolError, format!("server {peer} broke the WebSocket protocol: {p}"))
        }
        other => Error::new(ErrorCode::CommunicationError, format!("connection to {peer} lost: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxySetting;
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
        let options = SessionOptions { proxy: ProxySetting::Disabled, ..SessionOptions::default() };
        let request = protocol::encode(&Frame::Ping(9));
        let conn = WsConnection::open(&url, &options, &CookieJar::default(), &request).await.unwrap();
        (conn.connect_sent(), server.await.unwrap())
    }

    #[tokio::test]
    async fn the_connect_request_goes_in_the_upgrade_and_counts_once_the_server_says_so() {
        let header = protocol::connect_header(&protocol::encode(&Frame::Ping(9)));
        assert_eq!(upgrade_answering(true).await, (true, header.clone()));
        // Without the server's word, the client must still send it as its first message.
        assert_eq!(upgrade_answering(false).await, (false, header));
    }
}
