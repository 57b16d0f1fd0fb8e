//! The `session-server` binary as a process of its own, with a libsession client.

use std::time::{Duration, Instant};

use session::reconnect::{ReconnectPolicy, ReconnectionStrategy};
use session::{ErrorCode, Session, SessionConfig, State};

/// A loopback port nothing listens on (until a server is started on it).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A session configuration that keeps reconnecting, every 10 ms for up to 20 s.
fn reconnecting(url: &str) -> SessionConfig {
    let mut config = SessionConfig::new(url).expect("valid url");
    config.options.reconnection = ReconnectionStrategy {
        timeout: Some(Duration::from_secs(20)),
        policy: ReconnectPolicy::Repeating { attempts: 10_000, delay: Duration::from_millis(10) },
    };
    config
}

fn wait_state(session: &Session, state: State, limit: Duration) -> bool {
    let start = Instant::now();
    while session.state() != state && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    session.state() == state
}

#[test]
fn a_killed_and_restarted_server_process_does_not_know_the_session() {
    let port = closed_port();
    let start = |port: u16| {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_session-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--allow-anonymous"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let mut first = start(port);
    let session = Session::connect(reconnecting(&format!("ws://127.0.0.1:{port}")), None).unwrap();
    first.kill().unwrap(); // SIGKILL: no CLOSE frame, sessions gone
    first.wait().unwrap();
    assert!(wait_state(&session, State::RecoveringReconnect, Duration::from_secs(5)));
    let mut second = start(port);
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(10)));
    assert_eq!(session.error().unwrap().code(), ErrorCode::UnknownSession);
    second.kill().unwrap();
    second.wait().unwrap();
}
