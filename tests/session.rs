//! Sessions against the bundled server and fake peers, through the safe Rust API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use session::protocol::{CloseReason, Credentials, Frame};
use session::{ErrorCode, Session, State};
use tokio_tungstenite::tungstenite::Message;

#[test]
fn listener_sees_connected_active_from_connecting_then_closed_by_client() {
    let server = start_server();
    let log = Transitions::default();
    let session = Session::connect(config(&server.url()), Some(log.listener())).unwrap();
    assert_eq!(session.state(), State::ConnectedActive);
    session.close();
    assert_eq!(session.state(), State::ClosedByClient);
    assert_eq!(log.states(), vec![State::ConnectedActive, State::ClosedByClient]);
    assert_eq!(log.0.lock().unwrap()[0].0, State::Connecting);
}

#[test]
fn session_id_names_the_server_instance() {
    let server = start_server_with(|c| c.server_instance = 0xabc);
    let session = Session::connect(config(&server.url()), None).unwrap();
    assert_eq!(session.id().unwrap().server_instance, 0xabc);
}

#[test]
fn password_credentials_are_checked_by_the_server() {
    let server = start_server();
    let mut good = config(&server.url());
    good.options.principal = USER.into();
    good.options.credentials = Credentials::Password(PASSWORD.as_bytes().to_vec());
    assert!(Session::connect(good.clone(), None).is_ok());

    let mut bad = good;
    bad.options.credentials = Credentials::Password(b"guess-0xdead".to_vec());
    let log = Transitions::default();
    let err = Session::connect(bad, Some(log.listener())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthenticationFailed);
    assert!(!err.message().contains("guess-0xdead"));
    assert_eq!(log.states(), vec![State::ClosedFailed]);
}

#[test]
fn custom_credentials_reach_the_server() {
    let server = start_server_with(|c| {
        c.custom_credentials.insert("svc".into(), vec![0, 1, 2, 255]);
    });
    let mut cfg = config(&server.url());
    cfg.options.principal = "svc".into();
    cfg.options.credentials = Credentials::Custom(vec![0, 1, 2, 255]);
    assert!(Session::connect(cfg.clone(), None).is_ok());
    cfg.options.credentials = Credentials::Custom(vec![0, 1, 2]);
    assert_eq!(Session::connect(cfg, None).unwrap_err().code(), ErrorCode::AuthenticationFailed);
}

#[test]
fn anonymous_sessions_are_refused_unless_allowed() {
    let server = start_server_with(|c| c.allow_anonymous = false);
    let err = Session::connect(config(&server.url()), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthenticationFailed);
}

#[test]
fn nothing_listening_is_a_socket_connect_failure() {
    let err = Session::connect(config(&format!("ws://127.0.0.1:{}", closed_port())), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SocketConnectFail);
    assert!(err.message().contains("127.0.0.1"), "{}", err.message());
}

#[test]
fn a_path_the_server_does_not_serve_is_a_handshake_failure_with_the_status() {
    let server = start_server();
    let url = format!("ws://{}/other/diffusion", server.addr());
    let err = Session::connect(config(&url), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HandshakeRecvFail);
    assert!(err.message().contains("404"), "{}", err.message());
}

#[test]
fn a_server_that_never_answers_times_out_at_the_connection_timeout() {
    let port = fake_peer(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let mut cfg = config(&format!("ws://127.0.0.1:{port}"));
    cfg.options.connection_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = Session::connect(cfg, None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::RequestTimeOut);
    assert!(start.elapsed() >= Duration::from_millis(250) && start.elapsed() < Duration::from_secs(5));
}

/// A peer that reads the upgrade request and answers with what `answer` makes of it.
fn answering(answer: impl Fn(&str) -> Vec<u8> + Send + Clone + 'static) -> u16 {
    fake_peer(move |mut stream| {
        let answer = answer.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let _ = stream.write_all(&answer(&String::from_utf8_lossy(&buf[..n]))).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

#[test]
fn a_plain_http_server_fails_the_upgrade() {
    let port = answering(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec());
    let err = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HandshakeRecvFail);
    assert!(err.message().contains("200"), "{}", err.message());
}

#[test]
fn a_websocket_server_speaking_text_is_not_a_session_server() {
    let port = fake_peer(|stream| async move {
        let mut ws = accept_ws(stream).await;
        let _ = ws.send(Message::text("hello")).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let err = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidConnectionProtocol);
}

#[test]
fn a_websocket_ping_from_the_server_is_answered_while_the_session_runs() {
    let (pong_tx, pong_rx) = std::sync::mpsc::channel();
    let port = fake_peer(move |stream| {
        let pong_tx = pong_tx.clone();
        async move {
            use futures_util::StreamExt;
            let mut ws = accept_ws(stream).await;
            send_frame(&mut ws, &ok_response(10_000)).await;
            let _ = ws.send(Message::Ping(b"are you there".to_vec().into())).await;
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Pong(payload) = message {
                    let _ = pong_tx.send(payload.to_vec());
                }
            }
        }
    });
    let session = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap();
    let pong = pong_rx.recv_timeout(Duration::from_secs(5)).expect("a pong");
    assert_eq!(pong, b"are you there");
    assert_eq!(session.state(), State::ConnectedActive);
}

#[test]
fn a_masked_frame_from_the_server_is_a_protocol_error() {
    let port = answering(|request| {
        let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("a key").trim();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut answer =
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
                .into_bytes();
        // A binary frame with the mask bit set: only clients mask.
        answer.extend_from_slice(&[0x82, 0x84, 0, 0, 0, 0, 1, 2, 3, 4]);
        answer
    });
    let err = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConnectionProtocolError, "{err}");
    assert!(err.message().contains("must not be masked"), "{err}");
}

#[test]
fn an_upgrade_answer_with_a_wrong_accept_key_is_refused() {
    for answer in [
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
    ] {
        let port = answering(move |_| answer.as_bytes().to_vec());
        let err = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidConnectionProtocol, "{err}");
        assert!(err.message().contains("did not complete the WebSocket upgrade"), "{err}");
    }
}

#[test]
fn a_garbage_frame_in_the_handshake_is_a_protocol_error() {
    let port = fake_peer(|stream| async move {
        let mut ws = accept_ws(stream).await;
        let _ = ws.send(Message::binary(vec![0, 0, 0, 3, 99, 1, 2])).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let err = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConnectionProtocolError);
}

#[test]
fn an_oversized_frame_from_the_server_is_refused() {
    let port = fake_peer(|stream| async move {
        let mut ws = accept_ws(stream).await;
        send_frame(&mut ws, &ok_response(10_000)).await;
        let _ = ws.send(Message::binary(vec![0u8; 64 * 1024])).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut cfg = config(&format!("ws://127.0.0.1:{port}"));
    cfg.options.maximum_message_size = 4096;
    let log = Transitions::default();
    let session = Session::connect(cfg, Some(log.listener())).unwrap();
    assert!(log.wait_for(State::ClosedFailed, Duration::from_secs(5)));
    assert_eq!(session.error().unwrap().code(), ErrorCode::ConnectionProtocolError);
}

#[test]
fn a_server_speaking_another_protocol_version_is_reported() {
    let port = fake_peer(|stream| async move {
        let mut ws = accept_ws(stream).await;
        let mut response = ok_response(1000);
        if let Frame::ConnectResponse(r) = &mut response {
            r.version = 9;
            r.code = session::protocol::ResponseCode::Error;
        }
        send_frame(&mut ws, &response).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let err = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ProtocolVersion);
}

#[test]
fn server_closing_the_session_gives_closed_by_server_with_the_reason() {
    let server = start_server();
    let log = Transitions::default();
    let session = Session::connect(config(&server.url()), Some(log.listener())).unwrap();
    server.close_all(CloseReason::ClosedByServer, "maintenance window");
    assert!(log.wait_for(State::ClosedByServer, Duration::from_secs(5)));
    let err = session.error().unwrap();
    assert_eq!(err.code(), ErrorCode::SessionClosed);
    assert!(err.message().contains("maintenance window"), "{}", err.message());
}

#[test]
fn sessions_created_back_to_back_hear_the_server_without_a_call_from_the_application() {
    // After the first, blocking creates park their sessions with the I/O threads instead of
    // waking them; the threads take them up on their next tick.
    let server = start_server();
    let logs: Vec<Transitions> = (0..6).map(|_| Transitions::default()).collect();
    let sessions: Vec<Session> =
        logs.iter().map(|log| Session::connect(config(&server.url()), Some(log.listener())).unwrap()).collect();
    server.close_all(CloseReason::ClosedByServer, "maintenance window");
    for log in &logs {
        assert!(log.wait_for(State::ClosedByServer, Duration::from_secs(5)));
    }
    drop(sessions);
}

fn without_reconnection(url: &str) -> session::SessionConfig {
    let mut c = config(url);
    c.options.reconnection = session::reconnect::ReconnectionStrategy::disabled();
    c
}

#[test]
fn without_reconnection_a_dropped_connection_closes_the_session_as_failed() {
    let port = fake_peer(|stream| async move {
        let mut ws = accept_ws(stream).await;
        send_frame(&mut ws, &ok_response(10_000)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(ws);
    });
    let log = Transitions::default();
    let session =
        Session::connect(without_reconnection(&format!("ws://127.0.0.1:{port}")), Some(log.listener())).unwrap();
    assert!(log.wait_for(State::ClosedFailed, Duration::from_secs(5)));
    assert_eq!(session.error().unwrap().code(), ErrorCode::CommunicationError);
    assert!(!log.states().contains(&State::RecoveringReconnect));
}

#[test]
fn a_silent_link_is_detected_by_the_keep_alive_deadline() {
    let port = fake_peer(|stream| async move {
        let mut ws = accept_ws(stream).await;
        send_frame(&mut ws, &ok_response(100)).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let log = Transitions::default();
    let start = Instant::now();
    let session =
        Session::connect(without_reconnection(&format!("ws://127.0.0.1:{port}")), Some(log.listener())).unwrap();
    assert!(log.wait_for(State::ClosedFailed, Duration::from_secs(5)));
    // Deadline is 2 intervals + 500 ms of slack.
    assert!(start.elapsed() >= Duration::from_millis(600), "{:?}", start.elapsed());
    let err = session.error().unwrap();
    assert_eq!(err.code(), ErrorCode::CommunicationError);
    assert!(err.message().contains("nothing received"), "{}", err.message());
}

#[test]
fn keep_alive_pings_keep_an_idle_session_open() {
    let server = start_server_with(|c| c.ping_interval = Duration::from_millis(50));
    let session = Session::connect(config(&server.url()), None).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(session.state(), State::ConnectedActive);
    assert_eq!(server.session_count(), 1);
}

#[test]
fn closing_ends_the_session_on_the_server() {
    let server = start_server();
    let session = Session::connect(config(&server.url()), None).unwrap();
    assert_eq!(server.session_count(), 1);
    session.close();
    let start = Instant::now();
    while server.session_count() > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.session_count(), 0);
}

#[test]
fn many_sessions_share_a_fixed_number_of_threads() {
    let server = start_server();
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let warm = Session::connect(config(&server.url()), None).unwrap();
    let before = threads();
    let sessions: Vec<Session> = (0..100).map(|_| Session::connect(config(&server.url()), None).unwrap()).collect();
    assert_eq!(threads(), before, "thread count grew with sessions");
    drop(sessions);
    drop(warm);
}

#[test]
fn async_start_reports_exactly_once() {
    let server = start_server();
    let (tx, rx) = std::sync::mpsc::channel();
    let session = Session::new(config(&server.url()));
    session
        .start(session::Events {
            on_state_changed: None,
            on_created: Some(Box::new(move |r| tx.send(r.is_ok()).unwrap())),
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    session.close();
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(session.start(session::Events::default()).unwrap_err().code(), ErrorCode::IllegalState);
}

#[test]
fn closing_before_connected_fails_the_creation_once() {
    let port = fake_peer(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let session = Session::new(config(&format!("ws://127.0.0.1:{port}")));
    session
        .start(session::Events {
            on_state_changed: None,
            on_created: Some(Box::new(move |r| tx.send(r.map_err(|e| e.code())).unwrap())),
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    session.close();
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(Err(ErrorCode::SessionClosed)));
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(session.state(), State::ClosedByClient);
}

#[test]
fn a_blocking_create_connects_on_the_calling_thread_and_the_session_then_runs_on_an_io_thread() {
    let server = start_server();
    let caller = std::thread::current().id();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let listener: session::session::StateListener = Box::new(move |_, to| {
        record.lock().unwrap().push((to, std::thread::current().id() == caller));
    });
    let session = Session::connect(config(&server.url()), Some(listener)).unwrap();
    // In the plain mode the I/O thread connects while the caller waits.
    let here = session::runtime::mode() == session::runtime::Mode::Tuned;
    assert_eq!(*seen.lock().unwrap(), vec![(State::ConnectedActive, here)]);

    // The connection moved to an I/O thread: messages flow and handlers run there.
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = names.clone();
    let handler: std::sync::Arc<dyn session::MessageHandler> = std::sync::Arc::new(move |_: &str, data: &[u8]| {
        store.lock().unwrap().push((std::thread::current().name().map(String::from), data.to_vec()));
    });
    session.subscribe("moved", handler).unwrap();
    for n in 0..50u8 {
        session.publish("moved", &[n]).unwrap();
    }
    let start = Instant::now();
    while names.lock().unwrap().len() < 50 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let names = names.lock().unwrap();
    assert_eq!(names.iter().map(|(_, d)| d[0]).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    assert!(names.iter().all(|(name, _)| name.as_deref().is_some_and(|n| n.starts_with("libsession-io-"))));
    assert_eq!(session.state(), State::ConnectedActive);
}

#[test]
fn a_blocking_create_inside_an_application_runtime_still_connects() {
    let server = start_server();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let session = rt.block_on(async { Session::connect(config(&server.url()), None) }).unwrap();
    assert_eq!(session.state(), State::ConnectedActive);
}

/// A session on another I/O thread than `other`, subscribed to `path` with `inbox`; the thread a
/// session's handlers run on is told by a probe message.
fn session_beside(server: &session_server::ServerHandle, other: &Session, path: &str, inbox: &Inbox) -> Session {
    let thread_of = |session: &Session, probe: &str| {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let handler: std::sync::Arc<dyn session::MessageHandler> = std::sync::Arc::new(move |_: &str, _: &[u8]| {
            let _ = tx.lock().unwrap().send(std::thread::current().name().map(String::from));
        });
        session.subscribe(probe, handler).unwrap();
        session.publish(probe, b"?").unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    let taken = thread_of(other, &format!("{path}/probe"));
    for n in 0..8 {
        let candidate = Session::connect(config(&server.url()), None).unwrap();
        if thread_of(&candidate, &format!("{path}/probe{n}")) != taken {
            candidate.subscribe(path, inbox.handler()).unwrap();
            return candidate;
        }
    }
    panic!("no session landed on another I/O thread");
}

#[test]
fn a_message_from_an_application_thread_goes_out_while_the_sessions_io_thread_is_busy() {
    let server = start_server();
    let busy = Session::connect(config(&server.url()), None).unwrap();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, f) = (started.clone(), finished.clone());
    let blocker: std::sync::Arc<dyn session::MessageHandler> = std::sync::Arc::new(move |_: &str, _: &[u8]| {
        s.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        f.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    busy.subscribe("direct/block", blocker).unwrap();
    let inbox = Inbox::default();
    let watcher = session_beside(&server, &busy, "direct/out", &inbox);
    // The watcher's subscription is in place once its own message comes back.
    watcher.publish("direct/out", b"ready").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));

    busy.publish("direct/block", b"sleep").unwrap();
    let start = Instant::now();
    while !started.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(started.load(std::sync::atomic::Ordering::SeqCst));
    // The busy session's I/O thread sits in the handler: this message goes out from here.
    busy.publish("direct/out", b"past the busy thread").unwrap();
    assert!(inbox.wait_for(2, Duration::from_millis(1000)));
    assert!(!finished.load(std::sync::atomic::Ordering::SeqCst), "it waited for the busy thread");
    assert_eq!(inbox.0.lock().unwrap()[1].1, b"past the busy thread");
}

#[test]
fn a_burst_from_an_application_thread_is_sent_in_batches() {
    const COUNT: u64 = 2000;
    let (tx, rx) = std::sync::mpsc::channel();
    let port = fake_peer(move |stream| {
        let tx = tx.clone();
        async move {
            let mut ws = accept_ws(stream).await;
            send_frame(&mut ws, &ok_response(10_000)).await;
            let (mut messages, mut last) = (0u64, 0u64);
            while last < COUNT {
                let Some(Ok(Message::Binary(data))) = futures_util::StreamExt::next(&mut ws).await else { break };
                messages += 1;
                for frame in session::protocol::decode_all(&data, 1 << 20).unwrap() {
                    if let Frame::Message { seq, .. } = frame {
                        last = seq;
                    }
                }
            }
            let _ = tx.send((messages, last));
        }
    });
    // Room for the whole burst without acknowledgements: the session's task is woken only by
    // the burst itself.
    let mut cfg = config(&format!("ws://127.0.0.1:{port}"));
    cfg.options.recovery_buffer_size = 2 * COUNT as u32;
    cfg.options.maximum_queue_size = 2 * COUNT as u32;
    let session = Session::connect(cfg, None).unwrap();
    // Let the task settle into waiting, with its writer lent.
    std::thread::sleep(Duration::from_millis(50));
    for n in 0..COUNT {
        burst::publish_patiently(&session, "burst", &n.to_be_bytes());
    }
    let (messages, last) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(last, COUNT);
    assert!(messages < COUNT / 4, "{messages} WebSocket messages for {COUNT} publications");
}

#[test]
fn messages_of_every_size_arrive_whole_and_in_order_through_the_server() {
    // The server batches deliveries; data of a kilobyte or more goes out from where it lies,
    // smaller data is copied into the batch: a burst mixes both in one write.
    let server = start_server();
    let (publisher, _subscriber, inbox) = publisher_and_subscriber(&server.url(), "sizes");
    let sizes = [0usize, 1, 1023, 1024, 1025, 16 * 1024, 70_000, 5, 200_000, 64 * 1024, 3];
    let payload = |n: usize, size: usize| -> Vec<u8> { (0..size).map(|i| (i * 7 + n) as u8).collect() };
    for round in 0..20 {
        for (n, size) in sizes.iter().enumerate() {
            publisher.publish("sizes", &payload(round * 100 + n, *size)).unwrap();
        }
    }
    let expected = 1 + 20 * sizes.len();
    assert!(inbox.wait_for(expected, Duration::from_secs(10)), "{} of {expected}", inbox.len());
    let got = inbox.0.lock().unwrap();
    for round in 0..20 {
        for (n, size) in sizes.iter().enumerate() {
            assert_eq!(
                got[1 + round * sizes.len() + n].1,
                payload(round * 100 + n, *size),
                "round {round}, size {size}"
            );
        }
    }
}

/// Close sends what was published before it, and makes sure the server has it, over both
/// transports.
#[test]
fn closing_right_after_publishing_loses_nothing() {
    let server = start_server();
    let subscriber = Session::connect(config(&server.url()), None).unwrap();
    let inbox = Inbox::default();
    subscriber.subscribe("closing", inbox.handler()).unwrap();
    subscriber.publish("closing", b"ready").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));
    let port = server.addr().port();
    for (n, url) in [format!("ws://127.0.0.1:{port}"), format!("xhr://127.0.0.1:{port}/diffusion")].iter().enumerate() {
        let publisher = Session::connect(config(url), None).unwrap();
        for i in 0..5_500u32 {
            let mut data = i.to_be_bytes().to_vec();
            data.resize(100, b'.');
            common::burst::publish_patiently(&publisher, "closing", &data);
        }
        publisher.close();
        let expected = 1 + 5_500 * (n + 1);
        assert!(inbox.wait_for(expected, Duration::from_secs(10)), "{url}: received {} of {expected}", inbox.len());
    }
    let values = inbox.numbers(1);
    assert_eq!(values, (0..5_500).chain(0..5_500).collect::<Vec<_>>());
}

#[test]
fn each_delivery_of_a_burst_reaches_exactly_the_handlers_covering_its_path() {
    let server = start_server();
    let session = Session::connect(config(&server.url()), None).unwrap();
    let (below, exact, other) = (Inbox::default(), Inbox::default(), Inbox::default());
    session.subscribe("mix/", below.handler()).unwrap();
    session.subscribe("mix/a", exact.handler()).unwrap();
    session.subscribe("other", other.handler()).unwrap();
    // Deliveries for different sets of handlers arrive together, many in one batch.
    let paths = ["mix/a", "mix/b", "other"];
    for n in 0..600u32 {
        burst::publish_patiently(&session, paths[n as usize % 3], &n.to_be_bytes());
    }
    assert!(below.wait_for(400, Duration::from_secs(10)) && exact.wait_for(200, Duration::from_secs(10)));
    assert!(other.wait_for(200, Duration::from_secs(10)));
    let expected = |keep: &dyn Fn(u32) -> bool| (0..600u32).filter(|&n| keep(n)).collect::<Vec<u32>>();
    assert_eq!(below.numbers(0), expected(&|n| n % 3 != 2));
    assert_eq!(exact.numbers(0), expected(&|n| n % 3 == 0));
    assert_eq!(other.numbers(0), expected(&|n| n % 3 == 2));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((below.len(), exact.len(), other.len()), (400, 200, 200), "nothing delivered twice");
}
