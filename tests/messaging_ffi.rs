//! The messaging and reconnection C API, called from Rust as C would call it.

mod common;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use session::ffi::error::diffusion_error_free;
use session::ffi::messaging::*;
use session::ffi::reconnect::*;
use session::ffi::session::*;
use session::ffi::types::{DIFFUSION_ERROR_T, ERROR_CODE_T};

static RECEIVED: Mutex<Vec<(usize, String, Vec<u8>)>> = Mutex::new(Vec::new());
static FREED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_message(
    session: *mut SESSION_T,
    path: *const c_char,
    data: *const c_void,
    len: usize,
    context: *mut c_void,
) -> c_int {
    assert!(!session.is_null());
    let bytes = std::slice::from_raw_parts(data as *const u8, len).to_vec();
    RECEIVED.lock().unwrap().push((context as usize, CStr::from_ptr(path).to_string_lossy().into_owned(), bytes));
    0
}

unsafe extern "C" fn free_context(_context: *mut c_void) {
    FREED.fetch_add(1, Ordering::SeqCst);
}

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

fn error() -> DIFFUSION_ERROR_T {
    DIFFUSION_ERROR_T { code: ERROR_CODE_T::DIFF_ERR_SUCCESS, message: null_mut(), context: null_mut() }
}

fn wait(n: usize) {
    let start = Instant::now();
    while RECEIVED.lock().unwrap().len() < n && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

// One test: the statics above are shared.
#[test]
fn publish_subscribe_unsubscribe_and_the_context_life_cycle() {
    let server = start_server();
    let url = c(&server.url());
    unsafe {
        let strategy = make_reconnection_strategy_repeating_attempt(5, 100);
        let session = session_create(url.as_ptr(), null(), null_mut(), null_mut(), strategy, null_mut());
        free_reconnection_strategy(strategy);
        assert!(!session.is_null());
        let handler = |context: usize| SESSION_MESSAGE_HANDLER_T {
            on_message: Some(on_message),
            context: context as *mut c_void,
            free_context: Some(free_context),
            on_error: None,
        };
        let mut e = error();
        assert_eq!(session_subscribe(session, c("news/").as_ptr(), &handler(1), &mut e), 1);
        assert_eq!(session_subscribe(session, c("news/").as_ptr(), &handler(2), &mut e), 1);
        assert_eq!(FREED.load(Ordering::SeqCst), 1, "the replaced handler is released");
        let data = b"hello\0world";
        assert_eq!(
            session_publish(session, c("news/today").as_ptr(), data.as_ptr() as *const c_void, data.len(), &mut e),
            1
        );
        wait(1);
        assert_eq!(RECEIVED.lock().unwrap()[0], (2, "news/today".to_string(), data.to_vec()));
        assert_eq!(session_unsubscribe(session, c("news/").as_ptr(), &mut e), 1);
        assert_eq!(FREED.load(Ordering::SeqCst), 2);
        assert_eq!(session_unsubscribe(session, c("news/").as_ptr(), &mut e), 0);
        assert_eq!(e.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_error_free(&mut e);

        // Bad arguments: an error, no crash; a refused handler's context is released at once.
        assert_eq!(session_subscribe(session, null(), &handler(3), &mut e), 0);
        assert_eq!(e.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_error_free(&mut e);
        assert_eq!(FREED.load(Ordering::SeqCst), 3);
        assert_eq!(session_subscribe(session, c("x").as_ptr(), null(), &mut e), 0);
        diffusion_error_free(&mut e);
        assert_eq!(session_publish(session, c("x").as_ptr(), null(), 3, &mut e), 0);
        assert_eq!(e.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_error_free(&mut e);
        assert_eq!(session_publish(null_mut(), c("x").as_ptr(), null(), 0, null_mut()), 0);
        assert_eq!(session_publish(session, c("").as_ptr(), null(), 0, &mut e), 0);
        diffusion_error_free(&mut e);
        assert_eq!(session_unsubscribe(null_mut(), null(), null_mut()), 0);

        // Closing releases the remaining handlers; a closed session refuses to publish.
        assert_eq!(session_subscribe(session, c("kept").as_ptr(), &handler(4), &mut e), 1);
        session_close(session, null_mut());
        assert_eq!(FREED.load(Ordering::SeqCst), 4);
        assert_eq!(session_publish(session, c("kept").as_ptr(), null(), 0, &mut e), 0);
        assert_eq!(e.code, ERROR_CODE_T::DIFF_ERR_SESSION_CLOSED);
        diffusion_error_free(&mut e);
        session_free(session);
        assert_eq!(FREED.load(Ordering::SeqCst), 4, "exactly once");
    }
}

#[test]
fn reconnection_strategy_functions_tolerate_null() {
    unsafe {
        reconnection_strategy_set_timeout(null_mut(), 10);
        free_reconnection_strategy(null_mut());
        assert!(make_reconnection_strategy_repeating_attempt(-5, 0).is_null());
        assert_eq!(RECONNECTION_ATTEMPT_ACTION_START, 0);
        assert_eq!(RECONNECTION_ATTEMPT_ACTION_ABORT, 1);
        assert_eq!(DIFFUSION_DEFAULT_RECONNECT_TIMEOUT, 60_000);
    }
}
