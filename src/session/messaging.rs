//! The messaging side of a session as the application's threads meet it: the session's logic
//! ([`ClientSession`]) behind a lock, the WebSocket writer lent by the session's task
//! ([`Loan`]), and the bell that wakes the task.
//!
//! A message from an application thread goes out at once, from that thread, when the session's
//! task is waiting with nothing queued and has lent its writer: one message per loan, so that a
//! burst goes to the queue after its first message and is sent in batches by the task.
//! Otherwise it is queued and the task is woken.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::client::{check_publication, ClientSession, CoreOptions, Window};
use crate::error::Result;
use crate::runtime;
use crate::transport::{Loan, Outbound, Transport};

/// Receives the messages of a subscription.
pub trait MessageHandler: Send + Sync {
    /// A message published on `path` (which the subscription covers).
    fn on_message(&self, path: &str, data: &[u8]);

    /// The server refused the subscription to `path`, or withdrew it when its permissions
    /// changed (`error` is [`crate::ErrorCode::AccessDenied`]). Called at most once, on a
    /// library I/O thread after the subscription's last message; the subscription is gone and
    /// the handler is dropped after this returns.
    fn on_error(&self, path: &str, error: &crate::Error) {
        let _ = (path, error);
    }
}

impl<F: Fn(&str, &[u8]) + Send + Sync> MessageHandler for F {
    fn on_message(&self, path: &str, data: &[u8]) {
        self(path, data)
    }
}

/// The session's logic as the driver and the application's threads share it.
pub(crate) type Core = ClientSession<Outbound, Arc<dyn MessageHandler>>;

/// [`Mailbox::transport`] as stored.
const NO_TRANSPORT: u8 = 0;
const WEBSOCKET: u8 = 1;
const HTTP_POLLING: u8 = 2;

/// Wakes the session's task.
struct Bell(Arc<Notify>);

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

pub(crate) struct Mailbox {
    /// Locked before the loan when both are.
    pub(crate) core: Mutex<Core>,
    /// The writer of the current WebSocket while the task does not need it.
    pub(crate) loan: Arc<Loan>,
    /// Wakes the session's task when the queue gains a message, or a lent writer has bytes left.
    pub(crate) ready: Arc<Notify>,
    bell: Waker,
    /// The transport of the current (or last) connection ([`Mailbox::transport`]); large
    /// publications are masked as they are made while it is a WebSocket.
    transport: AtomicU8,
    /// The core's message size limit as of its last handshake ([`Mailbox::update_limit`]), so
    /// that a publication is checked without taking the lock.
    limit: AtomicUsize,
}

impl Mailbox {
    pub(crate) fn new(options: CoreOptions) -> Self {
        let ready = Arc::new(Notify::new());
        let core = ClientSession::new(options);
        Mailbox {
            limit: AtomicUsize::new(core.size_limit()),
            core: Mutex::new(core),
            loan: Arc::default(),
            bell: Waker::from(Arc::new(Bell(ready.clone()))),
            ready,
            transport: AtomicU8::new(NO_TRANSPORT),
        }
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
        self.core.lock().enqueue(message)?;
        self.ready.notify_one();
        Ok(())
    }

    /// Sends `message` from the calling thread with the lent writer, or gives it back. Only from
    /// application threads: on the library's threads the task batches.
    fn send_directly(&self, message: Outbound) -> std::result::Result<(), Outbound> {
        if runtime::here() != 0 {
            return Err(message);
        }
        let Some(mut core) = self.core.try_lock() else { return Err(message) };
        if !core.is_open() || core.state().is_closed() || core.has_queued() || !core.has_room() {
            return Err(message);
        }
        let mut cx = Context::from_waker(&self.bell);
        let mut message = Some(message);
        let sent = self.loan.send(
            || match message.take().map(|m| core.enqueue(m)) {
                Some(Ok(())) => core.poll_transmit(Instant::now(), 1, Window::Kept),
                _ => Vec::new(),
            },
            &mut cx,
        );
        if sent == Some(false) || core.has_queued() {
            // Left buffered, or the connection failed: the task finishes or finds out.
            self.ready.notify_one();
        }
        match message {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }

    /// Whether messages are waiting in the queue.
    pub(crate) fn has_queued(&self) -> bool {
        self.core.lock().has_queued()
    }

    /// Takes the core's message size limit after a handshake (the server's may be smaller).
    pub(crate) fn update_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn publish(&self, path: &str, data: &[u8]) -> Result<()> {
        check_publication(path, data.len(), self.limit.load(Ordering::Relaxed))?;
        let websocket = self.transport() == Some(Transport::WebSocket);
        self.enqueue(Outbound::publication(path, data, websocket))
    }

    /// Registers `handler` for `path` (replacing an earlier one) and tells the server.
    pub(crate) fn subscribe(&self, path: &str, handler: Arc<dyn MessageHandler>) -> Result<()> {
        let replaced = self.core.lock().subscribe(path, handler)?;
        self.ready.notify_one();
        // Released outside the lock: dropping a handler may run application code.
        drop(replaced);
        Ok(())
    }

    /// Removes the handler of `path` and tells the server.
    pub(crate) fn unsubscribe(&self, path: &str) -> Result<()> {
        let removed = self.core.lock().unsubscribe(path)?;
        self.ready.notify_one();
        drop(removed);
        Ok(())
    }

    /// Drops the message handlers and, with `queued`, the messages waiting to be sent.
    pub(crate) fn clear(&self, queued: bool) {
        let handlers = self.core.lock().clear(queued);
        drop(handlers);
    }
}
