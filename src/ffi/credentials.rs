//! CREDENTIALS_T: what a session presents to the server besides its principal.

use std::ffi::{c_char, c_ulong};

use super::boundary::guard;
use crate::protocol::Credentials;

/// Opaque credentials. Create with a `credentials_create_*` function, release with
/// `credentials_free`. Sessions copy what they need, so credentials may be freed once the session
/// has been created.
pub struct CREDENTIALS_T {
    pub(crate) inner: Credentials,
}

fn boxed(inner: Credentials) -> *mut CREDENTIALS_T {
    Box::into_raw(Box::new(CREDENTIALS_T { inner }))
}

/// Creates empty credentials (anonymous or principal-only sessions).
///
/// Returns a new object owned by the caller, to release with `credentials_free`.
#[no_mangle]
pub extern "C" fn credentials_create_none() -> *mut CREDENTIALS_T {
    guard(std::ptr::null_mut(), || boxed(Credentials::None))
}

/// Creates password credentials from a NUL-terminated string (copied).
///
/// Returns NULL when `password` is NULL. The result is owned by the caller (`credentials_free`).
#[no_mangle]
pub unsafe extern "C" fn credentials_create_password(password: *const c_char) -> *mut CREDENTIALS_T {
    guard(std::ptr::null_mut(), || {
        if password.is_null() {
            return std::ptr::null_mut();
        }
        let bytes = std::ffi::CStr::from_ptr(password).to_bytes().to_vec();
        boxed(Credentials::Password(bytes))
    })
}

/// Creates custom credentials from `len` bytes at `data` (copied; may contain NULs).
///
/// Returns NULL when `data` is NULL and `len` is not 0. The result is owned by the caller
/// (`credentials_free`).
#[no_mangle]
pub unsafe extern "C" fn credentials_create_custom(data: *const c_char, len: c_ulong) -> *mut CREDENTIALS_T {
    guard(std::ptr::null_mut(), || {
        let bytes = match (data.is_null(), len) {
            (_, 0) => Vec::new(),
            (true, _) => return std::ptr::null_mut(),
            (false, n) => std::slice::from_raw_parts(data as *const u8, n as usize).to_vec(),
        };
        boxed(Credentials::Custom(bytes))
    })
}

/// Frees credentials. NULL does nothing. The secret is overwritten before the memory is released.
#[no_mangle]
pub unsafe extern "C" fn credentials_free(credentials: *mut CREDENTIALS_T) {
    guard((), || {
        if credentials.is_null() {
            return;
        }
        let mut owned = Box::from_raw(credentials);
        if let Credentials::Password(b) | Credentials::Custom(b) = &mut owned.inner {
            b.iter_mut().for_each(|x| *x = 0);
        }
    })
}
