//! RECONNECTION_STRATEGY_T: what a session does after losing its connection.

use std::ffi::{c_int, c_long, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::boundary::guard;
use super::handle::{borrow_mut, handles, take_owned, to_owned_ptr, UserPointer};
use super::session::{SessionRef, SESSION_T};
use crate::reconnect::{ReconnectHandler, ReconnectPolicy, ReconnectionStrategy};

/// What a user reconnection function returns.
pub type RECONNECTION_ATTEMPT_ACTION_T = c_int;
/// Attempt to reconnect now.
pub const RECONNECTION_ATTEMPT_ACTION_START: RECONNECTION_ATTEMPT_ACTION_T = 0;
/// Give up: the session closes with CLOSED_FAILED.
pub const RECONNECTION_ATTEMPT_ACTION_ABORT: RECONNECTION_ATTEMPT_ACTION_T = 1;

/// Default reconnection timeout, in milliseconds.
pub const DIFFUSION_DEFAULT_RECONNECT_TIMEOUT: c_long = 60_000;
/// Default delay between reconnection attempts, in milliseconds.
pub const DIFFUSION_DEFAULT_RECONNECT_DELAY: c_long = 5_000;
/// Default number of reconnection attempts.
pub const DIFFUSION_DEFAULT_RECONNECT_RETRY_COUNT: c_long = 12;

/// Called before each reconnection attempt, on a thread where it may block (sleeping here
/// delays the attempt; session_close and session_free wait for it to return, so keep it short).
/// Return RECONNECTION_ATTEMPT_ACTION_START or _ABORT. Blocking creates are allowed inside; other
/// calls: see "Calls inside callbacks" at the top of this header.
pub type PERFORM_RECONNECTION_CB =
    Option<unsafe extern "C" fn(session: *mut SESSION_T, args: *mut c_void) -> RECONNECTION_ATTEMPT_ACTION_T>;
/// Called after a successful reconnection, or when reconnection is given up, on a libsession
/// I/O thread.
pub type PERFORM_RECONNECTION_AFTER_ACTION_CB =
    Option<unsafe extern "C" fn(session: *mut SESSION_T, args: *mut c_void)>;

/// A reconnection strategy. Create with `make_reconnection_strategy_*`, release with
/// `free_reconnection_strategy`; sessions and factories copy it (but not `args`).
#[derive(Clone)]
pub struct RECONNECTION_STRATEGY_T {
    kind: Kind,
    timeout: Option<Duration>,
}

#[derive(Clone, Copy)]
enum Kind {
    Repeating {
        attempts: u32,
        delay: Duration,
    },
    User {
        reconnect: unsafe extern "C" fn(*mut SESSION_T, *mut c_void) -> RECONNECTION_ATTEMPT_ACTION_T,
        args: UserPointer,
        success: PERFORM_RECONNECTION_AFTER_ACTION_CB,
        failure: PERFORM_RECONNECTION_AFTER_ACTION_CB,
    },
}

handles! { Owned: RECONNECTION_STRATEGY_T; }

struct CReconnect {
    reconnect: unsafe extern "C" fn(*mut SESSION_T, *mut c_void) -> RECONNECTION_ATTEMPT_ACTION_T,
    args: UserPointer,
    success: PERFORM_RECONNECTION_AFTER_ACTION_CB,
    failure: PERFORM_RECONNECTION_AFTER_ACTION_CB,
    handle: SessionRef,
}

impl CReconnect {
    fn notify(&self, callback: PERFORM_RECONNECTION_AFTER_ACTION_CB) {
        if let Some(callback) = callback {
            // SAFETY: the caller's function and arguments, with a handle kept alive during the call.
            self.handle.with(|session| unsafe { callback(session, self.args.get()) });
        }
    }
}

impl ReconnectHandler for CReconnect {
    fn before_attempt(&self) -> bool {
        // SAFETY: as in `notify`. A freed session has no handle: it does not reconnect.
        let action = self.handle.with(|session| unsafe { (self.reconnect)(session, self.args.get()) });
        action == Some(RECONNECTION_ATTEMPT_ACTION_START)
    }

    fn on_success(&self) {
        self.notify(self.success);
    }

    fn on_failure(&self) {
        self.notify(self.failure);
    }
}

impl RECONNECTION_STRATEGY_T {
    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The strategy for the session with the handle `handle`.
    pub(crate) fn strategy(&self, handle: SessionRef) -> ReconnectionStrategy {
        let policy = match self.kind {
            Kind::Repeating { attempts, delay } => ReconnectPolicy::Repeating { attempts, delay },
            Kind::User { reconnect, args, success, failure } => {
                ReconnectPolicy::User(Arc::new(CReconnect { reconnect, args, success, failure, handle }))
            }
        };
        ReconnectionStrategy { timeout: self.timeout, policy }
    }
}

fn default_timeout() -> Option<Duration> {
    Some(Duration::from_millis(DIFFUSION_DEFAULT_RECONNECT_TIMEOUT as u64))
}

/// Reconnects up to `retry_count` times, `retry_delay` milliseconds apart (the first attempt is
/// immediate), within the reconnection timeout (default 60000 ms). A `retry_count` of 0 means
/// no attempts: a lost connection closes the session.
///
/// Returns a new strategy owned by the caller, or NULL when either value is negative.
#[no_mangle]
pub extern "C" fn make_reconnection_strategy_repeating_attempt(
    retry_count: c_long,
    retry_delay: c_long,
) -> *mut RECONNECTION_STRATEGY_T {
    guard(std::ptr::null_mut(), || {
        let (Ok(attempts), Ok(delay)) = (u32::try_from(retry_count), u64::try_from(retry_delay)) else {
            return std::ptr::null_mut();
        };
        let kind = Kind::Repeating { attempts, delay: Duration::from_millis(delay) };
        to_owned_ptr(RECONNECTION_STRATEGY_T { kind, timeout: default_timeout() })
    })
}

/// Lets the application decide: `reconnect_cb(session, args)` runs before each attempt (on a
/// thread where it may sleep to delay the attempt; attempts are at least 50 ms apart) and returns
/// START or ABORT; `success_cb` runs after a reconnection, `failure_cb` when reconnection is given
/// up (ABORT, or the timeout). `args` is passed as is and never freed by the library.
///
/// Returns a new strategy owned by the caller, or NULL when `reconnect_cb` is NULL.
#[no_mangle]
pub extern "C" fn make_reconnection_strategy_user_function(
    reconnect_cb: PERFORM_RECONNECTION_CB,
    args: *mut c_void,
    success_cb: PERFORM_RECONNECTION_AFTER_ACTION_CB,
    failure_cb: PERFORM_RECONNECTION_AFTER_ACTION_CB,
) -> *mut RECONNECTION_STRATEGY_T {
    guard(std::ptr::null_mut(), || match reconnect_cb {
        Some(reconnect) => {
            let kind = Kind::User { reconnect, args: UserPointer::new(args), success: success_cb, failure: failure_cb };
            to_owned_ptr(RECONNECTION_STRATEGY_T { kind, timeout: default_timeout() })
        }
        None => std::ptr::null_mut(),
    })
}

/// Sets how long reconnection is tried after a loss, in milliseconds; 0 or less disables
/// reconnection. NULL strategy: no-op.
#[no_mangle]
pub unsafe extern "C" fn reconnection_strategy_set_timeout(strategy: *mut RECONNECTION_STRATEGY_T, timeout_ms: c_long) {
    guard((), || {
        if let Some(strategy) = borrow_mut(strategy) {
            strategy.timeout = u64::try_from(timeout_ms).ok().filter(|t| *t > 0).map(Duration::from_millis);
        }
    })
}

/// Frees a strategy. Sessions and factories that were given it keep their copies. NULL does
/// nothing.
#[no_mangle]
pub unsafe extern "C" fn free_reconnection_strategy(strategy: *mut RECONNECTION_STRATEGY_T) {
    guard((), || drop(take_owned(strategy)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_values_are_refused() {
        assert!(make_reconnection_strategy_repeating_attempt(-1, 10).is_null());
        assert!(make_reconnection_strategy_repeating_attempt(1, -10).is_null());
        assert!(make_reconnection_strategy_user_function(None, std::ptr::null_mut(), None, None).is_null());
    }

    #[test]
    fn timeout_zero_disables_reconnection() {
        let s = make_reconnection_strategy_repeating_attempt(3, 100);
        unsafe {
            assert!((*s).strategy(SessionRef::default()).enabled());
            reconnection_strategy_set_timeout(s, 0);
            assert!(!(*s).strategy(SessionRef::default()).enabled());
            free_reconnection_strategy(s);
        }
    }
}
