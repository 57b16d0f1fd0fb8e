//! Sessions: the safe Rust API that the C functions wrap.
//!
//! A [`Session`] is created with [`Session::new`] (no I/O), started with [`Session::start`]
//! (returns at once) and optionally awaited with [`Session::wait_connected`], or started and
//! awaited with [`Session::start_and_wait`]; [`Session::connect`] creates and starts that way. One
//! task on the shared runtime drives each session.
//!
//! Callback guarantees: the state listener and the creation callback of one session run one at a
//! time, in order, on a library I/O thread (except during [`Session::start_and_wait`], which opens
//! the connection on the calling thread and notifies CONNECTING and the outcome there);
//! [`Session::close`] and dropping the session may be called from inside them. The application
//! code a connection attempt runs (proxy challenge handlers, certificate validation), message
//! handlers and the reconnection strategy's handler count as callbacks of the session too: `close`
//! waits for one running on another thread, and once it has returned no further callback of that
//! session starts, except the CLOSED_BY_CLIENT notification that `close` itself delivers on the
//! calling thread.

pub mod client;
pub mod config;
mod driver;
mod messaging;
pub mod state;
use crate::http::cookies;
/// Server URLs (in [`crate::http::url`]).
pub use crate::http::url;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use parking_lot::{Condvar, Mutex, ReentrantMutex};
use tokio::sync::mpsc;

pub use client::ClientSession;
pub use config::{SessionConfig, SessionFactory, SessionOptions};
pub use messaging::MessageHandler;
pub use state::State;

use crate::error::{Error, ErrorCode, Result};
use crate::protocol::SessionId;
use crate::runtime;

/// Called with `(old, new)` on every state change.
pub type StateListener = Box<dyn Fn(State, State) + Send + Sync>;
/// Called once when creation ends: `Ok` when connected, `Err` when it failed or was closed first.
pub type CreationCallback = Box<dyn FnOnce(Result<()>) + Send>;
/// Hears of the publications the server refused: the path and the error (AccessDenied).
pub type ErrorHandler = Box<dyn Fn(&str, &Error) + Send + Sync>;

/// What the application wants to hear about.
#[derive(Default)]
pub struct Events {
    /// State changes.
    pub on_state_changed: Option<StateListener>,
    /// The end of session creation.
    pub on_created: Option<CreationCallback>,
}

/// Instructions from the application to the session's task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Close the connection politely; the sender, if any, is dropped once the CLOSE frame is out.
    Close(Option<std::sync::mpsc::SyncSender<()>>),
}

/// How long `close` waits for the CLOSE frame to be sent, so that a program that exits right
/// after closing still ends its session cleanly on the server.
const CLOSE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A client session.
pub struct Session {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    config: SessionConfig,
    state: Mutex<State>,
    /// The last state the listener has been told about; blocking waits watch this, so that a
    /// blocking create returns only after the listener has seen CONNECTED_ACTIVE.
    reported: Mutex<State>,
    reported_changed: Condvar,
    /// Whether the listener has been told CONNECTED_ACTIVE (set before it is): a blocking create
    /// then returns the session, even when the listener closed it.
    active_reported: AtomicBool,
    /// Held while any callback of this session runs; re-entrant so callbacks may close the session.
    callbacks: ReentrantMutex<()>,
    listener: OnceCell<Option<StateListener>>,
    on_created: Mutex<Option<CreationCallback>>,
    id: OnceCell<SessionId>,
    error: Mutex<Option<Error>>,
    commands: mpsc::UnboundedSender<Command>,
    command_rx: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    /// The session's task if a blocking create parked it with its I/O thread
    /// ([`runtime::Home::park`]).
    parked: OnceCell<runtime::Parked>,
    mailbox: messaging::Mailbox,
    /// Cookies set by balancers, sent on every later request of this session.
    cookies: Arc<cookies::CookieJar>,
    /// Hears of refused publications ([`Session::set_error_handler`]).
    error_handler: Mutex<Option<Arc<ErrorHandler>>>,
}

impl Session {
    /// A session for `config`, not yet connecting.
    pub fn new(config: SessionConfig) -> Session {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let options = &config.options;
        let mailbox = messaging::Mailbox::new(client::CoreOptions {
            request: crate::protocol::ConnectRequest {
                principal: options.principal.clone(),
                credentials: options.credentials.clone(),
                properties: options.properties.clone(),
                max_frame_size: options.frame_limit(),
                ..Default::default()
            },
            queue_capacity: options.maximum_queue_size as usize,
            recovery_buffer: options.recovery_buffer_size as usize,
            reconnection_timeout: options.reconnection.enabled().then(|| options.reconnection.timeout).flatten(),
        });
        Session {
            shared: Arc::new(Shared {
                mailbox,
                cookies: Arc::default(),
                error_handler: Mutex::new(None),
                config,
                state: Mutex::new(State::Unknown),
                reported: Mutex::new(State::Unknown),
                reported_changed: Condvar::new(),
                active_reported: AtomicBool::new(false),
                callbacks: ReentrantMutex::new(()),
                listener: OnceCell::new(),
                on_created: Mutex::new(None),
                id: OnceCell::new(),
                error: Mutex::new(None),
                commands,
                command_rx: Mutex::new(Some(command_rx)),
                parked: OnceCell::new(),
            }),
        }
    }

    /// Starts connecting in the background and returns at once. `events` are delivered as described
    /// in the module documentation. Starting twice is an [`ErrorCode::IllegalState`] error.
    pub fn start(&self, events: Events) -> Result<()> {
        let (home, rx) = self.prepare(events)?;
        home.spawn(driver::drive(self.shared.clone(), rx));
        Ok(())
    }

    /// Starts the session and blocks until it is connected (Ok) or closed (the error that closed
    /// it). The connection is opened on the calling thread, where the state listener hears
    /// CONNECTING and the outcome; the session then runs on its I/O thread. Fails with
    /// [`ErrorCode::IllegalState`] on a library thread (inside a callback), where it would deadlock.
    pub fn start_and_wait(&self, events: Events) -> Result<()> {
        refuse_blocking_on_io_thread()?;
        if tokio::runtime::Handle::try_current().is_ok() || runtime::mode() == runtime::Mode::Plain {
            // Inside the application's own runtime, which cannot run another, or in the plain
            // mode: wait for an I/O thread.
            self.start(events)?;
            return self.wait_connected();
        }
        let (home, mut rx) = self.prepare(events)?;
        let shared = self.shared.clone();
        let opened = runtime::run_here(home.handle(), async move {
            let opened = driver::open(&shared, &mut rx).await;
            (shared, opened, rx)
        });
        match opened {
            Ok((shared, Some(opened), rx)) => {
                let polling = shared.mailbox.transport() == Some(crate::transport::Transport::HttpPolling);
                let task = driver::run(shared, opened, rx);
                if polling {
                    // Its poller already runs on the I/O thread and hands messages to the task.
                    home.spawn(task);
                } else if let Some(parked) = home.park(task) {
                    // Parked, without waking the thread: the next call that needs it takes it up.
                    let _ = self.shared.parked.set(parked);
                    if self.shared.mailbox.has_queued() {
                        // Another thread published while this one connected.
                        self.shared.unpark();
                    }
                }
            }
            Ok((_, None, _)) => {}
            Err(e) => {
                self.shared.fail(e);
            }
        }
        self.wait_connected()
    }

    /// Takes the command channel (once only), records the application's callbacks and picks the
    /// session's I/O thread.
    fn prepare(&self, events: Events) -> Result<(runtime::Home, mpsc::UnboundedReceiver<Command>)> {
        self.shared.config.options.check_wire_lengths()?;
        let rt = runtime::get()?;
        let rx = self
            .shared
            .command_rx
            .lock()
            .take()
            .ok_or_else(|| Error::illegal_state("the session has already been started"))?;
        let _ = self.shared.listener.set(events.on_state_changed);
        *self.shared.on_created.lock() = events.on_created;
        // CONNECTING from here on, as the vendor's API has it: the first state the listener hears
        // of is the one after it (see relay_one).
        *self.shared.state.lock() = State::Connecting;
        *self.shared.reported.lock() = State::Connecting;
        Ok((rt.pick(), rx))
    }

    /// Blocks until the session is connected (Ok) or closed (the error that closed it). Once the
    /// listener has been told CONNECTED_ACTIVE the answer is Ok, even if the session has been
    /// closed since (by the listener itself, say): what the listener saw and what this returns
    /// agree. Called on a library I/O thread (inside a callback) it would deadlock, so it fails
    /// with [`ErrorCode::IllegalState`] there.
    pub fn wait_connected(&self) -> Result<()> {
        refuse_blocking_on_io_thread()?;
        let mut reported = self.shared.reported.lock();
        while !creation_settled(*reported) {
            self.shared.reported_changed.wait(&mut reported);
        }
        if !reported.is_closed() || self.shared.active_reported.load(Ordering::Acquire) {
            return Ok(());
        }
        drop(reported);
        Err(self
            .shared
            .error()
            .unwrap_or_else(|| Error::new(ErrorCode::SessionClosed, "the session was closed before it connected")))
    }

    /// Creates, starts and waits: returns a connected session or the reason it could not connect.
    pub fn connect(config: SessionConfig, on_state_changed: Option<StateListener>) -> Result<Session> {
        let session = Session::new(config);
        session.start_and_wait(Events { on_state_changed, on_created: None })?;
        Ok(session)
    }

    /// Closes the session: CLOSED_BY_CLIENT is reported to the listener on the calling thread before
    /// this returns. Outside the library's threads it also waits (up to 1 s) until the server has
    /// been told. Closing a closed session does nothing.
    pub fn close(&self) {
        let before = if self.shared.active_reported.load(Ordering::Acquire) {
            "before its creation was reported"
        } else {
            "before it connected"
        };
        let closed = self.shared.finish(
            State::ClosedByClient,
            None,
            Error::new(ErrorCode::SessionClosed, format!("the session was closed by the application {before}")),
        );
        if closed {
            if runtime::on_io_thread() {
                let _ = self.shared.commands.send(Command::Close(None));
                self.shared.unpark();
            } else {
                let (flushed, wait) = std::sync::mpsc::sync_channel(1);
                if self.shared.commands.send(Command::Close(Some(flushed))).is_ok() {
                    self.shared.unpark();
                    let _ = wait.recv_timeout(CLOSE_FLUSH_TIMEOUT);
                }
            }
        }
    }

    /// Publishes `data` on `path`: the server delivers it to every session subscribed to the path
    /// (this one too, if subscribed). Queued while connecting or recovering; fails when the
    /// session is closed, the queue is full (`maximum_queue_size`) or the message is too large.
    pub fn publish(&self, path: &str, data: &[u8]) -> Result<()> {
        self.check_open()?;
        let published = self.shared.mailbox.publish(path, data);
        self.shared.unpark();
        published
    }

    /// Sets the handler told of publications the server refused (its permissions do not allow
    /// them: the error is [`ErrorCode::AccessDenied`]), replacing any earlier one; `None` removes
    /// it. It runs on a library I/O thread, in order with the session's other callbacks.
    pub fn set_error_handler(&self, handler: Option<ErrorHandler>) {
        let old = std::mem::replace(&mut *self.shared.error_handler.lock(), handler.map(Arc::new));
        // Dropped outside the lock: dropping it may run application code.
        drop(old);
    }

    /// Subscribes to `path` (everything below it when it ends with `/`); `handler` receives the
    /// messages, in order, on a library I/O thread. Replaces an earlier handler of the same path.
    /// Subscriptions survive reconnection.
    pub fn subscribe(&self, path: &str, handler: Arc<dyn MessageHandler>) -> Result<()> {
        self.check_open()?;
        let subscribed = self.shared.mailbox.subscribe(path, handler);
        self.shared.unpark();
        subscribed
    }

    /// Ends the subscription to `path`; its handler is dropped once no call to it is running.
    pub fn unsubscribe(&self, path: &str) -> Result<()> {
        self.check_open()?;
        let unsubscribed = self.shared.mailbox.unsubscribe(path);
        self.shared.unpark();
        unsubscribed
    }

    fn check_open(&self) -> Result<()> {
        if self.state().is_closed() {
            return Err(Error::new(ErrorCode::SessionClosed, "the session is closed"));
        }
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// The session's id, once the server has assigned one.
    pub fn id(&self) -> Option<&SessionId> {
        self.shared.id.get()
    }

    /// The transport of the current connection (the last one when not connected); `None` before
    /// the first connection.
    pub fn transport(&self) -> Option<crate::transport::Transport> {
        self.shared.mailbox.transport()
    }

    /// The error that closed the session (CLOSED_FAILED or CLOSED_BY_SERVER), if any.
    pub fn error(&self) -> Option<Error> {
        self.shared.error()
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.shared.config.url.to_url_string())
            .field("state", &self.state())
            .field("id", &self.id())
            .finish()
    }
}

impl Shared {
    /// Has the session's task run now if it is parked: called after anything it has to act on.
    fn unpark(&self) {
        if let Some(parked) = self.parked.get() {
            parked.take_up();
        }
    }

    fn state(&self) -> State {
        *self.state.lock()
    }

    fn error(&self) -> Option<Error> {
        self.error.lock().clone()
    }

    /// Moves to `to` unless the move is not allowed (the session was closed meanwhile); tells the
    /// listener. Returns whether the move happened.
    fn transition(&self, to: State) -> bool {
        let _callbacks = self.callbacks.lock();
        let Some(from) = self.set_state(to) else {
            return false;
        };
        self.notify(from, to);
        true
    }

    /// Moves to the closed state `to`, recording `error`; tells the listener, then fails a pending
    /// creation with `error` (or `creation_error` when there is none). Returns whether this call
    /// closed the session.
    fn finish(&self, to: State, error: Option<Error>, creation_error: Error) -> bool {
        let _callbacks = self.callbacks.lock();
        if self.state().is_closed() {
            // Closed by a callback of the closing (a listener told CLOSED_FAILED that frees the
            // session, say): the creation ends inside that call, while the handle is still valid.
            let pending = self.on_created.lock().take();
            if let Some(on_created) = pending {
                on_created(Err(self.error().unwrap_or(creation_error)));
            }
            return false;
        }
        if let Some(e) = &error {
            *self.error.lock() = Some(e.clone());
        }
        let Some(from) = self.set_state(to) else {
            return false;
        };
        self.notify(from, to);
        let pending = self.on_created.lock().take();
        if let Some(on_created) = pending {
            on_created(Err(error.unwrap_or(creation_error)));
        }
        // What the application published before closing is still sent (see `driver::drain`).
        self.mailbox.clear(to != State::ClosedByClient);
        true
    }

    /// The handler of refused publications, if one is set.
    pub(crate) fn error_handler(&self) -> Option<Arc<ErrorHandler>> {
        self.error_handler.lock().clone()
    }

    /// Runs an application callback of this session, one at a time, unless the session is
    /// closed. What `f` holds is released under the lock too, so that `close` also waits for it.
    pub(crate) fn callback<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let _callbacks = self.callbacks.lock();
        if self.state().is_closed() {
            drop(f);
            return None;
        }
        Some(f())
    }

    /// Runs `work` with the callbacks lock held during each of its polls, and abandons it once
    /// the session is closed: the application code that connecting runs (proxy challenge
    /// handlers, certificate validation) then counts as callbacks of the session, which `close`
    /// waits for and after which none starts. `None` when the session was closed. `work` is
    /// pinned by the caller: taken by value, it would be held twice in this future's state.
    pub(crate) async fn gated<F: std::future::Future>(&self, mut work: std::pin::Pin<&mut F>) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            let _callbacks = self.callbacks.lock();
            if self.state().is_closed() {
                return std::task::Poll::Ready(None);
            }
            work.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// Reports successful creation (after the move to CONNECTED_ACTIVE).
    fn created(&self) {
        let _callbacks = self.callbacks.lock();
        if self.state().is_closed() {
            return;
        }
        let pending = self.on_created.lock().take();
        if let Some(on_created) = pending {
            on_created(Ok(()));
        }
    }

    /// Closes the session as failed with `error`.
    fn fail(&self, error: Error) {
        self.finish(State::ClosedFailed, Some(error.clone()), error);
    }

    fn set_state(&self, to: State) -> Option<State> {
        let mut state = self.state.lock();
        let from = *state;
        if !from.can_move_to(to) {
            return None;
        }
        *state = to;
        Some(from)
    }

    fn notify(&self, from: State, to: State) {
        tracing::debug!(url = %self.config.url.to_url_string(), %from, %to, "session state changed");
        if to == State::ConnectedActive {
            self.active_reported.store(true, Ordering::Release);
        }
        if let Some(Some(listener)) = self.listener.get() {
            listener(from, to);
        }
        // A listener that closes the session reports the closed state first; closed is terminal.
        let mut reported = self.reported.lock();
        if !reported.is_closed() {
            *reported = to;
        }
        // Only a state that ends `wait_connected` wakes its thread: waking it for CONNECTING would
        // take the CPU from this I/O thread just as it starts to connect.
        let settled = creation_settled(*reported);
        drop(reported);
        if settled {
            self.reported_changed.notify_all();
        }
    }
}

/// Blocking calls from a library thread (inside a callback) would deadlock: they fail instead.
fn refuse_blocking_on_io_thread() -> Result<()> {
    if runtime::on_io_thread() {
        return Err(Error::illegal_state(
            "a blocking call was made from a libsession callback thread, where it would deadlock; \
             use the asynchronous form",
        ));
    }
    Ok(())
}

/// Whether a blocking creation waiting in `wait_connected` has its answer in `state`.
fn creation_settled(state: State) -> bool {
    matches!(state, State::ConnectedActive | State::RecoveringReconnect) || state.is_closed()
}

impl Session {
    /// Whether the session's task is parked with its I/O thread, waiting to be taken up
    /// ([`runtime::Home::park`]). For the library's tests.
    #[doc(hidden)]
    pub fn is_parked(&self) -> bool {
        self.shared.parked.get().is_some_and(|p| p.waiting())
    }
}
