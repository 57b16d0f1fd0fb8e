//! The task that drives one session's connection: connect, handshake, keep-alive, close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use super::{Command, Shared, State};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{ClientHandshake, CloseReason, ConnectRequest, Established, Frame};
use crate::transport::WsConnection;

/// Silence from the server longer than this many keep-alive intervals means the link is dead.
const KEEP_ALIVE_MISSES: u32 = 2;
/// Extra slack on the keep-alive deadline for scheduling and network jitter.
const KEEP_ALIVE_SLACK: Duration = Duration::from_millis(500);

pub(crate) async fn drive(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    if !shared.transition(State::Connecting) {
        return;
    }
    let established = tokio::select! {
        result = establish(&shared) => result,
        // Closed by the application: `close` has already reported it.
        _ = commands.recv() => return,
    };
    let (mut conn, established) = match established {
        Ok(ok) => ok,
        Err(e) => {
            tracing::info!(url = %shared.config.url.to_url_string(), error = %e, "session creation failed");
            shared.fail(e);
            return;
        }
    };
    let _ = shared.id.set(established.session_id);
    tracing::info!(session = %established.session_id, server = conn.peer(), "session connected");
    if !shared.transition(State::ConnectedActive) {
        close_connection(conn).await;
        return;
    }
    shared.created();
    let outcome = run(&mut conn, &established, &mut commands).await;
    match outcome {
        Ended::ByClient(flushed) => {
            close_connection(conn).await;
            drop(flushed);
        }
        Ended::ByServer(e) => {
            tracing::info!(session = %established.session_id, reason = %e, "session closed by the server");
            shared.finish(State::ClosedByServer, Some(e.clone()), e);
        }
        Ended::Failed(e) => {
            tracing::info!(session = %established.session_id, error = %e, "session failed");
            conn.close().await;
            shared.fail(e);
        }
    }
}

/// Connection attempts as the initial retry strategy allows: the first at once, then one after
/// each delay, for transient failures only.
async fn establish(shared: &Shared) -> Result<(WsConnection, Established)> {
    let strategy = shared.config.options.initial_retry;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match connect(shared).await {
            Ok(ok) => return Ok(ok),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        let delay = strategy.delay_before(attempts, &mut rand::thread_rng());
        let Some(delay) = delay else {
            return Err(if attempts > 1 {
                Error::new(error.code(), format!("{error} (gave up after {attempts} attempts)"))
            } else {
                error
            });
        };
        tracing::debug!(attempt = attempts, error = %error, ?delay, "connection attempt failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// One connection attempt, bounded by the connection timeout.
async fn connect(shared: &Shared) -> Result<(WsConnection, Established)> {
    let config = &shared.config;
    let options = &config.options;
    let authority = config.url.authority();
    let attempt = async {
        let mut conn = WsConnection::open(&config.url, options).await?;
        let handshake = ClientHandshake::new(
            ConnectRequest {
                principal: options.principal.clone(),
                credentials: options.credentials.clone(),
                properties: options.properties.clone(),
                max_frame_size: options.frame_limit(),
                ..Default::default()
            },
            authority.clone(),
        );
        conn.send(&handshake.request_frame()).await?;
        let reply = conn.recv().await?.ok_or_else(|| {
            Error::new(
                ErrorCode::ConnectionRejected,
                format!("server {authority} closed the connection without answering the connect request"),
            )
        })?;
        let established = handshake.on_frame(reply)?;
        Ok((conn, established))
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

enum Ended {
    ByClient(Option<std::sync::mpsc::SyncSender<()>>),
    ByServer(Error),
    Failed(Error),
}

/// Serves an established connection until it ends.
async fn run(
    conn: &mut WsConnection,
    established: &Established,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let silence_limit = established.ping_interval * KEEP_ALIVE_MISSES + KEEP_ALIVE_SLACK;
    let mut deadline = Instant::now() + silence_limit;
    loop {
        tokio::select! {
            received = conn.recv() => {
                deadline = Instant::now() + silence_limit;
                let frame = match received {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Ended::Failed(Error::new(
                        ErrorCode::CommunicationError,
                        format!("connection to {} lost: the server closed it without closing the session", conn.peer()),
                    )),
                    Err(e) => return Ended::Failed(e),
                };
                match frame {
                    Frame::Ping(n) => {
                        if let Err(e) = conn.send(&Frame::Pong(n)).await {
                            return Ended::Failed(e);
                        }
                    }
                    Frame::Pong(_) => {}
                    Frame::Close { reason, message } => {
                        return Ended::ByServer(Error::new(
                            ErrorCode::SessionClosed,
                            format!("server {} closed the session ({}): {message}", conn.peer(), reason),
                        ));
                    }
                    other => {
                        let _ = conn
                            .send(&Frame::Close { reason: CloseReason::ProtocolError, message: "unexpected frame".into() })
                            .await;
                        return Ended::Failed(Error::new(
                            ErrorCode::ConnectionProtocolError,
                            format!("server {} sent an unexpected {:?} frame", conn.peer(), other),
                        ));
                    }
                }
            }
            _ = sleep_until(deadline) => {
                return Ended::Failed(Error::new(
                    ErrorCode::CommunicationError,
                    format!(
                        "connection to {} lost: nothing received for {} ms (keep-alive interval {} ms)",
                        conn.peer(),
                        silence_limit.as_millis(),
                        established.ping_interval.as_millis()
                    ),
                ));
            }
            command = commands.recv() => {
                let Some(Command::Close(flushed)) = command else { return Ended::ByClient(None) };
                return Ended::ByClient(flushed);
            }
        }
    }
}

async fn close_connection(mut conn: WsConnection) {
    let close = Frame::Close { reason: CloseReason::Normal, message: "closed by the client".into() };
    let _ = timeout(Duration::from_secs(1), async {
        let _ = conn.send(&close).await;
        conn.close().await;
    })
    .await;
}
