//! The server's sessions: their recovery state, which survives reconnection, and the topic index
//! that routes publications to subscribers.
//!
//! A session is recovered with its token only by the identity that opened it (principal and kind
//! of credentials); each recovery replaces the token. The index keeps SHA-256 digests of tokens,
//! never the tokens, and compares them in constant time. Unacknowledged messages are kept within
//! a number and a byte limit per session and a byte limit over all sessions; over the total, the
//! sessions detached longest are dropped first.

use std::collections::{HashMap, HashSet};
use std::mem::Discriminant;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::cluster::state::ClusterState;
use super::SessionInfo;
use session::protocol::reliable::{Incoming, Limits, Outgoing};
use session::protocol::{Credentials, Frame, Message, SessionId, TopicPath};

/// Bytes of a session token.
const TOKEN_LEN: usize = 16;

/// How long the total byte limit is not enforced again after dropping detached sessions could not
/// meet it (attached sessions hold the bytes), so that publications do not each scan every session.
const FRUITLESS_PAUSE: Duration = Duration::from_millis(100);

type Digest = [u8; 32];

/// SHA-256 of a token: what the server keeps of it.
pub(crate) fn token_digest(token: &[u8]) -> Digest {
    digest(token)
}

fn digest(token: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token).as_ref());
    out
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len() && expected.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Who opened a session, and so who may recover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    principal: String,
    credentials: Discriminant<Credentials>,
}

impl Identity {
    pub(crate) fn of(principal: &str, credentials: &Credentials) -> Identity {
        Identity { principal: principal.to_string(), credentials: std::mem::discriminant(credentials) }
    }

    /// The identity a cluster's session record names ([`crate::cluster::record::credentials_kind`]).
    pub(crate) fn of_kind(principal: &str, kind: u8) -> Identity {
        let credentials = match kind {
            0 => Credentials::None,
            1 => Credentials::Password(Vec::new()),
            _ => Credentials::Custom(Vec::new()),
        };
        Identity::of(principal, &credentials)
    }
}

/// The limits on what sessions keep for recovery.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetentionLimits {
    /// Messages per session.
    pub(crate) messages: usize,
    /// Bytes per session.
    pub(crate) session_bytes: usize,
    /// Bytes over all sessions.
    pub(crate) total_bytes: usize,
}

/// One session, attached to a connection or waiting for its client to reconnect.
pub(crate) struct ServerSession {
    pub(crate) info: SessionInfo,
    identity: Identity,
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
    /// How the connection that took the session last reaches the server.
    pub(crate) transport: Transport,
    /// In a cluster: the checkpoint kept for recovery on any node.
    pub(crate) cluster: Option<Box<ClusterState>>,
}

impl RecoveryState {
    /// Numbers `message` for the client and keeps it for recovery; in a cluster, notes that it
    /// came at stream entry `position` (`local`: a refusal that is not in the stream).
    pub(crate) fn push_at(&mut self, message: Message, position: Option<u64>, local: bool) {
        let kept = local.then(|| message.clone());
        let frame = self.out.push(message);
        if let (Some(cluster), Some(position), Frame::Message { seq, .. }) = (self.cluster.as_mut(), position, frame) {
            cluster.numbered(seq, position, kept.as_ref());
        }
    }
}

/// What carries a session's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    WebSocket,
    /// HTTP long polling.
    Polling,
}

/// The digests of the tokens that recover a session: the one last handed out and, until the
/// client shows on its new connection that it got that one, the one it recovered with.
#[derive(Clone, Copy)]
struct Keys {
    current: Digest,
    previous: Option<Digest>,
}

#[derive(Default)]
struct Index {
    sessions: HashMap<u64, Arc<ServerSession>>,
    tokens: HashMap<Digest, u64>,
    keys: HashMap<u64, Keys>,
    subscriptions: HashMap<u64, HashSet<String>>,
    exact: HashMap<String, HashSet<u64>>,
    prefixes: HashMap<String, HashSet<u64>>,
}

impl Index {
    /// Hands out a fresh token for session `id`, keeping `previous` valid until confirmed.
    fn issue(&mut self, id: u64, previous: Option<Digest>) -> Vec<u8> {
        let token = rand::random::<[u8; TOKEN_LEN]>().to_vec();
        let current = digest(&token);
        if let Some(old) = self.keys.insert(id, Keys { current, previous }) {
            for key in [Some(old.current), old.previous].into_iter().flatten() {
                self.tokens.remove(&key);
            }
        }
        self.tokens.insert(current, id);
        if let Some(previous) = previous {
            self.tokens.insert(previous, id);
        }
        token
    }
}

/// What a recovery attempt found.
pub(crate) enum Recovery {
    /// The session, marked attached, and the token that replaces the one presented.
    Found(Arc<ServerSession>, Vec<u8>),
    /// No session has this token.
    Unknown,
    /// The token belongs to a session opened by another identity.
    NotOwner,
}

/// All sessions of a server.
pub(crate) struct Registry {
    index: Mutex<Index>,
    limits: RetentionLimits,
    /// Bytes kept by every session's recovery buffer.
    retained: Arc<AtomicUsize>,
    /// Until when enforcing the total limit is paused.
    paused_until: Mutex<Option<Instant>>,
}

impl Registry {
    pub(crate) fn new(limits: RetentionLimits) -> Registry {
        Registry { index: Mutex::default(), limits, retained: Arc::default(), paused_until: Mutex::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.lock().sessions.len()
    }

    /// Bytes kept for recovery over all sessions.
    pub(crate) fn retained_bytes(&self) -> usize {
        self.retained.load(Ordering::Relaxed)
    }

    pub(crate) fn infos(&self) -> Vec<SessionInfo> {
        self.index.lock().sessions.values().map(|s| s.info.clone()).collect()
    }

    /// The sessions held now, to look at without holding up the registry.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ServerSession>> {
        self.index.lock().sessions.values().cloned().collect()
    }

    /// Registers a new session opened by `identity` over `transport` unless `limit` sessions
    /// exist; it starts attached (generation 1). Returns it with its token.
    pub(crate) fn create(
        &self,
        info: SessionInfo,
        identity: Identity,
        transport: Transport,
        limit: usize,
    ) -> Option<(Arc<ServerSession>, Vec<u8>)> {
        let mut index = self.index.lock();
        if index.sessions.len() >= limit {
            return None;
        }
        let id = info.id.value;
        let session = self.new_session(info, identity, transport, 1, 0, Incoming::default(), None);
        index.sessions.insert(id, session.clone());
        let token = index.issue(id, None);
        Some((session, token))
    }

    /// A session not yet registered: generation `generation`, its messages numbered after
    /// `delivered`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_session(
        &self,
        info: SessionInfo,
        identity: Identity,
        transport: Transport,
        generation: u64,
        delivered: u64,
        incoming: Incoming,
        cluster: Option<Box<ClusterState>>,
    ) -> Arc<ServerSession> {
        let limits = Limits {
            messages: self.limits.messages,
            bytes: self.limits.session_bytes,
            pool: Some(self.retained.clone()),
        };
        Arc::new(ServerSession {
            info,
            identity,
            state: Mutex::new(RecoveryState {
                out: Outgoing::resuming_after(limits, delivered),
                incoming,
                generation,
                detached_since: None,
                transport,
                cluster,
            }),
            wake: Notify::new(),
            owner: watch::channel(generation).0,
        })
    }

    /// Registers `session` (rebuilt or created in a cluster) with its subscriptions, unless
    /// `limit` sessions exist.
    pub(crate) fn adopt(&self, session: Arc<ServerSession>, subscriptions: &[String], limit: usize) -> bool {
        let mut index = self.index.lock();
        if index.sessions.len() >= limit {
            return false;
        }
        let id = session.info.id.value;
        index.sessions.insert(id, session);
        for path in subscriptions {
            add_to(&mut index, id, path);
        }
        true
    }

    /// The session with this id, if held here.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ServerSession>> {
        self.index.lock().sessions.get(&id).cloned()
    }

    /// Finds the session `token` recovers, if `identity` opened it; marks it attached (so that it
    /// is not reaped meanwhile) and replaces its token.
    pub(crate) fn recover(&self, token: &[u8], identity: &Identity) -> Recovery {
        let given = digest(token);
        let mut index = self.index.lock();
        let Some(id) = index.tokens.get(&given).copied() else {
            return Recovery::Unknown;
        };
        let (Some(session), Some(keys)) = (index.sessions.get(&id).cloned(), index.keys.get(&id).copied()) else {
            return Recovery::Unknown;
        };
        let known = [Some(keys.current), keys.previous].into_iter().flatten().any(|k| same_secret(&k, &given));
        if !known {
            return Recovery::Unknown;
        }
        if session.identity != *identity {
            return Recovery::NotOwner;
        }
        session.state.lock().detached_since = None;
        let token = index.issue(id, Some(given));
        Recovery::Found(session, token)
    }

    /// The client of session `id` spoke on the connection that handed it its current token: the
    /// token it recovered with no longer works.
    pub(crate) fn confirm_token(&self, id: u64) {
        let mut index = self.index.lock();
        let Some(keys) = index.keys.get_mut(&id) else { return };
        if let Some(previous) = keys.previous.take() {
            index.tokens.remove(&previous);
        }
    }

    /// Forgets `session` if it is the one held under its id.
    pub(crate) fn remove_if(&self, session: &Arc<ServerSession>) {
        let id = session.info.id.value;
        let held = self.index.lock().sessions.get(&id).is_some_and(|s| Arc::ptr_eq(s, session));
        if held {
            self.remove(id);
        }
    }

    /// A cluster's stream entry (un)subscribes session `id`, if held here.
    pub(crate) fn change_subscription(&self, id: SessionId, path: &str, subscribed: bool) {
        let mut index = self.index.lock();
        let Some(session) = index.sessions.get(&id.value).filter(|s| s.info.id == id).cloned() else { return };
        if subscribed {
            add_to(&mut index, id.value, path);
        } else {
            if let Some(paths) = index.subscriptions.get_mut(&id.value) {
                paths.remove(path);
            }
            remove_from(&mut index, path, id.value);
        }
        let mut state = session.state.lock();
        if let Some(cluster) = state.cluster.as_mut() {
            cluster.subscribe(path, subscribed);
        }
    }

    /// A cluster's stream entry `position` tells session `id`, if held here, of a refusal.
    pub(crate) fn refuse_at(&self, id: SessionId, message: Message, position: u64) {
        let Some(session) = self.get(id.value).filter(|s| s.info.id == id) else { return };
        session.state.lock().push_at(message, Some(position), false);
        session.wake.notify_one();
    }

    /// Forgets a session and its subscriptions.
    pub(crate) fn remove(&self, id: u64) {
        remove_locked(&mut self.index.lock(), id);
    }

    /// Forgets `session` if it is the one held under its id and still waits for its client as
    /// its connection `generation` left it (no reconnection has taken it since).
    pub(crate) fn remove_if_detached(&self, session: &Arc<ServerSession>, generation: u64) {
        let mut index = self.index.lock();
        let id = session.info.id.value;
        let held = index.sessions.get(&id).is_some_and(|s| Arc::ptr_eq(s, session));
        let waiting = {
            let state = session.state.lock();
            state.generation == generation && state.detached_since.is_some()
        };
        if held && waiting {
            remove_locked(&mut index, id);
        }
    }

    pub(crate) fn subscribe(&self, id: u64, path: &str) {
        let mut index = self.index.lock();
        if !index.sessions.contains_key(&id) {
            return;
        }
        add_to(&mut index, id, path);
    }

    pub(crate) fn unsubscribe(&self, id: u64, path: &str) {
        let mut index = self.index.lock();
        if let Some(paths) = index.subscriptions.get_mut(&id) {
            paths.remove(path);
        }
        remove_from(&mut index, path, id);
    }

    /// Removes every subscription that `allowed(principal, path)` no longer allows, from
    /// attached and detached sessions alike; returns each session with the path withdrawn.
    pub(crate) fn withdraw(&self, allowed: impl Fn(&str, &str) -> bool) -> Vec<(Arc<ServerSession>, String)> {
        let withdrawn = self.withdrawable(allowed);
        for (session, path) in &withdrawn {
            self.unsubscribe(session.info.id.value, path);
        }
        withdrawn
    }

    /// The subscriptions that `allowed(principal, path)` no longer allows, left in place.
    pub(crate) fn withdrawable(&self, allowed: impl Fn(&str, &str) -> bool) -> Vec<(Arc<ServerSession>, String)> {
        let index = self.index.lock();
        let mut found = Vec::new();
        for (id, paths) in &index.subscriptions {
            let Some(session) = index.sessions.get(id) else { continue };
            for path in paths.iter().filter(|path| !allowed(&session.info.principal, path)) {
                found.push((session.clone(), path.clone()));
            }
        }
        found
    }

    /// Queues `data` for every session subscribed to `path` (once per session, however many of
    /// its subscriptions match) and wakes their connections. Returns how many sessions get it.
    pub(crate) fn publish(&self, path: TopicPath, data: &bytes::Bytes) -> usize {
        self.publish_at(path, data, None)
    }

    /// [`Registry::publish`] of the cluster's stream entry `position`: each session served in a
    /// cluster notes where it stood at the message.
    pub(crate) fn publish_at(&self, path: TopicPath, data: &bytes::Bytes, position: Option<u64>) -> usize {
        let targets: Vec<Arc<ServerSession>> = {
            let index = self.index.lock();
            let session = |id: &u64| index.sessions.get(id).cloned();
            let exact = index.exact.get(&*path);
            let mut prefixed =
                index.prefixes.iter().filter(|(prefix, _)| path.starts_with(prefix.as_str())).map(|(_, ids)| ids);
            match prefixed.next() {
                // Only the path's own subscribers, each once: no set to build.
                None => exact.into_iter().flatten().filter_map(session).collect(),
                Some(first) => {
                    let mut ids: HashSet<u64> = exact.cloned().unwrap_or_default();
                    ids.extend(first);
                    prefixed.for_each(|more| ids.extend(more));
                    ids.iter().filter_map(session).collect()
                }
            }
        };
        for session in &targets {
            session.state.lock().push_at(Message::Deliver { path: path.clone(), data: data.clone() }, position, false);
            session.wake.notify_one();
        }
        let reached = targets.len();
        drop(targets);
        self.enforce_total();
        reached
    }
    /// Keeps the bytes retained over all sessions within the total limit by dropping the sessions
    /// detached longest.
    fn enforce_total(&self) {
        let total = self.limits.total_bytes;
        if self.retained_bytes() <= total {
            return;
        }
        let mut paused_until = self.paused_until.lock();
        if paused_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        let mut detached: Vec<(Instant, u64, usize)> = {
            let index = self.index.lock();
            index
                .sessions
                .values()
                .filter_map(|s| {
                    let state = s.state.lock();
                    state.detached_since.map(|since| (since, s.info.id.value, state.out.retained_bytes()))
                })
                .collect()
        };
        detached.sort_unstable();
        let mut excess = self.retained_bytes().saturating_sub(total);
        for (_, id, bytes) in detached {
            if excess == 0 {
                break;
            }
            tracing::info!(
                session = id,
                bytes,
                "detached session dropped: the server's retained bytes are at their limit"
            );
            self.remove(id);
            excess = excess.saturating_sub(bytes);
        }
        *paused_until = (excess > 0).then(|| Instant::now() + FRUITLESS_PAUSE);
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

fn remove_locked(index: &mut Index, id: u64) {
    index.sessions.remove(&id);
    if let Some(keys) = index.keys.remove(&id) {
        for key in [Some(keys.current), keys.previous].into_iter().flatten() {
            index.tokens.remove(&key);
        }
    }
    for path in index.subscriptions.remove(&id).unwrap_or_default() {
        remove_from(index, &path, id);
    }
}

fn add_to(index: &mut Index, id: u64, path: &str) {
    index.subscriptions.entry(id).or_default().insert(path.to_string());
    let table = if path.ends_with('/') { &mut index.prefixes } else { &mut index.exact };
    table.entry(path.to_string()).or_default().insert(id);
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

    fn registry() -> Registry {
        Registry::new(RetentionLimits { messages: 100, session_bytes: usize::MAX, total_bytes: usize::MAX })
    }

    fn info(value: u64) -> SessionInfo {
        SessionInfo { id: SessionId { server_instance: 1, value }, principal: String::new(), properties: Vec::new() }
    }

    fn alice() -> Identity {
        Identity::of("alice", &Credentials::Password(b"pw".to_vec()))
    }

    fn open(registry: &Registry, value: u64) -> (Arc<ServerSession>, Vec<u8>) {
        registry.create(info(value), alice(), Transport::WebSocket, 10).unwrap()
    }

    fn delivered(session: &ServerSession) -> Vec<String> {
        session
            .state
            .lock()
            .out
            .unsent_after(0)
            .into_iter()
            .map(|f| match f {
                Frame::Message { body: Message::Deliver { path, .. }, .. } => path.to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn recovered(recovery: Recovery) -> Vec<u8> {
        match recovery {
            Recovery::Found(_, token) => token,
            Recovery::Unknown => panic!("unknown"),
            Recovery::NotOwner => panic!("not the owner"),
        }
    }

    #[test]
    fn publications_reach_exact_and_prefix_subscribers_once() {
        let registry = registry();
        let (a, _) = open(&registry, 1);
        let (b, _) = open(&registry, 2);
        registry.subscribe(1, "news/");
        registry.subscribe(1, "news/sport");
        registry.subscribe(2, "news/weather");
        assert_eq!(registry.publish("news/sport".into(), &bytes::Bytes::from_static(b"goal")), 1);
        assert_eq!(registry.publish("news/weather".into(), &bytes::Bytes::from_static(b"rain")), 2);
        assert_eq!(registry.publish("other".into(), &bytes::Bytes::from_static(b"x")), 0);
        assert_eq!(delivered(&a), vec!["news/sport", "news/weather"]);
        assert_eq!(delivered(&b), vec!["news/weather"]);
        registry.unsubscribe(1, "news/");
        assert_eq!(registry.publish("news/weather".into(), &bytes::Bytes::from_static(b"sun")), 1);
        // Two prefixes and the path itself match the same session: one delivery.
        registry.subscribe(2, "news/");
        registry.subscribe(2, "ne");
        assert_eq!(registry.publish("news/weather".into(), &bytes::Bytes::from_static(b"fog")), 1);
        assert_eq!(delivered(&b), vec!["news/weather", "news/weather", "news/weather"]);
    }

    #[test]
    fn removal_forgets_token_and_subscriptions() {
        let registry = registry();
        let (_, token) = open(&registry, 1);
        registry.subscribe(1, "a");
        registry.remove(1);
        assert!(matches!(registry.recover(&token, &alice()), Recovery::Unknown));
        assert_eq!(registry.publish("a".into(), &bytes::Bytes::from_static(b"")), 0);
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn the_session_limit_is_enforced() {
        let registry = registry();
        assert!(registry.create(info(1), alice(), Transport::WebSocket, 1).is_some());
        assert!(registry.create(info(2), alice(), Transport::WebSocket, 1).is_none());
    }

    #[test]
    fn only_the_identity_that_opened_a_session_recovers_it() {
        let registry = registry();
        let (_, token) = open(&registry, 1);
        for stranger in [
            Identity::of("bob", &Credentials::Password(b"pw".to_vec())),
            Identity::of("", &Credentials::None),
            Identity::of("alice", &Credentials::Custom(b"pw".to_vec())),
        ] {
            assert!(matches!(registry.recover(&token, &stranger), Recovery::NotOwner), "{stranger:?}");
        }
        assert!(matches!(registry.recover(&[0; 16], &alice()), Recovery::Unknown));
        assert!(matches!(registry.recover(&token[..15], &alice()), Recovery::Unknown));
        recovered(registry.recover(&token, &alice()));
    }

    #[test]
    fn each_recovery_replaces_the_token_and_the_old_one_lapses_once_the_client_speaks() {
        let registry = registry();
        let (_, first) = open(&registry, 1);
        let second = recovered(registry.recover(&first, &alice()));
        assert_ne!(first, second);
        // The answer carrying `second` may not have arrived: `first` still works, and replaces it.
        let third = recovered(registry.recover(&first, &alice()));
        assert!(matches!(registry.recover(&second, &alice()), Recovery::Unknown), "a token never received lapses");
        registry.confirm_token(1);
        assert!(matches!(registry.recover(&first, &alice()), Recovery::Unknown), "a captured token goes stale");
        recovered(registry.recover(&third, &alice()));
    }

    #[test]
    fn a_connection_that_lost_its_session_drops_it_only_if_no_reconnection_took_it_since() {
        let registry = registry();
        let (session, _) = open(&registry, 1);
        session.state.lock().detached_since = Some(Instant::now());
        // A reconnection takes it (generation 2) before the lost connection gets to drop it.
        {
            let mut state = session.state.lock();
            state.generation = 2;
            state.detached_since = None;
        }
        registry.remove_if_detached(&session, 1);
        assert_eq!(registry.len(), 1, "the session its new connection serves stays");
        session.state.lock().detached_since = Some(Instant::now());
        registry.remove_if_detached(&session, 2);
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn detached_sessions_expire() {
        let registry = registry();
        let (a, _) = open(&registry, 1);
        registry.reap(Duration::from_millis(0));
        assert_eq!(registry.len(), 1, "attached sessions never expire");
        a.state.lock().detached_since = Some(Instant::now() - Duration::from_secs(1));
        registry.reap(Duration::from_millis(500));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn over_the_total_byte_limit_the_sessions_detached_longest_go_first() {
        let registry = Registry::new(RetentionLimits { messages: 100, session_bytes: 1000, total_bytes: 2500 });
        let data = bytes::Bytes::from(vec![0u8; 999]);
        // Sessions 1 to 3 detached 10, 9 and 8 s ago; session 4 attached. Only tokens are kept
        // here, so that a dropped session frees its bytes.
        let tokens: Vec<Vec<u8>> = (1..=4)
            .map(|n| {
                let (session, token) = open(&registry, n);
                registry.subscribe(n, "p");
                if n < 4 {
                    session.state.lock().detached_since = Some(Instant::now() - Duration::from_secs(11 - n));
                }
                token
            })
            .collect();
        registry.publish("p".into(), &data);
        assert_eq!(registry.retained_bytes(), 2000, "sessions 1 and 2, detached longest, are gone");
        let left: HashSet<u64> = registry.infos().iter().map(|i| i.id.value).collect();
        assert_eq!(left, HashSet::from([3, 4]));
        assert!(matches!(registry.recover(&tokens[0], &alice()), Recovery::Unknown));
        registry.publish("p".into(), &data);
        assert_eq!(registry.retained_bytes(), 2000, "each session keeps at most 1000 bytes");
        registry.remove(3);
        registry.remove(4);
        assert_eq!(registry.retained_bytes(), 0);
    }
}
