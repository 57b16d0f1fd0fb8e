//! The messaging side of a session: the sending side (numbering and recovery buffer, the writer
//! lent by the session's task), the queue of messages waiting to be sent, and the handlers of
//! subscriptions.
//!
//! A message from an application thread goes out at once, from that thread, when the session's
//! task is waiting with nothing queued and has lent its WebSocket writer: one message per loan,
//! so that a burst goes to the queue after its first message and is sent in batches by the task.
//! Otherwise it is queued and the task is woken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, ErrorCode, Result};
use crate::protocol::reliable::{Outgoing, Retained};
use crate::protocol::{self, path_matches, validate_path, Frame, Message, FRAME_HEADER_LEN};
use crate::runtime;
use crate::transport::wsframe;
use crate::transport::{Batch, Transport, WsBatch, WsWriter};

/// Receives the messages of a subscription.
pub trait MessageHandler: Send + Sync {
    /// A message published on `path` (which the subscription covers).
    fn on_message(&self, path: &str, data: &[u8]);
}

impl<F: Fn(&str, &[u8]) + Send + Sync> MessageHandler for F {
    fn on_message(&self, path: &str, data: &[u8]) {
        self(path, data)
    }
}

/// Bytes a numbered message adds around its path and data: header, sequence number, lengths.
const MESSAGE_OVERHEAD: usize = FRAME_HEADER_LEN + 8 + 2 + 4;

/// Publications of at least this many bytes, made while the session's connection is a
/// WebSocket, are masked as they are copied from the application ([`Outbound`]).
const MASKED_AT_PUBLISH: usize = 1024;

/// A message waiting to be sent, then kept for recovery. A large publication made while the
/// connection is a WebSocket has its data masked (with `key`, at its place in the frame's
/// encoding: RFC 6455 masking) as it is copied from the application, so that it is written from
/// where it lies, without another copy; sent any other way, it is unmasked into a copy
/// ([`Retained::message`]).
#[derive(Clone)]
pub(crate) struct Outbound {
    message: Message,
    key: Option<[u8; 4]>,
}

impl Outbound {
    fn plain(message: Message) -> Outbound {
        Outbound { message, key: None }
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

/// [`Mailbox::transport`] as stored.
const NO_TRANSPORT: u8 = 0;
const WEBSOCKET: u8 = 1;
const HTTP_POLLING: u8 = 2;

/// Where a publication's data begins in its frame's encoding.
fn data_offset(path: &str) -> usize {
    MESSAGE_OVERHEAD + path.len()
}

/// The sending side, shared by the session's task and the threads that publish.
pub(crate) struct Sender {
    /// Numbering and the recovery buffer; lives across connections.
    pub(crate) out: Outgoing<Outbound>,
    /// The connection's writer, while the task does not need it.
    lent: Option<WsWriter>,
    /// Whether a message went out with the lent writer since the task last woke.
    spent: bool,
    /// Whether such a message was left partly written, for the task to finish.
    unflushed: bool,
}

/// Wakes the session's task.
struct Bell(Arc<Notify>);

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

pub(crate) struct Mailbox {
    /// Locked before `outbox` when both are.
    pub(crate) sender: Mutex<Sender>,
    outbox: Mutex<VecDeque<Outbound>>,
    /// Wakes the session's task when the outbox gains a message, or a lent writer has bytes left.
    pub(crate) ready: Arc<Notify>,
    bell: Waker,
    handlers: Mutex<Vec<(String, Arc<dyn MessageHandler>)>>,
    /// The largest frame the server accepts, once known (0 before).
    server_limit: AtomicU32,
    own_limit: u32,
    capacity: usize,
    /// The transport of the current (or last) connection ([`Mailbox::transport`]); large
    /// publications are masked as they are made while it is a WebSocket.
    transport: AtomicU8,
}

impl Mailbox {
    /// `own_limit`: the largest frame; `capacity`: the queue's length; `recovery`: the recovery
    /// buffer's.
    pub(crate) fn new(own_limit: u32, capacity: u32, recovery: usize) -> Self {
        let ready = Arc::new(Notify::new());
        Mailbox {
            sender: Mutex::new(Sender { out: Outgoing::new(recovery), lent: None, spent: false, unflushed: false }),
            outbox: Mutex::new(VecDeque::new()),
            bell: Waker::from(Arc::new(Bell(ready.clone()))),
            ready,
            handlers: Mutex::new(Vec::new()),
            server_limit: AtomicU32::new(0),
            own_limit,
            capacity: capacity.max(1) as usize,
            transport: AtomicU8::new(NO_TRANSPORT),
        }
    }

    pub(crate) fn set_server_limit(&self, limit: u32) {
        self.server_limit.store(limit, Ordering::Relaxed);
    }

    /// Records the transport of the connection just made.
    pub(crate) fn set_transport(&self, transport: Transport) {
        let code = match transport {
            Transport::WebSocket => WEBSOCKET,
            Transport::HttpPolling => HTTP_POLLING,
        };
        self.transport.store(code, Ordering::Relaxed);
    }

    /// The transport of the current connection (the last one when not connected); `None` before
    /// the first connection.
    pub(crate) fn transport(&self) -> Option<Transport> {
        match self.transport.load(Ordering::Relaxed) {
            WEBSOCKET => Some(Transport::WebSocket),
            HTTP_POLLING => Some(Transport::HttpPolling),
            _ => None,
        }
    }

    /// Sends a message for the server at once if it can, else queues it; fails when the queue is
    /// full (nothing queued is lost).
    fn enqueue(&self, message: Outbound) -> Result<()> {
        let Err(message) = self.send_directly(message) else { return Ok(()) };
        let mut outbox = self.outbox.lock();
        if outbox.len() >= self.capacity {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!(
                    "{} messages are already waiting to be sent (maximum_queue_size); try again when the session catches up",
                    outbox.len()
                ),
            ));
        }
        outbox.push_back(message);
        drop(outbox);
        self.ready.notify_one();
        Ok(())
    }

    /// Sends `message` from the calling thread with the lent writer, or gives it back. Only from
    /// application threads: on the library's threads the task batches.
    fn send_directly(&self, message: Outbound) -> std::result::Result<(), Outbound> {
        if runtime::here() != 0 {
            return Err(message);
        }
        let Some(mut sender) = self.sender.try_lock() else { return Err(message) };
        let Sender { out, lent, spent, unflushed } = &mut *sender;
        let Some(writer) = lent.as_mut() else { return Err(message) };
        if *spent || !out.has_room() || self.has_queued() {
            return Err(message);
        }
        if !writer.ready() {
            return Err(message);
        }
        let mut cx = Context::from_waker(&self.bell);
        *spent = true;
        let (seq, message) = out.number(message);
        let mut batch = WsBatch::default();
        message.add_to_ws(seq, &mut batch);
        if !writer.send_now(batch, &mut cx) {
            // Left buffered, or the connection failed: the task finishes or finds out.
            *unflushed = true;
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Lends the connection's writer to the threads that publish, until the task needs it.
    pub(crate) fn lend(&self, writer: WsWriter) {
        self.sender.lock().lent = Some(writer);
    }

    /// Takes the lent writer back.
    pub(crate) fn reclaim(&self) -> Option<WsWriter> {
        self.sender.lock().lent.take()
    }

    /// The task woke (and will send what is queued): the next message may go out directly
    /// again. Returns whether a message sent directly was left partly written.
    pub(crate) fn renew(&self) -> bool {
        let mut sender = self.sender.lock();
        sender.spent = false;
        std::mem::take(&mut sender.unflushed)
    }

    /// Whether messages are waiting in the queue.
    pub(crate) fn has_queued(&self) -> bool {
        !self.outbox.lock().is_empty()
    }

    /// Takes the next message to send.
    pub(crate) fn next(&self) -> Option<Outbound> {
        self.outbox.lock().pop_front()
    }

    pub(crate) fn publish(&self, path: &str, data: &[u8]) -> Result<()> {
        check_path(path)?;
        let size = MESSAGE_OVERHEAD + path.len() + data.len();
        let server = self.server_limit.load(Ordering::Relaxed);
        let limit = if server == 0 { self.own_limit } else { self.own_limit.min(server) } as usize;
        if size > limit {
            return Err(Error::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "a message of {} bytes on '{path}' exceeds the maximum message size of {limit} bytes",
                    data.len()
                ),
            ));
        }
        let mut copy = data.to_vec();
        let key =
            (data.len() >= MASKED_AT_PUBLISH && self.transport() == Some(Transport::WebSocket)).then(rand::random);
        if let Some(key) = key {
            wsframe::mask_at(&mut copy, key, data_offset(path));
        }
        self.enqueue(Outbound { message: Message::Publish { path: path.to_string(), data: copy.into() }, key })
    }

    /// Registers `handler` for `path` (replacing an earlier one) and tells the server.
    pub(crate) fn subscribe(&self, path: &str, handler: Arc<dyn MessageHandler>) -> Result<()> {
        check_path(path)?;
        self.enqueue(Outbound::plain(Message::Subscribe { path: path.to_string() }))?;
        let replaced = {
            let mut handlers = self.handlers.lock();
            match handlers.iter_mut().find(|(p, _)| p == path) {
                Some(entry) => Some(std::mem::replace(&mut entry.1, handler)),
                None => {
                    handlers.push((path.to_string(), handler));
                    None
                }
            }
        };
        // Released outside the lock: dropping a handler may run application code.
        drop(replaced);
        Ok(())
    }

    /// Removes the handler of `path` and tells the server.
    pub(crate) fn unsubscribe(&self, path: &str) -> Result<()> {
        check_path(path)?;
        let removed = {
            let mut handlers = self.handlers.lock();
            let index = handlers
                .iter()
                .position(|(p, _)| p == path)
                .ok_or_else(|| Error::illegal_argument(format!("there is no subscription to '{path}'")))?;
            handlers.remove(index)
        };
        drop(removed);
        self.enqueue(Outbound::plain(Message::Unsubscribe { path: path.to_string() }))
    }

    /// The handlers whose subscriptions cover `path`, as weak references: a handler removed
    /// meanwhile (unsubscribed, replaced, the session closed) is released at once, not when the
    /// delivery that found it ends.
    pub(crate) fn handlers_for(&self, path: &str) -> Vec<Weak<dyn MessageHandler>> {
        self.handlers.lock().iter().filter(|(p, _)| path_matches(p, path)).map(|(_, h)| Arc::downgrade(h)).collect()
    }

    /// Drops every handler (when the session is over), outside the lock.
    /// Drops the message handlers and, with `queued`, the messages waiting to be sent.
    pub(crate) fn clear(&self, queued: bool) {
        let handlers = std::mem::take(&mut *self.handlers.lock());
        drop(handlers);
        if queued {
            self.outbox.lock().clear();
        }
    }
}

fn check_path(path: &str) -> Result<()> {
    validate_path(path).map_err(|why| Error::illegal_argument(format!("invalid path '{}': {why}", path.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_without_losing_what_is_queued() {
        let mailbox = Mailbox::new(1 << 20, 2, 0);
        mailbox.publish("a", b"1").unwrap();
        mailbox.publish("a", b"2").unwrap();
        assert_eq!(mailbox.publish("a", b"3").unwrap_err().code(), ErrorCode::QueueFull);
        let next = || mailbox.next().map(|o| o.message());
        assert_eq!(next(), Some(Message::Publish { path: "a".into(), data: b"1".to_vec().into() }));
        assert_eq!(next(), Some(Message::Publish { path: "a".into(), data: b"2".to_vec().into() }));
        assert_eq!(next(), None);
    }

    #[test]
    fn a_large_publication_is_masked_when_made_and_goes_out_as_any_other() {
        use crate::transport::wsframe::{Decoder, Event, Peer};
        let mailbox = Mailbox::new(1 << 20, 10, 0);
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let path = "prices/odd/length";
        for websocket in [false, true] {
            mailbox.set_transport(if websocket { Transport::WebSocket } else { Transport::HttpPolling });
            mailbox.publish(path, &data).unwrap();
            mailbox.publish(path, &data[..MASKED_AT_PUBLISH - 1]).unwrap();
            let (large, small) = (mailbox.next().unwrap(), mailbox.next().unwrap());
            assert_eq!(large.key.is_some(), websocket, "masked only for a WebSocket");
            assert!(small.key.is_none(), "small ones are masked with their batch");
            let plain = Message::Publish { path: path.into(), data: data.clone().into() };
            assert_eq!(large.message(), plain, "what recovery and polling send");
            // On a WebSocket: an ACK, the large one as a message of its own, the small one.
            let mut batch = Batch::Ws(WsBatch::default());
            batch.add(&Frame::Ack(3));
            large.add_to(7, &mut batch);
            small.add_to(8, &mut batch);
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

    #[test]
    fn oversized_messages_are_refused_against_the_smaller_limit() {
        let mailbox = Mailbox::new(4096, 10, 0);
        assert_eq!(mailbox.publish("a", &[0; 5000]).unwrap_err().code(), ErrorCode::MessageTooLarge);
        mailbox.publish("a", &[0; 3000]).unwrap();
        mailbox.set_server_limit(2048);
        assert_eq!(mailbox.publish("a", &[0; 3000]).unwrap_err().code(), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn prefix_subscriptions_cover_everything_below() {
        let mailbox = Mailbox::new(4096, 10, 0);
        mailbox.subscribe("news/", Arc::new(|_: &str, _: &[u8]| {})).unwrap();
        mailbox.subscribe("news/sport", Arc::new(|_: &str, _: &[u8]| {})).unwrap();
        assert_eq!(mailbox.handlers_for("news/sport").len(), 2);
        assert_eq!(mailbox.handlers_for("news/weather").len(), 1);
        assert_eq!(mailbox.handlers_for("newsroom").len(), 0);
        mailbox.unsubscribe("news/").unwrap();
        assert_eq!(mailbox.handlers_for("news/weather").len(), 0);
        assert_eq!(mailbox.unsubscribe("news/").unwrap_err().code(), ErrorCode::IllegalArgument);
    }

    #[test]
    fn invalid_paths_are_refused() {
        let mailbox = Mailbox::new(4096, 10, 0);
        assert_eq!(mailbox.publish("", b"x").unwrap_err().code(), ErrorCode::IllegalArgument);
        assert_eq!(mailbox.publish("a\nb", b"x").unwrap_err().code(), ErrorCode::IllegalArgument);
    }
}
