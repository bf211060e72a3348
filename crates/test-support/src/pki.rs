//! Certificates for TLS tests, made fresh by each test with `rcgen`: a CA,
//! and certificates it signs for `localhost` and `127.0.0.1`, written as
//! PEM files where `[tls]` settings can point.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM and as the DER a peer sees.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.pem()).expect("write the CA file");
    }

    /// A certificate for `localhost` and `127.0.0.1` with the common name
    /// `name`, fit for a server and for a client (as cert-manager issues
    /// them for mutual TLS).
    pub fn issue(&self, name: &str) -> TestCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl TestCert {
    /// Writes `cert.pem` and `key.pem` under `dir`, with `prefix`, and
    /// returns their paths.
    pub fn write(&self, dir: &Path, prefix: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{prefix}cert.pem"));
        let key = dir.join(format!("{prefix}key.pem"));
        self.write_to(&cert, &key);
        (cert, key)
    }

    /// Writes the certificate and key to these paths (replacing them, as a
    /// rotation does).
    pub fn write_to(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write the certificate");
        std::fs::write(key, &self.key_pem).expect("write the key");
    }
}

/// Client TLS settings trusting `ca_file` and presenting `cert`, if
/// given (written into `dir`), reloaded every second.
pub fn client_tls(
    dir: &Path,
    ca_file: &Path,
    cert: Option<&TestCert>,
) -> std::sync::Arc<roster_core::tls::Tls> {
    let text = |p: &Path| p.display().to_string();
    let mut config = roster_core::tls::TlsConfig {
        ca_file: text(ca_file),
        reload_interval_secs: 1,
        ..roster_core::tls::TlsConfig::default()
    };
    if let Some(cert) = cert {
        let (cert_file, key_file) = cert.write(dir, "client-");
        config.cert_file = text(&cert_file);
        config.key_file = text(&key_file);
    }
    roster_core::tls::Tls::load(&config)
        .expect("client TLS settings")
        .expect("a CA to trust")
}
