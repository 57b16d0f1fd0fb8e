//! The task that drives one session: connect (with the initial retry strategy), serve the
//! connection (messages, acknowledgements, keep-alive), recover it after a loss (with the
//! reconnection strategy), close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

use super::{Command, Shared, State};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::reliable::{Incoming, Receipt};
use crate::protocol::untrusted::Untrusted;
use crate::protocol::{self, ClientHandshake, CloseReason, ConnectRequest, Established, Frame, Message, SessionId};
use crate::reconnect::ReconnectPolicy;
use crate::runtime::Alarm;
use crate::transport::{Connection, Received, Transport};

/// Silence from the server longer than this many keep-alive intervals means the link is dead.
const KEEP_ALIVE_MISSES: u32 = 2;
/// Extra slack on the keep-alive deadline for scheduling and network jitter.
const KEEP_ALIVE_SLACK: Duration = Duration::from_millis(500);
/// Longest wait before acknowledging received messages.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Once an ACK is due (enough messages received), how long it may wait for an outgoing message
/// to ride with.
const ACK_RIDE: Duration = Duration::from_millis(1);
/// How long a close may spend sending queued messages before it sends CLOSE (inside the second
/// `Session::close` waits).
const CLOSE_DRAIN: Duration = Duration::from_millis(750);

/// What survives from one connection to the next (with the sending side, in the mailbox).
struct Link {
    incoming: Incoming,
    token: Vec<u8>,
    id: SessionId,
    /// The server's keep-alive interval, from the last handshake.
    ping_interval: Duration,
}

pub(crate) async fn drive(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    if let Some(opened) = open(&shared, &mut commands).await {
        run(shared, opened, commands).await;
    }
}

/// A session connected by [`open`], ready to [`run`].
pub(crate) struct Opened {
    conn: Connection,
    link: Link,
}

/// Connects the session (CONNECTING, then CONNECTED_ACTIVE and the creation callback); `None`
/// when it failed or was closed first, with its state and error already set.
pub(crate) async fn open(shared: &Shared, commands: &mut mpsc::UnboundedReceiver<Command>) -> Option<Opened> {
    if !shared.transition(State::Connecting) {
        return None;
    }
    let mut link = Link {
        incoming: Incoming::default(),
        token: Vec::new(),
        id: SessionId::default(),
        ping_interval: Duration::from_secs(10),
    };
    // Connecting needs a large future for a short while: boxed, so that it is not part of every
    // idle session's task.
    let established = tokio::select! {
        result = Box::pin(establish(shared, &mut link)) => result,
        // Closed by the application: `close` has already reported it.
        _ = commands.recv() => return None,
    };
    let conn = match established {
        Ok(conn) => conn,
        Err(e) => {
            tracing::info!(url = %shared.config.url.to_url_string(), error = %e, "session creation failed");
            shared.fail(e);
            return None;
        }
    };
    let _ = shared.id.set(link.id);
    tracing::info!(session = %link.id, server = conn.peer(), "session connected");
    if !shared.transition(State::ConnectedActive) {
        close_connection(conn).await;
        return None;
    }
    shared.created();
    Some(Opened { conn, link })
}

/// Serves a connected session until it closes, recovering lost connections.
pub(crate) async fn run(shared: Arc<Shared>, opened: Opened, mut commands: mpsc::UnboundedReceiver<Command>) {
    let Opened { mut conn, mut link } = opened;
    let options = &shared.config.options;
    loop {
        match serve(&shared, &mut conn, &mut link, &mut commands).await {
            Ended::ByClient(flushed) => {
                close_connection(conn).await;
                shared.mailbox.clear(true);
                drop(flushed);
                return;
            }
            Ended::ByServer(e) => {
                tracing::info!(session = %link.id, reason = %e, "session closed by the server");
                shared.finish(State::ClosedByServer, Some(e.clone()), e);
                return;
            }
            Ended::Failed(e) => {
                tracing::info!(session = %link.id, error = %e, "session failed");
                conn.close().await;
                shared.fail(e);
                return;
            }
            Ended::Lost(e) => {
                tracing::info!(session = %link.id, error = %e, "connection lost");
                drop(conn);
                if !options.reconnection.enabled() {
                    shared.fail(e);
                    return;
                }
                if !shared.transition(State::RecoveringReconnect) {
                    return;
                }
                let recovered = tokio::select! {
                    result = Box::pin(recover(shared.clone(), &mut link, e)) => result,
                    _ = commands.recv() => return,
                };
                match recovered {
                    Ok(next) => {
                        conn = next;
                        tracing::info!(session = %link.id, server = conn.peer(), "session recovered");
                        if !shared.transition(State::ConnectedActive) {
                            close_connection(conn).await;
                            return;
                        }
                        if let ReconnectPolicy::User(handler) = &options.reconnection.policy {
                            shared.callback(|| handler.on_success());
                        }
                    }
                    Err(e) => {
                        tracing::info!(session = %link.id, error = %e, "session not recovered");
                        if let ReconnectPolicy::User(handler) = &options.reconnection.policy {
                            shared.callback(|| handler.on_failure());
                        }
                        shared.fail(e);
                        return;
                    }
                }
            }
        }
    }
}

/// Connection attempts as the initial retry strategy allows: the first at once, then one after
/// each delay, for transient failures only.
async fn establish(shared: &Shared, link: &mut Link) -> Result<Connection> {
    let strategy = shared.config.options.initial_retry;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match connect_gated(shared, link).await {
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

/// Reconnection attempts as the reconnection strategy allows, within its timeout.
async fn recover(shared: Arc<Shared>, link: &mut Link, cause: Error) -> Result<Connection> {
    let strategy = &shared.config.options.reconnection;
    let limit = strategy.timeout.unwrap_or_default();
    // The last attempt's error, or the loss itself before any attempt: what a failure names.
    let mut last = cause;
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
                    return Err(Error::new(
                        last.code(),
                        format!("reconnection aborted by the application's strategy; the connection was lost: {last}"),
                    ));
                }
            }
            n += 1;
            match connect_gated(&shared, link).await {
                Ok(conn) => return Ok(conn),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(Error::new(last.code(), format!("could not reconnect after {n} attempts: {last}")))
    };
    let result = timeout(limit, attempts).await;
    result.unwrap_or_else(|_| {
        Err(Error::new(
            last.code(),
            format!("could not reconnect within the reconnection timeout of {} ms: {last}", limit.as_millis()),
        ))
    })
}

/// One connection attempt, as the session's callbacks are run (see [`Shared::gated`]); fails
/// once the session is closed.
async fn connect_gated(shared: &Shared, link: &mut Link) -> Result<Connection> {
    shared
        .gated(connect(shared, link))
        .await
        .unwrap_or_else(|| Err(Error::new(ErrorCode::SessionClosed, "the session was closed while it connected")))
}

/// One connection attempt: each transport of the cascade in turn, until one connects.
async fn connect(shared: &Shared, link: &mut Link) -> Result<Connection> {
    let config = &shared.config;
    let cascade = if config.url.polling { vec![Transport::HttpPolling] } else { config.options.transports.clone() };
    let mut failures: Vec<(Transport, Error)> = Vec::new();
    for transport in cascade {
        match connect_over(shared, link, transport).await {
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

/// One transport's attempt, bounded by the connection timeout: transport, handshake, and (when
/// resuming) the messages the server missed.
async fn connect_over(shared: &Shared, link: &mut Link, transport: Transport) -> Result<Connection> {
    let config = &shared.config;
    let options = &config.options;
    let authority = config.url.authority();
    let attempt = async {
        let handshake = ClientHandshake::new(
            ConnectRequest {
                principal: options.principal.clone(),
                credentials: options.credentials.clone(),
                properties: options.properties.clone(),
                max_frame_size: options.frame_limit(),
                reconnect_token: link.token.clone(),
                last_received: link.incoming.last(),
                ..Default::default()
            },
            authority.clone(),
        );
        let request = protocol::encode(&handshake.request_frame());
        let mut conn = Connection::open(transport, &config.url, options, &shared.cookies, &request).await?;
        if !conn.connect_sent() {
            conn.send_encoded(request).await?;
        }
        let reply = conn.recv().await?.ok_or_else(|| {
            Error::new(
                ErrorCode::ConnectionRejected,
                format!("server {authority} closed the connection without answering the connect request"),
            )
        })?;
        let established = handshake.on_frame(reply)?;
        shared.mailbox.set_server_limit(established.server_max_frame_size);
        resume(shared, &mut conn, link, &established, &authority).await?;
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

/// Takes over an established connection: a new session starts numbering; a resumed one sends
/// again what the server did not receive.
async fn resume(
    shared: &Shared,
    conn: &mut Connection,
    link: &mut Link,
    established: &Established,
    authority: &str,
) -> Result<()> {
    let resuming = !link.token.is_empty();
    if resuming && (!established.resumed || established.session_id != link.id) {
        return Err(Error::new(
            ErrorCode::UnknownSession,
            format!("server {authority} no longer knows session {} and started a new one", link.id),
        ));
    }
    if !resuming && established.resumed {
        return Err(Error::new(
            ErrorCode::ConnectionProtocolError,
            format!("server {authority} answered a new session's connect request as a resumption"),
        ));
    }
    // Every recovery hands out a fresh token: the one just used no longer works.
    if !established.token.is_empty() {
        link.token = established.token.clone();
    }
    if !resuming {
        link.id = established.session_id;
    }
    let resend = {
        let mut sender = shared.mailbox.sender.lock();
        let resend = sender.out.resend_after(established.last_received).map_err(|loss| {
            Error::new(
                ErrorCode::MessageLoss,
                format!(
                    "the server received messages up to {} but message {} is no longer in the recovery buffer (recovery_buffer_size)",
                    established.last_received, loss.missing_from
                ),
            )
        })?;
        sender
            .out
            .on_ack(established.last_received)
            .map_err(|why| Error::new(ErrorCode::ConnectionProtocolError, format!("server {authority} {why}")))?;
        resend
    };
    link.ping_interval = established.ping_interval;
    for frames in batches(resend.iter()) {
        conn.send_encoded(frames).await?;
    }
    Ok(())
}

/// Frames encoded and grouped into WebSocket messages of about `protocol::BATCH_BYTES`.
fn batches<'a>(frames: impl Iterator<Item = &'a Frame>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for frame in frames {
        match out.last_mut() {
            Some(batch) if batch.len() < protocol::BATCH_BYTES => protocol::encode_into(frame, batch),
            _ => out.push(protocol::encode(frame)),
        }
    }
    out
}

enum Ended {
    /// The application closed the session.
    ByClient(Option<std::sync::mpsc::SyncSender<()>>),
    /// The server closed it.
    ByServer(Error),
    /// It cannot go on (protocol error, messages lost).
    Failed(Error),
    /// The connection was lost; the session may be recovered.
    Lost(Error),
}

impl From<Error> for Ended {
    /// Whatever could go better on another try (a reset, a refused or timed-out connection, a
    /// "try later" from a balancer; over HTTP polling each request may open a connection) loses
    /// the connection, and the session recovers; anything else fails it.
    fn from(e: Error) -> Self {
        if e.is_transient() {
            Ended::Lost(e)
        } else {
            Ended::Failed(e)
        }
    }
}

/// Serves a connection until it ends: sends queued messages (as the recovery buffer allows),
/// delivers received ones, acknowledges, keeps alive. The connection's writer is lent to the
/// threads that publish whenever the task does not need it, and is back when this returns.
async fn serve(
    shared: &Shared,
    conn: &mut Connection,
    link: &mut Link,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let ended = serve_lending(shared, conn, link, commands).await;
    hold(shared, conn);
    ended
}

/// Takes the connection's writer back if it is lent.
fn hold(shared: &Shared, conn: &mut Connection) {
    if let Some(writer) = shared.mailbox.reclaim() {
        conn.reclaim(writer);
    }
}

async fn serve_lending(
    shared: &Shared,
    conn: &mut Connection,
    link: &mut Link,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let mut keep_alive = KeepAlive::new(link.ping_interval);
    let mut ack_at: Option<Instant> = None;
    let mut ack_timer = Alarm::new(far_future());
    let mut silence = Alarm::new(keep_alive.deadline);
    loop {
        if let Err(e) = flush(shared, conn, link).await {
            return e.into();
        }
        if !link.incoming.ack_pending() {
            ack_at = None;
        }
        let room = shared.mailbox.sender.lock().out.has_room();
        // While the task waits, an application thread may send one message itself.
        if let Some(writer) = conn.lend() {
            shared.mailbox.lend(writer);
        }
        if let Some(at) = ack_at {
            ack_timer.set(at);
        }
        silence.set(keep_alive.deadline);
        let woke = tokio::select! {
            received = conn.next() => Woke::Received(received),
            _ = shared.mailbox.ready.notified(), if room => Woke::Mail,
            _ = &mut ack_timer, if ack_at.is_some() => Woke::AckDue,
            _ = &mut silence => Woke::Silent,
            command = commands.recv() => Woke::Command(command),
        };
        crate::runtime::note_activity();
        if shared.mailbox.renew() {
            hold(shared, conn);
            if let Err(e) = conn.flush().await {
                return e.into();
            }
        }
        match woke {
            Woke::Received(received) => {
                let frame = match received {
                    Ok(Received::Frame(frame)) => frame,
                    Ok(Received::PongDue) => {
                        keep_alive.heard();
                        hold(shared, conn);
                        if let Err(e) = conn.flush().await {
                            return e.into();
                        }
                        continue;
                    }
                    Ok(Received::Closed) => {
                        return Ended::Lost(Error::new(
                            ErrorCode::CommunicationError,
                            format!(
                                "connection to {} lost: the server closed it without closing the session",
                                conn.peer()
                            ),
                        ))
                    }
                    Err(e) => return e.into(),
                };
                keep_alive.heard();
                if let Some(ended) = on_frame(shared, conn, link, frame).await {
                    return ended;
                }
                if link.incoming.ack_now() {
                    // Due: it rides with the next outgoing message, or goes alone shortly.
                    let soon = Instant::now() + ACK_RIDE;
                    ack_at = Some(ack_at.map_or(soon, |at| at.min(soon)));
                } else if link.incoming.ack_pending() && ack_at.is_none() {
                    ack_at = Some(Instant::now() + ACK_DELAY);
                }
            }
            Woke::Mail => {}
            Woke::AckDue => {
                ack_at = None;
                hold(shared, conn);
                if let Err(e) = conn.send(&link.incoming.take_ack()).await {
                    return e.into();
                }
            }
            Woke::Silent => {
                return Ended::Lost(Error::new(
                    ErrorCode::CommunicationError,
                    format!(
                        "connection to {} lost: nothing received for {} ms",
                        conn.peer(),
                        keep_alive.limit.as_millis()
                    ),
                ));
            }
            Woke::Command(command) => {
                let Some(Command::Close(flushed)) = command else { return Ended::ByClient(None) };
                drain(shared, conn, link).await;
                return Ended::ByClient(flushed);
            }
        }
    }
}

/// Before a close: sends what the application published, beyond the recovery window (no recovery
/// follows a close), then a PING, and waits for its PONG, for up to [`CLOSE_DRAIN`]. The server
/// handles a connection's frames in order, so the PONG shows it has handled every message before
/// it (closing the socket sooner could reset the connection before the server read them).
async fn drain(shared: &Shared, conn: &mut Connection, link: &mut Link) {
    const NONCE: u64 = u64::MAX;
    let drained = async {
        if shared.mailbox.has_queued() || shared.mailbox.sender.lock().out.retained() > 0 {
            send_queued(shared, conn, link, Window::Ignored).await?;
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
    AckDue,
    Silent,
    Command(Option<Command>),
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// The deadline after which a silent server is presumed gone.
struct KeepAlive {
    limit: Duration,
    deadline: Instant,
}

impl KeepAlive {
    fn new(ping_interval: Duration) -> Self {
        let limit = ping_interval * KEEP_ALIVE_MISSES + KEEP_ALIVE_SLACK;
        KeepAlive { limit, deadline: Instant::now() + limit }
    }

    fn heard(&mut self) {
        self.deadline = Instant::now() + self.limit;
    }
}

/// Whether sending waits for room in the recovery buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Window {
    Kept,
    Ignored,
}

/// Sends queued messages while the recovery buffer has room, batched; a pending ACK rides with
/// them.
async fn flush(shared: &Shared, conn: &mut Connection, link: &mut Link) -> Result<()> {
    send_queued(shared, conn, link, Window::Kept).await
}

async fn send_queued(shared: &Shared, conn: &mut Connection, link: &mut Link, window: Window) -> Result<()> {
    if !shared.mailbox.has_queued() {
        return Ok(());
    }
    hold(shared, conn);
    loop {
        let mut batch = conn.batch();
        {
            let mut sender = shared.mailbox.sender.lock();
            while (window == Window::Ignored || sender.out.has_room()) && batch.len() < protocol::BATCH_BYTES {
                let Some(message) = shared.mailbox.next() else { break };
                if batch.is_empty() && link.incoming.ack_pending() {
                    batch.add(&link.incoming.take_ack());
                }
                let (seq, message) = sender.out.number(message);
                message.add_to(seq, &mut batch);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        conn.send_batch(batch).await?;
    }
}

/// Handles one frame from the server; `Some` when the connection ends.
async fn on_frame(shared: &Shared, conn: &mut Connection, link: &mut Link, frame: Frame) -> Option<Ended> {
    match frame {
        Frame::Message { body: Message::Deliver { path, .. }, .. } if protocol::validate_path(&path).is_err() => {
            Some(Ended::Failed(Error::new(
                ErrorCode::ConnectionProtocolError,
                format!("server {} delivered a message on an invalid path", conn.peer()),
            )))
        }
        Frame::Message { seq, body: Message::Deliver { path, data } } => match link.incoming.receive(seq) {
            Ok(Receipt::New) => {
                for handler in shared.mailbox.handlers_for(&path) {
                    shared.callback(|| handler.upgrade().map(|handler| handler.on_message(&path, &data)));
                }
                None
            }
            Ok(Receipt::Duplicate) => None,
            Err(why) => Some(Ended::Failed(Error::new(
                ErrorCode::ConnectionProtocolError,
                format!("server {}: {why}", conn.peer()),
            ))),
        },
        Frame::Ack(seq) => {
            let acked = shared.mailbox.sender.lock().out.on_ack(seq);
            acked.err().map(|why| {
                Ended::Failed(Error::new(ErrorCode::ConnectionProtocolError, format!("server {} {why}", conn.peer())))
            })
        }
        Frame::Ping(n) => {
            hold(shared, conn);
            conn.send(&Frame::Pong(n)).await.err().map(Ended::from)
        }
        Frame::Pong(_) => None,
        Frame::Close { reason: CloseReason::MessageLoss, message } => Some(Ended::Failed(Error::new(
            ErrorCode::MessageLoss,
            format!("server {} closed the session: messages were lost: {}", conn.peer(), Untrusted(&message)),
        ))),
        Frame::Close { reason, message } => Some(Ended::ByServer(Error::new(
            ErrorCode::SessionClosed,
            format!("server {} closed the session ({reason}): {}", conn.peer(), Untrusted(&message)),
        ))),
        other => {
            hold(shared, conn);
            let _ = conn
                .send(&Frame::Close { reason: CloseReason::ProtocolError, message: "unexpected frame".into() })
                .await;
            Some(Ended::Failed(Error::new(
                ErrorCode::ConnectionProtocolError,
                format!("server {} sent an unexpected {} frame", conn.peer(), protocol::frame_name(&other)),
            )))
        }
    }
}

async fn close_connection(mut conn: Connection) {
    let close = Frame::Close { reason: CloseReason::Normal, message: "closed by the client".into() };
    let _ = timeout(Duration::from_secs(1), async {
        let _ = conn.send(&close).await;
        conn.close().await;
    })
    .await;
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
        assert!(std::mem::size_of_val(&task) <= 2048, "{} bytes", std::mem::size_of_val(&task));
    }
}
