//! TLS for the client's connection (feature `tls`): which certificates to
//! trust, the handshake, and reading and writing through one rustls
//! connection from two threads.
//!
//! The connection ([`super::connection`]) runs a reader thread on a clone of
//! the socket and writes from its manager thread, but rustls keeps one state
//! for both directions. So the [`ClientConnection`] sits behind a mutex that
//! is never held while waiting for the network: the reader reads ciphertext
//! from its socket clone without it, then locks to feed the bytes in, take
//! the plaintext out and send whatever rustls has to answer; a writer locks
//! to put a line in and send the records out.
//!
//! Three ways to trust a server, one per flag of `natter tui`:
//! - the system's root certificates and the usual host-name check (`--tls`);
//! - the authorities in a PEM file instead (`--ca FILE`), with the host-name
//!   check;
//! - exactly one certificate, named by its SHA-256 fingerprint as `natter
//!   serve` prints it (`--fingerprint HEX`). The pin replaces both the chain
//!   and the host-name check: a self-signed server has neither, and the pin
//!   is stronger than both. The handshake signatures are still checked, so
//!   only the holder of the pinned certificate's key can pass.
//!
//! Invariants:
//! - nothing is ever sent in plain text on a TLS connection: when the
//!   handshake fails the connection is closed, never downgraded;
//! - a failure says what went wrong in words a user can act on (which
//!   fingerprint, which host name, that the port speaks plain natter);
//! - the buffers are bounded: one read's worth of ciphertext here, rustls'
//!   own limits for records and plaintext.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, OtherError,
    RootCertStore, SignatureScheme,
};

use crate::tls::{fingerprint, parse_fingerprint, provider};

/// The port of natter's TLS listener, used when `--tls` is given and the
/// server address names none.
pub const DEFAULT_TLS_PORT: u16 = 5556;

/// How much ciphertext the reader takes from the socket at a time: one full
/// TLS record, so a record rarely needs two reads.
const READ_CHUNK: usize = 16 * 1024 + 256;

/// How long closing waits to send its `close_notify`: a courtesy, not worth
/// holding up a quit for.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(200);

/// Why the client's TLS settings cannot be used; found before connecting, so
/// `natter tui` can refuse to start with the reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The `--ca` file cannot be read or is not PEM.
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// The `--ca` file holds no certificate rustls can use as a root.
    #[error("the CA file {0} holds no usable certificate")]
    NoCertificates(PathBuf),
    /// The system has no root certificates (or none could be read).
    #[error("no system root certificates found{0}; give --ca FILE or --fingerprint HEX")]
    NoSystemRoots(String),
    /// `--fingerprint` is not 32 bytes of hex.
    #[error("--fingerprint wants the SHA-256 as 64 hex digits, with or without colons")]
    BadFingerprint,
    /// Both `--ca` and `--fingerprint`: they are two answers to the same
    /// question, and accepting both would leave one of them unused.
    #[error("give --ca or --fingerprint, not both")]
    CaAndFingerprint,
    /// rustls refused the configuration (not expected with the ring
    /// provider).
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// What the connection trusts; [`TlsOptions`] describes it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trust {
    System,
    CaFile(PathBuf),
    Roots,
    Pinned([u8; 32]),
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::System => f.write_str("an authority this system trusts"),
            Trust::CaFile(path) => write!(f, "an authority in {}", path.display()),
            Trust::Roots => f.write_str("a trusted authority"),
            Trust::Pinned(pin) => write!(f, "the certificate {}", crate::tls::hex_pairs(pin)),
        }
    }
}

/// How to connect with TLS: a ready rustls configuration and what it trusts.
/// Built once, before connecting, so that a bad `--ca` file is reported at
/// start-up; shared by every reconnection.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    config: Arc<ClientConfig>,
    trust: Trust,
}

impl TlsOptions {
    /// The options `natter tui` flags ask for: `--ca FILE`, `--fingerprint
    /// HEX`, or neither (the system's roots).
    pub fn from_flags(ca: Option<&Path>, fingerprint: Option<&str>) -> Result<Self, TlsError> {
        match (ca, fingerprint) {
            (Some(_), Some(_)) => Err(TlsError::CaAndFingerprint),
            (Some(path), None) => Self::ca_file(path),
            (None, Some(text)) => {
                Self::pinned(parse_fingerprint(text.trim()).ok_or(TlsError::BadFingerprint)?)
            }
            (None, None) => Self::system_roots(),
        }
    }

    /// Trusts the system's root certificates, with the host-name check.
    pub fn system_roots() -> Result<Self, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = match found.errors.first() {
                Some(err) => format!(" ({err})"),
                None => String::new(),
            };
            return Err(TlsError::NoSystemRoots(why));
        }
        Self::with_roots(roots, Trust::System)
    }

    /// Trusts the authorities in a PEM file instead of the system's, with
    /// the host-name check.
    pub fn ca_file(path: &Path) -> Result<Self, TlsError> {
        let error = |reason: String| TlsError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|err| error(err.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| error(err.to_string()))?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::NoCertificates(path.to_owned()));
        }
        Self::with_roots(roots, Trust::CaFile(path.to_owned()))
    }

    /// Trusts these authorities (DER), with the host-name check.
    pub fn roots(certs: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::Config("no usable root certificate".to_owned()));
        }
        Self::with_roots(roots, Trust::Roots)
    }

    /// Trusts exactly the certificate whose SHA-256 is `pin`, whatever it
    /// names and whoever signed it.
    pub fn pinned(pin: [u8; 32]) -> Result<Self, TlsError> {
        Self::with_check(Check::Pin(pin), Trust::Pinned(pin))
    }

    /// The rustls configuration, ready to connect with.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// What is trusted, in words ("the certificate AB:CD:…").
    pub fn describe(&self) -> String {
        self.trust.to_string()
    }

    fn with_roots(roots: RootCertStore, trust: Trust) -> Result<Self, TlsError> {
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|err| TlsError::Config(err.to_string()))?;
        Self::with_check(Check::Chain(chain), trust)
    }

    fn with_check(check: Check, trust: Trust) -> Result<Self, TlsError> {
        let verifier = Verifier {
            check,
            algorithms: provider().signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Config(err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            trust,
        })
    }
}

/// The name inside rustls' rendering of a certificate's name
/// (`DnsName("chat.example.org")`), or the rendering itself.
fn unquote(name: &str) -> &str {
    match (name.find('"'), name.rfind('"')) {
        (Some(start), Some(end)) if start < end => name.get(start + 1..end).unwrap_or(name),
        _ => name,
    }
}

/// Checks the server's certificate: against roots (and the host name), or
/// against a pinned fingerprint; either way its handshake signatures with
/// the ring provider's algorithms. Wraps rustls' verdicts so that the error
/// names the certificate presented.
#[derive(Debug)]
struct Verifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
}

/// What makes a certificate acceptable.
#[derive(Debug)]
enum Check {
    /// A chain to one of these roots, for the server's name.
    Chain(Arc<WebPkiServerVerifier>),
    /// This SHA-256 of the end-entity certificate.
    Pin([u8; 32]),
}

/// A certificate this client refuses, in words.
#[derive(Debug)]
struct Rejected(String);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejected {}

fn rejected(text: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Rejected(
        text,
    )))))
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        let chain = match &self.check {
            Check::Chain(chain) => chain,
            Check::Pin(pin) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
                return match digest.as_ref() == pin.as_slice() {
                    true => Ok(ServerCertVerified::assertion()),
                    false => Err(rejected(format!(
                        "the server's certificate fingerprint {presented} does not match the \
                         pinned {}",
                        crate::tls::hex_pairs(pin)
                    ))),
                };
            }
        };
        chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|err| {
                let cert = format!("the server's certificate (fingerprint {presented})");
                rejected(match err {
                    // A bad signature here means an issuer with a trusted
                    // authority's name but another key: no trusted issuer.
                    rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer | CertificateError::BadSignature,
                    ) => format!("{cert} is not signed by a trusted authority"),
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForNameContext { presented, .. },
                    ) => format!(
                        "{cert} is not valid for {}: it names {}",
                        server_name.to_str(),
                        presented
                            .iter()
                            .map(|name| unquote(name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                        format!("{cert} is not valid for {}", server_name.to_str())
                    }
                    rustls::Error::InvalidCertificate(
                        CertificateError::Expired | CertificateError::ExpiredContext { .. },
                    ) => format!("{cert} has expired"),
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                    ) => format!("{cert} is not valid yet (is this computer's clock right?)"),
                    other => format!("{cert} was rejected: {other}"),
                })
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS connection's state, shared by the reader thread and the writer.
pub(crate) type Shared = Arc<Mutex<ClientConnection>>;

/// Locks the TLS state. A panic while it was held ended that connection's
/// thread, and the connection is about to be replaced; the state is used as
/// it is rather than panicking again.
fn lock(conn: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a handshake failed, and whether trying again could help.
#[derive(Debug)]
pub(crate) struct Failure {
    /// For the user.
    pub reason: String,
    /// Not worth retrying: the server is there but is not one we trust or
    /// does not speak TLS. Retrying would repeat the failure and bury the
    /// reason under reconnection messages.
    pub fatal: bool,
}

impl Failure {
    fn fatal(reason: String) -> Self {
        Self {
            reason,
            fatal: true,
        }
    }

    fn transient(reason: String) -> Self {
        Self {
            reason,
            fatal: false,
        }
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host: the name the
/// certificate must carry.
fn host_of(server: &str) -> &str {
    if let Some((host, _)) = server.strip_prefix('[').and_then(|r| r.split_once(']')) {
        return host;
    }
    match server.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => server,
    }
}

/// Runs the TLS handshake on the freshly connected, blocking `sock`, taking
/// at most `timeout`. Returns the connection ready for [`TlsReader`] and
/// [`write`]; on failure nothing but TLS records has been sent.
pub(crate) fn handshake(
    options: &TlsOptions,
    server: &str,
    sock: &TcpStream,
    timeout: Duration,
) -> Result<Shared, Failure> {
    let host = host_of(server);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        Failure::fatal(format!(
            "TLS: {host:?} is not a host name or address a certificate can name"
        ))
    })?;
    let mut conn = ClientConnection::new(options.config.clone(), name)
        .map_err(|err| Failure::fatal(format!("TLS: {err}")))?;
    let lost = |err: io::Error| Failure::transient(format!("TLS handshake failed: {err}"));
    let timed_out = || Failure::transient("TLS handshake timed out".to_owned());
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut first = true;
    let mut sock_w = sock;
    let mut sock_r = sock;
    while conn.is_handshaking() {
        flush(&mut conn, &mut sock_w).map_err(lost)?;
        if !conn.is_handshaking() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        sock.set_read_timeout(Some(left)).map_err(lost)?;
        let n = match sock_r.read(&mut buf) {
            Ok(0) => {
                return Err(Failure::transient(
                    "the server closed the connection during the TLS handshake".to_owned(),
                ))
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(err) => return Err(lost(err)),
        };
        let data = buf.get(..n).unwrap_or_default();
        if std::mem::take(&mut first) {
            if let Some(reason) = not_tls(data) {
                return Err(Failure::fatal(reason));
            }
        }
        let mut rest = data;
        while !rest.is_empty() {
            if let Err(err) = conn.read_tls(&mut rest) {
                return Err(lost(err));
            }
            if let Err(err) = conn.process_new_packets() {
                // Tells the server why (an alert), if it still listens.
                let _ = flush(&mut conn, &mut sock_w);
                return Err(Failure::fatal(describe(&err)));
            }
        }
    }
    flush(&mut conn, &mut sock_w).map_err(lost)?;
    sock.set_read_timeout(None).map_err(lost)?;
    Ok(Arc::new(Mutex::new(conn)))
}

/// If the first bytes from the server are not a TLS record, says what they
/// look like instead. A plain natter port greets with `HELLO` at once, and
/// a natter TLS listener answers a plain client with `ERR not-tls`, so a
/// TLS client on the plain port sees `HELLO`.
fn not_tls(first: &[u8]) -> Option<String> {
    // change_cipher_spec, alert, handshake, application_data, heartbeat.
    if (20..=24).contains(first.first()?) {
        return None;
    }
    let shown: String = String::from_utf8_lossy(first.get(..first.len().min(40))?)
        .chars()
        .take_while(|c| *c != '\r' && *c != '\n')
        .map(|c| match c.is_control() {
            true => char::REPLACEMENT_CHARACTER,
            false => c,
        })
        .collect();
    let natter =
        first.starts_with(b"HELLO ") || first.starts_with(b"ERR ") || b"HELLO ".starts_with(first);
    Some(match natter {
        true => format!(
            "TLS: the server answered in plain text ({shown:?}): this looks like a plain \
             natter port; drop --tls or use the TLS port ({DEFAULT_TLS_PORT} by default)"
        ),
        false => format!(
            "TLS: the server does not speak TLS (it sent {shown:?}); check the address and port"
        ),
    })
}

/// A rustls error in words for the user.
fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            format!("TLS: {}", other.0)
        }
        rustls::Error::InvalidCertificate(err) => {
            format!("TLS: the server's certificate was rejected: {err:?}")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("TLS: the server refused the handshake ({alert:?})")
        }
        rustls::Error::InvalidMessage(_) => {
            format!("TLS: the server does not speak TLS properly ({err})")
        }
        err => format!("TLS: {err}"),
    }
}

/// Sends whatever TLS records rustls has queued.
fn flush(conn: &mut ClientConnection, sock: &mut &TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// Encrypts `bytes` and sends them. Holds the lock while the socket takes
/// them (at most its write timeout): records must go out in order.
pub(crate) fn write(
    conn: &Mutex<ClientConnection>,
    sock: &TcpStream,
    bytes: &[u8],
) -> io::Result<()> {
    let mut conn = lock(conn);
    conn.writer().write_all(bytes)?;
    flush(&mut conn, &mut { sock })
}

/// Says goodbye the TLS way (`close_notify`), so the server can tell a
/// close from a cut; best effort, waiting at most [`CLOSE_TIMEOUT`].
pub(crate) fn close(conn: &Mutex<ClientConnection>, sock: &TcpStream) {
    let mut conn = lock(conn);
    conn.send_close_notify();
    if sock.set_write_timeout(Some(CLOSE_TIMEOUT)).is_ok() {
        let _ = flush(&mut conn, &mut { sock });
    }
}

/// The plaintext side of a TLS connection, for the reader thread: reads
/// ciphertext from its own socket clone without holding the lock, then
/// locks to decrypt.
pub(crate) struct TlsReader {
    conn: Shared,
    sock: TcpStream,
    /// Ciphertext read but not yet taken by rustls (which takes less when
    /// its plaintext buffer is full): `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The socket has reached its end.
    eof: bool,
}

impl TlsReader {
    /// Reads the connection `conn` from `sock`, a clone of its socket.
    pub(crate) fn new(conn: Shared, sock: TcpStream) -> Self {
        Self {
            conn,
            sock,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Feeds pending ciphertext and returns plaintext if there is some.
    /// `None`: rustls needs more bytes from the socket.
    fn decrypt(&mut self, out: &mut [u8]) -> Option<io::Result<usize>> {
        let mut conn = lock(&self.conn);
        if let Some(mut pending) = self.buf.get(self.start..self.end) {
            if !pending.is_empty() {
                let before = pending.len();
                // An error here means rustls' plaintext buffer is full: the
                // plaintext is read below and the rest is fed next time.
                let _ = conn.read_tls(&mut pending);
                self.start += before - pending.len();
                if let Err(err) = conn.process_new_packets() {
                    let _ = flush(&mut conn, &mut &self.sock);
                    return Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        describe(&err),
                    )));
                }
                // Whatever rustls answers (a key update, an alert).
                if let Err(err) = flush(&mut conn, &mut &self.sock) {
                    return Some(Err(err));
                }
            }
        }
        match conn.reader().read(out) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            // rustls' own words for this end with a link to its docs.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection without ending TLS",
                )))
            }
            done => return Some(done),
        }
        // At the end of the stream rustls has already said how it ended
        // (a close_notify: `Ok(0)`; a cut: an error); this is a backstop.
        if self.eof && self.start == self.end {
            return Some(Ok(0));
        }
        None
    }
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let fed = self.start;
            if let Some(done) = self.decrypt(out) {
                return done;
            }
            if self.start < self.end {
                if self.start == fed {
                    // rustls took nothing and gave nothing: never spin.
                    return Err(io::Error::other("TLS: the connection stalled"));
                }
                continue;
            }
            // Blocks without the lock, so the writer can send meanwhile.
            let n = match self.sock.read(&mut self.buf) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                read => read?,
            };
            self.start = 0;
            self.end = n;
            if n == 0 {
                self.eof = true;
                let mut conn = lock(&self.conn);
                // Tells rustls the stream ended, so that it can say whether
                // the server closed properly.
                let _ = conn.read_tls(&mut io::empty());
                if let Err(err) = conn.process_new_packets() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, describe(&err)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_come_from_the_server_address() {
        // Story: the certificate is checked against the name the user typed, not the port.
        assert_eq!(host_of("chat.example.org:5556"), "chat.example.org");
        assert_eq!(host_of("chat.example.org"), "chat.example.org");
        assert_eq!(host_of("[::1]:5556"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("127.0.0.1:5556"), "127.0.0.1");
    }

    #[test]
    fn a_plain_natter_greeting_is_recognised() {
        // Story: a TLS client pointed at the plain port is told to drop --tls, not shown a TLS error.
        let plain = not_tls(b"HELLO natter/1 Welcome!\r\n").expect("not TLS");
        assert!(plain.contains("plain natter port; drop --tls"), "{plain}");
        let partial = not_tls(b"HEL").expect("not TLS");
        assert!(partial.contains("plain natter port"), "{partial}");
        let other = not_tls(b"SSH-2.0-OpenSSH\r\n").expect("not TLS");
        assert!(other.contains("does not speak TLS"), "{other}");
        assert!(other.contains("SSH-2.0-OpenSSH"), "{other}");
        assert_eq!(not_tls(&[22, 3, 3, 0, 10]), None, "a handshake record");
        assert_eq!(not_tls(&[21, 3, 3, 0, 2]), None, "an alert");
        assert_eq!(not_tls(b""), None);
    }

    #[test]
    fn flags_pick_the_trust() {
        // Story: --fingerprint accepts what the server prints, with or without colons; typos are refused.
        let printed = fingerprint(b"some certificate");
        let pinned = TlsOptions::from_flags(None, Some(&printed)).expect("pin");
        assert_eq!(pinned.describe(), format!("the certificate {printed}"));
        let bare = printed.replace(':', "").to_lowercase();
        assert_eq!(
            TlsOptions::from_flags(None, Some(&bare))
                .expect("pin")
                .trust,
            pinned.trust
        );
        assert!(matches!(
            TlsOptions::from_flags(None, Some("AB:CD")),
            Err(TlsError::BadFingerprint)
        ));
        assert!(matches!(
            TlsOptions::from_flags(Some(Path::new("ca.pem")), Some(&printed)),
            Err(TlsError::CaAndFingerprint)
        ));
    }

    #[test]
    fn a_bad_ca_file_is_reported_at_start() {
        // Story: a mistyped or empty --ca file stops the client with the file's name, before connecting.
        let dir = std::env::temp_dir().join(format!("natter-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.pem");
        let err = TlsOptions::ca_file(&missing).expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let err = TlsOptions::ca_file(&empty).expect_err("empty");
        assert!(matches!(err, TlsError::NoCertificates(_)), "{err}");
        let good = dir.join("good.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        std::fs::write(&good, cert.cert.pem()).expect("write");
        let options = TlsOptions::ca_file(&good).expect("a PEM certificate");
        assert!(options.describe().contains("good.pem"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_pin_verifier_compares_the_whole_fingerprint() {
        // Story: only the pinned certificate passes, and the error shows both fingerprints.
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let der = cert.cert.der().clone();
        let pin = parse_fingerprint(&fingerprint(&der)).expect("pin");
        let verifier = |pin| Verifier {
            check: Check::Pin(pin),
            algorithms: provider().signature_verification_algorithms,
        };
        let name = ServerName::try_from("elsewhere.example").expect("name");
        let now = UnixTime::now();
        assert!(verifier(pin)
            .verify_server_cert(&der, &[], &name, &[], now)
            .is_ok());
        let mut wrong = pin;
        wrong[31] ^= 1;
        let err = verifier(wrong)
            .verify_server_cert(&der, &[], &name, &[], now)
            .expect_err("mismatch");
        let text = describe(&err);
        assert!(
            text.starts_with("TLS: the server's certificate fingerprint "),
            "{text}"
        );
        assert!(text.contains(&fingerprint(&der)), "{text}");
        assert!(text.contains(&crate::tls::hex_pairs(&wrong)), "{text}");
    }
}
