//! HTTP long polling: the same frames as over WebSocket, in request and response bodies.
//!
//! `POST path` with a CONNECT_REQUEST opens a virtual connection (its id in `X-Poll-Id`);
//! `POST path?c=ID&r=N` carries frames to the server; `GET path?c=ID&r=N` waits for frames from
//! it. `r` numbers each kind of request, so a request sent again (its response was lost) is
//! recognised: a repeated send is ignored, a repeated poll gets the same answer again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use super::connection::{self, Link};
use super::http::{read_request, write_response, HttpRequest, Read};
use super::metrics::Refusal;
use super::sessions::Transport;
use super::Shared;
use session::net::Stream;
use session::protocol::{self, Frame};

/// Longest a poll waits for frames before answering empty.
const POLL_HOLD: Duration = Duration::from_secs(20);
/// Most bytes of frames one poll answer carries (at least one batch, whatever its size), well
/// within what clients accept (twice their maximum message size and 64 KiB).
const POLL_ANSWER_MAX: usize = 1 << 20;
/// Most bytes of frames waiting for the client's polls; beyond, the session's delivery waits (as
/// on a full WebSocket), and a client that does not poll for [`POLL_STALL`] loses the connection.
const DOWNSTREAM_MAX: usize = 1 << 20;
const POLL_STALL: Duration = Duration::from_secs(30);
/// Header naming the virtual connection in the answer to an open request.
pub(crate) const POLL_ID_HEADER: &str = "X-Poll-Id";

/// One virtual connection.
pub(crate) struct PollChannel {
    inbound: mpsc::UnboundedSender<Vec<u8>>,
    last_send: AtomicU64,
    /// Batches of encoded frames for the client's next polls, and their bytes.
    downstream: Mutex<Downstream>,
    ready: Notify,
    /// A poll took frames.
    drained: Notify,
    closed: AtomicBool,
    polls: tokio::sync::Mutex<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct Downstream {
    batches: std::collections::VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Downstream {
    /// The batches for one poll answer: at least one, at most [`POLL_ANSWER_MAX`] bytes beyond it.
    fn take(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(next) = self.batches.front() {
            if !body.is_empty() && body.len() + next.len() > POLL_ANSWER_MAX {
                break;
            }
            let next = self.batches.pop_front().unwrap_or_default();
            self.bytes -= next.len();
            body.extend_from_slice(&next);
        }
        body
    }
}

impl PollChannel {
    /// A channel whose client's frames go to `inbound`.
    fn new(inbound: mpsc::UnboundedSender<Vec<u8>>) -> PollChannel {
        PollChannel {
            inbound,
            last_send: AtomicU64::new(0),
            downstream: Mutex::default(),
            ready: Notify::new(),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            polls: tokio::sync::Mutex::new((0, Vec::new())),
        }
    }

    /// Queues encoded frames for the client's polls, waiting while [`DOWNSTREAM_MAX`] bytes wait
    /// already; an error when the client has not polled for [`POLL_STALL`] or the channel closed.
    pub(crate) async fn push(&self, bytes: Vec<u8>) -> Result<(), ()> {
        let stalled = tokio::time::Instant::now() + POLL_STALL;
        loop {
            let drained = self.drained.notified();
            {
                let mut downstream = self.downstream.lock();
                if downstream.bytes == 0 || downstream.bytes + bytes.len() <= DOWNSTREAM_MAX {
                    downstream.bytes += bytes.len();
                    downstream.batches.push_back(bytes);
                    break;
                }
            }
            if self.closed.load(Ordering::SeqCst) || tokio::time::timeout_at(stalled, drained).await.is_err() {
                return Err(());
            }
        }
        self.ready.notify_one();
        Ok(())
    }

    /// No more frames will be queued; a waiting poll returns.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_one();
        self.drained.notify_one();
    }
}

/// The virtual connections of a server.
#[derive(Default)]
pub(crate) struct Channels {
    map: Mutex<HashMap<String, Arc<PollChannel>>>,
}

impl Channels {
    fn get(&self, id: &str) -> Option<Arc<PollChannel>> {
        self.map.lock().get(id).cloned()
    }
}

/// Serves plain HTTP requests on one TCP connection until it closes.
pub(super) async fn serve_http(
    shared: Arc<Shared>,
    mut stream: Stream,
    first: HttpRequest,
    mut buffered: Vec<u8>,
    peer: SocketAddr,
) {
    let max_body = shared.config.max_frame_size as usize + 64 * 1024;
    let mut request = first;
    loop {
        let keep_alive = request.keep_alive();
        let (status, reason, headers, body) = answer(&shared, request, peer).await;
        if write_response(&mut stream, status, reason, &headers, &body).await.is_err() || !keep_alive {
            return;
        }
        request = match read_request(&mut stream, std::mem::take(&mut buffered), max_body).await {
            Read::Request(next, rest) if !next.is_upgrade() => {
                buffered = rest;
                next
            }
            Read::Request(..) => {
                let _ =
                    write_response(&mut stream, 400, "Bad Request", &[], b"upgrade on a polling connection\n").await;
                return;
            }
            Read::Closed => return,
            Read::Bad(why) => {
                let _ = write_response(&mut stream, 400, "Bad Request", &[], format!("{why}\n").as_bytes()).await;
                return;
            }
        };
    }
}

type Answer = (u16, &'static str, Vec<(&'static str, String)>, Vec<u8>);

fn text(status: u16, reason: &'static str, body: &str) -> Answer {
    (status, reason, vec![("Content-Type", "text/plain".into())], format!("{body}\n").into_bytes())
}

async fn answer(shared: &Arc<Shared>, request: HttpRequest, peer: SocketAddr) -> Answer {
    if !shared.config.paths.contains(&request.path) {
        shared.metrics.refused(Refusal::BadHandshake);
        return text(404, "Not Found", "no session endpoint at this path");
    }
    let number = request.query.get("r").and_then(|r| r.parse::<u64>().ok());
    match (request.method.as_str(), request.query.get("c"), number) {
        ("POST", None, _) => open(shared, &request.body, peer).await,
        ("POST", Some(id), Some(r)) => match shared.polls.get(id) {
            Some(channel) => {
                // Each send is taken once: a repeat (its answer was lost) is only acknowledged.
                if channel.last_send.fetch_max(r, Ordering::SeqCst) < r && !request.body.is_empty() {
                    let _ = channel.inbound.send(request.body);
                }
                (204, "No Content", Vec::new(), Vec::new())
            }
            None => text(410, "Gone", "no such polling connection"),
        },
        ("GET", Some(id), Some(r)) => match shared.polls.get(id) {
            Some(channel) => poll(shared, id, &channel, r).await,
            None => text(410, "Gone", "no such polling connection"),
        },
        ("GET", None, _) => {
            shared.metrics.refused(Refusal::BadHandshake);
            text(400, "Bad Request", "a WebSocket upgrade or a polling request was expected")
        }
        ("GET" | "POST", _, None) => text(400, "Bad Request", "missing or invalid request number r"),
        _ => {
            shared.metrics.refused(Refusal::BadHandshake);
            text(405, "Method Not Allowed", "use GET or POST")
        }
    }
}

/// Opens a virtual connection and starts serving its session.
async fn open(shared: &Arc<Shared>, body: &[u8], peer: SocketAddr) -> Answer {
    if shared.registry.len() >= shared.config.max_sessions {
        shared.metrics.refused(Refusal::MaxSessions);
        let mut refusal = text(503, "Service Unavailable", "server is at its session limit; try later");
        refusal.2.push(("Retry-After", "1".into()));
        return refusal;
    }
    let bad = |why: &str| {
        shared.metrics.refused(Refusal::BadHandshake);
        text(400, "Bad Request", why)
    };
    let request = match protocol::decode_all(body, shared.config.max_frame_size) {
        Ok(frames) if frames.len() == 1 => match frames.into_iter().next() {
            Some(Frame::ConnectRequest(r)) => r,
            _ => return bad("the open request must carry one CONNECT_REQUEST frame"),
        },
        Ok(_) => return bad("the open request must carry one CONNECT_REQUEST frame"),
        Err(e) => return bad(&e.to_string()),
    };
    let shutdown = shared.shutdown.subscribe();
    let (first, attached) = connection::attach(shared, &request, peer, Transport::Polling).await;
    let body: Vec<u8> = first.iter().flat_map(protocol::encode).collect();
    let Some(attached) = attached else {
        return (200, "OK", Vec::new(), body);
    };
    let id = hex(&rand::random::<[u8; 16]>());
    let (inbound, inbound_rx) = mpsc::unbounded_channel();
    let channel = Arc::new(PollChannel::new(inbound));
    shared.polls.map.lock().insert(id.clone(), channel.clone());
    let task_shared = shared.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        connection::serve(&task_shared, Link::Poll(channel, inbound_rx), Box::new(attached), shutdown, peer).await;
        // Leave the channel for a last poll to collect what it holds, then forget it.
        tokio::time::sleep(POLL_HOLD).await;
        task_shared.polls.map.lock().remove(&task_id);
    });
    (200, "OK", vec![(POLL_ID_HEADER, id)], body)
}

/// Answers poll `r`: what is queued, waiting up to the hold time for something.
async fn poll(shared: &Arc<Shared>, id: &str, channel: &PollChannel, r: u64) -> Answer {
    let mut last = channel.polls.lock().await;
    if r == last.0 {
        return (200, "OK", Vec::new(), last.1.clone());
    }
    if r != last.0 + 1 {
        return text(400, "Bad Request", &format!("poll {r} after poll {}", last.0));
    }
    let deadline = tokio::time::Instant::now() + POLL_HOLD;
    let body = loop {
        let ready = channel.ready.notified();
        let pending = channel.downstream.lock().take();
        if !pending.is_empty() {
            channel.drained.notify_one();
            break pending;
        }
        if channel.closed.load(Ordering::SeqCst) {
            shared.polls.map.lock().remove(id);
            return text(410, "Gone", "the polling connection is closed");
        }
        if tokio::time::timeout_at(deadline, ready).await.is_err() {
            break Vec::new();
        }
    };
    *last = (r, body.clone());
    (200, "OK", Vec::new(), body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> PollChannel {
        PollChannel::new(mpsc::unbounded_channel().0)
    }

    #[test]
    fn a_poll_answer_holds_at_most_a_mebibyte_beyond_its_first_batch() {
        let mut downstream = Downstream::default();
        for size in [600 << 10, 600 << 10, 100, 2 << 20] {
            downstream.bytes += size;
            downstream.batches.push_back(vec![0; size]);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| Some(downstream.take().len()).filter(|n| *n > 0)).collect();
        assert_eq!(sizes, vec![600 << 10, (600 << 10) + 100, 2 << 20], "a batch larger than the limit goes alone");
        assert_eq!(downstream.bytes, 0);
    }

    #[tokio::test]
    async fn frames_for_a_client_that_does_not_poll_wait_instead_of_piling_up() {
        let channel = Arc::new(channel());
        channel.push(vec![0; DOWNSTREAM_MAX]).await.unwrap();
        let waiting = tokio::spawn({
            let channel = channel.clone();
            async move { channel.push(vec![1; 10]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room until a poll takes frames");
        assert_eq!(channel.downstream.lock().bytes, DOWNSTREAM_MAX);
        assert_eq!(channel.downstream.lock().take().len(), DOWNSTREAM_MAX);
        channel.drained.notify_one();
        assert_eq!(waiting.await.unwrap(), Ok(()));
        channel.push(vec![0; DOWNSTREAM_MAX - 10]).await.unwrap();
        let refused = tokio::spawn({
            let channel = channel.clone();
            async move { channel.push(vec![1; 10]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        channel.close();
        assert_eq!(refused.await.unwrap(), Err(()), "a closed channel takes nothing more");
    }
}
