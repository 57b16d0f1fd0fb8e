//! The messaging side of a session: the queue of messages waiting to be sent, and the handlers
//! of subscriptions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{path_matches, validate_path, Message, FRAME_HEADER_LEN};

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

pub(crate) struct Mailbox {
    outbox: Mutex<VecDeque<Message>>,
    /// Wakes the session's task when the outbox gains a message.
    pub(crate) ready: Notify,
    handlers: Mutex<Vec<(String, Arc<dyn MessageHandler>)>>,
    /// The largest frame the server accepts, once known (0 before).
    server_limit: AtomicU32,
    own_limit: u32,
    capacity: usize,
}

impl Mailbox {
    pub(crate) fn new(own_limit: u32, capacity: u32) -> Self {
        Mailbox {
            outbox: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            handlers: Mutex::new(Vec::new()),
            server_limit: AtomicU32::new(0),
            own_limit,
            capacity: capacity.max(1) as usize,
        }
    }

    pub(crate) fn set_server_limit(&self, limit: u32) {
        self.server_limit.store(limit, Ordering::Relaxed);
    }

    /// Queues a message for the server; fails when the queue is full (nothing queued is lost).
    fn enqueue(&self, message: Message) -> Result<()> {
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

    /// Takes the next message to send.
    pub(crate) fn next(&self) -> Option<Message> {
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
        self.enqueue(Message::Publish { path: path.to_string(), data: bytes::Bytes::copy_from_slice(data) })
    }

    /// Registers `handler` for `path` (replacing an earlier one) and tells the server.
    pub(crate) fn subscribe(&self, path: &str, handler: Arc<dyn MessageHandler>) -> Result<()> {
        check_path(path)?;
        self.enqueue(Message::Subscribe { path: path.to_string() })?;
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
        self.enqueue(Message::Unsubscribe { path: path.to_string() })
    }

    /// The handlers whose subscriptions cover `path`.
    pub(crate) fn handlers_for(&self, path: &str) -> Vec<Arc<dyn MessageHandler>> {
        self.handlers.lock().iter().filter(|(p, _)| path_matches(p, path)).map(|(_, h)| h.clone()).collect()
    }

    /// Drops every handler (when the session is over), outside the lock.
    pub(crate) fn clear(&self) {
        let handlers = std::mem::take(&mut *self.handlers.lock());
        drop(handlers);
        self.outbox.lock().clear();
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
        let mailbox = Mailbox::new(1 << 20, 2);
        mailbox.publish("a", b"1").unwrap();
        mailbox.publish("a", b"2").unwrap();
        assert_eq!(mailbox.publish("a", b"3").unwrap_err().code(), ErrorCode::QueueFull);
        assert_eq!(mailbox.next(), Some(Message::Publish { path: "a".into(), data: b"1".to_vec().into() }));
        assert_eq!(mailbox.next(), Some(Message::Publish { path: "a".into(), data: b"2".to_vec().into() }));
        assert_eq!(mailbox.next(), None);
    }

    #[test]
    fn oversized_messages_are_refused_against_the_smaller_limit() {
        let mailbox = Mailbox::new(4096, 10);
        assert_eq!(mailbox.publish("a", &[0; 5000]).unwrap_err().code(), ErrorCode::MessageTooLarge);
        mailbox.publish("a", &[0; 3000]).unwrap();
        mailbox.set_server_limit(2048);
        assert_eq!(mailbox.publish("a", &[0; 3000]).unwrap_err().code(), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn prefix_subscriptions_cover_everything_below() {
        let mailbox = Mailbox::new(4096, 10);
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
        let mailbox = Mailbox::new(4096, 10);
        assert_eq!(mailbox.publish("", b"x").unwrap_err().code(), ErrorCode::IllegalArgument);
        assert_eq!(mailbox.publish("a\nb", b"x").unwrap_err().code(), ErrorCode::IllegalArgument);
    }
}
