//! The C boundary: every `extern "C"` function, raw pointer and `unsafe` block of the library.
//!
//! Each function checks and converts its arguments, runs the safe Rust API inside a panic guard
//! and converts the result back. Types here are named as in the C header.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

mod boundary;
pub mod credentials;
pub mod error;
pub mod session;
pub mod types;
