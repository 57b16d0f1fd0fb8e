//! The network underneath everything: TCP connections with the application's socket options,
//! and the byte stream type every layer hands to the next.

mod read_buffer;
pub(crate) mod socket;

pub use read_buffer::{ReadBuffer, BULK, CHUNK};

pub use socket::QuietTcp;

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;

use socket::Socket;

use crate::error::{Error, ErrorCode, Result};

/// Socket settings the application chose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// Receive buffer size; `None`: the kernel's, grown with the traffic.
    pub input_buffer_size: Option<u32>,
    /// Send buffer size; `None`: the kernel's, grown with the traffic.
    pub output_buffer_size: Option<u32>,
}

/// A byte stream: TCP, a proxy tunnel, TLS over either.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The stream type every layer hands to the next.
pub type Stream = Box<dyn Io>;

/// Resolves `host` and connects to the first address that accepts, with the socket buffer sizes
/// of `options`.
pub(crate) async fn connect_tcp(host: &str, port: u16, authority: &str, options: &SocketOptions) -> Result<Socket> {
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
    async fn receive_buffer(options: &SocketOptions) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let socket = connect_tcp("127.0.0.1", port, "test", options).await.unwrap();
        socket2::SockRef::from(socket.tcp()).recv_buffer_size().unwrap()
    }

    #[tokio::test]
    async fn socket_buffers_are_the_kernels_unless_set() {
        let kernel = tokio::net::TcpSocket::new_v4().unwrap().recv_buffer_size().unwrap() as usize;
        assert_eq!(receive_buffer(&SocketOptions::default()).await, kernel);
        let set = SocketOptions { input_buffer_size: Some(8192), ..Default::default() };
        // Linux doubles the size asked for (bookkeeping included); other systems may round.
        let fixed = receive_buffer(&set).await;
        assert!((8192..=2 * 8192).contains(&fixed), "{fixed}");
    }
}
