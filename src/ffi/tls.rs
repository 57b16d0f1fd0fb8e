//! TLS settings on the factory: trusted CAs, server name, certificate validation callback.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::boundary::{c_string, guard, optional_str, OwnedContext};
use super::factory::{with_options, DIFFUSION_SESSION_FACTORY_T};
use super::handle::{copy_of, handles};
use super::types::ERROR_CODE_T;
use crate::error::Error;
use crate::tls::CertificateValidator;

/// Returned by a certificate validation callback to accept the connection.
pub const DIFFUSION_CERTIFICATE_ACCEPT: c_int = 1;
/// Returned by a certificate validation callback to reject the connection.
pub const DIFFUSION_CERTIFICATE_REJECT: c_int = 0;

/// One certificate, DER-encoded. Valid only during the callback.
#[repr(C)]
pub struct DIFFUSION_CERTIFICATE_T {
    /// The DER bytes.
    pub der: *const u8,
    /// Their number.
    pub length: usize,
}

/// A certificate validation callback, like .NET's CertificateValidation. The struct is copied.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DIFFUSION_CERTIFICATE_VALIDATION_T {
    /// Decides on every TLS connection, on a libsession I/O thread (on the calling thread while a
    /// blocking create connects), as a callback of the session it serves (see "Calls inside
    /// callbacks" at the top of this header): `host` is the name verified,
    /// `chain[0]` the server's certificate followed by the intermediates it sent, `verdict` the
    /// library's own verdict (DIFF_ERR_SUCCESS, or a DIFF_ERR_TLS_* code with `reason`, "" on
    /// success). Return DIFFUSION_CERTIFICATE_ACCEPT or DIFFUSION_CERTIFICATE_REJECT (rejection
    /// fails the session with DIFF_ERR_TLS_CERTIFICATE_REJECTED). Required.
    pub validate: Option<
        unsafe extern "C" fn(
            host: *const c_char,
            chain: *const DIFFUSION_CERTIFICATE_T,
            chain_length: usize,
            verdict: ERROR_CODE_T,
            reason: *const c_char,
            context: *mut c_void,
        ) -> c_int,
    >,
    /// Passed to every call; never dereferenced by the library.
    pub context: *mut c_void,
    /// Optional: called exactly once with `context` when no factory or session uses the callback
    /// any more.
    pub free_context: Option<unsafe extern "C" fn(context: *mut c_void)>,
}

handles! { Borrowed: DIFFUSION_CERTIFICATE_T, DIFFUSION_CERTIFICATE_VALIDATION_T; }

struct CValidator {
    validate: unsafe extern "C" fn(
        *const c_char,
        *const DIFFUSION_CERTIFICATE_T,
        usize,
        ERROR_CODE_T,
        *const c_char,
        *mut c_void,
    ) -> c_int,
    context: OwnedContext,
}

impl CertificateValidator for CValidator {
    fn validate(&self, host: &str, chain: &[&[u8]], verdict: Option<&Error>) -> bool {
        let certificates: Vec<DIFFUSION_CERTIFICATE_T> =
            chain.iter().map(|der| DIFFUSION_CERTIFICATE_T { der: der.as_ptr(), length: der.len() }).collect();
        let host = c_string(host);
        let code = verdict.map_or(ERROR_CODE_T::DIFF_ERR_SUCCESS, |e| e.code().into());
        let reason = c_string(verdict.map_or("", |e| e.message()));
        // SAFETY: every pointer outlives the call; the function and context are the caller's.
        let answer = unsafe {
            (self.validate)(
                host.as_ptr(),
                certificates.as_ptr(),
                certificates.len(),
                code,
                reason.as_ptr(),
                self.context.get(),
            )
        };
        answer == DIFFUSION_CERTIFICATE_ACCEPT
    }
}

/// Trusts the CA certificates in the PEM file at `pem_path`, in addition to the system's roots
/// (or instead of them after `diffusion_session_factory_trust_system_roots(factory, false)`).
/// May be called several times. The file is read at each connection; an unreadable file, one
/// without certificates, or one that is not a regular file of at most 4 MiB fails the session
/// with DIFF_ERR_ILLEGAL_ARGUMENT naming it. NULL
/// arguments: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_certificate_authority(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    pem_path: *const c_char,
) {
    if let Ok(Some(path)) = optional_str(pem_path, "pem_path") {
        let path = std::path::PathBuf::from(path);
        with_options(factory, |o| o.tls.extra_roots.push(path));
    }
}

/// Whether the system's root certificates are trusted (default true). With false, only the CAs
/// given with `diffusion_session_factory_certificate_authority` are. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_trust_system_roots(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    trust: bool,
) {
    with_options(factory, |o| o.tls.system_roots = trust);
}

/// The name sent as SNI and checked against the server's certificate, instead of the URL's host
/// (for connecting by IP address, or through an address that differs from the certificate's
/// name); NULL restores the URL's host. NULL factory: no-op.
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_tls_server_name(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    name: *const c_char,
) {
    if let Ok(name) = optional_str(name, "name") {
        let name = name.map(str::to_string);
        with_options(factory, |o| o.tls.server_name = name);
    }
}

/// Sets the certificate validation callback (copied); NULL (or a NULL `validate`) removes it.
/// Host name verification and expiry checks stay on unless the callback accepts. NULL factory:
/// no-op (and `free_context` is not called).
#[no_mangle]
pub unsafe extern "C" fn diffusion_session_factory_certificate_validation(
    factory: *const DIFFUSION_SESSION_FACTORY_T,
    validation: *const DIFFUSION_CERTIFICATE_VALIDATION_T,
) {
    guard((), || {
        if factory.is_null() {
            return;
        }
        let validator: Option<Arc<dyn CertificateValidator>> = match copy_of(validation) {
            Some(DIFFUSION_CERTIFICATE_VALIDATION_T { validate: Some(validate), context, free_context }) => {
                Some(Arc::new(CValidator { validate, context: OwnedContext::new(context, free_context) }))
            }
            _ => None,
        };
        with_options(factory, |o| o.tls.validator = validator);
    })
}
