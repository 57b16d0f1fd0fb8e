//! Frames over HTTP long polling: an open request, numbered sends, and a background task that
//! keeps one poll waiting at the server. Works directly, through CONNECT tunnels, and through HTTP
//! proxies with absolute-form requests (with their authentication).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Stream;
use super::TransportOptions;
use crate::error::{Error, ErrorCode, Result};
use crate::http::cookies::CookieJar;
use crate::http::url::ServerUrl;
use crate::protocol::{self, Frame};
use crate::proxy::{self, ConnectConversation, Next, PlainRequest, Proxy, ProxyAuth, ProxyResponse, ResponseReader};

/// Header naming the virtual connection in the answer to an open request.
const POLL_ID_HEADER: &str = "x-poll-id";
/// The longest poll id taken from a server.
const MAX_POLL_ID: usize = 128;

/// Whether a server's poll id may go into a request line as it is: 1 to [`MAX_POLL_ID`]
/// unreserved URL characters.
fn is_poll_id(id: &str) -> bool {
    (1..=MAX_POLL_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
/// Attempts of one request before the connection counts as lost.
const REQUEST_ATTEMPTS: u32 = 3;
/// A poll answered empty sooner than this was not held at the server, as polls are: polling again
/// at once would make the client spin against a broken server or middlebox.
const EMPTY_AT_ONCE: std::time::Duration = std::time::Duration::from_millis(50);
/// The wait after the first poll answered empty at once; it doubles with each further one.
const EMPTY_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
/// The longest wait between polls answered empty at once (well inside a keep-alive interval).
const EMPTY_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// How requests reach the server.
#[derive(Clone)]
enum Route {
    /// Directly, or through a CONNECT/SOCKS5 tunnel (and TLS for xhrs://): origin-form requests.
    Stream,
    /// Through an HTTP proxy, absolute-form requests.
    Proxy { host: String, port: u16, tls: bool, auth: Option<ProxyAuth> },
}

/// One HTTP/1.1 connection used for a sequence of requests, reopened when it fails.
struct HttpChannel {
    url: ServerUrl,
    options: TransportOptions,
    cookies: Arc<CookieJar>,
    route: Route,
    stream: Option<Stream>,
}

impl HttpChannel {
    fn new(url: &ServerUrl, options: &TransportOptions, cookies: Arc<CookieJar>) -> Result<Self> {
        let proxy = options.proxy.resolve(url.secure, &url.host, url.port, |name| std::env::var(name).ok())?;
        let route = match proxy {
            Some(Proxy::Http { host, port, auth, tls }) if !url.secure => Route::Proxy { host, port, tls, auth },
            _ => Route::Stream,
        };
        Ok(HttpChannel { url: url.clone(), options: options.clone(), cookies, route, stream: None })
    }

    /// Who answered `response`, for messages: the server, or when requests go through an HTTP
    /// proxy, the server or the proxy (a proxy answers for a server it cannot reach).
    fn answered(&self, what: &str, response: &ProxyResponse) -> String {
        let server = self.url.authority();
        match &self.route {
            Route::Stream => format!("server {server} answered {what} with {}", response.status_line),
            Route::Proxy { host, port, .. } => format!(
                "{what} to server {server} through proxy {} was answered with {} (by the server or by the proxy)",
                proxy::config::authority(host, *port),
                response.status_line
            ),
        }
    }

    fn clone_fresh(&self) -> Self {
        HttpChannel {
            url: self.url.clone(),
            options: self.options.clone(),
            cookies: self.cookies.clone(),
            route: self.route.clone(),
            stream: None,
        }
    }

    /// Sends a request on the session path with `query` (may be empty), trying again on a fresh
    /// connection when the connection fails (requests are numbered, so repeating is safe).
    async fn request(&mut self, method: &str, query: &str, body: &[u8]) -> Result<ProxyResponse> {
        let mut last = None;
        for _ in 0..REQUEST_ATTEMPTS {
            match self.attempt(method, query, body).await {
                Ok(response) => return Ok(response),
                Err(e) if e.is_transient() => {
                    self.stream = None;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorCode::CommunicationError, "request failed")))
    }

    async fn attempt(&mut self, method: &str, query: &str, body: &[u8]) -> Result<ProxyResponse> {
        let url = &self.url.clone();
        let target = if query.is_empty() { url.path.clone() } else { format!("{}?{query}", url.path) };
        let mut headers = vec![
            ("Content-Type".to_string(), "application/octet-stream".to_string()),
            ("Content-Length".to_string(), body.len().to_string()),
        ];
        headers.extend(self.options.http_headers.iter().cloned());
        if let Some(cookie) = self.cookies.header(url) {
            headers.push(("Cookie".to_string(), cookie));
        }
        let response = match self.route.clone() {
            Route::Stream => {
                let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
                let bytes = crate::http::request(method, &target, &url.authority(), headers, body);
                self.exchange(&bytes, None).await?
            }
            Route::Proxy { host, port, tls, auth } => {
                let scheme = if url.secure { "https" } else { "http" };
                let request = PlainRequest {
                    method: method.to_string(),
                    uri: format!("{scheme}://{}{target}", url.authority()),
                    host: url.authority(),
                    headers,
                    body: body.to_vec(),
                };
                let name = proxy::config::authority(&host, port);
                let mut conversation = ConnectConversation::plain(&name, auth, request);
                let mut bytes = conversation.first_request()?;
                loop {
                    let response = self.exchange(&bytes, Some((&host, port, tls))).await?;
                    match conversation.on_response(&response)? {
                        Next::Tunnel => break response,
                        Next::Retry(next) => bytes = next,
                    }
                }
            }
        };
        self.cookies.store(url, &response.headers);
        Ok(response)
    }

    /// Writes `request` and reads the whole response, opening the connection if needed.
    async fn exchange(&mut self, request: &[u8], proxy: Option<(&str, u16, bool)>) -> Result<ProxyResponse> {
        let peer = match proxy {
            Some((host, port, _)) => {
                format!("{} through proxy {}", self.url.authority(), proxy::config::authority(host, port))
            }
            None => self.url.authority(),
        };
        if self.stream.is_none() {
            self.stream = Some(match proxy {
                Some((host, port, tls)) => proxy::connect_http_proxy(host, port, tls, &self.options.connect).await?,
                None => super::open_stream(&self.url, &self.options).await?,
            });
        }
        let stream = self.stream.as_mut().expect("opened above");
        let lost = |e: std::io::Error| {
            Error::new(ErrorCode::CommunicationError, format!("polling connection to {peer} failed: {e}")).try_later()
        };
        stream.write_all(request).await.map_err(lost)?;
        let limit = self.options.max_frame_size as u64 * 2 + 64 * 1024;
        let mut reader = ResponseReader::keeping_body(&peer, limit);
        let mut buf = vec![0u8; 16 * 1024];
        let response = loop {
            let n = stream.read(&mut buf).await.map_err(lost)?;
            if n == 0 {
                break reader
                    .end_of_stream()
                    .map_err(|e| Error::new(ErrorCode::CommunicationError, e.message()).try_later())?;
            }
            if let Some(response) = reader.push(&buf[..n])? {
                break response;
            }
        };
        if !response.keep_alive {
            self.stream = None;
        }
        Ok(response)
    }
}

/// A long-polling connection carrying protocol frames.
pub struct PollConnection {
    channel: HttpChannel,
    id: Option<String>,
    next_send: u64,
    polls: Option<mpsc::UnboundedReceiver<Result<Vec<u8>>>>,
    poller: Option<tokio::task::JoinHandle<()>>,
    pending: VecDeque<Frame>,
    max_frame_size: u32,
    peer: String,
}

impl Drop for PollConnection {
    fn drop(&mut self) {
        if let Some(poller) = self.poller.take() {
            poller.abort();
        }
    }
}

impl PollConnection {
    /// A connection to `url`, opened by the first frame sent (the CONNECT_REQUEST).
    pub(crate) fn new(url: &ServerUrl, options: &TransportOptions, cookies: Arc<CookieJar>) -> Result<Self> {
        Ok(PollConnection {
            channel: HttpChannel::new(url, options, cookies)?,
            id: None,
            next_send: 1,
            polls: None,
            poller: None,
            pending: VecDeque::new(),
            max_frame_size: options.max_frame_size,
            peer: url.authority(),
        })
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends encoded frames: the first request opens the connection.
    pub async fn send_encoded(&mut self, frames: Vec<u8>) -> Result<()> {
        let Some(id) = self.id.clone() else { return self.open(&frames).await };
        let query = format!("c={id}&r={}", self.next_send);
        let response = self.channel.request("POST", &query, &frames).await?;
        match response.status {
            200..=299 => {
                self.next_send += 1;
                Ok(())
            }
            410 | 404 => Err(self.lost(&response)),
            _ => Err(self.unexpected(&response)),
        }
    }

    async fn open(&mut self, frames: &[u8]) -> Result<()> {
        let response = self.channel.request("POST", "", frames).await?;
        if response.status != 200 {
            let error =
                Error::new(ErrorCode::HandshakeRecvFail, self.channel.answered("the polling open request", &response));
            return Err(if matches!(response.status, 502..=504) { error.try_later() } else { error });
        }
        let frames = protocol::decode_all(&response.body, self.max_frame_size).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConnectionProtocol,
                format!("server {} answered with a bad body: {e}", self.peer),
            )
        })?;
        self.pending.extend(frames);
        if let Some(id) =
            response.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(POLL_ID_HEADER)).map(|(_, v)| v.clone())
        {
            // It goes into every later request line: only a plain token is taken.
            if !is_poll_id(&id) {
                return Err(Error::new(
                    ErrorCode::InvalidConnectionProtocol,
                    format!(
                        "server {} sent a poll id that is not a token of at most {MAX_POLL_ID} characters",
                        self.peer
                    ),
                ));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let channel = self.channel.clone_fresh();
            self.poller = Some(crate::runtime::spawn(poll_loop(channel, id.clone(), tx)));
            self.polls = Some(rx);
            self.id = Some(id);
        }
        Ok(())
    }

    /// The next frame; `Ok(None)` when the server ended the connection. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(Some(frame));
            }
            let Some(polls) = self.polls.as_mut() else { return Ok(None) };
            match polls.recv().await {
                Some(Ok(body)) => {
                    let frames = protocol::decode_all(&body, self.max_frame_size).map_err(|e| {
                        Error::new(
                            ErrorCode::ConnectionProtocolError,
                            format!("server {} sent a bad frame: {e}", self.peer),
                        )
                    })?;
                    self.pending.extend(frames);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    fn lost(&self, response: &ProxyResponse) -> Error {
        Error::new(
            ErrorCode::CommunicationError,
            format!("server {} no longer has this polling connection ({})", self.peer, response.status_line),
        )
    }

    fn unexpected(&self, response: &ProxyResponse) -> Error {
        Error::new(ErrorCode::ConnectionProtocolError, self.channel.answered("a polling request", response))
    }
}

/// Keeps one poll waiting at the server; hands every non-empty answer to the connection.
async fn poll_loop(mut channel: HttpChannel, id: String, frames: mpsc::UnboundedSender<Result<Vec<u8>>>) {
    let mut r = 1u64;
    let mut backoff = std::time::Duration::ZERO;
    loop {
        let asked = tokio::time::Instant::now();
        let answer = channel.request("GET", &format!("c={id}&r={r}"), &[]).await;
        match answer {
            Ok(response) if response.status == 200 => {
                r += 1;
                if response.body.is_empty() && asked.elapsed() < EMPTY_AT_ONCE {
                    backoff = (backoff * 2).clamp(EMPTY_BACKOFF_FIRST, EMPTY_BACKOFF_MAX);
                    tokio::time::sleep(backoff).await;
                } else {
                    backoff = std::time::Duration::ZERO;
                }
                if !response.body.is_empty() && frames.send(Ok(response.body)).is_err() {
                    return;
                }
            }
            // The server ended the connection: the receiver sees the end.
            Ok(response) if matches!(response.status, 404 | 410) => return,
            Ok(response) => {
                let _ = frames
                    .send(Err(Error::new(ErrorCode::ConnectionProtocolError, channel.answered("a poll", &response))));
                return;
            }
            Err(e) => {
                let _ = frames.send(Err(Error::new(ErrorCode::CommunicationError, e.message())));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_plain_token_is_taken_as_a_poll_id() {
        assert!(super::is_poll_id("0f3a-9b.c_d~e"));
        for id in ["", "a b", "1&r=999", "a/../b", "a?b", "a#b", "é", &"a".repeat(129)] {
            assert!(!super::is_poll_id(id), "{id:?}");
        }
    }
}
