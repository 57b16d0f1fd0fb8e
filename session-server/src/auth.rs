//! The server's decision on a connect request, without I/O.

use super::sessions::same_secret;
use super::ServerConfig;
use session::protocol::{
    ConnectRequest, ConnectResponse, Credentials, ResponseCode, SessionId, MAX_VERSION, MIN_VERSION,
};

/// Accept or refuse, with the reason logged and sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    code: ResponseCode,
    version: u8,
    reason: String,
}

impl Decision {
    fn accepted_with(version: u8) -> Self {
        Decision { code: ResponseCode::Ok, version, reason: String::new() }
    }

    /// A refusal with `code` and a reason for the client.
    pub fn rejected(code: ResponseCode, reason: &str) -> Self {
        Decision { code, version: MAX_VERSION, reason: reason.to_string() }
    }

    /// Whether the session is accepted.
    pub fn accepted(&self) -> bool {
        self.code == ResponseCode::Ok
    }

    /// The response code.
    pub fn code(&self) -> ResponseCode {
        self.code
    }

    /// Why the session was refused (empty when accepted).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The CONNECT_RESPONSE for a refusal: no session id, no token.
    pub fn refusal(&self, config: &ServerConfig) -> ConnectResponse {
        self.response(config, self.code, SessionId::default(), Vec::new(), 0)
    }

    /// A CONNECT_RESPONSE with `code` (OK or RECONNECTED) for the session `id` and its `token`;
    /// `last_received` is the last message received from the client.
    pub fn response(
        &self,
        config: &ServerConfig,
        code: ResponseCode,
        id: SessionId,
        token: Vec<u8>,
        last_received: u64,
    ) -> ConnectResponse {
        ConnectResponse {
            version: self.version,
            code,
            session_id: id,
            token,
            ping_interval_ms: config.ping_interval.as_millis().clamp(1, u32::MAX as u128) as u32,
            max_frame_size: config.max_frame_size,
            last_received,
            message: self.reason.clone(),
        }
    }
}

/// Decides on a connect request: version first, then principal and credentials.
pub fn authenticate(config: &ServerConfig, request: &ConnectRequest) -> Decision {
    if request.min_version > request.max_version
        || request.max_version < MIN_VERSION
        || request.min_version > MAX_VERSION
    {
        return Decision::rejected(ResponseCode::Error, "no protocol version in common");
    }
    let version = request.max_version.min(MAX_VERSION);
    let known = match (&request.credentials, request.principal.is_empty()) {
        (Credentials::None, true) => config.allow_anonymous,
        (Credentials::Password(given), false) => matches(config.users.get(&request.principal), given),
        (Credentials::Custom(given), false) => matches(config.custom_credentials.get(&request.principal), given),
        _ => false,
    };
    if known {
        Decision::accepted_with(version)
    } else if request.principal.is_empty() && request.credentials == Credentials::None {
        Decision::rejected(ResponseCode::AuthenticationFailed, "anonymous sessions are not allowed")
    } else {
        Decision::rejected(ResponseCode::AuthenticationFailed, "unknown principal or wrong credentials")
    }
}

/// Whether `given` is the expected secret, compared in constant time.
fn matches(expected: Option<&Vec<u8>>, given: &[u8]) -> bool {
    expected.is_some_and(|expected| same_secret(expected, given))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        let mut c = ServerConfig::default();
        c.users.insert("alice".into(), b"secret".to_vec());
        c.custom_credentials.insert("svc".into(), vec![1, 2, 3]);
        c
    }

    fn request(principal: &str, credentials: Credentials) -> ConnectRequest {
        ConnectRequest {
            min_version: 1,
            max_version: 1,
            principal: principal.into(),
            credentials,
            ..Default::default()
        }
    }

    #[test]
    fn right_password_is_accepted() {
        assert!(authenticate(&config(), &request("alice", Credentials::Password(b"secret".to_vec()))).accepted());
    }

    #[test]
    fn wrong_password_or_unknown_principal_fails_authentication() {
        for r in [
            request("alice", Credentials::Password(b"wrong".to_vec())),
            request("bob", Credentials::Password(b"secret".to_vec())),
            request("alice", Credentials::None),
            request("alice", Credentials::Custom(b"secret".to_vec())),
        ] {
            assert_eq!(authenticate(&config(), &r).code(), ResponseCode::AuthenticationFailed);
        }
    }

    #[test]
    fn custom_credentials_are_compared_as_bytes() {
        assert!(authenticate(&config(), &request("svc", Credentials::Custom(vec![1, 2, 3]))).accepted());
        assert!(!authenticate(&config(), &request("svc", Credentials::Custom(vec![1, 2]))).accepted());
    }

    #[test]
    fn anonymous_only_when_allowed() {
        let anonymous = request("", Credentials::None);
        assert!(!authenticate(&config(), &anonymous).accepted());
        let mut open = config();
        open.allow_anonymous = true;
        assert!(authenticate(&open, &anonymous).accepted());
    }

    #[test]
    fn no_common_version_is_an_error_naming_ours() {
        let mut r = request("alice", Credentials::Password(b"secret".to_vec()));
        r.min_version = 7;
        r.max_version = 9;
        let d = authenticate(&config(), &r);
        assert_eq!(d.code(), ResponseCode::Error);
        assert_eq!(d.refusal(&config()).version, MAX_VERSION);
    }

    #[test]
    fn refusals_carry_no_session_id_or_token() {
        let d = authenticate(&config(), &request("bob", Credentials::None));
        let r = d.refusal(&config());
        assert_eq!(r.session_id, SessionId::default());
        assert!(r.token.is_empty());
    }
}
