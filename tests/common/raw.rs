//! A protocol client written frame by frame, to do what the library never does: present another
//! session's token, vanish without a word, flood the server.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use session::protocol::{self, ConnectRequest, ConnectResponse, Credentials, Frame, Message};
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The frames of the next binary WebSocket message (none when the connection ends or stays
/// silent for 5 s).
pub async fn frames(ws: &mut Ws) -> Vec<Frame> {
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let WsMessage::Binary(b) = message {
            return protocol::decode_all(&b, protocol::DEFAULT_MAX_FRAME_SIZE).unwrap();
        }
    }
    Vec::new()
}

/// Reads until an ACK of `seq` (or later) arrives; false if the connection ends first.
pub async fn acked(ws: &mut Ws, seq: u64) -> bool {
    loop {
        let received = frames(ws).await;
        if received.is_empty() {
            return false;
        }
        if received.iter().any(|f| matches!(f, Frame::Ack(n) if *n >= seq)) {
            return true;
        }
    }
}

pub async fn send(ws: &mut Ws, frame: &Frame) {
    ws.send(WsMessage::binary(protocol::encode(frame))).await.unwrap();
}

/// Numbered message `seq`.
pub fn message(seq: u64, body: Message) -> Frame {
    Frame::Message { seq, body }
}

/// Connects as `principal` with password `<principal>-pw` (anonymous when empty), presenting
/// `token`; returns the connection, the response and the frames that came with it.
pub async fn connect(url: &str, principal: &str, token: &[u8]) -> (Ws, ConnectResponse, Vec<Frame>) {
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
        max_frame_size: protocol::DEFAULT_MAX_FRAME_SIZE,
        ..Default::default()
    };
    send(&mut ws, &Frame::ConnectRequest(request)).await;
    let mut received = frames(&mut ws).await;
    assert!(!received.is_empty(), "no answer");
    let Frame::ConnectResponse(response) = received.remove(0) else { panic!("{received:?}") };
    (ws, response, received)
}

/// The data of the deliveries among `frames`, as text.
pub fn delivered(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Message { body: Message::Deliver { data, .. }, .. } => Some(String::from_utf8_lossy(data).into()),
            _ => None,
        })
        .collect()
}

/// Runs `script` on a throwaway runtime.
pub fn run<T>(script: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(script)
}
