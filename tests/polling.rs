//! HTTP long polling: directly, cascading from WebSocket when proxies or balancers stop it, with
//! the same messaging and recovery.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::external::{haproxy, nginx, shared_dir, tool, External};
use common::relay::Relay;
use common::*;
use session::proxy::{Proxy, ProxyAuth, ProxySetting};
use session::transport::Transport;
use session::{ErrorCode, Session, SessionConfig, State};

fn cascade(url: &str) -> SessionConfig {
    let mut c = config(url);
    c.options.transports = vec![Transport::WebSocket, Transport::HttpPolling];
    c
}

fn via(mut c: SessionConfig, proxy: Proxy) -> SessionConfig {
    c.options.proxy = ProxySetting::Use(proxy);
    c
}

/// Publishes to itself and checks the message comes back.
fn round_trip(session: &Session, path: &str) {
    let inbox = Inbox::default();
    session.subscribe(path, inbox.handler()).unwrap();
    session.publish(path, b"over polling").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(10)), "no message back on {path}");
    assert_eq!(inbox.0.lock().unwrap()[0].1, b"over polling");
}

/// A server that opens polling sessions named `poll_id` and answers every poll at once, empty,
/// counting them.
async fn empty_at_once(
    stream: tokio::net::TcpStream,
    poll_id: &'static str,
    polls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut stream = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0usize);
        let mut body = vec![0; length];
        let _ = stream.read_exact(&mut body).await;
        let answer = if head.starts_with("POST") && !head.contains("c=") {
            let frame = session::protocol::encode(&ok_response(10_000));
            let mut answer =
                format!("HTTP/1.1 200 OK\r\nX-Poll-Id: {poll_id}\r\nContent-Length: {}\r\n\r\n", frame.len())
                    .into_bytes();
            answer.extend_from_slice(&frame);
            answer
        } else {
            if head.starts_with("GET") {
                polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
        };
        if stream.get_mut().write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// A fake polling server answering every poll empty at once, naming its channel `id`: its port
/// and the count of polls it got.
fn answering_empty_at_once(id: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    (fake_peer(move |stream| empty_at_once(stream, id, counted.clone())), polls)
}

#[test]
fn polls_answered_empty_at_once_back_off() {
    let (port, polls) = answering_empty_at_once("p1");
    let session = Session::connect(config(&format!("xhr://127.0.0.1:{port}/diffusion")), None).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let count = polls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(session.state(), State::ConnectedActive);
    // 50, 100, 200, 400, 800 ms...: a handful in 2 s, not thousands.
    assert!((2..=10).contains(&count), "{count} polls in 2 s");
}

#[test]
fn a_poll_id_that_would_reshape_the_request_line_is_refused() {
    let (port, polls) = answering_empty_at_once("p1&r=999 HTTP/1.0");
    let error = Session::connect(config(&format!("xhr://127.0.0.1:{port}/diffusion")), None).unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidConnectionProtocol, "{error}");
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 0, "no poll went out with it");
}

#[test]
fn xhr_urls_poll_directly() {
    let server = start_server();
    let url = format!("xhr://127.0.0.1:{}/diffusion", server.addr().port());
    let session = Session::connect(config(&url), None).unwrap();
    assert_eq!(session.transport(), Some(Transport::HttpPolling));
    round_trip(&session, "direct");
    session.close();
}

#[test]
fn keep_alive_pings_travel_over_polling() {
    let server = start_server_with(|c| c.ping_interval = Duration::from_millis(100));
    let url = format!("xhr://127.0.0.1:{}/diffusion", server.addr().port());
    let session = Session::connect(config(&url), None).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(session.state(), State::ConnectedActive);
    assert_eq!(server.connection_count(), 1);
}

fn tinyproxy_without_connect() -> Option<External> {
    let program = tool("tinyproxy")?;
    let dir = shared_dir();
    let port = common::external::free_port();
    let d = dir.path().display();
    let conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nLogFile \"{d}/tinyproxy.log\"\nPidFile \"{d}/tinyproxy.pid\"\n\
         Allow 127.0.0.1\nConnectPort 0\nMaxClients 100\n"
    );
    std::fs::write(dir.path().join("tinyproxy.conf"), conf).unwrap();
    let conf = dir.path().join("tinyproxy.conf");
    Some(External::start("tinyproxy", &program, &["-d", "-c", conf.to_str().unwrap()], port, dir))
}

#[test]
fn a_proxy_refusing_connect_makes_the_cascade_fall_back_to_polling() {
    let server = start_server();
    let Some(proxy) = tinyproxy_without_connect() else { return };
    let http = Proxy::Http { host: "127.0.0.1".into(), port: proxy.port, auth: None, tls: false };
    // WebSocket alone: the tunnel is refused.
    let e = Session::connect(via(config(&server.url()), http.clone()), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ProxyTunnelRefused, "{e}");
    // The cascade ends on polling, with absolute-form requests through the proxy.
    let session = Session::connect(via(cascade(&server.url()), http), None).unwrap();
    assert_eq!(session.transport(), Some(Transport::HttpPolling));
    round_trip(&session, "cascaded");
    assert!(
        proxy.output().contains(&format!("GET http://127.0.0.1:{}/diffusion", server.addr().port())),
        "{}",
        proxy.output()
    );
}

/// Proxies that answer for an unreachable server (squid with 503) or drop the request
/// (tinyproxy): the error does not blame the server alone.
#[test]
fn an_error_through_a_proxy_names_the_proxy_too() {
    let url = format!("ws://127.0.0.1:{}/diffusion", closed_port());
    let Some(squid) = squid_without_connect(("pu", "pp")) else { return };
    let auth = Some(ProxyAuth::Any { user: "pu".into(), password: "pp".into() });
    let http = Proxy::Http { host: "127.0.0.1".into(), port: squid.port, auth, tls: false };
    let e = Session::connect(via(cascade(&url), http), None).unwrap_err();
    let through = format!("through proxy 127.0.0.1:{} was answered with HTTP/1.1 503", squid.port);
    assert!(e.message().contains(&through) && e.message().contains("by the server or by the proxy"), "{e}");
    let Some(tinyproxy) = tinyproxy_without_connect() else { return };
    let http = Proxy::Http { host: "127.0.0.1".into(), port: tinyproxy.port, auth: None, tls: false };
    let e = Session::connect(via(cascade(&url), http), None).unwrap_err();
    assert!(e.message().contains(&format!("through proxy 127.0.0.1:{} failed", tinyproxy.port)), "{e}");
}

fn squid_without_connect(user: (&str, &str)) -> Option<External> {
    let program = tool("squid")?;
    let htpasswd = tool("htpasswd")?;
    let dir = shared_dir();
    let port = common::external::free_port();
    let d = dir.path().display();
    let file = dir.path().join("passwd");
    let ok = std::process::Command::new(htpasswd)
        .args(["-b", "-c", "-B"])
        .arg(&file)
        .args([user.0, user.1])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = format!(
        "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\ncache_log {d}/cache.log\naccess_log {d}/access.log\n\
         cache deny all\ncache_mem 8 MB\ncoredump_dir {d}\nvisible_hostname localhost\nshutdown_lifetime 0 seconds\n\
         auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\nauth_param basic realm libsession-test\n\
         acl CONNECT method CONNECT\nacl authenticated proxy_auth REQUIRED\n\
         http_access deny CONNECT\nhttp_access allow authenticated\nhttp_access deny all\n",
        file.display()
    );
    std::fs::write(dir.path().join("squid.conf"), conf).unwrap();
    let conf = dir.path().join("squid.conf");
    // A service name of its own: squids running at once must not share shared-memory segments.
    let service = format!("libsessiontest{port}");
    Some(External::start("squid", &program, &["-N", "-n", &service, "-f", conf.to_str().unwrap()], port, dir))
}

#[test]
fn squid_denying_connect_is_passed_by_polling_with_proxy_authentication() {
    let server = start_server();
    let Some(proxy) = squid_without_connect(("pu", "pp")) else { return };
    let auth = Some(ProxyAuth::Any { user: "pu".into(), password: "pp".into() });
    let http = Proxy::Http { host: "127.0.0.1".into(), port: proxy.port, auth, tls: false };
    let e = Session::connect(via(config(&server.url()), http.clone()), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ProxyTunnelRefused, "{e}");
    assert!(e.message().contains("403"), "{e}");
    let session = Session::connect(via(cascade(&server.url()), http), None).unwrap();
    assert_eq!(session.transport(), Some(Transport::HttpPolling));
    round_trip(&session, "through-squid");
}

#[test]
fn nginx_dropping_the_upgrade_headers_makes_the_cascade_poll() {
    let server = start_server();
    let servers = format!(
        "    server {{\n        listen 127.0.0.1:{{port}};\n        location /diffusion {{\n            \
         proxy_pass http://127.0.0.1:{};\n            proxy_http_version 1.1;\n            proxy_read_timeout 1h;\n        }}\n    }}",
        server.addr().port()
    );
    let Some(lb) = nginx(&servers) else { return };
    let url = format!("ws://127.0.0.1:{}/diffusion", lb.port);
    let e = Session::connect(config(&url), None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::HandshakeRecvFail, "{e}");
    assert!(e.message().contains("400"), "{e}");
    let session = Session::connect(cascade(&url), None).unwrap();
    assert_eq!(session.transport(), Some(Transport::HttpPolling));
    round_trip(&session, "behind-nginx");
}

#[test]
fn every_failure_is_named_when_the_whole_cascade_fails() {
    let mut c = cascade(&format!("ws://127.0.0.1:{}/diffusion", closed_port()));
    c.options.transports = vec![Transport::WebSocket, Transport::HttpPolling, Transport::WebSocket];
    let e = Session::connect(c, None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SocketConnectFail);
    assert!(e.message().contains("WEBSOCKET:") && e.message().contains("HTTP_POLLING:"), "{e}");
}

#[test]
fn polling_sessions_stick_to_their_server_through_haproxy_and_recover_after_a_cut() {
    let a = start_server_with(|c| c.server_instance = 0xA);
    let b = start_server_with(|c| c.server_instance = 0xB);
    let sections = format!(
        "frontend sessions\n    mode http\n    bind 127.0.0.1:{{port}}\n    default_backend pool\n\n\
         backend pool\n    mode http\n    balance roundrobin\n    cookie SERVERID insert indirect nocache\n    \
         server a 127.0.0.1:{} cookie a\n    server b 127.0.0.1:{} cookie b\n",
        a.addr().port(),
        b.addr().port()
    );
    let Some(lb) = haproxy(&sections) else { return };
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], lb.port)));
    let url = relay.url("xhr", "127.0.0.1");
    let sessions: Vec<Session> = (0..6).map(|_| Session::connect(reconnecting(&url), None).unwrap()).collect();
    let ids: Vec<_> = sessions.iter().map(|s| *s.id().unwrap()).collect();
    assert!(ids.iter().any(|i| i.server_instance == 0xA) && ids.iter().any(|i| i.server_instance == 0xB));
    for (i, s) in sessions.iter().enumerate() {
        round_trip(s, &format!("before/{i}"));
    }
    relay.cut();
    std::thread::sleep(Duration::from_millis(300));
    for (i, s) in sessions.iter().enumerate() {
        assert!(wait_state(s, State::ConnectedActive, Duration::from_secs(10)));
        assert_eq!(*s.id().unwrap(), ids[i]);
        round_trip(s, &format!("after/{i}"));
    }
    assert_eq!(a.session_count() + b.session_count(), 6);
}

#[test]
fn ten_thousand_messages_each_way_over_polling_survive_cuts_exactly_once_in_order() {
    common::burst::ten_thousand_each_way_through_twenty_cuts("xhr");
}

/// A request refused during an outage is a lost connection to recover from, not a failure.
#[test]
fn ten_thousand_messages_each_way_over_polling_survive_outages_exactly_once_in_order() {
    common::burst::ten_thousand_each_way_through("xhr", common::burst::Faults::Outages);
}

/// Deliveries that pile up between two polls come in answers the client accepts: a poll answer
/// holds at most about a mebibyte, whatever is waiting.
#[test]
fn a_burst_of_large_deliveries_reaches_a_polling_client_in_answers_it_accepts() {
    let server = start_server();
    let url = format!("xhr://127.0.0.1:{}/diffusion", server.addr().port());
    let subscriber = Session::connect(config(&url), None).unwrap();
    let inbox = Inbox::default();
    subscriber.subscribe("big", inbox.handler()).unwrap();
    subscriber.publish("big", b"ready").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));
    let publisher = Session::connect(config(&server.url()), None).unwrap();
    for i in 0..40u32 {
        let mut data = i.to_be_bytes().to_vec();
        data.resize(500_000, b'.');
        common::burst::publish_patiently(&publisher, "big", &data);
    }
    assert!(inbox.wait_for(41, Duration::from_secs(20)), "received {}; {:?}", inbox.len(), subscriber.error());
    assert_eq!(inbox.numbers(1), (0..40).collect::<Vec<_>>());
    assert_eq!(subscriber.state(), State::ConnectedActive);
}
