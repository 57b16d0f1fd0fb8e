//! Transports and transport cascading.

use std::ffi::c_int;

use super::boundary::guard;
use super::factory::{with_options, DIFFUSION_SESSION_FACTORY_T};
use super::handle::{array, borrow};
use super::session::SESSION_T;
use crate::transport::Transport;

/// How a session reaches its server.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TRANSPORT_TYPE_T {
    /// No connection yet.
    TRANSPORT_TYPE_NONE = -1,
    /// A WebSocket (ws://, wss://).
    WEBSOCKET = 0,
    /// HTTP long polling (xhr://, xhrs://, or by cascading).
    HTTP_POLLING = 1,
}

/// Sets the transports to try, in order, for each connection attempt: `count` entries of `list`
/// (copied; a transport may appear more than once). The session stays CONNECTING while the list is
/// tried; when every entry fails, the initial retry strategy decides on another round, and the
/// error names what each transport failed with. Default: WEBSOCKET only. xhr:// and xhrs:// URLs
/// use HTTP_POLLING whatever the list.
///
/// Returns 1, or 0 (nothing changed) when the factory or list is NULL, `count` is 0, or an entry
/// is not WEBSOCKET or HTTP_POLLING.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_transports(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    list: *const TRANSPORT_TYPE_T,
    count: usize,
) -> c_int {
    guard(0, || {
        // Read as ints: C may pass any value in an enum.
        let values = match array(list as *const c_int, count) {
            Some(values) if !factory.is_null() && count > 0 => values,
            _ => return 0,
        };
        let mut transports = Vec::with_capacity(count);
        for value in values {
            transports.push(match *value {
                v if v == TRANSPORT_TYPE_T::WEBSOCKET as c_int => Transport::WebSocket,
                v if v == TRANSPORT_TYPE_T::HTTP_POLLING as c_int => Transport::HttpPolling,
                _ => return 0,
            });
        }
        with_options(factory, |o| o.transports = transports);
        1
    })
}

/// The transport of the session's current connection (its last one once closed);
/// TRANSPORT_TYPE_NONE before the first connection or for NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn session_get_transport(session: *const SESSION_T) -> TRANSPORT_TYPE_T {
    guard(TRANSPORT_TYPE_T::TRANSPORT_TYPE_NONE, || match borrow(session).and_then(|h| h.session().transport()) {
        Some(Transport::WebSocket) => TRANSPORT_TYPE_T::WEBSOCKET,
        Some(Transport::HttpPolling) => TRANSPORT_TYPE_T::HTTP_POLLING,
        None => TRANSPORT_TYPE_T::TRANSPORT_TYPE_NONE,
    })
}
