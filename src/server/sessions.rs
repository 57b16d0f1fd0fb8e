//! The server's sessions: their recovery state, which survives reconnection, and the topic index
//! that routes publications to subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::SessionInfo;
use crate::protocol::reliable::{Incoming, Outgoing};
use crate::protocol::Message;

/// One session, attached to a connection or waiting for its client to reconnect.
pub(crate) struct ServerSession {
    pub(crate) info: SessionInfo,
    pub(crate) token: Vec<u8>,
    pub(crate) state: Mutex<RecoveryState>,
    /// Wakes the attached connection when messages await delivery.
    pub(crate) wake: Notify,
    /// The generation of the connection that owns the session; a reconnection bumps it, and the
    /// previous connection, if still there, steps aside.
    pub(crate) owner: watch::Sender<u64>,
}

/// What recovery needs: numbering and unacknowledged messages in both directions.
pub(crate) struct RecoveryState {
    pub(crate) out: Outgoing,
    pub(crate) incoming: Incoming,
    pub(crate) generation: u64,
    pub(crate) detached_since: Option<Instant>,
}

#[derive(Default)]
struct Index {
    sessions: HashMap<u64, Arc<ServerSession>>,
    tokens: HashMap<Vec<u8>, u64>,
    subscriptions: HashMap<u64, HashSet<String>>,
    exact: HashMap<String, HashSet<u64>>,
    prefixes: HashMap<String, HashSet<u64>>,
}

/// All sessions of a server.
#[derive(Default)]
pub(crate) struct Registry {
    index: Mutex<Index>,
}

impl Registry {
    pub(crate) fn len(&self) -> usize {
        self.index.lock().sessions.len()
    }

    pub(crate) fn infos(&self) -> Vec<SessionInfo> {
        self.index.lock().sessions.values().map(|s| s.info.clone()).collect()
    }

    /// Registers a new session unless `limit` sessions exist; it starts attached (generation 1).
    pub(crate) fn create(
        &self,
        info: SessionInfo,
        token: Vec<u8>,
        capacity: usize,
        limit: usize,
    ) -> Option<Arc<ServerSession>> {
        let mut index = self.index.lock();
        if index.sessions.len() >= limit {
            return None;
        }
        let id = info.id.value;
        let session = Arc::new(ServerSession {
            info,
            token: token.clone(),
            state: Mutex::new(RecoveryState {
                out: Outgoing::new(capacity),
                incoming: Incoming::default(),
                generation: 1,
                detached_since: None,
            }),
            wake: Notify::new(),
            owner: watch::channel(1).0,
        });
        index.sessions.insert(id, session.clone());
        index.tokens.insert(token, id);
        Some(session)
    }

    pub(crate) fn by_token(&self, token: &[u8]) -> Option<Arc<ServerSession>> {
        let index = self.index.lock();
        index.tokens.get(token).and_then(|id| index.sessions.get(id)).cloned()
    }

    /// Forgets a session and its subscriptions.
    pub(crate) fn remove(&self, id: u64) {
        let mut index = self.index.lock();
        if let Some(session) = index.sessions.remove(&id) {
            index.tokens.remove(&session.token);
        }
        for path in index.subscriptions.remove(&id).unwrap_or_default() {
            remove_from(&mut index, &path, id);
        }
    }

    pub(crate) fn subscribe(&self, id: u64, path: &str) {
        let mut index = self.index.lock();
        if !index.sessions.contains_key(&id) {
            return;
        }
        index.subscriptions.entry(id).or_default().insert(path.to_string());
        let table = if path.ends_with('/') { &mut index.prefixes } else { &mut index.exact };
        table.entry(path.to_string()).or_default().insert(id);
    }

    pub(crate) fn unsubscribe(&self, id: u64, path: &str) {
        let mut index = self.index.lock();
        if let Some(paths) = index.subscriptions.get_mut(&id) {
            paths.remove(path);
        }
        remove_from(&mut index, path, id);
    }

    /// Queues `data` for every session subscribed to `path` (once per session, however many of
    /// its subscriptions match) and wakes their connections. Returns how many sessions get it.
    pub(crate) fn publish(&self, path: &str, data: &bytes::Bytes) -> usize {
        let targets: Vec<Arc<ServerSession>> = {
            let index = self.index.lock();
            let mut ids: HashSet<u64> = index.exact.get(path).cloned().unwrap_or_default();
            for (prefix, subscribers) in &index.prefixes {
                if path.starts_with(prefix.as_str()) {
                    ids.extend(subscribers);
                }
            }
            ids.iter().filter_map(|id| index.sessions.get(id)).cloned().collect()
        };
        for session in &targets {
            session.state.lock().out.push(Message::Deliver { path: path.to_string(), data: data.clone() });
            session.wake.notify_one();
        }
        targets.len()
    }

    /// Forgets sessions whose client has been gone longer than `keep`.
    pub(crate) fn reap(&self, keep: Duration) {
        let expired: Vec<u64> = {
            let index = self.index.lock();
            index
                .sessions
                .values()
                .filter(|s| s.state.lock().detached_since.is_some_and(|since| since.elapsed() > keep))
                .map(|s| s.info.id.value)
                .collect()
        };
        for id in expired {
            tracing::info!(session = id, "session expired waiting for its client to reconnect");
            self.remove(id);
        }
    }
}

fn remove_from(index: &mut Index, path: &str, id: u64) {
    let table = if path.ends_with('/') { &mut index.prefixes } else { &mut index.exact };
    if let Some(ids) = table.get_mut(path) {
        ids.remove(&id);
        if ids.is_empty() {
            table.remove(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, SessionId};

    fn info(value: u64) -> SessionInfo {
        SessionInfo { id: SessionId { server_instance: 1, value }, principal: String::new(), properties: Vec::new() }
    }

    fn delivered(session: &ServerSession) -> Vec<String> {
        session
            .state
            .lock()
            .out
            .unsent_after(0)
            .into_iter()
            .map(|f| match f {
                Frame::Message { body: Message::Deliver { path, .. }, .. } => path,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn publications_reach_exact_and_prefix_subscribers_once() {
        let registry = Registry::default();
        let a = registry.create(info(1), vec![1], 100, 10).unwrap();
        let b = registry.create(info(2), vec![2], 100, 10).unwrap();
        registry.subscribe(1, "news/");
        registry.subscribe(1, "news/sport");
        registry.subscribe(2, "news/weather");
        assert_eq!(registry.publish("news/sport", &bytes::Bytes::from_static(b"goal")), 1);
        assert_eq!(registry.publish("news/weather", &bytes::Bytes::from_static(b"rain")), 2);
        assert_eq!(registry.publish("other", &bytes::Bytes::from_static(b"x")), 0);
        assert_eq!(delivered(&a), vec!["news/sport", "news/weather"]);
        assert_eq!(delivered(&b), vec!["news/weather"]);
        registry.unsubscribe(1, "news/");
        assert_eq!(registry.publish("news/weather", &bytes::Bytes::from_static(b"sun")), 1);
    }

    #[test]
    fn removal_forgets_token_and_subscriptions() {
        let registry = Registry::default();
        registry.create(info(1), vec![9], 100, 10).unwrap();
        registry.subscribe(1, "a");
        registry.remove(1);
        assert!(registry.by_token(&[9]).is_none());
        assert_eq!(registry.publish("a", &bytes::Bytes::from_static(b"")), 0);
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn the_session_limit_is_enforced() {
        let registry = Registry::default();
        assert!(registry.create(info(1), vec![1], 1, 1).is_some());
        assert!(registry.create(info(2), vec![2], 1, 1).is_none());
    }

    #[test]
    fn detached_sessions_expire() {
        let registry = Registry::default();
        let a = registry.create(info(1), vec![1], 1, 10).unwrap();
        registry.reap(Duration::from_millis(0));
        assert_eq!(registry.len(), 1, "attached sessions never expire");
        a.state.lock().detached_since = Some(Instant::now() - Duration::from_secs(1));
        registry.reap(Duration::from_millis(500));
        assert_eq!(registry.len(), 0);
    }
}
