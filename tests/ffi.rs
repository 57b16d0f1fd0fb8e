//! The C boundary, called from Rust exactly as C would call it.

mod common;

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use session::ffi::credentials::*;
use session::ffi::error::diffusion_error_free;
use session::ffi::session::*;
use session::ffi::types::{DIFFUSION_ERROR_T, ERROR_CODE_T, SESSION_STATE_T};

fn empty_error() -> DIFFUSION_ERROR_T {
    DIFFUSION_ERROR_T { code: ERROR_CODE_T::DIFF_ERR_SUCCESS, message: null_mut(), context: null_mut() }
}

fn message(error: &DIFFUSION_ERROR_T) -> String {
    assert!(!error.message.is_null());
    unsafe { CStr::from_ptr(error.message) }.to_string_lossy().into_owned()
}

/// session_create with a URL; returns the session or the error.
fn create(
    url: &CStr,
    principal: *const c_char,
    creds: *mut CREDENTIALS_T,
) -> Result<*mut SESSION_T, (ERROR_CODE_T, String)> {
    let mut error = empty_error();
    let session = unsafe { session_create(url.as_ptr(), principal, creds, null_mut(), null_mut(), &mut error) };
    if session.is_null() {
        let text = message(&error);
        unsafe { diffusion_error_free(&mut error) };
        assert!(error.message.is_null());
        Err((error.code, text))
    } else {
        Ok(session)
    }
}

/// session_create_async with only a URL and callbacks.
unsafe fn create_async(url: *const c_char, callbacks: &mut SESSION_CREATE_CALLBACK_T) -> *mut SESSION_T {
    session_create_async(url, null(), null_mut(), null_mut(), null_mut(), callbacks, null_mut())
}

fn url_of(server: &session_server::ServerHandle) -> CString {
    CString::new(server.url()).unwrap()
}

#[test]
fn create_close_free_with_password_credentials() {
    let server = start_server();
    let principal = CString::new(USER).unwrap();
    let password = CString::new(PASSWORD).unwrap();
    unsafe {
        let creds = credentials_create_password(password.as_ptr());
        let session = create(&url_of(&server), principal.as_ptr(), creds).unwrap();
        credentials_free(creds);
        assert_eq!(session_state_get(session), SESSION_STATE_T::CONNECTED_ACTIVE);
        assert_eq!(session_is_connected(session), 1);
        let id = session_get_id(session);
        assert!(!id.is_null());
        let text = session_id_to_string(id);
        assert_eq!(CStr::from_ptr(text).to_bytes().len(), 33);
        libc::free(text as *mut _);
        assert_eq!(session_close(session, null_mut()), 1);
        assert_eq!(session_is_closed(session), 1);
        assert_eq!(session_state_get(session), SESSION_STATE_T::CLOSED_BY_CLIENT);
        assert_eq!(session_close(session, null_mut()), 1, "closing twice is harmless");
        session_free(session);
    }
}

#[test]
fn wrong_password_is_authentication_failed_and_the_message_is_malloced() {
    let server = start_server();
    let principal = CString::new(USER).unwrap();
    let password = CString::new("not-the-password-42").unwrap();
    unsafe {
        let creds = credentials_create_password(password.as_ptr());
        let mut error = empty_error();
        let session =
            session_create(url_of(&server).as_ptr(), principal.as_ptr(), creds, null_mut(), null_mut(), &mut error);
        credentials_free(creds);
        assert!(session.is_null());
        assert_eq!(error.code, ERROR_CODE_T::DIFF_ERR_AUTHENTICATION_FAILED);
        assert!(!message(&error).contains("not-the-password-42"));
        libc::free(error.message as *mut _); // as the vendor's examples do
    }
}

#[test]
fn url_errors_name_the_bad_part() {
    let cases: [(&str, ERROR_CODE_T, &str); 3] = [
        ("http://127.0.0.1:1", ERROR_CODE_T::DIFF_ERR_UNKNOWN_TRANSPORT, "http"),
        ("ws://127.0.0.1:1/bad", ERROR_CODE_T::DIFF_ERR_PARSE_URL, "/bad"),
        ("nonsense", ERROR_CODE_T::DIFF_ERR_PARSE_URL, "nonsense"),
    ];
    for (url, code, part) in cases {
        let (got, text) = create(&CString::new(url).unwrap(), null(), null_mut()).unwrap_err();
        assert_eq!(got, code, "{url}");
        assert!(text.contains(part), "{url}: {text}");
    }
}

#[test]
fn null_and_invalid_arguments_are_illegal_argument_errors() {
    unsafe {
        let mut error = empty_error();
        assert!(session_create(null(), null(), null_mut(), null_mut(), null_mut(), &mut error).is_null());
        assert_eq!(error.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_error_free(&mut error);

        let bad_utf8 = [b'w', b's', b':', b'/', b'/', 0xff, 0];
        assert!(session_create(
            bad_utf8.as_ptr() as *const c_char,
            null(),
            null_mut(),
            null_mut(),
            null_mut(),
            &mut error
        )
        .is_null());
        assert_eq!(error.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        assert!(message(&error).contains("UTF-8"));
        diffusion_error_free(&mut error);

        let url = CString::new("ws://127.0.0.1:1").unwrap();
        assert!(session_create_async(url.as_ptr(), null(), null_mut(), null_mut(), null_mut(), null_mut(), &mut error)
            .is_null());
        assert_eq!(error.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_error_free(&mut error);

        assert_eq!(session_close(null_mut(), &mut error), 0);
        assert_eq!(error.code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT);
        diffusion_error_free(&mut error);
        diffusion_error_free(&mut error);
        diffusion_error_free(null_mut());

        // A NULL error pointer is allowed everywhere.
        assert!(session_create(null(), null(), null_mut(), null_mut(), null_mut(), null_mut()).is_null());
    }
}

#[test]
fn accessors_accept_null() {
    unsafe {
        assert_eq!(session_state_get(null_mut()), SESSION_STATE_T::SESSION_STATE_UNKNOWN);
        assert_eq!(session_is_connected(null()), 0);
        assert_eq!(session_is_recovering(null()), 0);
        assert_eq!(session_is_closed(null()), 0);
        assert!(session_get_id(null()).is_null());
        assert!(session_get_user_context(null()).is_null());
        assert!(session_id_to_string(null()).is_null());
        assert_eq!(session_get_error(null(), null_mut()), 0);
        session_free(null_mut());
        credentials_free(null_mut());
        assert!(credentials_create_password(null()).is_null());
        assert!(credentials_create_custom(null(), 4).is_null());
        let empty = credentials_create_custom(null(), 0);
        assert!(!empty.is_null());
        credentials_free(empty);
        let none = credentials_create_none();
        credentials_free(none);
    }
}

#[test]
fn state_names_match_the_c_enum() {
    let name = |s: SESSION_STATE_T| {
        unsafe { CStr::from_ptr(session_state_as_string(s as c_int)) }.to_str().unwrap().to_string()
    };
    assert_eq!(name(SESSION_STATE_T::CONNECTED_ACTIVE), "CONNECTED_ACTIVE");
    assert_eq!(name(SESSION_STATE_T::CLOSED_FAILED), "CLOSED_FAILED");
    assert_eq!(name(SESSION_STATE_T::SESSION_STATE_UNKNOWN), "UNKNOWN");
    let out_of_range = unsafe { CStr::from_ptr(session_state_as_string(99)) };
    assert_eq!(out_of_range.to_str().unwrap(), "UNKNOWN");
    assert_eq!(SESSION_STATE_T::CLOSED_FAILED as i32, 7);
    assert_eq!(ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT as i32, 48);
    assert_eq!(ERROR_CODE_T::DIFF_ERR_REQUEST_TIME_OUT as i32, 102);
}

#[test]
fn user_context_is_returned_unchanged() {
    let server = start_server();
    let mut marker = 42u32;
    let context = &mut marker as *mut u32 as *mut libc::c_void;
    unsafe {
        let session = session_create_with_user_context(
            url_of(&server).as_ptr(),
            null(),
            null_mut(),
            null_mut(),
            null_mut(),
            context,
            null_mut(),
        );
        assert!(!session.is_null());
        assert_eq!(session_get_user_context(session), context);
        session_free(session);
    }
}

#[test]
fn server_close_is_reported_through_session_get_error() {
    let server = start_server();
    unsafe {
        let session = create(&url_of(&server), null(), null_mut()).unwrap();
        let mut error = empty_error();
        assert_eq!(session_get_error(session, &mut error), 0);
        server.close_all(session::protocol::CloseReason::ClosedByServer, "bye now");
        let start = Instant::now();
        while session_is_closed(session) == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(session_state_get(session), SESSION_STATE_T::CLOSED_BY_SERVER);
        assert_eq!(session_get_error(session, &mut error), 1);
        assert_eq!(error.code, ERROR_CODE_T::DIFF_ERR_SESSION_CLOSED);
        assert!(message(&error).contains("bye now"));
        diffusion_error_free(&mut error);
        session_free(session);
    }
}

// --- callbacks -------------------------------------------------------------------------------

static CONNECTED: AtomicUsize = AtomicUsize::new(0);
static ERRORS: AtomicUsize = AtomicUsize::new(0);
static LAST_ERROR: Mutex<Option<ERROR_CODE_T>> = Mutex::new(None);

unsafe extern "C" fn count_connected(session: *mut SESSION_T) -> c_int {
    assert_eq!(session_state_get(session), SESSION_STATE_T::CONNECTED_ACTIVE);
    CONNECTED.fetch_add(1, Ordering::SeqCst);
    0
}

unsafe extern "C" fn count_error(_session: *mut SESSION_T, error: *mut DIFFUSION_ERROR_T) -> c_int {
    *LAST_ERROR.lock().unwrap() = Some((*error).code);
    ERRORS.fetch_add(1, Ordering::SeqCst);
    0
}

// The async tests share counters, so they run in one test, one after the other.
#[test]
fn async_create_calls_exactly_one_callback() {
    let server = start_server();
    let mut callbacks = SESSION_CREATE_CALLBACK_T { on_connected: Some(count_connected), on_error: Some(count_error) };
    unsafe {
        let session = create_async(url_of(&server).as_ptr(), &mut callbacks);
        assert!(!session.is_null());
        assert!(wait_until(Duration::from_secs(5), || CONNECTED.load(Ordering::SeqCst) == 1));
        session_close(session, null_mut());
        session_free(session);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!((CONNECTED.load(Ordering::SeqCst), ERRORS.load(Ordering::SeqCst)), (1, 0));

        let refused = CString::new(format!("ws://127.0.0.1:{}", closed_port())).unwrap();
        let session = create_async(refused.as_ptr(), &mut callbacks);
        assert!(!session.is_null(), "the handle is returned even though creation will fail");
        assert!(wait_until(Duration::from_secs(5), || ERRORS.load(Ordering::SeqCst) == 1));
        assert_eq!(*LAST_ERROR.lock().unwrap(), Some(ERROR_CODE_T::DIFF_ERR_SOCKET_CONNECT_FAIL));
        assert_eq!(session_state_get(session), SESSION_STATE_T::CLOSED_FAILED);
        session_free(session);
        assert_eq!(CONNECTED.load(Ordering::SeqCst), 1);
    }
}

static REENTRANT_RESULT: Mutex<Option<ERROR_CODE_T>> = Mutex::new(None);

unsafe extern "C" fn create_inside_callback(session: *mut SESSION_T) -> c_int {
    let url = CString::new("ws://127.0.0.1:1").unwrap();
    let mut error =
        DIFFUSION_ERROR_T { code: ERROR_CODE_T::DIFF_ERR_SUCCESS, message: null_mut(), context: null_mut() };
    let nested = session_create(url.as_ptr(), null(), null_mut(), null_mut(), null_mut(), &mut error);
    assert!(nested.is_null());
    *REENTRANT_RESULT.lock().unwrap() = Some(error.code);
    diffusion_error_free(&mut error);
    // Closing and freeing the session from inside its own callback must not deadlock.
    session_close(session, null_mut());
    session_free(session);
    0
}

#[test]
fn blocking_create_inside_a_callback_is_illegal_state_and_close_free_inside_work() {
    let server = start_server();
    let mut callbacks = SESSION_CREATE_CALLBACK_T { on_connected: Some(create_inside_callback), on_error: None };
    unsafe {
        let session = create_async(url_of(&server).as_ptr(), &mut callbacks);
        assert!(!session.is_null());
    }
    assert!(wait_until(Duration::from_secs(5), || REENTRANT_RESULT.lock().unwrap().is_some()));
    assert_eq!(*REENTRANT_RESULT.lock().unwrap(), Some(ERROR_CODE_T::DIFF_ERR_ILLEGAL_STATE));
    assert!(wait_until(Duration::from_secs(5), || server.session_count() == 0));
}

static LISTENED: Mutex<Vec<(SESSION_STATE_T, SESSION_STATE_T)>> = Mutex::new(Vec::new());

unsafe extern "C" fn record_and_free_on_close(session: *mut SESSION_T, old: SESSION_STATE_T, new: SESSION_STATE_T) {
    LISTENED.lock().unwrap().push((old, new));
    if new == SESSION_STATE_T::CONNECTED_ACTIVE {
        // Freeing inside the listener closes the session and reports CLOSED_BY_CLIENT re-entrantly.
        session_free(session);
    }
}

#[test]
fn the_listener_may_free_its_session() {
    let server = start_server();
    let mut listener = SESSION_LISTENER_T { on_state_changed: Some(record_and_free_on_close), on_handler_error: None };
    let mut callbacks = SESSION_CREATE_CALLBACK_T { on_connected: None, on_error: None };
    unsafe {
        let session = session_create_async(
            url_of(&server).as_ptr(),
            null(),
            null_mut(),
            &mut listener,
            null_mut(),
            &mut callbacks,
            null_mut(),
        );
        assert!(!session.is_null());
    }
    assert!(wait_until(Duration::from_secs(5), || LISTENED.lock().unwrap().len() == 2));
    use SESSION_STATE_T::*;
    assert_eq!(*LISTENED.lock().unwrap(), vec![(CONNECTING, CONNECTED_ACTIVE), (CONNECTED_ACTIVE, CLOSED_BY_CLIENT)]);
}

unsafe extern "C" fn close_when_connected(session: *mut SESSION_T, _old: SESSION_STATE_T, new: SESSION_STATE_T) {
    if new == SESSION_STATE_T::CONNECTED_ACTIVE {
        session_close(session, null_mut());
    }
}

#[test]
fn a_listener_closing_its_session_during_a_blocking_create_ends_the_create_at_once() {
    // The connection is opened on the calling thread, so the close must not wait for it to flush.
    // What the create returns agrees with what the listener saw: CONNECTED_ACTIVE, so the session.
    let server = start_server();
    let mut listener = SESSION_LISTENER_T { on_state_changed: Some(close_when_connected), on_handler_error: None };
    let mut error = empty_error();
    let start = std::time::Instant::now();
    let session =
        unsafe { session_create(url_of(&server).as_ptr(), null(), null_mut(), &mut listener, null_mut(), &mut error) };
    assert!(!session.is_null());
    assert!(start.elapsed() < Duration::from_millis(900), "took {:?}", start.elapsed());
    unsafe {
        assert_eq!(session_state_get(session), SESSION_STATE_T::CLOSED_BY_CLIENT);
        session_free(session);
    }
    assert!(wait_until(Duration::from_secs(5), || server.session_count() == 0));
}

#[test]
fn a_principal_too_long_for_the_protocol_is_refused_at_create_not_cut_short() {
    let server = start_server();
    let principal = CString::new("p".repeat(70_000)).unwrap();
    let (code, text) = create(&url_of(&server), principal.as_ptr(), null_mut()).unwrap_err();
    assert_eq!(code, ERROR_CODE_T::DIFF_ERR_ILLEGAL_ARGUMENT, "{text}");
    assert!(text.contains("principal has 70000 bytes"), "{text}");
}

static HEARD: Mutex<Vec<(SESSION_STATE_T, SESSION_STATE_T)>> = Mutex::new(Vec::new());

unsafe extern "C" fn hear(_session: *mut SESSION_T, old: SESSION_STATE_T, new: SESSION_STATE_T) {
    HEARD.lock().unwrap().push((old, new));
}

#[test]
fn an_async_create_is_connecting_at_once_and_the_listener_hears_nothing_before_the_outcome() {
    // A peer that accepts and never answers: the session stays CONNECTING.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = CString::new(format!("ws://127.0.0.1:{}/diffusion", silent.local_addr().unwrap().port())).unwrap();
    let mut listener = SESSION_LISTENER_T { on_state_changed: Some(hear), on_handler_error: None };
    let mut callbacks = SESSION_CREATE_CALLBACK_T { on_connected: None, on_error: None };
    unsafe {
        let session = session_create_async(
            url.as_ptr(),
            null(),
            null_mut(),
            &mut listener,
            null_mut(),
            &mut callbacks,
            null_mut(),
        );
        assert!(!session.is_null());
        assert_eq!(session_state_get(session), SESSION_STATE_T::CONNECTING);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(session_state_get(session), SESSION_STATE_T::CONNECTING);
        assert!(HEARD.lock().unwrap().is_empty(), "heard {:?}", HEARD.lock().unwrap());
        session_close(session, null_mut());
        session_free(session);
    }
    use SESSION_STATE_T::*;
    assert_eq!(*HEARD.lock().unwrap(), vec![(CONNECTING, CLOSED_BY_CLIENT)]);
}
