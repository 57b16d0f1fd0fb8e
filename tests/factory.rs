//! The session factory and retry strategy C API, called from Rust as C would call it.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};
use std::time::Duration;

use common::*;
use session::ffi::credentials::*;
use session::ffi::error::diffusion_error_free;
use session::ffi::factory::*;
use session::ffi::retry::*;
use session::ffi::session::*;
use session::ffi::types::{DIFFUSION_ERROR_T, ERROR_CODE_T};

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

fn last_error() -> (ERROR_CODE_T, String) {
    let mut error =
        DIFFUSION_ERROR_T { code: ERROR_CODE_T::DIFF_ERR_SUCCESS, message: null_mut(), context: null_mut() };
    assert_eq!(unsafe { session_last_error(&mut error) }, 1, "a failure was recorded");
    let text = unsafe { CStr::from_ptr(error.message) }.to_string_lossy().into_owned();
    unsafe { diffusion_error_free(&mut error) };
    (error.code, text)
}

#[test]
fn one_factory_creates_a_hundred_sessions_that_outlive_it() {
    let server = start_server();
    let url = c(&server.url());
    unsafe {
        let factory = diffusion_session_factory_init();
        diffusion_session_factory_principal(factory, c(USER).as_ptr());
        diffusion_session_factory_password(factory, c(PASSWORD).as_ptr());
        let sessions: Vec<*mut SESSION_T> =
            (0..100).map(|_| session_create_with_session_factory(factory, url.as_ptr())).collect();
        assert!(sessions.iter().all(|s| !s.is_null()));
        diffusion_session_factory_free(factory);
        assert!(sessions.iter().all(|s| session_is_connected(*s) == 1));
        assert_eq!(server.session_count(), 100);
        for s in sessions {
            session_close(s, null_mut());
            session_free(s);
        }
    }
}

#[test]
fn changing_the_factory_does_not_affect_sessions_already_created() {
    let server = start_server();
    let url = c(&server.url());
    unsafe {
        let factory = diffusion_session_factory_init();
        diffusion_session_factory_property(factory, c("stage").as_ptr(), c("first").as_ptr());
        let first = session_create_with_session_factory(factory, url.as_ptr());
        diffusion_session_factory_property(factory, c("stage").as_ptr(), c("second").as_ptr());
        diffusion_session_factory_principal(factory, c(USER).as_ptr());
        diffusion_session_factory_password(factory, c("now-wrong").as_ptr());
        assert!(session_create_with_session_factory(factory, url.as_ptr()).is_null());
        assert_eq!(last_error().0, ERROR_CODE_T::DIFF_ERR_AUTHENTICATION_FAILED);
        let sessions = server.sessions();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].properties, vec![("stage".to_string(), "first".to_string())]);
        assert_eq!(sessions[0].principal, "");
        session_free(first);
        diffusion_session_factory_free(factory);
    }
}

#[test]
fn without_a_url_the_factory_builds_one_from_host_port_and_path() {
    let server = start_server_with(|c| c.paths = vec!["/lb/diffusion".into()]);
    unsafe {
        let factory = diffusion_session_factory_init();
        diffusion_session_factory_server_host(factory, c("127.0.0.1").as_ptr());
        diffusion_session_factory_server_port(factory, server.addr().port() as i32);
        diffusion_session_factory_request_path(factory, c("/lb/diffusion").as_ptr());
        let session = session_create_with_session_factory(factory, null());
        assert!(!session.is_null(), "{:?}", last_error());
        session_free(session);

        // A URL wins over the factory's host, port and path.
        let other = start_server();
        let session = session_create_with_session_factory(factory, c(&other.url()).as_ptr());
        assert!(!session.is_null());
        assert_eq!(other.session_count(), 1);
        session_free(session);

        diffusion_session_factory_request_path(factory, c("/not-a-session-path").as_ptr());
        assert!(session_create_with_session_factory(factory, null()).is_null());
        let (code, text) = last_error();
        assert_eq!(code, ERROR_CODE_T::DIFF_ERR_PARSE_URL);
        assert!(text.contains("/not-a-session-path"));

        diffusion_session_factory_server_host(factory, null());
        diffusion_session_factory_request_path(factory, null());
        assert!(session_create_with_session_factory(factory, null()).is_null());
        assert!(last_error().1.contains("server host"));
        diffusion_session_factory_free(factory);
    }
}

#[test]
fn factory_settings_reach_the_session() {
    let server = start_server();
    unsafe {
        let factory = diffusion_session_factory_init();
        let mut marker = 7u8;
        diffusion_session_factory_user_context(factory, &mut marker as *mut u8 as *mut _);
        diffusion_session_factory_property(factory, c("a").as_ptr(), c("1").as_ptr());
        diffusion_session_factory_property(factory, c("b").as_ptr(), c("2").as_ptr());
        diffusion_session_factory_property(factory, c("a").as_ptr(), null());
        let creds = credentials_create_custom(b"\0key".as_ptr() as *const c_char, 4);
        diffusion_session_factory_principal(factory, c("svc").as_ptr());
        diffusion_session_factory_credentials(factory, creds);
        credentials_free(creds);
        let server = start_server_with(|cfg| {
            cfg.custom_credentials.insert("svc".into(), b"\0key".to_vec());
        });
        let session = session_create_with_session_factory(factory, c(&server.url()).as_ptr());
        assert!(!session.is_null(), "{:?}", last_error());
        assert_eq!(session_get_user_context(session), &mut marker as *mut u8 as *mut _);
        assert_eq!(server.sessions()[0].properties, vec![("b".to_string(), "2".to_string())]);
        assert_eq!(server.sessions()[0].principal, "svc");
        session_free(session);
        diffusion_session_factory_free(factory);
    }
    drop(server);
}

#[test]
fn the_factory_connection_timeout_bounds_each_attempt() {
    let port = fake_peer(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    unsafe {
        let factory = diffusion_session_factory_init();
        diffusion_session_factory_connection_timeout(factory, 150);
        let start = std::time::Instant::now();
        let url = c(&format!("ws://127.0.0.1:{port}"));
        assert!(session_create_with_session_factory(factory, url.as_ptr()).is_null());
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(last_error().0, ERROR_CODE_T::DIFF_ERR_REQUEST_TIME_OUT);
        diffusion_session_factory_free(factory);
    }
}

#[test]
fn every_setter_tolerates_null_and_invalid_arguments() {
    let bad_utf8 = [0xffu8, 0];
    let bad = bad_utf8.as_ptr() as *const c_char;
    unsafe {
        for factory in [null_mut(), diffusion_session_factory_init()] {
            diffusion_session_factory_session_listener(factory, null_mut());
            diffusion_session_factory_user_context(factory, null_mut());
            diffusion_session_factory_principal(factory, null());
            diffusion_session_factory_principal(factory, bad);
            diffusion_session_factory_no_credentials(factory);
            diffusion_session_factory_credentials(factory, null());
            diffusion_session_factory_password(factory, null());
            diffusion_session_factory_custom_credentials(factory, null(), 5);
            diffusion_session_factory_connection_timeout(factory, 0);
            diffusion_session_factory_connection_timeout(factory, u32::MAX);
            diffusion_session_factory_write_timeout(factory, 0);
            diffusion_session_factory_initial_retry_strategy(factory, null_mut());
            diffusion_session_factory_reconnection_strategy(factory, null_mut());
            diffusion_session_factory_no_reconnection(factory);
            diffusion_session_factory_reconnection_timeout(factory, -5);
            diffusion_session_factory_maximum_message_size(factory, 10);
            diffusion_session_factory_input_buffer_size(factory, 0);
            diffusion_session_factory_output_buffer_size(factory, 1);
            diffusion_session_factory_maximum_queue_size(factory, 0);
            diffusion_session_factory_recovery_buffer_size(factory, 0);
            diffusion_session_factory_server_host(factory, bad);
            diffusion_session_factory_server_port(factory, -1);
            diffusion_session_factory_server_port(factory, 70_000);
            diffusion_session_factory_secure_transport(factory, false);
            diffusion_session_factory_request_path(factory, null());
            diffusion_session_factory_property(factory, null(), null());
            diffusion_session_factory_property(factory, bad, bad);
            diffusion_session_factory_free(factory);
        }
        assert!(session_create_with_session_factory(null(), null()).is_null());
        assert_eq!(last_error().0, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        let factory = diffusion_session_factory_init();
        assert!(session_create_async_with_session_factory(factory, null_mut(), null()).is_null());
        assert_eq!(last_error().0, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_session_factory_free(factory);
    }
}

#[test]
fn retry_strategy_constructors_validate_and_describe() {
    unsafe {
        let mut api_error: DIFFUSION_API_ERROR = null_mut();
        let s = diffusion_retry_strategy_create(500, 10, &mut api_error);
        assert!(!s.is_null() && api_error.is_null());
        assert_eq!((diffusion_retry_strategy_get_interval(s), diffusion_retry_strategy_get_attempts(s)), (500, 10));
        diffusion_retry_strategy_free(s);

        type Create = unsafe fn(*mut DIFFUSION_API_ERROR) -> *mut DIFFUSION_RETRY_STRATEGY_T;
        let invalid: [Create; 4] = [
            |e| diffusion_retry_strategy_create(0, 10, e),
            |e| diffusion_retry_strategy_create(100, 0, e),
            |e| diffusion_retry_strategy_create_interval_only(0, e),
            |e| diffusion_retry_strategy_create_backoff(100, 50, 3, e),
        ];
        for create in invalid {
            assert!(create(&mut api_error).is_null());
            assert!(!api_error.is_null());
            assert_eq!(get_diffusion_api_error_code(api_error), ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT as i32);
            assert!(!CStr::from_ptr(get_diffusion_api_error_description(api_error)).to_bytes().is_empty());
            diffusion_api_error_free(api_error);
            api_error = null_mut();
        }
        assert!(diffusion_retry_strategy_create(0, 0, null_mut()).is_null());

        let forever = diffusion_retry_strategy_create_interval_only(100, null_mut());
        assert_eq!(diffusion_retry_strategy_get_attempts(forever), u32::MAX);
        diffusion_retry_strategy_free(forever);
        let none = diffusion_retry_strategy_no_retry();
        assert_eq!(diffusion_retry_strategy_get_attempts(none), 0);
        diffusion_retry_strategy_free(none);
        let backoff = diffusion_retry_strategy_create_backoff(100, 5000, 8, null_mut());
        assert_eq!(diffusion_retry_strategy_get_interval(backoff), 100);
        diffusion_retry_strategy_free(backoff);

        assert_eq!(diffusion_retry_strategy_get_interval(null_mut()), 0);
        assert_eq!(get_diffusion_api_error_code(null_mut()), 0);
        assert!(get_diffusion_api_error_description(null_mut()).is_null());
        diffusion_api_error_free(null_mut());
        diffusion_retry_strategy_free(null_mut());
    }
}

#[test]
fn a_retry_strategy_set_on_the_factory_is_copied() {
    let port = closed_port();
    unsafe {
        let factory = diffusion_session_factory_init();
        let strategy = diffusion_retry_strategy_create(30, 2, null_mut());
        diffusion_session_factory_initial_retry_strategy(factory, strategy);
        diffusion_retry_strategy_free(strategy);
        let url = c(&format!("ws://127.0.0.1:{port}"));
        assert!(session_create_with_session_factory(factory, url.as_ptr()).is_null());
        let (code, text) = last_error();
        assert_eq!(code, ERROR_CODE_T::DIFF_ERR_SOCKET_CONNECT_FAIL);
        assert!(text.contains("after 3 attempts"), "{text}");
        diffusion_session_factory_free(factory);
    }
}

static ASYNC_OUTCOMES: std::sync::Mutex<Vec<Result<(), ERROR_CODE_T>>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn async_connected(_session: *mut SESSION_T) -> std::ffi::c_int {
    ASYNC_OUTCOMES.lock().unwrap().push(Ok(()));
    0
}

unsafe extern "C" fn async_failed(_session: *mut SESSION_T, error: *mut DIFFUSION_ERROR_T) -> std::ffi::c_int {
    ASYNC_OUTCOMES.lock().unwrap().push(Err((*error).code));
    0
}

fn wait_for_outcomes(n: usize) -> Vec<Result<(), ERROR_CODE_T>> {
    let start = std::time::Instant::now();
    while ASYNC_OUTCOMES.lock().unwrap().len() < n && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    ASYNC_OUTCOMES.lock().unwrap().clone()
}

// One test, so that the shared outcome list is read in order.
#[test]
fn async_creation_retries_like_sync_and_stops_when_closed() {
    let port = closed_port();
    let mut callbacks = SESSION_CREATE_CALLBACK_T { on_connected: Some(async_connected), on_error: Some(async_failed) };
    unsafe {
        let factory = diffusion_session_factory_init();
        let strategy = diffusion_retry_strategy_create(50, 40, null_mut());
        diffusion_session_factory_initial_retry_strategy(factory, strategy);
        diffusion_retry_strategy_free(strategy);
        let url = c(&format!("ws://127.0.0.1:{port}"));

        // Closed during the retry wait: on_error with SESSION_CLOSED, at once, and nothing after.
        let session = session_create_async_with_session_factory(factory, &mut callbacks, url.as_ptr());
        assert!(!session.is_null());
        std::thread::sleep(Duration::from_millis(120));
        session_close(session, null_mut());
        assert_eq!(wait_for_outcomes(1), vec![Err(ERROR_CODE_T::DIFF_ERR_SESSION_CLOSED)]);
        session_free(session);

        // A server that comes up during the retries is reached.
        let server = start_server_later(port, Duration::from_millis(300));
        let session = session_create_async_with_session_factory(factory, &mut callbacks, url.as_ptr());
        assert_eq!(wait_for_outcomes(2), vec![Err(ERROR_CODE_T::DIFF_ERR_SESSION_CLOSED), Ok(())]);
        assert_eq!(session_is_connected(session), 1);
        session_free(session);
        diffusion_session_factory_free(factory);
        drop(server.join().unwrap());
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ASYNC_OUTCOMES.lock().unwrap().len(), 2, "exactly one callback per creation");
}
