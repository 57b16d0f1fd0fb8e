//! The task that drives one session: it moves bytes between the session's logic
//! ([`super::client::ClientSession`]) and a transport. Connection attempts follow the initial retry
//! strategy, then the reconnection strategy after a loss; everything the session decides (the
//! handshake, numbering, acknowledgements, keep-alive, recovery, the reconnection deadline) is
//! the core's.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

use std::sync::Weak;

use super::client::{Event, Window};
use super::messaging::MessageHandler;
use super::{Command, Shared, State};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{self, CloseReason, Frame, RefusedAction};
use crate::reconnect::ReconnectPolicy;
use crate::runtime::Alarm;
use crate::transport::{Connection, Received, Transport};

/// Bytes of frames taken from the core per lock while gathering a batch.
const TRANSMIT_STEP: usize = 4 * 1024;

/// How long a close may spend sending queued messages before it sends CLOSE (inside the second
/// `Session::close` waits).
const CLOSE_DRAIN: Duration = Duration::from_millis(750);

pub(crate) async fn drive(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    if let Some(opened) = open(&shared, &mut commands).await {
        run(shared, opened, commands).await;
    }
}

/// A session connected by [`open`], ready to [`run`].
pub(crate) struct Opened {
    conn: Connection,
}

/// An event of the session's core, with the application's handlers.
type AppEvent = Event<Arc<dyn MessageHandler>>;

/// Passes the core's events on to the application: state changes to the listener (and the
/// creation callback, the reconnection handler), deliveries to the handlers. Returns false once
/// the session is closed, by the core or by the application.
fn relay(shared: &Shared) -> bool {
    // The handlers of a batch's deliveries, one after the other (each event notes its range), as
    // weak references: a handler removed meanwhile (unsubscribed, replaced, the session closed)
    // is released at once, not when the delivery that found it ends.
    let mut handlers: Vec<Weak<dyn MessageHandler>> = Vec::new();
    loop {
        // The events so far and the handlers of each delivery, under one lock.
        handlers.clear();
        let events: Vec<(AppEvent, Range<usize>)> = {
            let mut core = shared.mailbox.core.lock();
            std::iter::from_fn(|| {
                let event = core.poll_event()?;
                let start = handlers.len();
                if let Event::Deliver { path, .. } = &event {
                    handlers.extend(core.handlers_for(path).map(Arc::downgrade));
                }
                Some((event, start..handlers.len()))
            })
            .collect()
        };
        if events.is_empty() {
            break;
        }
        for (event, range) in events {
            if !relay_one(shared, event, &handlers[range]) {
                return false;
            }
        }
    }
    !shared.state().is_closed()
}

/// Passes one event on; false when a state change was refused (the session is closed).
fn relay_one(shared: &Shared, event: Event<Arc<dyn MessageHandler>>, handlers: &[Weak<dyn MessageHandler>]) -> bool {
    match event {
        Event::State { to, error, .. } if to.is_closed() => {
            let error = error.unwrap_or_else(|| Error::new(ErrorCode::SessionClosed, "the session was closed"));
            shared.finish(to, Some(error.clone()), error);
        }
        // The session has been CONNECTING since it was started, silently (see Session::prepare).
        Event::State { to: State::Connecting, .. } => {}
        Event::State { from, to, .. } => {
            if to == State::ConnectedActive {
                let core = shared.mailbox.core.lock();
                let _ = shared.id.set(core.id());
                shared.mailbox.update_limit(core.size_limit());
            }
            if !shared.transition(to) {
                return false;
            }
            match (from, to) {
                (State::Connecting, State::ConnectedActive) => shared.created(),
                (State::RecoveringReconnect, State::ConnectedActive) => {
                    if let ReconnectPolicy::User(handler) = &shared.config.options.reconnection.policy {
                        shared.callback(|| handler.on_success());
                    }
                }
                _ => {}
            }
        }
        Event::Deliver { path, data } => {
            for handler in handlers {
                shared.callback(|| handler.upgrade().map(|handler| handler.on_message(&path, &data)));
            }
        }
        Event::Refused { path, error, handler: Some(handler), .. } => {
            tracing::info!(%error, "subscription refused");
            // Released under the callbacks lock, so that `close` waits for that too.
            shared.callback(move || handler.on_error(&path, &error));
        }
        Event::Refused { action: RefusedAction::Publish, path, error, .. } => {
            tracing::info!(%error, "publication refused");
            if let Some(handler) = shared.error_handler() {
                shared.callback(move || handler(&path, &error));
            }
        }
        // A subscription the application had already ended.
        Event::Refused { .. } => {}
    }
    true
}

/// Connects the session (CONNECTING, then CONNECTED_ACTIVE and the creation callback); `None`
/// when it failed or was closed first, with its state and error already set.
pub(crate) async fn open(shared: &Shared, commands: &mut mpsc::UnboundedReceiver<Command>) -> Option<Opened> {
    shared.mailbox.core.lock().start();
    if !relay(shared) {
        return None;
    }
    // Connecting needs a large future for a short while: boxed, so that it is not part of every
    // idle session's task.
    let established = tokio::select! {
        result = Box::pin(establish(shared)) => result,
        // Closed by the application: `close` has already reported it.
        _ = commands.recv() => return None,
    };
    let conn = match established {
        Ok(conn) => conn,
        Err(e) => {
            tracing::info!(url = %shared.config.url.to_url_string(), error = %e, "session creation failed");
            shared.mailbox.core.lock().close(State::ClosedFailed, Some(e));
            relay(shared);
            return None;
        }
    };
    tracing::info!(session = %shared.mailbox.core.lock().id(), server = conn.peer(), "session connected");
    if !relay(shared) {
        close_connection(conn).await;
        return None;
    }
    Some(Opened { conn })
}

/// Serves a connected session until it closes, recovering lost connections.
pub(crate) async fn run(shared: Arc<Shared>, opened: Opened, mut commands: mpsc::UnboundedReceiver<Command>) {
    let Opened { mut conn } = opened;
    let id = shared.mailbox.core.lock().id();
    loop {
        match serve(&shared, &mut conn, &mut commands).await {
            Ended::ByClient(flushed) => {
                close_connection(conn).await;
                shared.mailbox.core.lock().close(State::ClosedByClient, None);
                shared.mailbox.clear(true);
                drop(flushed);
                return;
            }
            Ended::Core(super::client::Ended::ByServer(e)) => {
                tracing::info!(session = %id, reason = %e, "session closed by the server");
                relay(&shared);
                return;
            }
            Ended::Core(super::client::Ended::Failed(e)) => {
                tracing::info!(session = %id, error = %e, "session failed");
                // A protocol error is answered with CLOSE when the core has one to send.
                Box::pin(async {
                    let _ = transmit(&shared, &mut conn, Window::Ignored).await;
                    conn.close().await;
                })
                .await;
                relay(&shared);
                return;
            }
            Ended::Core(super::client::Ended::Lost(e)) => {
                tracing::info!(session = %id, error = %e, "connection lost");
                drop(conn);
                shared.mailbox.core.lock().connection_lost(std::time::Instant::now(), e);
                if !relay(&shared) {
                    return;
                }
                let recovered = tokio::select! {
                    result = Box::pin(recover(shared.clone())) => result,
                    _ = commands.recv() => return,
                };
                match recovered {
                    Ok(next) => {
                        conn = next;
                        tracing::info!(session = %id, server = conn.peer(), "session recovered");
                        if !relay(&shared) {
                            close_connection(conn).await;
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::info!(session = %id, error = %e, "session not recovered");
                        if let ReconnectPolicy::User(handler) = &shared.config.options.reconnection.policy {
                            shared.callback(|| handler.on_failure());
                        }
                        shared.mailbox.core.lock().close(State::ClosedFailed, Some(e));
                        relay(&shared);
                        return;
                    }
                }
            }
        }
    }
}

/// Connection attempts as the initial retry strategy allows: the first at once, then one after
/// each delay, for transient failures only.
async fn establish(shared: &Shared) -> Result<Connection> {
    let strategy = shared.config.options.initial_retry;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match connect_gated(shared).await {
            Ok(conn) => return Ok(conn),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        let Some(delay) = strategy.delay_before(attempts, &mut rand::thread_rng()) else {
            return Err(gave_up(error, attempts));
        };
        tracing::debug!(attempt = attempts, error = %error, ?delay, "connection attempt failed; retrying");
        sleep(delay).await;
    }
}

fn gave_up(error: Error, attempts: u32) -> Error {
    if attempts > 1 {
        Error::new(error.code(), format!("{error} (gave up after {attempts} attempts)"))
    } else {
        error
    }
}

/// Reconnection attempts as the reconnection strategy allows, until the core's recovery
/// deadline; past it, the error the core gives up with.
async fn recover(shared: Arc<Shared>) -> Result<Connection> {
    let strategy = &shared.config.options.reconnection;
    let attempts = async {
        let mut n = 0u32;
        while strategy.allows(n) {
            sleep(strategy.delay_before(n)).await;
            if let ReconnectPolicy::User(handler) = &strategy.policy {
                let (handler, on) = (handler.clone(), shared.clone());
                // A callback of the session like the others (`close` waits for it), on a thread
                // where it may block.
                let start = tokio::task::spawn_blocking(move || on.callback(|| handler.before_attempt()))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(false);
                if !start {
                    let last = last_error(&shared);
                    return Err(Error::new(
                        last.code(),
                        format!("reconnection aborted by the application's strategy; the connection was lost: {last}"),
                    ));
                }
            }
            n += 1;
            match connect_gated(&shared).await {
                Ok(conn) => return Ok(conn),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => shared.mailbox.core.lock().connection_lost(std::time::Instant::now(), e),
            }
        }
        let last = last_error(&shared);
        Err(Error::new(last.code(), format!("could not reconnect after {n} attempts: {last}")))
    };
    let deadline = shared.mailbox.core.lock().recovery_deadline().unwrap_or_else(std::time::Instant::now);
    match tokio::time::timeout_at(Instant::from_std(deadline), attempts).await {
        Ok(result) => result,
        Err(_) => {
            let mut core = shared.mailbox.core.lock();
            match core.handle_timeout(deadline.max(std::time::Instant::now())) {
                Err(super::client::Ended::Failed(e)) => Err(e),
                _ => Err(core
                    .last_error()
                    .cloned()
                    .unwrap_or_else(|| Error::new(ErrorCode::CommunicationError, "not reconnected"))),
            }
        }
    }
}

/// The error of the last attempt, or the loss itself before any attempt.
fn last_error(shared: &Shared) -> Error {
    shared
        .mailbox
        .core
        .lock()
        .last_error()
        .cloned()
        .unwrap_or_else(|| Error::new(ErrorCode::CommunicationError, "the connection was lost"))
}

/// One connection attempt, as the session's callbacks are run (see [`Shared::gated`]); fails
/// once the session is closed.
async fn connect_gated(shared: &Shared) -> Result<Connection> {
    shared
        .gated(std::pin::pin!(connect(shared)))
        .await
        .unwrap_or_else(|| Err(Error::new(ErrorCode::SessionClosed, "the session was closed while it connected")))
}
/// One connection attempt: each transport of the cascade in turn, until one connects.
async fn connect(shared: &Shared) -> Result<Connection> {
    let config = &shared.config;
    let cascade = if config.url.polling { vec![Transport::HttpPolling] } else { config.options.transports.clone() };
    let mut failures: Vec<(Transport, Error)> = Vec::new();
    for transport in cascade {
        match connect_over(shared, transport).await {
            Ok(conn) => {
                shared.mailbox.set_transport(transport);
                return Ok(conn);
            }
            Err(e) if !worth_another_transport(&e) => return Err(e),
            Err(e) => {
                tracing::debug!(%transport, error = %e, "transport failed");
                failures.push((transport, e));
            }
        }
    }
    let Some((_, last)) = failures.last() else {
        return Err(Error::illegal_argument("no transport to try"));
    };
    if failures.len() == 1 {
        return Err(last.clone());
    }
    let each: Vec<String> = failures.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    let error = Error::new(last.code(), format!("no transport could connect; {}", each.join("; ")));
    Err(if last.is_transient() { error.try_later() } else { error })
}

/// Whether a failure is the transport's, so that the next transport may do better. The server's
/// own decisions (credentials, unknown session, lost messages) stand whatever the transport.
fn worth_another_transport(e: &Error) -> bool {
    !matches!(
        e.code(),
        ErrorCode::AuthenticationFailed
            | ErrorCode::UnknownSession
            | ErrorCode::MessageLoss
            | ErrorCode::ProtocolVersion
            | ErrorCode::ParseUrl
            | ErrorCode::IllegalArgument
    )
}

/// One transport's attempt, bounded by the connection timeout: transport and handshake.
async fn connect_over(shared: &Shared, transport: Transport) -> Result<Connection> {
    let config = &shared.config;
    let options = &config.options;
    let authority = config.url.authority();
    let attempt = async {
        let request = protocol::encode(&shared.mailbox.core.lock().connect_request_to(authority.clone()));
        let transport_options = options.transport_options();
        let mut conn = Connection::open(
            transport,
            &config.url,
            &transport_options,
            &shared.cookies,
            &request,
            &shared.mailbox.loan,
        )
        .await?;
        if !conn.connect_sent() {
            conn.send_encoded(request).await?;
        }
        let reply = conn.recv().await?.ok_or_else(|| {
            Error::new(
                ErrorCode::ConnectionRejected,
                format!("server {authority} closed the connection without answering the connect request"),
            )
        })?;
        shared.mailbox.core.lock().handle_handshake(std::time::Instant::now(), reply)?;
        Ok(conn)
    };
    match timeout(options.connection_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorCode::RequestTimeOut,
            format!(
                "no session established with {authority} within the connection timeout of {} ms",
                options.connection_timeout.as_millis()
            ),
        )),
    }
}

/// How serving a connection ended.
enum Ended {
    /// The application closed the session.
    ByClient(Option<std::sync::mpsc::SyncSender<()>>),
    /// As the core decided.
    Core(super::client::Ended),
}

impl From<Error> for Ended {
    /// Whatever could go better on another try (a reset, a refused or timed-out connection, a
    /// "try later" from a balancer; over HTTP polling each request may open a connection) loses
    /// the connection, and the session recovers; anything else fails it.
    fn from(e: Error) -> Self {
        if e.is_transient() {
            Ended::Core(super::client::Ended::Lost(e))
        } else {
            Ended::Core(super::client::Ended::Failed(e))
        }
    }
}

impl From<super::client::Ended> for Ended {
    fn from(ended: super::client::Ended) -> Self {
        Ended::Core(ended)
    }
}

/// Serves a connection until it ends: sends what the core gives (queued messages as the
/// recovery buffer allows, acknowledgements, answers), hands it what arrives, wakes it at its
/// deadlines. While the task waits, the connection's writer is lent to the threads that publish;
/// the connection takes it back before it writes.
async fn serve(shared: &Shared, conn: &mut Connection, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
    let mut alarm = Alarm::new(far_future());
    loop {
        if let Err(e) = transmit(shared, conn, Window::Kept).await {
            return fail_writing(shared, conn, e).await;
        }
        let (room, deadline) = {
            let core = shared.mailbox.core.lock();
            (core.has_room(), core.poll_timeout())
        };
        conn.lend();
        alarm.set(deadline.map_or_else(far_future, Instant::from_std));
        let woke = tokio::select! {
            received = conn.next() => Woke::Received(received),
            _ = shared.mailbox.ready.notified(), if room => Woke::Mail,
            _ = &mut alarm => Woke::Timer,
            command = commands.recv() => Woke::Command(command),
        };
        crate::runtime::note_activity();
        if shared.mailbox.loan.renew() {
            if let Err(e) = conn.flush().await {
                return fail_writing(shared, conn, e).await;
            }
        }
        let now = std::time::Instant::now();
        let handled = match woke {
            Woke::Received(Ok(Received::Frame(frame))) => handle_frames(shared, conn, now, frame),
            Woke::Received(Ok(Received::PongDue)) => {
                shared.mailbox.core.lock().heard(now);
                if let Err(e) = conn.flush().await {
                    return fail_writing(shared, conn, e).await;
                }
                Ok(())
            }
            Woke::Received(Ok(Received::Closed)) => Err(super::client::Ended::Lost(Error::new(
                ErrorCode::CommunicationError,
                format!("connection to {} lost: the server closed it without closing the session", conn.peer()),
            ))),
            Woke::Received(Err(e)) => return fail(shared, e),
            Woke::Mail => Ok(()),
            Woke::Timer => shared.mailbox.core.lock().handle_timeout(now),
            Woke::Command(command) => {
                let Some(Command::Close(flushed)) = command else { return Ended::ByClient(None) };
                drain(shared, conn).await;
                return Ended::ByClient(flushed);
            }
        };
        if let Err(ended) = handled {
            return ended.into();
        }
    }
}

/// Hands the core `frame` and those that came with it, under one lock, and passes its events on.
fn handle_frames(
    shared: &Shared,
    conn: &mut Connection,
    now: std::time::Instant,
    frame: Frame,
) -> std::result::Result<(), super::client::Ended> {
    let handled = {
        let mut core = shared.mailbox.core.lock();
        let mut handled = core.handle_frame(now, frame);
        while handled.is_ok() {
            let Some(next) = conn.decoded() else { break };
            handled = core.handle_frame(now, next);
        }
        handled
    };
    relay(shared);
    handled
}

/// How long [`fail_writing`] reads what has arrived at most.
const DRAIN_AFTER_WRITE_ERROR: Duration = Duration::from_secs(2);

/// A write failed. A server that ends a session sends its CLOSE and then closes the
/// connection, so what it sent before may still wait unread here, the CLOSE among it: the core
/// gets what has already arrived (without waiting for more), and a CLOSE there ends the session
/// as the server said. Otherwise the write's error ends the connection.
async fn fail_writing(shared: &Shared, conn: &mut Connection, e: Error) -> Ended {
    if e.is_transient() {
        // A peer that keeps sending (one that stopped reading, say) is not read for ever.
        let until = std::time::Instant::now() + DRAIN_AFTER_WRITE_ERROR;
        // A zero timeout polls the read once: what has arrived, and nothing more.
        while std::time::Instant::now() < until {
            let Ok(received) = timeout(Duration::ZERO, conn.next()).await else { break };
            let handled = match received {
                Ok(Received::Frame(frame)) => handle_frames(shared, conn, std::time::Instant::now(), frame),
                Ok(Received::PongDue) => Ok(()),
                Ok(Received::Closed) | Err(_) => break,
            };
            if let Err(ended) = handled {
                return ended.into();
            }
        }
    }
    fail(shared, e)
}

/// A transport's error ends the connection: lost (the core decides whether to recover) or, for
/// what another try cannot mend, failed (and the core closes the session).
fn fail(shared: &Shared, e: Error) -> Ended {
    let ended = Ended::from(e);
    if let Ended::Core(super::client::Ended::Failed(e)) = &ended {
        shared.mailbox.core.lock().close(State::ClosedFailed, Some(e.clone()));
    }
    ended
}

/// Sends what the core has to send, batched, as `window` allows.
async fn transmit(shared: &Shared, conn: &mut Connection, window: Window) -> Result<()> {
    conn.hold();
    loop {
        let mut batch = conn.batch();
        while batch.len() < protocol::BATCH_BYTES {
            // A few kilobytes at a time: threads publishing meanwhile wait for the lock briefly.
            let items = shared.mailbox.core.lock().poll_transmit(std::time::Instant::now(), TRANSMIT_STEP, window);
            if items.is_empty() {
                break;
            }
            batch.extend(items);
        }
        if batch.is_empty() {
            return Ok(());
        }
        conn.send_batch(batch).await?;
    }
}

/// Before a close: sends what the application published, beyond the recovery window (no recovery
/// follows a close), then a PING, and waits for its PONG, for up to [`CLOSE_DRAIN`]. The server
/// handles a connection's frames in order, so the PONG shows it has handled every message before
/// it (closing the socket sooner could reset the connection before the server read them).
async fn drain(shared: &Shared, conn: &mut Connection) {
    const NONCE: u64 = u64::MAX;
    let drained = async {
        let unsent = {
            let core = shared.mailbox.core.lock();
            core.has_queued() || core.retained() > 0
        };
        if unsent {
            transmit(shared, conn, Window::Ignored).await?;
            conn.send(&Frame::Ping(NONCE)).await?;
            loop {
                match conn.next().await? {
                    Received::Frame(Frame::Pong(NONCE)) | Received::Closed => return Ok(()),
                    Received::PongDue => conn.flush().await?,
                    Received::Frame(_) => {}
                }
            }
        }
        Ok::<(), Error>(())
    };
    let _ = timeout(CLOSE_DRAIN, drained).await;
}

/// What ended a wait of [`serve`].
enum Woke {
    Received(Result<Received>),
    Mail,
    Timer,
    Command(Option<Command>),
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// Sends CLOSE and closes the connection. The work is boxed: a session's task holds its largest
/// future all its life, and this one runs once.
async fn close_connection(mut conn: Connection) {
    let close = Frame::Close { reason: CloseReason::Normal, message: "closed by the client".into() };
    let closing = Box::pin(async move {
        let _ = conn.send(&close).await;
        conn.close().await;
    });
    let _ = timeout(Duration::from_secs(1), closing).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_session_task_stays_small() {
        // Every idle session holds its task's future: transient large futures are boxed.
        let config = super::super::SessionConfig::new("ws://127.0.0.1:1").unwrap();
        let session = super::super::Session::new(config);
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = super::drive(session.shared.clone(), rx);
        println!("an idle session's task: {} bytes", std::mem::size_of_val(&task));
        assert!(std::mem::size_of_val(&task) <= 1400, "{} bytes", std::mem::size_of_val(&task));
    }
}
