//! wss:// sessions: verification by default, CAs, server names, the validation callback, and TLS
//! through proxies and TLS-terminating balancers.

mod common;

use std::sync::{Arc, Mutex};

use common::external::{microsocks, squid, tinyproxy, SquidAuth};
use common::pki::{pki, Pki};
use common::*;
use session::proxy::{Proxy, ProxyAuth, ProxySetting};
use session::tls::CertificateValidator;
use session::{Error, ErrorCode, Session, SessionConfig};

fn tls_server(pki: &Pki, cert: &str) -> session_server::ServerHandle {
    let tls = pki.server_tls(cert);
    start_server_with(move |c| c.tls = Some(tls))
}

fn wss(server: &session_server::ServerHandle, host: &str) -> String {
    format!("wss://{host}:{}/diffusion", server.addr().port())
}

fn trusting(url: &str, ca: std::path::PathBuf) -> SessionConfig {
    let mut c = config(url);
    c.options.tls.extra_roots.push(ca);
    c
}

fn connects(config: SessionConfig) {
    Session::connect(config, None).unwrap_or_else(|e| panic!("{e}")).close();
}

fn fails(config: SessionConfig, code: ErrorCode) -> String {
    let e = Session::connect(config, None).expect_err("must not connect");
    assert_eq!(e.code(), code, "{}", e.message());
    e.message().to_string()
}

#[test]
fn wss_with_the_test_ca_connects_by_name_and_by_address() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    connects(trusting(&wss(&server, "localhost"), pki.ca()));
    connects(trusting(&wss(&server, "127.0.0.1"), pki.ca()));
    assert!(server.url().starts_with("wss://"));
}

#[test]
fn without_the_ca_the_certificate_is_untrusted() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let message = fails(config(&wss(&server, "localhost")), ErrorCode::TlsCertificateUntrusted);
    assert!(message.contains(&format!("localhost:{}", server.addr().port())), "{message}");
    fails(trusting(&wss(&server, "localhost"), pki.other_ca()), ErrorCode::TlsCertificateUntrusted);
}

#[test]
fn only_the_given_ca_when_system_roots_are_off() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let mut c = trusting(&wss(&server, "localhost"), pki.ca());
    c.options.tls.system_roots = false;
    connects(c);
    let mut c = config(&wss(&server, "localhost"));
    c.options.tls.system_roots = false;
    fails(c, ErrorCode::TlsCertificateUntrusted);
}

#[test]
fn an_expired_certificate_is_refused() {
    let pki = pki();
    let server = tls_server(&pki, "expired");
    let message = fails(trusting(&wss(&server, "localhost"), pki.ca()), ErrorCode::TlsCertificateExpired);
    assert!(message.contains("expired"), "{message}");
}

#[test]
fn a_certificate_for_another_name_is_refused_unless_that_name_is_given() {
    let pki = pki();
    let server = tls_server(&pki, "other-name");
    let message = fails(trusting(&wss(&server, "localhost"), pki.ca()), ErrorCode::TlsCertificateNameMismatch);
    assert!(message.contains("localhost") && message.contains("other.example"), "{message}");
    let mut c = trusting(&wss(&server, "127.0.0.1"), pki.ca());
    c.options.tls.server_name = Some("other.example".into());
    connects(c);
}

#[derive(Default)]
struct Recorder {
    accept: bool,
    calls: Mutex<Vec<(String, usize, Option<ErrorCode>)>>,
}

impl CertificateValidator for Recorder {
    fn validate(&self, host: &str, chain: &[&[u8]], verdict: Option<&Error>) -> bool {
        assert!(chain[0].len() > 100, "the DER of the server's certificate");
        self.calls.lock().unwrap().push((host.to_string(), chain.len(), verdict.map(|e| e.code())));
        self.accept
    }
}

#[test]
fn the_validation_callback_has_the_final_say() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let accept = Arc::new(Recorder { accept: true, ..Default::default() });
    let mut c = config(&wss(&server, "localhost"));
    c.options.tls.validator = Some(accept.clone());
    connects(c);
    assert_eq!(
        *accept.calls.lock().unwrap(),
        vec![("localhost".to_string(), 1, Some(ErrorCode::TlsCertificateUntrusted))]
    );

    let reject = Arc::new(Recorder { accept: false, ..Default::default() });
    let mut c = trusting(&wss(&server, "localhost"), pki.ca());
    c.options.tls.validator = Some(reject.clone());
    fails(c, ErrorCode::TlsCertificateRejected);
    assert_eq!(reject.calls.lock().unwrap()[0].2, None, "the library's own checks passed");
}

#[test]
fn a_plain_server_on_the_tls_url_is_reported() {
    // The bundled server answers the ClientHello with a plain-text 400.
    let server = start_server();
    let message = fails(config(&wss(&server, "127.0.0.1")), ErrorCode::TlsNotTls);
    assert!(message.contains("plain"), "{message}");
    // A peer that closes at once.
    let port = fake_peer(|stream| async move { drop(stream) });
    let message = fails(config(&format!("wss://127.0.0.1:{port}")), ErrorCode::TlsHandshakeFailed);
    assert!(message.contains("TLS"), "{message}");
    // A peer that answers in plain text rather than closing.
    let port = fake_peer(|mut stream| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    });
    let message = fails(config(&format!("wss://127.0.0.1:{port}")), ErrorCode::TlsNotTls);
    assert!(message.contains("plain"), "{message}");
}

#[test]
fn a_plain_client_on_the_tls_port_fails_and_the_server_survives() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let plain = format!("ws://127.0.0.1:{}/diffusion", server.addr().port());
    let e = Session::connect(config(&plain), None).unwrap_err();
    assert!(matches!(e.code(), ErrorCode::HandshakeRecvFail | ErrorCode::InvalidConnectionProtocol), "{e}");
    connects(trusting(&wss(&server, "localhost"), pki.ca()));
}

#[test]
fn an_unreadable_ca_file_is_named() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let message = fails(trusting(&wss(&server, "localhost"), pki.path("missing.pem")), ErrorCode::IllegalArgument);
    assert!(message.contains("missing.pem"), "{message}");
}

// --- through proxies ------------------------------------------------------------------------

fn via(mut config: SessionConfig, proxy: Proxy) -> SessionConfig {
    config.options.proxy = ProxySetting::Use(proxy);
    config
}

fn http_proxy(port: u16, auth: Option<ProxyAuth>) -> Proxy {
    Proxy::Http { host: "127.0.0.1".into(), port, auth, tls: false }
}

#[test]
fn wss_through_tinyproxy_squid_and_microsocks() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let port = server.addr().port();
    let url = wss(&server, "localhost");
    if let Some(proxy) = tinyproxy(port, None) {
        connects(via(trusting(&url, pki.ca()), http_proxy(proxy.port, None)));
        // The TLS handshake runs inside the tunnel with the origin's name: still verified.
        fails(via(config(&url), http_proxy(proxy.port, None)), ErrorCode::TlsCertificateUntrusted);
    }
    if let Some(proxy) = squid(port, SquidAuth::Basic, ("tu", "tp")) {
        let auth = Some(ProxyAuth::Basic { user: "tu".into(), password: "tp".into() });
        connects(via(trusting(&url, pki.ca()), http_proxy(proxy.port, auth)));
    }
    if let Some(proxy) = microsocks(None) {
        connects(via(
            trusting(&url, pki.ca()),
            Proxy::parse_url(&format!("socks5h://127.0.0.1:{}", proxy.port)).unwrap(),
        ));
    }
}

#[test]
fn an_https_proxy_carries_tls_inside_tls() {
    let pki = pki();
    let server = tls_server(&pki, "server");
    let Some(tiny) = tinyproxy(server.addr().port(), None) else { return };
    // haproxy terminates TLS in front of tinyproxy: an https:// proxy.
    let sections = format!(
        "frontend proxy\n    mode tcp\n    bind 127.0.0.1:{{port}} ssl crt {}\n    default_backend tiny\n\n\
         backend tiny\n    mode tcp\n    server t 127.0.0.1:{}\n",
        pki.path("server.combined.pem").display(),
        tiny.port
    );
    let Some(front) = common::external::haproxy(&sections) else { return };
    let proxy = Proxy::parse_url(&format!("https://127.0.0.1:{}", front.port)).unwrap();
    connects(via(trusting(&wss(&server, "localhost"), pki.ca()), proxy.clone()));
    // The proxy's own certificate is verified too.
    let message = fails(via(config(&wss(&server, "localhost")), proxy), ErrorCode::TlsCertificateUntrusted);
    assert!(message.contains("proxy"), "{message}");
}

/// The bundled server serving ws:// on `/a/diffusion`, behind a TLS-terminating balancer.
fn routed_server() -> session_server::ServerHandle {
    start_server_with(|c| c.paths = vec!["/a/diffusion".into()])
}

#[test]
fn nginx_terminating_tls_with_request_path_routing() {
    let pki = pki();
    let server = routed_server();
    let servers = format!(
        "    server {{\n        listen 127.0.0.1:{{port}} ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};\n        \
         location /a/diffusion {{\n            proxy_pass http://127.0.0.1:{};\n            proxy_http_version 1.1;\n            \
         proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            \
         proxy_read_timeout 1h;\n        }}\n    }}",
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
        server.addr().port()
    );
    let Some(nginx) = common::external::nginx(&servers) else { return };
    connects(trusting(&format!("wss://localhost:{}/a/diffusion", nginx.port), pki.ca()));
    let message =
        fails(trusting(&format!("wss://localhost:{}/b/diffusion", nginx.port), pki.ca()), ErrorCode::HandshakeRecvFail);
    assert!(message.contains("404"), "{message}");
}

#[test]
fn haproxy_terminating_tls_with_request_path_routing() {
    let pki = pki();
    let server = routed_server();
    let sections = format!(
        "frontend wss\n    mode http\n    bind 127.0.0.1:{{port}} ssl crt {}\n    use_backend sessions if {{ path_beg /a/ }}\n\n\
         backend sessions\n    mode http\n    server s1 127.0.0.1:{}\n",
        pki.path("server.combined.pem").display(),
        server.addr().port()
    );
    let Some(haproxy) = common::external::haproxy(&sections) else { return };
    connects(trusting(&format!("wss://localhost:{}/a/diffusion", haproxy.port), pki.ca()));
    let message = fails(
        trusting(&format!("wss://localhost:{}/b/diffusion", haproxy.port), pki.ca()),
        ErrorCode::HandshakeRecvFail,
    );
    assert!(message.contains("503"), "{message}");
}

// --- the C API -------------------------------------------------------------------------------

mod c_api {
    use super::*;
    use session::ffi::factory::*;
    use session::ffi::session::*;
    use session::ffi::tls::*;
    use session::ffi::types::ERROR_CODE_T;
    use std::ffi::{c_char, c_int, c_void, CString};
    use std::ptr::{null, null_mut};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static VERDICTS: Mutex<Vec<ERROR_CODE_T>> = Mutex::new(Vec::new());
    static FREED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn reject_all(
        _host: *const c_char,
        chain: *const DIFFUSION_CERTIFICATE_T,
        chain_length: usize,
        verdict: ERROR_CODE_T,
        _reason: *const c_char,
        _context: *mut c_void,
    ) -> c_int {
        assert!(chain_length >= 1 && (*chain).length > 100);
        VERDICTS.lock().unwrap().push(verdict);
        DIFFUSION_CERTIFICATE_REJECT
    }

    unsafe extern "C" fn count_free(_context: *mut c_void) {
        FREED.fetch_add(1, Ordering::SeqCst);
    }

    fn c(text: &str) -> CString {
        CString::new(text).unwrap()
    }

    #[test]
    fn factory_tls_settings_and_the_callback_context_freed_once() {
        let pki = pki();
        let server = tls_server(&pki, "server");
        let url = c(&wss(&server, "localhost"));
        let ca = c(pki.ca().to_str().unwrap());
        unsafe {
            let factory = diffusion_session_factory_init();
            diffusion_session_factory_trust_system_roots(factory, false);
            diffusion_session_factory_certificate_authority(factory, ca.as_ptr());
            let session = session_create_with_session_factory(factory, url.as_ptr());
            assert!(!session.is_null());
            session_free(session);

            let validation = DIFFUSION_CERTIFICATE_VALIDATION_T {
                validate: Some(reject_all),
                context: null_mut(),
                free_context: Some(count_free),
            };
            diffusion_session_factory_certificate_validation(factory, &validation);
            assert!(session_create_with_session_factory(factory, url.as_ptr()).is_null());
            assert_eq!(*VERDICTS.lock().unwrap(), vec![ERROR_CODE_T::DIFF_ERR_SUCCESS]);
            // Replacing the callback releases the old context, once.
            diffusion_session_factory_certificate_validation(factory, null());
            assert_eq!(FREED.load(Ordering::SeqCst), 1);

            diffusion_session_factory_tls_server_name(factory, c("other.example").as_ptr());
            assert!(session_create_with_session_factory(factory, url.as_ptr()).is_null());
            diffusion_session_factory_tls_server_name(factory, null());
            let session = session_create_with_session_factory(factory, url.as_ptr());
            assert!(!session.is_null());
            session_free(session);

            // Through the factory's own URL building: secure transport picks wss:// and 443's stand-in.
            diffusion_session_factory_server_host(factory, c("localhost").as_ptr());
            diffusion_session_factory_server_port(factory, server.addr().port() as c_int);
            diffusion_session_factory_secure_transport(factory, true);
            let session = session_create_with_session_factory(factory, null());
            assert!(!session.is_null());
            session_free(session);
            diffusion_session_factory_free(factory);

            diffusion_session_factory_certificate_authority(null(), null());
            diffusion_session_factory_trust_system_roots(null(), true);
            diffusion_session_factory_tls_server_name(null(), null());
            diffusion_session_factory_certificate_validation(null(), &validation);
            assert_eq!(FREED.load(Ordering::SeqCst), 1, "nothing taken for a NULL factory");
        }
    }
}

#[test]
fn an_alert_from_the_server_is_named() {
    // A peer that answers the ClientHello with a fatal handshake_failure alert.
    let port = fake_peer(|mut stream| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 2048];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]).await;
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    });
    let message = fails(config(&format!("wss://localhost:{port}")), ErrorCode::TlsHandshakeFailed);
    assert!(message.contains("HandshakeFailure"), "{message}");
}
