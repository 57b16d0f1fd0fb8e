//! Proxy settings on the factory, proxy authentication objects and the custom challenge handler.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

use parking_lot::Mutex;

use super::boundary::{c_string, guard, optional_str, required_str, OwnedContext};
use super::factory::{with_options, DIFFUSION_SESSION_FACTORY_T};
use super::handle::{borrow, borrow_mut, copy_of, handles, lent_ptr, take_owned, to_owned_ptr};
use super::types::HANDLER_SUCCESS;
use crate::error::{Error, Result};
use crate::proxy::{Challenge, ChallengeHandler, Proxy, ProxyAuth, ProxySetting, DEFAULT_MAXIMUM_CONVERSATIONS};

/// How to authenticate to an HTTP proxy. Create with a `diffusion_proxy_authentication_*`
/// function, release with `diffusion_proxy_authentication_free`. Factories keep what they need,
/// so it may be freed once set.
pub struct DIFFUSION_PROXY_AUTHENTICATION_T {
    inner: ProxyAuth,
}

/// One HTTP header: NUL-terminated name and value.
#[repr(C)]
pub struct DIFFUSION_HTTP_HEADER_T {
    /// Header name as the proxy sent it.
    pub name: *const c_char,
    /// Header value, leading and trailing spaces removed.
    pub value: *const c_char,
}

/// A proxy's challenge, as a custom handler sees it. Valid only during the call.
#[repr(C)]
pub struct DIFFUSION_PROXY_CHALLENGE_T {
    /// 0 before the first CONNECT (add headers to authenticate preemptively), then 1, 2, ... for
    /// each challenge.
    pub round: u32,
    /// 407, or 401 from proxies that challenge with it; 0 in round 0.
    pub status_code: c_int,
    /// The status line, e.g. "HTTP/1.1 407 Proxy Authentication Required"; "" in round 0.
    pub status_line: *const c_char,
    /// Every response header, in order (Proxy-Authenticate among them).
    pub headers: *const DIFFUSION_HTTP_HEADER_T,
    /// Number of entries in `headers`.
    pub header_count: usize,
    /// Whether the proxy kept the connection open: the next CONNECT goes on the same connection.
    /// Connection-bound schemes (NTLM, Negotiate) must restart when it is false.
    pub connection_kept_alive: bool,
}

/// Collects the headers a custom handler wants on the next CONNECT.
pub struct DIFFUSION_PROXY_RESPONSE_T {
    headers: Vec<(String, String)>,
}

handles! {
    Owned: DIFFUSION_PROXY_AUTHENTICATION_T;
    Borrowed: DIFFUSION_PROXY_CHALLENGE_T, DIFFUSION_PROXY_RESPONSE_T, DIFFUSION_PROXY_CHALLENGE_HANDLER_T;
}

/// A custom proxy authentication scheme. The struct is copied.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DIFFUSION_PROXY_CHALLENGE_HANDLER_T {
    /// Called for round 0 and for every challenge, on a libsession I/O thread (on the calling
    /// thread while a blocking create connects); never for two rounds at once. A callback of the
    /// session it serves: see "Calls inside callbacks" at the top of this header. Add headers with `diffusion_proxy_response_add_header` and return
    /// HANDLER_SUCCESS to send another CONNECT, or return HANDLER_FAILURE to give up (the session
    /// fails with DIFF_ERR_PROXY_AUTHENTICATION_FAILED). Required.
    pub on_challenge: Option<
        unsafe extern "C" fn(
            challenge: *const DIFFUSION_PROXY_CHALLENGE_T,
            response: *mut DIFFUSION_PROXY_RESPONSE_T,
            context: *mut c_void,
        ) -> c_int,
    >,
    /// Most challenges answered before authentication fails; 0 means the default, 3.
    pub maximum_conversations: u32,
    /// Passed to every call; never dereferenced by the library.
    pub context: *mut c_void,
    /// Optional: called exactly once with `context`, after the last call, when the
    /// authentication object and every factory and session using it are gone.
    pub free_context: Option<unsafe extern "C" fn(context: *mut c_void)>,
}

/// A C handler as a [`ChallengeHandler`].
struct CHandler {
    on_challenge: unsafe extern "C" fn(
        challenge: *const DIFFUSION_PROXY_CHALLENGE_T,
        response: *mut DIFFUSION_PROXY_RESPONSE_T,
        context: *mut c_void,
    ) -> c_int,
    maximum_conversations: u32,
    context: OwnedContext,
    /// One round at a time, whichever sessions share the handler.
    calls: Mutex<()>,
}

impl ChallengeHandler for CHandler {
    fn respond(&self, challenge: &Challenge<'_>) -> Option<Vec<(String, String)>> {
        let strings: Vec<(CString, CString)> =
            challenge.headers.iter().map(|(n, v)| (c_string(n), c_string(v))).collect();
        let headers: Vec<DIFFUSION_HTTP_HEADER_T> =
            strings.iter().map(|(n, v)| DIFFUSION_HTTP_HEADER_T { name: n.as_ptr(), value: v.as_ptr() }).collect();
        let status_line = c_string(challenge.status_line);
        let view = DIFFUSION_PROXY_CHALLENGE_T {
            round: challenge.round,
            status_code: challenge.status as c_int,
            status_line: status_line.as_ptr(),
            headers: headers.as_ptr(),
            header_count: headers.len(),
            connection_kept_alive: challenge.connection_kept_alive,
        };
        let mut response = DIFFUSION_PROXY_RESPONSE_T { headers: Vec::new() };
        let _one_at_a_time = self.calls.lock();
        // SAFETY: every pointer in `view` and `response` outlives the call.
        let verdict = unsafe { (self.on_challenge)(lent_ptr(&view), &mut response, self.context.get()) };
        (verdict == HANDLER_SUCCESS).then_some(response.headers)
    }

    fn maximum_conversations(&self) -> u32 {
        match self.maximum_conversations {
            0 => DEFAULT_MAXIMUM_CONVERSATIONS,
            n => n,
        }
    }
}

unsafe fn credentials(user: *const c_char, password: *const c_char) -> Option<(String, String)> {
    let user = required_str(user, "user").ok()?.to_string();
    let password = optional_str(password, "password").ok()?.unwrap_or_default().to_string();
    Some((user, password))
}

fn boxed(inner: ProxyAuth) -> *mut DIFFUSION_PROXY_AUTHENTICATION_T {
    to_owned_ptr(DIFFUSION_PROXY_AUTHENTICATION_T { inner })
}

/// Basic authentication, sent with the first CONNECT (to the proxy only, never to the server).
///
/// Returns a new object owned by the caller, or NULL when `user` is NULL or either string is not
/// UTF-8 (a NULL password is empty).
#[no_mangle]
pub unsafe extern "C" fn diffusion_proxy_authentication_basic(
    user: *const c_char,
    password: *const c_char,
) -> *mut DIFFUSION_PROXY_AUTHENTICATION_T {
    guard(std::ptr::null_mut(), || match credentials(user, password) {
        Some((user, password)) => boxed(ProxyAuth::Basic { user, password }),
        None => std::ptr::null_mut(),
    })
}

/// Digest authentication (RFC 7616: MD5 or SHA-256, qop=auth), in answer to the proxy's
/// challenge. Arguments and result as for `diffusion_proxy_authentication_basic`.
#[no_mangle]
pub unsafe extern "C" fn diffusion_proxy_authentication_digest(
    user: *const c_char,
    password: *const c_char,
) -> *mut DIFFUSION_PROXY_AUTHENTICATION_T {
    guard(std::ptr::null_mut(), || match credentials(user, password) {
        Some((user, password)) => boxed(ProxyAuth::Digest { user, password }),
        None => std::ptr::null_mut(),
    })
}

/// Answers whichever of Basic or Digest the proxy asks for, preferring Digest. Arguments and
/// result as for `diffusion_proxy_authentication_basic`.
#[no_mangle]
pub unsafe extern "C" fn diffusion_proxy_authentication_any(
    user: *const c_char,
    password: *const c_char,
) -> *mut DIFFUSION_PROXY_AUTHENTICATION_T {
    guard(std::ptr::null_mut(), || match credentials(user, password) {
        Some((user, password)) => boxed(ProxyAuth::Any { user, password }),
        None => std::ptr::null_mut(),
    })
}

/// Authentication by a custom handler (for schemes such as NTLM or Negotiate). `handler` is
/// copied; its context is released through `free_context` exactly once, after the last call.
///
/// Returns a new object owned by the caller, or NULL when `handler` or `handler->on_challenge`
/// is NULL (then `free_context` is not called).
#[no_mangle]
pub unsafe extern "C" fn diffusion_proxy_authentication_custom(
    handler: *const DIFFUSION_PROXY_CHALLENGE_HANDLER_T,
) -> *mut DIFFUSION_PROXY_AUTHENTICATION_T {
    guard(std::ptr::null_mut(), || match copy_of(handler) {
        Some(DIFFUSION_PROXY_CHALLENGE_HANDLER_T {
            on_challenge: Some(on_challenge),
            maximum_conversations,
            context,
            free_context,
        }) => boxed(ProxyAuth::Custom(Arc::new(CHandler {
            on_challenge,
            maximum_conversations,
            context: OwnedContext::new(context, free_context),
            calls: Mutex::new(()),
        }))),
        _ => std::ptr::null_mut(),
    })
}

/// Frees an authentication object. Factories that were given it keep their own reference.
/// NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn diffusion_proxy_authentication_free(auth: *mut DIFFUSION_PROXY_AUTHENTICATION_T) {
    guard((), || drop(take_owned(auth)))
}

/// Adds a header to the next CONNECT, from inside `on_challenge`. Both strings are copied.
///
/// Returns 1, or 0 (header not added) when an argument is NULL or not UTF-8, the name is not a
/// valid header name, or either contains CR or LF.
#[no_mangle]
pub unsafe extern "C" fn diffusion_proxy_response_add_header(
    response: *mut DIFFUSION_PROXY_RESPONSE_T,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    guard(0, || {
        let (Some(response), Ok(name), Ok(value)) =
            (borrow_mut(response), required_str(name, "name"), required_str(value, "value"))
        else {
            return 0;
        };
        if !crate::proxy::valid_header(name, value) {
            return 0;
        }
        response.headers.push((name.to_string(), value.to_string()));
        1
    })
}

unsafe fn set_proxy(factory: *const DIFFUSION_SESSION_FACTORY_T, proxy: Result<Proxy>) {
    let setting = match proxy {
        Ok(proxy) => ProxySetting::Use(proxy),
        Err(e) => ProxySetting::Invalid(e),
    };
    with_options(factory, |o| o.proxy = setting);
}

fn proxy_port(port: c_int) -> Result<u16> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::illegal_argument(format!("proxy port {port} is not 1 to 65535")))
}

/// Sends sessions through the HTTP proxy `host`:`port` with CONNECT; `auth` (copied) may be NULL.
///
/// A NULL or non-UTF-8 host or a port outside 1..65535 makes sessions created from the factory
/// fail with DIFF_ERR_ILLEGAL_ARGUMENT instead of connecting without the proxy. NULL factory:
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_http_proxy(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    host: *const c_char,
    port: c_int,
    auth: *const DIFFUSION_PROXY_AUTHENTICATION_T,
) {
    let proxy = required_str(host, "proxy host").and_then(|host| {
        Ok(Proxy::Http {
            host: host.to_string(),
            port: proxy_port(port)?,
            auth: borrow(auth).map(|a| a.inner.clone()),
            tls: false,
        })
    });
    set_proxy(factory, proxy);
}

/// Sends sessions through the SOCKS5 proxy `host`:`port`, which resolves the server's name
/// (as socks5h://). `user` may be NULL for no authentication; otherwise user and password
/// (1 to 255 bytes) are sent with RFC 1929. Invalid arguments as for
/// `diffusion_session_factory_http_proxy`.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_socks5_proxy(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    host: *const c_char,
    port: c_int,
    user: *const c_char,
    password: *const c_char,
) {
    let proxy = required_str(host, "proxy host").and_then(|host| {
        let credentials = match optional_str(user, "proxy user")? {
            Some(user) => Some((user.to_string(), optional_str(password, "proxy password")?.unwrap_or("").to_string())),
            None => None,
        };
        Ok(Proxy::Socks5 { host: host.to_string(), port: proxy_port(port)?, credentials, remote_dns: true })
    });
    set_proxy(factory, proxy);
}

/// Sets the proxy from a URL: `http://[user:password@]host[:port]`, `https://...` (TLS to the
/// proxy itself, verified like servers are), `socks5://...` (the client
/// resolves the server's name) or `socks5h://...` (the proxy does). User information is
/// percent-decoded (`%40` for `@`, `%3A` for `:`); HTTP proxy credentials answer Basic or Digest.
/// No port means 1080. An invalid URL makes sessions created from the factory fail with
/// DIFF_ERR_PARSE_URL. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_proxy_url(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    url: *const c_char,
) {
    let proxy = required_str(url, "proxy URL").and_then(Proxy::parse_url);
    set_proxy(factory, proxy);
}

/// Connects directly, ignoring any proxy the environment names. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_no_proxy(factory: *const DIFFUSION_SESSION_FACTORY_T) {
    with_options(factory, |o| o.proxy = ProxySetting::Disabled);
}
