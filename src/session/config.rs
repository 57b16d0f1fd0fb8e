//! What a session needs to know before it connects.

use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::http::url::{ServerUrl, DEFAULT_REQUEST_PATH};
use crate::net::SocketOptions;
use crate::protocol::{Credentials, MIN_MAX_FRAME_SIZE};
use crate::proxy::ProxyOptions;
use crate::proxy::ProxySetting;
use crate::reconnect::ReconnectionStrategy;
use crate::retry::RetryStrategy;
use crate::tls::TlsOptions;
use crate::transport::{Transport, TransportOptions};

/// Default bound on one connection attempt (TCP connect, upgrade and handshake).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on one write.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest connection or write timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default largest message accepted from the server, and announced to it: 1 MiB, the protocol's
/// default frame size (the vendor's API defaults to INT_MAX, which would let a server make the
/// client allocate gigabytes).
pub const DEFAULT_MAXIMUM_MESSAGE_SIZE: u32 = crate::protocol::DEFAULT_MAX_FRAME_SIZE;
/// Smallest buffer size or maximum message size accepted.
pub const MIN_BUFFER_SIZE: u32 = MIN_MAX_FRAME_SIZE;
/// Default bound on messages waiting to be sent.
pub const DEFAULT_MAXIMUM_QUEUE_SIZE: u32 = 1000;
/// Default number of sent messages kept for recovery.
pub const DEFAULT_RECOVERY_BUFFER_SIZE: u32 = 128;

/// Everything about a session except where it connects. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Who the client says it is; empty for anonymous.
    pub principal: String,
    /// Proof of identity.
    pub credentials: Credentials,
    /// Session properties proposed to the server, in the order set; keys are unique.
    pub properties: Vec<(String, String)>,
    /// Bound on one connection attempt.
    pub connection_timeout: Duration,
    /// Bound on one write.
    pub write_timeout: Duration,
    /// Largest protocol frame accepted from the server.
    pub maximum_message_size: u32,
    /// Socket receive buffer size; `None`: the kernel's, grown with the traffic. A size set is
    /// fixed (and costs a system call per connection).
    pub input_buffer_size: Option<u32>,
    /// Socket send buffer size; `None`: the kernel's, grown with the traffic.
    pub output_buffer_size: Option<u32>,
    /// Messages that may wait to be sent.
    pub maximum_queue_size: u32,
    /// Sent messages kept for recovery after a reconnection.
    pub recovery_buffer_size: u32,
    /// Whether and how to reconnect after losing the connection.
    pub reconnection: ReconnectionStrategy,
    /// Retries of session establishment after transient failures.
    pub initial_retry: RetryStrategy,
    /// The proxy to go through; by default the one the environment names.
    pub proxy: ProxySetting,
    /// How wss:// servers (and https:// proxies) are verified.
    pub tls: TlsOptions,
    /// Extra headers on every upgrade request (see [`SessionOptions::add_http_header`]).
    pub http_headers: Vec<(String, String)>,
    /// Transports to try, in order, for each connection attempt (a transport may repeat).
    pub transports: Vec<Transport>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            principal: String::new(),
            credentials: Credentials::None,
            properties: Vec::new(),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            maximum_message_size: DEFAULT_MAXIMUM_MESSAGE_SIZE,
            input_buffer_size: None,
            output_buffer_size: None,
            maximum_queue_size: DEFAULT_MAXIMUM_QUEUE_SIZE,
            recovery_buffer_size: DEFAULT_RECOVERY_BUFFER_SIZE,
            reconnection: ReconnectionStrategy::default(),
            initial_retry: RetryStrategy::None,
            proxy: ProxySetting::FromEnvironment,
            tls: TlsOptions::default(),
            http_headers: Vec::new(),
            transports: vec![Transport::WebSocket],
        }
    }
}

impl SessionOptions {
    /// Checks that what goes into the connect request fits its wire format (a principal, a
    /// property key or value of at most 65,535 bytes, at most 65,535 properties): refused with
    /// [`ErrorCode::IllegalArgument`], never cut short.
    pub fn check_wire_lengths(&self) -> Result<()> {
        const MAX: usize = u16::MAX as usize;
        let too_long = |what: &str, len: usize| {
            Err(Error::illegal_argument(format!("the {what} has {len} bytes; the protocol carries at most {MAX}")))
        };
        if self.principal.len() > MAX {
            return too_long("principal", self.principal.len());
        }
        if self.properties.len() > MAX {
            return Err(Error::illegal_argument(format!(
                "there are {} session properties; the protocol carries at most {MAX}",
                self.properties.len()
            )));
        }
        for (key, value) in &self.properties {
            if key.len() > MAX {
                return too_long("key of a session property", key.len());
            }
            if value.len() > MAX {
                return too_long(&format!("value of session property '{}'", key.escape_debug()), value.len());
            }
        }
        Ok(())
    }

    /// Sets property `key` to `value`, replacing an earlier value of the same key.
    pub fn set_property(&mut self, key: &str, value: &str) {
        match self.properties.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.properties.push((key.to_string(), value.to_string())),
        }
    }

    /// Removes property `key`.
    pub fn remove_property(&mut self, key: &str) {
        self.properties.retain(|(k, _)| k != key);
    }

    /// Adds a header to every upgrade request, e.g. for a balancer that routes on a header.
    /// Refuses header injection (CR, LF, NUL, invalid names) and headers the protocol owns.
    pub fn add_http_header(&mut self, name: &str, value: &str) -> Result<()> {
        const OWNED: [&str; 10] = [
            crate::protocol::CONNECT_HEADER,
            "host",
            "upgrade",
            "connection",
            "content-length",
            "transfer-encoding",
            "cookie",
            "proxy-authorization",
            "proxy-connection",
            "te",
        ];
        if !crate::proxy::valid_header(name, value) {
            return Err(Error::illegal_argument(format!(
                "header '{}' is not a valid HTTP header (invalid name, or CR, LF or NUL in it)",
                name.escape_debug()
            )));
        }
        let lower = name.to_ascii_lowercase();
        if OWNED.contains(&lower.as_str()) || lower.starts_with("sec-websocket-") {
            return Err(Error::illegal_argument(format!(
                "header '{name}' is set by the library itself (the WebSocket upgrade, the session handshake, cookies or proxies) and cannot be added"
            )));
        }
        self.http_headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    /// The frame size limit actually applied: never below what control frames need.
    pub fn frame_limit(&self) -> u32 {
        self.maximum_message_size.max(MIN_MAX_FRAME_SIZE)
    }

    /// What the transports need of these options.
    pub fn transport_options(&self) -> TransportOptions {
        TransportOptions {
            connect: ProxyOptions {
                socket: SocketOptions {
                    input_buffer_size: self.input_buffer_size,
                    output_buffer_size: self.output_buffer_size,
                },
                tls: self.tls.clone(),
                connection_timeout: self.connection_timeout,
            },
            proxy: self.proxy.clone(),
            write_timeout: self.write_timeout,
            max_frame_size: self.frame_limit(),
            http_headers: self.http_headers.clone(),
        }
    }
}

/// A session's settings: where to connect, and how.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to connect.
    pub url: ServerUrl,
    /// How.
    pub options: SessionOptions,
}

impl SessionConfig {
    /// Settings for `url` with default options.
    pub fn new(url: &str) -> Result<SessionConfig> {
        SessionConfig::with_options(url, SessionOptions::default())
    }

    /// Settings for `url` with `options`.
    pub fn with_options(url: &str, options: SessionOptions) -> Result<SessionConfig> {
        Ok(SessionConfig { url: ServerUrl::parse(url)?, options })
    }
}

/// A reusable template for sessions: options plus the parts of a URL to use when none is given.
#[derive(Debug, Clone, Default)]
pub struct SessionFactory {
    /// Options every session created from this factory starts with.
    pub options: SessionOptions,
    /// Server host for sessions created without a URL.
    pub server_host: Option<String>,
    /// Server port for sessions created without a URL (default 80, or 443 when secure).
    pub server_port: Option<u16>,
    /// Whether sessions created without a URL use TLS.
    pub secure: bool,
    /// Request path for sessions created without a URL (default `/diffusion`).
    pub request_path: Option<String>,
}

impl SessionFactory {
    /// The settings for one session: `url` when given (it wins over host, port, secure and path),
    /// otherwise a URL built from them.
    pub fn config(&self, url: Option<&str>) -> Result<SessionConfig> {
        match url {
            Some(url) => SessionConfig::with_options(url, self.options.clone()),
            None => SessionConfig::with_options(&self.url()?, self.options.clone()),
        }
    }

    fn url(&self) -> Result<String> {
        let host = self.server_host.as_deref().filter(|h| !h.is_empty()).ok_or_else(|| {
            Error::new(ErrorCode::ParseUrl, "no URL was given and the session factory has no server host")
        })?;
        // A host is put into a URL as it is: what would end or reshape the authority is refused.
        if host.chars().any(|c| matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()) {
            return Err(Error::new(
                ErrorCode::ParseUrl,
                format!("server host '{}' is not a host name or address", host.escape_debug()),
            ));
        }
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        let port = self.server_port.unwrap_or(if self.secure { 443 } else { 80 });
        let path = self.request_path.as_deref().unwrap_or(DEFAULT_REQUEST_PATH);
        super::url::validate_request_path(path)?;
        Ok(format!("{}://{host}:{port}{path}", if self.secure { "wss" } else { "ws" }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_does_not_fit_the_connect_request_is_refused_not_cut_short() {
        let long = "p".repeat(65_536);
        let mut options = SessionOptions { principal: long.clone(), ..Default::default() };
        assert_eq!(options.check_wire_lengths().unwrap_err().code(), ErrorCode::IllegalArgument);
        options.principal = "p".repeat(65_535);
        assert!(options.check_wire_lengths().is_ok());
        options.properties = vec![(long.clone(), "v".into())];
        assert_eq!(options.check_wire_lengths().unwrap_err().code(), ErrorCode::IllegalArgument);
        options.properties = vec![("k".into(), long)];
        assert_eq!(options.check_wire_lengths().unwrap_err().code(), ErrorCode::IllegalArgument);
        options.properties = (0..65_536).map(|i| (i.to_string(), String::new())).collect();
        assert_eq!(options.check_wire_lengths().unwrap_err().code(), ErrorCode::IllegalArgument);
    }

    #[test]
    fn a_server_host_with_url_syntax_is_refused_not_cut_short() {
        for host in ["127.0.0.1/evil", "evil?x", "a#b", "user@host", "a b", "a\nb", "a\\b"] {
            let factory = SessionFactory { server_host: Some(host.into()), ..Default::default() };
            let error = factory.config(None).unwrap_err();
            assert_eq!(error.code(), ErrorCode::ParseUrl, "{host:?}: {error}");
        }
        for host in ["127.0.0.1", "::1", "[::1]", "example.com"] {
            let factory = SessionFactory { server_host: Some(host.into()), ..Default::default() };
            assert!(factory.config(None).is_ok(), "{host:?}");
        }
    }

    use super::*;

    #[test]
    fn extra_headers_refuse_injection_and_protocol_owned_names() {
        let mut o = SessionOptions::default();
        o.add_http_header("X-Route", "blue").unwrap();
        for (name, value) in [
            ("X-A", "b\r\nHost: evil"),
            ("Bad Name", "v"),
            ("Host", "h"),
            ("sec-websocket-key", "k"),
            ("Cookie", "c=1"),
            ("X-Session-Connect", "x"),
        ] {
            assert_eq!(o.add_http_header(name, value).unwrap_err().code(), ErrorCode::IllegalArgument, "{name}");
        }
        assert_eq!(o.http_headers, vec![("X-Route".to_string(), "blue".to_string())]);
    }

    #[test]
    fn properties_replace_earlier_values_of_the_same_key() {
        let mut o = SessionOptions::default();
        o.set_property("a", "1");
        o.set_property("b", "2");
        o.set_property("a", "3");
        assert_eq!(o.properties, vec![("a".into(), "3".into()), ("b".into(), "2".into())]);
        o.remove_property("a");
        assert_eq!(o.properties, vec![("b".into(), "2".into())]);
    }

    #[test]
    fn a_factory_builds_the_url_from_host_port_and_path() {
        let f = SessionFactory {
            server_host: Some("example.com".into()),
            server_port: Some(8080),
            request_path: Some("/a/diffusion".into()),
            ..Default::default()
        };
        assert_eq!(f.config(None).unwrap().url.to_url_string(), "ws://example.com:8080/a/diffusion");
    }

    #[test]
    fn a_given_url_wins_over_the_factory() {
        let f = SessionFactory { server_host: Some("example.com".into()), server_port: Some(1), ..Default::default() };
        assert_eq!(f.config(Some("ws://other:2")).unwrap().url.authority(), "other:2");
    }

    #[test]
    fn no_url_and_no_host_is_a_clear_error() {
        let e = SessionFactory::default().config(None).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ParseUrl);
        assert!(e.message().contains("server host"));
    }

    #[test]
    fn defaults_follow_the_api_reference() {
        let f = SessionFactory { server_host: Some("::1".into()), ..Default::default() };
        let c = f.config(None).unwrap();
        assert_eq!((c.url.port, c.url.path.as_str()), (80, "/diffusion"));
        let o = c.options;
        assert_eq!(o.connection_timeout, Duration::from_secs(2));
        assert_eq!(o.maximum_queue_size, 1000);
        assert_eq!(o.recovery_buffer_size, 128);
        assert_eq!((o.input_buffer_size, o.output_buffer_size), (None, None));
    }

    #[test]
    fn an_invalid_factory_path_fails_at_creation_naming_it() {
        let f =
            SessionFactory { server_host: Some("h".into()), request_path: Some("/nope".into()), ..Default::default() };
        assert!(f.config(None).unwrap_err().message().contains("/nope"));
    }
}
