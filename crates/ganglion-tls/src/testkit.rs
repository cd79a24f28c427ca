//! A throwaway PKI for tests (feature `test-utils`): a CA made on the spot and a server
//! certificate it signed for loopback (`localhost`, `127.0.0.1`, `::1`), as PEM text and
//! as files.

use std::path::{Path, PathBuf};

/// A test CA and one server certificate it issued.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (PEM): what clients must trust.
    pub ca_pem: String,
    /// The server certificate (PEM), leaf only.
    pub cert_pem: String,
    /// The server's private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Files written by [`TestPki::write`].
#[derive(Debug, Clone)]
pub struct TestPkiFiles {
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `server.pem`.
    pub cert: PathBuf,
    /// `server.key`.
    pub key: PathBuf,
}

impl TestPki {
    /// A new CA ("Ganglion test CA") and a server certificate for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn new() -> Result<TestPki, rcgen::Error> {
        TestPki::for_names(&["localhost", "127.0.0.1", "::1"])
    }

    /// A new CA and a server certificate for `names` (DNS names or IP addresses).
    pub fn for_names(names: &[&str]) -> Result<TestPki, rcgen::Error> {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Ganglion test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;

        let mut leaf_params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        leaf_params.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or("localhost"));
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
        Ok(TestPki { ca_pem: ca.pem(), cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem() })
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<TestPkiFiles> {
        let files = TestPkiFiles { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
        std::fs::write(&files.ca, &self.ca_pem)?;
        std::fs::write(&files.cert, &self.cert_pem)?;
        std::fs::write(&files.key, &self.key_pem)?;
        Ok(files)
    }

    /// The server side, ready to serve.
    pub fn server(&self) -> Result<crate::ServerTls, crate::TlsError> {
        crate::ServerTls::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes(), Path::new("server.pem"), Path::new("server.key"))
    }

    /// A client side that trusts this CA (and the system's roots).
    pub fn client(&self) -> Result<crate::ClientTls, crate::TlsError> {
        crate::ClientTls::from_pem(self.ca_pem.as_bytes(), Path::new("ca.pem"))
    }
}
