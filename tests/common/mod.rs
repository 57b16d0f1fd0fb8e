//! Shared test helpers: the bundled server in-process, and fake peers for what a real server
//! cannot do (silence, malformed or hostile answers).
#![allow(dead_code)]

pub mod burst;
pub mod cpu;
pub mod external;
pub mod logs;
pub mod pki;
pub mod raw;
pub mod relay;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use session::protocol::{self, ConnectResponse, Frame, ResponseCode, SessionId};
use session::{SessionConfig, State};
use session_server::{ServerConfig, ServerHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-pw";

/// The bundled server on a free loopback port, with one user and anonymous access.
pub fn start_server() -> ServerHandle {
    start_server_with(|_| {})
}

pub fn start_server_with(adjust: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_anonymous: true,
        ..ServerConfig::default()
    };
    config.users.insert(USER.into(), PASSWORD.as_bytes().to_vec());
    adjust(&mut config);
    session_server::spawn(config).expect("server starts")
}

/// Starts an anonymous-friendly server on `port` after `delay`, on another thread.
pub fn start_server_later(port: u16, delay: Duration) -> std::thread::JoinHandle<ServerHandle> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let config = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            allow_anonymous: true,
            ..ServerConfig::default()
        };
        session_server::spawn(config).expect("server starts on the reserved port")
    })
}

/// Settings that reconnect quickly and persistently: at once, then every 10 ms, for 20 s.
pub fn reconnecting(url: &str) -> SessionConfig {
    let mut c = config(url);
    c.options.reconnection = session::reconnect::ReconnectionStrategy {
        timeout: Some(Duration::from_secs(20)),
        policy: session::reconnect::ReconnectPolicy::Repeating { attempts: 10_000, delay: Duration::from_millis(10) },
    };
    c
}

pub fn config(url: &str) -> SessionConfig {
    SessionConfig::new(url).expect("valid url")
}

/// Records state changes for later assertions.
#[derive(Clone, Default)]
pub struct Transitions(pub Arc<Mutex<Vec<(State, State)>>>);

impl Transitions {
    pub fn listener(&self) -> session::session::StateListener {
        let log = self.0.clone();
        Box::new(move |old, new| log.lock().unwrap().push((old, new)))
    }

    pub fn states(&self) -> Vec<State> {
        self.0.lock().unwrap().iter().map(|(_, new)| *new).collect()
    }

    /// Waits up to `limit` for `state` to be reached.
    pub fn wait_for(&self, state: State, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.states().contains(&state) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// A free loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `peer` on every TCP connection accepted on a fresh loopback port, on a thread of its own.
/// Returns the port. The thread ends with the test process.
pub fn fake_peer<F, Fut>(peer: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(peer(stream));
            }
        });
    });
    port
}

/// A fake server that upgrades to WebSocket, reads the connect request, then hands over.
pub async fn accept_ws(stream: TcpStream) -> WebSocketStream<TcpStream> {
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    let _request = ws.next().await;
    ws
}

pub async fn send_frame(ws: &mut WebSocketStream<TcpStream>, frame: &Frame) {
    let _ = ws.send(Message::binary(protocol::encode(frame))).await;
}

pub fn ok_response(ping_interval_ms: u32) -> Frame {
    Frame::ConnectResponse(ConnectResponse {
        version: 1,
        code: ResponseCode::Ok,
        session_id: SessionId { server_instance: 1, value: 1 },
        token: vec![7; 16],
        ping_interval_ms,
        max_frame_size: protocol::DEFAULT_MAX_FRAME_SIZE,
        last_received: 0,
        message: String::new(),
    })
}

/// Collects what a subscription receives: (path, data) in arrival order.
#[derive(Clone, Default)]
pub struct Inbox(pub Arc<Mutex<Vec<Received>>>);

/// A message as a subscription received it: path and data.
pub type Received = (String, Vec<u8>);

impl Inbox {
    pub fn handler(&self) -> Arc<dyn session::MessageHandler> {
        let store = self.0.clone();
        Arc::new(move |path: &str, data: &[u8]| store.lock().unwrap().push((path.to_string(), data.to_vec())))
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits up to `limit` for `n` messages.
    pub fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.len() < n && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.len() >= n
    }

    /// The numbers the messages after the first `skip` begin with (4 bytes, big-endian).
    pub fn numbers(&self, skip: usize) -> Vec<u32> {
        self.0.lock().unwrap().iter().skip(skip).map(|(_, d)| u32::from_be_bytes(d[..4].try_into().unwrap())).collect()
    }
}

/// Two sessions with the server at `url`, one publishing and one subscribed to `path`, the
/// subscription in place: a first message on `path` has arrived (and is in the inbox).
#[allow(dead_code)]
pub fn publisher_and_subscriber(url: &str, path: &str) -> (session::Session, session::Session, Inbox) {
    let publisher = session::Session::connect(config(url), None).unwrap();
    let subscriber = session::Session::connect(config(url), None).unwrap();
    let inbox = Inbox::default();
    subscriber.subscribe(path, inbox.handler()).unwrap();
    // From the subscriber: on its connection, the publication follows the subscription.
    subscriber.publish(path, b"ready").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)), "the subscription to {path} is in place");
    (publisher, subscriber, inbox)
}

/// Waits up to `limit` for `session` to be in `state` (polling: for states that last).
pub fn wait_state(session: &session::Session, state: State, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while session.state() != state && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    session.state() == state
}

/// Waits up to `limit` for `done` to hold; whether it does.
pub fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}
