//! Reads one HTTP/1.x response from a proxy: the head, then any body (by Content-Length, chunked,
//! or until close) so the connection can carry the next request. Bytes in, response out.

use crate::error::{Error, ErrorCode, Result};

/// Largest response head accepted.
pub const MAX_HEAD_SIZE: usize = 64 * 1024;
/// Largest body skipped over before giving up on the response.
pub const MAX_BODY_SIZE: u64 = 1024 * 1024;
const MAX_HEADERS: usize = 128;
/// Interim (1xx) answers stepped over before the final one; a proxy that sends more is hostile.
const MAX_INTERIM: usize = 16;
const MAX_LINE: usize = 4096;

/// A proxy's response, body discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyResponse {
    /// The status code.
    pub status: u16,
    /// The status line as received (without CRLF), for messages.
    pub status_line: String,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// Whether the proxy keeps the connection open after this response.
    pub keep_alive: bool,
    /// The body, when the reader was asked to keep it.
    pub body: Vec<u8>,
}

impl ProxyResponse {
    /// Values of every header called `name` (any case), joined with ", ".
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> =
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// What [`ResponseReader::parse_head`] found.
enum Head {
    /// Not all of it yet.
    Partial,
    /// A 1xx answer to CONNECT of this many bytes, to step over.
    Interim(usize),
    /// The response's head, of this many bytes.
    Final(usize),
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

/// Incremental reader for one response. `for_connect` marks a response to CONNECT, where a 2xx
/// has no body: the tunnel starts right after the head.
#[derive(Debug)]
pub struct ResponseReader {
    /// "proxy host:port" or "server host:port", for messages.
    peer: String,
    code: ErrorCode,
    for_connect: bool,
    buf: Vec<u8>,
    head: Option<(ProxyResponse, Body)>,
    body_seen: u64,
    keep_body: bool,
    body_limit: u64,
    /// Whether the response is complete with its head (its body, if any, is not read).
    head_only: bool,
    /// Interim (1xx) heads stepped over so far.
    interim: usize,
}

impl ResponseReader {
    /// A reader for a response from `proxy` (host:port, for messages).
    pub fn new(proxy: &str, for_connect: bool) -> Self {
        ResponseReader {
            peer: format!("proxy {proxy}"),
            code: ErrorCode::ProxyProtocolError,
            for_connect,
            buf: Vec::new(),
            head: None,
            body_seen: 0,
            keep_body: false,
            body_limit: MAX_BODY_SIZE,
            head_only: false,
            interim: 0,
        }
    }

    /// A reader for the answer of server `peer` to a WebSocket upgrade request: complete with
    /// its head (a 101 has no body, and the body of a refusal is not needed); what follows the
    /// head is the server's first WebSocket bytes.
    pub fn upgrade(peer: &str) -> Self {
        ResponseReader {
            head_only: true,
            peer: format!("server {peer}"),
            code: ErrorCode::InvalidConnectionProtocol,
            ..ResponseReader::new(peer, false)
        }
    }

    /// A reader for an ordinary response from `peer` that keeps bodies of up to `limit` bytes.
    pub fn keeping_body(peer: &str, limit: u64) -> Self {
        ResponseReader {
            keep_body: true,
            body_limit: limit,
            peer: format!("server {peer}"),
            code: ErrorCode::ConnectionProtocolError,
            ..ResponseReader::new(peer, false)
        }
    }

    /// Feeds received bytes; returns the response once it is complete. Bytes past its end are
    /// kept and returned by [`ResponseReader::into_rest`].
    pub fn push(&mut self, data: &[u8]) -> Result<Option<ProxyResponse>> {
        self.buf.extend_from_slice(data);
        // Interim heads are stepped over and dropped together, so that a flood of them costs
        // one pass over the buffer.
        let mut start = 0;
        while self.head.is_none() {
            match self.parse_head(start)? {
                Head::Partial => {
                    self.buf.drain(..start);
                    return Ok(None);
                }
                Head::Interim(len) => start += len,
                Head::Final(len) => {
                    self.buf.drain(..start + len);
                }
            }
        }
        if self.head_only {
            return Ok(self.head.take().map(|(response, _)| response));
        }
        self.skip_body()
    }

    /// The proxy closed the connection: completes a body read until close, or reports a
    /// response cut short.
    pub fn end_of_stream(&mut self) -> Result<ProxyResponse> {
        match self.head.take() {
            Some((response, Body::UntilClose)) => Ok(response),
            Some(_) => Err(self.error("closed the connection in the middle of the response body")),
            None if self.buf.is_empty() => Err(self.error("closed the connection without answering")),
            None => Err(self.error("closed the connection in the middle of the response head")),
        }
    }

    /// Bytes received after the end of the response.
    pub fn into_rest(self) -> Vec<u8> {
        self.buf
    }

    fn error(&self, what: &str) -> Error {
        Error::new(self.code, format!("{} {what}", self.peer))
    }

    /// Parses the head that starts at `start` in the buffer, if complete; a final head goes to
    /// `self.head` (its bytes are left for the caller to drop).
    fn parse_head(&mut self, start: usize) -> Result<Head> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let buf = &self.buf[start..];
        let head_len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD_SIZE {
                    return Err(self.error(&format!("sent a response head larger than {} KiB", MAX_HEAD_SIZE / 1024)));
                }
                return Ok(Head::Partial);
            }
            Err(e) => {
                let start = String::from_utf8_lossy(&buf[..buf.len().min(40)]).escape_debug().to_string();
                return Err(self.error(&format!("sent a malformed response ({e}), starting \"{start}\"")));
            }
        };
        if head_len > MAX_HEAD_SIZE {
            return Err(self.error(&format!("sent a response head larger than {} KiB", MAX_HEAD_SIZE / 1024)));
        }
        let status = parsed.code.unwrap_or(0);
        if !(100..=599).contains(&status) {
            return Err(self.error(&format!("answered with status {status}, which is not an HTTP status")));
        }
        if self.for_connect && (100..200).contains(&status) {
            // An interim answer (100 Continue, 102 Processing...): the final one follows, after
            // a few at most.
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return Err(self.error(&format!("sent more than {MAX_INTERIM} interim (1xx) answers")));
            }
            return Ok(Head::Interim(head_len));
        }
        let minor = parsed.version.unwrap_or(1);
        let status_line = format!("HTTP/1.{minor} {status} {}", parsed.reason.unwrap_or("")).trim_end().to_string();
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
            .collect();
        let mut response = ProxyResponse { status, status_line, headers, keep_alive: minor >= 1, body: Vec::new() };
        for name in ["connection", "proxy-connection"] {
            if let Some(value) = response.header(name) {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    response.keep_alive = false;
                } else if value.contains("keep-alive") {
                    response.keep_alive = true;
                }
            }
        }
        let body = self.body_kind(&response)?;
        if matches!(body, Body::UntilClose) {
            response.keep_alive = false;
        }
        self.head = Some((response, body));
        Ok(Head::Final(head_len))
    }

    fn body_kind(&self, response: &ProxyResponse) -> Result<Body> {
        let status = response.status;
        if (self.for_connect && (200..300).contains(&status))
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Body::Length(0));
        }
        if let Some(te) = response.header("transfer-encoding") {
            if te.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked") {
                return Ok(Body::Chunked(Chunk::Size));
            }
        }
        match response.header("content-length") {
            Some(len) => match len.split(',').next().unwrap_or("").trim().parse::<u64>() {
                Ok(n) => Ok(Body::Length(n)),
                Err(_) => Err(self.error(&format!("sent an invalid Content-Length '{}'", len.escape_debug()))),
            },
            None => Ok(Body::UntilClose),
        }
    }

    /// Consumes body bytes; returns the response once the body is complete.
    fn skip_body(&mut self) -> Result<Option<ProxyResponse>> {
        loop {
            let Some((_, body)) = self.head.as_mut() else { return Ok(None) };
            match body {
                Body::Length(remaining) => {
                    let take = (*remaining).min(self.buf.len() as u64);
                    *remaining -= take;
                    let done = *remaining == 0;
                    self.take(take as usize)?;
                    return Ok(if done { self.head.take().map(|(r, _)| r) } else { None });
                }
                Body::UntilClose => {
                    let n = self.buf.len();
                    self.take(n)?;
                    return Ok(None);
                }
                Body::Chunked(Chunk::Data(remaining)) => {
                    let take = (*remaining).min(self.buf.len() as u64);
                    *remaining -= take;
                    if *remaining == 0 {
                        *body = Body::Chunked(Chunk::DataEnd);
                    }
                    self.take(take as usize)?;
                    if take == 0 {
                        return Ok(None);
                    }
                }
                Body::Chunked(state) => {
                    let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.buf.len() > MAX_LINE {
                            return Err(self.error("sent an overlong line in a chunked body"));
                        }
                        return Ok(None);
                    };
                    let line = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                    let next = match state {
                        Chunk::Size => {
                            let size = line.split(';').next().unwrap_or("").trim();
                            match u64::from_str_radix(size, 16) {
                                Ok(0) => Chunk::Trailer,
                                Ok(n) => Chunk::Data(n),
                                Err(_) => return Err(self.error("sent a malformed chunk size")),
                            }
                        }
                        Chunk::DataEnd if line.is_empty() => Chunk::Size,
                        Chunk::DataEnd => return Err(self.error("sent a chunk without its closing CRLF")),
                        Chunk::Trailer if line.is_empty() => {
                            self.buf.drain(..line_end + 2);
                            return Ok(self.head.take().map(|(r, _)| r));
                        }
                        Chunk::Trailer => Chunk::Trailer,
                        Chunk::Data(_) => unreachable!("handled above"),
                    };
                    *state = next;
                    self.consume(line_end + 2)?;
                }
            }
        }
    }

    /// Consumes `n` body bytes, kept when asked.
    fn take(&mut self, n: usize) -> Result<()> {
        if self.keep_body {
            if let Some((response, _)) = self.head.as_mut() {
                response.body.extend_from_slice(&self.buf[..n]);
            }
        }
        self.consume(n)
    }

    /// Consumes `n` bytes of the body's framing or content.
    fn consume(&mut self, n: usize) -> Result<()> {
        self.body_seen += n as u64;
        if self.body_seen > self.body_limit {
            return Err(self.error(&format!("sent a response body larger than {} KiB", self.body_limit / 1024)));
        }
        self.buf.drain(..n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Option<ProxyResponse>> {
        ResponseReader::new("proxy:3128", true).push(bytes)
    }

    #[test]
    fn a_200_to_connect_ends_at_the_head_and_keeps_later_bytes() {
        let mut r = ResponseReader::new("p:1", true);
        let resp = r.push(b"HTTP/1.0 200 Connection established\r\n\r\nHTTP/1.1 101").unwrap().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.status_line, "HTTP/1.0 200 Connection established");
        assert_eq!(r.into_rest(), b"HTTP/1.1 101");
    }

    #[test]
    fn interim_answers_to_connect_are_skipped_for_the_final_one() {
        let resp = read_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(resp.unwrap().unwrap().status, 200);
        let mut r = ResponseReader::new("p:1", true);
        assert!(r.push(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().is_none(), "still waiting for the final answer");
        assert_eq!(r.push(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap().status, 403);
        let mut few = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM);
        few.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(read_all(&few).unwrap().unwrap().status, 200);
    }

    #[test]
    fn a_flood_of_interim_answers_is_a_protocol_error_not_a_wait_for_the_timeout() {
        let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(100_000);
        let e = read_all(&flood).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyProtocolError);
        assert!(e.message().contains("more than 16 interim"), "{e}");
        let mut r = ResponseReader::new("p:1", true);
        for _ in 0..MAX_INTERIM {
            assert!(r.push(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().is_none());
        }
        assert!(r.push(b"HTTP/1.1 100 Continue\r\n\r\n").is_err(), "counted across reads");
    }

    #[test]
    fn a_status_outside_http_is_a_protocol_error_at_once() {
        for status in ["999", "000", "600"] {
            let e = read_all(format!("HTTP/1.1 {status} Odd\r\n\r\n").as_bytes()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::ProxyProtocolError, "{status}: {e}");
            assert!(
                e.message().contains(&format!("status {}", status.trim_start_matches('0').parse::<u16>().unwrap_or(0))),
                "{e}"
            );
        }
    }

    #[test]
    fn an_upgrade_answer_ends_at_its_head_whatever_its_status() {
        let mut r = ResponseReader::upgrade("s:1");
        let resp = r.push(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x82\x05").unwrap().unwrap();
        assert_eq!((resp.status, resp.header("upgrade").as_deref()), (101, Some("websocket")));
        assert_eq!(r.into_rest(), b"\x82\x05");
        // A refusal is complete without its body, even one that lasts until close.
        let mut r = ResponseReader::upgrade("s:1");
        assert_eq!(r.push(b"HTTP/1.1 403 Forbidden\r\n\r\nno").unwrap().unwrap().status, 403);
        let e = ResponseReader::upgrade("s:1").push(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConnectionProtocol);
        assert!(e.message().starts_with("server s:1 sent a malformed response"), "{e}");
    }

    #[test]
    fn a_407_body_is_skipped_by_content_length_and_the_connection_kept() {
        let head = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 5\r\n\r\n";
        let mut r = ResponseReader::new("p:1", true);
        assert_eq!(r.push(head).unwrap(), None);
        let resp = r.push(b"hello").unwrap().unwrap();
        assert_eq!(resp.status, 407);
        assert!(resp.keep_alive);
        assert_eq!(resp.header("proxy-authenticate").unwrap(), "Basic realm=\"x\"");
    }

    #[test]
    fn chunked_bodies_are_skipped_across_reads() {
        let all = b"HTTP/1.1 407 X\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: y\r\n\r\nREST";
        for split in 0..all.len() {
            let mut r = ResponseReader::new("p:1", true);
            let (resp, unpushed) = match r.push(&all[..split]).unwrap() {
                Some(resp) => (resp, &all[split..]),
                None => (r.push(&all[split..]).unwrap().expect("complete after all bytes"), &all[..0]),
            };
            assert_eq!(resp.status, 407);
            let mut rest = r.into_rest();
            rest.extend_from_slice(unpushed);
            assert_eq!(rest, b"REST", "split at {split}");
        }
    }

    #[test]
    fn connection_close_and_http_1_0_are_not_kept_alive() {
        let resp = read_all(b"HTTP/1.1 407 X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!resp.keep_alive);
        let resp = read_all(b"HTTP/1.0 407 X\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!resp.keep_alive);
        let resp =
            read_all(b"HTTP/1.0 407 X\r\nProxy-Connection: keep-alive\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(resp.keep_alive);
    }

    #[test]
    fn a_body_without_length_lasts_until_close() {
        let mut r = ResponseReader::new("p:1", true);
        assert_eq!(r.push(b"HTTP/1.1 403 Forbidden\r\n\r\nno entry").unwrap(), None);
        let resp = r.end_of_stream().unwrap();
        assert_eq!(resp.status, 403);
        assert!(!resp.keep_alive);
    }

    #[test]
    fn garbage_is_a_malformed_response_quoting_its_start() {
        let e = read_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyProtocolError);
        assert!(e.message().contains("SSH-2.0"), "{}", e.message());
        assert!(e.message().contains("proxy:3128"));
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let mut r = ResponseReader::new("p:1", true);
        r.push(b"HTTP/1.1 407 X\r\n").unwrap();
        let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
        let mut result = Ok(None);
        for _ in 0..70 {
            result = r.push(filler.as_bytes());
            if result.is_err() {
                break;
            }
        }
        assert!(result.unwrap_err().message().contains("64 KiB"));
    }

    #[test]
    fn a_response_cut_short_is_reported() {
        let mut r = ResponseReader::new("p:1", true);
        r.push(b"HTTP/1.1 407 X\r\nContent-Length: 10\r\n\r\nabc").unwrap();
        assert!(r.end_of_stream().unwrap_err().message().contains("middle of the response body"));
        let mut r = ResponseReader::new("p:1", true);
        r.push(b"HTTP/1.1 40").unwrap();
        assert!(r.end_of_stream().unwrap_err().message().contains("middle of the response head"));
        let mut r = ResponseReader::new("p:1", true);
        assert!(r.end_of_stream().unwrap_err().message().contains("without answering"));
    }

    #[test]
    fn an_oversized_body_is_refused() {
        let mut r = ResponseReader::new("p:1", true);
        r.push(b"HTTP/1.1 407 X\r\nContent-Length: 99999999\r\n\r\n").unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut result = Ok(None);
        for _ in 0..20 {
            result = r.push(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
