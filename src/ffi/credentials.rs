//! CREDENTIALS_T: what a session presents to the server besides its principal.

use std::ffi::{c_char, c_ulong};

use super::boundary::{bytes, c_bytes, guard};
use super::handle::{handles, take_owned, to_owned_ptr};
use crate::protocol::Credentials;

/// Opaque credentials. Create with a `credentials_create_*` function, release with
/// `credentials_free`. Sessions copy what they need, so credentials may be freed once the session
/// has been created.
pub struct CREDENTIALS_T {
    pub(crate) inner: Credentials,
}

handles! { Owned: CREDENTIALS_T; }

fn boxed(inner: Credentials) -> *mut CREDENTIALS_T {
    to_owned_ptr(CREDENTIALS_T { inner })
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
    guard(std::ptr::null_mut(), || match c_bytes(password) {
        Some(password) => boxed(Credentials::Password(password.to_vec())),
        None => std::ptr::null_mut(),
    })
}

/// Creates custom credentials from `len` bytes at `data` (copied; may contain NULs).
///
/// Returns NULL when `data` is NULL and `len` is not 0. The result is owned by the caller
/// (`credentials_free`).
#[no_mangle]
pub unsafe extern "C" fn credentials_create_custom(data: *const c_char, len: c_ulong) -> *mut CREDENTIALS_T {
    guard(std::ptr::null_mut(), || match bytes(data as *const std::ffi::c_void, len as usize, "data") {
        Ok(data) => boxed(Credentials::Custom(data.to_vec())),
        Err(_) => std::ptr::null_mut(),
    })
}

/// Frees credentials. NULL does nothing. The secret is overwritten before the memory is released.
#[no_mangle]
pub unsafe extern "C" fn credentials_free(credentials: *mut CREDENTIALS_T) {
    guard((), || {
        if let Some(mut owned) = take_owned(credentials) {
            if let Credentials::Password(b) | Credentials::Custom(b) = &mut owned.inner {
                b.iter_mut().for_each(|x| *x = 0);
            }
        }
    })
}
