//! TLS pieces shared by the server, the client and the load generator:
//! certificate fingerprints, PEM loading, self-signed certificates, and the
//! server certificate a reload swaps ([`CertSwap`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The SHA-256 fingerprint of a DER certificate, as upper-case hex pairs
/// joined by colons (`AB:CD:...`), the form `openssl x509 -fingerprint
/// -sha256` prints.
pub fn fingerprint(der: &[u8]) -> String {
    hex_pairs(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Bytes as upper-case hex pairs joined by colons, as fingerprints are shown.
pub fn hex_pairs(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Reads a fingerprint as the user typed it: hex pairs with or without
/// colons, any case. `None` unless it is exactly 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Why a TLS server configuration could not be built. Each says which file
/// and what is wrong with it, for the one line `natter serve` prints.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds a bad PEM section.
    #[error("cannot read the TLS certificate {path}: {source}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("the TLS certificate file {0} holds no PEM certificate")]
    NoCert(PathBuf),
    /// The key file could not be read or holds no private key.
    #[error("cannot read the TLS private key {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair (a key that does not match the certificate,
    /// an unsupported key type).
    #[error("the TLS certificate and key do not work together: {0}")]
    Rustls(#[from] rustls::Error),
    /// A self-signed certificate could not be made.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A server's TLS configuration and the fingerprint of the certificate it
/// presents, which users compare or pin.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Ready for `futures_rustls::TlsAcceptor`.
    pub config: Arc<rustls::ServerConfig>,
    /// The SHA-256 fingerprint of the leaf certificate (see [`fingerprint`]).
    pub fingerprint: String,
    /// The certificate `config` presents, which [`CertSwap::swap`] replaces
    /// for the handshakes after it (a reload after a renewal).
    pub cert: Arc<CertSwap>,
}

/// The certificate and key a server presents, replaceable while it runs:
/// certificates are renewed every few months, and a restart would cut every
/// connection. Each handshake takes the one current when it starts, so a
/// swap changes what newcomers see and leaves established sessions alone.
#[derive(Debug)]
pub struct CertSwap {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertSwap {
    /// Presents `key` from the next handshake on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// The SHA-256 fingerprint of the leaf certificate presented now.
    pub fn fingerprint(&self) -> String {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .cert
            .first()
            .map(|c| fingerprint(c))
            .unwrap_or_default()
    }
}

impl ResolvesServerCert for CertSwap {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(&current))
    }
}

/// The crypto provider everything TLS in natter uses, server and client
/// alike: ring, so that no C toolchain beyond what SQLite needs is required.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for a certificate chain and key in PEM files (the
/// leaf certificate first, as every CA hands them out).
pub fn server_from_pem(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let (chain, key) = read_pem(cert, key)?;
    server_config(chain, key)
}

/// The certificate chain and key in PEM files, checked to belong together,
/// for [`CertSwap::swap`]: what a reload presents from then on.
pub fn certified_key_from_pem(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = read_pem(cert, key)?;
    Ok(Arc::new(certified_key(chain, key)?))
}

/// The chain (leaf first, not empty) and key in two PEM files.
fn read_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    Ok((chain, key))
}

/// `chain` and `key` as rustls presents them, refused when the key is not
/// the certificate's (as `with_single_cert` refuses it).
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let certified = CertifiedKey::from_der(chain, key, &provider())?;
    certified.keys_match()?;
    Ok(certified)
}

/// The names a self-signed certificate is made for: `localhost`, the
/// loopback addresses and, when it can be read, this machine's host name,
/// so that a strict client connecting by any of them sees a matching name.
pub fn self_signed_names() -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() && host.len() <= 253 && !names.iter().any(|n| n == host) {
        names.push(host.to_owned());
    }
    names
}

/// A server configuration with a certificate generated now for `names`,
/// never written to disk; returns the certificate too, for clients in the
/// same process that want to pin it.
pub fn server_self_signed(
    names: &[String],
) -> Result<(ServerTls, CertificateDer<'static>), TlsError> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names.to_vec())?;
    let der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    let tls = server_config(vec![der.clone()], key)?;
    Ok((tls, der))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerTls, TlsError> {
    let fingerprint = chain.first().map(|c| fingerprint(c)).unwrap_or_default();
    let cert = Arc::new(CertSwap {
        current: RwLock::new(Arc::new(certified_key(chain, key)?)),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    Ok(ServerTls {
        config: Arc::new(config),
        fingerprint,
        cert,
    })
}

/// The server name a pinned client sends (see `client::TlsOptions::pinned`):
/// the certificate decides, not the name, so any valid one does.
pub fn any_server_name() -> ServerName<'static> {
    ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip() {
        let printed = fingerprint(b"not really a certificate");
        assert_eq!(printed.len(), 32 * 3 - 1);
        let parsed = parse_fingerprint(&printed).expect("parses");
        let digest = ring::digest::digest(&ring::digest::SHA256, b"not really a certificate");
        assert_eq!(&parsed[..], digest.as_ref());
        assert_eq!(
            parse_fingerprint(&printed.replace(':', "").to_lowercase()),
            Some(parsed)
        );
        assert_eq!(parse_fingerprint("AB:CD"), None);
        assert_eq!(parse_fingerprint(&"ZZ".repeat(32)), None);
    }

    #[test]
    fn a_self_signed_certificate_has_the_fingerprint_it_reports() {
        let (tls, der) = server_self_signed(&self_signed_names()).expect("generates");
        assert_eq!(tls.fingerprint, fingerprint(&der));
        assert!(parse_fingerprint(&tls.fingerprint).is_some());
    }

    #[test]
    fn missing_or_empty_pem_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("natter-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").expect("write");
        let missing = dir.join("missing.pem");
        let err = server_from_pem(&missing, &empty).expect_err("no such file");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = server_from_pem(&empty, &empty).expect_err("no certificate");
        assert!(matches!(err, TlsError::NoCert(_)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
