//! Hostile peers on both sides, one after the other in one process: servers, proxies and SOCKS5
//! servers that send without end, announce gigabytes or say nothing, and clients that leave
//! sessions to fill up. Each case ends with a clear error within the connection timeout (or, on
//! the server, with the documented limit held), and the process's peak resident memory stays under
//! [`PEAK_RSS_BOUND`]: without the limits, any one case would take gigabytes.
//!
//! The cases run in one test, in turn, so that the peak measured is theirs alone.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::raw::{self, acked, connect, delivered, message, send};
use common::*;
use session::protocol::{self, Frame, Message, ResponseCode};
use session::proxy::{Proxy, ProxySetting};
use session::transport::Transport;
use session::{ErrorCode, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bound on the test process's peak resident memory, in MiB. The cases together stream
/// gigabytes at the client and hundreds of megabytes into the server.
const PEAK_RSS_BOUND: u64 = 96;

const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a case may take beyond the connection timeout.
const MARGIN: Duration = Duration::from_secs(2);

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Writes `chunk` again and again until the peer goes away.
async fn endlessly(stream: &mut TcpStream, chunk: &[u8]) {
    while stream.write_all(chunk).await.is_ok() {}
}

/// Reads what the client sends first (a request head), up to a blank line.
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
}

fn quick(url: &str) -> SessionConfig {
    let mut c = config(url);
    c.options.connection_timeout = CONNECTION_TIMEOUT;
    c.options.proxy = ProxySetting::Disabled;
    c
}

/// Connects with `c` and expects the attempt to fail with `code` within the timeout.
fn fails_in_time(case: &str, c: SessionConfig, code: ErrorCode) {
    let start = Instant::now();
    let error = match Session::connect(c, None) {
        Ok(_) => panic!("{case}: the session connected"),
        Err(e) => e,
    };
    let took = start.elapsed();
    eprintln!("{case}: {:?} after {} ms: {}", error.code(), took.as_millis(), error.message());
    assert_eq!(error.code(), code, "{case}: {}", error.message());
    assert!(took < CONNECTION_TIMEOUT + MARGIN, "{case}: took {took:?}");
}

/// A server that takes the upgrade, reports the connect request's announced maximum frame size,
/// then starts a WebSocket message of 2^31 bytes and streams it.
fn gigabyte_frame(announced: mpsc::Sender<u32>) {
    let port = fake_peer(move |stream| {
        let announced = announced.clone();
        async move {
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            use futures_util::StreamExt;
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) = ws.next().await {
                if let Ok(frames) = protocol::decode_all(&b, u32::MAX) {
                    if let Some(Frame::ConnectRequest(r)) = frames.first() {
                        let _ = announced.send(r.max_frame_size);
                    }
                }
            }
            let stream = ws.get_mut();
            let mut header = vec![0x82, 127];
            header.extend_from_slice(&(1u64 << 31).to_be_bytes());
            if stream.write_all(&header).await.is_ok() {
                endlessly(stream, &[0u8; 64 * 1024]).await;
            }
        }
    });
    fails_in_time(
        "a frame of 2^31 bytes",
        quick(&format!("ws://127.0.0.1:{port}")),
        ErrorCode::ConnectionProtocolError,
    );
}

/// A polling server whose answer is a chunked body without end.
fn endless_polling_body() {
    let port = fake_peer(|mut stream| async move {
        read_head(&mut stream).await;
        if stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await.is_ok() {
            let mut chunk = b"10000\r\n".to_vec();
            chunk.extend_from_slice(&[b'x'; 0x10000]);
            chunk.extend_from_slice(b"\r\n");
            endlessly(&mut stream, &chunk).await;
        }
    });
    let mut c = quick(&format!("ws://127.0.0.1:{port}/diffusion"));
    c.options.transports = vec![Transport::HttpPolling];
    fails_in_time("an endless chunked polling answer", c, ErrorCode::ConnectionProtocolError);
}

/// A server whose upgrade answer is a head without end.
fn endless_upgrade_head() {
    let port = fake_peer(|mut stream| async move {
        read_head(&mut stream).await;
        if stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\n").await.is_ok() {
            endlessly(&mut stream, format!("X-Filler: {}\r\n", "y".repeat(4000)).as_bytes()).await;
        }
    });
    fails_in_time(
        "an endless upgrade answer",
        quick(&format!("ws://127.0.0.1:{port}")),
        ErrorCode::InvalidConnectionProtocol,
    );
}

/// An HTTP proxy whose answer to CONNECT is a head without end, then one whose answer is a
/// flood of interim 100 Continue heads.
fn endless_proxy_answers() {
    for (case, opening, chunk) in [
        ("an endless proxy head", "HTTP/1.1 200 OK\r\n", format!("X-Filler: {}\r\n", "z".repeat(4000))),
        ("a flood of interim proxy answers", "", "HTTP/1.1 100 Continue\r\n\r\n".repeat(100)),
    ] {
        let port = fake_peer(move |mut stream| {
            let chunk = chunk.clone();
            async move {
                read_head(&mut stream).await;
                if stream.write_all(opening.as_bytes()).await.is_ok() {
                    endlessly(&mut stream, chunk.as_bytes()).await;
                }
            }
        });
        let mut c = quick(&format!("ws://127.0.0.1:{}", closed_port()));
        c.options.proxy = ProxySetting::Use(Proxy::Http { host: "127.0.0.1".into(), port, auth: None, tls: false });
        fails_in_time(case, c, ErrorCode::ProxyProtocolError);
    }
}

/// A SOCKS5 server that answers the greeting with bytes without end.
fn endless_socks5() {
    let port = fake_peer(|mut stream| async move {
        let mut greeting = [0u8; 3];
        if stream.read_exact(&mut greeting).await.is_ok() {
            endlessly(&mut stream, &[5u8; 64 * 1024]).await;
        }
    });
    let mut c = quick(&format!("ws://127.0.0.1:{}", closed_port()));
    c.options.proxy =
        ProxySetting::Use(Proxy::Socks5 { host: "127.0.0.1".into(), port, credentials: None, remote_dns: false });
    fails_in_time("an endless SOCKS5 answer", c, ErrorCode::ProxyProtocolError);
}

/// A server that accepts and never says a word.
fn silent_server() {
    let port = fake_peer(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    fails_in_time("a silent server", quick(&format!("ws://127.0.0.1:{port}")), ErrorCode::RequestTimeOut);
}

/// Data of a delivery that fills most of a 1 MiB frame.
fn megabyte() -> bytes::Bytes {
    vec![b'm'; 1_000_000].into()
}

/// A client subscribes to its own path, vanishes, and another floods that path with 200 MB: the
/// server keeps at most its per-session limit for the vanished session.
fn detached_session_flooded() {
    let server = start_server_with(|c| c.allow_anonymous = true);
    raw::run(async {
        let (mut sink, _, _) = connect(&server.url(), "", &[]).await;
        send(&mut sink, &message(1, Message::Subscribe { path: "sink/".into() })).await;
        assert!(acked(&mut sink, 1).await);
        drop(sink);
        let (mut flood, _, _) = connect(&server.url(), "", &[]).await;
        for seq in 1..=200 {
            send(&mut flood, &message(seq, Message::Publish { path: "sink/x".into(), data: megabyte() })).await;
        }
        assert!(acked(&mut flood, 200).await);
    });
    let retained = server.retained_bytes();
    eprintln!("a detached session flooded with 200 MB: the server keeps {retained} bytes");
    assert!(retained <= session_server::DEFAULT_SESSION_RETAINED_BYTES, "{retained}");
}

/// Eight clients subscribe and vanish one after the other; publications then need more than the
/// server's total limit: the four that vanished first are dropped, the others recover with
/// everything.
fn total_limit_drops_the_oldest() {
    let server = start_server_with(|c| {
        c.allow_anonymous = true;
        c.session_retained_bytes = 2 << 20;
        c.retained_bytes = 8 << 20;
    });
    let url = server.url();
    raw::run(async {
        let mut tokens = Vec::new();
        for n in 0..8 {
            let (mut ws, opened, _) = connect(&url, "", &[]).await;
            send(&mut ws, &message(1, Message::Subscribe { path: "all/".into() })).await;
            assert!(acked(&mut ws, 1).await);
            drop(ws);
            let start = Instant::now();
            while server.connection_count() > 0 && start.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(server.connection_count(), 0, "session {n} detached");
            tokens.push(opened.token);
        }
        let (mut publisher, _, _) = connect(&url, "", &[]).await;
        for seq in 1..=2 {
            send(&mut publisher, &message(seq, Message::Publish { path: "all/x".into(), data: megabyte() })).await;
        }
        assert!(acked(&mut publisher, 2).await);
        drop(publisher);
        assert!(server.retained_bytes() <= 8 << 20, "{}", server.retained_bytes());
        for (n, token) in tokens.iter().enumerate() {
            let (mut ws, answer, mut frames) = connect(&url, "", token).await;
            if n < 4 {
                assert_eq!(answer.code, ResponseCode::UnknownSession, "session {n}, detached early, was dropped");
                continue;
            }
            assert_eq!(answer.code, ResponseCode::Reconnected, "session {n}");
            while delivered(&frames).len() < 2 {
                let more = raw::frames(&mut ws).await;
                assert!(!more.is_empty(), "session {n} got {} deliveries", delivered(&frames).len());
                frames.extend(more);
            }
        }
    });
}

#[test]
fn hostile_peers_get_clear_errors_in_time_and_memory_stays_bounded() {
    let (tx, announced) = mpsc::channel();
    gigabyte_frame(tx);
    assert_eq!(announced.recv().unwrap(), protocol::DEFAULT_MAX_FRAME_SIZE, "the client announces 1 MiB");
    endless_polling_body();
    endless_upgrade_head();
    endless_proxy_answers();
    endless_socks5();
    silent_server();
    detached_session_flooded();
    total_limit_drops_the_oldest();
    let peak = peak_rss_mib();
    eprintln!("peak resident memory: {peak} MiB (bound {PEAK_RSS_BOUND} MiB)");
    assert!(peak < PEAK_RSS_BOUND, "peak resident memory {peak} MiB");
}
