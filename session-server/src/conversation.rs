//! A connection's part in its session, without I/O: what to deliver, what the client's frames
//! do (publications, subscriptions, acknowledgements, pings), when to acknowledge. The
//! connection's task (`connection.rs`) moves the frames; the seeded simulation of the library's
//! tests drives it through [`crate::Node`] with the client's `ClientSession`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session::protocol::reliable::{Incoming, Receipt};
use session::protocol::{self, validate_path, CloseReason, Frame, Message, RefusedAction, SessionId};

use super::cluster::entry::Entry;
use super::log::Untrusted;

use super::sessions::ServerSession;
use super::Shared;

/// Longest wait before acknowledging the client's messages.
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(20);

/// Counts a connection in [`Shared::attached`] from the moment it owns its session (before the
/// client hears it is connected) until it lets go.
pub(crate) struct Counted(Arc<Shared>);

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

/// How a conversation ends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The session is over (the client closed it or broke the protocol, or its messages were
    /// lost): `close` is sent first, if any.
    Closed { reason: String, close: Option<Frame> },
    /// The connection is gone; the session waits for its client.
    Detached(String),
}

/// A connection that owns a session (see the module documentation).
pub struct Attached {
    session: Arc<ServerSession>,
    generation: u64,
    /// The last message already sent to this connection.
    sent_upto: u64,
    /// Whether the session was recovered: the token it was recovered with lapses once the
    /// client speaks on this connection.
    recovered: bool,
    /// When received messages are to be acknowledged, if they wait.
    ack_at: Option<Instant>,
    /// An ACK due now, sent with the deliveries it may have caused (one write, deliveries first).
    ack_due: Option<Frame>,
    denials: DenialLog,
    counted: Counted,
    /// In a cluster: the client's messages to store in the stream, in order
    /// ([`Attached::take_stores`]).
    stores: Vec<(u64, Entry)>,
    /// In a cluster: messages stored since the last ACK.
    stored_unacknowledged: u32,
    /// In a cluster: the session was resumed and the client has not sent a message since.
    resumed_in_cluster: bool,
}

/// Denial lines logged per connection per [`DENIAL_WINDOW`]: a client that keeps asking for
/// what it may not have does not fill the log.
const DENIALS_LOGGED_PER_WINDOW: u32 = 10;
const DENIAL_WINDOW: Duration = Duration::from_secs(60);

/// What a connection has logged of its denials in the current window (no I/O: the caller passes
/// the time).
#[derive(Debug, Default)]
struct DenialLog {
    window_start: Option<Instant>,
    logged: u32,
    unlogged: u32,
}

impl DenialLog {
    /// `Some(n)` when a denial at `now` is to be logged, `n` being the denials left out of the
    /// log before it.
    fn log(&mut self, now: Instant) -> Option<u32> {
        if self.window_start.is_none_or(|start| now.duration_since(start) >= DENIAL_WINDOW) {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < DENIALS_LOGGED_PER_WINDOW {
            self.logged += 1;
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        }
    }
}

impl Attached {
    pub(crate) fn new(
        session: Arc<ServerSession>,
        generation: u64,
        sent_upto: u64,
        recovered: bool,
        shared: &Arc<Shared>,
    ) -> Attached {
        Attached {
            session,
            generation,
            sent_upto,
            recovered,
            ack_at: None,
            ack_due: None,
            denials: DenialLog::default(),
            counted: Counted::new(shared),
            stores: Vec::new(),
            stored_unacknowledged: 0,
            resumed_in_cluster: recovered && shared.cluster.is_some(),
        }
    }

    pub(crate) fn session(&self) -> &Arc<ServerSession> {
        &self.session
    }

    /// The generation of the connection that owns the session through this conversation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.session.info.id
    }

    /// Whether this connection still owns the session (no reconnection took it over).
    pub fn owns(&self) -> bool {
        *self.session.owner.borrow() == self.generation
    }

    /// The connection is gone: the session waits for its client, unless a reconnection took it.
    pub fn detach(&self) {
        let mut state = self.session.state.lock();
        if state.generation == self.generation {
            state.detached_since = Some(tokio::time::Instant::now());
        }
    }

    /// What to send now: the deliveries publications queued for the session since the last
    /// call, then a due ACK. Fails when the session's recovery buffer overflowed (a slow or
    /// absent client): the session is over.
    pub fn poll_transmit(&mut self) -> Result<Vec<Frame>, Ending> {
        let pending = {
            let state = self.session.state.lock();
            let pending = state.out.resend_after(self.sent_upto);
            self.sent_upto = state.out.last_sent();
            pending
        };
        match pending {
            Ok(mut frames) => {
                if !frames.is_empty() {
                    self.counted.0.metrics.deliveries_sent(frames.len());
                }
                frames.extend(self.ack_due.take());
                Ok(frames)
            }
            Err(_) => {
                self.counted.0.metrics.overflowed();
                let reason = "the session's recovery buffer overflowed: a slow or absent client";
                Err(Ending::Closed { reason: reason.into(), close: Some(close(CloseReason::MessageLoss, reason)) })
            }
        }
    }

    /// The client's frames, in order; returns the answers to send at once (PONG).
    pub fn handle_frames(&mut self, frames: Vec<Frame>, now: Instant) -> Result<Vec<Frame>, Ending> {
        if std::mem::take(&mut self.recovered) {
            self.counted.0.registry.confirm_token(self.session.info.id.value);
            if let Some(cluster) = self.session.state.lock().cluster.as_mut() {
                cluster.record.previous_token = None;
                cluster.dirty = true;
            }
        }
        let mut replies = Vec::new();
        for frame in frames {
            self.on_frame(frame, now, &mut replies)?;
        }
        let mut state = self.session.state.lock();
        if state.cluster.is_some() {
            // Acknowledged once stored: see `stored`.
            let _ = state.incoming.take_ack();
        } else if state.incoming.ack_now() {
            self.ack_due = Some(state.incoming.take_ack());
            self.ack_at = None;
        } else if state.incoming.ack_pending() && self.ack_at.is_none() {
            self.ack_at = Some(now + ACK_DELAY);
        }
        Ok(replies)
    }

    /// When [`Attached::handle_timeout`] has an ACK to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ack_at
    }

    /// The ACK due at `now`, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Frame> {
        if self.ack_at.is_none_or(|at| now < at) {
            return None;
        }
        self.ack_at = None;
        let mut state = self.session.state.lock();
        if let Some(cluster) = &state.cluster {
            self.stored_unacknowledged = 0;
            return Some(Frame::Ack(cluster.stored));
        }
        Some(state.incoming.take_ack())
    }

    /// In a cluster: the client's messages to send to the stream, in order, each with its
    /// sequence number.
    pub(crate) fn take_stores(&mut self) -> Vec<(u64, Entry)> {
        std::mem::take(&mut self.stores)
    }

    /// In a cluster: the stream stored the client's message `seq` (`entry`), or could not
    /// (`failure`): then the client is told with REFUSED. Either way the message is handled and
    /// is acknowledged.
    pub(crate) fn stored(&mut self, seq: u64, entry: &Entry, failure: Option<String>, now: Instant) {
        if let Some(cluster) = self.session.state.lock().cluster.as_mut() {
            cluster.stored = cluster.stored.max(seq);
        }
        if let Some(why) = failure {
            let refusal = match entry {
                Entry::Publish { path, .. } => Some((
                    RefusedAction::Publish,
                    path,
                    format!("publishing on {path} failed: the cluster cannot store it now ({why})"),
                )),
                Entry::Subscribe { path, .. } => Some((
                    RefusedAction::Subscribe,
                    path,
                    format!("subscribing to {path} failed: the cluster cannot store it now ({why})"),
                )),
                Entry::Unsubscribe { path, .. } => Some((
                    RefusedAction::Subscribe,
                    path,
                    format!("unsubscribing from {path} failed: the cluster cannot store it now ({why}); the subscription stays"),
                )),
                Entry::Refuse { action, path, message, .. } => Some((*action, path, message.clone())),
            };
            if let (Some((action, path, message)), Some(cluster)) = (refusal, &self.counted.0.cluster) {
                tracing::info!(session = %self.session.info.id, path = %Untrusted(path), %why, "message refused: the cluster cannot store it");
                let applied = cluster.applied.lock();
                super::cluster::push_local(
                    &self.session,
                    *applied,
                    Message::Refused { action, path: path.clone(), message },
                );
            }
        }
        self.stored_unacknowledged += 1;
        if self.stored_unacknowledged >= protocol::reliable::ACK_EVERY {
            self.ack_at = Some(now);
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + ACK_DELAY);
        }
    }

    fn on_frame(&mut self, frame: Frame, now: Instant, replies: &mut Vec<Frame>) -> Result<(), Ending> {
        let shared = self.counted.0.clone();
        let registry = &shared.registry;
        let id = self.session.info.id.value;
        match frame {
            Frame::Message { seq, body } => {
                if matches!(body, Message::Deliver { .. }) {
                    return Err(refuse(CloseReason::ProtocolError, "clients do not send DELIVER"));
                }
                if matches!(body, Message::Refused { .. }) {
                    return Err(refuse(CloseReason::ProtocolError, "clients do not send REFUSED"));
                }
                if let Err(why) = validate_path(body.path()) {
                    return Err(refuse(CloseReason::ProtocolError, &why));
                }
                let receipt = {
                    let mut state = self.session.state.lock();
                    let state = &mut *state;
                    if std::mem::take(&mut self.resumed_in_cluster) && seq > state.incoming.last() + 1 {
                        // The client sends again from its first unacknowledged message: the ones
                        // before it were acknowledged, so the cluster stored or refused them,
                        // though the record this node resumed from predates that.
                        state.incoming = Incoming::resuming_at(seq - 1);
                    }
                    state.incoming.receive(seq)
                };
                match receipt {
                    Ok(Receipt::Duplicate) => Ok(()),
                    Err(why) => Err(refuse(CloseReason::ProtocolError, &why)),
                    Ok(Receipt::New) if shared.cluster.is_some() => {
                        let entry = self.to_store(body, now);
                        self.stores.push((seq, entry));
                        Ok(())
                    }
                    Ok(Receipt::New) => {
                        match body {
                            Message::Publish { path, data } => {
                                shared.metrics.publication_received();
                                if shared.policy().may_publish(Some(&self.session.info.principal), &path) {
                                    registry.publish(path, &data);
                                } else {
                                    self.deny(RefusedAction::Publish, path.to_string(), now);
                                }
                            }
                            Message::Subscribe { path } => {
                                let principal = Some(self.session.info.principal.as_str());
                                let policy = shared.policy();
                                if !policy.may_subscribe(principal, &path) {
                                    self.deny(RefusedAction::Subscribe, path, now);
                                } else {
                                    registry.subscribe(id, &path);
                                    // A reload between the check and the registration withdrew
                                    // subscriptions without this one: check it against the new policy.
                                    let current = shared.policy();
                                    if !Arc::ptr_eq(&policy, &current) && !current.may_subscribe(principal, &path) {
                                        registry.unsubscribe(id, &path);
                                        self.deny(RefusedAction::Subscribe, path, now);
                                    }
                                }
                            }
                            Message::Unsubscribe { path } => registry.unsubscribe(id, &path),
                            Message::Deliver { .. } | Message::Refused { .. } => unreachable!("refused above"),
                        }
                        Ok(())
                    }
                }
            }
            Frame::Ack(seq) => {
                let mut state = self.session.state.lock();
                let acked = state.out.on_ack(seq);
                if let (Ok(()), Some(cluster)) = (&acked, state.cluster.as_mut()) {
                    cluster.acknowledged(seq);
                }
                acked.map_err(|why| refuse(CloseReason::ProtocolError, &why))
            }
            Frame::Ping(n) => {
                replies.push(Frame::Pong(n));
                Ok(())
            }
            Frame::Pong(_) => Ok(()),
            Frame::Close { reason, message } => {
                Err(Ending::Closed { reason: format!("closed by the client ({reason}: {message})"), close: None })
            }
            other => {
                Err(refuse(CloseReason::ProtocolError, &format!("unexpected {} frame", protocol::frame_name(&other))))
            }
        }
    }
}

impl Attached {
    /// In a cluster: what the stream is to store for the client's message `body`: itself, or
    /// the refusal of what the policy does not permit.
    fn to_store(&mut self, body: Message, now: Instant) -> Entry {
        let shared = self.counted.0.clone();
        let session = self.session.info.id;
        let principal = Some(self.session.info.principal.as_str());
        let policy = shared.policy();
        let refuse = |this: &mut Attached, action: RefusedAction, path: String| {
            let Message::Refused { message, .. } = this.denial(action, path.clone(), now) else { unreachable!() };
            Entry::Refuse { session, action, path, message }
        };
        match body {
            Message::Publish { path, data } => {
                shared.metrics.publication_received();
                if policy.may_publish(principal, &path) {
                    Entry::Publish { path: path.to_string(), data }
                } else {
                    refuse(self, RefusedAction::Publish, path.to_string())
                }
            }
            Message::Subscribe { path } if policy.may_subscribe(principal, &path) => Entry::Subscribe { session, path },
            Message::Subscribe { path } => refuse(self, RefusedAction::Subscribe, path),
            Message::Unsubscribe { path } => Entry::Unsubscribe { session, path },
            Message::Deliver { .. } | Message::Refused { .. } => unreachable!("refused before"),
        }
    }

    /// Answers a message the policy does not permit with REFUSED, counts and logs it; the
    /// session goes on.
    fn deny(&mut self, action: RefusedAction, path: String, now: Instant) {
        let refusal = self.denial(action, path, now);
        self.session.state.lock().out.push(refusal);
    }

    /// Counts and logs a denial; returns the REFUSED message that tells the client.
    fn denial(&mut self, action: RefusedAction, path: String, now: Instant) -> Message {
        let principal = &self.session.info.principal;
        let (verb, label) = match action {
            RefusedAction::Publish => ("publishing on", "publish"),
            _ => ("subscribing to", "subscribe"),
        };
        self.counted.0.metrics.denied(action);
        if let Some(unlogged) = self.denials.log(now) {
            tracing::info!(
                session = %self.session.info.id,
                principal = %Untrusted(principal),
                path = %Untrusted(&path),
                unlogged,
                "{label} denied"
            );
        }
        let message = format!("{verb} {path} is not permitted for {}", shown_principal(principal));
        Message::Refused { action, path, message }
    }
}

/// A principal as named to its client: anonymous sessions have none.
pub(crate) fn shown_principal(principal: &str) -> &str {
    if principal.is_empty() {
        "anonymous sessions"
    } else {
        principal
    }
}

fn close(reason: CloseReason, message: &str) -> Frame {
    Frame::Close { reason, message: message.to_string() }
}

/// Ends the session for a protocol violation, telling the client why.
fn refuse(reason: CloseReason, message: &str) -> Ending {
    Ending::Closed { reason: format!("client broke the protocol: {message}"), close: Some(close(reason, message)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_logged_ten_a_minute_per_connection_and_the_next_line_counts_those_left_out() {
        let mut log = DenialLog::default();
        let start = Instant::now();
        for _ in 0..DENIALS_LOGGED_PER_WINDOW {
            assert_eq!(log.log(start), Some(0));
        }
        assert_eq!(log.log(start + Duration::from_secs(1)), None);
        assert_eq!(log.log(start + Duration::from_secs(2)), None);
        assert_eq!(log.log(start + DENIAL_WINDOW), Some(2));
    }
}
