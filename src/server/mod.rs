//! The bundled session server: speaks protocol v1 over WebSocket, authenticates principals, keeps
//! sessions alive with PING and enforces the protocol's limits.
//!
//! `session-server` (src/bin) is a thin command line around [`Server`]; tests embed it with
//! [`spawn`].

mod auth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use auth::{authenticate, Decision};

use crate::protocol::{self, CloseReason, ConnectRequest, Frame, SessionId, DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN};
use crate::transport::Stream;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Request paths that accept sessions.
    pub paths: Vec<String>,
    /// Principals and their passwords.
    pub users: HashMap<String, Vec<u8>>,
    /// Principals and the custom credentials they must present.
    pub custom_credentials: HashMap<String, Vec<u8>>,
    /// Whether sessions without principal and credentials are accepted.
    pub allow_anonymous: bool,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            paths: vec![crate::session::url::DEFAULT_REQUEST_PATH.to_string()],
            users: HashMap::new(),
            custom_credentials: HashMap::new(),
            allow_anonymous: false,
            ping_interval: Duration::from_secs(10),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 100_000,
            server_instance: rand::random::<u64>() >> 1,
            tls: None,
        }
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
    sessions: Mutex<HashMap<u64, SessionInfo>>,
    shutdown: watch::Sender<Shutdown>,
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let (shutdown, _) = watch::channel(None);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                config,
                next_session: AtomicU64::new(1),
                sessions: Mutex::new(HashMap::new()),
                shutdown,
            }),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that closes every session with a reason.
    pub fn closer(&self) -> Closer {
        Closer(self.shared.clone())
    }

    /// Accepts connections until `stop` completes, then closes every session with
    /// [`CloseReason::ServerShutdown`] and returns.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        tokio::spawn(async move { serve(shared, stream, peer).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = &mut stop => break,
            }
        }
        self.closer().close_all(CloseReason::ServerShutdown, "server shutting down");
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.shared.sessions.lock().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

    /// Sessions currently served.
    pub fn session_count(&self) -> usize {
        self.0.sessions.lock().len()
    }

    /// What the server knows about the sessions it serves, in no particular order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.0.sessions.lock().values().cloned().collect()
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

    /// What the server knows about the sessions it serves.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.closer.sessions()
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

/// Keeps a session in the server's table while it lives.
struct SessionSlot(Arc<Shared>, u64);

impl SessionSlot {
    /// Registers `info`, unless the server is at its session limit.
    fn claim(shared: &Arc<Shared>, info: SessionInfo) -> Option<SessionSlot> {
        let mut sessions = shared.sessions.lock();
        if sessions.len() >= shared.config.max_sessions {
            return None;
        }
        let value = info.id.value;
        sessions.insert(value, info);
        Some(SessionSlot(shared.clone(), value))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.lock().remove(&self.1);
    }
}

// The upgrade callback's result type is tungstenite's.
#[allow(clippy::result_large_err)]
async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let config = &shared.config;
    let stream: Stream = match &config.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let accepted =
                timeout(config.handshake_timeout, tokio_rustls::TlsAcceptor::from(tls.clone()).accept(tcp)).await;
            match accepted {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let limit = config.max_frame_size as usize + FRAME_HEADER_LEN;
    let ws_config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let gate = shared.clone();
    let check_path = move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode, body: &str| {
            let mut refusal = ErrorResponse::new(Some(body.into()));
            *refusal.status_mut() = status;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                refusal.headers_mut().insert("retry-after", "1".parse().expect("valid header value"));
            }
            Err(refusal)
        };
        if !gate.config.paths.iter().any(|p| p == request.uri().path()) {
            refuse(StatusCode::NOT_FOUND, "no session endpoint at this path\n")
        } else if gate.sessions.lock().len() >= gate.config.max_sessions {
            refuse(StatusCode::SERVICE_UNAVAILABLE, "server is at its session limit; try later\n")
        } else {
            Ok(response)
        }
    };
    let upgraded = timeout(
        config.handshake_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(ws_config)),
    )
    .await;
    let mut ws = match upgraded {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket upgrade refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "WebSocket upgrade timed out");
            return;
        }
    };
    let request = match timeout(config.handshake_timeout, first_frame(&mut ws, config.max_frame_size)).await {
        Ok(Ok(request)) => request,
        Ok(Err(reason)) => {
            tracing::info!(%peer, %reason, "bad connect request");
            let _ = send(&mut ws, &Frame::Close { reason: CloseReason::ProtocolError, message: reason }).await;
            let _ = ws.close(None).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "no connect request within the handshake timeout");
            let _ = ws.close(None).await;
            return;
        }
    };
    let mut decision = authenticate(config, &request);
    let id = SessionId {
        server_instance: config.server_instance,
        value: shared.next_session.fetch_add(1, Ordering::SeqCst),
    };
    let info = SessionInfo { id, principal: request.principal.clone(), properties: request.properties.clone() };
    let slot = if decision.accepted() { SessionSlot::claim(&shared, info) } else { None };
    if decision.accepted() && slot.is_none() {
        decision = Decision::rejected(protocol::ResponseCode::Rejected, "server is at its session limit");
    }
    let response = decision.response(config, id);
    // Subscribe before the client learns it is connected, so no close_all can slip in between.
    let shutdown = shared.shutdown.subscribe();
    if send(&mut ws, &Frame::ConnectResponse(response)).await.is_err() || !decision.accepted() {
        tracing::info!(%peer, principal = %request.principal, reason = decision.reason(), "session refused");
        let _ = ws.close(None).await;
        return;
    }
    let properties: Vec<String> = request.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    tracing::info!(session = %id, %peer, principal = %request.principal, properties = ?properties, "session opened");
    let reason = serve_session(&shared, &mut ws, shutdown).await;
    tracing::info!(session = %id, %peer, %reason, "session closed");
    drop(slot);
}

/// Reads the first frame, which must be a CONNECT_REQUEST. Errors are messages for the client.
async fn first_frame(ws: &mut WebSocketStream<Stream>, limit: u32) -> Result<ConnectRequest, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                let mut frames = protocol::decode_all(&bytes, limit).map_err(|e| e.to_string())?;
                return match (frames.len(), frames.pop()) {
                    (1, Some(Frame::ConnectRequest(r))) => Ok(r),
                    _ => Err("the first message must be exactly one CONNECT_REQUEST frame".into()),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => return Err("the session protocol uses binary messages only".into()),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed before the connect request".into()),
        }
    }
}

async fn send(ws: &mut WebSocketStream<Stream>, frame: &Frame) -> Result<(), ()> {
    ws.send(Message::binary(protocol::encode(frame))).await.map_err(|_| ())
}

/// Serves an accepted session until it ends; returns why it ended.
async fn serve_session(
    shared: &Shared,
    ws: &mut WebSocketStream<Stream>,
    mut shutdown: watch::Receiver<Shutdown>,
) -> String {
    let config = &shared.config;
    let silence_limit = config.ping_interval * 2 + Duration::from_millis(500);
    let mut deadline = Instant::now() + silence_limit;
    let mut pings = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut nonce = 0u64;
    let close = |reason: CloseReason, message: String| Frame::Close { reason, message };
    loop {
        tokio::select! {
            message = ws.next() => {
                deadline = Instant::now() + silence_limit;
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return "connection closed by the client".into(),
                    Some(Ok(_)) => {
                        let _ = send(ws, &close(CloseReason::ProtocolError, "binary messages only".into())).await;
                        return "client sent a text message".into();
                    }
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        let _ = send(ws, &close(CloseReason::FrameTooLarge, e.to_string())).await;
                        let _ = ws.close(None).await;
                        return format!("client sent a message over the size limit: {e}");
                    }
                    Some(Err(e)) => return format!("connection failed: {e}"),
                };
                let frames = match protocol::decode_all(&bytes, config.max_frame_size) {
                    Ok(frames) => frames,
                    Err(e) => {
                        let reason = match e {
                            protocol::DecodeError::TooLarge { .. } => CloseReason::FrameTooLarge,
                            _ => CloseReason::ProtocolError,
                        };
                        let _ = send(ws, &close(reason, e.to_string())).await;
                        let _ = ws.close(None).await;
                        return format!("client sent a bad frame: {e}");
                    }
                };
                for frame in frames {
                    match frame {
                        Frame::Ping(n) => {
                            if send(ws, &Frame::Pong(n)).await.is_err() {
                                return "connection failed while answering a ping".into();
                            }
                        }
                        Frame::Pong(_) => {}
                        Frame::Close { reason, message } => {
                            let _ = ws.close(None).await;
                            return format!("closed by the client ({reason}: {message})");
                        }
                        other => {
                            let _ = send(ws, &close(CloseReason::ProtocolError, "unexpected frame".into())).await;
                            let _ = ws.close(None).await;
                            return format!("client sent an unexpected frame: {other:?}");
                        }
                    }
                }
            }
            _ = pings.tick() => {
                nonce += 1;
                if send(ws, &Frame::Ping(nonce)).await.is_err() {
                    return "connection failed while sending a ping".into();
                }
            }
            _ = sleep_until(deadline) => {
                let _ = send(ws, &close(CloseReason::KeepAliveTimeout, "nothing received from the client".into())).await;
                return format!("client silent for {} ms", silence_limit.as_millis());
            }
            changed = shutdown.changed() => {
                let Some((reason, message)) = shutdown.borrow_and_update().clone().filter(|_| changed.is_ok()) else {
                    continue;
                };
                let _ = send(ws, &close(reason, message.clone())).await;
                let _ = ws.close(None).await;
                return format!("closed by the server: {message}");
            }
        }
    }
}
