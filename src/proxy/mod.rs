//! Reaching the server through a proxy: HTTP CONNECT (with Basic, Digest or custom
//! authentication) and SOCKS5, chosen explicitly or from the environment.
//!
//! The conversations are state machines (`http_connect`, `response`, `socks5`); this module only
//! moves their bytes over a socket, within the attempt's deadline.

pub mod auth;
pub mod config;
mod http_connect;
pub(crate) mod socks5;

pub(crate) use crate::http::response::{ProxyResponse, ResponseReader};
pub use auth::{Challenge, ChallengeHandler, ProxyAuth, DEFAULT_MAXIMUM_CONVERSATIONS};
pub use config::{bypasses, Proxy, ProxySetting};
pub(crate) use http_connect::valid_header;
pub(crate) use http_connect::{ConnectConversation, Next, PlainRequest};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::net::{SocketOptions, Stream};
use crate::tls::TlsOptions;
use socks5::{Socks5Handshake, Step, Target};

/// What reaching a proxy (and, through it or not, a server) needs beyond the address.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Socket settings of every connection.
    pub socket: SocketOptions,
    /// How TLS peers (https:// proxies, wss:// servers) are verified.
    pub tls: TlsOptions,
    /// Bound on one connection attempt, named in timeout errors.
    pub connection_timeout: std::time::Duration,
}

/// Opens a TCP stream to `host:port` through `proxy`, finishing by `deadline`.
pub(crate) async fn tunnel(
    proxy: &Proxy,
    host: &str,
    port: u16,
    options: &ProxyOptions,
    deadline: Instant,
) -> Result<Stream> {
    let name = proxy.authority();
    let late = || {
        Error::new(
            ErrorCode::RequestTimeOut,
            format!(
                "proxy {name} did not complete the tunnel within the connection timeout of {} ms",
                options.connection_timeout.as_millis()
            ),
        )
    };
    let work = async {
        match proxy {
            Proxy::Http { host: proxy_host, port: proxy_port, auth, tls } => {
                let proxy = ProxyAddress { host: proxy_host, port: *proxy_port, tls: *tls };
                http_tunnel(&proxy, auth.clone(), host, port, options).await
            }
            Proxy::Socks5 { host: proxy_host, port: proxy_port, credentials, remote_dns } => {
                let proxy = ProxyAddress { host: proxy_host, port: *proxy_port, tls: false };
                socks5_tunnel(&proxy, credentials.clone(), *remote_dns, host, port, options).await
            }
        }
    };
    timeout_at(deadline, work).await.unwrap_or_else(|_| Err(late()))
}

/// Connects to an HTTP proxy itself (for plain requests in absolute form).
pub(crate) async fn connect_http_proxy(host: &str, port: u16, tls: bool, options: &ProxyOptions) -> Result<Stream> {
    connect_proxy(&ProxyAddress { host, port, tls }, options).await
}

/// Where a proxy listens, and whether it speaks TLS (https:// proxy URLs).
struct ProxyAddress<'a> {
    host: &'a str,
    port: u16,
    tls: bool,
}

impl ProxyAddress<'_> {
    fn authority(&self) -> String {
        config::authority(self.host, self.port)
    }
}

/// Connects to the proxy itself, with TLS for https:// proxies (verified like servers are).
async fn connect_proxy(proxy: &ProxyAddress<'_>, options: &ProxyOptions) -> Result<Stream> {
    let name = proxy.authority();
    let tcp = crate::net::connect_tcp(proxy.host, proxy.port, &name, &options.socket)
        .await
        .map_err(|e| Error::new(ErrorCode::ProxyUnreachable, format!("proxy unreachable: {}", e.message())))?;
    if !proxy.tls {
        return Ok(Box::new(tcp));
    }
    let tls_options = crate::tls::TlsOptions { server_name: None, ..options.tls.clone() };
    crate::tls::connect(Box::new(tcp), proxy.host, &name, &tls_options)
        .await
        .map_err(|e| Error::new(e.code(), format!("TLS to proxy: {}", e.message())))
}

async fn http_tunnel(
    proxy: &ProxyAddress<'_>,
    auth: Option<ProxyAuth>,
    host: &str,
    port: u16,
    options: &ProxyOptions,
) -> Result<Stream> {
    let name = proxy.authority();
    let target = config::authority(host, port);
    let mut conversation = ConnectConversation::new(&target, &name, auth);
    let mut request = conversation.first_request()?;
    let mut stream = connect_proxy(proxy, options).await?;
    loop {
        stream.write_all(&request).await.map_err(|e| {
            Error::new(ErrorCode::ProxyUnreachable, format!("cannot send CONNECT to proxy {name}: {e}"))
        })?;
        let (response, rest) = read_response(&mut stream, &name).await?;
        tracing::debug!(proxy = %name, %target, status = response.status, "proxy answered CONNECT");
        match conversation.on_response(&response)? {
            Next::Tunnel if rest.is_empty() => return Ok(stream),
            Next::Tunnel => {
                return Err(Error::new(
                    ErrorCode::ProxyProtocolError,
                    format!("proxy {name} sent {} unexpected bytes after opening the tunnel", rest.len()),
                ))
            }
            Next::Retry(next) => {
                request = next;
                if !response.keep_alive {
                    stream = connect_proxy(proxy, options).await?;
                }
            }
        }
    }
}

/// Reads one whole response to CONNECT; returns it with any bytes that followed it.
async fn read_response(stream: &mut Stream, name: &str) -> Result<(ProxyResponse, Vec<u8>)> {
    let mut reader = ResponseReader::new(name, true);
    let mut buf = vec![0u8; 8192];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| Error::new(ErrorCode::ProxyProtocolError, format!("proxy {name} connection failed: {e}")))?;
        if n == 0 {
            let response = reader.end_of_stream()?;
            return Ok((response, Vec::new()));
        }
        if let Some(response) = reader.push(&buf[..n])? {
            return Ok((response, reader.into_rest()));
        }
    }
}

async fn socks5_tunnel(
    proxy: &ProxyAddress<'_>,
    credentials: Option<(String, String)>,
    remote_dns: bool,
    host: &str,
    port: u16,
    options: &ProxyOptions,
) -> Result<Stream> {
    let name = proxy.authority();
    let target = match host.parse() {
        Ok(ip) => Target::Ip(ip),
        Err(_) if remote_dns => Target::Domain(host.to_string()),
        Err(_) => {
            let resolved = tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| Error::new(ErrorCode::AddrLookupFail, format!("cannot resolve host '{host}'")))?;
            Target::Ip(resolved.ip())
        }
    };
    let (mut handshake, greeting) = Socks5Handshake::new(&name, target, port, credentials)?;
    let mut stream = connect_proxy(proxy, options).await?;
    let io_error = |e: std::io::Error| Error::new(ErrorCode::ProxyProtocolError, format!("SOCKS5 proxy {name}: {e}"));
    stream.write_all(&greeting).await.map_err(io_error)?;
    let mut input = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            return Err(Error::new(
                ErrorCode::ProxyProtocolError,
                format!("SOCKS5 proxy {name} closed the connection during the handshake"),
            ));
        }
        input.extend_from_slice(&buf[..n]);
        while let Some((used, step)) = handshake.receive(&input)? {
            input.drain(..used);
            match step {
                Step::Send(bytes) => stream.write_all(&bytes).await.map_err(io_error)?,
                Step::Done if input.is_empty() => return Ok(stream),
                Step::Done => {
                    return Err(Error::new(
                        ErrorCode::ProxyProtocolError,
                        format!("SOCKS5 proxy {name} sent unexpected bytes after opening the tunnel"),
                    ))
                }
            }
        }
    }
}
