//! What a session needs to know before it connects.

use std::time::Duration;

use super::url::ServerUrl;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{Credentials, DEFAULT_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE};

/// Default bound on one connection attempt (TCP connect, upgrade and handshake).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A session's settings. Build with [`SessionConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to connect.
    pub url: ServerUrl,
    /// Who the client says it is; empty for anonymous.
    pub principal: String,
    /// Proof of identity.
    pub credentials: Credentials,
    /// Session properties proposed to the server.
    pub properties: Vec<(String, String)>,
    /// Bound on one connection attempt.
    pub connection_timeout: Duration,
    /// Largest protocol frame this client accepts from the server.
    pub maximum_message_size: u32,
}

impl SessionConfig {
    /// Settings for `url` with defaults for everything else.
    pub fn new(url: &str) -> Result<SessionConfig> {
        let url = ServerUrl::parse(url)?;
        if url.secure {
            return Err(Error::new(
                ErrorCode::ConnectionUnsupported,
                format!("TLS (wss://) is not yet supported; cannot connect to {}", url.authority()),
            ));
        }
        Ok(SessionConfig {
            url,
            principal: String::new(),
            credentials: Credentials::None,
            properties: Vec::new(),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            maximum_message_size: DEFAULT_MAX_FRAME_SIZE,
        })
    }

    /// The frame size limit actually applied: never below what control frames need.
    pub fn frame_limit(&self) -> u32 {
        self.maximum_message_size.max(MIN_MAX_FRAME_SIZE)
    }
}
