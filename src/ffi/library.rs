//! What concerns the library as a whole: its version and where its log goes.

use std::ffi::{c_char, c_int, c_void};

use super::boundary::{c_string, guard};
use super::handle::UserPointer;
use crate::logging::{self, Level};

/// A log line's importance: one of the LIBSESSION_LOG_* values.
pub type LIBSESSION_LOG_LEVEL_T = c_int;

/// A failure the application should know about.
pub const LIBSESSION_LOG_ERROR: LIBSESSION_LOG_LEVEL_T = 1;
/// Something unexpected that the library handled (a refused reconnection, a dropped frame).
pub const LIBSESSION_LOG_WARN: LIBSESSION_LOG_LEVEL_T = 2;
/// A session's life: connected, recovered, closed.
pub const LIBSESSION_LOG_INFO: LIBSESSION_LOG_LEVEL_T = 3;
/// Each connection attempt and what the proxies and the server answered.
pub const LIBSESSION_LOG_DEBUG: LIBSESSION_LOG_LEVEL_T = 4;
/// Everything, down to frames and acknowledgements; never credentials.
pub const LIBSESSION_LOG_TRACE: LIBSESSION_LOG_LEVEL_T = 5;

/// Receives the library's log lines. `target` names the part of the library that logged (e.g.
/// "session::session::driver"), `message` is one line without a newline; both are valid during
/// the call only. See `libsession_set_log_callback` for the thread it runs on and what it may do.
pub type LIBSESSION_LOG_CB = Option<
    unsafe extern "C" fn(
        level: LIBSESSION_LOG_LEVEL_T,
        target: *const c_char,
        message: *const c_char,
        context: *mut c_void,
    ),
>;

/// This build's version, "MAJOR.MINOR.PATCH", as LIBSESSION_VERSION_MAJOR, _MINOR and _PATCH
/// in this header say for the version compiled against. A static string: never NULL, never to
/// be freed. Thread-safe.
#[no_mangle]
pub extern "C" fn libsession_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Routes the library's log to `callback`: lines at `level` and more important ones
/// (LIBSESSION_LOG_ERROR is the most important; a level above LIBSESSION_LOG_TRACE means
/// LIBSESSION_LOG_TRACE, one below LIBSESSION_LOG_ERROR delivers nothing). A NULL `callback`
/// restores the default: standard error when the LIBSESSION_LOG environment variable is set,
/// nothing otherwise. While a callback is set, nothing goes to standard error.
///
/// Callable at any time from any thread. Once it returns, the previous callback is not running
/// and is never called again, so its `context` may be freed: it waits for calls of the previous
/// callback in progress, so do not call it while holding a lock that callback takes. Called
/// from inside the callback it does nothing.
///
/// The callback runs on the thread that logs (the application's thread inside a libsession
/// call, or an I/O thread), on several threads at once at times: it must be thread-safe, and
/// return soon (it delays the thread that logs). It must not call libsession functions other
/// than libsession_version and session_state_as_string, as it may run while the library holds
/// a session's locks; what libsession logs during the callback is dropped. `context` is passed
/// to every call and never dereferenced. Credentials (passwords, tokens, proxy credentials)
/// never appear in log lines at any level.
#[no_mangle]
pub unsafe extern "C" fn libsession_set_log_callback(
    level: LIBSESSION_LOG_LEVEL_T,
    callback: LIBSESSION_LOG_CB,
    context: *mut c_void,
) {
    guard((), || {
        let sink = callback.map(|callback| {
            let context = UserPointer::new(context);
            let sink: logging::Sink = Box::new(move |level, target, message| {
                let (target, message) = (c_string(target), c_string(message));
                // SAFETY: the application gave this function and context for this purpose;
                // the strings live through the call.
                unsafe { callback(level as c_int, target.as_ptr(), message.as_ptr(), context.get()) }
            });
            (level, sink)
        });
        match sink {
            Some((level, _)) if level < LIBSESSION_LOG_ERROR => {
                logging::set_sink(Some((Level::Error, Box::new(|_, _, _| {}))))
            }
            Some((level, sink)) => logging::set_sink(Some((level_of(level), sink))),
            None => logging::set_sink(None),
        };
    })
}

fn level_of(level: LIBSESSION_LOG_LEVEL_T) -> Level {
    match level {
        LIBSESSION_LOG_ERROR => Level::Error,
        LIBSESSION_LOG_WARN => Level::Warn,
        LIBSESSION_LOG_INFO => Level::Info,
        LIBSESSION_LOG_DEBUG => Level::Debug,
        _ => Level::Trace,
    }
}
