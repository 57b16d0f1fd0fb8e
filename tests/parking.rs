//! Sessions parked with their I/O thread by a blocking create are taken up by the calls that need
//! their task. A test binary of its own: parking depends on how busy the I/O threads are.

use std::sync::Arc;

use session::{MessageHandler, Session, SessionConfig};

/// Sessions connected (blocking) until one is parked with its I/O thread; all of them.
fn until_one_is_parked(url: &str) -> Vec<Session> {
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let session = Session::connect(SessionConfig::new(url).unwrap(), None).unwrap();
        let parked = session.is_parked();
        sessions.push(session);
        if parked {
            return sessions;
        }
    }
    panic!("no session was parked: the I/O threads should tick after the first hand-over");
}

#[test]
fn a_call_that_needs_the_task_takes_a_parked_session_up() {
    let server = session_server::spawn(session_server::ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        allow_anonymous: true,
        ..Default::default()
    })
    .unwrap();
    if session::runtime::mode() == session::runtime::Mode::Plain {
        // The plain runtime parks nothing: every session runs on its I/O thread at once.
        for _ in 0..20 {
            let session = Session::connect(SessionConfig::new(&server.url()).unwrap(), None).unwrap();
            assert!(!session.is_parked());
            session.publish("p", b"x").unwrap();
        }
        return;
    }
    let handler: Arc<dyn MessageHandler> = Arc::new(|_: &str, _: &[u8]| {});
    let calls: [&dyn Fn(&Session); 4] = [
        &|s| s.publish("p", b"x").unwrap(),
        &|s| s.subscribe("p", handler.clone()).unwrap(),
        &|s| drop(s.unsubscribe("p")),
        &|s| s.close(),
    ];
    for call in calls {
        let sessions = until_one_is_parked(&server.url());
        let parked = sessions.last().unwrap();
        call(parked);
        assert!(!parked.is_parked());
    }
}
