//! Only a session's owner recovers it: the recovery token is bound to the identity that opened the
//! session and replaced at every recovery, so that a captured token goes stale.

mod common;

use common::raw::{acked, connect, delivered, frames, message, run, send};
use common::*;
use session::protocol::{Frame, Message, ResponseCode};

#[test]
fn another_principal_or_an_anonymous_client_with_the_token_is_refused_and_the_owner_recovers() {
    let server = start_server_with(|c| {
        c.allow_anonymous = true;
        c.users.insert("alice".into(), b"alice-pw".to_vec());
        c.users.insert("bob".into(), b"bob-pw".to_vec());
    });
    let url = server.url();
    run(async {
        let (mut alice, opened, _) = connect(&url, "alice", &[]).await;
        assert_eq!(opened.code, ResponseCode::Ok);
        let first_token = opened.token.clone();
        send(&mut alice, &message(1, Message::Subscribe { path: "alice/inbox".into() })).await;
        // The ACK of the subscription shows the server has it.
        assert!(acked(&mut alice, 1).await);
        drop(alice);
        let (mut publisher, _, _) = connect(&url, "bob", &[]).await;
        send(&mut publisher, &message(1, Message::Publish { path: "alice/inbox".into(), data: "secret".into() })).await;
        assert!(acked(&mut publisher, 1).await);

        for stranger in ["bob", ""] {
            let (_, refused, with) = connect(&url, stranger, &first_token).await;
            assert_eq!(refused.code, ResponseCode::UnknownSession, "{stranger:?} presenting alice's token");
            assert!(refused.token.is_empty() && delivered(&with).is_empty(), "{refused:?} {with:?}");
        }

        let (mut alice, resumed, mut missed) = connect(&url, "alice", &first_token).await;
        assert_eq!(resumed.code, ResponseCode::Reconnected, "the owner recovers after the refusals");
        // What was missed follows the answer, in a message of its own.
        if missed.is_empty() {
            missed = frames(&mut alice).await;
        }
        assert_eq!(delivered(&missed), vec!["secret"]);
        let second_token = resumed.token.clone();
        assert_eq!(second_token.len(), 16);
        assert_ne!(second_token, first_token, "a recovery hands out a new token");
        // Speaking on the new connection shows the client has the new token.
        send(&mut alice, &Frame::Ping(7)).await;
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
    run(async {
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
