//! TLS for wss:// sessions and https:// proxies: rustls with the system's roots, extra CAs,
//! server-name override, an application validation callback, and errors that say what went wrong.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, ErrorCode, Result};
use crate::net::Stream;

/// Decides whether to trust a server's certificate chain, given the library's own verdict.
pub trait CertificateValidator: Send + Sync {
    /// `chain[0]` is the server's certificate (DER), followed by the intermediates it sent.
    /// `verdict` is `None` when the library's checks passed, otherwise why they failed.
    /// Returns true to accept the connection, false to reject it.
    fn validate(&self, host: &str, chain: &[&[u8]], verdict: Option<&Error>) -> bool;
}

/// How TLS connections are verified.
#[derive(Clone)]
pub struct TlsOptions {
    /// Trust the system's root certificates (default true).
    pub system_roots: bool,
    /// PEM files of further CAs to trust: in addition to the system's roots, or instead of them
    /// when `system_roots` is false.
    pub extra_roots: Vec<PathBuf>,
    /// Name used for SNI and certificate verification instead of the URL's host (useful when
    /// connecting by IP address).
    pub server_name: Option<String>,
    /// Application callback with the final say.
    pub validator: Option<Arc<dyn CertificateValidator>>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { system_roots: true, extra_roots: Vec::new(), server_name: None, validator: None }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("system_roots", &self.system_roots)
            .field("extra_roots", &self.extra_roots)
            .field("server_name", &self.server_name)
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

/// The system's roots, read once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceCell<Vec<CertificateDer<'static>>> = OnceCell::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            tracing::warn!(errors = ?found.errors, "no system root certificates found");
        }
        found.certs
    })
}

fn root_store(options: &TlsOptions) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if options.system_roots {
        roots.add_parsable_certificates(system_roots().iter().cloned());
    }
    for path in &options.extra_roots {
        let bad =
            |why: String| Error::illegal_argument(format!("certificate authority file {}: {why}", path.display()));
        let pem = read_ca_file(path).map_err(bad)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// Largest certificate authority file read (a bundle of every public CA is about 250 KiB).
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// Reads a certificate authority file: a regular file of at most [`MAX_CA_FILE`] bytes. It is
/// opened without blocking, so that a FIFO or a device given by mistake is an error at once
/// instead of a read that never ends or never stops growing.
fn read_ca_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".into());
    }
    let too_large = || format!("it is larger than {} MiB", MAX_CA_FILE / (1024 * 1024));
    if metadata.len() > MAX_CA_FILE {
        return Err(too_large());
    }
    let mut pem = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_CA_FILE + 1).read_to_end(&mut pem).map_err(|e| e.to_string())?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(too_large());
    }
    Ok(pem)
}

/// Verifies with webpki, then lets the application's callback decide.
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    validator: Option<Arc<dyn CertificateValidator>>,
    host: String,
    authority: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("host", &self.host).finish()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        };
        let Some(validator) = &self.validator else { return verdict };
        let chain: Vec<&[u8]> =
            std::iter::once(end_entity.as_ref()).chain(intermediates.iter().map(|c| c.as_ref())).collect();
        let explained = verdict.as_ref().err().map(|e| explain(e, &self.authority, &self.host));
        if validator.validate(&self.host, &chain, explained.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs a TLS handshake over `stream` with `host` (`authority` is host:port, for messages).
pub(crate) async fn connect(stream: Stream, host: &str, authority: &str, options: &TlsOptions) -> Result<Stream> {
    let name = options.server_name.as_deref().unwrap_or(host).to_string();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| Error::illegal_argument(format!("'{name}' is not a valid TLS server name")))?;
    let provider = provider();
    let roots = root_store(options)?;
    let webpki = if roots.is_empty() {
        None
    } else {
        let built = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build();
        Some(built.map_err(|e| Error::illegal_argument(format!("cannot use the trusted certificates: {e}")))?)
    };
    let verifier = Verifier {
        webpki,
        validator: options.validator.clone(),
        host: name.clone(),
        authority: authority.to_string(),
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorCode::Unknown, format!("TLS set-up failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector.connect(server_name, stream).await.map_err(|e| handshake_error(e, authority, &name))?;
    Ok(Box::new(tls))
}

fn handshake_error(e: std::io::Error, authority: &str, name: &str) -> Error {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return explain(tls, authority, name);
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return Error::new(
            ErrorCode::TlsHandshakeFailed,
            format!("TLS handshake with {authority} failed: the connection closed before the handshake finished (does it speak TLS on this port?)"),
        );
    }
    Error::new(ErrorCode::TlsHandshakeFailed, format!("TLS handshake with {authority} failed: {e}"))
}

/// A rustls error as the library's error, naming the host and the reason.
fn explain(e: &rustls::Error, authority: &str, name: &str) -> Error {
    use CertificateError as C;
    let (code, why) = match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer
            | C::BadSignature
            | C::BadEncoding
            | C::InvalidPurpose
            | C::InvalidPurposeContext { .. } => (
                ErrorCode::TlsCertificateUntrusted,
                format!(
                    "the certificate of {authority} is not trusted ({cert:?}); trust its CA with \
                     diffusion_session_factory_certificate_authority"
                ),
            ),
            C::Expired | C::ExpiredContext { .. } => {
                (ErrorCode::TlsCertificateExpired, format!("the certificate of {authority} has expired"))
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                (ErrorCode::TlsCertificateExpired, format!("the certificate of {authority} is not valid yet"))
            }
            C::NotValidForName => (
                ErrorCode::TlsCertificateNameMismatch,
                format!("the certificate of {authority} is not valid for '{name}'"),
            ),
            C::NotValidForNameContext { presented, .. } => (
                ErrorCode::TlsCertificateNameMismatch,
                format!("the certificate of {authority} is not valid for '{name}' (it names {})", presented.join(", ")),
            ),
            C::ApplicationVerificationFailure => (
                ErrorCode::TlsCertificateRejected,
                format!("the certificate of {authority} was rejected by the certificate validation callback"),
            ),
            other => (
                ErrorCode::TlsCertificateUntrusted,
                format!("the certificate of {authority} is not acceptable ({other:?})"),
            ),
        },
        rustls::Error::AlertReceived(alert) => (
            ErrorCode::TlsHandshakeFailed,
            format!("TLS handshake with {authority} failed: the server sent the alert {alert:?}"),
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            (ErrorCode::TlsNotTls, format!("{authority} did not answer with TLS (is it a plain ws:// port?): {e}"))
        }
        other => (ErrorCode::TlsHandshakeFailed, format!("TLS handshake with {authority} failed: {other}")),
    };
    Error::new(code, why)
}

/// A server-side TLS configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |what: &std::path::Path, e: &dyn fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", what.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| invalid(cert_path, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| invalid(cert_path, &e))?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| invalid(key_path, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert_path, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(cert_path, &e))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `root_store` with only `path` as a CA, on a thread of its own: the error, or a note that
    /// it did not return within 5 s.
    fn roots_from(path: PathBuf) -> std::result::Result<Error, &'static str> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let options = TlsOptions { system_roots: false, extra_roots: vec![path], ..TlsOptions::default() };
            let _ = tx.send(root_store(&options).err());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(Some(error)) => Ok(error),
            Ok(None) => Err("accepted"),
            Err(_) => Err("still reading after 5 s"),
        }
    }

    #[test]
    fn a_fifo_or_a_device_as_ca_file_is_an_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        for path in [fifo, PathBuf::from("/dev/zero")] {
            let error = roots_from(path.clone()).unwrap();
            assert_eq!(error.code(), ErrorCode::IllegalArgument, "{}: {error}", path.display());
            assert!(error.message().contains("not a regular file"), "{error}");
        }
    }

    #[test]
    fn a_ca_file_over_the_cap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'A'; MAX_CA_FILE as usize + 1]).unwrap();
        let error = roots_from(big).unwrap();
        assert!(error.message().contains("larger than 4 MiB"), "{error}");
    }
}
