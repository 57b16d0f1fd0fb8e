//! A TCP socket that follows its session from one runtime to another.
//!
//! A blocking create connects on the calling thread, with a runtime of its own, and the session
//! then lives on an I/O thread. A tokio socket is registered with the runtime that created it, so
//! the first time another library runtime polls it, it moves its registration there: the data
//! already read stays in the layers above, and readiness starts afresh in the new runtime. An
//! application thread writing with a lent writer (outside any library runtime) uses the
//! registration as it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::runtime;

/// A connected TCP socket registered with the library runtime polling it.
#[derive(Debug)]
pub struct Socket {
    /// `None` only if moving failed, which is then reported as the socket's error.
    tcp: Option<TcpStream>,
    /// The runtime it is registered with ([`runtime::here`]).
    home: u64,
}

impl Socket {
    /// A socket registered with the current runtime.
    pub fn new(tcp: TcpStream) -> Socket {
        Socket { tcp: Some(tcp), home: runtime::here() }
    }

    /// Polls the stream with `poll`, first moving it to the runtime polling it now if needed.
    fn with<T>(
        self: Pin<&mut Self>,
        poll: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match self.get_mut().here() {
            Ok(tcp) => poll(tcp),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The stream, registered with the runtime polling it now.
    fn here(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        let here = runtime::here();
        // 0: a thread of the application writing with a lent writer; the registration stays.
        if here != self.home && here != 0 {
            if let Some(tcp) = self.tcp.take() {
                let moved = TcpStream::from_std(tcp.into_std()?)?;
                tracing::trace!(from = self.home, to = here, "socket moved to another runtime");
                self.tcp = Some(moved);
                self.home = here;
            }
        }
        match self.tcp.as_mut() {
            Some(tcp) => Ok(Pin::new(tcp)),
            None => Err(io::Error::other("the socket could not move to the session's I/O thread")),
        }
    }
}

/// Writes `bufs` with `sendmsg` and `MSG_NOSIGNAL`, as tokio's plain writes do with `send`: a
/// `writev` to a connection the peer has reset raises SIGPIPE, which ends a C program that keeps
/// the signal's default action.
pub(crate) fn poll_send_vectored(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(tcp.poll_write_ready(cx))?;
        let send = || socket2::SockRef::from(tcp).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL);
        match tcp.try_io(tokio::io::Interest::WRITABLE, send) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            written => return Poll::Ready(written),
        }
    }
}

/// A TCP stream of a runtime other than the library's (the server's), whose vectored writes
/// never raise SIGPIPE either.
#[derive(Debug)]
pub struct QuietTcp(pub TcpStream);

impl AsyncRead for QuietTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuietTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_send_vectored(&self.0, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
impl Socket {
    pub(crate) fn tcp(&self) -> &TcpStream {
        self.tcp.as_ref().expect("a socket that has not moved")
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.with(|tcp| tcp.poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.with(|tcp| tcp.poll_write(cx, data))
    }

    /// See [`poll_send_vectored`].
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|tcp| poll_send_vectored(tcp.get_mut(), cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|tcp| tcp.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|tcp| tcp.poll_shutdown(cx))
    }
}
