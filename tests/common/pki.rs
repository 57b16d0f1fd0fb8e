//! Test certificates, generated for each run: a CA, server certificates signed by it (for
//! localhost and 127.0.0.1, expired, for another name) and an unrelated CA. No key is committed.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The test CA's certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// Server TLS configuration from the named certificate ("server", "expired", "other-name").
    pub fn server_tls(&self, name: &str) -> std::sync::Arc<rustls::ServerConfig> {
        session::tls::server_config(&self.path(&format!("{name}.pem")), &self.path(&format!("{name}.key"))).unwrap()
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

pub fn pki() -> Pki {
    let dir = super::external::shared_dir();
    let ca = ca("libsession test CA");
    write(dir.path(), "ca.pem", &ca.pem());
    write(dir.path(), "other-ca.pem", &self::ca("unrelated CA").pem());
    let leaf = |file: &str, names: &[&str], expired: bool| {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        write(dir.path(), &format!("{file}.pem"), &cert.pem());
        write(dir.path(), &format!("{file}.key"), &key.serialize_pem());
        // haproxy wants certificate and key in one file.
        write(dir.path(), &format!("{file}.combined.pem"), &format!("{}{}", cert.pem(), key.serialize_pem()));
    };
    leaf("server", &["localhost", "127.0.0.1"], false);
    leaf("expired", &["localhost", "127.0.0.1"], true);
    leaf("other-name", &["other.example"], false);
    Pki { dir }
}
