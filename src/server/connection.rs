//! One connection of the bundled server: taking a session (new or resumed), then serving it:
//! numbered messages, acknowledgements, publications, keep-alive, takeover by a reconnection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::sessions::ServerSession;
use super::{authenticate, send, SessionInfo, Shared, Shutdown};
use crate::protocol::reliable::Receipt;
use crate::protocol::{
    self, validate_path, CloseReason, ConnectRequest, DecodeError, Frame, Message, ResponseCode, SessionId,
};
use crate::transport::Stream;

/// Longest wait before acknowledging the client's messages.
const ACK_DELAY: Duration = Duration::from_millis(20);

/// A connection that owns a session.
pub(super) struct Attached {
    session: Arc<ServerSession>,
    generation: u64,
    /// The last message already sent to this connection.
    sent_upto: u64,
}

/// Answers the connect request: a new session, a resumed one, or a refusal (`None`).
pub(super) async fn attach(
    shared: &Arc<Shared>,
    ws: &mut WebSocketStream<Stream>,
    request: &ConnectRequest,
    peer: SocketAddr,
) -> Option<Attached> {
    let config = &shared.config;
    let decision = authenticate(config, request);
    let refuse = |code: ResponseCode, reason: &str| super::Decision::rejected(code, reason).refusal(config);
    if !decision.accepted() {
        tracing::info!(%peer, principal = %request.principal, reason = decision.reason(), "session refused");
        let _ = send(ws, &Frame::ConnectResponse(decision.refusal(config))).await;
        return None;
    }
    if request.reconnect_token.is_empty() {
        let id = SessionId {
            server_instance: config.server_instance,
            value: shared.next_session.fetch_add(1, Ordering::SeqCst),
        };
        let token = rand::random::<[u8; 16]>().to_vec();
        let info = SessionInfo { id, principal: request.principal.clone(), properties: request.properties.clone() };
        let Some(session) = shared.registry.create(info, token.clone(), config.recovery_buffer, config.max_sessions)
        else {
            let _ = send(ws, &Frame::ConnectResponse(refuse(ResponseCode::Rejected, "server is at its session limit")))
                .await;
            return None;
        };
        let response = decision.response(config, ResponseCode::Ok, id, token, 0);
        send(ws, &Frame::ConnectResponse(response)).await.ok()?;
        let properties: Vec<String> = request.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(session = %id, %peer, principal = %request.principal, properties = ?properties, "session opened");
        return Some(Attached { session, generation: 1, sent_upto: 0 });
    }
    let Some(session) = shared.registry.by_token(&request.reconnect_token) else {
        tracing::info!(%peer, "reconnection for an unknown or expired session");
        let refusal = refuse(ResponseCode::UnknownSession, "the session is unknown or expired");
        let _ = send(ws, &Frame::ConnectResponse(refusal)).await;
        return None;
    };
    let id = session.info.id;
    let resumed = {
        let mut state = session.state.lock();
        state.out.resend_after(request.last_received).map(|resend| {
            state.out.on_ack(request.last_received);
            state.generation += 1;
            state.detached_since = None;
            (resend, state.generation, state.incoming.last(), state.out.last_sent())
        })
    };
    let (resend, generation, last_received, sent_upto) = match resumed {
        Ok(resumed) => resumed,
        Err(loss) => {
            tracing::info!(session = %id, %peer, missing_from = loss.missing_from, "session cannot be recovered: messages lost");
            shared.registry.remove(id.value);
            let refusal = refuse(
                ResponseCode::ReconnectionFailedMessageLoss,
                &format!("message {} is no longer in the server's recovery buffer", loss.missing_from),
            );
            let _ = send(ws, &Frame::ConnectResponse(refusal)).await;
            return None;
        }
    };
    // The previous connection, if it is still there, steps aside.
    session.owner.send_replace(generation);
    let response = decision.response(config, ResponseCode::Reconnected, id, session.token.clone(), last_received);
    send(ws, &Frame::ConnectResponse(response)).await.ok()?;
    send_all(ws, &resend).await.ok()?;
    tracing::info!(session = %id, %peer, resent = resend.len(), "session resumed");
    Some(Attached { session, generation, sent_upto })
}

/// Sends frames batched into few WebSocket messages.
async fn send_all(ws: &mut WebSocketStream<Stream>, frames: &[Frame]) -> Result<(), ()> {
    let mut batch = Vec::new();
    for frame in frames {
        batch.extend_from_slice(&protocol::encode(frame));
        if batch.len() >= 64 * 1024 {
            ws.send(WsMessage::binary(std::mem::take(&mut batch))).await.map_err(|_| ())?;
        }
    }
    if !batch.is_empty() {
        ws.send(WsMessage::binary(batch)).await.map_err(|_| ())?;
    }
    Ok(())
}

/// How a connection ended, for the session and the log.
enum End {
    /// The session is over: forget it.
    Closed(String),
    /// The connection is gone but the session waits for its client to reconnect.
    Detached(String),
    /// A reconnection took the session over.
    TakenOver,
}

/// Serves the attached session until the connection ends.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    mut ws: WebSocketStream<Stream>,
    attached: Attached,
    shutdown: watch::Receiver<Shutdown>,
    peer: SocketAddr,
) {
    shared.attached.fetch_add(1, Ordering::SeqCst);
    let session = attached.session.clone();
    let id = session.info.id;
    let end = run(shared, &mut ws, attached, shutdown).await;
    shared.attached.fetch_sub(1, Ordering::SeqCst);
    match end {
        End::Closed(reason) => {
            shared.registry.remove(id.value);
            let _ = ws.close(None).await;
            tracing::info!(session = %id, %peer, %reason, "session closed");
        }
        End::Detached(reason) => {
            tracing::info!(session = %id, %peer, %reason, "connection lost; session kept for its client to reconnect");
        }
        End::TakenOver => tracing::debug!(session = %id, %peer, "connection replaced by a reconnection"),
    }
}

async fn run(
    shared: &Arc<Shared>,
    ws: &mut WebSocketStream<Stream>,
    attached: Attached,
    mut shutdown: watch::Receiver<Shutdown>,
) -> End {
    let config = &shared.config;
    let Attached { session, generation, mut sent_upto } = attached;
    let mut owner = session.owner.subscribe();
    let silence_limit = config.ping_interval * 2 + Duration::from_millis(500);
    let mut deadline = Instant::now() + silence_limit;
    let mut pings = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut nonce = 0u64;
    let mut ack_at: Option<Instant> = None;
    let detach = |why: String| {
        let mut state = session.state.lock();
        if state.generation == generation {
            state.detached_since = Some(Instant::now());
        }
        End::Detached(why)
    };
    loop {
        // Deliver what publications queued for this session.
        let pending = {
            let state = session.state.lock();
            let pending = state.out.resend_after(sent_upto);
            sent_upto = state.out.last_sent();
            pending
        };
        match pending {
            Ok(frames) if frames.is_empty() => {}
            Ok(frames) => {
                if send_all(ws, &frames).await.is_err() {
                    return detach("connection failed while delivering".into());
                }
            }
            Err(_) => {
                let reason = "the session's recovery buffer overflowed: a slow or absent client";
                let _ = send(ws, &close(CloseReason::MessageLoss, reason)).await;
                return End::Closed(reason.into());
            }
        }
        tokio::select! {
            message = ws.next() => {
                deadline = Instant::now() + silence_limit;
                let bytes = match message {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None => return detach("connection closed without a CLOSE frame".into()),
                    Some(Ok(_)) => return refuse(ws, CloseReason::ProtocolError, "binary messages only").await,
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        return refuse(ws, CloseReason::FrameTooLarge, &e.to_string()).await;
                    }
                    Some(Err(e)) => return detach(format!("connection failed: {e}")),
                };
                let frames = match protocol::decode_all(&bytes, config.max_frame_size) {
                    Ok(frames) => frames,
                    Err(e) => {
                        let reason = if matches!(e, DecodeError::TooLarge { .. }) { CloseReason::FrameTooLarge } else { CloseReason::ProtocolError };
                        return refuse(ws, reason, &e.to_string()).await;
                    }
                };
                for frame in frames {
                    if let Some(end) = on_frame(shared, ws, &session, frame).await {
                        return end;
                    }
                }
                let ack = {
                    let mut state = session.state.lock();
                    if state.incoming.ack_now() { Some(state.incoming.take_ack()) } else {
                        if state.incoming.ack_pending() && ack_at.is_none() {
                            ack_at = Some(Instant::now() + ACK_DELAY);
                        }
                        None
                    }
                };
                if let Some(ack) = ack {
                    ack_at = None;
                    if send(ws, &ack).await.is_err() {
                        return detach("connection failed while acknowledging".into());
                    }
                }
            }
            _ = session.wake.notified() => {}
            _ = sleep_until(ack_at.unwrap_or_else(Instant::now)), if ack_at.is_some() => {
                ack_at = None;
                let ack = session.state.lock().incoming.take_ack();
                if send(ws, &ack).await.is_err() {
                    return detach("connection failed while acknowledging".into());
                }
            }
            _ = pings.tick() => {
                nonce += 1;
                if send(ws, &Frame::Ping(nonce)).await.is_err() {
                    return detach("connection failed while sending a ping".into());
                }
            }
            _ = sleep_until(deadline) => {
                return detach(format!("client silent for {} ms", silence_limit.as_millis()));
            }
            changed = owner.changed() => {
                if changed.is_err() || *owner.borrow_and_update() != generation {
                    return End::TakenOver;
                }
            }
            changed = shutdown.changed() => {
                let Some((reason, message)) = shutdown.borrow_and_update().clone().filter(|_| changed.is_ok()) else {
                    continue;
                };
                let _ = send(ws, &close(reason, &message)).await;
                return End::Closed(format!("closed by the server: {message}"));
            }
        }
    }
}

fn close(reason: CloseReason, message: &str) -> Frame {
    Frame::Close { reason, message: message.to_string() }
}

/// Ends the session for a protocol violation, telling the client why.
async fn refuse(ws: &mut WebSocketStream<Stream>, reason: CloseReason, message: &str) -> End {
    let _ = send(ws, &close(reason, message)).await;
    End::Closed(format!("client broke the protocol: {message}"))
}

/// Handles one frame from the client; `Some` when the connection ends.
async fn on_frame(
    shared: &Arc<Shared>,
    ws: &mut WebSocketStream<Stream>,
    session: &ServerSession,
    frame: Frame,
) -> Option<End> {
    let id = session.info.id.value;
    match frame {
        Frame::Message { seq, body } => {
            if matches!(body, Message::Deliver { .. }) {
                return Some(refuse(ws, CloseReason::ProtocolError, "clients do not send DELIVER").await);
            }
            if let Err(why) = validate_path(body.path()) {
                return Some(refuse(ws, CloseReason::ProtocolError, &why).await);
            }
            let receipt = session.state.lock().incoming.receive(seq);
            match receipt {
                Ok(Receipt::Duplicate) => None,
                Err(why) => Some(refuse(ws, CloseReason::ProtocolError, &why).await),
                Ok(Receipt::New) => {
                    match body {
                        Message::Publish { path, data } => {
                            shared.registry.publish(&path, &data);
                        }
                        Message::Subscribe { path } => shared.registry.subscribe(id, &path),
                        Message::Unsubscribe { path } => shared.registry.unsubscribe(id, &path),
                        Message::Deliver { .. } => unreachable!("refused above"),
                    }
                    None
                }
            }
        }
        Frame::Ack(seq) => {
            session.state.lock().out.on_ack(seq);
            None
        }
        Frame::Ping(n) => {
            if send(ws, &Frame::Pong(n)).await.is_err() {
                return Some(End::Detached("connection failed while answering a ping".into()));
            }
            None
        }
        Frame::Pong(_) => None,
        Frame::Close { reason, message } => Some(End::Closed(format!("closed by the client ({reason}: {message})"))),
        other => Some(
            refuse(ws, CloseReason::ProtocolError, &format!("unexpected {} frame", protocol::frame_name(&other))).await,
        ),
    }
}
