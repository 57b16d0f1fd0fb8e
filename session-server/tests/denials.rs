//! The server's policy enforced on a session's messages: what it may not do is answered with
//! REFUSED, counted and logged, and the session goes on. Driven through [`Node`] without sockets.

use std::time::Instant;

use session::protocol::{
    ConnectRequest, Credentials, Frame, Message, RefusedAction, DEFAULT_MAX_FRAME_SIZE, MAX_VERSION, MIN_VERSION,
};
use session_server::policy::{Access, Role};
use session_server::{Attached, Node, ServerConfig};

/// Anonymous sessions may subscribe to and publish on `allowed/` only.
fn node() -> Node {
    let mut access = Access::default();
    access
        .roles
        .insert("allowed".into(), Role { subscribe: vec!["allowed/".into()], publish: vec!["allowed/".into()] });
    access.anonymous = Some(vec!["allowed".into()]);
    Node::new(ServerConfig { access, ..Default::default() })
}

fn attach(node: &Node) -> Attached {
    let request = ConnectRequest {
        min_version: MIN_VERSION,
        max_version: MAX_VERSION,
        principal: String::new(),
        credentials: Credentials::None,
        properties: Vec::new(),
        reconnect_token: Vec::new(),
        last_received: 0,
        max_frame_size: DEFAULT_MAX_FRAME_SIZE,
    };
    let (_, attached) = node.attach(&request);
    attached.expect("anonymous sessions are admitted")
}

fn message(seq: u64, body: Message) -> Frame {
    Frame::Message { seq, body }
}

/// The numbered messages the session is sent next.
fn sent(attached: &mut Attached) -> Vec<Message> {
    let frames = attached.poll_transmit().expect("the session goes on");
    frames
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Message { body, .. } => Some(body),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_subscription_not_permitted_is_refused_and_not_registered() {
    let node = node();
    let mut session = attach(&node);
    session.handle_frames(vec![message(1, Message::Subscribe { path: "denied/x".into() })], Instant::now()).unwrap();
    assert_eq!(
        sent(&mut session),
        vec![Message::Refused {
            action: RefusedAction::Subscribe,
            path: "denied/x".into(),
            message: "subscribing to denied/x is not permitted for anonymous sessions".into(),
        }]
    );
    session
        .handle_frames(
            vec![message(2, Message::Publish { path: "denied/x".into(), data: b"d".to_vec().into() })],
            Instant::now(),
        )
        .unwrap();
    let refusal = sent(&mut session);
    assert!(
        matches!(&refusal[..], [Message::Refused { action: RefusedAction::Publish, path, .. }] if path == "denied/x"),
        "no delivery, since the subscription was not registered: {refusal:?}"
    );
}

#[tokio::test]
async fn a_publication_not_permitted_reaches_no_one_and_the_session_goes_on() {
    let node = node();
    let mut session = attach(&node);
    session.handle_frames(vec![message(1, Message::Subscribe { path: "allowed/".into() })], Instant::now()).unwrap();
    session
        .handle_frames(
            vec![message(2, Message::Publish { path: "allowed/a".into(), data: b"1".to_vec().into() })],
            Instant::now(),
        )
        .unwrap();
    assert!(matches!(&sent(&mut session)[..], [Message::Deliver { path, .. }] if &**path == "allowed/a"));
    let mut other = attach(&node);
    other.handle_frames(vec![message(1, Message::Subscribe { path: "denied/".into() })], Instant::now()).unwrap();
    let _ = sent(&mut other);
    session
        .handle_frames(
            vec![message(3, Message::Publish { path: "denied/a".into(), data: b"2".to_vec().into() })],
            Instant::now(),
        )
        .unwrap();
    assert_eq!(
        sent(&mut session),
        vec![Message::Refused {
            action: RefusedAction::Publish,
            path: "denied/a".into(),
            message: "publishing on denied/a is not permitted for anonymous sessions".into(),
        }]
    );
    assert_eq!(sent(&mut other), vec![], "nothing delivered");
    session
        .handle_frames(
            vec![message(4, Message::Publish { path: "allowed/b".into(), data: b"3".to_vec().into() })],
            Instant::now(),
        )
        .unwrap();
    assert!(matches!(&sent(&mut session)[..], [Message::Deliver { path, .. }] if &**path == "allowed/b"));
}

#[tokio::test]
async fn denials_are_counted_by_action() {
    let node = node();
    let mut session = attach(&node);
    let frames = vec![
        message(1, Message::Subscribe { path: "denied/".into() }),
        message(2, Message::Subscribe { path: "denied/y".into() }),
        message(3, Message::Publish { path: "denied/y".into(), data: Default::default() }),
        message(4, Message::Subscribe { path: "allowed/".into() }),
    ];
    session.handle_frames(frames, Instant::now()).unwrap();
    let text = node.metrics_text();
    assert!(text.contains(r#"session_server_denials_total{action="subscribe"} 2"#), "{text}");
    assert!(text.contains(r#"session_server_denials_total{action="publish"} 1"#), "{text}");
}

#[tokio::test]
async fn a_client_sending_refused_breaks_the_protocol() {
    let node = node();
    let mut session = attach(&node);
    let refused = Message::Refused { action: RefusedAction::Publish, path: "allowed/a".into(), message: String::new() };
    assert!(session.handle_frames(vec![message(1, refused)], Instant::now()).is_err());
}
