//! The HTTP CONNECT conversation with a proxy, challenges included, as a state machine: it
//! produces request bytes and judges responses; the caller moves the bytes.

use http_auth::{ChallengeRef, PasswordClient, PasswordParams};

use super::auth::{Challenge, ProxyAuth};
use crate::error::{Error, ErrorCode, Result};
use crate::http::response::ProxyResponse;

/// What to do after a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The tunnel is open.
    Tunnel,
    /// Send this CONNECT request (on the same connection if the proxy kept it open, otherwise
    /// on a new one).
    Retry(Vec<u8>),
}

/// One CONNECT conversation for one target.
pub struct ConnectConversation {
    target: String,
    proxy: String,
    /// For a plain request through the proxy (absolute form) rather than CONNECT.
    request: Option<PlainRequest>,
    auth: Option<ProxyAuth>,
    /// Challenges answered so far.
    rounds: u32,
    /// The scheme whose credentials went with the last request, if any.
    sent: Option<&'static str>,
}

impl ConnectConversation {
    /// A conversation asking `proxy` (host:port, for messages) for a tunnel to `target`
    /// (host:port, IPv6 in brackets).
    pub fn new(target: &str, proxy: &str, auth: Option<ProxyAuth>) -> Self {
        ConnectConversation {
            target: target.to_string(),
            proxy: proxy.to_string(),
            request: None,
            auth,
            rounds: 0,
            sent: None,
        }
    }

    /// A conversation sending one plain request through `proxy`: `method` on the absolute URI
    /// `uri`, with `host`, extra `headers` and `body`. Challenges are answered as for CONNECT;
    /// any other answer ends the conversation with [`Next::Tunnel`] and is the caller's to read.
    pub fn plain(proxy: &str, auth: Option<ProxyAuth>, request: PlainRequest) -> Self {
        ConnectConversation {
            target: request.uri.clone(),
            proxy: proxy.to_string(),
            request: Some(request),
            auth,
            rounds: 0,
            sent: None,
        }
    }

    /// The first CONNECT request: with Basic credentials when Basic is configured, or with what a
    /// custom handler adds in round 0.
    pub fn first_request(&mut self) -> Result<Vec<u8>> {
        let headers = match &self.auth {
            Some(ProxyAuth::Basic { user, password }) => {
                self.sent = Some("Basic");
                vec![authorization(http_auth::basic::encode_credentials(user, password))]
            }
            Some(ProxyAuth::Custom(handler)) => {
                let challenge =
                    Challenge { round: 0, status: 0, status_line: "", headers: &[], connection_kept_alive: true };
                handler.respond(&challenge).ok_or_else(|| {
                    Error::new(
                        ErrorCode::ProxyAuthenticationFailed,
                        format!(
                            "proxy {}: the custom authentication handler gave up before the first request",
                            self.proxy
                        ),
                    )
                })?
            }
            _ => Vec::new(),
        };
        self.request(&headers)
    }

    /// Judges a response: tunnel open, another round, or the error that ends the conversation.
    pub fn on_response(&mut self, response: &ProxyResponse) -> Result<Next> {
        match response.status {
            407 => self.on_challenge(response, "proxy-authenticate"),
            _ if self.request.is_some() => Ok(Next::Tunnel),
            200..=299 => Ok(Next::Tunnel),
            // Some proxies (tinyproxy) challenge with 401 and WWW-Authenticate.
            401 => self.on_challenge(response, "www-authenticate"),
            status => {
                let error = Error::new(
                    ErrorCode::ProxyTunnelRefused,
                    format!("proxy {} refused the tunnel to {}: {}", self.proxy, self.target, response.status_line),
                );
                // Bad gateway, unavailable, gateway timeout: the proxy is fine, try again later.
                Err(if matches!(status, 502..=504) { error.try_later() } else { error })
            }
        }
    }

    fn on_challenge(&mut self, response: &ProxyResponse, header: &str) -> Result<Next> {
        let offered = response.header(header).or_else(|| response.header("proxy-authenticate"));
        let schemes = offered.as_deref().map(scheme_names).unwrap_or_default();
        let fail = |why: String| {
            let offers = if schemes.is_empty() { "no scheme".to_string() } else { schemes.join(", ") };
            Error::new(
                ErrorCode::ProxyAuthenticationFailed,
                format!("proxy {} answered {} (offers {offers}): {why}", self.proxy, response.status_line),
            )
        };
        let Some(auth) = self.auth.clone() else {
            return Err(fail("it requires authentication and no proxy credentials are configured".into()));
        };
        if self.rounds >= auth.maximum_conversations() {
            return Err(fail(format!("gave up after {} authentication rounds", self.rounds)));
        }
        self.rounds += 1;
        if let ProxyAuth::Custom(handler) = &auth {
            let challenge = Challenge {
                round: self.rounds,
                status: response.status,
                status_line: &response.status_line,
                headers: &response.headers,
                connection_kept_alive: response.keep_alive,
            };
            return match handler.respond(&challenge) {
                Some(headers) => self.request(&headers).map(Next::Retry),
                None => Err(fail("the custom authentication handler gave up".into())),
            };
        }
        let Some(offered) = offered else {
            return Err(fail("the response has no authentication challenge header".into()));
        };
        let challenges = http_auth::parse_challenges(&offered).unwrap_or_default();
        let (user, password, allowed): (&str, &str, &[&str]) = match &auth {
            ProxyAuth::Basic { user, password } => (user, password, &["Basic"]),
            ProxyAuth::Digest { user, password } => (user, password, &["Digest"]),
            ProxyAuth::Any { user, password } => (user, password, &["Digest", "Basic"]),
            ProxyAuth::Custom(_) => unreachable!("handled above"),
        };
        let usable: Vec<ChallengeRef<'_>> =
            challenges.into_iter().filter(|c| allowed.iter().any(|s| c.scheme.eq_ignore_ascii_case(s))).collect();
        if usable.is_empty() {
            return Err(fail(format!("none of the configured schemes ({}) is offered", allowed.join(", "))));
        }
        let digest = usable.iter().find(|c| c.scheme.eq_ignore_ascii_case("Digest"));
        let stale = digest.is_some_and(|c| {
            c.params
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("stale") && v.to_unescaped().eq_ignore_ascii_case("true"))
        });
        // Credentials already sent and challenged again (not for a stale nonce): they are wrong.
        if self.sent.is_some() && !stale {
            return Err(fail("the proxy credentials were refused".into()));
        }
        let chosen = digest.unwrap_or(&usable[0]);
        let mut client =
            PasswordClient::try_from(chosen).map_err(|e| fail(format!("cannot answer its challenge: {e}")))?;
        let method = self.request.as_ref().map_or("CONNECT", |r| r.method.as_str());
        let params = PasswordParams { username: user, password, uri: &self.target, method, body: None };
        let value = client.respond(&params).map_err(|e| fail(format!("cannot answer its challenge: {e}")))?;
        self.sent = Some(if digest.is_some() { "Digest" } else { "Basic" });
        self.request(&[authorization(value)]).map(Next::Retry)
    }

    /// A CONNECT request with `headers`; refuses header injection.
    fn request(&self, headers: &[(String, String)]) -> Result<Vec<u8>> {
        let (method, host) = match &self.request {
            Some(r) => (r.method.as_str(), r.host.as_str()),
            None => ("CONNECT", self.target.as_str()),
        };
        for (name, value) in headers {
            if !valid_header(name, value) {
                return Err(Error::new(
                    ErrorCode::IllegalArgument,
                    format!("proxy authentication produced an invalid header '{}'", name.escape_debug()),
                ));
            }
        }
        let agent = concat!("libsession/", env!("CARGO_PKG_VERSION"));
        let own = [("User-Agent", agent), ("Proxy-Connection", "Keep-Alive")];
        let carried = self.request.iter().flat_map(|r| r.headers.iter());
        let all = own.into_iter().chain(carried.chain(headers).map(|(n, v)| (n.as_str(), v.as_str())));
        let body = self.request.as_ref().map_or(&[][..], |r| &r.body);
        Ok(crate::http::request(method, &self.target, host, all, body))
    }
}

/// A plain HTTP request sent through a proxy.
#[derive(Debug, Clone)]
pub struct PlainRequest {
    /// GET, POST...
    pub method: String,
    /// The absolute URI (`http://host:port/path?query`).
    pub uri: String,
    /// The Host header.
    pub host: String,
    /// Further headers, already checked.
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length must be among `headers`).
    pub body: Vec<u8>,
}

fn authorization(value: String) -> (String, String) {
    ("Proxy-Authorization".to_string(), value)
}

/// A header name is a token; neither name nor value may carry CR, LF or NUL.
pub(crate) fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// The scheme names in a challenge header, with realms, for messages: `Basic realm="x"`.
fn scheme_names(offered: &str) -> Vec<String> {
    match http_auth::parse_challenges(offered) {
        Ok(challenges) => challenges
            .iter()
            .map(|c| {
                let realm = c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case("realm"));
                match realm {
                    Some((_, v)) => format!("{} realm=\"{}\"", c.scheme, v.to_unescaped()),
                    None => c.scheme.to_string(),
                }
            })
            .collect(),
        // Unparsable (e.g. bare NTLM tokens): the first word of each entry.
        Err(_) => offered.split(',').filter_map(|s| s.split_whitespace().next()).map(str::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn response(status: u16, headers: &[(&str, &str)], keep_alive: bool) -> ProxyResponse {
        ProxyResponse {
            status,
            status_line: format!("HTTP/1.1 {status} Reason"),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            keep_alive,
            body: Vec::new(),
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    fn conversation(auth: Option<ProxyAuth>) -> ConnectConversation {
        ConnectConversation::new("example.com:8080", "proxy:3128", auth)
    }

    const DIGEST: &str = "Digest realm=\"squid\", nonce=\"abc123\", qop=\"auth\"";

    #[test]
    fn the_request_has_connect_and_host_with_the_same_value() {
        let req = text(conversation(None).first_request().unwrap());
        assert!(req.starts_with("CONNECT example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n"));
        assert!(!req.contains("Proxy-Authorization"));
    }

    #[test]
    fn success_opens_the_tunnel() {
        assert_eq!(conversation(None).on_response(&response(200, &[], true)).unwrap(), Next::Tunnel);
    }

    #[test]
    fn basic_is_sent_preemptively_and_a_second_challenge_means_wrong_credentials() {
        let mut c = conversation(Some(ProxyAuth::Basic { user: "Aladdin".into(), password: "open sesame".into() }));
        let req = text(c.first_request().unwrap());
        assert!(req.contains("Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
        let e = c.on_response(&response(407, &[("Proxy-Authenticate", "Basic realm=\"r\"")], true)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyAuthenticationFailed);
        assert!(e.message().contains("refused") && e.message().contains("Basic realm=\"r\""), "{}", e.message());
        assert!(!e.message().contains("open sesame") && !e.message().contains("QWxhZGRp"));
    }

    #[test]
    fn digest_answers_the_challenge_with_connect_and_the_target_uri() {
        let mut c = conversation(Some(ProxyAuth::Digest { user: "u".into(), password: "p".into() }));
        assert!(!text(c.first_request().unwrap()).contains("Proxy-Authorization"));
        let Next::Retry(req) = c.on_response(&response(407, &[("Proxy-Authenticate", DIGEST)], true)).unwrap() else {
            panic!("expected a retry")
        };
        let req = text(req);
        assert!(req.contains("Proxy-Authorization: Digest "), "{req}");
        assert!(
            req.contains("uri=\"example.com:8080\"") && req.contains("nonce=\"abc123\"") && req.contains("qop=auth")
        );
        // Challenged again without stale=true: wrong password.
        let e = c.on_response(&response(407, &[("Proxy-Authenticate", DIGEST)], true)).unwrap_err();
        assert!(e.message().contains("refused"));
    }

    #[test]
    fn a_stale_digest_nonce_is_answered_again() {
        let mut c = conversation(Some(ProxyAuth::Digest { user: "u".into(), password: "p".into() }));
        c.first_request().unwrap();
        assert!(c.on_response(&response(407, &[("Proxy-Authenticate", DIGEST)], true)).is_ok());
        let stale = "Digest realm=\"squid\", nonce=\"new\", qop=\"auth\", stale=true";
        assert!(matches!(c.on_response(&response(407, &[("Proxy-Authenticate", stale)], true)), Ok(Next::Retry(_))));
    }

    #[test]
    fn any_prefers_digest_and_falls_back_to_basic() {
        let both = "Basic realm=\"r\", Digest realm=\"r\", nonce=\"n\", qop=\"auth\"";
        let mut c = conversation(Some(ProxyAuth::Any { user: "u".into(), password: "p".into() }));
        c.first_request().unwrap();
        let Next::Retry(req) = c.on_response(&response(407, &[("Proxy-Authenticate", both)], true)).unwrap() else {
            panic!()
        };
        assert!(text(req).contains("Proxy-Authorization: Digest "));
        let mut c = conversation(Some(ProxyAuth::Any { user: "u".into(), password: "p".into() }));
        let Next::Retry(req) =
            c.on_response(&response(407, &[("Proxy-Authenticate", "Basic realm=\"r\"")], false)).unwrap()
        else {
            panic!()
        };
        assert!(text(req).contains("Proxy-Authorization: Basic dTpw"));
    }

    #[test]
    fn a_401_with_www_authenticate_is_a_challenge_too() {
        let mut c = conversation(Some(ProxyAuth::Any { user: "u".into(), password: "p".into() }));
        let next = c.on_response(&response(401, &[("WWW-Authenticate", "Basic realm=\"tinyproxy\"")], false)).unwrap();
        assert!(matches!(next, Next::Retry(_)));
    }

    #[test]
    fn a_challenge_without_credentials_configured_names_the_offered_schemes() {
        let e = conversation(None)
            .on_response(&response(407, &[("Proxy-Authenticate", "Basic realm=\"corp\"")], true))
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyAuthenticationFailed);
        assert!(
            e.message().contains("Basic realm=\"corp\"") && e.message().contains("HTTP/1.1 407"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_407_without_a_challenge_header_fails_clearly() {
        let mut c = conversation(Some(ProxyAuth::Any { user: "u".into(), password: "p".into() }));
        let e = c.on_response(&response(407, &[], true)).unwrap_err();
        assert!(e.message().contains("no authentication challenge"), "{}", e.message());
    }

    #[test]
    fn refusals_carry_the_status_line() {
        let e = conversation(None).on_response(&response(403, &[], false)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyTunnelRefused);
        assert!(e.message().contains("HTTP/1.1 403") && e.message().contains("example.com:8080"));
        assert!(!e.is_transient());
        assert!(conversation(None).on_response(&response(503, &[], false)).unwrap_err().is_transient());
    }

    struct Recorder {
        seen: Mutex<Vec<(u32, u16, bool)>>,
        give_up_after: u32,
    }

    impl super::super::auth::ChallengeHandler for Recorder {
        fn respond(&self, c: &Challenge<'_>) -> Option<Vec<(String, String)>> {
            self.seen.lock().unwrap().push((c.round, c.status, c.connection_kept_alive));
            (c.round < self.give_up_after)
                .then(|| vec![("Proxy-Authorization".into(), format!("NTLM round{}", c.round))])
        }
        fn maximum_conversations(&self) -> u32 {
            5
        }
    }

    #[test]
    fn a_custom_handler_sees_every_round_and_whether_the_connection_stayed_open() {
        let handler = Arc::new(Recorder { seen: Mutex::new(Vec::new()), give_up_after: 3 });
        let mut c = conversation(Some(ProxyAuth::Custom(handler.clone())));
        assert!(text(c.first_request().unwrap()).contains("Proxy-Authorization: NTLM round0"));
        let challenge = response(407, &[("Proxy-Authenticate", "NTLM TlRMTVNTUAACAAAA")], true);
        let Next::Retry(req) = c.on_response(&challenge).unwrap() else { panic!() };
        assert!(text(req).contains("NTLM round1"));
        c.on_response(&response(407, &[("Proxy-Authenticate", "NTLM")], false)).unwrap();
        let e = c.on_response(&challenge).unwrap_err();
        assert!(e.message().contains("gave up") && e.message().contains("NTLM"), "{}", e.message());
        assert_eq!(*handler.seen.lock().unwrap(), vec![(0, 0, true), (1, 407, true), (2, 407, false), (3, 407, true)]);
    }

    #[test]
    fn endless_challenges_stop_at_the_conversation_bound() {
        let handler = Arc::new(Recorder { seen: Mutex::new(Vec::new()), give_up_after: u32::MAX });
        let mut c = conversation(Some(ProxyAuth::Custom(handler)));
        let challenge = response(407, &[("Proxy-Authenticate", "NTLM")], true);
        let mut rounds = 0;
        while c.on_response(&challenge).is_ok() {
            rounds += 1;
            assert!(rounds <= 5);
        }
        assert_eq!(rounds, 5);
    }

    #[test]
    fn a_custom_handler_giving_up_in_round_0_fails_authentication() {
        let handler = Arc::new(Recorder { seen: Mutex::new(Vec::new()), give_up_after: 0 });
        let mut c = conversation(Some(ProxyAuth::Custom(handler)));
        assert_eq!(c.first_request().unwrap_err().code(), ErrorCode::ProxyAuthenticationFailed);
    }

    #[test]
    fn header_injection_from_a_handler_is_refused() {
        struct Injector;
        impl super::super::auth::ChallengeHandler for Injector {
            fn respond(&self, _: &Challenge<'_>) -> Option<Vec<(String, String)>> {
                Some(vec![("X-A".into(), "v\r\nHost: evil".into())])
            }
        }
        let mut c = conversation(Some(ProxyAuth::Custom(Arc::new(Injector))));
        assert_eq!(c.first_request().unwrap_err().code(), ErrorCode::IllegalArgument);
    }
}
