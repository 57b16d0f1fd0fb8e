//! A connection the server has dropped is an error for the session, never a SIGPIPE: C programs
//! keep the signal's default action, which ends the process. A test binary of its own, as it
//! sets that action for the whole process.

mod common;

use common::pki::pki;
use common::*;
use session::{ErrorCode, Session};

#[test]
fn sessions_over_tls_and_plain_tcp_open_fail_and_close_without_sigpipe() {
    // As in a C program: SIGPIPE ends the process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let pki = pki();
    let tls = pki.server_tls("server");
    let secure = start_server_with(move |c| c.tls = Some(tls));
    let plain = start_server();
    let wss = format!("wss://localhost:{}/diffusion", secure.addr().port());
    for _ in 0..200 {
        // Refused while the TLS handshake is under way: the server's certificate is not trusted.
        let e = Session::connect(config(&wss), None).expect_err("untrusted");
        assert_eq!(e.code(), ErrorCode::TlsCertificateUntrusted, "{e}");
        // Opened and closed: the server drops the connection as the client closes its side.
        let mut trusting = config(&wss);
        trusting.options.tls.extra_roots.push(pki.ca());
        Session::connect(trusting, None).unwrap_or_else(|e| panic!("{e}")).close();
        Session::connect(config(&plain.url()), None).unwrap_or_else(|e| panic!("{e}")).close();
    }
}
