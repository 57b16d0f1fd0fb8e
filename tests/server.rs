//! The bundled server survives bad clients and enforces the protocol.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use session::protocol::{self, CloseReason, ConnectRequest, Credentials, Frame, ResponseCode};
use session::Session;
use tokio_tungstenite::tungstenite::Message;

fn still_serves(server: &session_server::ServerHandle) {
    let session = Session::connect(config(&server.url()), None).expect("server still accepts sessions");
    session.close();
}

/// Runs a WebSocket client script against the server on a throwaway runtime.
fn ws_client<F, Fut, T>(url: String, script: F) -> T
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
        tokio::time::timeout(Duration::from_secs(10), script(ws)).await.expect("script finished")
    })
}

async fn next_frames(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Vec<Frame> {
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Binary(b) = message {
            return protocol::decode_all(&b, protocol::DEFAULT_MAX_FRAME_SIZE).unwrap();
        }
    }
    Vec::new()
}

fn request(principal: &str, credentials: Credentials) -> Frame {
    Frame::ConnectRequest(ConnectRequest {
        min_version: 1,
        max_version: 1,
        principal: principal.into(),
        credentials,
        max_frame_size: 65536,
        ..Default::default()
    })
}

#[test]
fn garbage_instead_of_http_is_dropped() {
    let server = start_server();
    let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
    tcp.write_all(&[0xde, 0xad, 0xbe, 0xef, b'\r', b'\n', b'\r', b'\n']).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    let _ = tcp.read(&mut buf);
    still_serves(&server);
}

#[test]
fn an_upgrade_request_missing_what_websocket_needs_is_a_bad_request() {
    let server = start_server();
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (method, headers) in [
        ("GET", "Sec-WebSocket-Version: 13\r\n".to_string()),    // no key
        ("GET", format!("{key}Sec-WebSocket-Version: 8\r\n")),   // another version
        ("POST", format!("{key}Sec-WebSocket-Version: 13\r\n")), // not a GET
        ("GET", format!("{key}Sec-WebSocket-Version: 13\r\nConnection: close\r\n")), // no upgrade
    ] {
        let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
        let connection = if headers.contains("Connection:") { "" } else { "Connection: Upgrade\r\n" };
        let head =
            format!("{method} /diffusion HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{connection}{headers}\r\n");
        tcp.write_all(head.as_bytes()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{head:?}: {answer}");
    }
    // A well-formed one is switched, with the key answered as RFC 6455 section 1.3 shows.
    let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "GET /diffusion HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = [0u8; 512];
    let n = tcp.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{answer}");
    still_serves(&server);
}

#[test]
fn a_bad_first_frame_is_answered_with_close_protocol_error() {
    let server = start_server();
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::binary(protocol::encode(&Frame::Ping(1)))).await.unwrap();
        next_frames(&mut ws).await
    });
    assert!(matches!(frames.as_slice(), [Frame::Close { reason: CloseReason::ProtocolError, .. }]), "{frames:?}");
    still_serves(&server);
}

#[test]
fn authentication_failure_is_answered_and_leaves_no_session() {
    let server = start_server();
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::binary(protocol::encode(&request(USER, Credentials::Password(b"nope".to_vec())))))
            .await
            .unwrap();
        next_frames(&mut ws).await
    });
    match frames.as_slice() {
        [Frame::ConnectResponse(r)] => {
            assert_eq!(r.code, ResponseCode::AuthenticationFailed);
            assert!(r.token.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.session_count(), 0);
}

#[test]
fn an_oversized_frame_closes_with_frame_too_large() {
    let server = start_server_with(|c| c.max_frame_size = 2048);
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::binary(protocol::encode(&request("", Credentials::None)))).await.unwrap();
        let accepted = next_frames(&mut ws).await;
        assert!(matches!(accepted.as_slice(), [Frame::ConnectResponse(r)] if r.code == ResponseCode::Ok));
        let mut big = vec![0u8, 0, 0x08, 0, 3];
        big.resize(2048 + 100, 0);
        ws.send(Message::binary(big)).await.unwrap();
        next_frames(&mut ws).await
    });
    assert!(matches!(frames.as_slice(), [Frame::Close { reason: CloseReason::FrameTooLarge, .. }]), "{frames:?}");
    still_serves(&server);
}

#[test]
fn a_client_that_never_sends_the_connect_request_is_dropped_after_the_handshake_timeout() {
    let server = start_server_with(|c| c.handshake_timeout = Duration::from_millis(200));
    let closed = ws_client(server.url(), |mut ws| async move {
        matches!(ws.next().await, None | Some(Ok(Message::Close(_))) | Some(Err(_)))
    });
    assert!(closed);
    still_serves(&server);
}

#[test]
fn a_silent_client_loses_its_connection_but_its_session_waits_then_expires() {
    let server = start_server_with(|c| {
        c.ping_interval = Duration::from_millis(50);
        c.session_keep = Duration::from_millis(400);
    });
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::binary(protocol::encode(&request("", Credentials::None)))).await.unwrap();
        let mut seen = Vec::new();
        // Read without ever answering a PING, until the server drops the connection.
        loop {
            let frames = next_frames(&mut ws).await;
            if frames.is_empty() {
                return seen;
            }
            seen.extend(frames);
        }
    });
    assert!(frames.iter().any(|f| matches!(f, Frame::Ping(_))));
    assert!(!frames.iter().any(|f| matches!(f, Frame::Close { .. })), "a dead link gets no CLOSE: {frames:?}");
    assert_eq!((server.session_count(), server.connection_count()), (1, 0), "kept for a reconnection");
    let start = std::time::Instant::now();
    while server.session_count() > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.session_count(), 0, "expired after the keep time");
}

#[test]
fn the_session_limit_rejects_extra_sessions() {
    let server = start_server_with(|c| c.max_sessions = 1);
    let first = Session::connect(config(&server.url()), None).unwrap();
    let err = Session::connect(config(&server.url()), None).unwrap_err();
    // "Try later": the upgrade is refused with 503, which the client treats as transient.
    assert_eq!(err.code(), session::ErrorCode::HandshakeRecvFail);
    assert!(err.message().contains("503"), "{}", err.message());
    assert!(err.is_transient());
    first.close();
}

#[test]
fn text_messages_are_refused() {
    let server = start_server();
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::text("hello")).await.unwrap();
        next_frames(&mut ws).await
    });
    assert!(matches!(frames.as_slice(), [Frame::Close { reason: CloseReason::ProtocolError, .. }]), "{frames:?}");
}

/// Upgrades with `connect` (a header value) in the CONNECT_REQUEST header; returns whether the
/// server said it took it, and the script's result.
fn ws_client_offering<F, Fut, T>(url: String, connect: &str, script: F) -> (bool, T)
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(protocol::CONNECT_HEADER, connect.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
        let accepted =
            response.headers().get(protocol::CONNECT_HEADER).is_some_and(|v| v == protocol::CONNECT_ACCEPTED);
        (accepted, tokio::time::timeout(Duration::from_secs(10), script(ws)).await.expect("script finished"))
    })
}

#[test]
fn a_connect_request_in_the_upgrade_is_answered_at_once() {
    let server = start_server();
    let header = protocol::connect_header(&protocol::encode(&request(USER, Credentials::Password(PASSWORD.into()))));
    // Nothing is sent after the upgrade: the answer comes anyway.
    let (accepted, frames) = ws_client_offering(server.url(), &header.unwrap(), |mut ws| async move {
        let frames = next_frames(&mut ws).await;
        ws.send(Message::binary(protocol::encode(&Frame::Ping(7)))).await.unwrap();
        (frames, next_frames(&mut ws).await)
    });
    assert!(accepted);
    assert!(matches!(frames.0.as_slice(), [Frame::ConnectResponse(r)] if r.code == ResponseCode::Ok), "{frames:?}");
    assert_eq!(frames.1, vec![Frame::Pong(7)]);
    assert_eq!(server.sessions()[0].principal, USER);
}

#[test]
fn wrong_credentials_in_the_upgrade_are_refused_like_in_a_message() {
    let server = start_server();
    let header = protocol::connect_header(&protocol::encode(&request(USER, Credentials::Password(b"nope".to_vec()))));
    let (accepted, frames) =
        ws_client_offering(server.url(), &header.unwrap(), |mut ws| async move { next_frames(&mut ws).await });
    assert!(accepted);
    assert!(
        matches!(frames.as_slice(), [Frame::ConnectResponse(r)] if r.code == ResponseCode::AuthenticationFailed),
        "{frames:?}"
    );
    assert_eq!(server.session_count(), 0);
}

#[test]
fn a_bad_connect_header_is_ignored_and_the_first_message_counts() {
    let server = start_server();
    let garbage = protocol::connect_header(&protocol::encode(&Frame::Ping(1))).unwrap();
    for value in ["%%% not base64", garbage.as_str()] {
        let (accepted, frames) = ws_client_offering(server.url(), value, |mut ws| async move {
            ws.send(Message::binary(protocol::encode(&request("", Credentials::None)))).await.unwrap();
            next_frames(&mut ws).await
        });
        assert!(!accepted, "{value}");
        assert!(matches!(frames.as_slice(), [Frame::ConnectResponse(r)] if r.code == ResponseCode::Ok), "{frames:?}");
    }
    still_serves(&server);
}

#[test]
fn acceptors_on_other_threads_serve_and_stop_with_the_server() {
    use session_server::{Server, ServerConfig};
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_anonymous: true,
        ..ServerConfig::default()
    };
    let main_rt = runtime();
    let server = main_rt.block_on(Server::bind(config)).unwrap();
    let url = format!("ws://{}/diffusion", server.local_addr().unwrap());
    let closer = server.closer();
    let acceptors: Vec<_> = (0..2)
        .map(|_| {
            let acceptor = server.acceptor().unwrap();
            std::thread::spawn(move || runtime().block_on(acceptor.run()))
        })
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let main = std::thread::spawn(move || {
        main_rt.block_on(server.run(async {
            let _ = stopped.await;
        }))
    });
    let sessions: Vec<Session> = (0..30).map(|_| Session::connect(config_for(&url), None).unwrap()).collect();
    assert_eq!(closer.session_count(), 30);
    assert_eq!(closer.connection_count(), 30);
    stop.send(()).unwrap();
    main.join().unwrap();
    for acceptor in acceptors {
        acceptor.join().unwrap().unwrap();
    }
    // Every session heard that the server shut down, whichever thread served it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sessions.iter().any(|s| !s.state().is_closed()) {
        assert!(std::time::Instant::now() < deadline, "sessions still open after the server stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sessions.iter().all(|s| s.state() == session::State::ClosedByServer));
}

fn config_for(url: &str) -> session::SessionConfig {
    let mut c = config(url);
    c.options.reconnection = session::reconnect::ReconnectionStrategy::disabled();
    c
}

#[test]
fn a_due_ack_travels_with_the_deliveries_it_caused() {
    use session::protocol::Message as M;
    let server = start_server();
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::binary(protocol::encode(&request("", Credentials::None)))).await.unwrap();
        next_frames(&mut ws).await;
        // 32 numbered messages: a subscription and 31 publications it covers.
        let mut batch = protocol::encode(&Frame::Message { seq: 1, body: M::Subscribe { path: "a".into() } });
        for seq in 2..=32 {
            let body = M::Publish { path: "a".into(), data: bytes::Bytes::from_static(b"x") };
            protocol::encode_into(&Frame::Message { seq, body }, &mut batch);
        }
        ws.send(Message::binary(batch)).await.unwrap();
        next_frames(&mut ws).await
    });
    // One message: the 31 deliveries, then the ACK of all 32.
    assert_eq!(frames.len(), 32, "{frames:?}");
    assert!(frames[..31]
        .iter()
        .all(|f| matches!(f, Frame::Message { body: session::protocol::Message::Deliver { .. }, .. })));
    assert_eq!(frames[31], Frame::Ack(32));
}

#[test]
fn a_client_acknowledging_a_delivery_never_sent_is_closed_with_protocol_error() {
    let server = start_server();
    let frames = ws_client(server.url(), |mut ws| async move {
        ws.send(Message::binary(protocol::encode(&request("", Credentials::None)))).await.unwrap();
        let opened = next_frames(&mut ws).await;
        ws.send(Message::binary(protocol::encode(&Frame::Ack(1000)))).await.unwrap();
        let mut after = Vec::new();
        while after.is_empty() {
            after = next_frames(&mut ws).await;
            if after.is_empty() {
                break;
            }
            after.retain(|f| !matches!(f, Frame::Ping(_)));
        }
        (opened, after)
    });
    assert!(matches!(frames.0.as_slice(), [Frame::ConnectResponse(_), ..]), "{:?}", frames.0);
    assert!(
        matches!(frames.1.as_slice(), [Frame::Close { reason: CloseReason::ProtocolError, message }] if message.contains("acknowledged message 1000")),
        "{:?}",
        frames.1
    );
    still_serves(&server);
}

#[test]
fn answers_to_wrong_passwords_from_one_address_come_later_and_later() {
    let server = start_server();
    let took: Vec<Duration> = common::raw::run(async {
        let mut took = Vec::new();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            let (_, answer, _) = common::raw::connect(&server.url(), "alice", &[]).await;
            assert_eq!(answer.code, ResponseCode::AuthenticationFailed);
            took.push(start.elapsed());
        }
        took
    });
    // 100 ms for each failure from the address in the last minute: 100, 200, 300 ms.
    assert!(took[0] >= Duration::from_millis(90) && took[2] >= Duration::from_millis(290), "{took:?}");
    assert!(took[2] < Duration::from_secs(1) + Duration::from_millis(500), "{took:?}");
    still_serves(&server);
}
