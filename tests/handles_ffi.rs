//! The session handle's lifetime through the C API: freeing and closing inside callbacks, and
//! freeing while a callback runs on another thread.

mod common;

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use common::relay::Relay;
use common::*;
use session::ffi::error::diffusion_error_free;
use session::ffi::reconnect::*;
use session::ffi::session::*;
use session::ffi::types::{DIFFUSION_ERROR_T, ERROR_CODE_T, SESSION_STATE_T};

fn empty_error() -> DIFFUSION_ERROR_T {
    DIFFUSION_ERROR_T { code: ERROR_CODE_T::DIFF_ERR_SUCCESS, message: null_mut(), context: null_mut() }
}

/// What a listener does, and in which state; passed as the session's user context.
struct Plan {
    on: SESSION_STATE_T,
    free: bool,
    saw: AtomicBool,
}

unsafe extern "C" fn act_on_state(session: *mut SESSION_T, _old: SESSION_STATE_T, new: SESSION_STATE_T) {
    let plan = &*(session_get_user_context(session) as *const Plan);
    if new == plan.on && !plan.saw.swap(true, Ordering::SeqCst) {
        if plan.free {
            session_free(session);
        } else {
            session_close(session, null_mut());
        }
    }
}

/// A blocking create whose listener frees or closes the session in `plan.on`: the result and
/// its error code and message.
fn create_with(url: &str, plan: &Plan) -> (*mut SESSION_T, ERROR_CODE_T, String) {
    let url = CString::new(url).unwrap();
    let mut listener = SESSION_LISTENER_T { on_state_changed: Some(act_on_state), on_handler_error: None };
    let mut error = empty_error();
    let context = plan as *const Plan as *mut c_void;
    let session = unsafe {
        session_create_with_user_context(
            url.as_ptr(),
            null(),
            null_mut(),
            &mut listener,
            null_mut(),
            context,
            &mut error,
        )
    };
    let message = if error.message.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(error.message) }.to_string_lossy().into_owned()
    };
    unsafe { diffusion_error_free(&mut error) };
    (session, error.code, message)
}

#[test]
fn a_listener_that_frees_the_session_during_a_blocking_create_gets_null_with_session_closed() {
    let server = start_server();
    // The listener hears nothing before CONNECTED_ACTIVE (the session is CONNECTING from the create).
    for state in [SESSION_STATE_T::CONNECTED_ACTIVE] {
        let plan = Plan { on: state, free: true, saw: AtomicBool::new(false) };
        let (session, code, message) = create_with(&server.url(), &plan);
        assert!(plan.saw.load(Ordering::SeqCst), "the listener saw {state:?}");
        assert!(session.is_null(), "a freed session is not returned ({state:?})");
        assert_eq!(code, ERROR_CODE_T::DIFF_ERR_SESSION_CLOSED, "{state:?}: {message}");
        assert!(message.contains("freed by the application"), "{message}");
    }
}

#[test]
fn a_listener_that_frees_a_failed_session_during_a_blocking_create_gets_the_failure() {
    let plan = Plan { on: SESSION_STATE_T::CLOSED_FAILED, free: true, saw: AtomicBool::new(false) };
    let (session, code, message) = create_with(&format!("ws://127.0.0.1:{}/diffusion", closed_port()), &plan);
    assert!(plan.saw.load(Ordering::SeqCst));
    assert!(session.is_null());
    assert_eq!(code, ERROR_CODE_T::DIFF_ERR_SOCKET_CONNECT_FAIL, "{message}");
}

#[test]
fn a_listener_that_closes_on_connected_active_gets_the_closed_session_from_a_blocking_create() {
    let server = start_server();
    let plan = Plan { on: SESSION_STATE_T::CONNECTED_ACTIVE, free: false, saw: AtomicBool::new(false) };
    let (session, code, message) = create_with(&server.url(), &plan);
    assert!(!session.is_null(), "the listener saw CONNECTED_ACTIVE: {code:?} {message}");
    unsafe {
        assert_eq!(session_state_get(session), SESSION_STATE_T::CLOSED_BY_CLIENT);
        session_free(session);
    }
}

/// What a slow callback saw, passed as the user context.
struct Slow {
    started: AtomicBool,
    finished: AtomicBool,
    context_seen: AtomicBool,
}

unsafe fn slow_callback(session: *mut SESSION_T) {
    let slow = &*(session_get_user_context(session) as *const Slow);
    slow.started.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    // The application frees the session meanwhile: the handle must still be this session's.
    let again = session_get_user_context(session) as *const Slow;
    slow.context_seen.store(std::ptr::eq(again, slow), Ordering::SeqCst);
    slow.finished.store(true, Ordering::SeqCst);
}

unsafe extern "C" fn slow_on_connected(session: *mut SESSION_T) -> i32 {
    slow_callback(session);
    0
}

unsafe extern "C" fn ignore_error(_session: *mut SESSION_T, _error: *mut DIFFUSION_ERROR_T) -> i32 {
    0
}

fn wait_until(flag: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn session_free_waits_for_a_callback_running_on_another_thread() {
    let server = start_server();
    let url = CString::new(server.url()).unwrap();
    let slow = Slow {
        started: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        context_seen: AtomicBool::new(false),
    };
    let mut callbacks =
        SESSION_CREATE_CALLBACK_T { on_connected: Some(slow_on_connected), on_error: Some(ignore_error) };
    let session = unsafe {
        session_create_async_with_user_context(
            url.as_ptr(),
            null(),
            null_mut(),
            null_mut(),
            null_mut(),
            &mut callbacks,
            &slow as *const Slow as *mut c_void,
            null_mut(),
        )
    };
    assert!(!session.is_null());
    wait_until(&slow.started);
    unsafe { session_free(session) };
    assert!(slow.finished.load(Ordering::SeqCst), "session_free returned while on_connected still ran");
    assert!(slow.context_seen.load(Ordering::SeqCst), "the callback saw its session throughout");
}

unsafe extern "C" fn slow_reconnect(session: *mut SESSION_T, _args: *mut c_void) -> RECONNECTION_ATTEMPT_ACTION_T {
    slow_callback(session);
    RECONNECTION_ATTEMPT_ACTION_START
}

#[test]
fn session_free_waits_for_the_reconnection_function() {
    let server = start_server();
    let relay = Relay::start(server.addr());
    let url = CString::new(relay.url("ws", "127.0.0.1")).unwrap();
    let slow = Slow {
        started: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        context_seen: AtomicBool::new(false),
    };
    let strategy = make_reconnection_strategy_user_function(Some(slow_reconnect), null_mut(), None, None);
    let mut error = empty_error();
    let session = unsafe {
        session_create_with_user_context(
            url.as_ptr(),
            null(),
            null_mut(),
            null_mut(),
            strategy,
            &slow as *const Slow as *mut c_void,
            &mut error,
        )
    };
    unsafe { free_reconnection_strategy(strategy) };
    assert!(!session.is_null());
    relay.set_down(true);
    relay.cut();
    wait_until(&slow.started);
    unsafe { session_free(session) };
    assert!(slow.finished.load(Ordering::SeqCst), "session_free returned while the reconnection function ran");
    assert!(slow.context_seen.load(Ordering::SeqCst));
}

static FREED_CONTEXTS: AtomicI32 = AtomicI32::new(0);

unsafe extern "C" fn count_free(_context: *mut c_void) {
    FREED_CONTEXTS.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn ignore_message(
    _session: *mut SESSION_T,
    _path: *const std::ffi::c_char,
    _data: *const c_void,
    _len: usize,
    _context: *mut c_void,
) -> i32 {
    0
}

#[test]
fn every_handler_context_is_released_before_session_free_returns() {
    let server = start_server();
    let url = CString::new(server.url()).unwrap();
    let mut error = empty_error();
    let session = unsafe { session_create(url.as_ptr(), null(), null_mut(), null_mut(), null_mut(), &mut error) };
    assert!(!session.is_null());
    let before = FREED_CONTEXTS.load(Ordering::SeqCst);
    let handler = session::ffi::messaging::SESSION_MESSAGE_HANDLER_T {
        on_message: Some(ignore_message),
        context: null_mut(),
        free_context: Some(count_free),
        on_error: None,
    };
    for path in ["handles/a", "handles/", "handles/a/b"] {
        let path = CString::new(path).unwrap();
        assert_eq!(
            unsafe { session::ffi::messaging::session_subscribe(session, path.as_ptr(), &handler, null_mut()) },
            1
        );
    }
    let topic = CString::new("handles/a").unwrap();
    for _ in 0..100 {
        unsafe { session::ffi::messaging::session_publish(session, topic.as_ptr(), b"x".as_ptr() as _, 1, null_mut()) };
    }
    unsafe { session_free(session) };
    assert_eq!(FREED_CONTEXTS.load(Ordering::SeqCst) - before, 3);
}
