//! The session server that comes with libsession: speaks protocol v1 over WebSocket and HTTP
//! long polling, authenticates principals, keeps sessions alive with PING and enforces the
//! protocol's limits. It uses the library's protocol and WebSocket framing (`session::protocol`,
//! `session::transport::wsframe`), so that both ends speak the same bytes.
//!
//! The `session-server` binary (src/main.rs) is a thin command line around [`Server`]; the
//! library's tests embed it with [`spawn`].

mod auth;
pub mod cluster;
pub mod config;
mod connection;
mod conversation;
mod frames;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod log;
pub mod metrics;
pub mod policy;
mod poll;
pub mod refusals;
mod sessions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

pub use auth::{authenticate, Decision};
use frames::{Event, FrameError, ServerWs};
use metrics::Refusal;
use policy::{Access, Policy};
use sessions::Transport;

use session::net::Stream;
use session::protocol::{
    self, CloseReason, ConnectRequest, Frame, Message, RefusedAction, SessionId, DEFAULT_MAX_FRAME_SIZE,
    FRAME_HEADER_LEN,
};

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Request paths that accept sessions.
    pub paths: Vec<String>,
    /// Principals and their passwords (`--user`); they get all permissions.
    pub users: HashMap<String, Vec<u8>>,
    /// Principals and the custom credentials they must present; they get all permissions.
    pub custom_credentials: HashMap<String, Vec<u8>>,
    /// Whether sessions without principal and credentials are accepted, with all permissions.
    pub allow_anonymous: bool,
    /// The configuration file's users (with argon2 password hashes), roles and anonymous roles;
    /// replaced while serving with [`AccessSwitch::replace`].
    pub access: Access,
    /// Interval between the server's PINGs.
    pub ping_interval: Duration,
    /// Largest frame the server accepts.
    pub max_frame_size: u32,
    /// Time a new connection has to complete the upgrade and the connect request.
    pub handshake_timeout: Duration,
    /// Sessions served at once; further connections are rejected.
    pub max_sessions: usize,
    /// This instance's number, the `server_instance` of every session id it assigns.
    pub server_instance: u64,
    /// TLS certificate and key: when set, the listener speaks wss:// only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a session whose connection was lost waits for its client to reconnect.
    pub session_keep: Duration,
    /// Messages kept per session for recovery (sent but not acknowledged by the client).
    pub recovery_buffer: usize,
    /// Bytes (paths and data) kept per session for recovery; never less than `max_frame_size`.
    /// Over it the oldest are dropped, and a recovery that needs them reports message loss.
    pub session_retained_bytes: usize,
    /// Bytes kept for recovery over all sessions. Over it the sessions detached longest are
    /// dropped (their recovery gets UNKNOWN_SESSION); attached sessions count but are not dropped.
    pub retained_bytes: usize,
    /// Join a cluster through NATS JetStream ([`cluster`]); `None`: sessions and topics stay in
    /// this process.
    pub cluster: Option<cluster::ClusterOptions>,
}

/// Default of [`ServerConfig::session_retained_bytes`]: 32 MiB.
pub const DEFAULT_SESSION_RETAINED_BYTES: usize = 32 << 20;
/// Default of [`ServerConfig::retained_bytes`]: 256 MiB.
pub const DEFAULT_RETAINED_BYTES: usize = 256 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            paths: vec![session::http::url::DEFAULT_REQUEST_PATH.to_string()],
            users: HashMap::new(),
            custom_credentials: HashMap::new(),
            allow_anonymous: false,
            access: Access::default(),
            ping_interval: Duration::from_secs(10),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 100_000,
            server_instance: rand::random::<u64>() >> 1,
            tls: None,
            session_keep: Duration::from_secs(60),
            recovery_buffer: 100_000,
            session_retained_bytes: DEFAULT_SESSION_RETAINED_BYTES,
            retained_bytes: DEFAULT_RETAINED_BYTES,
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// The [`Policy`] of this configuration: the file's users and roles, with the command
    /// line's users and custom credentials given all permissions.
    pub fn policy(&self) -> Policy {
        self.policy_with(&self.access, self.allow_anonymous)
    }

    fn policy_with(&self, access: &Access, allow_anonymous: bool) -> Policy {
        Policy::new(access, self.users.keys().chain(self.custom_credentials.keys()), allow_anonymous)
    }
}

/// What the server knows about a session it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id.
    pub id: SessionId,
    /// The principal it authenticated as ("" for anonymous).
    pub principal: String,
    /// The session properties the client proposed.
    pub properties: Vec<(String, String)>,
}

/// Why the server tells a session to go away.
type Shutdown = Option<(CloseReason, String)>;

struct Shared {
    config: ServerConfig,
    next_session: AtomicU64,
    registry: sessions::Registry,
    /// Virtual connections of HTTP long polling.
    polls: poll::Channels,
    /// Refusals per client address, for rate-limited logging and delayed authentication failures.
    refusals: refusals::Refusals,
    /// Connections that own a session right now, counted from before their client hears it is
    /// connected (so a client never sees itself connected but uncounted, nor escapes `drain`).
    attached: AtomicUsize,
    shutdown: watch::Sender<Shutdown>,
    /// Set once the server stops accepting: ends the [`Acceptor`]s too.
    stopped: watch::Sender<bool>,
    /// Who may connect and what they may do; replaced as a whole on reload.
    policy: ArcSwap<Policy>,
    /// Argon2 verifications running at once: each takes a core and 19 MiB for milliseconds.
    password_checks: tokio::sync::Semaphore,
    /// What happened so far, for the metrics.
    metrics: metrics::Counters,
    /// The cluster this server is a node of, if any.
    cluster: Option<Arc<cluster::Cluster>>,
}

impl Shared {
    fn new(config: ServerConfig, cluster: Option<Arc<cluster::Cluster>>) -> Arc<Shared> {
        let retention = sessions::RetentionLimits {
            messages: config.recovery_buffer,
            session_bytes: config.session_retained_bytes.max(config.max_frame_size as usize),
            total_bytes: config.retained_bytes,
        };
        let policy = ArcSwap::from_pointee(config.policy());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Shared {
            config,
            next_session: AtomicU64::new(1),
            registry: sessions::Registry::new(retention),
            polls: poll::Channels::default(),
            refusals: refusals::Refusals::default(),
            attached: AtomicUsize::new(0),
            shutdown: watch::channel(None).0,
            stopped: watch::channel(false).0,
            policy,
            password_checks: tokio::sync::Semaphore::new(cores),
            metrics: metrics::Counters::default(),
            cluster,
        })
    }

    /// The policy in force: who may connect and what they may do.
    fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Verifies a configuration file user's password on a blocking thread, so that the
    /// milliseconds it takes do not hold up the sessions this thread serves.
    async fn verify_password(&self, check: auth::PasswordCheck) -> Decision {
        let refused = || Decision::rejected(protocol::ResponseCode::Error, "the server cannot check passwords now");
        let Ok(_permit) = self.password_checks.acquire().await else {
            return refused();
        };
        tokio::task::spawn_blocking(move || check.run()).await.unwrap_or_else(|_| refused())
    }

    /// A refusal of `peer`: `Some(n)` when it is to be logged, `n` being the refusals of that
    /// address left out of the log before it ([`refusals`]).
    fn log_refusal(&self, peer: SocketAddr) -> Option<u32> {
        self.refusals.log(peer.ip(), tokio::time::Instant::now())
    }
}

pub use conversation::{Attached, Ending};

/// The server's session logic without sockets or clock reads of its own: connect requests are
/// answered ([`Node::attach`]) and each connection's part is an [`Attached`] conversation. The
/// library's seeded simulation runs clients' `ClientSession`s against it; the server's
/// connections use the same conversation.
#[doc(hidden)]
pub struct Node(Arc<Shared>);

impl Node {
    /// A server's sessions with `config` (its listening address is not used).
    pub fn new(config: ServerConfig) -> Node {
        Node(Shared::new(config, None))
    }

    /// Answers a CONNECT_REQUEST: the frames to send first and, unless refused, the session
    /// taken (a failed authentication is answered at once).
    pub fn attach(&self, request: &ConnectRequest) -> (Vec<Frame>, Option<Attached>) {
        let peer = ([127, 0, 0, 1], 0).into();
        let (frames, attached, _) = connection::attach_now(&self.0, request, peer, Transport::WebSocket);
        (frames, attached)
    }

    /// The server's metrics in the Prometheus text exposition format.
    pub fn metrics_text(&self) -> String {
        metrics::render_text(&self.0)
    }

    /// Sessions the server keeps.
    pub fn session_count(&self) -> usize {
        self.0.registry.len()
    }

    /// Bytes kept for recovery over all sessions.
    pub fn retained_bytes(&self) -> usize {
        self.0.registry.retained_bytes()
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listening socket.
    /// With [`ServerConfig::cluster`], first joins the cluster: an error names what failed.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Server> {
        let cluster = match &config.cluster {
            Some(options) => {
                Some(cluster::Cluster::join(options, config.session_keep).await.map_err(std::io::Error::other)?)
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Server { listener, shared: Shared::new(config, cluster) })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that closes every session with a reason.
    pub fn closer(&self) -> Closer {
        Closer(self.shared.clone())
    }

    /// A handle that replaces the users and roles while the server runs.
    pub fn access(&self) -> AccessSwitch {
        AccessSwitch(self.shared.clone())
    }

    /// Another acceptor for this server, to run on a thread (and runtime) of its own. Acceptors
    /// share the listening socket and take new connections as they come; a connection is served
    /// where it was accepted, so its I/O never crosses threads.
    pub fn acceptor(&self) -> std::io::Result<Acceptor> {
        let listener = self.listener.as_fd().try_clone_to_owned()?;
        Ok(Acceptor { listener: std::net::TcpListener::from(listener), shared: self.shared.clone() })
    }

    /// Accepts connections until `stop` completes, then closes every session with
    /// [`CloseReason::ServerShutdown`] and returns.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let keep = self.shared.config.session_keep;
        let mut reaper = tokio::time::interval((keep / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        if let Some(cluster) = &self.shared.cluster {
            tokio::spawn(cluster.clone().pump(self.shared.clone(), self.shared.stopped.subscribe()));
        }
        loop {
            tokio::select! {
                _ = reaper.tick() => self.shared.registry.reap(keep),
                accepted = self.listener.accept() => on_accept(&self.shared, accepted).await,
                _ = &mut stop => break,
            }
        }
        self.shared.stopped.send_replace(true);
        self.closer().close_all(CloseReason::ServerShutdown, "server shutting down");
        drain(&self.shared).await;
    }
}

/// Serves an accepted connection on the current runtime; backs off after a failed accept.
async fn on_accept(shared: &Arc<Shared>, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
    match accepted {
        Ok((stream, peer)) => {
            let shared = shared.clone();
            tokio::spawn(async move { serve(shared, stream, peer).await });
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One more thread's share of a server's connections (see [`Server::acceptor`]).
pub struct Acceptor {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

impl Acceptor {
    /// Accepts and serves connections on the current runtime until the server stops, then lets
    /// the sessions served here close (the runtime must live on until they have).
    pub async fn run(self) -> std::io::Result<()> {
        let listener = TcpListener::from_std(self.listener)?;
        let mut stopped = self.shared.stopped.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => on_accept(&self.shared, accepted).await,
                _ = stopped.wait_for(|stopped| *stopped) => break,
            }
        }
        drop(listener);
        drain(&self.shared).await;
        Ok(())
    }
}

/// Once the server stopped: gives the connections serving sessions up to 2 s to send their CLOSE
/// and end.
async fn drain(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while shared.attached.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Closes every session of a server.
#[derive(Clone)]
pub struct Closer(Arc<Shared>);

impl Closer {
    /// Sends CLOSE with `reason` and `message` to every session and ends them.
    pub fn close_all(&self, reason: CloseReason, message: &str) {
        self.0.shutdown.send_replace(Some((reason, message.to_string())));
    }

    /// Sessions the server holds: connected, or waiting for their client to reconnect.
    pub fn session_count(&self) -> usize {
        self.0.registry.len()
    }

    /// What the server knows about the sessions it holds, in no particular order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.0.registry.infos()
    }

    /// Connections serving a session right now.
    pub fn connection_count(&self) -> usize {
        self.0.attached.load(Ordering::SeqCst)
    }

    /// Bytes of deliveries kept for recovery over all sessions (see
    /// [`ServerConfig::retained_bytes`]).
    pub fn retained_bytes(&self) -> usize {
        self.0.registry.retained_bytes()
    }
}

/// Replaces who may connect and what they may do, without touching the sessions (see
/// [`Server::access`]).
#[derive(Clone)]
pub struct AccessSwitch(Arc<Shared>);

impl AccessSwitch {
    /// From now on, new sessions authenticate with the users of `access`, and the policy is
    /// `access`'s roles (anonymous sessions allowed with all permissions if `allow_anonymous`).
    /// The command line's users and custom credentials stay as they were.
    /// Subscriptions the new policy does not allow are withdrawn: removed, and each session told
    /// with REFUSED(WITHDRAWN), whether attached or waiting for its client.
    pub fn replace(&self, access: &Access, allow_anonymous: bool) {
        let policy = Arc::new(self.0.config.policy_with(access, allow_anonymous));
        self.0.policy.store(policy.clone());
        if let Some(cluster) = &self.0.cluster {
            return self.withdraw_through(cluster, &policy);
        }
        let withdrawn = self.0.registry.withdraw(|principal, path| policy.may_subscribe(Some(principal), path));
        if withdrawn.is_empty() {
            return;
        }
        let sessions: std::collections::HashSet<u64> = withdrawn.iter().map(|(s, _)| s.info.id.value).collect();
        tracing::info!(
            subscriptions = withdrawn.len(),
            sessions = sessions.len(),
            "subscriptions withdrawn by the new permissions"
        );
        for (session, path) in withdrawn {
            self.0.metrics.denied(RefusedAction::Withdrawn);
            let message = format!(
                "subscribing to {path} is no longer permitted for {}",
                conversation::shown_principal(&session.info.principal)
            );
            session.state.lock().out.push(Message::Refused { action: RefusedAction::Withdrawn, path, message });
            session.wake.notify_one();
        }
    }

    /// In a cluster, subscriptions are withdrawn through the stream, so that every node numbers
    /// the session's messages alike: the subscription ends, and the client is told, where the
    /// withdrawal entry stands in the stream.
    fn withdraw_through(&self, cluster: &Arc<cluster::Cluster>, policy: &Policy) {
        let withdrawn = self.0.registry.withdrawable(|principal, path| policy.may_subscribe(Some(principal), path));
        if withdrawn.is_empty() {
            return;
        }
        tracing::info!(subscriptions = withdrawn.len(), "subscriptions withdrawn by the new permissions");
        let (cluster, shared) = (cluster.clone(), self.0.clone());
        tokio::spawn(async move {
            for (session, path) in withdrawn {
                shared.metrics.denied(RefusedAction::Withdrawn);
                let message = format!(
                    "subscribing to {path} is no longer permitted for {}",
                    conversation::shown_principal(&session.info.principal)
                );
                if let Err(e) = cluster.withdraw(session.info.id, path, message).await {
                    tracing::warn!(session = %session.info.id, error = %e, "cannot withdraw a subscription through the cluster");
                }
            }
        });
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.0.policy()
    }
}

/// A server running on its own thread, for tests and embedding. Dropping it stops the server.
pub struct ServerHandle {
    addr: SocketAddr,
    secure: bool,
    closer: Closer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://addr/diffusion`, or `wss://` when the server speaks TLS.
    pub fn url(&self) -> String {
        format!("{}://{}/diffusion", if self.secure { "wss" } else { "ws" }, self.addr)
    }

    /// Closes every session with `reason`; the server keeps accepting new ones.
    pub fn close_all(&self, reason: CloseReason, message: &str) {
        self.closer.close_all(reason, message);
    }

    /// Sessions currently served.
    pub fn session_count(&self) -> usize {
        self.closer.session_count()
    }

    /// What the server knows about the sessions it holds.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.closer.sessions()
    }

    /// Connections serving a session right now.
    pub fn connection_count(&self) -> usize {
        self.closer.connection_count()
    }

    /// Bytes of deliveries kept for recovery over all sessions.
    pub fn retained_bytes(&self) -> usize {
        self.closer.retained_bytes()
    }

    /// Stops accepting, closes every session and waits for the server thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts a server on a thread of its own.
pub fn spawn(config: ServerConfig) -> std::io::Result<ServerHandle> {
    let secure = config.tls.is_some();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let server = runtime.block_on(Server::bind(config))?;
    let addr = server.local_addr()?;
    let closer = server.closer();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("session-server".into()).spawn(move || {
        runtime.block_on(server.run(async {
            let _ = stop_rx.await;
        }))
    })?;
    Ok(ServerHandle { addr, secure, closer, stop: Some(stop_tx), thread: Some(thread) })
}

/// Serves an accepted connection. The handshake's futures (TLS, the HTTP request, the connect
/// request) are large and short-lived, so they run boxed: the task every idle session keeps holds
/// only the session's loop.
async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    if let Some((link, attached, shutdown)) = Box::pin(open(&shared, tcp, peer)).await {
        connection::serve(&shared, link, attached, shutdown, peer).await
    }
}

/// The handshake of an accepted connection: TLS, the HTTP request (long polling is served to its
/// end here), the WebSocket upgrade and the connect request; the session it opened or recovered,
/// or `None` if the connection ended here.
async fn open(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(connection::Link, Box<connection::Attached>, watch::Receiver<Shutdown>)> {
    let _ = tcp.set_nodelay(true);
    let config = &shared.config;
    // As in the library: no write may raise SIGPIPE in a process that keeps its default action.
    let tcp = metrics::Metered::new(session::net::QuietTcp(tcp), shared);
    let stream: Stream = match &config.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let accepted =
                timeout(config.handshake_timeout, tokio_rustls::TlsAcceptor::from(tls.clone()).accept(tcp)).await;
            match accepted {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    shared.metrics.refused(Refusal::BadHandshake);
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    shared.metrics.refused(Refusal::BadHandshake);
                    return None;
                }
            }
        }
    };
    // Plain HTTP (long polling) and WebSocket upgrades share the endpoint.
    let max_body = config.max_frame_size as usize + 64 * 1024;
    let mut stream = stream;
    let (request, rest) =
        match timeout(config.handshake_timeout, http::read_request(&mut stream, Vec::new(), max_body)).await {
            Ok(http::Read::Request(request, rest)) if request.is_upgrade() => (request, rest),
            Ok(http::Read::Request(request, rest)) => {
                poll::serve_http(shared.clone(), stream, request, rest, peer).await;
                return None;
            }
            Ok(http::Read::Closed) => return None,
            Ok(http::Read::Bad(why)) => {
                shared.metrics.refused(Refusal::BadHandshake);
                if let Some(unlogged) = shared.log_refusal(peer) {
                    tracing::debug!(%peer, unlogged, why = %log::Untrusted(&why), "bad request");
                }
                let _ = http::write_response(&mut stream, 400, "Bad Request", &[], format!("{why}\n").as_bytes()).await;
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "no request within the handshake timeout");
                shared.metrics.refused(Refusal::BadHandshake);
                return None;
            }
        };
    let accepted = match upgrade(shared, &request) {
        Ok(accepted) => accepted,
        Err((status, reason, body)) => {
            tracing::debug!(%peer, status, "WebSocket upgrade refused");
            shared.metrics.refused(if status == 503 { Refusal::MaxSessions } else { Refusal::BadHandshake });
            let retry = [("Retry-After", "1".to_string())];
            let headers: &[(&str, String)] = if status == 503 { &retry } else { &[] };
            let _ = http::write_response(&mut stream, status, reason, headers, body.as_bytes()).await;
            return None;
        }
    };
    // A CONNECT_REQUEST that came with the upgrade request saves the client a round trip.
    let carried = request
        .header(protocol::CONNECT_HEADER)
        .and_then(|v| protocol::connect_from_header(v.as_bytes(), config.max_frame_size));
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accepted}\r\n"
    );
    if carried.is_some() {
        response.push_str(&format!("{}: {}\r\n", protocol::CONNECT_HEADER, protocol::CONNECT_ACCEPTED));
    }
    response.push_str("\r\n");
    let limit = config.max_frame_size as usize + FRAME_HEADER_LEN;
    // The response goes with the first frame: the CONNECT_RESPONSE, or at once if the client
    // waits for it to send its CONNECT_REQUEST.
    let mut ws = ServerWs::new(stream, &rest, response.into_bytes(), limit);
    let request = match carried {
        Some(request) => Ok(Ok(request)),
        None => match ws.flush().await {
            Ok(()) => timeout(config.handshake_timeout, first_frame(&mut ws, config.max_frame_size)).await,
            Err(_) => return None,
        },
    };
    let request = match request {
        Ok(Ok(request)) => request,
        Ok(Err(reason)) => {
            shared.metrics.refused(Refusal::BadHandshake);
            if let Some(unlogged) = shared.log_refusal(peer) {
                tracing::info!(%peer, unlogged, reason = %log::Untrusted(&reason), "bad connect request");
            }
            let refused = Frame::Close { reason: CloseReason::ProtocolError, message: reason };
            let _ = ws.send(frames::BINARY, &protocol::encode(&refused)).await;
            let _ = ws.close().await;
            return None;
        }
        Err(_) => {
            shared.metrics.refused(Refusal::BadHandshake);
            if let Some(unlogged) = shared.log_refusal(peer) {
                tracing::info!(%peer, unlogged, "no connect request within the handshake timeout");
            }
            let _ = ws.close().await;
            return None;
        }
    };
    // Subscribe before the client learns it is connected, so no close_all can slip in between.
    let shutdown = shared.shutdown.subscribe();
    let (first, attached) = connection::attach(shared, &request, peer, Transport::WebSocket).await;
    let mut link = connection::Link::Ws(Box::new(ws));
    let sent = link.send_first(&first).await;
    match (attached, sent) {
        (Some(attached), Ok(())) => return Some((link, Box::new(attached), shutdown)),
        (Some(attached), Err(())) => connection::detach_now(&attached),
        (None, _) => link.close(true).await,
    }
    None
}

/// The Sec-WebSocket-Accept answer to a WebSocket upgrade request this server takes, or the
/// status, reason and body refusing it.
fn upgrade(shared: &Shared, request: &http::HttpRequest) -> Result<String, (u16, &'static str, &'static str)> {
    if !shared.config.paths.contains(&request.path) {
        return Err((404, "Not Found", "no session endpoint at this path\n"));
    }
    if shared.registry.len() >= shared.config.max_sessions {
        return Err((503, "Service Unavailable", "server is at its session limit; try later\n"));
    }
    let upgrade = request.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    match request.header("sec-websocket-key") {
        Some(key) if request.method == "GET" && upgrade && request.header("sec-websocket-version") == Some("13") => {
            Ok(derive_accept_key(key.as_bytes()))
        }
        _ => Err((400, "Bad Request", "not a WebSocket upgrade request this server takes (GET, version 13, a key)\n")),
    }
}

/// Reads the first frame, which must be a CONNECT_REQUEST. Errors are messages for the client.
async fn first_frame(ws: &mut ServerWs, limit: u32) -> Result<ConnectRequest, String> {
    loop {
        match ws.recv().await? {
            Ok(Event::Binary(bytes)) => {
                let mut frames = protocol::decode_all(&bytes, limit).map_err(|e| e.to_string())?;
                return match (frames.len(), frames.pop()) {
                    (1, Some(Frame::ConnectRequest(r))) => Ok(r),
                    _ => Err("the first message must be exactly one CONNECT_REQUEST frame".into()),
                };
            }
            Ok(Event::Ping(payload)) => ws.pong(&payload).await.map_err(|e| e.to_string())?,
            Ok(Event::Pong) => {}
            Ok(Event::Text) => return Err("the session protocol uses binary messages only".into()),
            Ok(Event::Close) => return Err("connection closed before the connect request".into()),
            Err(FrameError::TooLarge(e) | FrameError::Protocol(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_connection_s_task_stays_small() {
        // Every idle session holds its connection's task all its life: the handshake's large
        // futures and the rare paths' are boxed.
        let shared = super::Shared::new(super::ServerConfig::default(), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let tcp = tokio::net::TcpStream::connect(peer).await.unwrap();
        let task = super::serve(shared, tcp, peer);
        println!("a connection's task: {} bytes", std::mem::size_of_val(&task));
        assert!(std::mem::size_of_val(&task) <= 2304, "{} bytes", std::mem::size_of_val(&task));
    }
}
