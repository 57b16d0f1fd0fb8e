//! Initial retry strategies and the API error type their constructors report with.

use std::ffi::{c_char, c_int, CString};

use super::boundary::guard;
use super::handle::{borrow, fill, handles, take_owned, to_owned_ptr};
use super::types::ERROR_CODE_T;
use crate::error::{Error, Result};
use crate::retry::RetryStrategy;

/// How session establishment is retried after transient failures. Create with a
/// `diffusion_retry_strategy_*` function, release with `diffusion_retry_strategy_free`. A factory
/// copies the strategy, so it may be freed once set.
pub struct DIFFUSION_RETRY_STRATEGY_T {
    pub(crate) inner: RetryStrategy,
}

/// Opaque error of the retry strategy constructors.
pub struct DIFFUSION_API_ERROR_T {
    code: c_int,
    description: CString,
}

handles! {
    Owned: DIFFUSION_RETRY_STRATEGY_T, DIFFUSION_API_ERROR_T;
    Borrowed: DIFFUSION_API_ERROR;
}

/// Handle to an API error: read with `get_diffusion_api_error_code` and
/// `get_diffusion_api_error_description`, release with `diffusion_api_error_free`.
pub type DIFFUSION_API_ERROR = *mut DIFFUSION_API_ERROR_T;

fn strategy_or_error(
    result: Result<RetryStrategy>,
    api_error: *mut DIFFUSION_API_ERROR,
) -> *mut DIFFUSION_RETRY_STRATEGY_T {
    let (strategy, error) = match result {
        Ok(inner) => (to_owned_ptr(DIFFUSION_RETRY_STRATEGY_T { inner }), None),
        Err(e) => (std::ptr::null_mut(), Some(e)),
    };
    // SAFETY: `api_error` is NULL or points to caller storage for one handle.
    unsafe { fill(api_error, || error.map_or(std::ptr::null_mut(), |e| new_api_error(&e))) };
    strategy
}

fn new_api_error(e: &Error) -> DIFFUSION_API_ERROR {
    let code = ERROR_CODE_T::from(e.code()) as c_int;
    let description = CString::new(e.message().replace('\0', " ")).unwrap_or_default();
    to_owned_ptr(DIFFUSION_API_ERROR_T { code, description })
}

/// Retries `attempts` times, `interval` milliseconds apart (also the wait before the first retry).
///
/// Returns a new strategy owned by the caller, or NULL when `interval` or `attempts` is 0; then
/// `*api_error` (when `api_error` is not NULL) receives an error to release with
/// `diffusion_api_error_free`, and is set to NULL on success.
#[no_mangle]
pub unsafe extern "C" fn diffusion_retry_strategy_create(
    interval: u32,
    attempts: u32,
    api_error: *mut DIFFUSION_API_ERROR,
) -> *mut DIFFUSION_RETRY_STRATEGY_T {
    guard(std::ptr::null_mut(), || strategy_or_error(RetryStrategy::fixed(interval, attempts), api_error))
}

/// Retries every `interval` milliseconds until the session is closed.
///
/// Returns a new strategy owned by the caller, or NULL when `interval` is 0 (see
/// `diffusion_retry_strategy_create` for `api_error`).
#[no_mangle]
pub unsafe extern "C" fn diffusion_retry_strategy_create_interval_only(
    interval: u32,
    api_error: *mut DIFFUSION_API_ERROR,
) -> *mut DIFFUSION_RETRY_STRATEGY_T {
    guard(std::ptr::null_mut(), || strategy_or_error(RetryStrategy::forever(interval), api_error))
}

/// Exponential backoff with full jitter: retry n waits a random time between 0 and
/// `min(max_ms, initial_ms * 2^(n-1))`, so clients do not retry in step after an outage.
///
/// Returns a new strategy owned by the caller, or NULL when `initial_ms` or `attempts` is 0 or
/// `max_ms < initial_ms` (see `diffusion_retry_strategy_create` for `api_error`).
#[no_mangle]
pub unsafe extern "C" fn diffusion_retry_strategy_create_backoff(
    initial_ms: u32,
    max_ms: u32,
    attempts: u32,
    api_error: *mut DIFFUSION_API_ERROR,
) -> *mut DIFFUSION_RETRY_STRATEGY_T {
    guard(std::ptr::null_mut(), || strategy_or_error(RetryStrategy::backoff(initial_ms, max_ms, attempts), api_error))
}

/// A strategy that never retries (the default). Owned by the caller.
#[no_mangle]
pub extern "C" fn diffusion_retry_strategy_no_retry() -> *mut DIFFUSION_RETRY_STRATEGY_T {
    guard(std::ptr::null_mut(), || to_owned_ptr(DIFFUSION_RETRY_STRATEGY_T { inner: RetryStrategy::None }))
}

/// The interval in milliseconds (the initial delay for backoff); 0 for no retry or NULL.
#[no_mangle]
pub unsafe extern "C" fn diffusion_retry_strategy_get_interval(strategy: *mut DIFFUSION_RETRY_STRATEGY_T) -> u32 {
    guard(0, || borrow(strategy).map_or(0, |s| s.inner.interval_ms()))
}

/// The number of retries; 0 for no retry or NULL, UINT32_MAX for retrying until closed.
#[no_mangle]
pub unsafe extern "C" fn diffusion_retry_strategy_get_attempts(strategy: *mut DIFFUSION_RETRY_STRATEGY_T) -> u32 {
    guard(0, || borrow(strategy).map_or(0, |s| s.inner.attempts()))
}

/// Frees a strategy. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn diffusion_retry_strategy_free(strategy: *mut DIFFUSION_RETRY_STRATEGY_T) {
    guard((), || drop(take_owned(strategy)))
}

/// The error's code (an ERROR_CODE_T value); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn get_diffusion_api_error_code(error: DIFFUSION_API_ERROR) -> c_int {
    guard(0, || borrow(error).map_or(0, |e| e.code))
}

/// The error's description, valid until `diffusion_api_error_free`; NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn get_diffusion_api_error_description(error: DIFFUSION_API_ERROR) -> *const c_char {
    guard(std::ptr::null(), || borrow(error).map_or(std::ptr::null(), |e| e.description.as_ptr()))
}

/// Frees an API error. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn diffusion_api_error_free(error: DIFFUSION_API_ERROR) {
    guard((), || drop(take_owned(error)))
}
