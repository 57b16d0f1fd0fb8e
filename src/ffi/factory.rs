//! DIFFUSION_SESSION_FACTORY_T: a reusable template for sessions.
//!
//! Setters take a `const` factory, as in the vendor's API, and change it through a lock, so one
//! factory may be shared by threads. Sessions copy everything at creation: changing or freeing the
//! factory afterwards does not affect them.

use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::time::Duration;

use parking_lot::Mutex;

use super::boundary::{bytes, c_bytes, guard, optional_str, required_str};
use super::credentials::CREDENTIALS_T;
use super::handle::{borrow, copy_of, handles, take_owned, to_owned_ptr, UserPointer};
use super::reconnect::RECONNECTION_STRATEGY_T;
use super::retry::DIFFUSION_RETRY_STRATEGY_T;
use super::session::{create, CreateArgs, SESSION_CREATE_CALLBACK_T, SESSION_LISTENER_T, SESSION_T};
use crate::error::{Error, Result};
use crate::protocol::Credentials;
use crate::retry::RetryStrategy;
use crate::session::config::{MAX_TIMEOUT, MIN_BUFFER_SIZE};
use crate::session::{SessionFactory, SessionOptions};

/// A session factory. Create with `diffusion_session_factory_init`, release with
/// `diffusion_session_factory_free`.
pub struct DIFFUSION_SESSION_FACTORY_T {
    state: Mutex<FactoryState>,
}

#[derive(Default)]
struct FactoryState {
    factory: SessionFactory,
    listener: Option<SESSION_LISTENER_T>,
    user_context: UserPointer,
    /// A C reconnection strategy; its timeout follows the factory's reconnection timeout setters.
    reconnection: Option<RECONNECTION_STRATEGY_T>,
    /// Why a header given to `diffusion_session_factory_http_header` was refused: sessions fail
    /// with it rather than go out without the header.
    rejected_header: Option<Error>,
}

handles! { Owned: DIFFUSION_SESSION_FACTORY_T; }

/// Applies `change` to the factory's state; NULL factories are ignored.
unsafe fn with_state(factory: *const DIFFUSION_SESSION_FACTORY_T, change: impl FnOnce(&mut FactoryState)) {
    guard((), || {
        if let Some(factory) = borrow(factory) {
            change(&mut factory.state.lock());
        }
    })
}

pub(crate) unsafe fn with_options(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    change: impl FnOnce(&mut SessionOptions),
) {
    with_state(factory, |state| change(&mut state.factory.options));
}

/// A setter's string argument; NULL or invalid UTF-8 give `None` (the setter then does nothing).
unsafe fn text(ptr: *const c_char) -> Option<String> {
    optional_str(ptr, "argument").ok().flatten().map(str::to_string)
}

fn timeout_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms as u64).min(MAX_TIMEOUT))
}

/// Creates a factory with the default settings. Owned by the caller
/// (`diffusion_session_factory_free`).
#[no_mangle]
pub extern "C" fn diffusion_session_factory_init() -> *mut DIFFUSION_SESSION_FACTORY_T {
    guard(std::ptr::null_mut(), || {
        to_owned_ptr(DIFFUSION_SESSION_FACTORY_T { state: Mutex::new(FactoryState::default()) })
    })
}

/// Frees a factory. Sessions created from it are not affected. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_free(factory: *mut DIFFUSION_SESSION_FACTORY_T) {
    guard((), || drop(take_owned(factory)))
}

/// Sets the listener of sessions created from now on (the struct is copied); NULL removes it.
/// NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_session_listener(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    listener: *mut SESSION_LISTENER_T,
) {
    with_state(factory, |s| s.listener = copy_of(listener));
}

/// Sets the user context of sessions created from now on (never dereferenced). NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_user_context(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    user_context: *mut c_void,
) {
    with_state(factory, |s| s.user_context = UserPointer::new(user_context));
}

/// Sets the principal (copied); NULL means anonymous. Invalid UTF-8: no-op. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_principal(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    principal: *const c_char,
) {
    if principal.is_null() {
        with_options(factory, |o| o.principal.clear());
    } else if let Some(principal) = text(principal) {
        with_options(factory, |o| o.principal = principal);
    }
}

/// Sets credentials to none (the default). NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_no_credentials(factory: *const DIFFUSION_SESSION_FACTORY_T) {
    with_options(factory, |o| o.credentials = Credentials::None);
}

/// Sets the credentials (copied). NULL credentials or factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_credentials(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    credentials: *const CREDENTIALS_T,
) {
    if let Some(credentials) = borrow(credentials) {
        let credentials = credentials.inner.clone();
        with_options(factory, |o| o.credentials = credentials);
    }
}

/// Sets password credentials (copied). NULL password or factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_password(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    password: *const c_char,
) {
    if let Some(password) = c_bytes(password) {
        let password = password.to_vec();
        with_options(factory, |o| o.credentials = Credentials::Password(password));
    }
}

/// Sets custom credentials: `len` bytes at `data` (copied). NULL `data` with a non-zero `len`,
/// or NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_custom_credentials(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    data: *const c_char,
    len: c_ulong,
) {
    if let Ok(bytes) = bytes(data as *const c_void, len as usize, "data") {
        let bytes = bytes.to_vec();
        with_options(factory, |o| o.credentials = Credentials::Custom(bytes));
    }
}

/// Bounds each connection attempt (TCP connect, upgrade, handshake), in milliseconds; default
/// 2000. 0: no-op. Values over one hour are capped at one hour. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_connection_timeout(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    connection_timeout: u32,
) {
    if let Some(t) = timeout_ms(connection_timeout) {
        with_options(factory, |o| o.connection_timeout = t);
    }
}

/// Bounds each write, in milliseconds; default 2000. 0: no-op. Capped at one hour. NULL factory:
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_write_timeout(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    write_timeout: u32,
) {
    if let Some(t) = timeout_ms(write_timeout) {
        with_options(factory, |o| o.write_timeout = t);
    }
}

/// Sets how session establishment is retried (copied; the strategy may be freed afterwards).
/// NULL restores the default, no retry. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_initial_retry_strategy(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    strategy: *mut DIFFUSION_RETRY_STRATEGY_T,
) {
    let strategy = borrow(strategy).map_or(RetryStrategy::None, |s| s.inner);
    with_options(factory, |o| o.initial_retry = strategy);
}

/// Sets the reconnection strategy of sessions created from now on (copied, not its `args`);
/// NULL restores the default (every 5 s for up to 60 s). NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_reconnection_strategy(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    reconnection_strategy: *mut RECONNECTION_STRATEGY_T,
) {
    let strategy = borrow(reconnection_strategy).cloned();
    with_state(factory, |s| {
        s.factory.options.reconnection = match &strategy {
            Some(c) => c.strategy(Default::default()),
            None => crate::reconnect::ReconnectionStrategy::default(),
        };
        s.reconnection = strategy;
    });
}

/// Disables reconnection (same as a reconnection timeout of 0). NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_no_reconnection(factory: *const DIFFUSION_SESSION_FACTORY_T) {
    with_options(factory, |o| o.reconnection.timeout = None);
}

/// Sets how long a session tries to reconnect, in milliseconds (default 60000); 0 or less
/// disables reconnection. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_reconnection_timeout(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    reconnection_timeout: c_int,
) {
    let timeout = (reconnection_timeout > 0).then(|| Duration::from_millis(reconnection_timeout as u64));
    with_options(factory, |o| o.reconnection.timeout = timeout);
}

/// Sets the largest message accepted from the server, in bytes, announced to the server in the
/// handshake (default 1 MiB, where the vendor's API has INT_MAX); a larger one fails the session
/// with DIFF_ERR_CONNECTION_PROTOCOL_ERROR, and HTTP polling answers are bounded by it. It also
/// bounds what the session publishes (DIFF_ERR_MESSAGE_TOO_LARGE). Below 1024: no-op. NULL
/// factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_maximum_message_size(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    maximum_message_size: u32,
) {
    if maximum_message_size >= MIN_BUFFER_SIZE {
        with_options(factory, |o| o.maximum_message_size = maximum_message_size);
    }
}

/// Sets the socket receive buffer size in bytes, fixed for each connection. By default the
/// kernel sizes the buffer and grows it with the traffic (on Linux a receive buffer starts at
/// 131072 bytes). Below 1024: no-op. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_input_buffer_size(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    input_buffer_size: u32,
) {
    if input_buffer_size >= MIN_BUFFER_SIZE {
        with_options(factory, |o| o.input_buffer_size = Some(input_buffer_size));
    }
}

/// Sets the socket send buffer size in bytes, fixed for each connection. By default the kernel
/// sizes the buffer and grows it with the traffic. Below 1024: no-op. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_output_buffer_size(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    output_buffer_size: u32,
) {
    if output_buffer_size >= MIN_BUFFER_SIZE {
        with_options(factory, |o| o.output_buffer_size = Some(output_buffer_size));
    }
}

/// Sets how many messages may wait to be sent (default 1000). 0: no-op. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_maximum_queue_size(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    maximum_queue_size: u32,
) {
    if maximum_queue_size > 0 {
        with_options(factory, |o| o.maximum_queue_size = maximum_queue_size);
    }
}

/// Sets how many sent messages are kept for recovery (default 128; 0 allowed). NULL factory:
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_recovery_buffer_size(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    recovery_buffer_size: u32,
) {
    with_options(factory, |o| o.recovery_buffer_size = recovery_buffer_size);
}

/// Sets the server host used when a session is created without a URL (copied); NULL unsets it.
/// NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_server_host(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    server_host: *const c_char,
) {
    let host = text(server_host);
    with_state(factory, |s| s.factory.server_host = host);
}

/// Sets the server port used when a session is created without a URL. Outside 1..65535: no-op.
/// NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_server_port(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    server_port: c_int,
) {
    if let Ok(port) = u16::try_from(server_port) {
        if port > 0 {
            with_state(factory, |s| s.factory.server_port = Some(port));
        }
    }
}

/// Chooses wss (true) or ws (false) when a session is created without a URL. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_secure_transport(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    secure_transport: bool,
) {
    with_state(factory, |s| s.factory.secure = secure_transport);
}

/// Sets the request path used when a session is created without a URL (copied; default
/// "/diffusion"); NULL restores the default. A path that does not begin with '/' and end with
/// '/diffusion' makes those creations fail with DIFF_ERR_PARSE_URL naming it. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_request_path(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    request_path: *const c_char,
) {
    let path = text(request_path);
    with_state(factory, |s| s.factory.request_path = path);
}

/// Sets session property `key` to `value` (both copied), replacing an earlier value; a NULL
/// `value` removes the key. NULL `key` or factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_property(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    key: *const c_char,
    value: *const c_char,
) {
    let Some(key) = text(key) else { return };
    match text(value) {
        Some(value) => with_options(factory, |o| o.set_property(&key, &value)),
        None if value.is_null() => with_options(factory, |o| o.remove_property(&key)),
        None => {}
    }
}

/// Adds a header to the WebSocket upgrade of every session created from the factory (both
/// strings copied), e.g. for a balancer that routes on a header or an affinity token.
///
/// Returns 1, or 0 when the header is refused: NULL or non-UTF-8 arguments, an invalid name, CR,
/// LF or NUL anywhere (header injection), or a header the library sets itself (Host, Upgrade,
/// Connection, Sec-WebSocket-*, X-Session-Connect, Cookie, Proxy-*, Content-Length,
/// Transfer-Encoding, TE). A refused header also makes sessions created from the factory fail
/// with DIFF_ERR_ILLEGAL_ARGUMENT naming it, so that none goes out without it. NULL factory: 0.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_http_header(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    guard(0, || {
        let Some(factory) = borrow(factory) else { return 0 };
        let mut state = factory.state.lock();
        let added = required_str(name, "header name")
            .and_then(|name| Ok((name, required_str(value, "header value")?)))
            .and_then(|(name, value)| state.factory.options.add_http_header(name, value));
        match added {
            Ok(()) => 1,
            Err(e) => {
                state.rejected_header = Some(e);
                0
            }
        }
    })
}

unsafe fn factory_args(factory: *const DIFFUSION_SESSION_FACTORY_T, url: *const c_char) -> Result<CreateArgs> {
    let factory = borrow(factory).ok_or_else(|| Error::illegal_argument("session factory is NULL"))?;
    let url = if url.is_null() { None } else { Some(required_str(url, "url")?) };
    let state = factory.state.lock();
    if let Some(e) = &state.rejected_header {
        return Err(e.clone());
    }
    let config = state.factory.config(url)?;
    // The factory's timeout setters apply to a C strategy too.
    let reconnection = state.reconnection.clone().map(|mut c| {
        c.set_timeout(config.options.reconnection.timeout);
        c
    });
    Ok(CreateArgs { config, listener: state.listener, user_context: state.user_context, reconnection })
}

/// Opens a session with the factory's settings and blocks until it is CONNECTED_ACTIVE or has
/// failed (after the factory's initial retry strategy is exhausted).
///
/// `url_str` wins over the factory's host, port, secure transport and request path; NULL builds
/// the URL from them (and fails if no host is set). Returns the session, owned by the caller, or
/// NULL on failure: `session_last_error` then tells why. Called inside a libsession callback it
/// fails with DIFF_ERR_ILLEGAL_STATE.
#[no_mangle]
pub unsafe extern "C" fn session_create_with_session_factory(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    url_str: *const c_char,
) -> *mut SESSION_T {
    create(|| factory_args(factory, url_str), None).unwrap_or(std::ptr::null_mut())
}

/// Starts opening a session with the factory's settings and returns at once; exactly one of
/// `callbacks->on_connected` / `on_error` runs later (`callbacks` is required and copied).
///
/// Returns the handle, owned by the caller, or NULL when the arguments are invalid (no callback
/// runs then; `session_last_error` tells why).
#[no_mangle]
pub unsafe extern "C" fn session_create_async_with_session_factory(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    callbacks: *mut SESSION_CREATE_CALLBACK_T,
    url_str: *const c_char,
) -> *mut SESSION_T {
    let created = match copy_of(callbacks) {
        Some(callbacks) => create(|| factory_args(factory, url_str), Some(callbacks)),
        None => create(|| Err(Error::illegal_argument("callbacks is NULL")), None),
    };
    created.unwrap_or(std::ptr::null_mut())
}
