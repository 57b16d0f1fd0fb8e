//! [`ClientSession`]: everything a session decides, as a state machine without I/O.
//!
//! It takes the frames received, the time and the application's commands, and gives the frames
//! to send ([`ClientSession::poll_transmit`]), the next deadline ([`ClientSession::poll_timeout`])
//! and events for the application ([`ClientSession::poll_event`]): the handshake and recovery
//! (tokens, resends), numbering, acknowledgements, keep-alive, the reconnection deadline, the
//! queue of messages waiting to be sent and the subscriptions with their handlers. It reads no
//! clock, opens no socket and starts no thread: the session's task (`driver.rs`) moves bytes
//! between it and a transport, and the seeded simulation (`session-server/tests/simulation.rs`) drives it
//! through a simulated network.
//!
//! `M` is the form a message waits and is kept in (the driver's keeps large publications
//! masked for a WebSocket), `H` a subscription's handler.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
pub use crate::protocol::reliable::Item;
use crate::protocol::reliable::{Incoming, Limits, Outgoing, Receipt, Retained};
use crate::protocol::untrusted::Untrusted;
use crate::protocol::{
    self, path_matches, validate_path, ClientHandshake, CloseReason, ConnectRequest, Established, Frame, Message,
    RefusedAction, SessionId, FRAME_HEADER_LEN,
};

use super::State;

/// Silence from the server longer than this many keep-alive intervals means the link is dead.
pub const KEEP_ALIVE_MISSES: u32 = 2;
/// Extra slack on the keep-alive deadline for scheduling and network jitter.
pub const KEEP_ALIVE_SLACK: Duration = Duration::from_millis(500);
/// Longest wait before acknowledging received messages.
pub const ACK_DELAY: Duration = Duration::from_millis(20);
/// Once an ACK is due (enough messages received), how long it may wait for an outgoing message
/// to ride with.
pub const ACK_RIDE: Duration = Duration::from_millis(1);
/// Bytes a numbered message adds around its path and data: header, sequence number, lengths.
pub const MESSAGE_OVERHEAD: usize = FRAME_HEADER_LEN + 8 + 2 + 4;

/// What a [`ClientSession`] is set up with.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// The CONNECT_REQUEST of a new session (principal, credentials, properties, frame size);
    /// versions, token and last received are filled in for each attempt.
    pub request: ConnectRequest,
    /// Messages that may wait to be sent.
    pub queue_capacity: usize,
    /// Sent messages kept for recovery.
    pub recovery_buffer: usize,
    /// How long a lost connection may take to recover; `None`: a loss fails the session.
    pub reconnection_timeout: Option<Duration>,
}

/// What the application hears about; `H` is a subscription's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<H = ()> {
    /// The session moved from one state to another (closed states carry their error).
    State { from: State, to: State, error: Option<Error> },
    /// A message delivered on `path`, to the handlers covering it ([`ClientSession::handlers_for`]).
    Deliver { path: crate::protocol::TopicPath, data: bytes::Bytes },
    /// The server refused a publication or subscription on `path`, or withdrew the subscription
    /// to `path`: `error` (AccessDenied) says so. A refused or withdrawn subscription is gone, and
    /// `handler` is its handler (`None` for a publication, or when the application had already
    /// unsubscribed).
    Refused { action: RefusedAction, path: String, error: Error, handler: Option<H> },
}

/// Whether sending waits for room in the recovery buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Send only while unacknowledged messages fit in the recovery buffer.
    Kept,
    /// Send everything (before a close: no recovery follows).
    Ignored,
}

/// How a connection ended, as far as the session is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Lost: the session recovers if it may ([`ClientSession::connection_lost`]).
    Lost(Error),
    /// The session cannot go on (protocol error, messages lost); it is closed.
    Failed(Error),
    /// The server closed the session; it is closed.
    ByServer(Error),
}

/// Where the current connection is.
#[derive(Debug)]
enum Phase {
    /// No connection.
    Idle,
    /// The CONNECT_REQUEST went out; the server's answer is awaited (boxed: an idle session
    /// does not carry its room).
    Handshaking(Box<ClientHandshake>),
    /// The session runs over the connection.
    Open { keep_alive: Instant, ack_at: Option<Instant> },
}

/// A client session's logic (see the module documentation).
#[derive(Debug)]
pub struct ClientSession<M: Retained = Message, H = ()> {
    /// Boxed: an idle session holds it without its room.
    options: Box<CoreOptions>,
    state: State,
    phase: Phase,
    out: Outgoing<M>,
    queue: VecDeque<M>,
    incoming: Incoming,
    token: Vec<u8>,
    id: SessionId,
    /// The server's keep-alive interval, from the last handshake.
    ping_interval: Duration,
    /// The largest frame the server accepts, once known (0 before).
    server_limit: u32,
    /// Frames to send before anything else (answers to PING, resends).
    control: VecDeque<Frame>,
    events: VecDeque<Event<H>>,
    subscriptions: Vec<(String, H)>,
    /// While recovering: when to give up, and the error to give up with.
    recover_by: Option<Instant>,
    last_error: Option<Error>,
    server: String,
}

impl<M: Retained + From<Message>, H> ClientSession<M, H> {
    /// A session not yet started.
    pub fn new(options: CoreOptions) -> Self {
        ClientSession {
            out: Outgoing::with_limits(Limits { messages: options.recovery_buffer, bytes: usize::MAX, pool: None }),
            options: Box::new(options),
            state: State::Unknown,
            phase: Phase::Idle,
            queue: VecDeque::new(),
            incoming: Incoming::default(),
            token: Vec::new(),
            id: SessionId::default(),
            ping_interval: Duration::from_secs(10),
            server_limit: 0,
            control: VecDeque::new(),
            events: VecDeque::new(),
            subscriptions: Vec::new(),
            recover_by: None,
            last_error: None,
            server: String::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The session's id once the server assigned one.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Whether the current connection carries the session (the handshake is over).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    fn move_to(&mut self, to: State, error: Option<Error>) -> bool {
        let from = self.state;
        if !from.can_move_to(to) {
            return false;
        }
        self.state = to;
        self.events.push_back(Event::State { from, to, error });
        true
    }

    /// Starts the session: CONNECTING.
    pub fn start(&mut self) {
        self.move_to(State::Connecting, None);
    }

    /// Closes the session in state `to` with `error` (the application's close, a failure, the
    /// server's close); the connection, if any, is abandoned. What is queued stays for a close
    /// by the client (see [`ClientSession::poll_transmit`] with [`Window::Ignored`]).
    pub fn close(&mut self, to: State, error: Option<Error>) {
        debug_assert!(to.is_closed());
        if self.move_to(to, error) {
            self.recover_by = None;
            if to != State::ClosedByClient {
                self.queue.clear();
                self.phase = Phase::Idle;
            }
        }
    }

    /// A connection attempt begins: the CONNECT_REQUEST to send first (a new session's, or the
    /// recovery of this one).
    pub fn connect_request(&mut self) -> Frame {
        self.connect_request_to(String::new())
    }

    /// [`ClientSession::connect_request`] to `server` (host:port), named in errors.
    pub fn connect_request_to(&mut self, server: String) -> Frame {
        let request = ConnectRequest {
            reconnect_token: self.token.clone(),
            last_received: self.incoming.last(),
            ..self.options.request.clone()
        };
        let handshake = ClientHandshake::new(request, server.clone());
        let frame = handshake.request_frame();
        self.server = server;
        self.phase = Phase::Handshaking(Box::new(handshake));
        frame
    }

    /// The server's answer to the connect request. On success the session runs over the
    /// connection (CONNECTED_ACTIVE): a new one starts numbering, a recovered one has what the
    /// server missed to send again. On failure the attempt failed with the error returned (a
    /// refusal, an unknown session, lost messages).
    pub fn handle_handshake(&mut self, now: Instant, frame: Frame) -> Result<()> {
        let Phase::Handshaking(handshake) = &self.phase else {
            return Err(Error::new(ErrorCode::IllegalState, "no connect request was sent"));
        };
        let established = handshake.on_frame(frame);
        self.phase = Phase::Idle;
        let established = established?;
        self.server_limit = established.server_max_frame_size;
        self.resume(&established)?;
        self.ping_interval = established.ping_interval;
        self.phase = Phase::Open { keep_alive: now + self.keep_alive_limit(), ack_at: None };
        self.recover_by = None;
        self.move_to(State::ConnectedActive, None);
        Ok(())
    }

    /// A new session starts numbering; a resumed one queues again what the server did not
    /// receive.
    fn resume(&mut self, established: &Established) -> Result<()> {
        let server = &self.server;
        let resuming = !self.token.is_empty();
        if resuming && (!established.resumed || established.session_id != self.id) {
            return Err(Error::new(
                ErrorCode::UnknownSession,
                format!("server {server} no longer knows session {} and started a new one", self.id),
            ));
        }
        if !resuming && established.resumed {
            return Err(Error::new(
                ErrorCode::ConnectionProtocolError,
                format!("server {server} answered a new session's connect request as a resumption"),
            ));
        }
        let resend = self.out.resend_after(established.last_received).map_err(|loss| {
            Error::new(
                ErrorCode::MessageLoss,
                format!(
                    "the server received messages up to {} but message {} is no longer in the recovery buffer (recovery_buffer_size)",
                    established.last_received, loss.missing_from
                ),
            )
        })?;
        self.out
            .on_ack(established.last_received)
            .map_err(|why| Error::new(ErrorCode::ConnectionProtocolError, format!("server {server} {why}")))?;
        // Every recovery hands out a fresh token: the one just used no longer works.
        if !established.token.is_empty() {
            self.token = established.token.clone();
        }
        if !resuming {
            self.id = established.session_id;
        }
        self.control.clear();
        self.control.extend(resend);
        Ok(())
    }

    /// A frame from the server on an open connection. `Err` when the connection ends; the
    /// session is then closed, except for [`Ended::Lost`] (see [`ClientSession::connection_lost`]).
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> std::result::Result<(), Ended> {
        let Phase::Open { keep_alive, ack_at } = &mut self.phase else {
            return Ok(());
        };
        *keep_alive = now + keep_alive_limit(self.ping_interval);
        let server = &self.server;
        let ended = match frame {
            Frame::Message { body: Message::Deliver { path, .. }, .. } if validate_path(&path).is_err() => {
                Ended::Failed(Error::new(
                    ErrorCode::ConnectionProtocolError,
                    format!("server {server} delivered a message on an invalid path"),
                ))
            }
            Frame::Message { seq, body: body @ (Message::Deliver { .. } | Message::Refused { .. }) } => {
                match self.incoming.receive(seq) {
                    Ok(Receipt::New) => {
                        let event = match body {
                            Message::Refused { action, path, message } => {
                                let handler = match action {
                                    RefusedAction::Publish => None,
                                    RefusedAction::Subscribe | RefusedAction::Withdrawn => self
                                        .subscriptions
                                        .iter()
                                        .position(|(p, _)| *p == path)
                                        .map(|index| self.subscriptions.remove(index).1),
                                };
                                let error = Error::new(
                                    ErrorCode::AccessDenied,
                                    format!("server {server}: {}", Untrusted(&message)),
                                );
                                Event::Refused { action, path, error, handler }
                            }
                            Message::Deliver { path, data } => Event::Deliver { path, data },
                            _ => unreachable!("matched above"),
                        };
                        self.events.push_back(event);
                        if self.incoming.ack_now() {
                            // Due: it rides with the next outgoing message, or goes alone shortly.
                            let soon = now + ACK_RIDE;
                            *ack_at = Some(ack_at.map_or(soon, |at| at.min(soon)));
                        } else if ack_at.is_none() {
                            *ack_at = Some(now + ACK_DELAY);
                        }
                        return Ok(());
                    }
                    Ok(Receipt::Duplicate) => return Ok(()),
                    Err(why) => {
                        Ended::Failed(Error::new(ErrorCode::ConnectionProtocolError, format!("server {server}: {why}")))
                    }
                }
            }
            Frame::Ack(seq) => match self.out.on_ack(seq) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    Ended::Failed(Error::new(ErrorCode::ConnectionProtocolError, format!("server {server} {why}")))
                }
            },
            Frame::Ping(n) => {
                self.control.push_back(Frame::Pong(n));
                return Ok(());
            }
            Frame::Pong(_) => return Ok(()),
            Frame::Close { reason: CloseReason::MessageLoss, message } => Ended::Failed(Error::new(
                ErrorCode::MessageLoss,
                format!("server {server} closed the session: messages were lost: {}", Untrusted(&message)),
            )),
            Frame::Close { reason, message } => Ended::ByServer(Error::new(
                ErrorCode::SessionClosed,
                format!("server {server} closed the session ({reason}): {}", Untrusted(&message)),
            )),
            other => {
                self.control
                    .push_back(Frame::Close { reason: CloseReason::ProtocolError, message: "unexpected frame".into() });
                Ended::Failed(Error::new(
                    ErrorCode::ConnectionProtocolError,
                    format!("server {server} sent an unexpected {} frame", protocol::frame_name(&other)),
                ))
            }
        };
        Err(self.end(ended))
    }

    /// Something was heard from the server that carries no frame (a WebSocket ping).
    pub fn heard(&mut self, now: Instant) {
        let limit = self.keep_alive_limit();
        if let Phase::Open { keep_alive, .. } = &mut self.phase {
            *keep_alive = now + limit;
        }
    }

    /// Closes the session for an end that closes it.
    fn end(&mut self, ended: Ended) -> Ended {
        match &ended {
            Ended::Lost(_) => {}
            Ended::Failed(e) => self.close(State::ClosedFailed, Some(e.clone())),
            Ended::ByServer(e) => self.close(State::ClosedByServer, Some(e.clone())),
        }
        ended
    }

    /// The connection was lost (or an attempt failed) with `error`. Losing the open connection
    /// starts recovery (RECOVERING_RECONNECT, until the reconnection timeout), or fails the
    /// session when reconnection is off; a failed attempt is remembered as the error a give-up
    /// names.
    pub fn connection_lost(&mut self, now: Instant, error: Error) {
        let was_open = self.is_open();
        self.phase = Phase::Idle;
        self.control.clear();
        if !was_open || self.state != State::ConnectedActive {
            self.last_error = Some(error);
            return;
        }
        match self.options.reconnection_timeout {
            Some(limit) => {
                self.recover_by = Some(now + limit);
                self.last_error = Some(error);
                self.move_to(State::RecoveringReconnect, None);
            }
            None => self.close(State::ClosedFailed, Some(error)),
        }
    }

    /// While recovering: when recovery gives up.
    pub fn recovery_deadline(&self) -> Option<Instant> {
        self.recover_by
    }

    /// The error the last attempt (or the loss) failed with.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// The next time [`ClientSession::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connection = match &self.phase {
            Phase::Open { keep_alive, ack_at } => Some(ack_at.map_or(*keep_alive, |at| at.min(*keep_alive))),
            _ => None,
        };
        match (connection, self.recover_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed: a silent server loses the connection ([`Ended::Lost`], which the caller
    /// passes on to [`ClientSession::connection_lost`]); recovery past its deadline closes the
    /// session (CLOSED_FAILED, with the last attempt's error). A due ACK is left to
    /// [`ClientSession::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) -> std::result::Result<(), Ended> {
        if let Some(by) = self.recover_by {
            if now >= by && self.state == State::RecoveringReconnect {
                let limit = self.options.reconnection_timeout.unwrap_or_default();
                let last = self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| Error::new(ErrorCode::CommunicationError, "connection lost"));
                let error = Error::new(
                    last.code(),
                    format!("could not reconnect within the reconnection timeout of {} ms: {last}", limit.as_millis()),
                );
                return Err(self.end(Ended::Failed(error)));
            }
        }
        if let Phase::Open { keep_alive, .. } = self.phase {
            if now >= keep_alive {
                return Err(Ended::Lost(Error::new(
                    ErrorCode::CommunicationError,
                    format!(
                        "connection to {} lost: nothing received for {} ms",
                        self.server,
                        self.keep_alive_limit().as_millis()
                    ),
                )));
            }
        }
        Ok(())
    }

    fn keep_alive_limit(&self) -> Duration {
        keep_alive_limit(self.ping_interval)
    }

    /// The largest message the application may publish now (against its own limit and, once
    /// known, the server's).
    pub fn size_limit(&self) -> usize {
        let own = self.options.request.max_frame_size;
        let limit = if self.server_limit == 0 { own } else { own.min(self.server_limit) };
        limit as usize
    }

    /// Checks a publication of `len` bytes on `path` before it is copied.
    pub fn check_publication(&self, path: &str, len: usize) -> Result<()> {
        check_publication(path, len, self.size_limit())
    }

    /// Queues a message for the server; fails when the queue is full (nothing queued is lost)
    /// or the session is closed.
    pub fn enqueue(&mut self, message: M) -> Result<()> {
        if self.state.is_closed() {
            return Err(Error::new(ErrorCode::SessionClosed, "the session is closed"));
        }
        if self.queue.len() >= self.options.queue_capacity.max(1) {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!(
                    "{} messages are already waiting to be sent (maximum_queue_size); try again when the session catches up",
                    self.queue.len()
                ),
            ));
        }
        self.queue.push_back(message);
        Ok(())
    }

    /// Publishes `data` on `path` (checked and queued).
    pub fn publish(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.check_publication(path, data.len())?;
        self.enqueue(M::from(Message::Publish { path: path.into(), data: data.to_vec().into() }))
    }

    /// Subscribes `handler` to `path` and tells the server; returns the handler it replaces.
    pub fn subscribe(&mut self, path: &str, handler: H) -> Result<Option<H>> {
        check_path(path)?;
        self.enqueue(M::from(Message::Subscribe { path: path.to_string() }))?;
        Ok(match self.subscriptions.iter_mut().find(|(p, _)| p == path) {
            Some(entry) => Some(std::mem::replace(&mut entry.1, handler)),
            None => {
                self.subscriptions.push((path.to_string(), handler));
                None
            }
        })
    }

    /// Ends the subscription to `path` and tells the server; returns its handler.
    pub fn unsubscribe(&mut self, path: &str) -> Result<H> {
        check_path(path)?;
        let index = self
            .subscriptions
            .iter()
            .position(|(p, _)| p == path)
            .ok_or_else(|| Error::illegal_argument(format!("there is no subscription to '{path}'")))?;
        let (_, handler) = self.subscriptions.remove(index);
        self.enqueue(M::from(Message::Unsubscribe { path: path.to_string() }))?;
        Ok(handler)
    }

    /// The handlers whose subscriptions cover `path`.
    pub fn handlers_for<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a H> + 'a {
        self.subscriptions.iter().filter(move |(p, _)| path_matches(p, path)).map(|(_, h)| h)
    }

    /// Takes every handler (when the session is over) and, with `queued`, drops the messages
    /// waiting to be sent.
    pub fn clear(&mut self, queued: bool) -> Vec<(String, H)> {
        if queued {
            self.queue.clear();
        }
        std::mem::take(&mut self.subscriptions)
    }

    /// Whether messages wait in the queue.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether another message may be sent within the recovery buffer.
    pub fn has_room(&self) -> bool {
        self.out.has_room()
    }

    /// Messages kept for recovery.
    pub fn retained(&self) -> usize {
        self.out.retained()
    }

    /// The next frames to send, about `max_bytes` of them: frames that must go first, then
    /// queued messages as `window` allows (numbered now, and kept for recovery) with a pending
    /// ACK riding in front, then a due ACK alone. Empty when nothing is to be sent.
    pub fn poll_transmit(&mut self, now: Instant, max_bytes: usize, window: Window) -> Vec<Item<M>> {
        let mut items = Vec::new();
        let Phase::Open { ack_at, .. } = &mut self.phase else { return items };
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some(frame) = self.control.pop_front() else { break };
            bytes += frame_size(&frame);
            items.push(Item::Frame(frame));
        }
        while bytes < max_bytes && (window == Window::Ignored || self.out.has_room()) {
            let Some(message) = self.queue.pop_front() else { break };
            if self.incoming.ack_pending() {
                items.push(Item::Frame(self.incoming.take_ack()));
                *ack_at = None;
            }
            bytes += MESSAGE_OVERHEAD + message.size();
            let (seq, message) = self.out.number(message);
            items.push(Item::Message(seq, message));
        }
        if ack_at.is_some_and(|at| now >= at) {
            *ack_at = None;
            if self.incoming.ack_pending() {
                items.push(Item::Frame(self.incoming.take_ack()));
            }
        }
        if !self.incoming.ack_pending() {
            *ack_at = None;
        }
        items
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<H>> {
        let event = self.events.pop_front();
        if self.events.is_empty() && matches!(event, Some(Event::State { .. })) {
            // State changes are rare (connected, recovering, closed), and after the first ones a
            // session is often idle for long: its queue's buffer goes. Deliveries keep it.
            self.events = VecDeque::new();
        }
        event
    }
}

fn keep_alive_limit(ping_interval: Duration) -> Duration {
    ping_interval * KEEP_ALIVE_MISSES + KEEP_ALIVE_SLACK
}

/// About the bytes `frame` takes encoded (for batching only).
fn frame_size(frame: &Frame) -> usize {
    match frame {
        Frame::Message { body, .. } => MESSAGE_OVERHEAD + body.size(),
        _ => FRAME_HEADER_LEN + 16,
    }
}

/// Checks a publication of `len` bytes on `path` against the message size `limit`.
pub fn check_publication(path: &str, len: usize, limit: usize) -> Result<()> {
    check_path(path)?;
    if MESSAGE_OVERHEAD + path.len() + len > limit {
        return Err(Error::new(
            ErrorCode::MessageTooLarge,
            format!("a message of {len} bytes on '{path}' exceeds the maximum message size of {limit} bytes"),
        ));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<()> {
    validate_path(path).map_err(|why| Error::illegal_argument(format!("invalid path '{}': {why}", path.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ConnectResponse, ResponseCode, MAX_VERSION};

    type Core = ClientSession<Message, u32>;

    fn options() -> CoreOptions {
        CoreOptions {
            request: ConnectRequest { max_frame_size: 4096, ..Default::default() },
            queue_capacity: 2,
            recovery_buffer: 4,
            reconnection_timeout: Some(Duration::from_secs(5)),
        }
    }

    fn accept(core: &mut Core, now: Instant, resumed: bool, last_received: u64) -> Result<()> {
        core.connect_request();
        core.handle_handshake(
            now,
            Frame::ConnectResponse(ConnectResponse {
                version: MAX_VERSION,
                code: if resumed { ResponseCode::Reconnected } else { ResponseCode::Ok },
                session_id: SessionId::default(),
                token: vec![1, 2, 3],
                ping_interval_ms: 1000,
                max_frame_size: 2048,
                last_received,
                message: String::new(),
            }),
        )
    }

    fn sent(items: Vec<Item<Message>>) -> Vec<Frame> {
        items
            .into_iter()
            .map(|item| match item {
                Item::Frame(frame) => frame,
                Item::Message(seq, body) => Frame::Message { seq, body },
            })
            .collect()
    }

    fn publish(n: u8) -> Frame {
        Frame::Message { seq: n as u64, body: Message::Publish { path: "a".into(), data: vec![n].into() } }
    }

    #[test]
    fn a_full_queue_refuses_without_losing_what_is_queued() {
        let mut core = Core::new(options());
        core.publish("a", &[1]).unwrap();
        core.publish("a", &[2]).unwrap();
        assert_eq!(core.publish("a", &[3]).unwrap_err().code(), ErrorCode::QueueFull);
        let now = Instant::now();
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        assert_eq!(sent(core.poll_transmit(now, usize::MAX, Window::Kept)), vec![publish(1), publish(2)]);
    }

    #[test]
    fn oversized_messages_are_refused_against_the_smaller_limit() {
        let mut core = Core::new(options());
        assert_eq!(core.publish("a", &[0; 5000]).unwrap_err().code(), ErrorCode::MessageTooLarge);
        core.publish("a", &[0; 3000]).unwrap();
        core.start();
        accept(&mut core, Instant::now(), false, 0).unwrap();
        assert_eq!(core.publish("a", &[0; 3000]).unwrap_err().code(), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn prefix_subscriptions_cover_everything_below_and_invalid_paths_are_refused() {
        let mut core = ClientSession::<Message, u32>::new(CoreOptions { queue_capacity: 10, ..options() });
        core.subscribe("news/", 1).unwrap();
        core.subscribe("news/sport", 2).unwrap();
        assert_eq!(core.handlers_for("news/sport").count(), 2);
        assert_eq!(core.handlers_for("news/weather").count(), 1);
        assert_eq!(core.handlers_for("newsroom").count(), 0);
        assert_eq!(core.unsubscribe("news/").unwrap(), 1);
        assert_eq!(core.handlers_for("news/weather").count(), 0);
        assert_eq!(core.unsubscribe("news/").unwrap_err().code(), ErrorCode::IllegalArgument);
        assert_eq!(core.publish("", b"x").unwrap_err().code(), ErrorCode::IllegalArgument);
        assert_eq!(core.publish("a\nb", b"x").unwrap_err().code(), ErrorCode::IllegalArgument);
    }

    #[test]
    fn a_recovery_resends_what_the_server_missed_and_adopts_the_new_token() {
        let now = Instant::now();
        let mut core = Core::new(options());
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        core.publish("a", &[1]).unwrap();
        core.publish("a", &[2]).unwrap();
        assert_eq!(core.poll_transmit(now, usize::MAX, Window::Kept).len(), 2);
        core.connection_lost(now, Error::new(ErrorCode::CommunicationError, "cut"));
        assert_eq!(core.state(), State::RecoveringReconnect);
        let Frame::ConnectRequest(request) = core.connect_request() else { panic!() };
        assert_eq!(request.reconnect_token, vec![1, 2, 3]);
        accept(&mut core, now, true, 1).unwrap();
        assert_eq!(sent(core.poll_transmit(now, usize::MAX, Window::Kept)), vec![publish(2)]);
        let states: Vec<_> = std::iter::from_fn(|| core.poll_event())
            .filter_map(|e| if let Event::State { to, .. } = e { Some(to) } else { None })
            .collect();
        assert_eq!(
            states,
            [State::Connecting, State::ConnectedActive, State::RecoveringReconnect, State::ConnectedActive]
        );
    }

    #[test]
    fn recovery_gives_up_at_its_deadline_naming_the_last_attempts_error() {
        let now = Instant::now();
        let mut core = Core::new(options());
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        core.connection_lost(now, Error::new(ErrorCode::CommunicationError, "reset"));
        core.connect_request();
        core.connection_lost(now, Error::new(ErrorCode::SocketConnectFail, "refused"));
        assert_eq!(core.poll_timeout(), Some(now + Duration::from_secs(5)));
        assert!(core.handle_timeout(now + Duration::from_secs(4)).is_ok());
        let Err(Ended::Failed(e)) = core.handle_timeout(now + Duration::from_secs(5)) else { panic!() };
        assert_eq!(e.code(), ErrorCode::SocketConnectFail);
        assert!(e.message().contains("refused"), "{e}");
        assert_eq!(core.state(), State::ClosedFailed);
    }

    #[test]
    fn acknowledgements_ride_with_messages_or_go_alone_after_the_delay() {
        let now = Instant::now();
        let mut core = Core::new(options());
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        let deliver = |seq| Frame::Message { seq, body: Message::Deliver { path: "a".into(), data: vec![].into() } };
        core.handle_frame(now, deliver(1)).unwrap();
        assert!(core.poll_transmit(now, usize::MAX, Window::Kept).is_empty());
        assert_eq!(core.poll_timeout(), Some(now + ACK_DELAY));
        assert_eq!(sent(core.poll_transmit(now + ACK_DELAY, usize::MAX, Window::Kept)), vec![Frame::Ack(1)]);
        core.handle_frame(now, deliver(2)).unwrap();
        core.publish("a", &[1]).unwrap();
        assert_eq!(sent(core.poll_transmit(now, usize::MAX, Window::Kept)), vec![Frame::Ack(2), publish(1)]);
        assert_eq!(core.poll_timeout(), Some(now + keep_alive_limit(Duration::from_secs(1))));
    }

    fn refused(seq: u64, action: RefusedAction, path: &str) -> Frame {
        let message = format!("{path} is not permitted for alice");
        Frame::Message { seq, body: Message::Refused { action, path: path.into(), message } }
    }

    /// The events after the handshake's state changes.
    fn events(core: &mut Core) -> Vec<Event<u32>> {
        std::iter::from_fn(|| core.poll_event()).filter(|e| !matches!(e, Event::State { .. })).collect()
    }

    #[test]
    fn a_refused_subscription_loses_exactly_its_own_handler_which_the_event_carries() {
        let now = Instant::now();
        let mut core = Core::new(options());
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        core.subscribe("a/", 1).unwrap();
        core.subscribe("a/b", 2).unwrap();
        core.handle_frame(now, refused(1, RefusedAction::Subscribe, "a/")).unwrap();
        let [Event::Refused { action: RefusedAction::Subscribe, path, error, handler: Some(1) }] =
            &events(&mut core)[..]
        else {
            panic!("one refusal carrying the handler of a/")
        };
        assert_eq!(path, "a/");
        assert_eq!(error.code(), ErrorCode::AccessDenied);
        assert!(error.message().contains("a/ is not permitted for alice"), "{error}");
        assert_eq!(core.handlers_for("a/b").collect::<Vec<_>>(), vec![&2]);
        core.handle_frame(now, refused(2, RefusedAction::Withdrawn, "a/b")).unwrap();
        assert!(matches!(
            &events(&mut core)[..],
            [Event::Refused { action: RefusedAction::Withdrawn, handler: Some(2), .. }]
        ));
        assert_eq!(core.handlers_for("a/b").count(), 0);
    }

    #[test]
    fn a_refused_publication_carries_no_handler_and_leaves_subscriptions_alone() {
        let now = Instant::now();
        let mut core = Core::new(options());
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        core.subscribe("a", 1).unwrap();
        core.handle_frame(now, refused(1, RefusedAction::Publish, "a")).unwrap();
        let [Event::Refused { action: RefusedAction::Publish, handler: None, error, .. }] = &events(&mut core)[..]
        else {
            panic!("one refusal without a handler")
        };
        assert_eq!(error.code(), ErrorCode::AccessDenied);
        assert_eq!(core.handlers_for("a").collect::<Vec<_>>(), vec![&1]);
    }

    #[test]
    fn a_refusal_is_numbered_acknowledged_and_ignored_when_sent_again() {
        let now = Instant::now();
        let mut core = Core::new(options());
        core.start();
        accept(&mut core, now, false, 0).unwrap();
        core.subscribe("a", 1).unwrap();
        let _ = core.poll_transmit(now, usize::MAX, Window::Kept);
        core.handle_frame(now, refused(1, RefusedAction::Subscribe, "a")).unwrap();
        core.handle_frame(now, refused(1, RefusedAction::Subscribe, "a")).unwrap();
        assert_eq!(events(&mut core).len(), 1, "the duplicate is ignored");
        assert_eq!(sent(core.poll_transmit(now + ACK_DELAY, usize::MAX, Window::Kept)), vec![Frame::Ack(1)]);
        let skipped = refused(3, RefusedAction::Subscribe, "a");
        assert!(matches!(core.handle_frame(now, skipped), Err(Ended::Failed(_))), "a gap breaks the protocol");
    }
}
