//! The server's decision on a connect request, without I/O.
//!
//! The command line's users (`--user`) and custom credentials are compared as bytes at once. The
//! configuration file's users are verified against their argon2 hashes, which takes milliseconds
//! by design: [`check`] hands that part back as a [`PasswordCheck`] for the caller to run off
//! the async executor's threads.

use super::policy::{PasswordHash, Policy};
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

/// A connect request's decision, or the password verification it waits for.
pub(crate) enum Check {
    /// Decided.
    Done(Decision),
    /// Decided by an argon2 verification.
    Password(PasswordCheck),
}

/// A password to verify against a configuration file user's argon2 hash.
pub(crate) struct PasswordCheck {
    version: u8,
    hash: PasswordHash,
    password: Vec<u8>,
    /// Whether the hash is the user's, not a decoy for a principal the file does not have.
    known: bool,
}

impl PasswordCheck {
    /// Verifies the password: CPU-bound for milliseconds.
    pub(crate) fn run(self) -> Decision {
        // The decoy is verified too, so that an unknown principal's refusal takes as long.
        let verified = self.hash.verify(&self.password);
        decide(self.version, verified && self.known, false)
    }
}

/// Decides on a connect request: version first, then principal and credentials, with the
/// command line's users and custom credentials in `config` and the file's users in `policy`.
pub(crate) fn check(config: &ServerConfig, policy: &Policy, request: &ConnectRequest) -> Check {
    if request.min_version > request.max_version
        || request.max_version < MIN_VERSION
        || request.min_version > MAX_VERSION
    {
        return Check::Done(Decision::rejected(ResponseCode::Error, "no protocol version in common"));
    }
    let version = request.max_version.min(MAX_VERSION);
    let anonymous = request.principal.is_empty() && request.credentials == Credentials::None;
    let known = match (&request.credentials, request.principal.is_empty()) {
        (Credentials::None, true) => policy.admits_anonymous(),
        (Credentials::Password(given), false) => match config.users.get(&request.principal) {
            Some(expected) => same_secret(expected, given),
            None => match policy.password_hash(&request.principal) {
                Some((hash, known)) => {
                    let (hash, password) = (hash.clone(), given.clone());
                    return Check::Password(PasswordCheck { version, hash, password, known });
                }
                None => false,
            },
        },
        (Credentials::Custom(given), false) => matches(config.custom_credentials.get(&request.principal), given),
        _ => false,
    };
    Check::Done(decide(version, known, anonymous))
}

/// [`check`], with any password verification on the calling thread.
pub fn authenticate(config: &ServerConfig, policy: &Policy, request: &ConnectRequest) -> Decision {
    match check(config, policy, request) {
        Check::Done(decision) => decision,
        Check::Password(check) => check.run(),
    }
}

fn decide(version: u8, known: bool, anonymous: bool) -> Decision {
    if known {
        Decision::accepted_with(version)
    } else if anonymous {
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

    /// The decision of a server with `config`, its file users verified on this thread.
    fn auth(config: &ServerConfig, request: &ConnectRequest) -> Decision {
        authenticate(config, &config.policy(), request)
    }

    /// A server with `config()`'s users and a configuration file's user "carol" (password
    /// "file-pw") and anonymous roles.
    fn with_file() -> ServerConfig {
        let mut c = config();
        c.access.users.insert(
            "carol".into(),
            crate::policy::User { password_hash: crate::policy::cheap_hash("file-pw"), roles: vec![] },
        );
        c.access.anonymous = Some(vec![]);
        c
    }

    fn password(principal: &str, password: &str) -> ConnectRequest {
        request(principal, Credentials::Password(password.as_bytes().to_vec()))
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
        assert!(auth(&config(), &request("alice", Credentials::Password(b"secret".to_vec()))).accepted());
    }

    #[test]
    fn wrong_password_or_unknown_principal_fails_authentication() {
        for r in [
            request("alice", Credentials::Password(b"wrong".to_vec())),
            request("bob", Credentials::Password(b"secret".to_vec())),
            request("alice", Credentials::None),
            request("alice", Credentials::Custom(b"secret".to_vec())),
        ] {
            assert_eq!(auth(&config(), &r).code(), ResponseCode::AuthenticationFailed);
        }
    }

    #[test]
    fn custom_credentials_are_compared_as_bytes() {
        assert!(auth(&config(), &request("svc", Credentials::Custom(vec![1, 2, 3]))).accepted());
        assert!(!auth(&config(), &request("svc", Credentials::Custom(vec![1, 2]))).accepted());
    }

    #[test]
    fn anonymous_only_when_allowed() {
        let anonymous = request("", Credentials::None);
        assert!(!auth(&config(), &anonymous).accepted());
        let mut open = config();
        open.allow_anonymous = true;
        assert!(auth(&open, &anonymous).accepted());
    }

    #[test]
    fn no_common_version_is_an_error_naming_ours() {
        let mut r = request("alice", Credentials::Password(b"secret".to_vec()));
        r.min_version = 7;
        r.max_version = 9;
        let d = auth(&config(), &r);
        assert_eq!(d.code(), ResponseCode::Error);
        assert_eq!(d.refusal(&config()).version, MAX_VERSION);
    }

    #[test]
    fn refusals_carry_no_session_id_or_token() {
        let d = auth(&config(), &request("bob", Credentials::None));
        let r = d.refusal(&config());
        assert_eq!(r.session_id, SessionId::default());
        assert!(r.token.is_empty());
    }

    #[test]
    fn a_file_user_is_accepted_with_the_password_its_hash_verifies() {
        assert!(auth(&with_file(), &password("carol", "file-pw")).accepted());
        for r in [password("carol", "wrong"), password("carol", ""), request("carol", Credentials::None)] {
            assert_eq!(auth(&with_file(), &r).code(), ResponseCode::AuthenticationFailed);
        }
    }

    #[test]
    fn a_file_users_password_is_checked_apart_from_the_decision() {
        let c = with_file();
        let Check::Password(check) = check(&c, &c.policy(), &password("carol", "file-pw")) else {
            panic!("a file user's password is verified apart");
        };
        assert!(check.run().accepted());
        assert!(matches!(check_of(&c, &password("alice", "secret")), Check::Done(d) if d.accepted()));
    }

    fn check_of(c: &ServerConfig, r: &ConnectRequest) -> Check {
        check(c, &c.policy(), r)
    }

    #[test]
    fn an_unknown_principal_is_refused_after_a_decoy_verification_when_the_file_has_users() {
        let c = with_file();
        let Check::Password(check) = check_of(&c, &password("mallory", "file-pw")) else {
            panic!("an unknown principal's password is verified against a decoy");
        };
        assert_eq!(check.run().reason(), "unknown principal or wrong credentials");
    }

    #[test]
    fn the_command_line_user_of_a_name_takes_the_place_of_the_file_user() {
        let mut c = with_file();
        c.users.insert("carol".into(), b"cli-pw".to_vec());
        assert!(auth(&c, &password("carol", "cli-pw")).accepted());
        assert!(!auth(&c, &password("carol", "file-pw")).accepted());
    }

    #[test]
    fn an_anonymous_table_admits_anonymous_sessions() {
        assert!(auth(&with_file(), &request("", Credentials::None)).accepted());
    }
}
