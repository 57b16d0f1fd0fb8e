//! Message numbering, acknowledgement and recovery for one direction of a session, shared by
//! client and server. No I/O: the caller sends the frames these produce.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Frame, Message};

/// Acknowledge after this many unacknowledged messages, without waiting for the timer.
pub const ACK_EVERY: u32 = 32;

/// What the sending side keeps of a message for recovery: the message itself, or a form of it
/// that is cheaper to send (the client keeps large publications masked for its WebSocket).
pub trait Retained: Clone {
    /// The message, as it is to be sent again.
    fn message(&self) -> Message;

    /// The bytes it holds, as counted against a byte limit (without building the message).
    fn size(&self) -> usize;
}

impl Retained for Message {
    fn message(&self) -> Message {
        self.clone()
    }

    fn size(&self) -> usize {
        Message::size(self)
    }
}

/// How much an [`Outgoing`] may keep: a number of messages (0: none), and bytes, counted in the
/// [`Outgoing`] and, when `pool` is set, in a total shared with others.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Messages kept at most (0: none).
    pub messages: usize,
    /// Bytes kept at most (`usize::MAX`: no limit beyond the message count).
    pub bytes: usize,
    /// A total shared with other buffers, kept up to date as messages come and go.
    pub pool: Option<Arc<AtomicUsize>>,
}

/// The sending side: numbers messages and keeps the ones not yet acknowledged, so that they can
/// be sent again after a reconnection.
#[derive(Debug)]
pub struct Outgoing<M = Message> {
    next_seq: u64,
    retained: VecDeque<(u64, M)>,
    capacity: usize,
    /// Bytes held by `retained`, and the most it may hold.
    bytes: usize,
    max_bytes: usize,
    pool: Option<Arc<AtomicUsize>>,
    /// Sequence numbers up to this one were dropped unacknowledged: a reconnection that needs
    /// them cannot recover.
    dropped_upto: u64,
}

impl<M> Drop for Outgoing<M> {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// Messages the peer needs are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// The first message the peer is missing.
    pub missing_from: u64,
}

impl<M: Retained> Outgoing<M> {
    /// Keeps up to `capacity` unacknowledged messages (0: none).
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(Limits { messages: capacity, bytes: usize::MAX, pool: None })
    }

    /// Keeps unacknowledged messages within `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Outgoing {
            next_seq: 1,
            retained: VecDeque::new(),
            capacity: limits.messages,
            bytes: 0,
            max_bytes: limits.bytes,
            pool: limits.pool,
            dropped_upto: 0,
        }
    }

    /// Keeps unacknowledged messages within `limits`, numbering them after `delivered`: the
    /// peer is known to have every message up to it (a session rebuilt elsewhere from a
    /// checkpoint), and a peer that claims less cannot recover.
    pub fn resuming_after(limits: Limits, delivered: u64) -> Self {
        let mut out = Self::with_limits(limits);
        out.next_seq = delivered + 1;
        out.dropped_upto = delivered;
        out
    }

    /// Whether another message fits in the recovery buffer without dropping an unacknowledged
    /// one. Senders that must not lose messages send only while this holds (with capacity 0
    /// nothing is kept, so it always holds).
    pub fn has_room(&self) -> bool {
        self.capacity == 0 || self.retained.len() < self.capacity
    }

    /// Numbers `message` and keeps it; returns its number and the message. When the buffer is
    /// full (in messages or bytes), the oldest unacknowledged messages are dropped (recovery that
    /// needs them will report a loss); a message larger than the byte limit is not kept at all.
    pub fn number(&mut self, message: M) -> (u64, M) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = message.size();
        if self.capacity == 0 || size > self.max_bytes {
            self.drop_front(self.retained.len());
            self.dropped_upto = seq;
            return (seq, message);
        }
        let over_bytes = |out: &Self| out.bytes.saturating_add(size) > out.max_bytes;
        while self.retained.len() >= self.capacity || over_bytes(self) {
            self.drop_front(1);
        }
        self.retained.push_back((seq, message.clone()));
        self.count(size as isize);
        (seq, message)
    }

    /// Drops the `n` oldest unacknowledged messages: a recovery that needs them reports a loss.
    fn drop_front(&mut self, n: usize) {
        for _ in 0..n {
            let Some((dropped, message)) = self.retained.pop_front() else { return };
            self.dropped_upto = dropped;
            self.count(-(message.size() as isize));
        }
    }

    fn count(&mut self, delta: isize) {
        self.bytes = self.bytes.wrapping_add_signed(delta);
        if let Some(pool) = &self.pool {
            if delta >= 0 {
                pool.fetch_add(delta as usize, Ordering::Relaxed);
            } else {
                pool.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
            }
        }
    }

    /// The peer has everything up to `seq`. A peer acknowledging a message never sent breaks
    /// the protocol: the error says so, and nothing changes.
    pub fn on_ack(&mut self, seq: u64) -> Result<(), String> {
        if seq > self.last_sent() {
            return Err(format!("acknowledged message {seq}, but the last message sent is {}", self.last_sent()));
        }
        while self.retained.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, message)) = self.retained.pop_front() {
                self.count(-(message.size() as isize));
            }
        }
        Ok(())
    }

    /// The last sequence number used (0 before the first message).
    pub fn last_sent(&self) -> u64 {
        self.next_seq - 1
    }

    /// The frames to send again to a peer that received everything up to `peer_last`, or the loss
    /// that makes recovery impossible.
    pub fn resend_after(&self, peer_last: u64) -> Result<Vec<Frame>, Loss> {
        if peer_last < self.last_sent() && peer_last < self.dropped_upto {
            return Err(Loss { missing_from: peer_last + 1 });
        }
        Ok(self.unsent_after(peer_last))
    }

    /// Retained frames numbered after `seq`, in order.
    pub fn unsent_after(&self, seq: u64) -> Vec<Frame> {
        self.retained
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(s, m)| Frame::Message { seq: *s, body: m.message() })
            .collect()
    }

    /// Messages kept for recovery.
    pub fn retained(&self) -> usize {
        self.retained.len()
    }

    /// Bytes kept for recovery.
    pub fn retained_bytes(&self) -> usize {
        self.bytes
    }
}

impl Outgoing<Message> {
    /// Numbers `message` and keeps it ([`Outgoing::number`]); returns the frame to send.
    pub fn push(&mut self, message: Message) -> Frame {
        let (seq, body) = self.number(message);
        Frame::Message { seq, body }
    }
}

/// Something to send: a frame, or a numbered message in the form its sender keeps it in.
#[derive(Debug, Clone)]
pub enum Item<M> {
    /// A control frame, or a message sent again after a recovery.
    Frame(Frame),
    /// A numbered message sent for the first time.
    Message(u64, M),
}

/// What to do with a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// New: process it.
    New,
    /// Already received (sent again after a reconnection): ignore it.
    Duplicate,
}

/// The receiving side: the last message received in order, and what is not yet acknowledged.
#[derive(Debug, Default)]
pub struct Incoming {
    last: u64,
    unacknowledged: u32,
}

impl Incoming {
    /// The receiving side of a peer whose messages up to `last` were received.
    pub fn resuming_at(last: u64) -> Self {
        Incoming { last, unacknowledged: 0 }
    }

    /// Checks a received sequence number. A gap means the peer broke the protocol.
    pub fn receive(&mut self, seq: u64) -> Result<Receipt, String> {
        if seq <= self.last {
            return Ok(Receipt::Duplicate);
        }
        if seq != self.last + 1 {
            return Err(format!("message {seq} arrived after message {}: messages were skipped", self.last));
        }
        self.last = seq;
        self.unacknowledged += 1;
        Ok(Receipt::New)
    }

    /// The last message received in order (0 before the first).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Whether enough messages await acknowledgement to acknowledge now.
    pub fn ack_now(&self) -> bool {
        self.unacknowledged >= ACK_EVERY
    }

    /// Whether any message awaits acknowledgement.
    pub fn ack_pending(&self) -> bool {
        self.unacknowledged > 0
    }

    /// The ACK to send, resetting the count.
    pub fn take_ack(&mut self) -> Frame {
        self.unacknowledged = 0;
        Frame::Ack(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(n: u8) -> Message {
        Message::Publish { path: "p".into(), data: vec![n].into() }
    }

    fn seqs(frames: &[Frame]) -> Vec<u64> {
        frames.iter().map(|f| if let Frame::Message { seq, .. } = f { *seq } else { 0 }).collect()
    }

    #[test]
    fn messages_are_numbered_from_one_and_forgotten_when_acknowledged() {
        let mut out = Outgoing::new(10);
        for n in 0..5 {
            out.push(publish(n));
        }
        assert_eq!(out.last_sent(), 5);
        out.on_ack(3).unwrap();
        assert_eq!(out.retained(), 2);
        assert_eq!(seqs(&out.resend_after(3).unwrap()), vec![4, 5]);
    }

    #[test]
    fn an_ack_of_a_message_never_sent_is_refused_and_changes_nothing() {
        let mut out = Outgoing::new(10);
        for n in 0..3 {
            out.push(publish(n));
        }
        assert!(out.on_ack(4).unwrap_err().contains("acknowledged message 4"));
        assert_eq!(out.retained(), 3);
        assert!(Outgoing::<Message>::new(10).on_ack(1).is_err(), "nothing sent yet");
        assert!(Outgoing::<Message>::new(10).on_ack(0).is_ok());
    }

    #[test]
    fn recovery_resends_exactly_what_the_peer_missed() {
        let mut out = Outgoing::new(10);
        for n in 0..6 {
            out.push(publish(n));
        }
        out.on_ack(2).unwrap();
        assert_eq!(seqs(&out.resend_after(4).unwrap()), vec![5, 6]);
        assert_eq!(seqs(&out.resend_after(6).unwrap()), Vec::<u64>::new());
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_recovery_that_needs_it_is_a_loss() {
        let mut out = Outgoing::new(2);
        for n in 0..3 {
            assert_eq!(out.has_room(), n < 2);
            out.push(publish(n));
        }
        assert_eq!(out.resend_after(0), Err(Loss { missing_from: 1 }));
        assert_eq!(seqs(&out.resend_after(1).unwrap()), vec![2, 3]);
    }

    #[test]
    fn a_byte_limit_drops_the_oldest_and_counts_in_the_shared_pool() {
        let pool = Arc::new(AtomicUsize::new(0));
        let limits = Limits { messages: 100, bytes: 10, pool: Some(pool.clone()) };
        let mut out = Outgoing::with_limits(limits.clone());
        let four = || Message::Publish { path: "p".into(), data: vec![0; 3].into() };
        for _ in 0..3 {
            out.push(four());
        }
        assert_eq!((out.retained(), out.retained_bytes()), (2, 8), "the third message pushed out the first");
        assert_eq!(out.resend_after(0), Err(Loss { missing_from: 1 }));
        let mut other = Outgoing::with_limits(limits);
        other.push(four());
        assert_eq!(pool.load(Ordering::Relaxed), 12);
        out.on_ack(2).unwrap();
        assert_eq!(pool.load(Ordering::Relaxed), 8);
        drop(out);
        assert_eq!(pool.load(Ordering::Relaxed), 4, "a dropped buffer gives its bytes back");
        other.push(Message::Publish { path: "p".into(), data: vec![0; 10].into() });
        assert_eq!((other.retained(), pool.load(Ordering::Relaxed)), (0, 0), "too large to keep at all");
        assert!(other.resend_after(1).is_err());
    }

    #[test]
    fn without_a_buffer_any_unreceived_message_is_lost() {
        let mut out = Outgoing::new(0);
        out.push(publish(1));
        assert!(out.has_room());
        assert!(out.resend_after(0).is_err());
        assert!(out.resend_after(1).unwrap().is_empty());
    }

    #[test]
    fn duplicates_are_ignored_and_gaps_refused() {
        let mut inc = Incoming::default();
        assert_eq!(inc.receive(1), Ok(Receipt::New));
        assert_eq!(inc.receive(2), Ok(Receipt::New));
        assert_eq!(inc.receive(1), Ok(Receipt::Duplicate));
        assert!(inc.receive(4).is_err());
        assert_eq!(inc.last(), 2);
    }

    #[test]
    fn acknowledgements_are_cumulative_and_batched() {
        let mut inc = Incoming::default();
        for seq in 1..ACK_EVERY as u64 {
            inc.receive(seq).unwrap();
            assert!(!inc.ack_now());
        }
        assert!(inc.ack_pending());
        inc.receive(ACK_EVERY as u64).unwrap();
        assert!(inc.ack_now());
        assert_eq!(inc.take_ack(), Frame::Ack(ACK_EVERY as u64));
        assert!(!inc.ack_pending());
    }
}
