//! Ways of carrying protocol frames to the server.

mod outbound;
mod polling;
mod websocket;
#[doc(hidden)]
pub mod wsframe;

pub use outbound::{Loan, Outbound, MASKED_AT_PUBLISH};
pub use polling::PollConnection;
pub use websocket::{Received, WsBatch, WsConnection, WsWriter};

use crate::error::{Error, ErrorCode, Result};
use crate::http::url::ServerUrl;
use crate::net::connect_tcp;
pub use crate::net::{Io, Stream};
use crate::proxy::{ProxyOptions, ProxySetting};

/// What a transport needs to know: how to reach the server, and what to send and accept.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Sockets, TLS and the connection timeout, for the server and a proxy alike.
    pub connect: ProxyOptions,
    /// The proxy to go through.
    pub proxy: ProxySetting,
    /// Bound on one write.
    pub write_timeout: std::time::Duration,
    /// Largest protocol frame accepted from the server.
    pub max_frame_size: u32,
    /// Extra headers on every HTTP request to the server.
    pub http_headers: Vec<(String, String)>,
}

/// How a session reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket.
    WebSocket,
    /// HTTP long polling.
    HttpPolling,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::WebSocket => "WEBSOCKET",
            Transport::HttpPolling => "HTTP_POLLING",
        })
    }
}

/// A connection to the server over one of the transports.
pub enum Connection {
    Ws(Box<WsConnection>),
    Poll(Box<PollConnection>),
}

impl Connection {
    /// Opens a connection over `transport` (polling connections open with their first send). A
    /// WebSocket offers the encoded CONNECT_REQUEST `connect` in its upgrade request.
    pub(crate) async fn open(
        transport: Transport,
        url: &ServerUrl,
        options: &TransportOptions,
        cookies: &std::sync::Arc<crate::http::cookies::CookieJar>,
        connect: &[u8],
        loan: &std::sync::Arc<Loan>,
    ) -> Result<Connection> {
        Ok(match transport {
            Transport::WebSocket => {
                Connection::Ws(Box::new(WsConnection::open(url, options, cookies, connect, loan.clone()).await?))
            }
            Transport::HttpPolling => Connection::Poll(Box::new(PollConnection::new(url, options, cookies.clone())?)),
        })
    }

    pub fn peer(&self) -> &str {
        match self {
            Connection::Ws(c) => c.peer(),
            Connection::Poll(c) => c.peer(),
        }
    }

    /// Whether the server already has the CONNECT_REQUEST (it came with the WebSocket upgrade).
    pub fn connect_sent(&self) -> bool {
        match self {
            Connection::Ws(c) => c.connect_sent(),
            Connection::Poll(_) => false,
        }
    }

    pub async fn send(&mut self, frame: &crate::protocol::Frame) -> Result<()> {
        self.send_encoded(crate::protocol::encode(frame)).await
    }

    pub async fn send_encoded(&mut self, frames: Vec<u8>) -> Result<()> {
        match self {
            Connection::Ws(c) => c.send_encoded(frames).await,
            // A polling send may have to open a connection (proxy, TLS): a large future, boxed so
            // that it does not weigh on every session's task.
            Connection::Poll(c) => Box::pin(c.send_encoded(frames)).await,
        }
    }

    /// The next frame; `Ok(None)` when the server closed the connection. Answers WebSocket
    /// pings itself, so the writer must not be lent.
    /// An empty batch for this connection's transport.
    pub fn batch(&self) -> Batch {
        match self {
            Connection::Ws(_) => Batch::Ws(WsBatch::for_burst()),
            Connection::Poll(_) => Batch::Plain(crate::protocol::batch_buffer()),
        }
    }

    /// Sends `batch` (gathered for this connection's transport).
    pub async fn send_batch(&mut self, batch: Batch) -> Result<()> {
        match (self, batch) {
            (Connection::Ws(c), Batch::Ws(batch)) => c.send_batch(batch).await,
            (Connection::Poll(c), Batch::Plain(frames)) => Box::pin(c.send_encoded(frames)).await,
            (conn, _) => Err(Error::new(
                ErrorCode::SocketWriteFail,
                format!("cannot send to {}: a batch gathered for another transport", conn.peer()),
            )),
        }
    }

    pub async fn recv(&mut self) -> Result<Option<crate::protocol::Frame>> {
        match self {
            Connection::Ws(c) => c.recv().await,
            Connection::Poll(c) => c.recv().await,
        }
    }

    /// What the server sent next; a WebSocket ping is answered by the next [`Connection::flush`].
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Received> {
        match self {
            Connection::Ws(c) => c.next().await,
            Connection::Poll(c) => Ok(c.recv().await?.map_or(Received::Closed, Received::Frame)),
        }
    }

    /// A frame already received and decoded (one of a batch), without waiting.
    pub fn decoded(&mut self) -> Option<crate::protocol::Frame> {
        match self {
            Connection::Ws(c) => c.decoded(),
            Connection::Poll(_) => None,
        }
    }

    /// Lends a WebSocket's writer to the application's threads ([`Loan`]) until the next write.
    pub fn lend(&mut self) {
        if let Connection::Ws(c) = self {
            c.lend();
        }
    }

    /// Takes a lent writer back: before messages are numbered for a send, so that none numbered
    /// later goes out before them through the loan.
    pub fn hold(&mut self) {
        if let Connection::Ws(c) = self {
            c.hold();
        }
    }

    /// Finishes sending what a borrower of the writer left buffered, and answers a WebSocket ping.
    pub async fn flush(&mut self) -> Result<()> {
        match self {
            Connection::Ws(c) => c.flush().await,
            Connection::Poll(_) => Ok(()),
        }
    }

    pub async fn close(self) {
        match self {
            Connection::Ws(c) => c.close().await,
            Connection::Poll(c) => drop(c),
        }
    }
}

/// Frames gathered for one send, as the connection's transport carries them.
pub enum Batch {
    /// WebSocket messages.
    Ws(WsBatch),
    /// Encoded frames, one after the other (HTTP long polling).
    Plain(Vec<u8>),
}

impl Batch {
    /// Adds `frame`.
    pub fn add(&mut self, frame: &crate::protocol::Frame) {
        match self {
            Batch::Ws(batch) => batch.add(frame),
            Batch::Plain(batch) => crate::protocol::encode_into(frame, batch),
        }
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        match self {
            Batch::Ws(batch) => batch.len(),
            Batch::Plain(batch) => batch.len(),
        }
    }

    /// Adds numbered messages and frames, in order.
    pub fn extend(&mut self, items: impl IntoIterator<Item = crate::protocol::reliable::Item<Outbound>>) {
        for item in items {
            match item {
                crate::protocol::reliable::Item::Frame(frame) => self.add(&frame),
                crate::protocol::reliable::Item::Message(seq, message) => message.add_to(seq, self),
            }
        }
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens the byte stream to the server of `url`: directly or through the proxy the options name,
/// then TLS for wss://.
pub(crate) async fn open_stream(url: &ServerUrl, options: &TransportOptions) -> Result<Stream> {
    let authority = url.authority();
    let deadline = tokio::time::Instant::now() + options.connect.connection_timeout;
    let proxy = options.proxy.resolve(url.secure, &url.host, url.port, |name| std::env::var(name).ok())?;
    let stream: Stream = match &proxy {
        Some(proxy) => {
            tracing::debug!(proxy = %proxy.authority(), server = %authority, "connecting through a proxy");
            crate::proxy::tunnel(proxy, &url.host, url.port, &options.connect, deadline).await?
        }
        None => Box::new(connect_tcp(&url.host, url.port, &authority, &options.connect.socket).await?),
    };
    if url.secure {
        crate::tls::connect(stream, &url.host, &authority, &options.connect.tls).await
    } else {
        Ok(stream)
    }
}
