//! One connection of the bundled server: taking a session (new or resumed), then serving it:
//! numbered messages, acknowledgements, publications, keep-alive, takeover by a reconnection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant};

use super::frames::{Event, FrameError, ServerWs, BINARY};
use super::log::{Properties, Untrusted};
use super::poll::PollChannel;
use super::sessions::{Identity, Recovery, ServerSession};
use super::{authenticate, SessionInfo, Shared, Shutdown};
use session::protocol::reliable::Receipt;
use session::protocol::{
    self, validate_path, CloseReason, ConnectRequest, DecodeError, Frame, Message, ResponseCode, SessionId,
};
use session::runtime::Alarm;

/// Longest wait before acknowledging the client's messages.
const ACK_DELAY: Duration = Duration::from_millis(20);

/// A connection that owns a session.
pub(super) struct Attached {
    session: Arc<ServerSession>,
    generation: u64,
    /// The last message already sent to this connection.
    sent_upto: u64,
    /// Whether the session was recovered: the token it was recovered with lapses once the
    /// client speaks on this connection.
    recovered: bool,
    counted: Counted,
}

/// Counts a connection in [`Shared::attached`] from the moment it owns its session (before the
/// client hears it is connected) until it lets go.
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: &Arc<Shared>) -> Counted {
        shared.attached.fetch_add(1, Ordering::SeqCst);
        Counted(shared.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.attached.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers the connect request: the frames to send first (the CONNECT_RESPONSE, then for a
/// resumed session what the client missed), and the session taken, unless refused. A failed
/// authentication is answered after the delay [`super::refusals`] sets for the client's address.
pub(super) async fn attach(
    shared: &Arc<Shared>,
    request: &ConnectRequest,
    peer: SocketAddr,
) -> (Vec<Frame>, Option<Attached>) {
    let config = &shared.config;
    let decision = authenticate(config, request);
    let refuse = |code: ResponseCode, reason: &str| super::Decision::rejected(code, reason).refusal(config);
    if !decision.accepted() {
        if let Some(unlogged) = shared.log_refusal(peer) {
            let principal = Untrusted(&request.principal);
            tracing::info!(%peer, unlogged, %principal, reason = decision.reason(), "session refused");
        }
        if decision.code() == ResponseCode::AuthenticationFailed {
            tokio::time::sleep(shared.refusals.failed_authentication(peer.ip(), Instant::now())).await;
        }
        return (vec![Frame::ConnectResponse(decision.refusal(config))], None);
    }
    let identity = Identity::of(&request.principal, &request.credentials);
    if request.reconnect_token.is_empty() {
        let id = SessionId {
            server_instance: config.server_instance,
            value: shared.next_session.fetch_add(1, Ordering::SeqCst),
        };
        let info = SessionInfo { id, principal: request.principal.clone(), properties: request.properties.clone() };
        let Some((session, token)) = shared.registry.create(info, identity, config.max_sessions) else {
            return (
                vec![Frame::ConnectResponse(refuse(ResponseCode::Rejected, "server is at its session limit"))],
                None,
            );
        };
        let response = decision.response(config, ResponseCode::Ok, id, token, 0);
        let (principal, properties) = (Untrusted(&request.principal), Properties(&request.properties));
        tracing::info!(session = %id, %peer, %principal, %properties, "session opened");
        return (
            vec![Frame::ConnectResponse(response)],
            Some(Attached { session, generation: 1, sent_upto: 0, recovered: false, counted: Counted::new(shared) }),
        );
    }
    let (session, token) = match shared.registry.recover(&request.reconnect_token, &identity) {
        Recovery::Found(session, token) => (session, token),
        unknown => {
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
            return (vec![Frame::ConnectResponse(refusal)], None);
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
            return (vec![Frame::ConnectResponse(refusal)], None);
        }
    };
    // The previous connection, if it is still there, steps aside.
    session.owner.send_replace(generation);
    let response = decision.response(config, ResponseCode::Reconnected, id, token, last_received);
    tracing::info!(session = %id, %peer, resent = resend.len(), "session resumed");
    let mut frames = vec![Frame::ConnectResponse(response)];
    frames.extend(resend);
    (frames, Some(Attached { session, generation, sent_upto, recovered: true, counted: Counted::new(shared) }))
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

    pub(super) async fn close(&mut self) {
        match self {
            Link::Ws(ws) => {
                let _ = ws.close().await;
            }
            Link::Poll(channel, _) => channel.close(),
        }
    }
}

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
    let mut state = attached.session.state.lock();
    if state.generation == attached.generation {
        state.detached_since = Some(Instant::now());
    }
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
    let session = attached.session.clone();
    let id = session.info.id;
    let end = run(shared, &mut ws, attached, shutdown).await;
    ws.close().await;
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
}

async fn run(shared: &Arc<Shared>, ws: &mut Link, attached: Attached, mut shutdown: watch::Receiver<Shutdown>) -> End {
    let config = &shared.config;
    // `_counted` lives until the connection lets go of the session, when `run` returns.
    let Attached { session, generation, mut sent_upto, mut recovered, counted: _counted } = attached;
    let mut owner = session.owner.subscribe();
    let silence_limit = config.ping_interval * 2 + Duration::from_millis(500);
    let mut deadline = Instant::now() + silence_limit;
    let mut pings = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut nonce = 0u64;
    let mut ack_at: Option<Instant> = None;
    // An ACK due now, sent with the deliveries it may have caused (one write, deliveries first).
    let mut ack_due: Option<Frame> = None;
    let mut ack_timer = Alarm::new(deadline);
    let mut silence = Alarm::new(deadline);
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
            Ok(frames) if frames.is_empty() && ack_due.is_none() => {}
            Ok(mut frames) => {
                frames.extend(ack_due.take());
                if ws.send_frames(&frames).await.is_err() {
                    return detach("connection failed while delivering".into());
                }
            }
            Err(_) => {
                let reason = "the session's recovery buffer overflowed: a slow or absent client";
                let _ = ws.send(&close(CloseReason::MessageLoss, reason)).await;
                return End::Closed(reason.into());
            }
        }
        if let Some(at) = ack_at {
            ack_timer.set(at);
        }
        silence.set(deadline);
        tokio::select! {
            received = ws.recv() => {
                deadline = Instant::now() + silence_limit;
                let bytes = match received {
                    Received::Bytes(bytes) if recovered => {
                        recovered = false;
                        shared.registry.confirm_token(session.info.id.value);
                        bytes
                    }
                    Received::Bytes(bytes) => bytes,
                    Received::Gone(why) => return detach(why),
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
                for frame in frames {
                    if let Some(end) = on_frame(shared, ws, &session, frame).await {
                        return end;
                    }
                }
                let mut state = session.state.lock();
                if state.incoming.ack_now() {
                    ack_due = Some(state.incoming.take_ack());
                    ack_at = None;
                } else if state.incoming.ack_pending() && ack_at.is_none() {
                    ack_at = Some(Instant::now() + ACK_DELAY);
                }
            }
            _ = session.wake.notified() => {}
            _ = &mut ack_timer, if ack_at.is_some() => {
                ack_at = None;
                let ack = session.state.lock().incoming.take_ack();
                if ws.send(&ack).await.is_err() {
                    return detach("connection failed while acknowledging".into());
                }
            }
            _ = pings.tick() => {
                nonce += 1;
                if ws.send(&Frame::Ping(nonce)).await.is_err() {
                    return detach("connection failed while sending a ping".into());
                }
            }
            _ = &mut silence => {
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
                let _ = ws.send(&close(reason, &message)).await;
                return End::Closed(format!("closed by the server: {message}"));
            }
        }
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

/// Handles one frame from the client; `Some` when the connection ends.
async fn on_frame(shared: &Arc<Shared>, ws: &mut Link, session: &ServerSession, frame: Frame) -> Option<End> {
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
            let acked = session.state.lock().out.on_ack(seq);
            match acked {
                Ok(()) => None,
                Err(why) => Some(refuse(ws, CloseReason::ProtocolError, &why).await),
            }
        }
        Frame::Ping(n) => {
            if ws.send(&Frame::Pong(n)).await.is_err() {
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
