//! Ways of carrying protocol frames to the server.

mod websocket;

pub use websocket::WsConnection;

use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

use crate::error::{Error, ErrorCode, Result};
use crate::session::SessionOptions;

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
