//! Ways of carrying protocol frames to the server.

mod websocket;

pub use websocket::WsConnection;

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::error::{Error, ErrorCode, Result};

/// Resolves `host` and connects to the first address that accepts.
pub(crate) async fn connect_tcp(host: &str, port: u16, authority: &str) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::new(ErrorCode::AddrLookupFail, format!("cannot resolve host '{host}': {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(ErrorCode::AddrLookupFail, format!("host '{host}' has no addresses")));
    }
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
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
