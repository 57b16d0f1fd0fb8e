//! Releasing error reports.

use super::boundary::{guard, release_message};
use super::types::DIFFUSION_ERROR_T;

/// Frees the message of `error` and sets it to NULL; the struct itself belongs to the caller.
///
/// NULL `error` or NULL `error->message` does nothing, so calling it twice is safe.
/// Thread-safe for distinct errors.
#[no_mangle]
pub unsafe extern "C" fn diffusion_error_free(error: *mut DIFFUSION_ERROR_T) {
    guard((), || release_message(error))
}
