//! The server's end of a WebSocket connection after the upgrade, over the shared framing
//! ([`session::transport::wsframe`]).

use std::io::IoSlice;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use session::net::{ReadBuffer, Stream, CHUNK};
use session::transport::wsframe::{header, Decoder, Peer, CLOSE, PONG};
pub(crate) use session::transport::wsframe::{Event, FrameError, BINARY};

/// The server's end of a WebSocket connection, after the upgrade.
pub(crate) struct ServerWs {
    stream: Stream,
    /// Bytes read and not yet taken.
    read: ReadBuffer,
    decoder: Decoder,
    /// Bytes to write before the next frame (the upgrade response, to leave in one segment with
    /// the first frame: split, an intermediary with Nagle's algorithm on would hold the second
    /// part until the client's delayed ACK).
    prefix: Vec<u8>,
}

impl ServerWs {
    /// `read`: bytes the client sent after its upgrade request, already read; `prefix`: written
    /// with the first frame; `limit`: the largest message accepted.
    pub(crate) fn new(stream: Stream, read: &[u8], prefix: Vec<u8>, limit: usize) -> ServerWs {
        ServerWs { stream, read: ReadBuffer::new(read), decoder: Decoder::new(Peer::Client, limit), prefix }
    }

    /// The next event from the client; an I/O failure or the end of the connection is reported
    /// as its reason.
    pub(crate) async fn recv(&mut self) -> Result<Result<Event, FrameError>, String> {
        loop {
            match self.decoder.decode(self.read.bytes()) {
                Ok(Some(event)) => return Ok(Ok(event)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
            let wanted = self.decoder.wanted(self.read.bytes());
            match self.read.fill(&mut self.stream, wanted).await {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("connection failed: {e}")),
            }
        }
    }

    /// Sends one frame (the upgrade response first, if it has not gone yet) and flushes.
    pub(crate) async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.send_parts(opcode, &[payload]).await
    }

    /// Sends one frame whose payload is `parts`, one after the other, in one vectored write.
    pub(crate) async fn send_parts(&mut self, opcode: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let (head, used) = header(opcode, parts.iter().map(|p| p.len()).sum(), None);
        let prefix = std::mem::take(&mut self.prefix);
        let mut slices = Vec::with_capacity(parts.len() + 2);
        slices.push(IoSlice::new(&prefix));
        slices.push(IoSlice::new(&head[..used]));
        slices.extend(parts.iter().map(|p| IoSlice::new(p)));
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            let written = self.stream.write_vectored(rest).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        self.stream.flush().await
    }

    /// Writes the upgrade response if it has not gone with a frame yet.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.prefix.is_empty() {
            let prefix = std::mem::take(&mut self.prefix);
            self.stream.write_all(&prefix).await?;
        }
        self.stream.flush().await
    }

    /// Answers a ping.
    pub(crate) async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.send(PONG, payload).await
    }

    /// Sends a close frame (normal closure) and flushes; the connection may then be dropped.
    pub(crate) async fn close(&mut self) -> std::io::Result<()> {
        self.send(CLOSE, &1000u16.to_be_bytes()).await
    }

    /// After [`ServerWs::close`]: ends the sending side, then reads and drops what the client
    /// still sends until it closes too, for up to `limit`. A socket closed with input unread is
    /// reset, and the reset discards what the client has not read yet, the session's CLOSE
    /// frame among it.
    pub(crate) async fn linger(&mut self, limit: std::time::Duration) {
        let _ = self.stream.shutdown().await;
        let mut scratch = vec![0u8; CHUNK];
        let drain = async { while let Ok(1..) = self.stream.read(&mut scratch).await {} };
        let _ = tokio::time::timeout(limit, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use session::transport::wsframe::apply_mask;

    /// A client frame, masked.
    fn client_frame(payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let (head, used) = header(BINARY, payload.len(), Some(key));
        let mut body = payload.to_vec();
        apply_mask(&mut body, key);
        [&head[..used], &body[..]].concat()
    }

    #[tokio::test]
    async fn frames_go_out_after_the_prefix_and_come_back_whole() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut ws =
            ServerWs::new(Box::new(server), &client_frame(b"early"), b"HTTP/1.1 101 ...\r\n\r\n".to_vec(), 1024);
        assert_eq!(ws.recv().await, Ok(Ok(Event::Binary(Bytes::from_static(b"early")))));
        ws.send(BINARY, &[9u8; 300]).await.unwrap();
        ws.close().await.unwrap();
        drop(ws);
        let mut client = client;
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        let mut expected = b"HTTP/1.1 101 ...\r\n\r\n".to_vec();
        expected.extend_from_slice(&[0x82, 126, 1, 44]);
        expected.extend_from_slice(&[9u8; 300]);
        expected.extend_from_slice(&[0x88, 2, 0x03, 0xE8]);
        assert_eq!(all, expected);
    }
}
