//! The SOCKS5 client handshake (RFC 1928, with RFC 1929 username/password), as a state machine:
//! bytes in, the next bytes to send (or done) out.

use std::net::IpAddr;

use crate::error::{Error, ErrorCode, Result};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;

/// Where the tunnel should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name the proxy resolves (socks5h).
    Domain(String),
    /// An address resolved by the client (socks5).
    Ip(IpAddr),
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes, then feed the answer.
    Send(Vec<u8>),
    /// The tunnel is open.
    Done,
}

#[derive(Debug)]
enum State {
    MethodChoice,
    AuthReply,
    ConnectReply,
    Done,
}

/// One SOCKS5 handshake.
#[derive(Debug)]
pub struct Socks5Handshake {
    state: State,
    target: Target,
    port: u16,
    credentials: Option<(String, String)>,
    proxy: String,
}

impl Socks5Handshake {
    /// A handshake with `proxy` (host:port, for messages) for `target`:`port`; returns it with the
    /// greeting to send. Names and credentials longer than 255 bytes are refused.
    pub fn new(
        proxy: &str,
        target: Target,
        port: u16,
        credentials: Option<(String, String)>,
    ) -> Result<(Self, Vec<u8>)> {
        if let Target::Domain(name) = &target {
            if name.is_empty() || name.len() > 255 {
                return Err(Error::illegal_argument(format!("host name '{name}' cannot be sent through SOCKS5")));
            }
        }
        if let Some((user, password)) = &credentials {
            if user.is_empty() || user.len() > 255 || password.len() > 255 {
                return Err(Error::illegal_argument("SOCKS5 user names and passwords are 1 to 255 bytes"));
            }
        }
        let greeting = match credentials {
            Some(_) => vec![VERSION, 2, NO_AUTH, USER_PASS],
            None => vec![VERSION, 1, NO_AUTH],
        };
        let handshake =
            Socks5Handshake { state: State::MethodChoice, target, port, credentials, proxy: proxy.to_string() };
        Ok((handshake, greeting))
    }

    /// Consumes the proxy's answer from the front of `input`. Returns how many bytes were used and
    /// the next step, or `None` if more bytes are needed.
    pub fn receive(&mut self, input: &[u8]) -> Result<Option<(usize, Step)>> {
        match self.state {
            State::MethodChoice => {
                let Some(reply) = input.get(..2) else { return Ok(None) };
                self.check_version(reply[0])?;
                match (reply[1], &self.credentials) {
                    (NO_AUTH, _) => self.send_connect(2),
                    (USER_PASS, Some((user, password))) => {
                        let mut auth = vec![1, user.len() as u8];
                        auth.extend_from_slice(user.as_bytes());
                        auth.push(password.len() as u8);
                        auth.extend_from_slice(password.as_bytes());
                        self.state = State::AuthReply;
                        Ok(Some((2, Step::Send(auth))))
                    }
                    (NO_ACCEPTABLE | USER_PASS, None) => Err(self.auth_error("it requires a user name and password")),
                    (NO_ACCEPTABLE, Some(_)) => Err(self.auth_error("it accepts none of the offered methods")),
                    (other, _) => {
                        Err(self
                            .protocol_error(&format!("it chose authentication method {other}, which was not offered")))
                    }
                }
            }
            State::AuthReply => {
                let Some(reply) = input.get(..2) else { return Ok(None) };
                if reply[1] != 0 {
                    return Err(self.auth_error("the user name or password was refused"));
                }
                self.send_connect(2)
            }
            State::ConnectReply => {
                let Some(head) = input.get(..4) else { return Ok(None) };
                self.check_version(head[0])?;
                if head[1] != 0 {
                    return Err(self.refusal(head[1]));
                }
                let address_len = match head[3] {
                    1 => 4,
                    4 => 16,
                    3 => match input.get(4) {
                        Some(n) => 1 + *n as usize,
                        None => return Ok(None),
                    },
                    other => return Err(self.protocol_error(&format!("it answered with address type {other}"))),
                };
                let total = 4 + address_len + 2;
                if input.len() < total {
                    return Ok(None);
                }
                self.state = State::Done;
                Ok(Some((total, Step::Done)))
            }
            State::Done => Ok(Some((0, Step::Done))),
        }
    }

    fn send_connect(&mut self, consumed: usize) -> Result<Option<(usize, Step)>> {
        let mut request = vec![VERSION, 1, 0];
        match &self.target {
            Target::Ip(IpAddr::V4(a)) => {
                request.push(1);
                request.extend_from_slice(&a.octets());
            }
            Target::Ip(IpAddr::V6(a)) => {
                request.push(4);
                request.extend_from_slice(&a.octets());
            }
            Target::Domain(name) => {
                request.push(3);
                request.push(name.len() as u8);
                request.extend_from_slice(name.as_bytes());
            }
        }
        request.extend_from_slice(&self.port.to_be_bytes());
        self.state = State::ConnectReply;
        Ok(Some((consumed, Step::Send(request))))
    }

    fn check_version(&self, version: u8) -> Result<()> {
        if version == VERSION {
            Ok(())
        } else {
            Err(self.protocol_error(&format!("it answered with version {version}; it is not a SOCKS5 proxy")))
        }
    }

    fn protocol_error(&self, what: &str) -> Error {
        Error::new(ErrorCode::ProxyProtocolError, format!("SOCKS5 proxy {}: {what}", self.proxy))
    }

    fn auth_error(&self, what: &str) -> Error {
        Error::new(
            ErrorCode::ProxyAuthenticationFailed,
            format!("SOCKS5 proxy {} refused authentication: {what}", self.proxy),
        )
    }

    fn refusal(&self, code: u8) -> Error {
        let (reason, target_down) = match code {
            1 => ("general failure", false),
            2 => ("connection not allowed by its rules", false),
            3 => ("network unreachable", true),
            4 => ("host unreachable", true),
            5 => ("connection refused by the target", true),
            6 => ("TTL expired", true),
            7 => ("command not supported", false),
            8 => ("address type not supported", false),
            _ => ("unknown reply", false),
        };
        let target = match &self.target {
            Target::Domain(d) => d.clone(),
            Target::Ip(ip) => ip.to_string(),
        };
        let error = Error::new(
            ErrorCode::ProxyTunnelRefused,
            format!(
                "SOCKS5 proxy {} refused the tunnel to {target}:{}: {reason} (reply {code})",
                self.proxy, self.port
            ),
        );
        // The proxy works but the server is down or unreachable: worth retrying.
        if target_down {
            error.try_later()
        } else {
            error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Target {
        Target::Domain("example.com".into())
    }

    #[test]
    fn without_credentials_only_no_auth_is_offered() {
        let (mut h, greeting) = Socks5Handshake::new("p:1080", domain(), 80, None).unwrap();
        assert_eq!(greeting, vec![5, 1, 0]);
        let (used, step) = h.receive(&[5, 0]).unwrap().unwrap();
        assert_eq!(used, 2);
        let mut expected = vec![5, 1, 0, 3, 11];
        expected.extend_from_slice(b"example.com");
        expected.extend_from_slice(&[0, 80]);
        assert_eq!(step, Step::Send(expected));
        assert_eq!(h.receive(&[5, 0, 0, 1, 127, 0, 0]).unwrap(), None, "waits for the whole reply");
        assert_eq!(h.receive(&[5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]).unwrap(), Some((10, Step::Done)));
    }

    #[test]
    fn username_and_password_are_sent_when_chosen() {
        let creds = Some(("user".to_string(), "pw".to_string()));
        let (mut h, greeting) =
            Socks5Handshake::new("p:1080", Target::Ip("10.0.0.1".parse().unwrap()), 443, creds).unwrap();
        assert_eq!(greeting, vec![5, 2, 0, 2]);
        let (_, step) = h.receive(&[5, 2]).unwrap().unwrap();
        assert_eq!(step, Step::Send(vec![1, 4, b'u', b's', b'e', b'r', 2, b'p', b'w']));
        let (_, step) = h.receive(&[1, 0]).unwrap().unwrap();
        assert_eq!(step, Step::Send(vec![5, 1, 0, 1, 10, 0, 0, 1, 1, 187]));
        let reply = [5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 1];
        assert_eq!(h.receive(&reply).unwrap(), Some((10, Step::Done)));
    }

    #[test]
    fn refused_credentials_are_an_authentication_error_without_them() {
        let creds = Some(("user".to_string(), "hunter2".to_string()));
        let (mut h, _) = Socks5Handshake::new("p:1080", domain(), 80, creds).unwrap();
        h.receive(&[5, 2]).unwrap();
        let e = h.receive(&[1, 1]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyAuthenticationFailed);
        assert!(!e.message().contains("hunter2"));
    }

    #[test]
    fn a_proxy_demanding_credentials_we_lack_is_an_authentication_error() {
        let (mut h, _) = Socks5Handshake::new("p:1080", domain(), 80, None).unwrap();
        assert_eq!(h.receive(&[5, 0xff]).unwrap_err().code(), ErrorCode::ProxyAuthenticationFailed);
    }

    #[test]
    fn connect_refusals_name_the_reason() {
        let (mut h, _) = Socks5Handshake::new("p:1080", domain(), 80, None).unwrap();
        h.receive(&[5, 0]).unwrap();
        let e = h.receive(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProxyTunnelRefused);
        assert!(e.message().contains("connection refused") && e.message().contains("example.com:80"));
        assert!(e.is_transient());
        let (mut h, _) = Socks5Handshake::new("p:1080", domain(), 80, None).unwrap();
        h.receive(&[5, 0]).unwrap();
        assert!(!h.receive(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap_err().is_transient());
    }

    #[test]
    fn something_that_is_not_socks5_is_a_protocol_error() {
        let (mut h, _) = Socks5Handshake::new("p:1080", domain(), 80, None).unwrap();
        assert_eq!(h.receive(b"HTTP/1.1 400").unwrap_err().code(), ErrorCode::ProxyProtocolError);
    }

    #[test]
    fn overlong_names_and_credentials_are_refused() {
        assert!(Socks5Handshake::new("p:1", Target::Domain("a".repeat(256)), 1, None).is_err());
        assert!(Socks5Handshake::new("p:1", domain(), 1, Some(("u".into(), "p".repeat(256)))).is_err());
    }
}
