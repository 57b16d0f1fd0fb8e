//! Ways of carrying protocol frames to the server.

pub(crate) mod prefixed;
mod websocket;

pub use websocket::WsConnection;

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{Error, ErrorCode, Result};
use crate::session::url::ServerUrl;
use crate::session::SessionOptions;

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
pub(crate) async fn connect_tcp(host: &str, port: u16, authority: &str, options: &SessionOptions) -> Result<TcpStream> {
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
        // Buffer sizes are hints the kernel may adjust; failing to apply them is not fatal.
        let _ = socket.set_recv_buffer_size(options.input_buffer_size);
        let _ = socket.set_send_buffer_size(options.output_buffer_size);
        match socket.connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::new(ErrorCode::SocketConnectFail, format!("cannot connect to {authority}: {e}")))
}
