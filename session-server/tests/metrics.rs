//! `--metrics`: the `session-server` binary serves Prometheus metrics that count what its
//! sessions did, and its metrics listener refuses what is not a scrape without disturbing them.

#[allow(dead_code)]
#[path = "../../tests/common/relay.rs"]
mod relay;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay::Relay;
use session::reconnect::{ReconnectPolicy, ReconnectionStrategy};
use session::{Credentials, ErrorCode, Session, SessionConfig, State};

/// The server binary with its metrics on a free port, killed when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
    port: u16,
    metrics: SocketAddr,
}

impl Server {
    fn start(name: &str) -> Server {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("metrics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (port_file, metrics_port_file) = (dir.join("port"), dir.join("metrics-port"));
        let child = Command::new(env!("CARGO_BIN_EXE_session-server"))
            .args(["--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(["--metrics", "127.0.0.1:0", "--metrics-port-file"])
            .arg(&metrics_port_file)
            .args(["--allow-anonymous", "--user", "alice:secret"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server { child, dir, port: 0, metrics: SocketAddr::from(([127, 0, 0, 1], 0)) };
        server.port = read_port(&mut server.child, &port_file);
        server.metrics.set_port(read_port(&mut server.child, &metrics_port_file));
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/diffusion", self.port)
    }

    /// The body of a scrape, checked to be one.
    fn scrape(&self) -> String {
        let response = exchange(self.metrics, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        body.to_string()
    }

    /// Scrapes until `done` holds for the metrics, up to 10 s; the last scrape.
    fn scrape_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.scrape();
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what} not seen in\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The port the server writes to `file`, once it is there.
fn read_port(child: &mut Child, file: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(port) = std::fs::read_to_string(file) {
            return port.trim().parse().unwrap();
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "no port in {} within 10 s", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `request` and reads the response until the server closes the connection.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request).unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).unwrap();
    String::from_utf8(response).unwrap()
}

/// The value of the sample `sample` (name and labels, as rendered).
fn value(text: &str, sample: &str) -> u64 {
    let line = text.lines().find(|l| l.strip_prefix(sample).is_some_and(|rest| rest.starts_with(' ')));
    let line = line.unwrap_or_else(|| panic!("no sample {sample} in\n{text}"));
    line[sample.len() + 1..].parse().unwrap_or_else(|_| panic!("not a whole number: {line}"))
}

fn sessions(text: &str, state: &str, transport: &str) -> u64 {
    value(text, &format!("session_server_sessions{{state=\"{state}\",transport=\"{transport}\"}}"))
}

/// Runs `promtool check metrics` on `text`. Without promtool the check is skipped, unless CI=true.
fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("cannot run promtool ({e}): install the Debian package prometheus (scripts/install-deps.sh)")
        }
        Err(e) => {
            eprintln!("promtool check metrics skipped: cannot run promtool ({e}); Debian package prometheus");
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

fn config(url: &str) -> SessionConfig {
    SessionConfig::new(url).unwrap()
}

fn alice(url: &str, password: &str) -> SessionConfig {
    let mut config = config(url);
    config.options.principal = "alice".into();
    config.options.credentials = Credentials::Password(password.as_bytes().to_vec());
    config
}

/// A session configuration that keeps reconnecting, every 10 ms for up to 20 s.
fn reconnecting(url: &str) -> SessionConfig {
    let mut config = config(url);
    config.options.reconnection = ReconnectionStrategy {
        timeout: Some(Duration::from_secs(20)),
        policy: ReconnectPolicy::Repeating { attempts: 10_000, delay: Duration::from_millis(10) },
    };
    config
}

fn wait_state(session: &Session, state: State) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.state() != state && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    session.state() == state
}

/// What a subscription received, counted.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<usize>>);

impl Inbox {
    fn handler(&self) -> Arc<dyn session::MessageHandler> {
        let count = self.0.clone();
        Arc::new(move |_: &str, _: &[u8]| *count.lock().unwrap() += 1)
    }

    fn wait_for(&self, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while *self.0.lock().unwrap() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        *self.0.lock().unwrap() >= n
    }
}

/// Subscribes `session` to `news/` and waits until a first message there reaches it.
fn subscribed(session: &Session) -> Inbox {
    let inbox = Inbox::default();
    session.subscribe("news/", inbox.handler()).unwrap();
    // From the subscriber: on its connection, the publication follows the subscription.
    session.publish("news/ready", b"ready").unwrap();
    assert!(inbox.wait_for(1), "the subscription is in place");
    inbox
}

#[test]
fn the_metrics_count_sessions_messages_logins_recoveries_and_refusals() {
    let server = Server::start("count");
    let publisher = Session::connect(alice(&server.url("ws"), "secret"), None).unwrap();
    let refused = Session::connect(alice(&server.url("ws"), "guess"), None).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::AuthenticationFailed);
    let relay = Relay::start(server.addr());
    let subscriber = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    let inbox = subscribed(&subscriber);
    let _polling = Session::connect(config(&server.url("xhr")), None).unwrap();
    for n in 0..3u8 {
        publisher.publish("news/a", &[n]).unwrap();
    }
    assert!(inbox.wait_for(4));
    let not_found = exchange(server.addr(), b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");

    let text = server.scrape();
    assert_eq!(sessions(&text, "attached", "websocket"), 2, "the publisher and the subscriber");
    assert_eq!(sessions(&text, "attached", "polling"), 1);
    assert_eq!(sessions(&text, "detached", "websocket") + sessions(&text, "detached", "polling"), 0);
    assert_eq!(value(&text, "session_server_publications_received_total"), 4);
    assert_eq!(value(&text, "session_server_deliveries_sent_total"), 4);
    assert_eq!(value(&text, "session_server_authentication_failures_total"), 1);
    assert_eq!(value(&text, r#"session_server_refused_connections_total{reason="bad_handshake"}"#), 1);
    assert_eq!(value(&text, r#"session_server_refused_connections_total{reason="max_sessions"}"#), 0);
    assert!(value(&text, "session_server_connections_accepted_total") >= 5, "{text}");
    assert!(value(&text, "session_server_connections_open") >= 3, "{text}");
    assert!(value(&text, "session_server_received_bytes_total") > 0);
    assert!(value(&text, "session_server_sent_bytes_total") > 0);
    assert_eq!(value(&text, r#"session_server_denials_total{action="publish"}"#), 0);
    assert_eq!(value(&text, "session_server_recoveries_total"), 0);
    promtool_check(&text);

    // Cut the subscriber off: its session waits, keeping what is published meanwhile.
    relay.set_down(true);
    relay.cut();
    server.scrape_until("a detached session", |text| sessions(text, "detached", "websocket") == 1);
    publisher.publish("news/b", b"while away").unwrap();
    let text = server.scrape_until("bytes kept for the detached session", |text| {
        value(text, "session_server_detached_retained_bytes") > 0
    });
    assert!(value(&text, "session_server_retained_bytes") >= value(&text, "session_server_detached_retained_bytes"));
    relay.set_down(false);
    assert!(inbox.wait_for(5), "the publication made while away arrives on recovery");
    assert!(wait_state(&subscriber, State::ConnectedActive));
    let text = server.scrape();
    assert_eq!(value(&text, "session_server_recoveries_total"), 1);
    assert_eq!(sessions(&text, "attached", "websocket"), 2);
    assert_eq!(sessions(&text, "detached", "websocket"), 0);
    assert_eq!(value(&text, "session_server_publications_received_total"), 5);
    assert!(value(&text, "session_server_deliveries_sent_total") >= 5);

    // A session of another server that reconnects here is unknown.
    let other = session_server::spawn(session_server::ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_anonymous: true,
        ..Default::default()
    })
    .unwrap();
    let moving = Relay::start(other.addr());
    let stranger = Session::connect(reconnecting(&moving.url("ws", "127.0.0.1")), None).unwrap();
    moving.set_target(server.addr());
    moving.cut();
    assert!(wait_state(&stranger, State::ClosedFailed));
    assert_eq!(stranger.error().unwrap().code(), ErrorCode::UnknownSession);
    let text = server.scrape();
    assert_eq!(value(&text, r#"session_server_failed_recoveries_total{reason="unknown_session"}"#), 1);
    assert_eq!(value(&text, r#"session_server_failed_recoveries_total{reason="other_identity"}"#), 0);
    assert_eq!(value(&text, "session_server_recoveries_total"), 1);
    promtool_check(&text);
}

#[test]
fn the_metrics_listener_answers_only_scrapes_and_refuses_oversized_requests() {
    let server = Server::start("refusals");
    let not_found = exchange(server.metrics, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404 Not Found\r\n"), "{not_found}");
    assert!(not_found.contains("\r\nConnection: close\r\n"), "{not_found}");
    let not_allowed = exchange(server.metrics, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(not_allowed.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{not_allowed}");
    let mut oversized = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    oversized.resize(16 * 1024, b'a');
    let too_large = exchange(server.metrics, &oversized);
    assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
    let garbage = exchange(server.metrics, b"\x16\x03\x01\x02\x00\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");

    // Connections that never send a request hold every metrics slot; sessions are not held up.
    let idle: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(server.metrics).unwrap()).collect();
    let session = Session::connect(config(&server.url("ws")), None).unwrap();
    let inbox = subscribed(&session);
    session.publish("news/x", b"x").unwrap();
    assert!(inbox.wait_for(2));
    drop(idle);
    let text = server.scrape();
    assert_eq!(sessions(&text, "attached", "websocket"), 1);
    assert_eq!(value(&text, "session_server_refused_connections_total{reason=\"bad_handshake\"}"), 0);
}

#[test]
fn metrics_text_counts_connections_refused_at_the_session_limit() {
    let server = session_server::spawn(session_server::ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_anonymous: true,
        max_sessions: 1,
        ..Default::default()
    })
    .unwrap();
    let _first = Session::connect(config(&server.url()), None).unwrap();
    assert!(Session::connect(config(&server.url()), None).is_err());
    let text = server.metrics_text();
    assert_eq!(value(&text, r#"session_server_refused_connections_total{reason="max_sessions"}"#), 1);
    assert_eq!(sessions(&text, "attached", "websocket"), 1);
    assert_eq!(value(&text, "session_server_connections_accepted_total"), 2);
}
