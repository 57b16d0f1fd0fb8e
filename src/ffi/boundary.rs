//! Helpers every exported function uses: the panic guard, C string conversion, error reporting.

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::handle::{array, fill, UserPointer};
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

/// Borrows the bytes of a C string (any encoding), without its NUL; `None` for NULL.
pub(crate) unsafe fn c_bytes<'a>(ptr: *const c_char) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_bytes())
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

/// A string for C, with any NUL turned into a space; one allocation.
pub(crate) fn c_string(text: &str) -> std::ffi::CString {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend(text.bytes().map(nul_as_space));
    // SAFETY: every NUL was replaced above.
    unsafe { std::ffi::CString::from_vec_unchecked(bytes) }
}

/// A byte of a string for C: a NUL would end it early.
fn nul_as_space(b: u8) -> u8 {
    if b == 0 {
        b' '
    } else {
        b
    }
}

/// Runs `body` with `text` as a C string, any NUL turned into a space: on the stack when it is
/// short (the path handed to a message handler with each delivery), else in one allocation.
pub(crate) fn with_c_str<R>(text: &str, body: impl FnOnce(&std::ffi::CStr) -> R) -> R {
    const INLINE: usize = 256;
    if text.len() < INLINE {
        let mut buf = [0u8; INLINE];
        for (to, b) in buf.iter_mut().zip(text.bytes()) {
            *to = nul_as_space(b);
        }
        if let Ok(inline) = std::ffi::CStr::from_bytes_with_nul(&buf[..=text.len()]) {
            return body(inline);
        }
    }
    body(&c_string(text))
}

/// Fills `*out` (when not NULL) with `error`; the message is `malloc`ed.
pub(crate) unsafe fn report(out: *mut DIFFUSION_ERROR_T, error: &Error) {
    fill(out, || DIFFUSION_ERROR_T::from_error(error));
}

/// Frees the `malloc`ed message of the caller's error report and sets it to NULL; NULL `error` or
/// message does nothing. Only the message field is touched: the caller's `code` may hold any int.
pub(crate) unsafe fn release_message(error: *mut DIFFUSION_ERROR_T) {
    if error.is_null() {
        return;
    }
    let message = std::ptr::addr_of_mut!((*error).message);
    if !(*message).is_null() {
        libc::free(*message as *mut c_void);
        *message = std::ptr::null_mut();
    }
}

/// Borrows `len` bytes at `data` for the length of a call: empty when `len` is 0 (whatever
/// `data` is), an error naming `what` when `data` is NULL with a non-zero `len`.
pub(crate) unsafe fn bytes<'a>(data: *const c_void, len: usize, what: &str) -> Result<&'a [u8]> {
    array(data as *const u8, len)
        .ok_or_else(|| Error::illegal_argument(format!("{what} is NULL but its length is not 0")))
}

/// A caller's context pointer with its optional release function, called exactly once when the
/// last owner is dropped (after every callback that uses it has returned).
pub(crate) struct OwnedContext {
    context: UserPointer,
    free: Option<unsafe extern "C" fn(context: *mut c_void)>,
}

impl OwnedContext {
    pub(crate) fn new(context: *mut c_void, free: Option<unsafe extern "C" fn(context: *mut c_void)>) -> Self {
        OwnedContext { context: UserPointer::new(context), free }
    }

    pub(crate) fn get(&self) -> *mut c_void {
        self.context.get()
    }
}

impl Drop for OwnedContext {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the caller's function with the caller's context, called once.
            unsafe { free(self.context.get()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_c_string_for_a_callback_is_the_text_with_nuls_as_spaces_at_any_length() {
        for text in ["", "a/b", "a\0b", &"p".repeat(255), &"q".repeat(256), &format!("{}\0", "r".repeat(300))] {
            let expected = text.replace('\0', " ");
            with_c_str(text, |c| assert_eq!(c.to_str().unwrap(), expected));
            assert_eq!(c_string(text).to_str().unwrap(), expected);
        }
    }
}
