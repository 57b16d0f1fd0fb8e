//! Plain HTTP/1.1 requests on the session endpoint: telling a WebSocket upgrade from a polling
//! request, reading bodies, writing responses.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use session::net::Stream;

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One request, body included.
#[derive(Debug)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the request asks for a WebSocket upgrade.
    pub(crate) fn is_upgrade(&self) -> bool {
        self.header("upgrade").is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
    }

    /// Whether the client keeps the connection open for more requests.
    pub(crate) fn keep_alive(&self) -> bool {
        !self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// What reading a request gave.
pub(crate) enum Read {
    /// A request, and the bytes read after it (for an upgrade, everything after the head: the
    /// body is not read).
    Request(HttpRequest, Vec<u8>),
    /// The connection closed before a request began.
    Closed,
    /// Not HTTP, or over the limits: the message says why.
    Bad(String),
}

/// A request head read from the start of a buffer (sans I/O, so that it can be tested and fuzzed
/// without a socket).
#[derive(Debug)]
pub(crate) enum Head {
    /// More bytes are needed.
    Partial,
    /// The head is complete: the request (body not yet read), the head's length and the length of
    /// the body that follows (0 for an upgrade).
    Complete(HttpRequest, usize, usize),
}

/// Parses the request head at the start of `buffered`: an error names what is wrong (not HTTP,
/// a head over 64 KiB, a body over `max_body`, a chunked body).
pub(crate) fn parse_head(buffered: &[u8], max_body: usize) -> Result<Head, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buffered) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buffered.len() <= MAX_HEAD => return Ok(Head::Partial),
        Ok(httparse::Status::Partial) => return Err("request head too large".into()),
        Err(e) => return Err(format!("not an HTTP request: {e}")),
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = HttpRequest {
        method: parsed.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: url::form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
            .collect(),
        body: Vec::new(),
    };
    if request.is_upgrade() {
        return Ok(Head::Complete(request, head_len, 0));
    }
    let length = match request.header("content-length").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= max_body => n,
        Some(Ok(n)) => return Err(format!("request body of {n} bytes is over the limit of {max_body}")),
        Some(Err(_)) => return Err("invalid Content-Length".into()),
    };
    if request.header("transfer-encoding").is_some() {
        return Err("chunked request bodies are not accepted; send Content-Length".into());
    }
    Ok(Head::Complete(request, head_len, length))
}

/// Reads one request from `stream`, starting with `buffered` bytes already read.
pub(crate) async fn read_request(stream: &mut Stream, mut buffered: Vec<u8>, max_body: usize) -> Read {
    let mut chunk = [0u8; 8192];
    let (mut request, head_len, length) = loop {
        match parse_head(&buffered, max_body) {
            Ok(Head::Complete(request, head_len, length)) => break (request, head_len, length),
            Ok(Head::Partial) => {}
            Err(why) => return Read::Bad(why),
        }
        match stream.read(&mut chunk).await {
            Ok(0) if buffered.is_empty() => return Read::Closed,
            Ok(0) | Err(_) => return Read::Bad("connection closed in the middle of a request".into()),
            Ok(n) => buffered.extend_from_slice(&chunk[..n]),
        }
    };
    let mut rest = buffered.split_off(head_len);
    if request.is_upgrade() {
        return Read::Request(request, rest);
    }
    while rest.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Read::Bad("connection closed in the middle of a request body".into()),
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
        }
    }
    let leftover = rest.split_off(length);
    request.body = rest;
    Read::Request(request, leftover)
}

/// Writes a response with `body`.
pub(crate) async fn write_response(
    stream: &mut Stream,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    stream.flush().await
}
