//! Initial retry strategies and connection timeouts, through the safe Rust API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use session::protocol::Credentials;
use session::{ErrorCode, RetryStrategy, Session, State};

fn with_retry(url: &str, strategy: RetryStrategy) -> session::SessionConfig {
    let mut c = config(url);
    c.options.initial_retry = strategy;
    c
}

#[test]
fn a_server_starting_after_the_client_is_reached_by_retrying() {
    let port = closed_port();
    let starter = start_server_later(port, Duration::from_millis(300));
    let log = Transitions::default();
    let start = Instant::now();
    let cfg = with_retry(&format!("ws://127.0.0.1:{port}"), RetryStrategy::fixed(100, 10).unwrap());
    let session = Session::connect(cfg, Some(log.listener())).expect("connects once the server is up");
    assert!(start.elapsed() >= Duration::from_millis(250));
    // No state flips between attempts.
    assert_eq!(log.states(), vec![State::ConnectedActive]);
    session.close();
    drop(starter.join().unwrap());
}

#[test]
fn without_retry_a_refused_connection_fails_at_once() {
    let start = Instant::now();
    let err = Session::connect(config(&format!("ws://127.0.0.1:{}", closed_port())), None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SocketConnectFail);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(!err.message().contains("attempts"));
}

#[test]
fn exhausted_retries_name_the_last_cause_and_the_attempts() {
    let start = Instant::now();
    let cfg = with_retry(&format!("ws://127.0.0.1:{}", closed_port()), RetryStrategy::fixed(50, 3).unwrap());
    let err = Session::connect(cfg, None).unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.code(), ErrorCode::SocketConnectFail);
    assert!(err.message().contains("after 4 attempts"), "{}", err.message());
    assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn authentication_failures_are_never_retried() {
    let server = start_server();
    let mut cfg = with_retry(&server.url(), RetryStrategy::fixed(100, 10).unwrap());
    cfg.options.principal = USER.into();
    cfg.options.credentials = Credentials::Password(b"bad-guess".to_vec());
    let start = Instant::now();
    let err = Session::connect(cfg, None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthenticationFailed);
    assert!(start.elapsed() < Duration::from_millis(900), "{:?}", start.elapsed());
}

#[test]
fn url_errors_are_never_retried() {
    let server = start_server();
    let url = format!("ws://{}/elsewhere/diffusion", server.addr());
    let cfg = with_retry(&url, RetryStrategy::fixed(100, 10).unwrap());
    let start = Instant::now();
    assert_eq!(Session::connect(cfg, None).unwrap_err().code(), ErrorCode::HandshakeRecvFail);
    assert!(start.elapsed() < Duration::from_millis(900));
}

#[test]
fn each_attempt_against_a_silent_listener_ends_at_the_connection_timeout() {
    let port = fake_peer(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let mut cfg = with_retry(&format!("ws://127.0.0.1:{port}"), RetryStrategy::fixed(50, 2).unwrap());
    cfg.options.connection_timeout = Duration::from_millis(200);
    let start = Instant::now();
    let err = Session::connect(cfg, None).unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.code(), ErrorCode::RequestTimeOut);
    assert!(err.message().contains("after 3 attempts"), "{}", err.message());
    assert!(elapsed >= Duration::from_millis(650) && elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn a_server_saying_try_later_is_retried() {
    let server = start_server_with(|c| c.max_sessions = 1);
    let first = Session::connect(config(&server.url()), None).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.close();
    });
    let cfg = with_retry(&server.url(), RetryStrategy::fixed(100, 20).unwrap());
    let second = Session::connect(cfg, None).expect("connects once a slot is free");
    releaser.join().unwrap();
    second.close();
}

#[test]
fn backoff_retries_until_the_server_is_up() {
    let port = closed_port();
    let starter = start_server_later(port, Duration::from_millis(200));
    let cfg = with_retry(&format!("ws://127.0.0.1:{port}"), RetryStrategy::backoff(20, 200, 50).unwrap());
    Session::connect(cfg, None).expect("connects").close();
    drop(starter.join().unwrap());
}

#[test]
fn closing_during_the_retry_wait_stops_at_once() {
    let cfg = with_retry(&format!("ws://127.0.0.1:{}", closed_port()), RetryStrategy::fixed(5_000, 5).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Transitions::default();
    let session = Session::new(cfg);
    session
        .start(session::Events {
            on_state_changed: Some(log.listener()),
            on_created: Some(Box::new(move |r| tx.send(r.map_err(|e| e.code())).unwrap())),
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    session.close();
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(rx.recv_timeout(Duration::from_millis(100)), Ok(Err(ErrorCode::SessionClosed)));
    assert_eq!(log.states(), vec![State::ClosedByClient]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "no callback after close");
    assert_eq!(log.states().len(), 1);
}

#[test]
fn session_properties_reach_the_server() {
    let server = start_server();
    let mut cfg = config(&server.url());
    cfg.options.set_property("colour", "blue");
    cfg.options.set_property("shape", "round");
    let session = Session::connect(cfg, None).unwrap();
    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].properties,
        vec![("colour".to_string(), "blue".to_string()), ("shape".to_string(), "round".to_string())]
    );
    assert_eq!(sessions[0].id, *session.id().unwrap());
}
