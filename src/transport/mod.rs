//! Ways of carrying protocol frames to the server.

mod polling;
pub(crate) mod socket;
mod websocket;
#[doc(hidden)]
pub mod wsframe;

pub use polling::PollConnection;
pub use websocket::{Received, WsBatch, WsConnection, WsWriter};

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;

use socket::Socket;

use crate::error::{Error, ErrorCode, Result};
use crate::session::url::ServerUrl;
use crate::session::SessionOptions;

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
        options: &SessionOptions,
        cookies: &std::sync::Arc<crate::session::cookies::CookieJar>,
        connect: &[u8],
    ) -> Result<Connection> {
        Ok(match transport {
            Transport::WebSocket => Connection::Ws(Box::new(WsConnection::open(url, options, cookies, connect).await?)),
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

    /// Hands out a WebSocket's writer (see [`WsWriter`]); `None` for polling.
    pub fn lend(&mut self) -> Option<WsWriter> {
        match self {
            Connection::Ws(c) => c.lend(),
            Connection::Poll(_) => None,
        }
    }

    /// Takes a lent writer back.
    pub fn reclaim(&mut self, writer: WsWriter) {
        if let Connection::Ws(c) = self {
            c.reclaim(writer);
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

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A byte stream: TCP, a proxy tunnel, TLS over either.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The stream type every layer hands to the next.
pub type Stream = Box<dyn Io>;

/// Opens the byte stream to the server of `url`: directly or through the proxy the options name,
/// then TLS for wss://.
pub(crate) async fn open_stream(url: &ServerUrl, options: &SessionOptions) -> Result<Stream> {
    let authority = url.authority();
    let deadline = tokio::time::Instant::now() + options.connection_timeout;
    let proxy = options.proxy.resolve(url.secure, &url.host, url.port, |name| std::env::var(name).ok())?;
    let stream: Stream = match &proxy {
        Some(proxy) => {
            tracing::debug!(proxy = %proxy.authority(), server = %authority, "connecting through a proxy");
            crate::proxy::tunnel(proxy, &url.host, url.port, options, deadline).await?
        }
        None => Box::new(connect_tcp(&url.host, url.port, &authority, options).await?),
    };
    if url.secure {
        crate::tls::connect(stream, &url.host, &authority, &options.tls).await
    } else {
        Ok(stream)
    }
}

/// Resolves `host` and connects to the first address that accepts, with the socket buffer sizes
/// of `options`.
pub(crate) async fn connect_tcp(host: &str, port: u16, authority: &str, options: &SessionOptions) -> Result<Socket> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::new(ErrorCode::AddrLookupFail, format!("cannot resolve host '{host}': {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(ErrorCode::AddrLookupFail, format!("host '{host}' has no addresses")));
    }
    let mut last = None;
    for addr in addrs {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("cannot create a socket for {authority}: {e}")))?;
        // Sizes the application chose (else the kernel's own, grown with the traffic). They are
        // hints the kernel may adjust; failing to apply them is not fatal.
        if let Some(size) = options.input_buffer_size {
            let _ = socket.set_recv_buffer_size(size);
        }
        if let Some(size) = options.output_buffer_size {
            let _ = socket.set_send_buffer_size(size);
        }
        match socket.connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(Socket::new(stream));
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::new(ErrorCode::SocketConnectFail, format!("cannot connect to {authority}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receive buffer of a connection made with `options`.
    async fn receive_buffer(options: &SessionOptions) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let socket = connect_tcp("127.0.0.1", port, "test", options).await.unwrap();
        socket2::SockRef::from(socket.tcp()).recv_buffer_size().unwrap()
    }

    #[tokio::test]
    async fn socket_buffers_are_the_kernels_unless_set() {
        let kernel = tokio::net::TcpSocket::new_v4().unwrap().recv_buffer_size().unwrap() as usize;
        assert_eq!(receive_buffer(&SessionOptions::default()).await, kernel);
        let set = SessionOptions { input_buffer_size: Some(8192), ..Default::default() };
        // Linux doubles the size asked for (bookkeeping included); other systems may round.
        let fixed = receive_buffer(&set).await;
        assert!((8192..=2 * 8192).contains(&fixed), "{fixed}");
    }
}
