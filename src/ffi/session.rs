//! SESSION_T and the session_* functions.
//!
//! Threading: callbacks of a session run one at a time, in order, on a libsession I/O thread
//! (`libsession-io-*`), with two exceptions: the CLOSED_BY_CLIENT notification runs on the thread
//! that calls `session_close` (or `session_free`), and a blocking create opens the connection on
//! the calling thread, where the listener hears the outcome. `session_close` and
//! `session_free` may be called from inside any callback. Blocking calls (`session_create`,
//! `session_create_with_user_context`) made inside a callback fail with DIFF_ERR_ILLEGAL_STATE
//! instead of deadlocking.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use once_cell::sync::OnceCell;

use super::boundary::{guard, internal_error, optional_str, release_message, report, required_str};
use super::credentials::CREDENTIALS_T;
use super::handle::{
    borrow, clone_shared, copy_of, handles, lent_ptr, release_shared, shared_ptr, to_shared_ptr, UserPointer,
};
use super::reconnect::RECONNECTION_STRATEGY_T;
use super::types::{DIFFUSION_ERROR_T, SESSION_ID_T, SESSION_STATE_T};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::Credentials;
use crate::runtime;
use crate::session::{CreationCallback, Events, Session, SessionConfig, State, StateListener};

/// An open or closed session. Opaque: use the accessor functions.
///
/// Shared: the application's pointer is one reference; every callback running with the session
/// holds another, so the session outlives `session_free` until the last of them has returned.
pub struct SESSION_T {
    session: Session,
    user_context: UserPointer,
    id: OnceCell<SESSION_ID_T>,
    /// Set by `session_free`: the application's reference is gone.
    freed: AtomicBool,
}

/// Receives every state change of a session. The struct is copied at creation; both members may
/// be NULL. Calls allowed inside: see "Calls inside callbacks" at the top of this header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SESSION_LISTENER_T {
    /// Called on every state change, in order, with the old and the new state. A session is
    /// CONNECTING from its create call on, so the first call is from CONNECTING (to
    /// CONNECTED_ACTIVE or a closed state), as the documented transitions say.
    pub on_state_changed:
        Option<unsafe extern "C" fn(session: *mut SESSION_T, old_state: SESSION_STATE_T, new_state: SESSION_STATE_T)>,
    /// Reserved for compatibility; never called.
    pub on_handler_error: Option<unsafe extern "C" fn()>,
}

/// Callbacks of an asynchronous create: exactly one of them runs, once (on_error inside
/// session_close or session_free when the session is closed before it connects). The struct is
/// copied. Calls allowed inside: see "Calls inside callbacks" at the top of this header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SESSION_CREATE_CALLBACK_T {
    /// The session is CONNECTED_ACTIVE. Return HANDLER_SUCCESS.
    pub on_connected: Option<unsafe extern "C" fn(session: *mut SESSION_T) -> c_int>,
    /// The session could not be created (or was closed first). `error` and its message belong to
    /// the library and are valid only during the call. Return HANDLER_SUCCESS.
    pub on_error: Option<unsafe extern "C" fn(session: *mut SESSION_T, error: *mut DIFFUSION_ERROR_T) -> c_int>,
}

handles! {
    Shared: SESSION_T;
    Borrowed: SESSION_LISTENER_T, SESSION_CREATE_CALLBACK_T, SESSION_ID_T;
}

impl SESSION_T {
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }
}

/// How the session's callbacks reach its handle: without keeping it alive between calls (the
/// session owns its callbacks, so a strong reference would be a cycle), and keeping it alive for
/// the length of each call.
#[derive(Clone)]
pub(crate) struct SessionRef(Weak<SESSION_T>);

impl SessionRef {
    /// Runs `call` with the handle's pointer, holding the handle alive meanwhile; does nothing
    /// once the handle is gone (no callback of a freed session starts).
    pub(crate) fn with<R>(&self, call: impl FnOnce(*mut SESSION_T) -> R) -> Option<R> {
        let handle = self.0.upgrade()?;
        Some(call(shared_ptr(&handle)))
    }

    /// The reference of a live handle, for a callback registered on it.
    pub(crate) fn to(handle: &Arc<SESSION_T>) -> SessionRef {
        SessionRef(Arc::downgrade(handle))
    }
}

/// A reference to no handle (for a strategy that no session uses yet): its callbacks never run.
impl Default for SessionRef {
    fn default() -> Self {
        SessionRef(Weak::new())
    }
}

/// What a create call needs besides its callbacks.
pub(crate) struct CreateArgs {
    pub(crate) config: SessionConfig,
    pub(crate) listener: Option<SESSION_LISTENER_T>,
    pub(crate) user_context: UserPointer,
    /// A C reconnection strategy (a copy); `None` keeps the configuration's.
    pub(crate) reconnection: Option<RECONNECTION_STRATEGY_T>,
}

unsafe fn create_args(
    url: *const c_char,
    principal: *const c_char,
    credentials: *mut CREDENTIALS_T,
    listener: *mut SESSION_LISTENER_T,
    reconnection: *mut RECONNECTION_STRATEGY_T,
    user_context: *mut c_void,
) -> Result<CreateArgs> {
    let mut config = SessionConfig::new(required_str(url, "url")?)?;
    config.options.principal = optional_str(principal, "principal")?.unwrap_or_default().to_string();
    config.options.credentials = borrow(credentials).map(|c| c.inner.clone()).unwrap_or(Credentials::None);
    Ok(CreateArgs {
        config,
        listener: copy_of(listener),
        user_context: UserPointer::new(user_context),
        reconnection: borrow(reconnection).cloned(),
    })
}

fn state_listener(listener: Option<SESSION_LISTENER_T>, handle: SessionRef) -> Option<StateListener> {
    let on_state_changed = listener?.on_state_changed?;
    Some(Box::new(move |old: State, new: State| {
        // SAFETY: the caller's function, with a handle kept alive during the call.
        handle.with(|session| unsafe { on_state_changed(session, old.into(), new.into()) });
    }))
}

fn creation_callback(callbacks: SESSION_CREATE_CALLBACK_T, handle: SessionRef) -> CreationCallback {
    Box::new(move |result: Result<()>| match result {
        Ok(()) => {
            if let Some(on_connected) = callbacks.on_connected {
                // SAFETY: the caller's function, with a handle kept alive during the call.
                handle.with(|session| unsafe { on_connected(session) });
            }
        }
        Err(e) => {
            if let Some(on_error) = callbacks.on_error {
                let mut error = DIFFUSION_ERROR_T::from_error(&e);
                // SAFETY: as above; `error` lives across the call and is released after it.
                handle.with(|session| unsafe { on_error(session, &mut error) });
                // SAFETY: our own struct, whose message came from malloc.
                unsafe { release_message(&mut error) };
            }
        }
    })
}

thread_local! {
    static LAST_CREATE_ERROR: std::cell::RefCell<Option<Error>> = const { std::cell::RefCell::new(None) };
}

/// Allocates the handle and starts the session; with no `callbacks` (a blocking create), waits
/// for the outcome and releases the handle on failure. Records the outcome for
/// `session_last_error`. `args` runs inside the panic guard too.
pub(crate) fn create(
    args: impl FnOnce() -> Result<CreateArgs>,
    callbacks: Option<SESSION_CREATE_CALLBACK_T>,
) -> Result<*mut SESSION_T> {
    let result = guard(Err(internal_error()), || start(args(), callbacks));
    LAST_CREATE_ERROR.with(|last| *last.borrow_mut() = result.as_ref().err().cloned());
    result
}

fn start(args: Result<CreateArgs>, callbacks: Option<SESSION_CREATE_CALLBACK_T>) -> Result<*mut SESSION_T> {
    let args = args?;
    let blocking = callbacks.is_none();
    if blocking && runtime::on_io_thread() {
        return Err(Error::illegal_state(
            "a blocking session create was called from a libsession callback, where it would deadlock; \
             use the asynchronous create",
        ));
    }
    let handle = Arc::new_cyclic(|me: &Weak<SESSION_T>| {
        let mut config = args.config;
        if let Some(reconnection) = &args.reconnection {
            config.options.reconnection = reconnection.strategy(SessionRef(me.clone()));
        }
        SESSION_T {
            session: Session::new(config),
            user_context: args.user_context,
            id: OnceCell::new(),
            freed: AtomicBool::new(false),
        }
    });
    let me = SessionRef::to(&handle);
    let events = Events {
        on_state_changed: state_listener(args.listener, me.clone()),
        on_created: callbacks.map(|c| creation_callback(c, me)),
    };
    // The application's reference, from now on reachable by the callbacks; `handle` is ours.
    let ptr = to_shared_ptr(handle.clone());
    let outcome = if blocking { handle.session.start_and_wait(events) } else { handle.session.start(events) };
    if handle.freed.load(Ordering::Acquire) {
        // A callback freed the session before this call returned: nothing to return. A failure
        // that closed the session says more than the free that followed it.
        return Err(match outcome {
            Err(e) if e.code() != ErrorCode::SessionClosed => e,
            _ => Error::new(
                ErrorCode::SessionClosed,
                "the session was freed by the application (session_free in a callback) during session_create",
            ),
        });
    }
    match outcome {
        Ok(()) => Ok(ptr),
        Err(e) => {
            // SAFETY: the application's reference, which it never received.
            drop(unsafe { release_shared(ptr) });
            Err(e)
        }
    }
}

/// Returns the session, or NULL after filling `*error` (when not NULL).
pub(crate) unsafe fn session_or_report(
    created: Result<*mut SESSION_T>,
    error: *mut DIFFUSION_ERROR_T,
) -> *mut SESSION_T {
    created.unwrap_or_else(|e| {
        report(error, &e);
        std::ptr::null_mut()
    })
}

/// Opens a session and blocks until it is CONNECTED_ACTIVE or has failed.
///
/// - `url_str`: `ws://host[:port][/path]`; required.
/// - `principal`: NULL or "" for anonymous. `credentials`: NULL for none; copied.
/// - `listener`: NULL or a listener, copied. The connection is opened on the calling thread, so
///   the listener hears the outcome there; later calls run on a libsession I/O thread.
/// - `reconnection_strategy`: NULL for the default (reconnect every 5 s for up to 60 s); copied.
/// - `error`: NULL or a struct filled on failure (free `error->message` with `free`).
///
/// Returns the connected session, owned by the caller (`session_close` then `session_free`), or
/// NULL on failure. Once the listener has seen CONNECTED_ACTIVE, the session is returned even if a
/// callback closed it since; if a callback freed it, NULL with DIFF_ERR_SESSION_CLOSED (or the
/// failure that had closed it). Called from inside a libsession callback (but the reconnection
/// function) it fails with DIFF_ERR_ILLEGAL_STATE.
#[no_mangle]
pub unsafe extern "C" fn session_create(
    url_str: *const c_char,
    principal: *const c_char,
    credentials: *mut CREDENTIALS_T,
    listener: *mut SESSION_LISTENER_T,
    reconnection_strategy: *mut RECONNECTION_STRATEGY_T,
    error: *mut DIFFUSION_ERROR_T,
) -> *mut SESSION_T {
    session_create_with_user_context(
        url_str,
        principal,
        credentials,
        listener,
        reconnection_strategy,
        std::ptr::null_mut(),
        error,
    )
}

/// As `session_create`, storing `user_context` for `session_get_user_context`.
/// The library never dereferences `user_context`.
#[no_mangle]
pub unsafe extern "C" fn session_create_with_user_context(
    url_str: *const c_char,
    principal: *const c_char,
    credentials: *mut CREDENTIALS_T,
    listener: *mut SESSION_LISTENER_T,
    reconnection_strategy: *mut RECONNECTION_STRATEGY_T,
    user_context: *mut c_void,
    error: *mut DIFFUSION_ERROR_T,
) -> *mut SESSION_T {
    let args = || create_args(url_str, principal, credentials, listener, reconnection_strategy, user_context);
    session_or_report(create(args, None), error)
}

/// Starts opening a session and returns at once.
///
/// Exactly one of `callbacks->on_connected` / `callbacks->on_error` runs later, on a libsession
/// I/O thread (or inside `session_close` if the session is closed before it connects). Arguments
/// as for `session_create`; `callbacks` is required and copied.
///
/// Returns the session handle, owned by the caller (`session_close` then `session_free`), or NULL
/// with `*error` filled when the arguments are invalid (no callback runs then) or when a callback
/// freed the session before this call returned (DIFF_ERR_SESSION_CLOSED; the callbacks ran).
/// A callback that frees the session makes the returned handle invalid too.
#[no_mangle]
pub unsafe extern "C" fn session_create_async(
    url_str: *const c_char,
    principal: *const c_char,
    credentials: *mut CREDENTIALS_T,
    listener: *mut SESSION_LISTENER_T,
    reconnection_strategy: *mut RECONNECTION_STRATEGY_T,
    callbacks: *mut SESSION_CREATE_CALLBACK_T,
    error: *mut DIFFUSION_ERROR_T,
) -> *mut SESSION_T {
    session_create_async_with_user_context(
        url_str,
        principal,
        credentials,
        listener,
        reconnection_strategy,
        callbacks,
        std::ptr::null_mut(),
        error,
    )
}

/// As `session_create_async`, storing `user_context` for `session_get_user_context`.
#[no_mangle]
pub unsafe extern "C" fn session_create_async_with_user_context(
    url_str: *const c_char,
    principal: *const c_char,
    credentials: *mut CREDENTIALS_T,
    listener: *mut SESSION_LISTENER_T,
    reconnection_strategy: *mut RECONNECTION_STRATEGY_T,
    callbacks: *mut SESSION_CREATE_CALLBACK_T,
    user_context: *mut c_void,
    error: *mut DIFFUSION_ERROR_T,
) -> *mut SESSION_T {
    let args = || create_args(url_str, principal, credentials, listener, reconnection_strategy, user_context);
    let created = match copy_of(callbacks) {
        Some(callbacks) => create(args, Some(callbacks)),
        None => create(|| Err(Error::illegal_argument("callbacks is NULL")), None),
    };
    session_or_report(created, error)
}

/// Closes the session. The listener sees CLOSED_BY_CLIENT on the calling thread before this
/// returns. If a callback of the session is running on another thread, this waits for it to
/// return; after this returns, no other callback of the session starts. A connected session
/// first sends what was published and makes sure the server has handled it (this waits up to
/// 1 s in all when called outside the session's callbacks). Closing a closed session does nothing
/// and succeeds. May be called from any thread, inside any callback.
///
/// Returns 1 on success, 0 with `*error` filled (when not NULL) if `session` is NULL.
#[no_mangle]
pub unsafe extern "C" fn session_close(session: *mut SESSION_T, error: *mut DIFFUSION_ERROR_T) -> c_int {
    guard(0, || {
        // Our own reference: a callback run by close may free the application's.
        let Some(handle) = clone_shared(session) else {
            report(error, &Error::illegal_argument("session is NULL"));
            return 0;
        };
        handle.session.close();
        1
    })
}

/// Releases the application's reference to the session, closing it first if it is open (as
/// `session_close`: waits for a callback of the session running on another thread). After this
/// returns no callback of the session starts, and the pointer must not be used again. Callbacks
/// already running on the calling thread (when called from inside one) keep the session valid
/// until they return. May be called from any thread, inside any callback; inside a callback of a
/// blocking create, that create then returns NULL. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn session_free(session: *mut SESSION_T) {
    guard((), || {
        let Some(handle) = clone_shared(session) else {
            return;
        };
        if handle.freed.swap(true, Ordering::AcqRel) {
            // Freed already, by a callback whose create or caller still holds the session.
            return;
        }
        handle.session.close();
        drop(release_shared(session));
    })
}

/// The session's current state: CONNECTING from its create call on (also for a session still
/// being created asynchronously), SESSION_STATE_UNKNOWN for NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn session_state_get(session: *mut SESSION_T) -> SESSION_STATE_T {
    guard(SESSION_STATE_T::SESSION_STATE_UNKNOWN, || match borrow(session) {
        Some(handle) => handle.session.state().into(),
        None => SESSION_STATE_T::SESSION_STATE_UNKNOWN,
    })
}

/// The state's name ("CONNECTED_ACTIVE", ...); declared in the header with a SESSION_STATE_T
/// parameter (see cbindgen.toml). Taking the int here keeps values outside the enum defined.
#[no_mangle]
pub extern "C" fn session_state_as_string(state: c_int) -> *const c_char {
    use SESSION_STATE_T::*;
    let name: &'static [u8] = match state {
        s if s == CONNECTING as c_int => b"CONNECTING\0",
        s if s == CONNECTED_INITIALISING as c_int => b"CONNECTED_INITIALISING\0",
        s if s == CONNECTED_ACTIVE as c_int => b"CONNECTED_ACTIVE\0",
        s if s == RECOVERING_RECONNECT as c_int => b"RECOVERING_RECONNECT\0",
        s if s == RECOVERING_FAILOVER as c_int => b"RECOVERING_FAILOVER\0",
        s if s == CLOSED_BY_CLIENT as c_int => b"CLOSED_BY_CLIENT\0",
        s if s == CLOSED_BY_SERVER as c_int => b"CLOSED_BY_SERVER\0",
        s if s == CLOSED_FAILED as c_int => b"CLOSED_FAILED\0",
        _ => b"UNKNOWN\0",
    };
    name.as_ptr() as *const c_char
}

fn state_is(session: *const SESSION_T, test: fn(State) -> bool) -> c_int {
    // SAFETY: `session` is NULL or a live handle, per the API contract.
    guard(0, || unsafe { borrow(session) }.is_some_and(|h| test(h.session.state())) as c_int)
}

/// 1 if the session is CONNECTED_ACTIVE, else 0 (also for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn session_is_connected(session: *const SESSION_T) -> c_int {
    state_is(session, |s| s == State::ConnectedActive)
}

/// 1 if the session is RECOVERING_RECONNECT, else 0 (also for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn session_is_recovering(session: *const SESSION_T) -> c_int {
    state_is(session, |s| s == State::RecoveringReconnect)
}

/// 1 if the session is in a closed state, else 0 (also for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn session_is_closed(session: *const SESSION_T) -> c_int {
    state_is(session, State::is_closed)
}

/// The session's id, or NULL before the server has assigned one (or for a NULL session).
/// The pointer stays valid until `session_free`; do not free it.
#[no_mangle]
pub unsafe extern "C" fn session_get_id(session: *const SESSION_T) -> *const SESSION_ID_T {
    guard(std::ptr::null(), || {
        let Some(handle) = borrow(session) else {
            return std::ptr::null();
        };
        let Some(id) = handle.session.id() else {
            return std::ptr::null();
        };
        lent_ptr(handle.id.get_or_init(|| (*id).into()))
    })
}

/// The `user_context` given at creation (NULL if none, or for a NULL session).
#[no_mangle]
pub unsafe extern "C" fn session_get_user_context(session: *const SESSION_T) -> *mut c_void {
    guard(std::ptr::null_mut(), || borrow(session).map_or(std::ptr::null_mut(), |h| h.user_context.get()))
}

/// Fills `*error` with the reason the session closed (CLOSED_FAILED or CLOSED_BY_SERVER).
///
/// Returns 1 and fills `*error` (free `error->message`) when there is such a reason; returns 0 and
/// leaves `*error` untouched when the session is open or was closed by the client, or when either
/// argument is NULL.
#[no_mangle]
pub unsafe extern "C" fn session_get_error(session: *const SESSION_T, error: *mut DIFFUSION_ERROR_T) -> c_int {
    guard(0, || {
        let (Some(handle), false) = (borrow(session), error.is_null()) else {
            return 0;
        };
        match handle.session.error() {
            Some(e) => {
                report(error, &e);
                1
            }
            None => 0,
        }
    })
}

/// Fills `*error` with why the most recent session create call on this thread returned NULL
/// (`session_create*`, including the factory forms, which have no error parameter).
///
/// Returns 1 and fills `*error` (free `error->message`) when that call failed; returns 0 and
/// leaves `*error` untouched when it succeeded, when there was none, or when `error` is NULL.
#[no_mangle]
pub unsafe extern "C" fn session_last_error(error: *mut DIFFUSION_ERROR_T) -> c_int {
    guard(0, || {
        if error.is_null() {
            return 0;
        }
        LAST_CREATE_ERROR.with(|last| match last.borrow().as_ref() {
            Some(e) => {
                report(error, e);
                1
            }
            None => 0,
        })
    })
}

/// Formats a session id as 32 hex digits, `server_instance-value`.
///
/// Returns a string from malloc for the caller to `free()`, or NULL when `session_id` is NULL.
#[no_mangle]
pub unsafe extern "C" fn session_id_to_string(session_id: *const SESSION_ID_T) -> *mut c_char {
    guard(std::ptr::null_mut(), || match borrow(session_id) {
        Some(id) => super::boundary::malloc_string(&format!("{:016x}-{:016x}", id.server_instance, id.value)),
        None => std::ptr::null_mut(),
    })
}
