//! The C boundary: every `extern "C"` function, raw pointer and `unsafe` block of the library.
//!
//! Each function checks and converts its arguments, runs the safe Rust API inside a panic guard
//! and converts the result back. Types here are named as in the C header.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

mod boundary;
pub mod credentials;
pub mod error;
pub mod factory;
pub(crate) mod handle;
pub mod library;
pub mod messaging;
pub mod proxy;
pub mod reconnect;
pub mod retry;
pub mod session;
pub mod tls;
pub mod transport;
pub mod types;

#[cfg(test)]
mod tests {
    #[test]
    fn committed_header_matches_the_sources() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/session.h"));
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/session.h"))
            .expect("include/session.h exists");
        assert!(generated == committed, "include/session.h differs from what src/ffi generates: run `make header`");
    }
}
