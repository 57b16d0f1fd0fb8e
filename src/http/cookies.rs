//! A session's cookies: what load balancers set for stickiness, sent back on every later request
//! of the same session (never shared between sessions).

use cookie_store::CookieStore;
use parking_lot::Mutex;

use super::url::ServerUrl;

/// The cookie jar of one session.
#[derive(Default)]
pub(crate) struct CookieJar {
    store: Mutex<CookieStore>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar")
    }
}

/// The http(s) URL whose cookie rules apply to a ws(s) URL: same host, port and path; wss counts
/// as secure.
fn cookie_url(url: &ServerUrl) -> Option<url::Url> {
    let scheme = if url.secure { "https" } else { "http" };
    url::Url::parse(&format!("{scheme}://{}{}", url.authority(), url.path)).ok()
}

impl CookieJar {
    /// Keeps the cookies of every `Set-Cookie` header (any case) among the `headers` (name,
    /// value) of a response from `url`.
    pub(crate) fn store(&self, url: &ServerUrl, headers: &[(String, String)]) {
        let cookies: Vec<cookie::Cookie<'static>> = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, value)| cookie::Cookie::parse(value.clone()).ok())
            .collect();
        if cookies.is_empty() {
            return;
        }
        let Some(url) = cookie_url(url) else { return };
        tracing::debug!(count = cookies.len(), "cookies received");
        self.store.lock().store_response_cookies(cookies.into_iter(), &url);
    }

    /// The `Cookie` header value for a request to `url`, if any cookie applies.
    pub(crate) fn header(&self, url: &ServerUrl) -> Option<String> {
        let store = self.store.lock();
        // Most sessions never get a cookie: no URL to build for them.
        store.iter_any().next()?;
        let url = cookie_url(url)?;
        let pairs: Vec<String> = store.get_request_values(&url).map(|(n, v)| format!("{n}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Vec<(String, String)> {
        values.iter().map(|v| ("Set-Cookie".to_string(), v.to_string())).collect()
    }

    fn url(text: &str) -> ServerUrl {
        ServerUrl::parse(text).unwrap()
    }

    #[test]
    fn cookies_come_back_on_later_requests() {
        let jar = CookieJar::default();
        let u = url("ws://lb.example:8080/diffusion");
        jar.store(&u, &headers(&["SERVERID=a; path=/"]));
        assert_eq!(jar.header(&u).as_deref(), Some("SERVERID=a"));
    }

    #[test]
    fn path_domain_expiry_and_secure_are_honoured() {
        let jar = CookieJar::default();
        let u = url("ws://lb.example/app/diffusion");
        jar.store(
            &u,
            &headers(&[
                "app=1; Path=/app",
                "other=2; Path=/other",
                "gone=3; Max-Age=0",
                "old=4; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
                "tls=5; Secure",
                "foreign=6; Domain=other.example",
            ]),
        );
        assert_eq!(jar.header(&u).as_deref(), Some("app=1"));
        assert_eq!(jar.header(&url("ws://lb.example/other/diffusion")).as_deref(), Some("other=2"));
        let secure = url("wss://lb.example/app/diffusion");
        let mut both: Vec<&str> = Vec::new();
        let header = jar.header(&secure).unwrap();
        both.extend(header.split("; "));
        both.sort();
        assert_eq!(both, vec!["app=1", "tls=5"]);
    }

    #[test]
    fn cookies_of_another_host_are_not_sent() {
        let jar = CookieJar::default();
        jar.store(&url("ws://a.example/diffusion"), &headers(&["k=v"]));
        assert_eq!(jar.header(&url("ws://b.example/diffusion")), None);
    }

    #[test]
    fn header_names_in_any_case_are_read() {
        let jar = CookieJar::default();
        let u = url("ws://h/diffusion");
        let headers = [("set-cookie", "lower=1"), ("SET-COOKIE", "upper=2"), ("Set-Cookie2", "no=3")];
        jar.store(&u, &headers.map(|(n, v)| (n.to_string(), v.to_string())));
        let header = jar.header(&u).unwrap();
        assert!(header.contains("lower=1") && header.contains("upper=2") && !header.contains("no"), "{header}");
    }
}
