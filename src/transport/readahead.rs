//! The read side under the client's WebSocket codec: it adapts to traffic.
//!
//! The codec reads in small chunks, because its chunk is memory every idle connection holds. For
//! bulk traffic that would mean a system call per chunk. So: while reads are small, they go
//! straight into the caller's buffer and nothing else is held. Once a read fills the caller's
//! buffer (more is likely waiting), the stream allocates a staging buffer of [`BULK`] bytes and
//! reads into it, serving many of the caller's reads per system call. When the socket runs dry
//! (the read would wait), the staging buffer is released again.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::Stream;

/// Bytes read at a time while data is streaming in.
pub const BULK: usize = 256 * 1024;

/// What `inner` yields, read ahead in bulk while it streams; writes go to `inner`.
pub struct ReadAhead {
    inner: Stream,
    /// Bytes read but not yet handed out.
    staged: BytesMut,
    /// Whether reads go through `staged` (data is streaming in).
    bulk: bool,
}

impl ReadAhead {
    /// Reads from `inner`.
    pub fn new(inner: Stream) -> Self {
        ReadAhead { inner, staged: BytesMut::new(), bulk: false }
    }

    /// Hands out staged bytes.
    fn take_staged(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.staged.len().min(buf.remaining());
        buf.put_slice(&self.staged[..n]);
        self.staged.advance(n);
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.staged.is_empty() {
            this.take_staged(buf);
            return Poll::Ready(Ok(()));
        }
        let wanted = buf.remaining();
        if !this.bulk || wanted >= BULK {
            // Not streaming (or the caller reads in bulk itself): straight into its buffer.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            // A full buffer means more is probably waiting: read ahead from now on.
            this.bulk = wanted > 0 && wanted < BULK && buf.filled().len() - before == wanted;
            return Poll::Ready(Ok(()));
        }
        // Into spare capacity, which is not zero-filled first.
        this.staged.reserve(BULK);
        match std::pin::pin!(this.inner.read_buf(&mut this.staged)).poll(cx) {
            Poll::Pending => {
                // Dry: an idle connection holds no staging buffer.
                this.staged = BytesMut::new();
                this.bulk = false;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(_)) => {
                this.take_staged(buf);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_of_a_stream_arrive_whole_and_in_order() {
        let data: Vec<u8> = (0..3 * BULK + 123).map(|i| (i * 7 % 251) as u8).collect();
        let (client, mut server) = tokio::io::duplex(BULK * 4);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(10_000) {
                server.write_all(piece).await.unwrap();
            }
        });
        let mut stream = ReadAhead::new(Box::new(client));
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
    }

    /// Counts the reads that reach the stream underneath.
    struct Counted(tokio::io::DuplexStream, std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, data)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn streaming_data_is_read_in_bulk() {
        let (client, mut server) = tokio::io::duplex(BULK * 2);
        server.write_all(&vec![3u8; 64 * 4096]).await.unwrap();
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut stream = ReadAhead::new(Box::new(Counted(client, reads.clone())));
        let mut chunk = [0u8; 4096];
        for _ in 0..64 {
            assert_eq!(stream.read(&mut chunk).await.unwrap(), 4096);
        }
        // One small read that fills the caller's buffer, then one bulk read for the rest.
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_stream_that_goes_quiet_holds_no_staging_buffer() {
        let (client, mut server) = tokio::io::duplex(BULK * 4);
        server.write_all(&vec![1u8; 3 * 4096]).await.unwrap();
        let mut stream = ReadAhead::new(Box::new(client));
        let mut chunk = [0u8; 4096];
        for _ in 0..3 {
            assert_eq!(stream.read(&mut chunk).await.unwrap(), 4096);
        }
        // Nothing more is waiting: the next read waits, and the staging buffer is gone.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), stream.read(&mut chunk)).await;
        assert!(waited.is_err());
        assert_eq!(stream.staged.capacity(), 0);
    }
}
