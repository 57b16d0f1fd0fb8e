//! Credentials never appear in log output at any level, nor in error messages.

mod common;

use common::external::{squid, tinyproxy, SquidAuth};
use common::logs::LogBuffer;
use common::*;
use session::protocol::Credentials;
use session::proxy::{Proxy, ProxyAuth, ProxySetting};
use session::Session;

// The passwords, and the Basic header value for pu:Pr0xy-Secret.
const SECRETS: [&str; 3] = ["Sess10n-Secret", "Pr0xy-Secret", "cHU6UHIweHktU2VjcmV0"];

#[test]
fn no_credentials_in_trace_logs_or_errors() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let server = start_server_with(|c| {
        c.users.insert("bob".into(), b"Sess10n-Secret".to_vec());
    });
    let port = server.addr().port();
    let session_creds = |password: &str| {
        let mut c = config(&server.url());
        c.options.principal = "bob".into();
        c.options.credentials = Credentials::Password(password.as_bytes().to_vec());
        c
    };
    let mut errors = Vec::new();
    Session::connect(session_creds("Sess10n-Secret"), None).unwrap().close();
    errors.push(Session::connect(session_creds("Sess10n-Secret-not"), None).unwrap_err());

    let through = |proxy: Proxy, password: &str| {
        let mut c = session_creds(password);
        c.options.proxy = ProxySetting::Use(proxy);
        Session::connect(c, None)
    };
    let user = |auth: fn(String, String) -> ProxyAuth, password: &str| Some(auth("pu".into(), password.into()));
    let basic = |u, p| ProxyAuth::Basic { user: u, password: p };
    let digest = |u, p| ProxyAuth::Digest { user: u, password: p };
    if let Some(proxy) = tinyproxy(port, Some(("pu", "Pr0xy-Secret"))) {
        let http = |auth| Proxy::Http { host: "127.0.0.1".into(), port: proxy.port, auth, tls: false };
        through(http(user(basic, "Pr0xy-Secret")), "Sess10n-Secret").unwrap().close();
        errors.push(through(http(user(basic, "Pr0xy-Secret-not")), "Sess10n-Secret").unwrap_err());
    }
    if let Some(proxy) = squid(port, SquidAuth::Digest, ("pu", "Pr0xy-Secret")) {
        let http = |auth| Proxy::Http { host: "127.0.0.1".into(), port: proxy.port, auth, tls: false };
        through(http(user(digest, "Pr0xy-Secret")), "Sess10n-Secret").unwrap().close();
        errors.push(through(http(user(digest, "Pr0xy-Secret-not")), "Sess10n-Secret").unwrap_err());
    }
    errors
        .push(through(Proxy::parse_url("http://pu:Pr0xy-Secret@127.0.0.1:1").unwrap(), "Sess10n-Secret").unwrap_err());

    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = buffer.text();
    assert!(log.contains("session"), "logging was on: {log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
        for e in &errors {
            assert!(!e.message().contains(secret), "{secret} appears in an error: {e}");
        }
    }
}
