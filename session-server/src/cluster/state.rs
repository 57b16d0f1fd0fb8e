//! What a session served in a cluster keeps beside its recovery buffer: the stream position and
//! subscriptions at each message it numbered, so that whenever the client acknowledges a message
//! the checkpoint from which any node can rebuild the session moves there (no I/O here).

use std::collections::VecDeque;
use std::sync::Arc;

use session::protocol::Message;

use super::record::{Checkpoint, Local, Record};

/// A numbered message: where the session stood once it was numbered.
struct Mark {
    delivered: u64,
    position: u64,
    subscriptions: Arc<[String]>,
    /// A refusal that is not in the stream.
    local: Option<Box<Message>>,
}

/// See the module documentation.
pub(crate) struct ClusterState {
    /// The record as last read or written, and its revision in the bucket.
    pub(crate) record: Record,
    pub(crate) revision: u64,
    /// The subscriptions now.
    pub(crate) subscriptions: Arc<[String]>,
    /// Where the session stood at the last message the client acknowledged.
    base: (u64, u64, Arc<[String]>),
    marks: VecDeque<Mark>,
    /// The last of the client's messages stored in the stream, in order.
    pub(crate) stored: u64,
    /// Whether the record is to be written again (the checkpoint moved, the token changed, or it
    /// is time to refresh it).
    pub(crate) dirty: bool,
    /// Whether a write of the record is under way.
    pub(crate) writing: bool,
}

impl ClusterState {
    /// A session rebuilt from (or just created as) `record`, at revision `revision`.
    pub(crate) fn new(record: Record, revision: u64) -> ClusterState {
        let subscriptions: Arc<[String]> = record.checkpoint.subscriptions.clone().into();
        let base = (record.checkpoint.position, record.checkpoint.delivered, subscriptions.clone());
        ClusterState {
            stored: record.received,
            record,
            revision,
            subscriptions,
            base,
            marks: VecDeque::new(),
            dirty: false,
            writing: false,
        }
    }

    /// Message `delivered` was numbered at stream position `position`; `local` if it is a
    /// refusal that is not in the stream.
    pub(crate) fn numbered(&mut self, delivered: u64, position: u64, local: Option<&Message>) {
        self.marks.push_back(Mark {
            delivered,
            position,
            subscriptions: self.subscriptions.clone(),
            local: local.map(|m| Box::new(m.clone())),
        });
        if local.is_some() {
            self.dirty = true;
        }
    }

    pub(crate) fn subscribe(&mut self, path: &str, subscribed: bool) {
        let mut paths: Vec<String> = self.subscriptions.iter().filter(|p| *p != path).cloned().collect();
        if subscribed {
            paths.push(path.to_string());
        }
        self.subscriptions = paths.into();
    }

    /// The client has every message up to `seq`.
    pub(crate) fn acknowledged(&mut self, seq: u64) {
        while self.marks.front().is_some_and(|m| m.delivered <= seq) {
            if let Some(mark) = self.marks.pop_front() {
                self.base = (mark.position, mark.delivered, mark.subscriptions);
                self.dirty = true;
            }
        }
    }

    /// The record to write: the checkpoint at the last acknowledged message, or, when every
    /// message numbered is acknowledged, at `position` (the stream entries applied so far).
    pub(crate) fn to_write(&self, position: u64) -> Record {
        let (position, delivered, subscriptions) = if self.marks.is_empty() {
            (position.max(self.base.0), self.base.1, &self.subscriptions)
        } else {
            (self.base.0, self.base.1, &self.base.2)
        };
        let locals = self
            .marks
            .iter()
            .filter_map(|m| m.local.as_ref().and_then(|message| Local::of(m.position, message)))
            .collect();
        Record {
            checkpoint: Checkpoint { position, delivered, subscriptions: subscriptions.to_vec(), locals },
            received: self.stored,
            ..self.record.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session::protocol::RefusedAction;

    fn refusal() -> Message {
        Message::Refused { action: RefusedAction::Publish, path: "p".into(), message: "m".into() }
    }

    #[test]
    fn the_checkpoint_follows_acknowledgements_and_keeps_later_local_refusals() {
        let mut state = ClusterState::new(Record::default(), 1);
        state.subscribe("a", true);
        state.numbered(1, 10, None);
        state.subscribe("b/", true);
        state.numbered(2, 12, None);
        state.numbered(3, 12, Some(&refusal()));
        state.numbered(4, 15, None);
        let record = state.to_write(20);
        assert_eq!((record.checkpoint.position, record.checkpoint.delivered), (0, 0));
        assert_eq!(record.checkpoint.locals.len(), 1);
        state.acknowledged(1);
        let record = state.to_write(20);
        assert_eq!((record.checkpoint.position, record.checkpoint.delivered), (10, 1));
        assert_eq!(record.checkpoint.subscriptions, vec!["a".to_string()]);
        state.acknowledged(3);
        let record = state.to_write(20);
        assert_eq!((record.checkpoint.position, record.checkpoint.delivered), (12, 3));
        assert!(record.checkpoint.locals.is_empty());
        assert_eq!(record.checkpoint.subscriptions.len(), 2);
        state.acknowledged(4);
        let record = state.to_write(20);
        assert_eq!((record.checkpoint.position, record.checkpoint.delivered), (20, 4), "all acknowledged");
    }
}
