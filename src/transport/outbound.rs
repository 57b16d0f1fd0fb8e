//! Messages in the form the transport sends them, and the WebSocket writer lent to the
//! application's threads.
//!
//! A large publication made while the session's connection is a WebSocket has its data masked
//! (RFC 6455) as it is copied from the application ([`Outbound::publication`]), so that it is
//! written from where it lies, without another copy. A message from an application thread goes
//! out at once, from that thread, when the session's task waits with nothing queued and has
//! lent its writer ([`Loan`]): one message per loan, so that a burst goes to the queue after its
//! first message and is sent in batches by the task.

use std::task::Context;

use parking_lot::Mutex;

use super::wsframe;
use super::{Batch, WsBatch, WsWriter};
use crate::protocol::reliable::{Item, Retained};
use crate::protocol::{self, Frame, Message, FRAME_HEADER_LEN};

/// Publications of at least this many bytes, made while the session's connection is a
/// WebSocket, are masked as they are copied from the application.
pub const MASKED_AT_PUBLISH: usize = 1024;

/// Where a publication's data begins in its frame's encoding: header, sequence number,
/// lengths, path.
fn data_offset(path: &str) -> usize {
    FRAME_HEADER_LEN + 8 + 2 + 4 + path.len()
}

/// A message waiting to be sent, then kept for recovery; masked for a WebSocket when large.
/// Sent any other way, it is unmasked into a copy ([`Retained::message`]).
#[derive(Debug, Clone)]
pub struct Outbound {
    message: Message,
    key: Option<[u8; 4]>,
}

impl From<Message> for Outbound {
    fn from(message: Message) -> Self {
        Outbound { message, key: None }
    }
}

impl Outbound {
    /// A publication of `data` on `path`, copied; masked when `websocket` and large.
    pub fn publication(path: &str, data: &[u8], websocket: bool) -> Outbound {
        let mut copy = data.to_vec();
        let key = (data.len() >= MASKED_AT_PUBLISH && websocket).then(rand::random);
        if let Some(key) = key {
            wsframe::mask_at(&mut copy, key, data_offset(path));
        }
        Outbound { message: Message::Publish { path: path.into(), data: copy.into() }, key }
    }

    /// Whether the data is kept masked.
    pub fn is_masked(&self) -> bool {
        self.key.is_some()
    }

    /// Adds the message, numbered `seq`, to `batch`.
    pub(crate) fn add_to(self, seq: u64, batch: &mut Batch) {
        match batch {
            Batch::Ws(ws) => self.add_to_ws(seq, ws),
            Batch::Plain(plain) => protocol::encode_into(&Frame::Message { seq, body: self.message() }, plain),
        }
    }

    fn add_to_ws(self, seq: u64, batch: &mut WsBatch) {
        let frame = Frame::Message { seq, body: self.message };
        match self.key {
            Some(key) => batch.add_masked(&frame, key),
            None => batch.add(&frame),
        }
    }
}

impl Retained for Outbound {
    fn message(&self) -> Message {
        match (&self.message, self.key) {
            (Message::Publish { path, data }, Some(key)) => {
                let mut copy = data.to_vec();
                wsframe::mask_at(&mut copy, key, data_offset(path));
                Message::Publish { path: path.clone(), data: copy.into() }
            }
            (message, _) => message.clone(),
        }
    }

    fn size(&self) -> usize {
        self.message.size()
    }
}

/// A WebSocket's writer while the session's task does not need it: an application thread may
/// send one message with it ([`Loan::send`]); the connection takes it back before it writes.
#[derive(Default)]
pub struct Loan {
    state: Mutex<LoanState>,
}

#[derive(Default)]
struct LoanState {
    writer: Option<WsWriter>,
    /// Whether a message went out with the lent writer since the task last woke.
    spent: bool,
    /// Whether such a message was left partly written, for the task to finish.
    unflushed: bool,
}

impl Loan {
    /// Lends `writer` until the connection takes it back.
    pub fn lend(&self, writer: WsWriter) {
        self.state.lock().writer = Some(writer);
    }

    /// Takes the lent writer back.
    pub fn reclaim(&self) -> Option<WsWriter> {
        self.state.lock().writer.take()
    }

    /// The task woke (and will send what is queued): the next message may go out directly
    /// again. Returns whether a message sent directly was left partly written.
    pub fn renew(&self) -> bool {
        let mut state = self.state.lock();
        state.spent = false;
        std::mem::take(&mut state.unflushed)
    }

    /// Sends what `take` gives with the lent writer, if there is one ready and unspent; `take`
    /// runs only then, and may give nothing. Returns `None` when nothing was sent, else whether
    /// everything was written (if not, the task must finish: `cx` is woken).
    pub fn send(&self, take: impl FnOnce() -> Vec<Item<Outbound>>, cx: &mut Context<'_>) -> Option<bool> {
        let mut state = self.state.try_lock()?;
        let LoanState { writer, spent, unflushed } = &mut *state;
        let writer = writer.as_mut()?;
        if *spent || !writer.ready() {
            return None;
        }
        let items = take();
        if items.is_empty() {
            return None;
        }
        let mut batch = Batch::Ws(WsBatch::default());
        batch.extend(items);
        let Batch::Ws(batch) = batch else { return None };
        *spent = true;
        let written = writer.send_now(batch, cx);
        *unflushed |= !written;
        Some(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::wsframe::{Decoder, Event, Peer};

    #[test]
    fn a_large_publication_is_masked_when_made_and_goes_out_as_any_other() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let path = "prices/odd/length";
        for websocket in [false, true] {
            let large = Outbound::publication(path, &data, websocket);
            let small = Outbound::publication(path, &data[..MASKED_AT_PUBLISH - 1], websocket);
            assert_eq!(large.is_masked(), websocket, "masked only for a WebSocket");
            assert!(!small.is_masked(), "small ones are masked with their batch");
            let plain = Message::Publish { path: path.into(), data: data.clone().into() };
            assert_eq!(large.message(), plain, "what recovery and polling send");
            // On a WebSocket: an ACK, the large one as a message of its own, the small one.
            let mut batch = Batch::Ws(WsBatch::default());
            batch.extend([Item::Frame(Frame::Ack(3)), Item::Message(7, large), Item::Message(8, small)]);
            let Batch::Ws(batch) = batch else { unreachable!() };
            let mut wire = bytes::BytesMut::from(&batch.into_bytes()[..]);
            let mut decoder = Decoder::new(Peer::Client, 1 << 20);
            let mut frames = Vec::new();
            while let Some(Event::Binary(payload)) = decoder.decode(&mut wire).unwrap() {
                frames.extend(protocol::decode_owned(payload, 1 << 20).unwrap());
            }
            let small_data = data[..MASKED_AT_PUBLISH - 1].to_vec().into();
            assert_eq!(
                frames,
                vec![
                    Frame::Ack(3),
                    Frame::Message { seq: 7, body: plain },
                    Frame::Message { seq: 8, body: Message::Publish { path: path.into(), data: small_data } },
                ]
            );
        }
    }
}
