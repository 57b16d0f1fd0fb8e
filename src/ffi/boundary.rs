//! Helpers every exported function uses: the panic guard, C string conversion, error reporting.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::types::DIFFUSION_ERROR_T;
use crate::error::{Error, ErrorCode, Result};

/// Runs `body`, turning a panic into `on_panic` so that no unwinding crosses into C.
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// The error reported when a panic was caught.
pub(crate) fn internal_error() -> Error {
    Error::new(ErrorCode::Unknown, "internal error in libsession (a bug): the call was abandoned")
}

/// Borrows a required C string argument.
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    optional_str(ptr, what)?.ok_or_else(|| Error::illegal_argument(format!("{what} is NULL")))
}

/// Borrows an optional C string argument (NULL is `None`).
pub(crate) unsafe fn optional_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    CStr::from_ptr(ptr).to_str().map(Some).map_err(|_| Error::illegal_argument(format!("{what} is not valid UTF-8")))
}

/// A copy of `text` in memory from `malloc`, for the caller to `free()`. Interior NULs end the string.
pub(crate) fn malloc_string(text: &str) -> *mut c_char {
    let bytes = text.as_bytes();
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    // SAFETY: we allocate len + 1 bytes, copy len bytes into them and terminate with NUL.
    unsafe {
        let out = libc::malloc(len + 1) as *mut c_char;
        if out.is_null() {
            return out;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, out, len);
        *out.add(len) = 0;
        out
    }
}

/// A string for C, with any NUL turned into a space.
pub(crate) fn c_string(text: &str) -> std::ffi::CString {
    std::ffi::CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Fills `*out` (when not NULL) with `error`; the message is `malloc`ed.
pub(crate) unsafe fn report(out: *mut DIFFUSION_ERROR_T, error: &Error) {
    // Written without reading: the caller's struct may be uninitialised.
    if !out.is_null() {
        out.write(DIFFUSION_ERROR_T::from_error(error));
    }
}

/// A caller's context pointer with its optional release function, called exactly once when the
/// last owner is dropped (after every callback that uses it has returned).
pub(crate) struct OwnedContext {
    context: *mut std::ffi::c_void,
    free: Option<unsafe extern "C" fn(context: *mut std::ffi::c_void)>,
}

// SAFETY: the pointer is only handed back to the caller's own functions; the API documents that
// they run on libsession threads.
unsafe impl Send for OwnedContext {}
unsafe impl Sync for OwnedContext {}

impl OwnedContext {
    pub(crate) fn new(
        context: *mut std::ffi::c_void,
        free: Option<unsafe extern "C" fn(context: *mut std::ffi::c_void)>,
    ) -> Self {
        OwnedContext { context, free }
    }

    pub(crate) fn get(&self) -> *mut std::ffi::c_void {
        self.context
    }
}

impl Drop for OwnedContext {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the caller's function with the caller's context, called once.
            unsafe { free(self.context) };
        }
    }
}
