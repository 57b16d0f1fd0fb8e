//! A server that breaks the protocol in ways a real one never does: the session fails with
//! DIFF_ERR_CONNECTION_PROTOCOL_ERROR instead of believing it.

mod common;

use std::time::Duration;

use common::*;
use session::protocol::{CloseReason, Frame, Message, ResponseCode};
use session::{ErrorCode, Session, State};

/// A fake server that opens the session with `opening`, then sends `then`.
fn serving(opening: Frame, then: Vec<Frame>) -> u16 {
    fake_peer(move |stream| {
        let (opening, then) = (opening.clone(), then.clone());
        async move {
            let mut ws = accept_ws(stream).await;
            send_frame(&mut ws, &opening).await;
            for frame in &then {
                send_frame(&mut ws, frame).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// Connects to a server that opens the session normally and then sends `then`; the error that
/// closed the session.
fn failure_after(then: Vec<Frame>) -> session::Error {
    let port = serving(ok_response(10_000), then);
    let session = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap();
    // Takes the session's task up at once, if it is parked.
    let _ = session.publish("x", b"");
    assert!(wait_state(&session, State::ClosedFailed, Duration::from_secs(5)), "{:?}", session.state());
    session.error().unwrap()
}

#[test]
fn a_resumption_answer_to_a_new_session_is_a_protocol_error() {
    let Frame::ConnectResponse(mut resumed) = ok_response(10_000) else { unreachable!() };
    resumed.code = ResponseCode::Reconnected;
    let port = serving(Frame::ConnectResponse(resumed), Vec::new());
    let error = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap_err();
    assert_eq!(error.code(), ErrorCode::ConnectionProtocolError, "{error}");
}

#[test]
fn an_ack_of_a_message_never_sent_fails_the_session() {
    let error = failure_after(vec![Frame::Ack(1000)]);
    assert_eq!(error.code(), ErrorCode::ConnectionProtocolError, "{error}");
    assert!(error.message().contains("acknowledged message 1000"), "{error}");
}

#[test]
fn a_delivery_on_an_empty_path_fails_the_session() {
    let deliver = Frame::Message { seq: 1, body: Message::Deliver { path: "".into(), data: b"x".to_vec().into() } };
    let error = failure_after(vec![deliver]);
    assert_eq!(error.code(), ErrorCode::ConnectionProtocolError, "{error}");
}

#[test]
fn a_close_reason_with_control_characters_reaches_the_application_escaped_and_capped() {
    let message = format!("bye\n\x1b[31mFORGED\r{}", "x".repeat(10_000));
    let port = serving(ok_response(10_000), vec![Frame::Close { reason: CloseReason::ClosedByServer, message }]);
    let session = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap();
    let _ = session.publish("x", b"");
    assert!(wait_state(&session, State::ClosedByServer, Duration::from_secs(5)), "{:?}", session.state());
    let error = session.error().unwrap();
    assert!(!error.message().contains(|c: char| c.is_control()), "{:?}", error.message());
    assert!(error.message().contains("bye\\u{a}\\u{1b}[31mFORGED"), "{:?}", error.message());
    assert!(error.message().len() < 1024, "{} bytes", error.message().len());
}

#[test]
fn a_close_followed_by_a_reset_reaches_a_session_whose_write_fails_first() {
    // The server ends the session (CLOSE) and resets the connection while the session's I/O
    // thread is held in a message handler; the application's publications queued meanwhile
    // then fail to go out. What the server said must still decide: the CLOSE was received
    // before the reset, so the session ends as the server said, not as a lost connection.
    let port = fake_peer(|stream| async move {
        stream.set_linger(Some(Duration::ZERO)).unwrap();
        let mut ws = accept_ws(stream).await;
        send_frame(&mut ws, &ok_response(10_000)).await;
        let _subscribe = futures_util::StreamExt::next(&mut ws).await;
        let deliver =
            Frame::Message { seq: 1, body: Message::Deliver { path: "feed".into(), data: b"x".to_vec().into() } };
        send_frame(&mut ws, &deliver).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let close = Frame::Close { reason: CloseReason::MessageLoss, message: "recovery buffer overflowed".into() };
        send_frame(&mut ws, &close).await;
        // Dropped with linger 0: a reset.
    });
    let session = Session::connect(config(&format!("ws://127.0.0.1:{port}")), None).unwrap();
    let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holding = held.clone();
    let handler: std::sync::Arc<dyn session::MessageHandler> = std::sync::Arc::new(move |_: &str, _: &[u8]| {
        holding.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
    });
    session.subscribe("feed", handler).unwrap();
    assert!(wait_until(Duration::from_secs(5), || held.load(std::sync::atomic::Ordering::SeqCst)));
    for _ in 0..10 {
        let _ = session.publish("out", b"queued while the handler runs");
    }
    assert!(wait_until(Duration::from_secs(5), || session.state().is_closed()), "{:?}", session.state());
    let error = session.error().unwrap();
    assert_eq!(error.code(), ErrorCode::MessageLoss, "{error}");
    assert!(error.message().contains("recovery buffer overflowed"), "{error}");
}
