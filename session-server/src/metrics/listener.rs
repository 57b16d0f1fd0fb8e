//! The metrics listener (`--metrics ADDR`): a minimal HTTP/1.1 responder that answers `GET
//! /metrics` and refuses anything else. It runs on a thread and runtime of its own, serves at most
//! [`MAX_CONNECTIONS`] connections at once, reads at most [`MAX_REQUEST`] bytes of a request,
//! gives each connection [`EXCHANGE_TIMEOUT`] and closes it after one response: a scraper, or a
//! client pretending to be one, cannot hold up the sessions.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::render;
use crate::{Server, Shared};

/// Metrics connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// Largest request taken: a scrape is a request head of a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a metrics connection has to send its request and take the response.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes a client may still send after its response, read and dropped so that closing does not
/// reset the connection before the client has read the response.
const MAX_DRAINED: usize = 64 * 1024;
/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What a metrics request asks for, once enough of it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// The metrics; `head`: without the body (HEAD).
    Metrics { head: bool },
    /// Anything else: the status and reason that refuse it.
    Refused(u16, &'static str),
}

/// Reads the request at the start of `buffered`: `None` while more bytes are needed.
fn request(buffered: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buffered) {
        Ok(httparse::Status::Partial) if buffered.len() < MAX_REQUEST => None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Some(Request::Refused(431, "Request Header Fields Too Large"))
        }
        Err(_) => Some(Request::Refused(400, "Bad Request")),
        Ok(httparse::Status::Complete(_)) => {
            let target = parsed.path.unwrap_or("");
            let path = target.split_once('?').map_or(target, |(path, _)| path);
            Some(match (parsed.method, path) {
                (Some("GET"), "/metrics") => Request::Metrics { head: false },
                (Some("HEAD"), "/metrics") => Request::Metrics { head: true },
                (_, "/metrics") => Request::Refused(405, "Method Not Allowed"),
                _ => Request::Refused(404, "Not Found"),
            })
        }
    }
}

/// The response to `request`, with `metrics` rendering the body of a scrape.
fn response(request: Request, metrics: impl FnOnce() -> String) -> Vec<u8> {
    let (status, reason, content_type, body, head) = match request {
        Request::Metrics { head } => (200, "OK", CONTENT_TYPE, metrics(), head),
        Request::Refused(status, reason) => (status, reason, "text/plain", format!("{reason}\n"), false),
    };
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        bytes.push_str("Allow: GET, HEAD\r\n");
    }
    bytes.push_str("\r\n");
    if !head {
        bytes.push_str(&body);
    }
    bytes.into_bytes()
}

/// Serves one metrics connection: one request, one response, then close.
async fn exchange(shared: &Shared, tcp: &mut TcpStream) -> io::Result<()> {
    let mut buffered = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let request = loop {
        if let Some(request) = request(&buffered) {
            break request;
        }
        let room = (MAX_REQUEST - buffered.len()).min(chunk.len());
        match tcp.read(&mut chunk[..room]).await? {
            0 => return Ok(()),
            n => buffered.extend_from_slice(&chunk[..n]),
        }
    };
    tcp.write_all(&response(request, || render(shared))).await?;
    tcp.shutdown().await?;
    let mut drained = 0;
    while drained < MAX_DRAINED {
        match tcp.read(&mut chunk).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

/// Accepts metrics connections, [`MAX_CONNECTIONS`] at a time.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((mut tcp, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = timeout(EXCHANGE_TIMEOUT, exchange(&shared, &mut tcp)).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Server {
    /// Serves this server's metrics at `http://listen/metrics` on a thread of its own until the
    /// server stops. Returns the address bound (port 0 picks a free port).
    pub fn serve_metrics(&self, listen: SocketAddr) -> io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let shared = self.shared.clone();
        std::thread::Builder::new().name("session-server-metrics".into()).spawn(move || {
            runtime.block_on(async move {
                let mut stopped = shared.stopped.subscribe();
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return tracing::error!(error = %e, "cannot serve metrics"),
                };
                tokio::select! {
                    _ = accept(listener, shared.clone()) => {}
                    _ = stopped.wait_for(|stopped| *stopped) => {}
                }
            })
        })?;
        Ok(addr)
    }
}

/// The command line's metrics options (flattened into the `session-server` arguments).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsOptions {
    /// Serve Prometheus metrics at http://ADDR/metrics; port 0 picks a free port (see
    /// --metrics-port-file).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Write the metrics port to this file once listening.
    #[arg(long, value_name = "FILE", requires = "metrics")]
    pub metrics_port_file: Option<PathBuf>,
}

impl MetricsOptions {
    /// Serves `server`'s metrics if `--metrics` asks for them; an error says what failed.
    pub fn start(&self, server: &Server) -> Result<(), String> {
        let Some(listen) = self.metrics else { return Ok(()) };
        let addr = server.serve_metrics(listen).map_err(|e| format!("cannot serve metrics on {listen}: {e}"))?;
        if let Some(file) = &self.metrics_port_file {
            write_port(file, addr.port()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        }
        tracing::info!(%addr, "serving metrics at /metrics");
        Ok(())
    }
}

/// Writes `port` to `file`, through a temporary file renamed into place so that a reader never
/// sees half of it.
fn write_port(file: &Path, port: u16) -> io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_is_a_get_or_head_of_the_metrics_path() {
        assert_eq!(request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some(Request::Metrics { head: false }));
        assert_eq!(request(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Some(Request::Metrics { head: false }));
        assert_eq!(request(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Some(Request::Metrics { head: true }));
        assert_eq!(request(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(Request::Refused(405, "Method Not Allowed")));
        assert_eq!(request(b"GET / HTTP/1.1\r\n\r\n"), Some(Request::Refused(404, "Not Found")));
        assert_eq!(request(b"GET /metrics/x HTTP/1.1\r\n\r\n"), Some(Request::Refused(404, "Not Found")));
    }

    #[test]
    fn an_incomplete_request_waits_for_more_up_to_the_size_limit() {
        assert_eq!(request(b""), None);
        assert_eq!(request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        let mut long = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        long.resize(MAX_REQUEST - 1, b'a');
        assert_eq!(request(&long), None);
        long.push(b'a');
        assert_eq!(request(&long), Some(Request::Refused(431, "Request Header Fields Too Large")));
        assert_eq!(request(b"\x16\x03\x01 not http\r\n\r\n"), Some(Request::Refused(400, "Bad Request")));
    }

    #[test]
    fn responses_close_the_connection_and_a_head_response_has_no_body() {
        let ok = String::from_utf8(response(Request::Metrics { head: false }, || "x 1\n".into())).unwrap();
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 4\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\nx 1\n"
        );
        let head = String::from_utf8(response(Request::Metrics { head: true }, || "x 1\n".into())).unwrap();
        assert!(head.ends_with("Content-Length: 4\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"), "{head}");
        let refused = String::from_utf8(response(Request::Refused(405, "Method Not Allowed"), String::new)).unwrap();
        assert!(refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{refused}");
        assert!(refused.contains("\r\nAllow: GET, HEAD\r\n"), "{refused}");
    }
}
