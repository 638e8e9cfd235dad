//! A blocking line client that speaks raw bytes, the way `nc` and `telnet`
//! do, over plain TCP or TLS. Every read has a deadline ([`TIMEOUT`] unless
//! said otherwise), so a test waiting for a line that never comes fails
//! saying what it waited for instead of hanging.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use natter::protocol::ServerLine;

use super::TIMEOUT;

/// The most lines [`Client::until`] skips before giving up.
const MAX_SKIP: usize = 10_000;

/// A byte stream a [`Client`] can read with a deadline.
pub trait Wire: Read + Write {
    /// Sets how long one read may wait.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Wire for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// A TLS stream: reads wait on its socket.
#[cfg(feature = "tls")]
impl Wire for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
}

/// A connection to the server that reads CRLF lines and raw bytes, each
/// with a deadline of [`TIMEOUT`].
/// Generic over the stream, so the same client speaks plain TCP and TLS.
pub struct Client<S: Wire = TcpStream> {
    stream: S,
    /// Bytes read from the socket but not yet taken by a test.
    buf: Vec<u8>,
    /// How the peer ended the stream, once it has: `Ok` for a clean end
    /// (FIN, or a TLS close_notify), `Err` for a read error.
    end: Option<Result<(), String>>,
    /// A name for failure messages.
    name: String,
}

impl Client<TcpStream> {
    /// Connects to `addr`; nothing is read yet.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        let name = format!("client {}", stream.local_addr().expect("local address"));
        Client::over(stream, name)
    }

    /// Connects, reads the greeting, picks `nick` and reads the welcome, the
    /// client's own join and the user list.
    pub fn register(addr: SocketAddr, nick: &str) -> Client {
        Client::connect(addr).register_as(nick)
    }

    /// The underlying socket, for tests that need something special.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Closes the sending side: the server reads EOF.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

impl<S: Wire> Client<S> {
    /// A client over a connected `stream`; nothing is read yet.
    pub fn over(stream: S, name: String) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
            end: None,
            name,
        }
    }

    /// Reads the greeting, picks `nick` and reads the welcome, the client's
    /// own join and the user list.
    pub fn register_as(mut self, nick: &str) -> Client<S> {
        self.name = nick.to_owned();
        self.expect("HELLO natter/1.1 ");
        self.send_line(&format!("NICK {nick}"));
        self.expect(&format!("WELCOME {nick} "));
        let join = self.expect("JOIN ");
        assert!(
            join.ends_with(&format!(" #lobby {nick}")),
            "{nick}: own join was {join:?}"
        );
        self.expect("USERS #lobby");
        self
    }

    /// The stream, for what only its kind can tell (a TLS peer's
    /// certificate, for example).
    pub fn wire(&self) -> &S {
        &self.stream
    }

    /// The name used in failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the name used in failure messages.
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }

    /// Writes `line` and an LF, as `nc` does.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// Writes `line` and a CRLF, as `telnet` does.
    pub fn send_crlf(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// Reads more from the socket into the buffer, waiting until `deadline`.
    /// Returns false if nothing came in time or the stream has ended (a
    /// read error ends it too, noted in `end`).
    fn fill(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline || self.end.is_some() {
            return false;
        }
        self.stream
            .set_read_timeout(Some(deadline - now))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.end = Some(Ok(()));
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.end = Some(Err(format!("read failed: {e}")));
                false
            }
        }
    }

    /// The next line's raw bytes, without its ending, which must be CRLF.
    pub fn line_bytes(&mut self) -> Vec<u8> {
        self.line_bytes_within(TIMEOUT)
    }

    /// Like [`Client::line_bytes`] with another deadline.
    pub fn line_bytes_within(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=lf).collect();
                line.pop();
                assert_eq!(
                    line.pop(),
                    Some(b'\r'),
                    "{}: server line {:?} does not end with CRLF",
                    self.name,
                    String::from_utf8_lossy(&line)
                );
                return line;
            }
            if !self.fill(deadline) {
                let how = match &self.end {
                    Some(Ok(())) => "the connection closed".to_owned(),
                    Some(Err(e)) => e.clone(),
                    None => "timed out".to_owned(),
                };
                panic!(
                    "{}: {how} waiting for a line after {timeout:?}; unterminated: {:?}",
                    self.name,
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// The next line, without its CRLF; panics after [`TIMEOUT`].
    pub fn line(&mut self) -> String {
        self.line_within(TIMEOUT)
    }

    /// Like [`Client::line`] with another deadline.
    pub fn line_within(&mut self, timeout: Duration) -> String {
        let bytes = self.line_bytes_within(timeout);
        String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("{}: server line is not UTF-8: {e}", self.name))
    }

    /// The next line, which must start with `prefix`; skips nothing.
    pub fn expect(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "{}: expected a line starting with {prefix:?}, got {line:?}",
            self.name
        );
        line
    }

    /// The next line, which must be exactly `want`.
    pub fn expect_exact(&mut self, want: &str) {
        let line = self.line();
        assert_eq!(line, want, "{}: unexpected line", self.name);
    }

    /// Skips lines until one starts with `prefix` and returns it; panics
    /// after [`TIMEOUT`] or after many lines.
    pub fn until(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        for _ in 0..MAX_SKIP {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let line = self.line_within(left);
            if line.starts_with(prefix) {
                return line;
            }
            skipped.push(line);
        }
        panic!(
            "{}: no line starting with {prefix:?}; skipped {skipped:?}",
            self.name
        );
    }

    /// The next line parsed as a server line.
    pub fn parsed(&mut self) -> ServerLine {
        let line = self.line();
        ServerLine::parse(&line)
            .unwrap_or_else(|e| panic!("{}: cannot parse {line:?}: {e}", self.name))
    }

    /// Exactly `n` raw bytes (a telnet reply, for example).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < n {
            if !self.fill(deadline) {
                panic!(
                    "{}: wanted {n} bytes, got only {:?}",
                    self.name,
                    self.buf.as_slice()
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Asserts that nothing arrives for `ms` milliseconds.
    pub fn silent(&mut self, ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        while self.buf.is_empty() && self.fill(deadline) {}
        assert!(
            self.buf.is_empty(),
            "{}: expected silence, got {:?}",
            self.name,
            String::from_utf8_lossy(&self.buf)
        );
        assert!(
            self.end.is_none(),
            "{}: expected silence, got the end ({:?})",
            self.name,
            self.end
        );
    }

    /// Asserts that the server closes the connection cleanly (FIN, no
    /// reset) with no more data before it.
    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.is_empty() && self.fill(deadline) {}
        assert!(
            self.buf.is_empty(),
            "{}: expected EOF, got {:?}",
            self.name,
            String::from_utf8_lossy(&self.buf)
        );
        assert_eq!(
            self.end,
            Some(Ok(())),
            "{}: the server did not close cleanly in time",
            self.name
        );
    }

    /// Reads and throws away everything until EOF, at most `limit` bytes and
    /// [`TIMEOUT`] without progress; returns how many bytes there were.
    /// Panics if the connection does not end within those bounds.
    pub fn drain_to_eof(&mut self, limit: usize) -> usize {
        let mut total = std::mem::take(&mut self.buf).len();
        loop {
            assert!(
                total <= limit,
                "{}: more than {limit} bytes before EOF",
                self.name
            );
            let deadline = Instant::now() + TIMEOUT;
            if !self.fill(deadline) {
                assert_eq!(
                    self.end,
                    Some(Ok(())),
                    "{}: no EOF after {total} bytes",
                    self.name
                );
                return total;
            }
            total += std::mem::take(&mut self.buf).len();
        }
    }
}

/// A TLS connection as the tests open it.
#[cfg(feature = "tls")]
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

#[cfg(feature = "tls")]
impl Client<TlsStream> {
    /// Connects to the TLS listener at `addr` and completes the handshake,
    /// trusting only the certificate with `fingerprint`.
    pub fn tls(addr: SocketAddr, fingerprint: &str) -> io::Result<Client<TlsStream>> {
        let pin = natter::tls::parse_fingerprint(fingerprint).expect("a fingerprint");
        let config = natter::client::TlsOptions::pinned(pin)
            .map(|o| o.config())
            .expect("client config");
        let conn = rustls::ClientConnection::new(config, natter::tls::any_server_name())
            .expect("client connection");
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        let name = format!("TLS client {}", tcp.local_addr()?);
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client::over(stream, name))
    }

    /// The fingerprint of the certificate the server presented.
    pub fn server_fingerprint(&self) -> String {
        let certs = self
            .stream
            .conn
            .peer_certificates()
            .expect("the server sent a certificate");
        natter::tls::fingerprint(certs.first().expect("one certificate"))
    }
}
