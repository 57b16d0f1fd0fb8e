//! libsession: real-time client sessions over WebSocket, with a C ABI.
//!
//! Rust programs use [`session::Session`]; C programs use the functions declared in
//! `include/session.h`, which live in [`ffi`]. The wire protocol is in [`protocol`] and
//! `docs/PROTOCOL.md`. The server that comes with the library is a crate of its own in the same
//! workspace, `session-server` (session-server/), which uses [`protocol`] and the WebSocket
//! framing of [`transport`].

pub mod error;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod logging;
pub mod net;
pub mod protocol;
pub mod proxy;
pub mod reconnect;
pub mod retry;
pub mod runtime;
pub mod session;
pub mod tls;
pub mod transport;

pub use error::{Error, ErrorCode, Result};
pub use protocol::{Credentials, SessionId};
pub use retry::RetryStrategy;
pub use session::{Events, MessageHandler, Session, SessionConfig, SessionFactory, SessionOptions, State};
