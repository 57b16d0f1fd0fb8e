//! The server's permissions as the application meets them through the Rust API: a refused
//! subscription reaches its handler's `on_error`, a refused publication the session's error
//! handler, and the session goes on.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use session::session::MessageHandler;
use session::{Error, ErrorCode, Session, State};
use session_server::policy::{Access, Role};

const WAIT: Duration = Duration::from_secs(5);

/// A server on which anonymous sessions may subscribe to and publish on `allowed/` only.
fn restricted_server() -> session_server::ServerHandle {
    start_server_with(|c| {
        c.allow_anonymous = false;
        let mut access = Access::default();
        access
            .roles
            .insert("allowed".into(), Role { subscribe: vec!["allowed/".into()], publish: vec!["allowed/".into()] });
        access.anonymous = Some(vec!["allowed".into()]);
        c.access = access;
    })
}

#[derive(Debug, PartialEq)]
enum Heard {
    Message(String),
    Error(String, ErrorCode, String),
    Dropped,
}

/// A handler reporting what it hears, and its release.
struct Recorder(mpsc::Sender<Heard>);

impl MessageHandler for Recorder {
    fn on_message(&self, path: &str, _data: &[u8]) {
        let _ = self.0.send(Heard::Message(path.into()));
    }

    fn on_error(&self, path: &str, error: &Error) {
        let _ = self.0.send(Heard::Error(path.into(), error.code(), error.message().into()));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.0.send(Heard::Dropped);
    }
}

#[test]
fn a_refused_subscription_calls_on_error_once_then_releases_its_handler() {
    let server = restricted_server();
    let session = Session::connect(config(&server.url()), None).unwrap();
    let (tx, rx) = mpsc::channel();
    session.subscribe("denied/x", Arc::new(Recorder(tx))).unwrap();
    let Heard::Error(path, code, message) = rx.recv_timeout(WAIT).unwrap() else { panic!("on_error first") };
    assert_eq!((path.as_str(), code), ("denied/x", ErrorCode::AccessDenied));
    assert!(message.contains("subscribing to denied/x is not permitted"), "{message}");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Heard::Dropped);
    assert_eq!(session.state(), State::ConnectedActive);
}

#[test]
fn a_refused_publication_reaches_the_session_error_handler_and_allowed_paths_still_work() {
    let server = restricted_server();
    let session = Session::connect(config(&server.url()), None).unwrap();
    let (errors_tx, errors) = mpsc::channel();
    let errors_tx = std::sync::Mutex::new(errors_tx);
    session.set_error_handler(Some(Box::new(move |path: &str, error: &Error| {
        let _ = errors_tx.lock().unwrap().send((path.to_string(), error.code()));
    })));
    let (tx, rx) = mpsc::channel();
    session.subscribe("allowed/", Arc::new(Recorder(tx))).unwrap();
    session.publish("denied/y", b"no").unwrap();
    assert_eq!(errors.recv_timeout(WAIT).unwrap(), ("denied/y".to_string(), ErrorCode::AccessDenied));
    session.publish("allowed/z", b"yes").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Heard::Message("allowed/z".into()));
    assert_eq!(session.state(), State::ConnectedActive);
}
