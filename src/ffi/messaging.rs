//! Publishing and subscribing over a session.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::boundary::{bytes, c_string, guard, report, required_str, OwnedContext};
use super::handle::{borrow, clone_shared, handles};
use super::session::{SessionRef, SESSION_T};
use super::types::DIFFUSION_ERROR_T;
use crate::error::{Error, Result};
use crate::session::MessageHandler;

/// Receives the messages of a subscription. The struct is copied. Calls allowed inside
/// `on_message` and `free_context`: see "Calls inside callbacks" at the top of this header.
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
    /// thread of the call that released the handler.
    pub free_context: Option<unsafe extern "C" fn(context: *mut c_void)>,
}

handles! { Borrowed: SESSION_MESSAGE_HANDLER_T; }

struct CMessageHandler {
    on_message: unsafe extern "C" fn(*mut SESSION_T, *const c_char, *const c_void, usize, *mut c_void) -> c_int,
    session: SessionRef,
    context: OwnedContext,
}

impl MessageHandler for CMessageHandler {
    fn on_message(&self, path: &str, data: &[u8]) {
        let path = c_string(path);
        // SAFETY: the caller's function and context, with a handle kept alive during the call;
        // `path` and `data` outlive it.
        self.session.with(|session| unsafe {
            (self.on_message)(session, path.as_ptr(), data.as_ptr() as *const c_void, data.len(), self.context.get())
        });
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
    let context = guard(None, || borrow(handler).map(|h| (OwnedContext::new(h.context, h.free_context), h.on_message)));
    with_session(session, error, move |handle| {
        let (context, on_message) = context.ok_or_else(|| Error::illegal_argument("handler is NULL"))?;
        let on_message = on_message.ok_or_else(|| Error::illegal_argument("handler->on_message is NULL"))?;
        let path = required_str(path, "path")?;
        let handler = CMessageHandler { on_message, session: SessionRef::to(handle), context };
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
