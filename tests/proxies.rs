//! Sessions through real proxies (tinyproxy, squid, microsocks) and hostile fake ones.

mod common;

use std::time::{Duration, Instant};

use common::external::{microsocks, squid, tinyproxy, SquidAuth};
use common::*;
use session::proxy::{Proxy, ProxyAuth, ProxySetting};
use session::{ErrorCode, RetryStrategy, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "pr0xy-Pa55";

fn via(url: &str, proxy: Proxy) -> SessionConfig {
    let mut c = config(url);
    c.options.proxy = ProxySetting::Use(proxy);
    c
}

fn http(port: u16, auth: Option<ProxyAuth>) -> Proxy {
    Proxy::Http { host: "127.0.0.1".into(), port, auth, tls: false }
}

fn basic(password: &str) -> Option<ProxyAuth> {
    Some(ProxyAuth::Basic { user: PROXY_USER.into(), password: password.into() })
}

fn digest(password: &str) -> Option<ProxyAuth> {
    Some(ProxyAuth::Digest { user: PROXY_USER.into(), password: password.into() })
}

fn any(password: &str) -> Option<ProxyAuth> {
    Some(ProxyAuth::Any { user: PROXY_USER.into(), password: password.into() })
}

fn connects(config: SessionConfig) {
    let session = Session::connect(config, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(session.id().is_some());
    session.close();
}

fn fails(config: SessionConfig, code: ErrorCode) -> String {
    let err = Session::connect(config, None).expect_err("the session must not connect");
    assert_eq!(err.code(), code, "{}", err.message());
    assert!(!err.message().contains(PROXY_PASSWORD) && !err.message().contains("wrong-pw"), "{}", err.message());
    err.message().to_string()
}

// --- tinyproxy -----------------------------------------------------------------------------

#[test]
fn tinyproxy_without_authentication() {
    let server = start_server();
    let Some(proxy) = tinyproxy(server.addr().port(), None) else { return };
    connects(via(&server.url(), http(proxy.port, None)));
    assert!(proxy.output().contains("CONNECT"), "{}", proxy.output());
}

#[test]
fn a_session_opens_through_tinyproxy_without_waiting_for_a_delayed_ack() {
    // The server's 101 and its CONNECT_RESPONSE must reach tinyproxy as one segment: split, the
    // second part waits in tinyproxy (Nagle) for the client's delayed ACK, 40 ms or more, on
    // every connect. The fastest of ten shows it, whatever else loads the machine meanwhile.
    let server = start_server();
    let Some(proxy) = tinyproxy(server.addr().port(), None) else { return };
    let fastest = (0..10)
        .map(|_| {
            let start = Instant::now();
            connects(via(&server.url(), http(proxy.port, None)));
            start.elapsed()
        })
        .min()
        .unwrap();
    assert!(fastest < Duration::from_millis(40), "fastest connect through tinyproxy {fastest:?}");
}

#[test]
fn tinyproxy_with_basic_authentication() {
    let server = start_server();
    let Some(proxy) = tinyproxy(server.addr().port(), Some((PROXY_USER, PROXY_PASSWORD))) else { return };
    connects(via(&server.url(), http(proxy.port, basic(PROXY_PASSWORD))));
    // "any" waits for the challenge; tinyproxy closes the connection after it, so the answer goes
    // on a new connection.
    connects(via(&server.url(), http(proxy.port, any(PROXY_PASSWORD))));
}

#[test]
fn tinyproxy_refuses_a_wrong_or_missing_password() {
    let server = start_server();
    let Some(proxy) = tinyproxy(server.addr().port(), Some((PROXY_USER, PROXY_PASSWORD))) else { return };
    let message = fails(via(&server.url(), http(proxy.port, basic("wrong-pw"))), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains(&format!("127.0.0.1:{}", proxy.port)) && message.contains("401"), "{message}");
    let message = fails(via(&server.url(), http(proxy.port, None)), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains("Basic"), "{message}");
}

#[test]
fn tinyproxy_refuses_ports_outside_connect_port() {
    let server = start_server();
    let Some(proxy) = tinyproxy(server.addr().port() ^ 1, None) else { return };
    let message = fails(via(&server.url(), http(proxy.port, None)), ErrorCode::ProxyTunnelRefused);
    assert!(message.contains("403"), "{message}");
}

// --- squid ---------------------------------------------------------------------------------

#[test]
fn squid_with_basic_authentication() {
    let server = start_server();
    let Some(proxy) = squid(server.addr().port(), SquidAuth::Basic, (PROXY_USER, PROXY_PASSWORD)) else { return };
    connects(via(&server.url(), http(proxy.port, basic(PROXY_PASSWORD))));
    connects(via(&server.url(), http(proxy.port, any(PROXY_PASSWORD))));
    let message = fails(via(&server.url(), http(proxy.port, basic("wrong-pw"))), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains("407") && message.contains("libsession-test"), "{message}");
}

#[test]
fn squid_with_digest_authentication() {
    let server = start_server();
    let Some(proxy) = squid(server.addr().port(), SquidAuth::Digest, (PROXY_USER, PROXY_PASSWORD)) else { return };
    connects(via(&server.url(), http(proxy.port, digest(PROXY_PASSWORD))));
    connects(via(&server.url(), http(proxy.port, any(PROXY_PASSWORD))));
    let message = fails(via(&server.url(), http(proxy.port, digest("wrong-pw"))), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains("Digest"), "{message}");
    // Basic only, against a proxy that offers Digest only.
    let message =
        fails(via(&server.url(), http(proxy.port, basic(PROXY_PASSWORD))), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains("Digest"), "{message}");
}

#[test]
fn proxy_urls_with_percent_encoded_at_and_colon_in_the_password() {
    let server = start_server();
    let Some(proxy) = squid(server.addr().port(), SquidAuth::Basic, ("url@user", "p@ss:w0rd")) else { return };
    let url = format!("http://url%40user:p%40ss%3Aw0rd@127.0.0.1:{}", proxy.port);
    connects(via(&server.url(), Proxy::parse_url(&url).unwrap()));
}

// --- microsocks ----------------------------------------------------------------------------

fn socks(port: u16, credentials: Option<(&str, &str)>) -> Proxy {
    Proxy::Socks5 {
        host: "127.0.0.1".into(),
        port,
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        remote_dns: true,
    }
}

#[test]
fn microsocks_with_and_without_credentials() {
    let server = start_server();
    let url = format!("ws://localhost:{}/diffusion", server.addr().port());
    let Some(open) = microsocks(None) else { return };
    connects(via(&url, socks(open.port, None)));
    // socks5:// resolves the server's name locally and sends the address.
    connects(via(&url, Proxy::parse_url(&format!("socks5://127.0.0.1:{}", open.port)).unwrap()));
    let Some(guarded) = microsocks(Some((PROXY_USER, PROXY_PASSWORD))) else { return };
    connects(via(&url, socks(guarded.port, Some((PROXY_USER, PROXY_PASSWORD)))));
    fails(via(&url, socks(guarded.port, Some((PROXY_USER, "wrong-pw")))), ErrorCode::ProxyAuthenticationFailed);
    fails(via(&url, socks(guarded.port, None)), ErrorCode::ProxyAuthenticationFailed);
}

// --- behaviour common to every proxy --------------------------------------------------------

#[test]
fn an_unreachable_proxy_is_retried_and_named() {
    let server = start_server();
    let mut cfg = via(&server.url(), http(closed_port(), None));
    cfg.options.initial_retry = RetryStrategy::fixed(30, 2).unwrap();
    let message = fails(cfg, ErrorCode::ProxyUnreachable);
    assert!(message.contains("after 3 attempts") && message.contains("proxy"), "{message}");
}

#[test]
fn proxy_authentication_failures_are_not_retried() {
    let server = start_server();
    let Some(proxy) = tinyproxy(server.addr().port(), Some((PROXY_USER, PROXY_PASSWORD))) else { return };
    let mut cfg = via(&server.url(), http(proxy.port, basic("wrong-pw")));
    cfg.options.initial_retry = RetryStrategy::fixed(200, 5).unwrap();
    let start = Instant::now();
    fails(cfg, ErrorCode::ProxyAuthenticationFailed);
    assert!(start.elapsed() < Duration::from_millis(900));
}

#[test]
fn proxy_credentials_never_reach_the_server() {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    let server_port = fake_peer(move |mut stream| {
        let tx = tx.lock().unwrap().clone();
        async move {
            let mut head = vec![0u8; 4096];
            let n = stream.read(&mut head).await.unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&head[..n]).into_owned());
        }
    });
    let Some(proxy) = tinyproxy(server_port, Some((PROXY_USER, PROXY_PASSWORD))) else { return };
    let _ =
        Session::connect(via(&format!("ws://127.0.0.1:{server_port}"), http(proxy.port, basic(PROXY_PASSWORD))), None);
    let upgrade = rx.recv_timeout(Duration::from_secs(5)).expect("the upgrade reached the server");
    assert!(upgrade.starts_with("GET /diffusion HTTP/1.1"), "{upgrade}");
    assert!(!upgrade.to_ascii_lowercase().contains("proxy-authorization"), "{upgrade}");
}

// --- hostile fake proxies -------------------------------------------------------------------

/// A fake proxy that reads the CONNECT request and answers with `reply` (then waits).
fn fake_proxy(reply: &'static [u8]) -> u16 {
    fake_peer(move |mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(reply).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
}

fn through_fake(port: u16, auth: Option<ProxyAuth>) -> SessionConfig {
    let mut cfg = via("ws://127.0.0.1:9/diffusion", http(port, auth));
    cfg.options.connection_timeout = Duration::from_millis(1500);
    cfg
}

#[test]
fn a_garbage_status_line_is_a_proxy_protocol_error() {
    let port = fake_proxy(b"HELLO THERE\r\n\r\n");
    let message = fails(through_fake(port, None), ErrorCode::ProxyProtocolError);
    assert!(message.contains("HELLO"), "{message}");
}

#[test]
fn oversized_headers_are_refused() {
    let port = fake_peer(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let line = format!("X-Padding: {}\r\n", "x".repeat(1000));
        for _ in 0..100 {
            if stream.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let message = fails(through_fake(port, None), ErrorCode::ProxyProtocolError);
    assert!(message.contains("64 KiB"), "{message}");
}

#[test]
fn a_407_without_a_challenge_fails_authentication() {
    let port = fake_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
    let message = fails(through_fake(port, any(PROXY_PASSWORD)), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains("no authentication challenge"), "{message}");
}

#[test]
fn endless_407s_end_after_the_conversation_bound() {
    let rounds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = rounds.clone();
    let port = fake_peer(move |mut stream| {
        let counter = counter.clone();
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let nonce = counter.load(std::sync::atomic::Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 407 Nope\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"{nonce}\", qop=\"auth\", stale=true\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        }
    });
    let message = fails(through_fake(port, digest(PROXY_PASSWORD)), ErrorCode::ProxyAuthenticationFailed);
    assert!(message.contains("gave up after 3"), "{message}");
    assert_eq!(rounds.load(std::sync::atomic::Ordering::SeqCst), 4, "first request plus three answers");
}

#[test]
fn a_proxy_that_never_answers_times_out_within_the_connection_timeout() {
    let port = fake_peer(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let start = Instant::now();
    let message = fails(through_fake(port, None), ErrorCode::RequestTimeOut);
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(message.contains("proxy"), "{message}");
}

#[test]
fn a_proxy_closing_mid_response_is_reported() {
    let port = fake_peer(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 100\r\n\r\nonly a bit").await;
    });
    let message = fails(through_fake(port, None), ErrorCode::ProxyProtocolError);
    assert!(message.contains("middle of the response"), "{message}");
}

#[test]
fn an_invalid_proxy_url_fails_creation_instead_of_bypassing_the_proxy() {
    let server = start_server();
    let mut cfg = config(&server.url());
    cfg.options.proxy = match Proxy::parse_url("gopher://nowhere") {
        Ok(p) => ProxySetting::Use(p),
        Err(e) => ProxySetting::Invalid(e),
    };
    assert_eq!(Session::connect(cfg, None).unwrap_err().code(), ErrorCode::ParseUrl);
}
