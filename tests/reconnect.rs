//! Reconnection and lossless recovery, with a relay between client and server that resets,
//! silences or refuses connections.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use common::relay::Relay;
use common::*;
use session::reconnect::{ReconnectHandler, ReconnectPolicy, ReconnectionStrategy};
use session::{ErrorCode, Session, State};
use session_server::ServerHandle;

#[test]
fn a_reset_connection_recovers_on_the_same_session() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let log = Transitions::default();
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), Some(log.listener())).unwrap();
    let id = *session.id().unwrap();
    let inbox = Inbox::default();
    session.subscribe("chat", inbox.handler()).unwrap();
    session.publish("chat", b"before").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));

    relay.cut();
    assert!(log.wait_for(State::RecoveringReconnect, Duration::from_secs(5)));
    assert!(wait_state(&session, State::ConnectedActive, Duration::from_secs(5)));
    assert_eq!(*session.id().unwrap(), id);
    assert_eq!(server.session_count(), 1);

    // The subscription survived without the application doing anything.
    session.publish("chat", b"after").unwrap();
    assert!(inbox.wait_for(2, Duration::from_secs(5)));
    assert_eq!(inbox.0.lock().unwrap()[1].1, b"after");
    assert_eq!(log.states(), vec![State::ConnectedActive, State::RecoveringReconnect, State::ConnectedActive]);
}

#[test]
fn a_silent_link_is_detected_and_recovered() {
    let server = start_server_with(|c| c.ping_interval = Duration::from_millis(100));
    let relay = Relay::start(server.addr());
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    relay.set_silent(true);
    let start = Instant::now();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)), "dead link not detected");
    assert!(start.elapsed() >= Duration::from_millis(200));
    relay.set_silent(false);
    assert!(wait_state(&session, State::ConnectedActive, Duration::from_secs(10)));
}

fn numbered(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

#[test]
fn ten_thousand_messages_each_way_survive_twenty_cuts_exactly_once_in_order() {
    common::burst::ten_thousand_each_way_through_twenty_cuts("ws");
}

#[test]
fn ten_thousand_messages_each_way_survive_outages_exactly_once_in_order() {
    common::burst::ten_thousand_each_way_through("ws", common::burst::Faults::Outages);
}

#[test]
fn a_server_that_forgot_the_session_closes_it_with_unknown_session() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    let other = start_server();
    relay.set_target(other.addr());
    relay.cut();
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)));
    let e = session.error().unwrap();
    assert_eq!(e.code(), ErrorCode::UnknownSession, "{e}");
    assert!(e.message().contains("does not know"), "{e}");
}

#[test]
fn a_session_kept_past_the_server_keep_time_is_unknown() {
    let server = start_server_with(|c| c.session_keep = Duration::from_millis(200));
    let relay = Relay::start(server.addr());
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    relay.set_down(true);
    relay.cut();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)));
    let start = Instant::now();
    while server.session_count() > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    relay.set_down(false);
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)));
    assert_eq!(session.error().unwrap().code(), ErrorCode::UnknownSession);
}

#[test]
fn messages_the_server_could_not_keep_close_the_session_with_message_loss() {
    let server = start_server_with(|c| c.recovery_buffer = 10);
    let relay = Relay::start(server.addr());
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    let inbox = Inbox::default();
    session.subscribe("feed", inbox.handler()).unwrap();
    session.publish("feed", b"x").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));
    relay.set_down(true);
    relay.cut();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)));
    let other = Session::connect(config(&server.url()), None).unwrap();
    for i in 0..50u32 {
        other.publish("feed", &numbered(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    relay.set_down(false);
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)));
    let e = session.error().unwrap();
    assert_eq!(e.code(), ErrorCode::MessageLoss, "{e}");
    assert_eq!(inbox.len(), 1, "never a silent gap");
}

/// A reconnecting session through a relay to a fresh server, subscribed to `path`.
fn relayed_subscriber(path: &str) -> (ServerHandle, Relay, Session, Inbox) {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    let inbox = Inbox::default();
    session.subscribe(path, inbox.handler()).unwrap();
    (server, relay, session, inbox)
}

#[test]
fn messages_published_during_the_outage_are_sent_after_recovery() {
    let (_server, relay, session, inbox) = relayed_subscriber("q");
    relay.set_down(true);
    relay.cut();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)));
    for i in 0..5u32 {
        session.publish("q", &numbered(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(inbox.len(), 0);
    relay.set_down(false);
    assert!(inbox.wait_for(5, Duration::from_secs(5)));
    let values = inbox.numbers(0);
    assert_eq!(values, vec![0, 1, 2, 3, 4]);
}

/// A backlog of 5,500 messages (about 600 KB) through a link that breaks after 32 KiB each time:
/// every connection carries some of it, so recovery gets through.
#[test]
fn a_backlog_larger_than_what_each_connection_carries_still_gets_through() {
    let (server, relay, session, inbox) = relayed_subscriber("backlog");
    session.publish("backlog", b"ready").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));
    relay.set_silent(true);
    let publisher = Session::connect(config(&server.url()), None).unwrap();
    let echo = Inbox::default();
    publisher.subscribe("backlog", echo.handler()).unwrap();
    publisher.publish("backlog", b"ready").unwrap();
    assert!(echo.wait_for(1, Duration::from_secs(5)));
    for i in 0..5_500u32 {
        let mut data = numbered(i).to_vec();
        data.resize(100, b'.');
        common::burst::publish_patiently(&publisher, "backlog", &data);
    }
    // Its own deliveries show the server has them all.
    assert!(echo.wait_for(5_501, Duration::from_secs(10)), "{}", echo.len());
    publisher.close();
    relay.set_budget(Some(32 * 1024));
    relay.cut();
    relay.set_silent(false);
    assert!(inbox.wait_for(5_502, Duration::from_secs(30)), "received {} of 5502", inbox.len());
    let values = inbox.numbers(2);
    assert_eq!(values, (0..5_500).collect::<Vec<_>>());
    assert_eq!(session.state(), State::ConnectedActive);
}

/// Message `i` of [`large_messages_survive_cuts_exactly_once_in_order`]: sizes on either side of
/// the point where publications are masked as they are made, its number first.
fn sized(i: u32) -> Vec<u8> {
    let size = [16 * 1024, 3, 1500, 1023, 1024, 70_000][i as usize % 6].max(4);
    let mut data: Vec<u8> = (0..size).map(|j| (j as u32 * 7 + i) as u8).collect();
    data[..4].copy_from_slice(&i.to_be_bytes());
    data
}

#[test]
fn large_messages_survive_cuts_exactly_once_in_order() {
    const N: u32 = 3000;
    let server = start_server();
    let relay = Arc::new(Relay::start(server.addr()));
    let log = Transitions::default();
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), Some(log.listener())).unwrap();
    let inbox = Inbox::default();
    session.subscribe("big", inbox.handler()).unwrap();
    let publishing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutter = {
        let (relay, publishing) = (relay.clone(), publishing.clone());
        std::thread::spawn(move || {
            while publishing.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
                relay.cut();
            }
        })
    };
    for i in 0..N {
        common::burst::publish_patiently(&session, "big", &sized(i));
    }
    publishing.store(false, Ordering::SeqCst);
    cutter.join().unwrap();
    assert!(inbox.wait_for(N as usize, Duration::from_secs(60)), "{} of {N} arrived", inbox.len());
    let recoveries = log.states().iter().filter(|s| **s == State::RecoveringReconnect).count();
    assert!(recoveries >= 3, "{recoveries} recoveries while publishing");
    let received = inbox.0.lock().unwrap();
    assert_eq!(received.len(), N as usize, "no duplicates");
    for (i, (_, data)) in received.iter().enumerate() {
        assert!(*data == sized(i as u32), "message {i} arrived changed");
    }
}

struct Scripted {
    attempts: AtomicUsize,
    abort_after: usize,
    events: Mutex<Vec<&'static str>>,
}

impl ReconnectHandler for Scripted {
    fn before_attempt(&self) -> bool {
        self.attempts.fetch_add(1, Ordering::SeqCst) < self.abort_after
    }
    fn on_success(&self) {
        self.events.lock().unwrap().push("success");
    }
    fn on_failure(&self) {
        self.events.lock().unwrap().push("failure");
    }
}

#[test]
fn a_user_strategy_that_aborts_closes_the_session_and_hears_of_it() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let handler = Arc::new(Scripted { attempts: AtomicUsize::new(0), abort_after: 2, events: Mutex::new(Vec::new()) });
    let mut cfg = config(&relay.url("ws", "127.0.0.1"));
    cfg.options.reconnection =
        ReconnectionStrategy { timeout: Some(Duration::from_secs(10)), policy: ReconnectPolicy::User(handler.clone()) };
    let session = Session::connect(cfg, None).unwrap();
    relay.set_down(true);
    relay.cut();
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)));
    assert_eq!(handler.attempts.load(Ordering::SeqCst), 3, "two attempts, then ABORT");
    assert_eq!(*handler.events.lock().unwrap(), vec!["failure"]);
    assert!(session.error().unwrap().message().contains("aborted"));
}

#[test]
fn a_user_strategy_that_starts_reconnects_and_hears_of_success() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let handler =
        Arc::new(Scripted { attempts: AtomicUsize::new(0), abort_after: 100, events: Mutex::new(Vec::new()) });
    let mut cfg = config(&relay.url("ws", "127.0.0.1"));
    cfg.options.reconnection =
        ReconnectionStrategy { timeout: Some(Duration::from_secs(10)), policy: ReconnectPolicy::User(handler.clone()) };
    let log = Transitions::default();
    let session = Session::connect(cfg, Some(log.listener())).unwrap();
    relay.cut();
    assert!(log.wait_for(State::RecoveringReconnect, Duration::from_secs(5)));
    let start = Instant::now();
    while log.states().len() < 4 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(session.state(), State::ConnectedActive);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(*handler.events.lock().unwrap(), vec!["success"]);
}

#[test]
fn without_reconnection_a_lost_connection_fails_the_session() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let mut cfg = config(&relay.url("ws", "127.0.0.1"));
    cfg.options.reconnection.timeout = Some(Duration::ZERO);
    let log = Transitions::default();
    let session = Session::connect(cfg, Some(log.listener())).unwrap();
    relay.cut();
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)));
    assert!(!log.states().contains(&State::RecoveringReconnect));
}

#[test]
fn giving_up_after_the_reconnection_timeout_says_so() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let mut cfg = reconnecting(&relay.url("ws", "127.0.0.1"));
    cfg.options.reconnection.timeout = Some(Duration::from_millis(300));
    let session = Session::connect(cfg, None).unwrap();
    relay.set_refusing(true);
    relay.cut();
    let start = Instant::now();
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)));
    assert!(start.elapsed() >= Duration::from_millis(250));
    let error = session.error().unwrap();
    assert!(error.message().contains("reconnection timeout"), "{error}");
    // The last attempt's error, as when the attempts run out, not the loss that started recovery.
    assert_eq!(error.code(), ErrorCode::SocketConnectFail, "{error}");
    assert!(error.message().contains("Connection refused"), "{error}");
}

#[test]
fn closing_while_recovering_stops_at_once() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let session = Session::connect(reconnecting(&relay.url("ws", "127.0.0.1")), None).unwrap();
    relay.set_down(true);
    relay.cut();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)));
    let start = Instant::now();
    session.close();
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(session.state(), State::ClosedByClient);
}

#[test]
fn the_publish_queue_is_bounded_and_keeps_what_it_holds() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let mut cfg = reconnecting(&relay.url("ws", "127.0.0.1"));
    cfg.options.maximum_queue_size = 3;
    let session = Session::connect(cfg, None).unwrap();
    let inbox = Inbox::default();
    session.subscribe("b", inbox.handler()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    relay.set_down(true);
    relay.cut();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)));
    for i in 0..3u32 {
        session.publish("b", &numbered(i)).unwrap();
    }
    let e = session.publish("b", &numbered(3)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::QueueFull);
    relay.set_down(false);
    assert!(inbox.wait_for(3, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(inbox.len(), 3);
}

#[test]
fn messages_over_the_server_limit_are_refused_at_publish() {
    let server = start_server_with(|c| c.max_frame_size = 4096);
    let session = Session::connect(config(&server.url()), None).unwrap();
    assert_eq!(session.publish("big", &vec![0u8; 8192]).unwrap_err().code(), ErrorCode::MessageTooLarge);
    session.publish("big", &vec![0u8; 1024]).unwrap();
    session.close();
    assert_eq!(session.publish("big", b"x").unwrap_err().code(), ErrorCode::SessionClosed);
}

#[test]
fn reconnection_goes_through_the_proxy_again_with_its_authentication_and_tls() {
    let pki = common::pki::pki();
    let tls = pki.server_tls("server");
    let server = start_server_with(move |c| c.tls = Some(tls));
    let relay = Relay::start(server.addr());
    let Some(proxy) = common::external::tinyproxy(relay.port, Some(("ru", "rp"))) else { return };
    let mut cfg = reconnecting(&relay.url("wss", "localhost"));
    cfg.options.tls.extra_roots.push(pki.ca());
    cfg.options.proxy = session::proxy::ProxySetting::Use(session::proxy::Proxy::Http {
        host: "127.0.0.1".into(),
        port: proxy.port,
        auth: Some(session::proxy::ProxyAuth::Basic { user: "ru".into(), password: "rp".into() }),
        tls: false,
    });
    let log = Transitions::default();
    let session = Session::connect(cfg, Some(log.listener())).unwrap();
    let inbox = Inbox::default();
    session.subscribe("t", inbox.handler()).unwrap();
    relay.cut();
    assert!(log.wait_for(State::RecoveringReconnect, Duration::from_secs(5)));
    assert!(wait_state(&session, State::ConnectedActive, Duration::from_secs(10)));
    session.publish("t", b"through the proxy, over TLS").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(5)));
    let connects = proxy.output().matches("CONNECT localhost").count();
    assert!(connects >= 2, "the proxy saw {connects} CONNECTs:\n{}", proxy.output());
}

#[test]
fn a_subscriber_too_slow_for_its_recovery_buffer_learns_of_the_message_loss() {
    // The subscriber's handler holds its I/O thread while a publisher floods the path, and its
    // application thread keeps sending: the server gives up on it with input unread. Its CLOSE
    // must still reach the client (a socket closed with unread input is reset, and the reset
    // would discard it): the session ends with MESSAGE_LOSS, not with a failed recovery.
    let server = start_server_with(|c| c.recovery_buffer = 20);
    let subscriber = Session::connect(reconnecting(&server.url()), None).unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let handler: Arc<dyn session::MessageHandler> = Arc::new(move |_: &str, _: &[u8]| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = release_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }
    });
    subscriber.subscribe("feed", handler).unwrap();
    let publisher = Session::connect(config(&server.url()), None).unwrap();
    // The subscription reaches the server on the subscriber's connection, the publication on
    // the publisher's: until the first delivery, publish again (the handler holds the first).
    assert!(wait_until(Duration::from_secs(5), || {
        publisher.publish("feed", b"first").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        received.load(Ordering::SeqCst) >= 1
    }));
    let payload = vec![7u8; 4096];
    let start = Instant::now();
    while server.session_count() == 2 && start.elapsed() < Duration::from_secs(10) {
        for _ in 0..50 {
            let _ = publisher.publish("feed", &payload);
            let _ = subscriber.publish("noise", &payload);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(server.session_count(), 1, "the server gave up on the subscriber");
    drop(release_tx);
    assert!(wait_state(&subscriber, State::ClosedFailed, Duration::from_secs(10)), "{:?}", subscriber.state());
    let e = subscriber.error().unwrap();
    assert_eq!(e.code(), ErrorCode::MessageLoss, "{e}");
    assert!(e.to_string().contains("recovery buffer overflowed"), "{e}");
}
