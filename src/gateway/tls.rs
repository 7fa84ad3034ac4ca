//! HTTPS on the listener with a certificate that can be replaced while serving: the rustls
//! config resolves every handshake's certificate from a [`CertStore`], whose current
//! chain and key a reload swaps (SIGHUP in `sealstream serve`). Connections already
//! established keep the certificate they were opened with; a reload that fails leaves the
//! current certificate in place.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use x509_cert::der::Decode as _;

use super::TlsFiles;
use super::watch::FileWatch;
use crate::{Error, Result};

/// The certificate and key new TLS handshakes use, read from [`TlsFiles`] at start and
/// again on every [`CertStore::reload`] (or [`CertStore::reload_if_changed`] once the
/// files changed).
pub(super) struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The chain's and the key's stamps at the last load or attempt (the periodic check),
    /// locked through a reload.
    watch: FileWatch,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Reads the chain and key of `files` (both must parse and the key must match the
    /// leaf certificate), logging which certificate is served.
    pub(super) fn load(files: &TlsFiles) -> Result<CertStore> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let watch = FileWatch::new(vec![files.cert_chain.clone(), files.key.clone()]);
        let (key, info) = read(files, &provider)?;
        tracing::info!(
            cert = %files.cert_chain.display(),
            key = %files.key.display(),
            certificate = %info,
            "TLS certificate loaded"
        );
        Ok(CertStore {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
            watch,
        })
    }

    /// Reads the files again and, if the chain and key are good, makes them the
    /// certificate of every new handshake. On an error (a file missing, empty or
    /// unparseable, a key that does not match the certificate) nothing changes: the
    /// previous certificate stays in use and the error names the file.
    pub(super) fn reload(&self) -> Result<CertificateInfo> {
        self.watch.reload(|| self.swap())
    }

    /// [`CertStore::reload`] if either file changed (time, length or inode) since the
    /// last load or attempt; `Ok(None)` if not. A bad new version is reported once, not
    /// on every check: the next attempt waits for the files to change again (or a
    /// reload).
    pub(super) fn reload_if_changed(&self) -> Result<Option<CertificateInfo>> {
        self.watch
            .reload_if_changed(|| {
                tracing::info!(
                    cert = %self.files.cert_chain.display(),
                    key = %self.files.key.display(),
                    "TLS certificate files changed: reloading"
                );
                self.swap()
            })
            .transpose()
    }

    /// Reads the files; if good, serves them. Called with the watch locked.
    fn swap(&self) -> Result<CertificateInfo> {
        let (key, info) = read(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        tracing::info!(
            cert = %self.files.cert_chain.display(),
            key = %self.files.key.display(),
            certificate = %info,
            "TLS certificate reloaded: new connections use it"
        );
        Ok(info)
    }

    /// The rustls acceptor over this store (ring provider, TLS 1.2 and 1.3, ALPN h2 and
    /// http/1.1).
    pub(super) fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Reads and checks the chain and key of `files`.
fn read(files: &TlsFiles, provider: &CryptoProvider) -> Result<(CertifiedKey, CertificateInfo)> {
    let bad = |what: &str, path: &Path, e: &dyn fmt::Display| {
        Error::InvalidArgument(format!("TLS {what} '{}': {e}", path.display()))
    };
    let chain = "certificate chain";
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_chain)
        .map_err(|e| bad(chain, &files.cert_chain, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(chain, &files.cert_chain, &e))?;
    let Some(leaf) = certs.first() else {
        return Err(bad(chain, &files.cert_chain, &"no CERTIFICATE in the file"));
    };
    let info = CertificateInfo::of(leaf);
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad("key", &files.key, &e))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad("key", &files.key, &e))?;
    let certified = CertifiedKey::new(certs, key);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(Error::InvalidArgument(format!(
                "TLS key '{}' does not match the first certificate of '{}'",
                files.key.display(),
                files.cert_chain.display()
            )));
        }
        // The leaf certificate itself did not parse.
        Err(e) => {
            let e = format!("its first certificate does not parse ({e})");
            return Err(bad(chain, &files.cert_chain, &e));
        }
    }
    Ok((certified, info))
}

/// What the logs say about a served certificate: its subject, DNS/IP names, serial,
/// expiry and SHA-256 fingerprint (as `openssl x509 -fingerprint -sha256` prints it, in
/// lower case without colons), so an operator can tell which file is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertificateInfo {
    /// RFC 4514 (`CN=…,O=…`, last RDN first); empty when it cannot be decoded.
    pub subject: String,
    /// subjectAltName DNS names and IP addresses.
    pub names: Vec<String>,
    /// Serial number in hex.
    pub serial: String,
    /// notAfter as `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// SHA-256 of the DER certificate, hex.
    pub sha256: String,
}

impl CertificateInfo {
    /// Reads what it can of `der`; the fingerprint is always there, the rest is empty for
    /// a certificate x509-cert cannot decode (rustls still checks it).
    fn of(der: &[u8]) -> CertificateInfo {
        let mut info = CertificateInfo {
            subject: String::new(),
            names: Vec::new(),
            serial: String::new(),
            not_after: String::new(),
            sha256: hex(&Sha256::digest(der)),
        };
        if let Ok(cert) = x509_cert::Certificate::from_der(der) {
            describe(cert.tbs_certificate(), &mut info);
        }
        info
    }
}

impl fmt::Display for CertificateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or = |s: &str| if s.is_empty() { "?" } else { s }.to_string();
        write!(
            f,
            "subject=\"{}\" names=[{}] serial={} not_after={} sha256={}",
            self.subject,
            self.names.join(","),
            or(&self.serial),
            or(&self.not_after),
            self.sha256
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Subject (RFC 4514, as `openssl x509 -nameopt RFC2253` prints it), subjectAltName DNS
/// names and IP addresses, serial (without DER's sign byte, as openssl prints it) and
/// notAfter of a decoded certificate.
fn describe(tbs: &x509_cert::TbsCertificate, info: &mut CertificateInfo) {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    info.subject = tbs.subject().to_string();
    let serial = match tbs.serial_number().as_bytes() {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    info.serial = hex(serial);
    info.not_after = tbs.validity().not_after.to_string();
    if let Ok(Some((_, san))) = tbs.get_extension::<SubjectAltName>() {
        for name in san.0 {
            match name {
                GeneralName::DnsName(d) => info.names.push(d.to_string()),
                GeneralName::IpAddress(ip) => match ip.as_bytes() {
                    &[a, b, c, d] => info
                        .names
                        .push(std::net::Ipv4Addr::new(a, b, c, d).to_string()),
                    b => {
                        if let Ok(a) = <[u8; 16]>::try_from(b) {
                            info.names.push(std::net::Ipv6Addr::from(a).to_string());
                        }
                    }
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req -x509 -newkey ec … -days 36500 -set_serial 0x1f2e3d -subj
    /// "/C=DE/O=Sealstream Test/CN=gw.example" -addext
    /// "subjectAltName=DNS:gw.example,DNS:*.gw.example,IP:127.0.0.1,IP:::1"`; openssl
    /// x509 prints the values asserted below (notAfter a GeneralizedTime, past 2049).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIB/TCCAaOgAwIBAgIDHy49MAoGCCqGSM49BAMCMDwxCzAJBgNVBAYTAkRFMRgw
FgYDVQQKDA9TZWFsc3RyZWFtIFRlc3QxEzARBgNVBAMMCmd3LmV4YW1wbGUwIBcN
MjYxMjAxMTYxNjA2WhgPMjEyNjExMDcxNjE2MDZaMDwxCzAJBgNVBAYTAkRFMRgw
FgYDVQQKDA9TZWFsc3RyZWFtIFRlc3QxEzARBgNVBAMMCmd3LmV4YW1wbGUwWTAT
BgcqhkjOPQIBBggqhkjOPQMBBwNCAAT5U2z+EFvmXfQfEvFtgU2roTkwP7rNeJHg
YI5Y50q3RX5koC0bcwzgk75DSbJeRirURMmgJGMlBOAf0UPosoolo4GRMIGOMB0G
A1UdDgQWBBR4QcNpLgpnE/FDCSxWEyYp463CZjAfBgNVHSMEGDAWgBR4QcNpLgpn
E/FDCSxWEyYp463CZjAPBgNVHRMBAf8EBTADAQH/MDsGA1UdEQQ0MDKCCmd3LmV4
YW1wbGWCDCouZ3cuZXhhbXBsZYcEfwAAAYcQAAAAAAAAAAAAAAAAAAAAATAKBggq
hkjOPQQDAgNIADBFAiEA7oc7c/FPLSYiwOxzpuuSyG6HTAeNZfDtl9RuOWpfl2wC
IHpR3OURoA8QSxhJNb9o9M8BUN9p8yvdvv/v8ib9or3B
-----END CERTIFICATE-----
";

    #[test]
    fn certificate_info() {
        let der = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let info = CertificateInfo::of(&der);
        assert_eq!(info.subject, "CN=gw.example,O=Sealstream Test,C=DE");
        assert_eq!(
            info.names,
            ["gw.example", "*.gw.example", "127.0.0.1", "::1"]
        );
        assert_eq!(info.serial, "1f2e3d");
        assert_eq!(info.not_after, "2126-11-07T16:16:06Z");
        assert_eq!(
            info.sha256,
            "74b9da846bb6d8d507fd7be4c804a5eeed542e453f6d7550c689c391ff629fe1"
        );
        assert_eq!(
            info.to_string(),
            "subject=\"CN=gw.example,O=Sealstream Test,C=DE\" \
             names=[gw.example,*.gw.example,127.0.0.1,::1] serial=1f2e3d \
             not_after=2126-11-07T16:16:06Z \
             sha256=74b9da846bb6d8d507fd7be4c804a5eeed542e453f6d7550c689c391ff629fe1"
        );
    }

    #[test]
    fn truncated_der_is_no_panic() {
        // Every prefix of a plausible header, and lengths that point past the end.
        let der = [
            0x30, 0x82, 0x01, 0x00, 0x30, 0x81, 0xf0, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01,
            0x07,
        ];
        for n in 0..=der.len() {
            let info = CertificateInfo::of(&der[..n]);
            assert_eq!(info.sha256.len(), 64);
        }
        let full = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        for n in 0..full.len() {
            let info = CertificateInfo::of(&full[..n]);
            assert!(info.subject.is_empty() && info.serial.is_empty());
        }
    }
}
