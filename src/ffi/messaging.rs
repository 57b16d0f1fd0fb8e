//! Publishing and subscribing over a session.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::boundary::{bytes, c_string, guard, release_message, report, required_str, with_c_str, OwnedContext};
use super::handle::UserPointer;
use super::handle::{borrow, clone_shared, handles};
use super::session::{SessionRef, SESSION_T};
use super::types::DIFFUSION_ERROR_T;
use crate::error::{Error, Result};
use crate::session::MessageHandler;

/// Receives the messages of a subscription. The struct is copied. Zero-initialise it (`= { 0 }`
/// or designated initialisers) and set the members you use, so that code written before a member
/// was added (such as `on_error`) keeps working. Calls allowed inside `on_message`, `on_error`
/// and `free_context`: see "Calls inside callbacks" at the top of this header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SESSION_MESSAGE_HANDLER_T {
    /// Called for every message on a path the subscription covers, in order, on a libsession I/O
    /// thread (one callback of the session at a time). `path` and `data` are valid during the
    /// call only. Return HANDLER_SUCCESS. Required.
    pub on_message: Option<
        unsafe extern "C" fn(
            session: *mut SESSION_T,
            path: *const c_char,
            data: *const c_void,
            len: usize,
            context: *mut c_void,
        ) -> c_int,
    >,
    /// Passed to every call; never dereferenced by the library.
    pub context: *mut c_void,
    /// Optional: called exactly once with `context` once the handler is no longer used: after
    /// `session_unsubscribe`, a later `session_subscribe` of the same path, the session's close
    /// or free, or at once when `session_subscribe` fails; always after the last call to
    /// `on_message` has returned, and before session_free returns (when session_free is called
    /// inside this handler's own `on_message`, right after that call returns). It runs on the
    /// thread of the call that released the handler. After a refusal (`on_error`) it runs on the
    /// libsession I/O thread right after `on_error` returns.
    pub free_context: Option<unsafe extern "C" fn(context: *mut c_void)>,
    /// Optional: called at most once, on a libsession I/O thread (one callback of the session at
    /// a time), when the server refuses the subscription or later withdraws it because its
    /// permissions changed: `error->code` is DIFF_ERR_ACCESS_DENIED and `error->message` names
    /// the path. `path` is the subscription's path. `path` and `error` are valid during the call
    /// only; the library frees the message. The subscription is then gone (`session_unsubscribe`
    /// of it fails) and `free_context` runs after this returns. NULL: refusals are not reported
    /// to the handler (`free_context` still runs).
    pub on_error: Option<
        unsafe extern "C" fn(
            session: *mut SESSION_T,
            path: *const c_char,
            error: *const DIFFUSION_ERROR_T,
            context: *mut c_void,
        ),
    >,
}

/// A C function told of a refusal, with its path and error (see `SESSION_MESSAGE_HANDLER_T::on_error`
/// and `session_set_error_handler`).
type OnRefused = unsafe extern "C" fn(*mut SESSION_T, *const c_char, *const DIFFUSION_ERROR_T, *mut c_void);

/// Calls `on_error` with `path` and `error` as C values that live across the call.
fn call_on_refused(session: &SessionRef, on_error: OnRefused, path: &str, error: &Error, context: *mut c_void) {
    let path = c_string(path);
    let mut c_error = DIFFUSION_ERROR_T::from_error(error);
    // SAFETY: the caller's function and context, with a handle kept alive during the call;
    // `path` and `c_error` outlive it.
    session.with(|session| unsafe { on_error(session, path.as_ptr(), &c_error, context) });
    // SAFETY: our own struct, whose message came from malloc.
    unsafe { release_message(&mut c_error) };
}

handles! { Borrowed: SESSION_MESSAGE_HANDLER_T; }

struct CMessageHandler {
    on_message: unsafe extern "C" fn(*mut SESSION_T, *const c_char, *const c_void, usize, *mut c_void) -> c_int,
    on_error: Option<OnRefused>,
    session: SessionRef,
    context: OwnedContext,
}

impl MessageHandler for CMessageHandler {
    fn on_message(&self, path: &str, data: &[u8]) {
        with_c_str(path, |path| {
            // SAFETY: the caller's function and context, with a handle kept alive during the
            // call; `path` and `data` outlive it.
            self.session.with(|session| unsafe {
                (self.on_message)(
                    session,
                    path.as_ptr(),
                    data.as_ptr() as *const c_void,
                    data.len(),
                    self.context.get(),
                )
            });
        });
    }

    fn on_error(&self, path: &str, error: &Error) {
        if let Some(on_error) = self.on_error {
            call_on_refused(&self.session, on_error, path, error, self.context.get());
        }
    }
}

/// Runs `body` on the session, reporting failures into `*error`; 1 on success, 0 on failure.
fn with_session(
    session: *mut SESSION_T,
    error: *mut DIFFUSION_ERROR_T,
    body: impl FnOnce(&std::sync::Arc<SESSION_T>) -> Result<()>,
) -> c_int {
    let outcome = guard(Err(super::boundary::internal_error()), || {
        // SAFETY: NULL or a live handle, per the API contract. Our own reference keeps the
        // session alive through the call, whatever a callback it runs frees.
        let handle = unsafe { clone_shared(session) }.ok_or_else(|| Error::illegal_argument("session is NULL"))?;
        body(&handle)
    });
    match outcome {
        Ok(()) => 1,
        Err(e) => {
            // SAFETY: `error` is NULL or the caller's struct.
            unsafe { report(error, &e) };
            0
        }
    }
}

/// Subscribes the session to `path`, or to everything below it when `path` ends with '/'.
/// `handler` receives the messages; it replaces an earlier handler of the same path. The
/// subscription survives reconnection. Allowed while connecting or recovering (it is sent once
/// connected).
///
/// Returns 1, or 0 with `*error` filled: DIFF_ERR_ILLEGAL_ARGUMENT (NULL or invalid argument),
/// DIFF_ERR_SESSION_CLOSED, DIFF_ERR_QUEUE_FULL.
#[no_mangle]
pub unsafe extern "C" fn session_subscribe(
    session: *mut SESSION_T,
    path: *const c_char,
    handler: *const SESSION_MESSAGE_HANDLER_T,
    error: *mut DIFFUSION_ERROR_T,
) -> c_int {
    // The context is the library's from here on, whatever happens: released once, even on failure.
    let context = guard(None, || {
        borrow(handler).map(|h| (OwnedContext::new(h.context, h.free_context), h.on_message, h.on_error))
    });
    with_session(session, error, move |handle| {
        let (context, on_message, on_error) = context.ok_or_else(|| Error::illegal_argument("handler is NULL"))?;
        let on_message = on_message.ok_or_else(|| Error::illegal_argument("handler->on_message is NULL"))?;
        let path = required_str(path, "path")?;
        let handler = CMessageHandler { on_message, on_error, session: SessionRef::to(handle), context };
        handle.session().subscribe(path, Arc::new(handler))
    })
}

/// Ends the session's subscription to `path` (exactly as subscribed); its handler's
/// `free_context` runs once no call to it is running.
///
/// Returns 1, or 0 with `*error` filled: DIFF_ERR_ILLEGAL_ARGUMENT (NULL, or no such
/// subscription), DIFF_ERR_SESSION_CLOSED, DIFF_ERR_QUEUE_FULL.
#[no_mangle]
pub unsafe extern "C" fn session_unsubscribe(
    session: *mut SESSION_T,
    path: *const c_char,
    error: *mut DIFFUSION_ERROR_T,
) -> c_int {
    with_session(session, error, |handle| handle.session().unsubscribe(required_str(path, "path")?))
}

/// Publishes `len` bytes at `data` (copied) on `path`: the server delivers them to every
/// session subscribed to the path, this one too if subscribed. Messages published while
/// connecting or recovering are queued and sent, in order, once connected; none is lost or
/// duplicated by a reconnection. Thread: any. On an application thread, while the session's
/// I/O thread has nothing to send over a WebSocket, the message is written from the calling
/// thread without waiting (what the socket does not take at once is finished by the I/O thread).
///
/// Returns 1, or 0 with `*error` filled: DIFF_ERR_ILLEGAL_ARGUMENT (NULL session or path, NULL
/// data with a non-zero len, invalid path), DIFF_ERR_SESSION_CLOSED, DIFF_ERR_QUEUE_FULL
/// (maximum_queue_size messages are waiting; nothing queued is lost), DIFF_ERR_MESSAGE_TOO_LARGE.
#[no_mangle]
pub unsafe extern "C" fn session_publish(
    session: *mut SESSION_T,
    path: *const c_char,
    data: *const c_void,
    len: usize,
    error: *mut DIFFUSION_ERROR_T,
) -> c_int {
    with_session(session, error, |handle| {
        handle.session().publish(required_str(path, "path")?, bytes(data, len, "data")?)
    })
}

/// Sets the function told of the session's publications that the server refused (its
/// permissions do not allow publishing on the path): `on_error` is called with the path, an
/// error whose code is DIFF_ERR_ACCESS_DENIED and whose message names the path, and `context`,
/// on a libsession I/O thread, in order with the session's other callbacks. `path` and `error`
/// are valid during the call only; the library frees the message. It replaces an earlier
/// function; NULL `on_error` removes it. Refused subscriptions go to their handler's `on_error`
/// instead.
///
/// `context` stays the caller's: the library never dereferences or frees it, and passes it until
/// the function is replaced or removed or the session is freed. Thread: any; allowed inside
/// callbacks.
///
/// Returns 1, or 0 when `session` is NULL.
#[no_mangle]
pub unsafe extern "C" fn session_set_error_handler(
    session: *mut SESSION_T,
    on_error: Option<
        unsafe extern "C" fn(
            session: *mut SESSION_T,
            path: *const c_char,
            error: *const DIFFUSION_ERROR_T,
            context: *mut c_void,
        ),
    >,
    context: *mut c_void,
) -> c_int {
    guard(0, || {
        // SAFETY: NULL or a live handle, per the API contract.
        let Some(handle) = (unsafe { clone_shared(session) }) else { return 0 };
        let handler = on_error.map(|on_error| {
            let session = SessionRef::to(&handle);
            let context = UserPointer::new(context);
            Box::new(move |path: &str, error: &Error| call_on_refused(&session, on_error, path, error, context.get()))
                as crate::session::ErrorHandler
        });
        handle.session().set_error_handler(handler);
        1
    })
}
