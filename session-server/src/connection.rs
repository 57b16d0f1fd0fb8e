//! One connection of the bundled server: taking a session (new or resumed), then serving it:
//! numbered messages, acknowledgements, publications, keep-alive, takeover by a reconnection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant};

use super::auth::{self, Check};
use super::cluster::entry::Entry;
use super::cluster::{Cluster, Recovered, WriteError};
use super::frames::{Event, FrameError, ServerWs, BINARY};
use super::log::{Properties, Untrusted};
use super::metrics::{FailedRecovery, Refusal};
use super::poll::PollChannel;
use super::sessions::{Identity, Recovery, ServerSession, Transport};
use super::{Decision, SessionInfo, Shared, Shutdown};
use session::protocol::reliable::Incoming;
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
    if let (Some(cluster), true) = (&shared.cluster, decision.accepted()) {
        return attach_clustered(shared, cluster, request, peer, transport, decision).await;
    }
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
    resume(shared, request, peer, transport, decision, session, token)
}

/// [`attach`] for a node of a cluster, once the credentials are accepted: the session is created
/// in, or recovered from, the cluster's bucket. While JetStream cannot be reached, a recovery
/// gets no answer (the connection closes and the client tries again) and a new session is
/// refused with the reason.
async fn attach_clustered(
    shared: &Arc<Shared>,
    cluster: &Arc<Cluster>,
    request: &ConnectRequest,
    peer: SocketAddr,
    transport: Transport,
    decision: Decision,
) -> (Vec<Frame>, Option<Attached>) {
    let config = &shared.config;
    let refuse = |code: ResponseCode, reason: &str| super::Decision::rejected(code, reason).refusal(config);
    if request.reconnect_token.is_empty() {
        return match cluster.create(shared, request, transport).await {
            Ok((session, token)) => {
                let id = session.info.id;
                let response = decision.response(config, ResponseCode::Ok, id, token, 0);
                let (principal, properties) = (Untrusted(&request.principal), Properties(&request.properties));
                tracing::info!(session = %id, %peer, %principal, %properties, "session opened");
                (vec![Frame::ConnectResponse(response)], Some(Attached::new(session, 1, 0, false, shared)))
            }
            Err(why) => {
                if why.contains("session limit") {
                    shared.metrics.refused(Refusal::MaxSessions);
                }
                tracing::warn!(%peer, %why, "session refused");
                (vec![Frame::ConnectResponse(refuse(ResponseCode::Rejected, &why))], None)
            }
        };
    }
    let identity = Identity::of(&request.principal, &request.credentials);
    let (session, token) = match cluster.recover(shared, &request.reconnect_token, &identity, transport).await {
        Recovered::Found(session, token) => (session, token),
        Recovered::Unavailable(why) => {
            tracing::warn!(%peer, %why, "recovery put off: the client will try again");
            return (Vec::new(), None);
        }
        Recovered::Lost => {
            shared.metrics.recovery_failed(FailedRecovery::MessageLoss);
            let why = "the messages since the session's last checkpoint are no longer in the cluster's stream";
            tracing::info!(%peer, why, "session cannot be recovered: messages lost");
            return (vec![Frame::ConnectResponse(refuse(ResponseCode::ReconnectionFailedMessageLoss, why))], None);
        }
        Recovered::Full => {
            shared.metrics.refused(Refusal::MaxSessions);
            return (
                vec![Frame::ConnectResponse(refuse(ResponseCode::Rejected, "server is at its session limit"))],
                None,
            );
        }
        unknown @ (Recovered::Unknown | Recovered::NotOwner) => {
            let other = matches!(unknown, Recovered::NotOwner);
            shared.metrics.recovery_failed(if other {
                FailedRecovery::OtherIdentity
            } else {
                FailedRecovery::UnknownSession
            });
            if let Some(unlogged) = shared.log_refusal(peer) {
                tracing::info!(%peer, unlogged, other_identity = other, "reconnection for an unknown or expired session");
            }
            let refusal = refuse(ResponseCode::UnknownSession, "the session is unknown or expired");
            return (vec![Frame::ConnectResponse(refusal)], None);
        }
    };
    let (frames, attached, _) = resume(shared, request, peer, transport, decision, session, token);
    (frames, attached)
}

/// Answers the recovery of `session`, found with the token presented and given `token` in its
/// place: what the client missed, from the number it last received.
fn resume(
    shared: &Arc<Shared>,
    request: &ConnectRequest,
    peer: SocketAddr,
    transport: Transport,
    decision: Decision,
    session: Arc<ServerSession>,
    token: Vec<u8>,
) -> (Vec<Frame>, Option<Attached>, bool) {
    let config = &shared.config;
    let refuse = |code: ResponseCode, reason: &str| super::Decision::rejected(code, reason).refusal(config);
    let id = session.info.id;
    let resumed = {
        let mut state = session.state.lock();
        let state = &mut *state;
        if let Some(cluster) = state.cluster.as_mut() {
            // Messages received but not yet stored were not acknowledged: the client sends
            // them again (the stream drops what it already has).
            state.incoming = Incoming::resuming_at(cluster.stored);
        }
        state.out.resend_after(request.last_received).map(|resend| {
            // The client claims no more than it was sent: a larger number acknowledges nothing.
            if state.out.on_ack(request.last_received).is_ok() {
                if let Some(cluster) = state.cluster.as_mut() {
                    cluster.acknowledged(request.last_received);
                }
            }
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
    /// Another node of the cluster serves the session now.
    Lost,
}

/// Serves the attached session until the connection ends.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    mut ws: Link,
    attached: Box<Attached>,
    shutdown: watch::Receiver<Shutdown>,
    peer: SocketAddr,
) {
    let session = attached.session().clone();
    let id = session.info.id;
    let generation = attached.generation();
    let end = run(shared, &mut ws, attached, shutdown).await;
    let over = matches!(end, End::Closed(_));
    match end {
        End::Closed(reason) => {
            shared.registry.remove(id.value);
            if let Some(cluster) = &shared.cluster {
                cluster.forget(id);
            }
            tracing::info!(session = %id, %peer, reason = %Untrusted(&reason), "session closed");
        }
        End::Detached(reason) => {
            let reason = Untrusted(&reason);
            tracing::info!(session = %id, %peer, %reason, "connection lost; session kept for its client to reconnect");
            if let Some(cluster) = &shared.cluster {
                // The record has the session now: any node recovers it. A copy kept here
                // would only go stale.
                // Unless the client came back here meanwhile.
                if Box::pin(cluster.write_last(&session)).await.is_ok() {
                    shared.registry.remove_if_detached(&session, generation);
                }
            }
        }
        End::TakenOver => tracing::debug!(session = %id, %peer, "connection replaced by a reconnection"),
        End::Lost => {
            shared.registry.remove_if(&session);
            tracing::info!(session = %id, %peer, "session taken over by another node");
        }
    }
    ws.close(over).await;
}

/// The connection's loop. Its future is most of what an idle connection costs the server, so the
/// futures of rare paths ([`end`], [`refuse`], the cluster's writes) are boxed: they take heap
/// memory only while they run.
async fn run(
    shared: &Arc<Shared>,
    ws: &mut Link,
    mut conversation: Box<Attached>,
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
    let mut clustered =
        shared.cluster.clone().map(|cluster| Clustered::new(cluster, session.clone(), config.session_keep));
    loop {
        if let Some(clustered) = clustered.as_mut() {
            for (seq, entry) in conversation.take_stores() {
                clustered.send(seq, entry);
            }
        }
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
            event = next_cluster_event(&mut clustered) => match event {
                ClusterEvent::Stored(seq, entry, failure) => conversation.stored(seq, &entry, failure, std::time::Instant::now()),
                ClusterEvent::Lost => return End::Lost,
                ClusterEvent::Nothing => {}
            },
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

/// What happened to a cluster node's connection's stores and record.
enum ClusterEvent {
    /// The client's message `seq` is stored, or was given up on (why).
    Stored(u64, Entry, Option<String>),
    /// Another node wrote the session's record: it serves the session now.
    Lost,
    Nothing,
}

/// A client's message on its way into the stream: its number, itself, when it was first sent,
/// and why it last failed to be stored.
type Store = (u64, Entry, Instant, String);
type StoreFuture = BoxFuture<'static, (Store, Result<(), String>)>;

/// How long a client's message is sent again while the stream cannot take it, before its client
/// is told it is refused: while connected to NATS (a stream leader being elected after one
/// failed, which NATS does within 4 to 9 s)...
const STORE_TRIES_FOR: Duration = Duration::from_secs(15);
/// ... and while not connected to any NATS server (reconnecting to another server takes
/// milliseconds when there is one).
const STORE_TRIES_UNCONNECTED_FOR: Duration = Duration::from_secs(5);
/// Pause before sending a message again.
const STORE_RETRY: Duration = Duration::from_millis(250);

/// A cluster node's connection's part: the client's messages on their way into the stream, in
/// order, and the session's record, written when the checkpoint moves (at most every
/// [`RECORD_EVERY`]) and at least every third of the session keep time (so that the bucket does
/// not expire it).
///
/// One message is in flight at a time: the next goes once the stream has stored it or it was
/// given up on. Messages sent without waiting could be stored out of order when a stream leader
/// fails among them (a later one stored by the new leader before an earlier one is sent again).
/// A message that fails is sent again (the stream drops a copy it already has, by message id)
/// after [`STORE_RETRY`], until given up on.
struct Clustered {
    cluster: Arc<Cluster>,
    session: Arc<super::sessions::ServerSession>,
    /// The message in flight.
    in_flight: Option<StoreFuture>,
    /// The messages waiting, in order.
    queue: std::collections::VecDeque<Store>,
    /// When to send the first waiting message again, after a failure.
    retry_at: Option<Instant>,
    write: Option<tokio::task::JoinHandle<Result<(), WriteError>>>,
    written_at: Instant,
    refresh: Duration,
}

/// Shortest interval between two writes of a session's record.
const RECORD_EVERY: Duration = Duration::from_millis(50);

impl Clustered {
    fn new(cluster: Arc<Cluster>, session: Arc<super::sessions::ServerSession>, keep: Duration) -> Clustered {
        Clustered {
            cluster,
            session,
            in_flight: None,
            queue: std::collections::VecDeque::new(),
            retry_at: None,
            write: None,
            written_at: Instant::now(),
            refresh: keep / 3,
        }
    }

    /// Queues the client's message `seq` for the stream (in the order of the calls).
    fn send(&mut self, seq: u64, entry: Entry) {
        self.queue.push_back((seq, entry, Instant::now(), String::new()));
        self.launch_next();
    }

    /// Sends the first waiting message, unless one is in flight or a retry is due later. It
    /// goes when the connection next waits for its events ([`next_cluster_event`]); the future
    /// lives on the heap, so that a connection's task without a cluster stays small.
    fn launch_next(&mut self) {
        if self.in_flight.is_some() || self.retry_at.is_some() {
            return;
        }
        let Some(store) = self.queue.pop_front() else { return };
        let (cluster, id) = (self.cluster.clone(), self.session.info.id);
        self.in_flight = Some(Box::pin(async move {
            let stored = match cluster.store(id, store.0, &store.1).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(why) => Err(why),
            };
            (store, stored)
        }));
    }

    /// Whether a message first sent at `first` has been tried long enough.
    fn given_up(&self, first: Instant) -> bool {
        let budget = if self.cluster.connected() { STORE_TRIES_FOR } else { STORE_TRIES_UNCONNECTED_FOR };
        first.elapsed() >= budget
    }

    /// The message in flight settled: stored, given up on, or to be sent again.
    fn settled(&mut self, mut store: Store, stored: Result<(), String>) -> ClusterEvent {
        self.in_flight = None;
        let event = match stored {
            Ok(()) => ClusterEvent::Stored(store.0, store.1, None),
            Err(why) if self.given_up(store.2) => ClusterEvent::Stored(store.0, store.1, Some(why)),
            Err(why) => {
                tracing::debug!(session = %self.session.info.id, %why, "the cluster's stream did not take a message; sending it again");
                store.3 = why;
                self.queue.push_front(store);
                self.retry_at = Some(Instant::now() + STORE_RETRY);
                ClusterEvent::Nothing
            }
        };
        self.launch_next();
        event
    }
}

async fn next_cluster_event(clustered: &mut Option<Clustered>) -> ClusterEvent {
    let Some(c) = clustered else { return std::future::pending().await };
    let dirty = c.session.state.lock().cluster.as_ref().is_some_and(|s| s.dirty);
    let due = c.written_at + if dirty { RECORD_EVERY } else { c.refresh };
    enum Woke {
        Settled(Store, Result<(), String>),
        Written(Result<(), WriteError>),
        Retry,
        Due,
    }
    let woke = tokio::select! {
        (store, stored) = async { c.in_flight.as_mut().expect("checked").await }, if c.in_flight.is_some() => {
            Woke::Settled(store, stored)
        }
        written = async { c.write.as_mut().expect("checked").await }, if c.write.is_some() => {
            Woke::Written(written.unwrap_or(Err(WriteError::Unavailable)))
        }
        _ = tokio::time::sleep_until(c.retry_at.unwrap_or_else(Instant::now)), if c.retry_at.is_some() => Woke::Retry,
        _ = tokio::time::sleep_until(due), if c.write.is_none() => Woke::Due,
    };
    match woke {
        Woke::Settled(store, stored) => c.settled(store, stored),
        Woke::Retry => {
            c.retry_at = None;
            if c.queue.front().is_some_and(|first| c.given_up(first.2)) {
                let (seq, entry, _, why) = c.queue.pop_front().expect("checked");
                c.launch_next();
                return ClusterEvent::Stored(seq, entry, Some(why));
            }
            c.launch_next();
            ClusterEvent::Nothing
        }
        Woke::Written(result) => {
            c.write = None;
            match result {
                Err(WriteError::Lost) => ClusterEvent::Lost,
                _ => ClusterEvent::Nothing,
            }
        }
        Woke::Due => {
            let (cluster, session) = (c.cluster.clone(), c.session.clone());
            c.written_at = Instant::now();
            c.write = Some(tokio::spawn(async move { cluster.write(&session).await }));
            ClusterEvent::Nothing
        }
    }
}

/// Ends the connection as the conversation decided, sending its CLOSE if it has one. Boxed, as
/// [`refuse`]: a rare path, kept out of the connection's task (see [`run`]).
fn end(ws: &mut Link, ending: Ending) -> BoxFuture<'_, End> {
    Box::pin(async move {
        match ending {
            Ending::Closed { reason, close } => {
                if let Some(close) = close {
                    let _ = ws.send(&close).await;
                }
                End::Closed(reason)
            }
            Ending::Detached(why) => End::Detached(why),
        }
    })
}

fn close(reason: CloseReason, message: &str) -> Frame {
    Frame::Close { reason, message: message.to_string() }
}

/// Ends the session for a protocol violation, telling the client why. Boxed, as [`end`].
fn refuse<'a>(ws: &'a mut Link, reason: CloseReason, message: &str) -> BoxFuture<'a, End> {
    let (close, why) = (close(reason, message), format!("client broke the protocol: {message}"));
    Box::pin(async move {
        let _ = ws.send(&close).await;
        End::Closed(why)
    })
}
