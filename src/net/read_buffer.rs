//! Bytes read from a connection and not yet decoded, held in memory sized to the traffic.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes read at a time from a quiet connection.
pub const CHUNK: usize = 4 * 1024;
/// Bytes read at a time while data streams in (a read filled what it was given).
pub const BULK: usize = 64 * 1024;

/// The bytes read from a connection and not yet taken.
///
/// A quiet connection holds no buffer: the read it waits in has a [`CHUNK`] on the stack of the
/// poll that completes it, and keeps only the bytes that came (an idle session would otherwise
/// keep a buffer for nothing, thousands of them in a process). While data streams in (a read
/// filled what it was given), reads go straight into a buffer of [`BULK`] bytes, until the
/// connection is quiet again.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    buf: BytesMut,
    /// Whether the last read filled what it was given.
    bulk: bool,
}

impl ReadBuffer {
    /// A buffer holding `read`: bytes that came before (after a handshake's head).
    pub fn new(read: &[u8]) -> ReadBuffer {
        ReadBuffer { buf: BytesMut::from(read), bulk: false }
    }

    /// The bytes read and not yet taken; a decoder takes from the front.
    pub fn bytes(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Reads what `reader` has, at least `wanted` bytes' room given (the rest of a frame begun);
    /// the count read, 0 at the end of the stream. Cancel-safe: dropped while waiting, it has
    /// read nothing.
    pub async fn fill<R: AsyncRead + Unpin + ?Sized>(&mut self, reader: &mut R, wanted: usize) -> io::Result<usize> {
        if self.buf.is_empty() && !self.bulk && wanted <= CHUNK {
            // Quiet: give back what the last bytes used (frames taken from them keep their own
            // share) and wait without a buffer.
            self.buf = BytesMut::new();
            let n = poll_fn(|cx| {
                let mut scratch = [const { MaybeUninit::<u8>::uninit() }; CHUNK];
                let mut read = ReadBuf::uninit(&mut scratch);
                ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
                self.buf.extend_from_slice(read.filled());
                Poll::Ready(Ok::<_, io::Error>(read.filled().len()))
            })
            .await?;
            self.bulk = n == CHUNK;
            return Ok(n);
        }
        self.buf.reserve(wanted.max(if self.bulk { BULK } else { CHUNK }));
        let room = self.buf.capacity() - self.buf.len();
        let n = reader.read_buf(&mut self.buf).await?;
        self.bulk = n == room;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_quiet_connection_holds_only_the_bytes_that_came() {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut buffer = ReadBuffer::default();
        theirs.write_all(b"hello").await.unwrap();
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), 5);
        assert_eq!(&buffer.bytes()[..], b"hello");
        assert!(buffer.bytes().capacity() < CHUNK, "capacity {}", buffer.bytes().capacity());
        // Taken: the next wait starts from nothing.
        let taken = buffer.bytes().split().freeze();
        theirs.write_all(b"!").await.unwrap();
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), 1);
        assert_eq!(&taken[..], b"hello");
        assert_eq!(&buffer.bytes()[..], b"!");
    }

    #[tokio::test]
    async fn streaming_data_is_read_in_bulk_until_the_connection_is_quiet_again() {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut buffer = ReadBuffer::default();
        theirs.write_all(&vec![7u8; 3 * BULK]).await.unwrap();
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), CHUNK);
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), BULK);
        let mut total = buffer.bytes().len();
        buffer.bytes().clear();
        while total < 3 * BULK {
            total += buffer.fill(&mut ours, 0).await.unwrap();
            buffer.bytes().clear();
        }
        assert_eq!(total, 3 * BULK);
        theirs.write_all(b"quiet").await.unwrap();
        buffer.fill(&mut ours, 0).await.unwrap();
        buffer.bytes().clear();
        theirs.write_all(b"again").await.unwrap();
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), 5);
        assert!(buffer.bytes().capacity() < CHUNK);
    }

    #[tokio::test]
    async fn the_rest_of_a_frame_begun_gets_the_room_it_needs() {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut buffer = ReadBuffer::new(b"head");
        theirs.write_all(&vec![1u8; 100_000]).await.unwrap();
        buffer.fill(&mut ours, 100_000).await.unwrap();
        assert!(buffer.bytes().capacity() >= 100_004);
    }

    #[tokio::test]
    async fn a_read_dropped_while_waiting_loses_nothing() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let mut buffer = ReadBuffer::default();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), buffer.fill(&mut ours, 0)).await;
        assert!(waited.is_err());
        theirs.write_all(b"after").await.unwrap();
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), 5);
        assert_eq!(&buffer.bytes()[..], b"after");
        drop(theirs);
        buffer.bytes().clear();
        assert_eq!(buffer.fill(&mut ours, 0).await.unwrap(), 0);
    }
}
