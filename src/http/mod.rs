//! HTTP/1.1 as the library speaks it: the one writer of requests (WebSocket upgrades, polling
//! requests, CONNECT and plain requests through proxies), the reader of response heads
//! ([`response`]), server URLs ([`url`]) and the cookies balancers set ([`cookies`]).

pub(crate) mod cookies;
pub(crate) mod response;
pub mod url;

/// One request: the request line, `Host`, `headers` in order, a blank line, then `body`. The
/// headers must have been checked (no CR, LF or NUL; see `proxy::http_connect::valid_header`).
pub(crate) fn request<'a>(
    method: &str,
    target: &str,
    host: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_is_its_line_host_headers_blank_line_and_body() {
        let bytes = super::request("POST", "/d?c=1", "h:80", [("A", "1"), ("B", "2")], b"body");
        assert_eq!(bytes, b"POST /d?c=1 HTTP/1.1\r\nHost: h:80\r\nA: 1\r\nB: 2\r\n\r\nbody");
    }
}
