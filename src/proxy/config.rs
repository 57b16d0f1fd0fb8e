//! Which proxy to use: explicit settings, proxy URLs, and the environment as curl reads it.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::percent_decode_str;

use super::auth::ProxyAuth;
use crate::error::{Error, ErrorCode, Result};

/// Port assumed when a proxy URL has none, as curl does.
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// A proxy to go through.
#[derive(Clone)]
pub enum Proxy {
    /// An HTTP proxy, reached with CONNECT; with `tls` (https:// proxy URLs) the connection to
    /// the proxy itself is TLS, and TLS to a wss:// server runs inside it.
    Http { host: String, port: u16, auth: Option<ProxyAuth>, tls: bool },
    /// A SOCKS5 proxy. With `remote_dns` (socks5h) the proxy resolves the server's name.
    Socks5 { host: String, port: u16, credentials: Option<(String, String)>, remote_dns: bool },
}

impl Proxy {
    /// `host:port` of the proxy, IPv6 in brackets.
    pub fn authority(&self) -> String {
        let (host, port) = match self {
            Proxy::Http { host, port, .. } | Proxy::Socks5 { host, port, .. } => (host, port),
        };
        authority(host, *port)
    }

    /// Parses `http://[user:password@]host[:port]` or `socks5[h]://...`; user information is
    /// percent-decoded, so `@` and `:` may appear in passwords as `%40` and `%3A`. A URL without
    /// a scheme is an HTTP proxy. HTTP proxy credentials answer Basic or Digest, whichever the
    /// proxy asks for.
    pub fn parse_url(text: &str) -> Result<Proxy> {
        let text = text.trim();
        let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
        let bad =
            |why: &str| Error::new(ErrorCode::ParseUrl, format!("invalid proxy URL '{}': {why}", redact(&with_scheme)));
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(bad("no host")),
        };
        let port = url.port().unwrap_or(DEFAULT_PROXY_PORT);
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("user information is not UTF-8"))
        };
        let user = decode(url.username())?;
        let password = decode(url.password().unwrap_or(""))?;
        let credentials = (!user.is_empty()).then_some((user, password));
        if url.path() != "/" && !url.path().is_empty() {
            return Err(bad("a proxy URL has no path"));
        }
        match url.scheme() {
            "http" | "https" => Ok(Proxy::Http {
                host,
                port,
                auth: credentials.map(|(user, password)| ProxyAuth::Any { user, password }),
                tls: url.scheme() == "https",
            }),
            "socks5" | "socks5h" => {
                Ok(Proxy::Socks5 { host, port, credentials, remote_dns: url.scheme() == "socks5h" })
            }
            other => Err(bad(&format!("unsupported proxy scheme '{other}'; use http://, socks5:// or socks5h://"))),
        }
    }
}

impl fmt::Debug for Proxy {
    // Never print credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Http { auth, tls, .. } => write!(f, "Http({}, auth={auth:?}, tls={tls})", self.authority()),
            Proxy::Socks5 { credentials, remote_dns, .. } => write!(
                f,
                "Socks5({}, user={:?}, remote_dns={remote_dns})",
                self.authority(),
                credentials.as_ref().map(|(u, _)| u)
            ),
        }
    }
}

/// Where a session's proxy comes from.
#[derive(Debug, Clone, Default)]
pub enum ProxySetting {
    /// The environment (`http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`), as curl reads it.
    #[default]
    FromEnvironment,
    /// No proxy, whatever the environment says.
    Disabled,
    /// This proxy, for every connection.
    Use(Proxy),
    /// A proxy setting that could not be understood: sessions fail with this error rather than
    /// silently connecting without the intended proxy.
    Invalid(Error),
}

impl ProxySetting {
    /// The proxy for a connection to `host:port` (`secure` for wss://), reading the environment
    /// through `var` when the setting says so.
    pub fn resolve(
        &self,
        secure: bool,
        host: &str,
        port: u16,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>> {
        match self {
            ProxySetting::Disabled => Ok(None),
            ProxySetting::Use(proxy) => Ok(Some(proxy.clone())),
            ProxySetting::Invalid(error) => Err(error.clone()),
            ProxySetting::FromEnvironment => {
                let scheme_vars: &[&str] =
                    if secure { &["https_proxy", "HTTPS_PROXY"] } else { &["http_proxy", "HTTP_PROXY"] };
                let Some((name, value)) = scheme_vars
                    .iter()
                    .chain(&["all_proxy", "ALL_PROXY"])
                    .find_map(|name| var(name).filter(|v| !v.trim().is_empty()).map(|v| (*name, v)))
                else {
                    return Ok(None);
                };
                let no_proxy = var("no_proxy").or_else(|| var("NO_PROXY")).unwrap_or_default();
                if bypasses(&no_proxy, host, port) {
                    return Ok(None);
                }
                Proxy::parse_url(&value)
                    .map(Some)
                    .map_err(|e| Error::new(e.code(), format!("environment variable {name}: {}", e.message())))
            }
        }
    }
}

/// Whether a `no_proxy` list exempts `host:port`: `*`; host names, matching themselves and their
/// subdomains (a leading dot is optional); IPv4 or IPv6 addresses; CIDR ranges; any entry may end
/// in `:port` to apply to that port only.
pub fn bypasses(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    no_proxy.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let (pattern, entry_port) = split_port(entry);
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        if let Ok(net) = pattern.parse::<ipnet::IpNet>() {
            return host_ip.is_some_and(|ip| net.contains(&ip));
        }
        if let Ok(ip) = pattern.parse::<IpAddr>() {
            return host_ip == Some(ip);
        }
        let domain = pattern.trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
        !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
    })
}

/// Splits `host:port`, `[v6]:port` and bare IPv6 addresses (which keep their colons).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A URL with its user information replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<credentials>@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn proxy_urls_decode_user_information() {
        let p = Proxy::parse_url("http://us%40er:p%3Ass%40word@proxy.example:3128").unwrap();
        let Proxy::Http { host, port, auth: Some(ProxyAuth::Any { user, password }), .. } = p else { panic!() };
        assert_eq!(
            (host.as_str(), port, user.as_str(), password.as_str()),
            ("proxy.example", 3128, "us@er", "p:ss@word")
        );
    }

    #[test]
    fn proxy_url_defaults_and_schemes() {
        assert_eq!(Proxy::parse_url("proxy:8080").unwrap().authority(), "proxy:8080");
        assert_eq!(Proxy::parse_url("http://proxy").unwrap().authority(), "proxy:1080");
        assert!(matches!(
            Proxy::parse_url("socks5h://u:p@[::1]:1080").unwrap(),
            Proxy::Socks5 { remote_dns: true, .. }
        ));
        assert!(matches!(Proxy::parse_url("socks5://h:1").unwrap(), Proxy::Socks5 { remote_dns: false, .. }));
        assert_eq!(Proxy::parse_url("ftp://h").unwrap_err().code(), ErrorCode::ParseUrl);
        assert!(matches!(Proxy::parse_url("https://h:3129").unwrap(), Proxy::Http { tls: true, .. }));
    }

    #[test]
    fn invalid_proxy_urls_do_not_echo_credentials() {
        let e = Proxy::parse_url("http://user:s3cr3t@/").unwrap_err();
        assert!(!e.message().contains("s3cr3t"), "{}", e.message());
        let debug = format!("{:?}", Proxy::parse_url("http://user:s3cr3t@h:1").unwrap());
        assert!(!debug.contains("s3cr3t"));
    }

    #[test]
    fn no_proxy_matching() {
        let list =
            "localhost, .internal.example,corp.example, 10.0.0.0/8, 192.168.1.7, ::1, [fd00::1]:8080, api.example:9000";
        let yes = [
            ("localhost", 80),
            ("a.internal.example", 80),
            ("internal.example", 80),
            ("corp.example", 1),
            ("www.corp.example", 1),
            ("10.2.3.4", 80),
            ("192.168.1.7", 80),
            ("::1", 80),
            ("[::1]", 80),
            ("fd00::1", 8080),
            ("api.example", 9000),
            ("LOCALHOST", 80),
        ];
        for (host, port) in yes {
            assert!(bypasses(list, host, port), "{host}:{port} should bypass");
        }
        let no = [
            ("notcorp.example", 1),
            ("11.0.0.1", 80),
            ("192.168.1.8", 80),
            ("fd00::1", 80),
            ("api.example", 80),
            ("example", 80),
        ];
        for (host, port) in no {
            assert!(!bypasses(list, host, port), "{host}:{port} should not bypass");
        }
        assert!(bypasses("*", "anything", 1));
        assert!(!bypasses("", "anything", 1));
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_environment_is_read_per_scheme_with_all_proxy_as_fallback() {
        let vars =
            env(&[("http_proxy", "http://h1:1"), ("HTTPS_PROXY", "http://h2:2"), ("ALL_PROXY", "socks5h://h3:3")]);
        let s = ProxySetting::FromEnvironment;
        assert_eq!(s.resolve(false, "srv", 80, &vars).unwrap().unwrap().authority(), "h1:1");
        assert_eq!(s.resolve(true, "srv", 443, &vars).unwrap().unwrap().authority(), "h2:2");
        let vars = env(&[("ALL_PROXY", "socks5h://h3:3")]);
        assert_eq!(s.resolve(false, "srv", 80, &vars).unwrap().unwrap().authority(), "h3:3");
        assert!(s.resolve(false, "srv", 80, env(&[])).unwrap().is_none());
    }

    #[test]
    fn lower_case_wins_and_no_proxy_bypasses() {
        let vars = env(&[("http_proxy", "http://lower:1"), ("HTTP_PROXY", "http://upper:2"), ("NO_PROXY", "srv")]);
        let s = ProxySetting::FromEnvironment;
        assert!(s.resolve(false, "srv", 80, &vars).unwrap().is_none());
        assert_eq!(s.resolve(false, "other", 80, &vars).unwrap().unwrap().authority(), "lower:1");
    }

    #[test]
    fn explicit_settings_ignore_the_environment() {
        let vars = env(&[("http_proxy", "http://h1:1")]);
        assert!(ProxySetting::Disabled.resolve(false, "srv", 80, &vars).unwrap().is_none());
        let explicit = ProxySetting::Use(Proxy::parse_url("http://mine:9").unwrap());
        assert_eq!(explicit.resolve(false, "srv", 80, &vars).unwrap().unwrap().authority(), "mine:9");
    }

    #[test]
    fn a_bad_environment_proxy_names_the_variable_not_its_secret() {
        let vars = env(&[("http_proxy", "gopher://u:topsecret@h")]);
        let e = ProxySetting::FromEnvironment.resolve(false, "srv", 80, vars).unwrap_err();
        assert!(e.message().contains("http_proxy") && !e.message().contains("topsecret"), "{}", e.message());
    }
}
