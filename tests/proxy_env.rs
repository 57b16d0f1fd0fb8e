//! Proxy settings from the environment. One test, because the environment is process-wide.

mod common;

use common::external::{microsocks, tinyproxy};
use common::*;
use session::proxy::ProxySetting;
use session::{ErrorCode, Session};

const VARS: [&str; 8] =
    ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"];

fn environment(pairs: &[(&str, &str)]) {
    for var in VARS {
        std::env::remove_var(var);
    }
    for (var, value) in pairs {
        std::env::set_var(var, value);
    }
}

#[test]
fn proxies_from_the_environment() {
    let server = start_server();
    let port = server.addr().port();
    let Some(proxy) = tinyproxy(port, Some(("envuser", "envpass"))) else { return };
    let Some(socks) = microsocks(None) else { return };
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let connect = || Session::connect(config(&server.url()), None).map(|s| s.close());

    // http_proxy, with user information.
    environment(&[("http_proxy", &format!("http://envuser:envpass@127.0.0.1:{}", proxy.port))]);
    connect().expect("through tinyproxy from http_proxy");
    assert!(proxy.output().contains(&format!("CONNECT 127.0.0.1:{port}")), "{}", proxy.output());

    // The upper-case name works too; the lower-case one wins when both are set.
    environment(&[("HTTP_PROXY", &format!("http://envuser:envpass@127.0.0.1:{}", proxy.port))]);
    connect().expect("through tinyproxy from HTTP_PROXY");
    environment(&[("http_proxy", &dead), ("HTTP_PROXY", &format!("127.0.0.1:{}", proxy.port))]);
    assert_eq!(connect().unwrap_err().code(), ErrorCode::ProxyUnreachable);

    // all_proxy is the fallback; socks5h goes through microsocks.
    environment(&[("ALL_PROXY", &format!("socks5h://127.0.0.1:{}", socks.port))]);
    connect().expect("through microsocks from ALL_PROXY");

    // https_proxy is for wss:// only: a dead one does not affect ws://...
    environment(&[("https_proxy", &dead)]);
    connect().expect("https_proxy is not used for ws://");
    // ...and a live one carries wss://, with the TLS handshake inside the tunnel.
    let pki = common::pki::pki();
    let tls = pki.server_tls("server");
    let secure = start_server_with(move |c| c.tls = Some(tls));
    let Some(tls_proxy) = tinyproxy(secure.addr().port(), None) else { return };
    environment(&[("https_proxy", &format!("http://127.0.0.1:{}", tls_proxy.port)), ("http_proxy", &dead)]);
    let mut wss = config(&format!("wss://localhost:{}/diffusion", secure.addr().port()));
    wss.options.tls.extra_roots.push(pki.ca());
    Session::connect(wss, None).expect("wss:// through https_proxy").close();
    assert!(tls_proxy.output().contains("CONNECT localhost:"), "{}", tls_proxy.output());

    // no_proxy bypasses: by name, by address, by CIDR range, by wildcard.
    for no_proxy in ["127.0.0.1", "127.0.0.0/8", "*", &format!("127.0.0.1:{port}"), "other.example,127.0.0.1"] {
        environment(&[("http_proxy", &dead), ("no_proxy", no_proxy)]);
        connect().unwrap_or_else(|e| panic!("no_proxy={no_proxy} did not bypass: {e}"));
    }
    environment(&[("http_proxy", &dead), ("NO_PROXY", "127.0.0.2,10.0.0.0/8")]);
    let err = connect().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ProxyUnreachable);

    // A factory told to ignore the environment connects directly.
    let mut cfg = config(&server.url());
    cfg.options.proxy = ProxySetting::Disabled;
    Session::connect(cfg, None).expect("no_proxy on the factory").close();

    // A malformed variable is an error naming the variable, not a silent direct connection.
    environment(&[("http_proxy", "gopher://envuser:topsecret@127.0.0.1:1")]);
    let err = connect().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ParseUrl);
    assert!(err.message().contains("http_proxy") && !err.message().contains("topsecret"), "{}", err.message());
    environment(&[]);
}
