//! One connection of the bundled server: taking a session (new or resumed), then serving it:
//! numbered messages, acknowledgements, publications, keep-alive, takeover by a reconnection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant};

use super::auth::{self, Check};
use super::frames::{Event, FrameError, ServerWs, BINARY};
use super::log::{Properties, Untrusted};
use super::metrics::{FailedRecovery, Refusal};
use super::poll::PollChannel;
use super::sessions::{Identity, Recovery, Transport};
use super::{Decision, SessionInfo, Shared, Shutdown};
use session::protocol::{self, CloseReason, ConnectRequest, DecodeError, Frame, ResponseCode, SessionId};
use session::runtime::Alarm;

pub(crate) use super::conversation::{Attached, Ending};

/// Answers the connect request that came over `transport`: the frames to send first (the
/// CONNECT_RESPONSE, then for a resumed session what the client missed), and the session taken,
/// unless refused. A failed authentication is answered after the delay [`super::refusals`] sets
/// for the client's address. A configuration file user's password is verified on a blocking
/// thread.
pub(super) async fn attach(
    shared: &Arc<Shared>,
    request: &ConnectRequest,
    peer: SocketAddr,
    transport: Transport,
) -> (Vec<Frame>, Option<Attached>) {
    let decision = match auth::check(&shared.config, &shared.policy(), request) {
        Check::Done(decision) => decision,
        Check::Password(check) => shared.verify_password(check).await,
    };
    let (frames, attached, failed_authentication) = attach_decided(shared, request, peer, transport, decision);
    if failed_authentication {
        tokio::time::sleep(shared.refusals.failed_authentication(peer.ip(), Instant::now())).await;
    }
    (frames, attached)
}

/// [`attach`] without the delay, on the calling thread: also says whether the answer is a failed
/// authentication, which the caller delays.
pub(super) fn attach_now(
    shared: &Arc<Shared>,
    request: &ConnectRequest,
    peer: SocketAddr,
    transport: Transport,
) -> (Vec<Frame>, Option<Attached>, bool) {
    let decision = auth::authenticate(&shared.config, &shared.policy(), request);
    attach_decided(shared, request, peer, transport, decision)
}

/// [`attach_now`] once the credentials are decided on.
fn attach_decided(
    shared: &Arc<Shared>,
    request: &ConnectRequest,
    peer: SocketAddr,
    transport: Transport,
    decision: Decision,
) -> (Vec<Frame>, Option<Attached>, bool) {
    let config = &shared.config;
    let refuse = |code: ResponseCode, reason: &str| super::Decision::rejected(code, reason).refusal(config);
    if !decision.accepted() {
        if let Some(unlogged) = shared.log_refusal(peer) {
            let principal = Untrusted(&request.principal);
            tracing::info!(%peer, unlogged, %principal, reason = decision.reason(), "session refused");
        }
        let failed_authentication = decision.code() == ResponseCode::AuthenticationFailed;
        if failed_authentication {
            shared.metrics.authentication_failed();
        } else {
            shared.metrics.refused(Refusal::BadHandshake);
        }
        return (vec![Frame::ConnectResponse(decision.refusal(config))], None, failed_authentication);
    }
    let identity = Identity::of(&request.principal, &request.credentials);
    if request.reconnect_token.is_empty() {
        let id = SessionId {
            server_instance: config.server_instance,
            value: shared.next_session.fetch_add(1, Ordering::SeqCst),
        };
        let info = SessionInfo { id, principal: request.principal.clone(), properties: request.properties.clone() };
        let Some((session, token)) = shared.registry.create(info, identity, transport, config.max_sessions) else {
            shared.metrics.refused(Refusal::MaxSessions);
            return (
                vec![Frame::ConnectResponse(refuse(ResponseCode::Rejected, "server is at its session limit"))],
                None,
                false,
            );
        };
        let response = decision.response(config, ResponseCode::Ok, id, token, 0);
        let (principal, properties) = (Untrusted(&request.principal), Properties(&request.properties));
        tracing::info!(session = %id, %peer, %principal, %properties, "session opened");
        return (vec![Frame::ConnectResponse(response)], Some(Attached::new(session, 1, 0, false, shared)), false);
    }
    let (session, token) = match shared.registry.recover(&request.reconnect_token, &identity) {
        Recovery::Found(session, token) => (session, token),
        unknown => {
            shared.metrics.recovery_failed(match unknown {
                Recovery::NotOwner => FailedRecovery::OtherIdentity,
                _ => FailedRecovery::UnknownSession,
            });
            match (shared.log_refusal(peer), unknown) {
                (Some(unlogged), Recovery::NotOwner) => {
                    let principal = Untrusted(&request.principal);
                    tracing::warn!(%peer, unlogged, %principal, "reconnection refused: the session belongs to another identity");
                }
                (Some(unlogged), _) => {
                    tracing::info!(%peer, unlogged, "reconnection for an unknown or expired session")
                }
                (None, _) => {}
            }
            let refusal = refuse(ResponseCode::UnknownSession, "the session is unknown or expired");
            return (vec![Frame::ConnectResponse(refusal)], None, false);
        }
    };
    let id = session.info.id;
    let resumed = {
        let mut state = session.state.lock();
        state.out.resend_after(request.last_received).map(|resend| {
            // The client claims no more than it was sent: a larger number acknowledges nothing.
            let _ = state.out.on_ack(request.last_received);
            state.generation += 1;
            state.detached_since = None;
            state.transport = transport;
            (resend, state.generation, state.incoming.last(), state.out.last_sent())
        })
    };
    let (resend, generation, last_received, sent_upto) = match resumed {
        Ok(resumed) => resumed,
        Err(loss) => {
            shared.metrics.recovery_failed(FailedRecovery::MessageLoss);
            tracing::info!(session = %id, %peer, missing_from = loss.missing_from, "session cannot be recovered: messages lost");
            shared.registry.remove(id.value);
            let refusal = refuse(
                ResponseCode::ReconnectionFailedMessageLoss,
                &format!("message {} is no longer in the server's recovery buffer", loss.missing_from),
            );
            return (vec![Frame::ConnectResponse(refusal)], None, false);
        }
    };
    // The previous connection, if it is still there, steps aside.
    session.owner.send_replace(generation);
    let response = decision.response(config, ResponseCode::Reconnected, id, token, last_received);
    tracing::info!(session = %id, %peer, resent = resend.len(), "session resumed");
    shared.metrics.recovered();
    shared.metrics.deliveries_sent(resend.len());
    let mut frames = vec![Frame::ConnectResponse(response)];
    frames.extend(resend);
    (frames, Some(Attached::new(session, generation, sent_upto, true, shared)), false)
}

/// What carries a session's frames: a WebSocket, or a long-polling channel.
pub(super) enum Link {
    Ws(Box<ServerWs>),
    Poll(Arc<PollChannel>, mpsc::UnboundedReceiver<Vec<u8>>),
}

/// What arrived on a link.
enum Received {
    Bytes(bytes::Bytes),
    /// Nothing more will come (closed, failed): the reason.
    Gone(String),
    /// Over the frame size limit.
    TooLarge(String),
    /// A text WebSocket message.
    Text,
}

impl Link {
    async fn recv(&mut self) -> Received {
        match self {
            Link::Ws(ws) => loop {
                return match ws.recv().await {
                    Ok(Ok(Event::Binary(bytes))) => Received::Bytes(bytes),
                    Ok(Ok(Event::Ping(payload))) => match ws.pong(&payload).await {
                        Ok(()) => continue,
                        Err(e) => Received::Gone(format!("connection failed: {e}")),
                    },
                    Ok(Ok(Event::Pong)) => continue,
                    Ok(Ok(Event::Close)) => {
                        let _ = ws.close().await;
                        Received::Gone("connection closed without a CLOSE frame".into())
                    }
                    Ok(Ok(Event::Text)) => Received::Text,
                    Ok(Err(FrameError::TooLarge(e))) => Received::TooLarge(e),
                    Ok(Err(FrameError::Protocol(e))) => Received::Gone(format!("connection failed: {e}")),
                    Err(why) => Received::Gone(why),
                };
            },
            Link::Poll(_, inbound) => match inbound.recv().await {
                Some(bytes) => Received::Bytes(bytes.into()),
                None => Received::Gone("polling stopped".into()),
            },
        }
    }

    /// Sends frames, batched.
    pub(super) async fn send_frames(&mut self, frames: &[Frame]) -> Result<(), ()> {
        if let Link::Ws(ws) = self {
            return send_batched(ws, frames, protocol::BATCH_BYTES).await;
        }
        self.send_frames_polling(frames).await
    }

    /// Sends the first frames of a connection: the CONNECT_RESPONSE and, for a recovered session,
    /// what the client missed. Over WebSocket the messages start with one frame each and double
    /// in size up to a full batch, so that a link that breaks after a few kilobytes each time still
    /// carries some of the backlog on every connection (the client acknowledges it, by ACK or on
    /// its next recovery), and recovery makes progress.
    pub(super) async fn send_first(&mut self, frames: &[Frame]) -> Result<(), ()> {
        if let Link::Ws(ws) = self {
            return send_batched(ws, frames, 1).await;
        }
        self.send_frames_polling(frames).await
    }

    async fn send_frames_polling(&mut self, frames: &[Frame]) -> Result<(), ()> {
        if let [frame] = frames {
            return self.send(frame).await;
        }
        let mut batch = protocol::batch_buffer();
        for frame in frames {
            protocol::encode_into(frame, &mut batch);
            if batch.len() >= protocol::BATCH_BYTES {
                self.send_bytes(std::mem::replace(&mut batch, protocol::batch_buffer())).await?;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.send_bytes(batch).await
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), ()> {
        self.send_bytes(protocol::encode(frame)).await
    }

    async fn send_bytes(&mut self, bytes: Vec<u8>) -> Result<(), ()> {
        match self {
            Link::Ws(ws) => ws.send(BINARY, &bytes).await.map_err(|_| ()),
            Link::Poll(channel, _) => channel.push(bytes).await,
        }
    }

    /// Closes the connection. `linger`: the session is over and its CLOSE frame was sent, so the
    /// connection waits for the client to read it and close too (see [`ServerWs::linger`]).
    pub(super) async fn close(&mut self, linger: bool) {
        match self {
            Link::Ws(ws) => {
                let _ = ws.close().await;
                if linger {
                    ws.linger(LINGER).await;
                }
            }
            Link::Poll(channel, _) => channel.close(),
        }
    }
}

/// How long a connection whose session ended waits for its client to close it.
const LINGER: Duration = Duration::from_secs(3);

/// Message data at least this large is written from where it lies rather than copied into the
/// batch.
const WRITTEN_IN_PLACE: usize = 1024;

/// Sends frames over a WebSocket, batched as [`Link::send_frames`] does: the frames' heads are
/// encoded into one buffer, and the data of large messages goes out from the messages themselves
/// in the same vectored write. A message is closed once it holds `first_batch` bytes, a limit
/// that doubles with each message up to [`protocol::BATCH_BYTES`].
async fn send_batched(ws: &mut ServerWs, frames: &[Frame], first_batch: usize) -> Result<(), ()> {
    let mut batch_limit = first_batch.min(protocol::BATCH_BYTES);
    // A lone frame (an ACK, one delivery) needs little room; a burst fills a batch.
    let mut heads = if frames.len() > 1 { protocol::batch_buffer() } else { Vec::with_capacity(64) };
    // Where each left-out data belongs in `heads`, and the data.
    let mut data: Vec<(usize, bytes::Bytes)> = Vec::new();
    let mut data_len = 0;
    for (i, frame) in frames.iter().enumerate() {
        if let Some(left_out) = protocol::encode_leaving_out(frame, &mut heads, WRITTEN_IN_PLACE) {
            data_len += left_out.len();
            data.push((heads.len(), left_out));
        }
        if heads.len() + data_len >= batch_limit || i + 1 == frames.len() {
            batch_limit = (batch_limit * 2).min(protocol::BATCH_BYTES);
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * data.len() + 1);
            let mut from = 0;
            for (at, bytes) in &data {
                parts.push(&heads[from..*at]);
                parts.push(bytes);
                from = *at;
            }
            parts.push(&heads[from..]);
            ws.send_parts(BINARY, &parts).await.map_err(|_| ())?;
            heads.clear();
            data.clear();
            data_len = 0;
        }
    }
    Ok(())
}

/// Marks the session as waiting for its client, when its first answer could not be sent.
pub(super) fn detach_now(attached: &Attached) {
    attached.detach();
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
    mut ws: Link,
    attached: Attached,
    shutdown: watch::Receiver<Shutdown>,
    peer: SocketAddr,
) {
    let session = attached.session().clone();
    let id = session.info.id;
    let end = run(shared, &mut ws, attached, shutdown).await;
    let over = matches!(end, End::Closed(_));
    match end {
        End::Closed(reason) => {
            shared.registry.remove(id.value);
            tracing::info!(session = %id, %peer, reason = %Untrusted(&reason), "session closed");
        }
        End::Detached(reason) => {
            let reason = Untrusted(&reason);
            tracing::info!(session = %id, %peer, %reason, "connection lost; session kept for its client to reconnect");
        }
        End::TakenOver => tracing::debug!(session = %id, %peer, "connection replaced by a reconnection"),
    }
    ws.close(over).await;
}

async fn run(
    shared: &Arc<Shared>,
    ws: &mut Link,
    mut conversation: Attached,
    mut shutdown: watch::Receiver<Shutdown>,
) -> End {
    let config = &shared.config;
    let session = conversation.session().clone();
    let mut owner = session.owner.subscribe();
    let silence_limit = config.ping_interval * 2 + Duration::from_millis(500);
    let mut deadline = Instant::now() + silence_limit;
    let mut pings = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut nonce = 0u64;
    let mut ack_timer = Alarm::new(deadline);
    let mut silence = Alarm::new(deadline);
    let detach = |conversation: &Attached, why: String| {
        conversation.detach();
        End::Detached(why)
    };
    loop {
        // Deliver what publications queued for this session, with a due ACK.
        match conversation.poll_transmit() {
            Ok(frames) if frames.is_empty() => {}
            Ok(frames) => {
                if ws.send_frames(&frames).await.is_err() {
                    return detach(&conversation, "connection failed while delivering".into());
                }
            }
            Err(ending) => return end(ws, ending).await,
        }
        let ack_at = conversation.poll_timeout();
        if let Some(at) = ack_at {
            ack_timer.set(at.into());
        }
        silence.set(deadline);
        tokio::select! {
            received = ws.recv() => {
                deadline = Instant::now() + silence_limit;
                let bytes = match received {
                    Received::Bytes(bytes) => bytes,
                    Received::Gone(why) => return detach(&conversation, why),
                    Received::Text => return refuse(ws, CloseReason::ProtocolError, "binary messages only").await,
                    Received::TooLarge(why) => return refuse(ws, CloseReason::FrameTooLarge, &why).await,
                };
                let frames = match protocol::decode_owned(bytes, config.max_frame_size) {
                    Ok(frames) => frames,
                    Err(e) => {
                        let reason = if matches!(e, DecodeError::TooLarge { .. }) { CloseReason::FrameTooLarge } else { CloseReason::ProtocolError };
                        return refuse(ws, reason, &e.to_string()).await;
                    }
                };
                match conversation.handle_frames(frames, std::time::Instant::now()) {
                    Ok(replies) if replies.is_empty() => {}
                    Ok(replies) => {
                        if ws.send_frames(&replies).await.is_err() {
                            return End::Detached("connection failed while answering a ping".into());
                        }
                    }
                    Err(ending) => return end(ws, ending).await,
                }
            }
            _ = session.wake.notified() => {}
            _ = &mut ack_timer, if ack_at.is_some() => {
                if let Some(ack) = conversation.handle_timeout(std::time::Instant::now()) {
                    if ws.send(&ack).await.is_err() {
                        return detach(&conversation, "connection failed while acknowledging".into());
                    }
                }
            }
            _ = pings.tick() => {
                nonce += 1;
                if ws.send(&Frame::Ping(nonce)).await.is_err() {
                    return detach(&conversation, "connection failed while sending a ping".into());
                }
            }
            _ = &mut silence => {
                return detach(&conversation, format!("client silent for {} ms", silence_limit.as_millis()));
            }
            changed = owner.changed() => {
                if changed.is_err() || !conversation.owns() {
                    return End::TakenOver;
                }
            }
            changed = shutdown.changed() => {
                let Some((reason, message)) = shutdown.borrow_and_update().clone().filter(|_| changed.is_ok()) else {
                    continue;
                };
                let _ = ws.send(&close(reason, &message)).await;
                return End::Closed(format!("closed by the server: {message}"));
            }
        }
    }
}

/// Ends the connection as the conversation decided, sending its CLOSE if it has one.
async fn end(ws: &mut Link, ending: Ending) -> End {
    match ending {
        Ending::Closed { reason, close } => {
            if let Some(close) = close {
                let _ = ws.send(&close).await;
            }
            End::Closed(reason)
        }
        Ending::Detached(why) => End::Detached(why),
    }
}

fn close(reason: CloseReason, message: &str) -> Frame {
    Frame::Close { reason, message: message.to_string() }
}

/// Ends the session for a protocol violation, telling the client why.
async fn refuse(ws: &mut Link, reason: CloseReason, message: &str) -> End {
    let _ = ws.send(&close(reason, message)).await;
    End::Closed(format!("client broke the protocol: {message}"))
}
