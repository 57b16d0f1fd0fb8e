//! Only a session's owner recovers it: the recovery token is bound to the identity that opened the
//! session and replaced at every recovery, so that a captured token goes stale.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use session::protocol::{self, ConnectRequest, Credentials, Frame, Message, ResponseCode};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn frames(ws: &mut Ws) -> Vec<Frame> {
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let WsMessage::Binary(b) = message {
            return protocol::decode_all(&b, protocol::DEFAULT_MAX_FRAME_SIZE).unwrap();
        }
    }
    Vec::new()
}

/// Connects as `principal` with `password` (anonymous when empty), presenting `token`; returns the
/// connection, the response and the frames that came with it.
async fn connect(url: &str, principal: &str, token: &[u8]) -> (Ws, protocol::ConnectResponse, Vec<Frame>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    let credentials = match principal {
        "" => Credentials::None,
        name => Credentials::Password(format!("{name}-pw").into_bytes()),
    };
    let request = ConnectRequest {
        min_version: 1,
        max_version: 1,
        principal: principal.into(),
        credentials,
        reconnect_token: token.to_vec(),
        max_frame_size: 65536,
        ..Default::default()
    };
    ws.send(WsMessage::binary(protocol::encode(&Frame::ConnectRequest(request)))).await.unwrap();
    let mut received = frames(&mut ws).await;
    assert!(!received.is_empty(), "no answer");
    let Frame::ConnectResponse(response) = received.remove(0) else { panic!("{received:?}") };
    (ws, response, received)
}

fn delivered(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Message { body: Message::Deliver { data, .. }, .. } => Some(String::from_utf8_lossy(data).into()),
            _ => None,
        })
        .collect()
}

#[test]
fn another_principal_or_an_anonymous_client_with_the_token_is_refused_and_the_owner_recovers() {
    let server = start_server_with(|c| {
        c.allow_anonymous = true;
        c.users.insert("alice".into(), b"alice-pw".to_vec());
        c.users.insert("bob".into(), b"bob-pw".to_vec());
    });
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut alice, opened, _) = connect(&url, "alice", &[]).await;
        assert_eq!(opened.code, ResponseCode::Ok);
        let first_token = opened.token.clone();
        let subscribe = Frame::Message { seq: 1, body: Message::Subscribe { path: "alice/inbox".into() } };
        alice.send(WsMessage::binary(protocol::encode(&subscribe))).await.unwrap();
        // The ACK of the subscription shows the server has it.
        assert!(frames(&mut alice).await.contains(&Frame::Ack(1)));
        drop(alice);
        let (mut publisher, _, _) = connect(&url, "bob", &[]).await;
        let publish =
            Frame::Message { seq: 1, body: Message::Publish { path: "alice/inbox".into(), data: "secret".into() } };
        publisher.send(WsMessage::binary(protocol::encode(&publish))).await.unwrap();
        assert!(frames(&mut publisher).await.contains(&Frame::Ack(1)));

        for stranger in ["bob", ""] {
            let (_, refused, with) = connect(&url, stranger, &first_token).await;
            assert_eq!(refused.code, ResponseCode::UnknownSession, "{stranger:?} presenting alice's token");
            assert!(refused.token.is_empty() && delivered(&with).is_empty(), "{refused:?} {with:?}");
        }

        let (mut alice, resumed, missed) = connect(&url, "alice", &first_token).await;
        assert_eq!(resumed.code, ResponseCode::Reconnected, "the owner recovers after the refusals");
        assert_eq!(delivered(&missed), vec!["secret"]);
        let second_token = resumed.token.clone();
        assert_eq!(second_token.len(), 16);
        assert_ne!(second_token, first_token, "a recovery hands out a new token");
        // Speaking on the new connection shows the client has the new token.
        alice.send(WsMessage::binary(protocol::encode(&Frame::Ping(7)))).await.unwrap();
        assert!(frames(&mut alice).await.contains(&Frame::Pong(7)));
        drop(alice);

        let (_, stale, _) = connect(&url, "alice", &first_token).await;
        assert_eq!(stale.code, ResponseCode::UnknownSession, "a captured token is stale after a recovery");
        let (_, again, _) = connect(&url, "alice", &second_token).await;
        assert_eq!(again.code, ResponseCode::Reconnected);
    });
}

#[test]
fn a_recovery_whose_answer_was_lost_can_be_tried_again_with_the_same_token() {
    let server = start_server_with(|c| c.allow_anonymous = true);
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (first, opened, _) = connect(&url, "", &[]).await;
        drop(first);
        // The client never reads the answer to this recovery, nor speaks after it.
        let (lost, resumed, _) = connect(&url, "", &opened.token).await;
        assert_eq!(resumed.code, ResponseCode::Reconnected);
        drop(lost);
        let (_, retried, _) = connect(&url, "", &opened.token).await;
        assert_eq!(retried.code, ResponseCode::Reconnected, "the token recovered with stays good until used");
        let (_, unseen, _) = connect(&url, "", &resumed.token).await;
        assert_eq!(unseen.code, ResponseCode::UnknownSession, "the token whose answer was lost is replaced");
    });
}
