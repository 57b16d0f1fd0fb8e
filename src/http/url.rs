//! The server URL rules: `ws://host[:port][/path]`.

use crate::error::{Error, ErrorCode, Result};

/// The request path used when a URL has none.
pub const DEFAULT_REQUEST_PATH: &str = "/diffusion";

/// A validated server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Whether the connection uses TLS (`wss://`, `xhrs://`).
    pub secure: bool,
    /// Whether the URL asks for HTTP long polling (`xhr://`, `xhrs://`).
    pub polling: bool,
    /// Host name or IP address; IPv6 literals without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path, beginning with `/` and ending with `/diffusion`.
    pub path: String,
}

impl ServerUrl {
    /// Parses and checks a URL. The message of any error names the part that is wrong.
    pub fn parse(text: &str) -> Result<ServerUrl> {
        let parse_error = |what: String| Error::new(ErrorCode::ParseUrl, what);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(parse_error("the URL is empty; expected ws://host[:port][/path]".into()));
        }
        let url = url::Url::parse(trimmed).map_err(|e| {
            parse_error(format!("cannot parse URL '{}': {e}; expected ws://host[:port][/path]", redact(trimmed)))
        })?;
        let (secure, polling) = match url.scheme() {
            "ws" => (false, false),
            "wss" => (true, false),
            "xhr" => (false, true),
            "xhrs" => (true, true),
            other => {
                return Err(Error::new(
                    ErrorCode::UnknownTransport,
                    format!(
                        "unknown transport '{other}' in URL '{}': use ws://, wss://, xhr:// or xhrs://",
                        redact(trimmed)
                    ),
                ))
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(parse_error(
                "the URL must not contain user information: pass the principal and credentials separately".into(),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(parse_error(format!("URL '{trimmed}' has no host"))),
        };
        if url.query().is_some() {
            return Err(parse_error(format!("URL '{trimmed}' has a query ('?...'), which is not allowed")));
        }
        if url.fragment().is_some() {
            return Err(parse_error(format!("URL '{trimmed}' has a fragment ('#...'), which is not allowed")));
        }
        let port = url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
        if port == 0 {
            return Err(parse_error(format!("URL '{trimmed}' has port 0")));
        }
        let path = match url.path() {
            "" | "/" => DEFAULT_REQUEST_PATH.to_string(),
            p => {
                validate_request_path(p)?;
                p.to_string()
            }
        };
        Ok(ServerUrl { secure, polling, host, port, path })
    }

    /// `host:port` as used in messages and the Host header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL in canonical form.
    pub fn to_url_string(&self) -> String {
        format!("{}://{}{}", if self.secure { "wss" } else { "ws" }, self.authority(), self.path)
    }
}

/// Checks a request path: begins with `/`, ends with `/diffusion`, no control characters.
pub fn validate_request_path(path: &str) -> Result<()> {
    if !path.starts_with('/') || !path.ends_with(DEFAULT_REQUEST_PATH) {
        return Err(Error::new(
            ErrorCode::ParseUrl,
            format!("request path '{path}' must begin with '/' and end with '/diffusion'"),
        ));
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::new(ErrorCode::ParseUrl, "request path contains spaces or control characters"));
    }
    Ok(())
}

/// The URL without any user information, for messages.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &text[..scheme_end], &text[at + 1..])
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ServerUrl {
        ServerUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn code(text: &str) -> ErrorCode {
        ServerUrl::parse(text).unwrap_err().code()
    }

    #[test]
    fn no_port_means_80_and_no_path_means_diffusion() {
        let u = ok("ws://example.com");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str(), u.secure), ("example.com", 80, "/diffusion", false));
        assert_eq!(ok("ws://example.com/").path, "/diffusion");
    }

    #[test]
    fn explicit_port_and_path_are_kept() {
        let u = ok("ws://127.0.0.1:8080/a/b/diffusion");
        assert_eq!((u.port, u.path.as_str()), (8080, "/a/b/diffusion"));
        assert_eq!(u.to_url_string(), "ws://127.0.0.1:8080/a/b/diffusion");
    }

    #[test]
    fn ipv6_literals_in_brackets() {
        let u = ok("ws://[::1]:9000");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority(), "[::1]:9000");
    }

    #[test]
    fn wss_defaults_to_443() {
        let u = ok("wss://example.com");
        assert!(u.secure);
        assert_eq!(u.port, 443);
    }

    #[test]
    fn paths_must_end_with_diffusion() {
        assert_eq!(code("ws://h/other"), ErrorCode::ParseUrl);
        assert_eq!(code("ws://h/diffusionx"), ErrorCode::ParseUrl);
        let e = ServerUrl::parse("ws://h/other").unwrap_err();
        assert!(e.message().contains("/other"), "{}", e.message());
    }

    #[test]
    fn xhr_schemes_select_polling() {
        let u = ok("xhr://h");
        assert!(u.polling && !u.secure && u.port == 80);
        let u = ok("xhrs://h");
        assert!(u.polling && u.secure && u.port == 443);
        assert!(!ok("ws://h").polling);
    }

    #[test]
    fn other_schemes_are_unknown_transports() {
        assert_eq!(code("http://h"), ErrorCode::UnknownTransport);
        assert_eq!(code("dpt://h:8080"), ErrorCode::UnknownTransport);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        for text in ["", "   ", "not a url", "ws://", "ws://h:99999", "ws://h:0", "ws://h/diffusion?x=1", "ws://h#f"] {
            assert_eq!(code(text), ErrorCode::ParseUrl, "{text:?}");
        }
    }

    #[test]
    fn user_information_is_refused_without_echoing_it() {
        let e = ServerUrl::parse("ws://bob:hunter2@h").unwrap_err();
        assert_eq!(e.code(), ErrorCode::ParseUrl);
        assert!(!e.message().contains("hunter2"));
        let e = ServerUrl::parse("http://bob:hunter2@h").unwrap_err();
        assert!(!e.message().contains("hunter2"), "{}", e.message());
    }
}
