//! The proxy C API: factory settings, authentication objects and a custom challenge handler in C
//! style, against real proxies.

mod common;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::external::{microsocks, squid, tinyproxy, SquidAuth};
use common::*;
use session::ffi::error::diffusion_error_free;
use session::ffi::factory::*;
use session::ffi::proxy::*;
use session::ffi::session::*;
use session::ffi::types::{DIFFUSION_ERROR_T, ERROR_CODE_T, HANDLER_FAILURE, HANDLER_SUCCESS};

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

/// Creates a session from `factory` to `url`: Ok, or the error code and message.
unsafe fn open(factory: *const DIFFUSION_SESSION_FACTORY_T, url: &str) -> Result<(), (ERROR_CODE_T, String)> {
    let session = session_create_with_session_factory(factory, c(url).as_ptr());
    if session.is_null() {
        let mut error =
            DIFFUSION_ERROR_T { code: ERROR_CODE_T::DIFF_ERR_SUCCESS, message: null_mut(), context: null_mut() };
        session_last_error(&mut error);
        let text = CStr::from_ptr(error.message).to_string_lossy().into_owned();
        diffusion_error_free(&mut error);
        return Err((error.code, text));
    }
    session_free(session);
    Ok(())
}

#[test]
fn http_proxy_with_each_built_in_authentication() {
    let server = start_server();
    let Some(proxy) = squid(server.addr().port(), SquidAuth::Basic, ("cuser", "cpass")) else { return };
    unsafe {
        for make in [diffusion_proxy_authentication_basic, diffusion_proxy_authentication_any] {
            let factory = diffusion_session_factory_init();
            let auth = make(c("cuser").as_ptr(), c("cpass").as_ptr());
            diffusion_session_factory_http_proxy(factory, c("127.0.0.1").as_ptr(), proxy.port as c_int, auth);
            diffusion_proxy_authentication_free(auth);
            open(factory, &server.url()).expect("connects through squid");
            diffusion_session_factory_free(factory);
        }
        let factory = diffusion_session_factory_init();
        let auth = diffusion_proxy_authentication_digest(c("cuser").as_ptr(), c("cpass").as_ptr());
        diffusion_session_factory_http_proxy(factory, c("127.0.0.1").as_ptr(), proxy.port as c_int, auth);
        diffusion_proxy_authentication_free(auth);
        let (code, message) = open(factory, &server.url()).unwrap_err();
        assert_eq!(code, ERROR_CODE_T::DIFF_ERR_PROXY_AUTHENTICATION_FAILED, "{message}");
        assert!(message.contains("Basic realm=\"libsession-test\"") && !message.contains("cpass"), "{message}");
        diffusion_session_factory_free(factory);
    }
}

// A custom scheme implemented in "C": Basic computed by the handler, to prove the handler sees the
// challenge and its headers go out on the next CONNECT.
static ROUNDS: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn answer_basic(
    challenge: *const DIFFUSION_PROXY_CHALLENGE_T,
    response: *mut DIFFUSION_PROXY_RESPONSE_T,
    context: *mut c_void,
) -> c_int {
    let challenge = &*challenge;
    ROUNDS.fetch_add(1, Ordering::SeqCst);
    if challenge.round == 0 {
        return HANDLER_SUCCESS; // nothing to send before being asked
    }
    let headers = std::slice::from_raw_parts(challenge.headers, challenge.header_count);
    let offers_basic = headers.iter().any(|h| {
        CStr::from_ptr(h.name).to_string_lossy().eq_ignore_ascii_case("proxy-authenticate")
            && CStr::from_ptr(h.value).to_string_lossy().starts_with("Basic")
    });
    if challenge.status_code != 407 || !offers_basic || challenge.round > 1 {
        return HANDLER_FAILURE;
    }
    let credentials = CStr::from_ptr(context as *const c_char).to_str().unwrap();
    let value = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials));
    assert_eq!(diffusion_proxy_response_add_header(response, c("X-Bad").as_ptr(), c("a\r\nb").as_ptr()), 0);
    assert_eq!(diffusion_proxy_response_add_header(response, c("Proxy-Authorization").as_ptr(), c(&value).as_ptr()), 1);
    HANDLER_SUCCESS
}

unsafe extern "C" fn free_context(context: *mut c_void) {
    FREED.fetch_add(1, Ordering::SeqCst);
    drop(CString::from_raw(context as *mut c_char));
}

#[test]
fn a_custom_handler_answers_a_real_proxy_and_its_context_is_freed_once() {
    let server = start_server();
    let Some(proxy) = squid(server.addr().port(), SquidAuth::Basic, ("huser", "hpass")) else { return };
    unsafe {
        let handler = DIFFUSION_PROXY_CHALLENGE_HANDLER_T {
            on_challenge: Some(answer_basic),
            maximum_conversations: 2,
            context: c("huser:hpass").into_raw() as *mut c_void,
            free_context: Some(free_context),
        };
        let auth = diffusion_proxy_authentication_custom(&handler);
        assert!(!auth.is_null());
        let factory = diffusion_session_factory_init();
        diffusion_session_factory_http_proxy(factory, c("127.0.0.1").as_ptr(), proxy.port as c_int, auth);
        diffusion_proxy_authentication_free(auth);
        assert_eq!(FREED.load(Ordering::SeqCst), 0, "the factory still uses the handler");
        let session = session_create_with_session_factory(factory, c(&server.url()).as_ptr());
        assert!(!session.is_null());
        assert_eq!(ROUNDS.load(Ordering::SeqCst), 2, "round 0, then the 407");
        diffusion_session_factory_free(factory);
        assert_eq!(FREED.load(Ordering::SeqCst), 0, "the session may still reconnect with it");
        session_close(session, null_mut());
        session_free(session);
        let start = std::time::Instant::now();
        while FREED.load(Ordering::SeqCst) == 0 && start.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(FREED.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn socks5_proxy_url_and_no_proxy_settings() {
    let server = start_server();
    let Some(socks) = microsocks(Some(("su", "sp"))) else { return };
    let Some(tiny) = tinyproxy(server.addr().port(), None) else { return };
    unsafe {
        let factory = diffusion_session_factory_init();
        diffusion_session_factory_socks5_proxy(
            factory,
            c("127.0.0.1").as_ptr(),
            socks.port as c_int,
            c("su").as_ptr(),
            c("sp").as_ptr(),
        );
        open(factory, &server.url()).expect("through microsocks");
        diffusion_session_factory_socks5_proxy(factory, c("127.0.0.1").as_ptr(), socks.port as c_int, null(), null());
        assert_eq!(open(factory, &server.url()).unwrap_err().0, ERROR_CODE_T::DIFF_ERR_PROXY_AUTHENTICATION_FAILED);

        diffusion_session_factory_proxy_url(factory, c(&format!("http://127.0.0.1:{}", tiny.port)).as_ptr());
        open(factory, &server.url()).expect("through tinyproxy by URL");
        diffusion_session_factory_proxy_url(factory, c(&format!("socks5h://su:sp@127.0.0.1:{}", socks.port)).as_ptr());
        open(factory, &server.url()).expect("through microsocks by URL");

        diffusion_session_factory_proxy_url(factory, c("ftp://nowhere").as_ptr());
        assert_eq!(open(factory, &server.url()).unwrap_err().0, ERROR_CODE_T::DIFF_ERR_PARSE_URL);
        diffusion_session_factory_http_proxy(factory, null(), 3128, null());
        assert_eq!(open(factory, &server.url()).unwrap_err().0, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_session_factory_http_proxy(factory, c("127.0.0.1").as_ptr(), 0, null());
        assert_eq!(open(factory, &server.url()).unwrap_err().0, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);

        diffusion_session_factory_no_proxy(factory);
        open(factory, &server.url()).expect("direct");
        diffusion_session_factory_free(factory);
    }
}

#[test]
fn proxy_functions_tolerate_null() {
    unsafe {
        assert!(diffusion_proxy_authentication_basic(null(), null()).is_null());
        assert!(diffusion_proxy_authentication_digest(null(), c("p").as_ptr()).is_null());
        assert!(diffusion_proxy_authentication_any(null(), null()).is_null());
        assert!(diffusion_proxy_authentication_custom(null()).is_null());
        let no_callback = DIFFUSION_PROXY_CHALLENGE_HANDLER_T {
            on_challenge: None,
            maximum_conversations: 0,
            context: null_mut(),
            free_context: None,
        };
        assert!(diffusion_proxy_authentication_custom(&no_callback).is_null());
        diffusion_proxy_authentication_free(null_mut());
        assert_eq!(diffusion_proxy_response_add_header(null_mut(), c("a").as_ptr(), c("b").as_ptr()), 0);
        diffusion_session_factory_http_proxy(null(), null(), 0, null());
        diffusion_session_factory_socks5_proxy(null(), null(), 0, null(), null());
        diffusion_session_factory_proxy_url(null(), null());
        diffusion_session_factory_no_proxy(null());
        let auth = diffusion_proxy_authentication_basic(c("u").as_ptr(), null());
        assert!(!auth.is_null(), "a NULL password is empty");
        diffusion_proxy_authentication_free(auth);
    }
}
