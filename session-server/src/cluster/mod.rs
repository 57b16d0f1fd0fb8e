//! Session servers that share topics and sessions through NATS JetStream (`--cluster`).
//!
//! What is stored where:
//! - **One stream** (`<name>_entries`, subjects `<name>.>`) holds every publication accepted by
//!   any node (`<name>.t.<path as tokens>`) and each session's own entries: subscriptions,
//!   unsubscriptions and refusals (`<name>.s.<session>`). A client's message is acknowledged
//!   to it only once the stream has stored it; its message id (session and sequence number)
//!   lets the stream drop the client's resends after a recovery.
//! - **Every node applies the stream in order** to the sessions it serves, so that all nodes
//!   number a session's deliveries the same way: message n of a session is the same whichever
//!   node computes it.
//! - **One key-value bucket** (`<name>_sessions`) holds a record per session: who opened it, the
//!   digests of its tokens, and a checkpoint (stream position, last message number,
//!   subscriptions) at the last message the client acknowledged. A node that did not serve the
//!   session rebuilds it from the checkpoint by applying the stream's entries after it, then
//!   serves it.
//!
//! A session's record is written with compare-and-set on its revision, so two nodes never both
//! serve it: the one whose write fails lets go.

pub mod entry;
pub mod record;
pub(crate) mod state;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::timeout;

use state::ClusterState;

use self::entry::Entry;
use self::record::{Local, Record};
use super::sessions::{Identity, ServerSession, Transport};
use super::{SessionInfo, Shared};
use session::protocol::reliable::Incoming;
use session::protocol::{path_matches, Message, RefusedAction, SessionId};

/// How long a request to NATS may take before the node treats JetStream as unreachable.
pub(crate) const NATS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the stream's reader may be quiet before the node checks that it is not stalled.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Bytes of a cluster session's token: the session id (16), then 16 random bytes.
const TOKEN_LEN: usize = 32;

/// How to join a cluster (`--cluster` and the `--nats-*` options).
#[derive(clap::Args, Clone, Default)]
pub struct ClusterOptions {
    /// Join a cluster of session servers through NATS JetStream at these URLs
    /// (nats://HOST:PORT or tls://HOST:PORT, comma-separated: several servers of one NATS
    /// cluster). Without it the server keeps sessions and topics to itself.
    #[arg(long = "cluster", value_name = "URL[,URL...]", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Name of the cluster's stream, bucket and subjects (`NAME_entries`, `NAME_sessions`,
    /// `NAME.>`): nodes with the same name share sessions and topics.
    #[arg(long = "cluster-name", value_name = "NAME", default_value = "libsession", value_parser = cluster_name)]
    pub name: String,
    /// Copies JetStream keeps of the stream and the bucket (1, or 3 in a three-node NATS
    /// cluster so that losing one NATS node loses nothing). Used when this node creates them.
    #[arg(long = "cluster-replicas", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Bytes the stream keeps (reserved in JetStream's storage; default: no limit but age, twice
    /// the session keep time and at least 2 minutes). Over it the oldest entries go, and a
    /// session whose checkpoint is older cannot be recovered (message loss).
    #[arg(long = "cluster-max-bytes", value_name = "BYTES")]
    pub max_bytes: Option<u64>,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", value_name = "USER", requires = "password")]
    pub user: Option<String>,
    /// NATS password (better from the environment variable NATS_PASSWORD).
    #[arg(long = "nats-password", value_name = "PASSWORD", env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// NATS authentication token (better from the environment variable NATS_TOKEN).
    #[arg(long = "nats-token", value_name = "TOKEN", env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// NATS credentials file (JWT and NKey seed, as `nsc` writes it).
    #[arg(long = "nats-creds", value_name = "FILE")]
    pub creds: Option<std::path::PathBuf>,
    /// PEM certificates of the authorities that sign the NATS servers' certificates.
    #[arg(long = "nats-tls-ca", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate for NATS servers that verify clients (with --nats-tls-key).
    #[arg(long = "nats-tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --nats-tls-cert.
    #[arg(long = "nats-tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require TLS to the NATS servers.
    #[arg(long = "nats-tls")]
    pub tls: bool,
}

// Secrets stay out of logs and error messages.
impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("urls", &self.urls)
            .field("name", &self.name)
            .field("replicas", &self.replicas)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

fn cluster_name(name: &str) -> Result<String, String> {
    let fits = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        Ok(name.to_string())
    } else {
        Err("1 to 32 characters among A-Z a-z 0-9 - _".into())
    }
}

/// A node's link to the cluster.
pub(crate) struct Cluster {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    sessions: kv::Store,
    prefix: String,
    /// The stream sequence of the last entry applied to this node's sessions; held while one is
    /// applied, and while a rebuilt session joins them.
    pub(crate) applied: Mutex<u64>,
}

/// What a recovery found in the cluster.
pub(crate) enum Recovered {
    /// The session, served here now, and the token that replaces the one presented.
    Found(Arc<ServerSession>, Vec<u8>),
    Unknown,
    NotOwner,
    /// The messages after the session's checkpoint are no longer in the stream.
    Lost,
    /// JetStream did not answer: the message says why.
    Unavailable(String),
    /// This node serves as many sessions as it may.
    Full,
}

/// Why a record could not be written.
pub(crate) enum WriteError {
    /// Another node took the session over.
    Lost,
    Unavailable,
}

impl Cluster {
    /// Connects to NATS and finds or creates the stream and the bucket.
    pub(crate) async fn join(options: &ClusterOptions, session_keep: Duration) -> Result<Arc<Cluster>, String> {
        let mut connect = async_nats::ConnectOptions::new()
            .name("session-server")
            .connection_timeout(NATS_TIMEOUT)
            .require_tls(options.tls);
        if let (Some(user), Some(password)) = (&options.user, &options.password) {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        if let Some(creds) = &options.creds {
            connect = connect
                .credentials_file(creds)
                .await
                .map_err(|e| format!("cannot read the NATS credentials file {}: {e}", creds.display()))?;
        }
        if let Some(ca) = &options.tls_ca {
            connect = connect.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        let servers: Vec<async_nats::ServerAddr> = options
            .urls
            .iter()
            .map(|url| url.parse().map_err(|e| format!("bad NATS URL {url}: {e}")))
            .collect::<Result<_, _>>()?;
        let client = connect.connect(servers).await.map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(NATS_TIMEOUT);
        let prefix = options.name.clone();
        // Nodes starting together race to create the stream and the bucket, and a JetStream
        // cluster that just started may still be electing its leaders: try for a while.
        let deadline = tokio::time::Instant::now() + JOIN_FOR;
        let (stream, sessions, last) = loop {
            let why = match timeout(NATS_TIMEOUT * 3, open_storage(&js, options, session_keep)).await {
                Ok(Ok(opened)) => break opened,
                Ok(Err(why)) => why,
                Err(_) => "JetStream did not answer".to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(why);
            }
            tracing::info!(%why, "cannot open the cluster's stream and bucket yet; trying again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        Ok(Arc::new(Cluster { client, js, stream, sessions, prefix, applied: Mutex::new(last) }))
    }

    /// Applies the stream's new entries to this node's sessions until the server stops.
    pub(crate) async fn pump(self: Arc<Self>, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            let from = *self.applied.lock() + 1;
            match self.entries_from(from).await {
                Ok(mut messages) => loop {
                    let next = tokio::select! {
                        next = messages.next() => Some(next),
                        _ = tokio::time::sleep(IDLE_CHECK) => None,
                        _ = stopped.wait_for(|stopped| *stopped) => return,
                    };
                    let Some(next) = next else {
                        // A reader that NATS moved (a stream leader lost) can stall without an
                        // error: quiet while the stream has entries not applied, it is replaced.
                        if self.behind().await {
                            tracing::debug!("the cluster's stream reader stalled; reading again");
                            break;
                        }
                        continue;
                    };
                    match next {
                        Some(Ok(message)) => {
                            if std::mem::take(&mut failing) {
                                tracing::info!("reading the cluster's stream again");
                            }
                            if !self.apply(&shared, &message) {
                                self.skip_lost_entries(&shared).await;
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "the cluster's stream failed; reading it again");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot read the cluster's stream; trying again");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stopped.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    /// Whether the stream has entries this node has not applied.
    async fn behind(&self) -> bool {
        let mut stream = self.stream.clone();
        match timeout(NATS_TIMEOUT, stream.info()).await {
            Ok(Ok(info)) => info.state.last_sequence > *self.applied.lock(),
            _ => false,
        }
    }

    async fn entries_from(&self, from: u64) -> Result<consumer::pull::Ordered, String> {
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{}.>", self.prefix),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        };
        let consumer = timeout(NATS_TIMEOUT, self.stream.create_consumer(config))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    }

    /// Applies one entry of the stream to the sessions served here. False when entries before
    /// it were skipped (a consumer that NATS recreated can resume past some): the stream is to
    /// be read again from the first entry not applied.
    fn apply(&self, shared: &Shared, message: &jetstream::Message) -> bool {
        let Ok(info) = message.info() else { return true };
        let seq = info.stream_sequence;
        let mut applied = self.applied.lock();
        if seq <= *applied {
            return true;
        }
        if seq != *applied + 1 {
            tracing::debug!(
                seq,
                applied = *applied,
                "entries of the cluster's stream skipped by its reader; reading again"
            );
            return false;
        }
        match entry::decode(&message.payload) {
            Ok(entry) => apply_live(shared, seq, entry),
            Err(why) => tracing::warn!(seq, %why, "unreadable entry in the cluster's stream skipped"),
        }
        *applied = seq;
        true
    }

    /// After a gap: if the entries not yet applied are gone from the stream (its limits; they
    /// only leave from its start), the sessions served here missed messages and are closed with
    /// MESSAGE_LOSS, and the node goes on from the stream's first entry.
    async fn skip_lost_entries(&self, shared: &Shared) {
        let mut stream = self.stream.clone();
        let Ok(Ok(info)) = timeout(NATS_TIMEOUT, stream.info()).await else { return };
        let first = info.state.first_sequence;
        let mut applied = self.applied.lock();
        if first > *applied + 1 {
            tracing::error!(
                missed_from = *applied + 1,
                first,
                "entries of the cluster's stream left it before this node applied them: closing its sessions"
            );
            *applied = first - 1;
            let message = "this server fell behind the cluster's stream and its sessions missed messages";
            shared.shutdown.send_replace(Some((session::protocol::CloseReason::MessageLoss, message.into())));
        }
    }

    /// Whether the node is connected to a NATS server now.
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Sends `entry`, the client's message `seq` of `session` (or a message of the node's own
    /// when `seq` is 0), to the stream; the future resolves once it is stored.
    pub(crate) async fn store(
        &self,
        session: SessionId,
        seq: u64,
        entry: &Entry,
    ) -> Result<jetstream::context::PublishAckFuture, String> {
        // Sent while disconnected, the entry would wait in the client and be stored once NATS is
        // back, after its publisher was told it was refused.
        if !self.connected() {
            return Err("not connected to NATS".into());
        }
        let mut headers = async_nats::HeaderMap::new();
        if seq > 0 {
            headers.insert("Nats-Msg-Id", format!("{}-{seq}", entry::key(session)).as_str());
        }
        let sent = self.js.publish_with_headers(entry.subject(&self.prefix), headers, entry.encode());
        match timeout(NATS_TIMEOUT, sent).await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Writes `session`'s record if it changed; the revision must be the one last read or
    /// written, or another node serves the session now.
    pub(crate) async fn write(&self, session: &ServerSession) -> Result<(), WriteError> {
        let (record, revision) = {
            let applied = self.applied.lock();
            let mut state = session.state.lock();
            let Some(cluster) = state.cluster.as_mut() else { return Ok(()) };
            cluster.dirty = false;
            cluster.writing = true;
            (cluster.to_write(*applied), cluster.revision)
        };
        let key = entry::key(session.info.id);
        let written = timeout(NATS_TIMEOUT, self.sessions.update(&key, record.encode(), revision)).await;
        let mut state = session.state.lock();
        let Some(cluster) = state.cluster.as_mut() else { return Ok(()) };
        cluster.writing = false;
        match written {
            Ok(Ok(revision)) => {
                cluster.revision = revision;
                cluster.record = record;
                Ok(())
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(WriteError::Lost),
            _ => {
                cluster.dirty = true;
                Err(WriteError::Unavailable)
            }
        }
    }

    /// Writes `session`'s record once more, when its connection is gone (after any write under
    /// way).
    pub(crate) async fn write_last(&self, session: &ServerSession) -> Result<(), WriteError> {
        wait_for_write(session).await;
        self.write(session).await
    }

    /// Deletes a closed session's record: it can no longer be recovered.
    pub(crate) fn forget(&self, id: SessionId) {
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            let _ = timeout(NATS_TIMEOUT, sessions.purge(entry::key(id))).await;
        });
    }

    /// Opens a session served here, its record stored in the bucket. Its id is random, and
    /// unique in the cluster (the bucket refuses a second record of an id).
    pub(crate) async fn create(
        &self,
        shared: &Shared,
        request: &session::protocol::ConnectRequest,
        transport: Transport,
    ) -> Result<(Arc<ServerSession>, Vec<u8>), String> {
        let identity = Identity::of(&request.principal, &request.credentials);
        for _ in 0..3 {
            let id = SessionId { server_instance: shared.config.server_instance, value: rand::random::<u64>() >> 1 };
            let token = new_token(id);
            let record = Record {
                principal: request.principal.clone(),
                credentials: record::credentials_kind(&request.credentials),
                properties: request.properties.clone(),
                token: super::sessions::token_digest(&token).to_vec(),
                ..Record::default()
            };
            let info = SessionInfo { id, principal: request.principal.clone(), properties: request.properties.clone() };
            let session = {
                let applied = self.applied.lock();
                let mut record = record.clone();
                record.checkpoint.position = *applied;
                let state = ClusterState::new(record, 0);
                let session = shared.registry.new_session(
                    info,
                    identity.clone(),
                    transport,
                    1,
                    0,
                    Incoming::default(),
                    Some(Box::new(state)),
                );
                if !shared.registry.adopt(session.clone(), &[], shared.config.max_sessions) {
                    return Err("server is at its session limit".into());
                }
                session
            };
            let first = session.state.lock().cluster.as_ref().map(|c| c.record.clone()).unwrap_or_default();
            match timeout(NATS_TIMEOUT, self.sessions.create(entry::key(id), first.encode())).await {
                Ok(Ok(revision)) => {
                    if let Some(cluster) = session.state.lock().cluster.as_mut() {
                        cluster.revision = revision;
                    }
                    return Ok((session, token));
                }
                Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    shared.registry.remove_if(&session);
                }
                Ok(Err(e)) => {
                    shared.registry.remove_if(&session);
                    return Err(format!("the cluster cannot store sessions now: {e}"));
                }
                Err(_) => {
                    shared.registry.remove_if(&session);
                    return Err("the cluster cannot store sessions now: JetStream did not answer".into());
                }
            }
        }
        Err("no free session id".into())
    }

    /// Finds the session `token` recovers in the bucket and serves it here: the copy this node
    /// serves if it is current, or one rebuilt from the record's checkpoint.
    pub(crate) async fn recover(
        &self,
        shared: &Shared,
        token: &[u8],
        identity: &Identity,
        transport: Transport,
    ) -> Recovered {
        let Some(id) = token_session(token) else { return Recovered::Unknown };
        let key = entry::key(id);
        let given = super::sessions::token_digest(token);
        for _ in 0..3 {
            let entry = match timeout(NATS_TIMEOUT, self.sessions.entry(key.clone())).await {
                Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => entry,
                Ok(Ok(_)) => return Recovered::Unknown,
                Ok(Err(e)) => return Recovered::Unavailable(format!("the cluster cannot read sessions now: {e}")),
                Err(_) => {
                    return Recovered::Unavailable(
                        "the cluster cannot read sessions now: JetStream did not answer".into(),
                    )
                }
            };
            let Ok(mut record) = Record::decode(&entry.value) else {
                tracing::warn!(session = %id, "unreadable session record");
                return Recovered::Unknown;
            };
            let known = super::sessions::same_secret(&record.token, &given)
                || record.previous_token.as_ref().is_some_and(|p| super::sessions::same_secret(p, &given));
            if !known {
                return Recovered::Unknown;
            }
            if Identity::of_kind(&record.principal, record.credentials) != *identity {
                return Recovered::NotOwner;
            }
            let token = new_token(id);
            let digest = super::sessions::token_digest(&token).to_vec();
            if let Some(local) = shared.registry.get(id.value).filter(|s| s.info.id == id) {
                wait_for_write(&local).await;
                // Taken: a connection that lost it does not drop it meanwhile.
                let was_detached = local.state.lock().detached_since.take();
                let current = local.state.lock().cluster.as_ref().map(|c| c.revision) == Some(entry.revision);
                if current {
                    let mut record = {
                        let applied = self.applied.lock();
                        let state = local.state.lock();
                        state.cluster.as_ref().map(|c| c.to_write(*applied)).unwrap_or_default()
                    };
                    record.token = digest;
                    record.previous_token = Some(given.to_vec());
                    match self.claim(&key, &record, entry.revision).await {
                        Ok(revision) => {
                            if let Some(cluster) = local.state.lock().cluster.as_mut() {
                                cluster.revision = revision;
                                cluster.record = record;
                            }
                            return Recovered::Found(local, token);
                        }
                        Err(Some(unavailable)) => {
                            local.state.lock().detached_since = was_detached;
                            return unavailable;
                        }
                        Err(None) => {
                            local.state.lock().detached_since = was_detached;
                            continue;
                        }
                    }
                }
                // Served here on a connection not yet found dead, and served elsewhere since:
                // this copy is stale.
                shared.registry.remove_if(&local);
                let generation = local.state.lock().generation + 1;
                local.owner.send_replace(generation);
            }
            record.token = digest;
            record.previous_token = Some(given.to_vec());
            let revision = match self.claim(&key, &record, entry.revision).await {
                Ok(revision) => revision,
                Err(Some(unavailable)) => return unavailable,
                Err(None) => continue,
            };
            let info = SessionInfo { id, principal: record.principal.clone(), properties: record.properties.clone() };
            let locals: VecDeque<Local> = record.checkpoint.locals.clone().into();
            let position = record.checkpoint.position;
            let delivered = record.checkpoint.delivered;
            let incoming = Incoming::resuming_at(record.received);
            let state = ClusterState::new(record, revision);
            let session = shared.registry.new_session(
                info,
                identity.clone(),
                transport,
                1,
                delivered,
                incoming,
                Some(Box::new(state)),
            );
            return match self.catch_up(shared, session.clone(), position, locals).await {
                Ok(()) => Recovered::Found(session, token),
                Err(failed) => failed,
            };
        }
        Recovered::Unavailable("the session's record keeps changing".into())
    }

    /// Writes a recovered session's record with its new token: `Err(None)` when another node
    /// wrote it first (read it again).
    async fn claim(&self, key: &str, record: &Record, revision: u64) -> Result<u64, Option<Recovered>> {
        match timeout(NATS_TIMEOUT, self.sessions.update(key, record.encode(), revision)).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(None),
            Ok(Err(e)) => Err(Some(Recovered::Unavailable(format!("the cluster cannot store sessions now: {e}")))),
            Err(_) => Err(Some(Recovered::Unavailable(
                "the cluster cannot store sessions now: JetStream did not answer".into(),
            ))),
        }
    }

    /// Applies the stream's entries after `position` to a rebuilt session, with the refusals
    /// its record numbered in between, until it has every entry this node applied; then it
    /// joins the sessions served here.
    async fn catch_up(
        &self,
        shared: &Shared,
        session: Arc<ServerSession>,
        position: u64,
        mut locals: VecDeque<Local>,
    ) -> Result<(), Recovered> {
        let mut at = position;
        let join = |locals: &mut VecDeque<Local>| {
            number_locals(&session, locals, u64::MAX);
            let subscriptions: Vec<String> =
                session.state.lock().cluster.as_ref().map(|c| c.subscriptions.to_vec()).unwrap_or_default();
            if shared.registry.adopt(session.clone(), &subscriptions, shared.config.max_sessions) {
                Ok(())
            } else {
                Err(Recovered::Full)
            }
        };
        {
            let applied = self.applied.lock();
            number_locals(&session, &mut locals, at);
            if at >= *applied {
                return join(&mut locals);
            }
        }
        let unavailable = |e: String| Recovered::Unavailable(format!("the cluster cannot replay the session now: {e}"));
        let mut messages = self.entries_from(at + 1).await.map_err(unavailable)?;
        loop {
            let message = match timeout(NATS_TIMEOUT, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(unavailable(e.to_string())),
                Ok(None) | Err(_) => return Err(unavailable("the stream did not answer".into())),
            };
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            if seq <= at {
                continue;
            }
            if seq != at + 1 {
                // The entries after the checkpoint are gone (the stream's limits), or the
                // reader skipped some: either way this session cannot be rebuilt exactly.
                return Err(if at == position { Recovered::Lost } else { unavailable("entries skipped".into()) });
            }
            let applied = self.applied.lock();
            if seq > *applied {
                return join(&mut locals);
            }
            match entry::decode(&message.payload) {
                Ok(entry) => apply_private(&session, seq, &entry),
                Err(why) => tracing::warn!(seq, %why, "unreadable entry in the cluster's stream skipped"),
            }
            at = seq;
            number_locals(&session, &mut locals, at);
            if at == *applied {
                return join(&mut locals);
            }
        }
    }

    /// Withdraws `path` from `session` through the stream, telling its client why.
    pub(crate) async fn withdraw(&self, session: SessionId, path: String, message: String) -> Result<(), String> {
        let entry = Entry::Refuse { session, action: RefusedAction::Withdrawn, path, message };
        self.store(session, 0, &entry).await?.await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// How long a node tries to open the cluster's stream and bucket at start.
const JOIN_FOR: Duration = Duration::from_secs(30);

/// Finds or creates the cluster's stream and bucket; returns them with the stream's last
/// sequence.
async fn open_storage(
    js: &jetstream::Context,
    options: &ClusterOptions,
    session_keep: Duration,
) -> Result<(stream::Stream, kv::Store, u64), String> {
    let prefix = &options.name;
    let replicas = options.replicas as usize;
    // Entries stay long enough for a session detached as long as it may be to catch up, and
    // the stream drops a client's resends for as long.
    let keep = (session_keep * 2).max(Duration::from_secs(120));
    let stream = js
        .get_or_create_stream(stream::Config {
            name: format!("{prefix}_entries"),
            subjects: vec![format!("{prefix}.>")],
            max_bytes: options.max_bytes.map_or(-1, |bytes| bytes.min(i64::MAX as u64) as i64),
            max_age: keep,
            duplicate_window: keep,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot find or create the stream {prefix}_entries: {e}"))?;
    // The bucket's stream, as the client's own create_key_value makes it (that call first
    // asks for account details that NATS 2.9's answer lacks).
    let bucket = format!("{prefix}_sessions");
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        // A record is written at least every third of this while its session is served:
        // one left alone this long belongs to a session that expired.
        max_age: session_keep + Duration::from_secs(5),
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot find or create the bucket {bucket}: {e}"))?;
    let sessions = js.get_key_value(&bucket).await.map_err(|e| format!("cannot open the bucket {bucket}: {e}"))?;
    let mut info = stream.clone();
    let last =
        info.info().await.map_err(|e| format!("cannot read the stream {prefix}_entries: {e}"))?.state.last_sequence;
    Ok((stream, sessions, last))
}

/// Waits (up to [`NATS_TIMEOUT`]) until no write of `session`'s record is under way.
async fn wait_for_write(session: &ServerSession) {
    let deadline = tokio::time::Instant::now() + NATS_TIMEOUT;
    while session.state.lock().cluster.as_ref().is_some_and(|c| c.writing) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn new_token(id: SessionId) -> Vec<u8> {
    let mut token = Vec::with_capacity(TOKEN_LEN);
    token.extend_from_slice(&id.server_instance.to_be_bytes());
    token.extend_from_slice(&id.value.to_be_bytes());
    token.extend_from_slice(&rand::random::<[u8; 16]>());
    token
}

fn token_session(token: &[u8]) -> Option<SessionId> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    let instance = u64::from_be_bytes(token[..8].try_into().ok()?);
    let value = u64::from_be_bytes(token[8..16].try_into().ok()?);
    Some(SessionId { server_instance: instance, value })
}

/// Applies a stream entry to the sessions served here (the node's `applied` lock held).
fn apply_live(shared: &Shared, seq: u64, entry: Entry) {
    let registry = &shared.registry;
    match entry {
        Entry::Publish { path, data } => {
            registry.publish_at(path.into(), &data, Some(seq));
        }
        Entry::Subscribe { session, path } => registry.change_subscription(session, &path, true),
        Entry::Unsubscribe { session, path } => registry.change_subscription(session, &path, false),
        Entry::Refuse { session, action, path, message } => {
            if action == RefusedAction::Withdrawn {
                registry.change_subscription(session, &path, false);
            }
            registry.refuse_at(session, entry::refused(action, path, message), seq);
        }
    }
}

/// Applies a stream entry to a session being rebuilt, as [`apply_live`] would have.
fn apply_private(session: &ServerSession, seq: u64, entry: &Entry) {
    let mut state = session.state.lock();
    let state = &mut *state;
    let Some(cluster) = state.cluster.as_mut() else { return };
    let own = entry.session() == Some(session.info.id);
    let message = match entry {
        Entry::Publish { path, data } if cluster.subscriptions.iter().any(|s| path_matches(s, path)) => {
            Message::Deliver { path: path.as_str().into(), data: data.clone() }
        }
        Entry::Subscribe { path, .. } | Entry::Unsubscribe { path, .. } if own => {
            cluster.subscribe(path, matches!(entry, Entry::Subscribe { .. }));
            return;
        }
        Entry::Refuse { action, path, message, .. } if own => {
            if *action == RefusedAction::Withdrawn {
                cluster.subscribe(path, false);
            }
            entry::refused(*action, path.clone(), message.clone())
        }
        _ => return,
    };
    state.push_at(message, Some(seq), false);
}

/// Numbers the recorded refusals that came after stream entries up to `upto`.
fn number_locals(session: &ServerSession, locals: &mut VecDeque<Local>, upto: u64) {
    while locals.front().is_some_and(|l| l.position <= upto) {
        let Some(local) = locals.pop_front() else { return };
        push_local(session, local.position, local.message());
    }
}

/// Numbers a refusal that is not in the stream, after stream entry `position`.
pub(crate) fn push_local(session: &ServerSession, position: u64, message: Message) {
    session.state.lock().push_at(message, Some(position), true);
    session.wake.notify_one();
}
