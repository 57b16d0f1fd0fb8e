//! Releasing error reports.

use super::boundary::guard;
use super::types::DIFFUSION_ERROR_T;

/// Frees the message of `error` and sets it to NULL; the struct itself belongs to the caller.
///
/// NULL `error` or NULL `error->message` does nothing, so calling it twice is safe.
/// Thread-safe for distinct errors.
#[no_mangle]
pub unsafe extern "C" fn diffusion_error_free(error: *mut DIFFUSION_ERROR_T) {
    guard((), || {
        if error.is_null() {
            return;
        }
        // Touch only the message field: the caller's `code` may hold any int.
        let message = std::ptr::addr_of_mut!((*error).message);
        if !(*message).is_null() {
            libc::free(*message as *mut libc::c_void);
            *message = std::ptr::null_mut();
        }
    })
}
