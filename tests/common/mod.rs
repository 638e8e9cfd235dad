//! Shared helpers for the integration tests: an in-process server on
//! `127.0.0.1:0` and a blocking line client that speaks raw bytes, the way
//! `nc` and `telnet` do.
//!
//! Every read has a deadline, so a test that waits for a line that never
//! comes fails with a message saying what it waited for instead of hanging.
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use natter::protocol::{ServerLine, Timestamp};

/// How long a client waits for a line before the test fails. Generous, for
/// loaded machines; tests that pass never wait this long.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The most lines [`Client::until`] skips before giving up.
const MAX_SKIP: usize = 10_000;

/// Panics seen on the server's threads (named `natter-...`) in this process.
/// A panic there kills a worker thread without failing any test by itself,
/// so [`Server::stop`] and dropping a [`Server`] check this count.
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on server threads, then reports them as usual.
fn watch_server_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_server = std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with("natter-"));
            if on_server {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            report(info);
        }));
    });
}

/// A server's configuration for tests: the defaults, on two threads, with
/// no history, so that registering is exactly WELCOME, JOIN and USERS (a
/// history replay would follow them otherwise, from another thread).
pub fn config() -> natter::Config {
    natter::Config {
        threads: 2,
        history: natter::store::HistoryMode::Off,
        ..natter::Config::default()
    }
}

/// A server running on its own thread. Dropping it (or [`Server::stop`])
/// triggers its shutdown future and waits for `serve` to return.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// [`SERVER_PANICS`] when the server started.
    panics_before: usize,
}

/// Starts `natter::serve` with `config` on a fresh port of 127.0.0.1.
pub fn start(config: natter::Config) -> Server {
    watch_server_panics();
    let panics_before = SERVER_PANICS.load(Ordering::SeqCst);
    let listener =
        smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("listener address");
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name(format!("natter-test-server-{}", addr.port()))
        .spawn(move || {
            smol::block_on(natter::serve(listener, config, async move {
                let _ = stopped.recv().await;
            }))
        })
        .expect("spawn the server thread");
    Server {
        addr,
        stop: Some(stop),
        thread: Some(thread),
        panics_before,
    }
}

/// A server with a plain listener and a TLS one (a certificate made for the
/// test), both on fresh ports of 127.0.0.1.
#[cfg(feature = "tls")]
pub struct TlsServer {
    /// The server; its `addr` is the plain listener.
    pub server: Server,
    /// Where the TLS listener is.
    pub tls_addr: SocketAddr,
    /// The SHA-256 fingerprint of the certificate it presents.
    pub fingerprint: String,
}

/// Starts `natter::server::serve_with` with `config`, a plain listener
/// unless `plain` is false, and a TLS listener with a fresh self-signed
/// certificate.
#[cfg(feature = "tls")]
pub fn start_tls(config: natter::Config, plain: bool) -> TlsServer {
    watch_server_panics();
    let panics_before = SERVER_PANICS.load(Ordering::SeqCst);
    let bind =
        || smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
    let plain = plain.then(bind);
    let tls = bind();
    let tls_addr = tls.local_addr().expect("listener address");
    let addr = match &plain {
        Some(listener) => listener.local_addr().expect("listener address"),
        None => tls_addr,
    };
    let (certificate, _) =
        natter::tls::server_self_signed(&natter::tls::self_signed_names()).expect("certificate");
    let fingerprint = certificate.fingerprint.clone();
    let listeners = natter::server::Listeners {
        plain,
        tls: Some((tls, certificate.config)),
        #[cfg(feature = "web")]
        web: None,
        #[cfg(feature = "web")]
        web_tls: None,
    };
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name(format!("natter-test-server-{}", tls_addr.port()))
        .spawn(move || {
            smol::block_on(natter::server::serve_with(listeners, config, async move {
                let _ = stopped.recv().await;
            }))
        })
        .expect("spawn the server thread");
    TlsServer {
        server: Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            panics_before,
        },
        tls_addr,
        fingerprint,
    }
}

impl Server {
    /// Triggers the shutdown and waits for `serve` to return, which it must
    /// do without an error.
    pub fn stop(mut self) {
        let result = self.halt().expect("the server thread panicked");
        result.expect("serve returned an error");
    }

    /// Stops the server and checks that none of its threads panicked
    /// (while it ran, no server thread in this process did).
    fn halt(&mut self) -> Option<io::Result<()>> {
        drop(self.stop.take());
        let result = self.thread.take().and_then(|thread| thread.join().ok());
        let panics = SERVER_PANICS.load(Ordering::SeqCst) - self.panics_before;
        if panics > 0 && !std::thread::panicking() {
            // Reported once: dropping after `stop` does not report again.
            self.panics_before += panics;
            panic!("{panics} server thread(s) panicked while this test ran; see stderr");
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// A connection to the server that reads CRLF lines and raw bytes, each
/// with a deadline of [`TIMEOUT`].
pub struct Client {
    stream: TcpStream,
    /// Bytes read from the socket but not yet taken by a test.
    buf: Vec<u8>,
    /// Set once the peer has closed its side.
    eof: bool,
    /// A name for failure messages.
    name: String,
}

impl Client {
    /// Connects to `addr`; nothing is read yet.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        let name = format!("client {}", stream.local_addr().expect("local address"));
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
            name,
        }
    }

    /// Connects, reads the greeting, picks `nick` and reads the welcome, the
    /// client's own join and the user list.
    pub fn register(addr: SocketAddr, nick: &str) -> Client {
        let mut client = Client::connect(addr);
        client.name = nick.to_owned();
        client.expect("HELLO natter/1 ");
        client.send_line(&format!("NICK {nick}"));
        client.expect(&format!("WELCOME {nick} "));
        let join = client.expect("JOIN ");
        assert!(
            join.ends_with(&format!(" #lobby {nick}")),
            "{nick}: own join was {join:?}"
        );
        client.expect("USERS #lobby");
        client
    }

    /// The name used in failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the name used in failure messages.
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    /// The underlying socket, for tests that need something special.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
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

    /// Closes the sending side: the server reads EOF.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more from the socket into the buffer, waiting until `deadline`.
    /// Returns false if nothing came in time; panics on an error.
    fn fill(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline || self.eof {
            return false;
        }
        self.stream
            .set_read_timeout(Some(deadline - now))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
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
            Err(e) => panic!("{}: read failed: {e}", self.name),
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
                let how = if self.eof {
                    "the connection closed"
                } else {
                    "timed out"
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
        assert!(!self.eof, "{}: expected silence, got EOF", self.name);
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
        assert!(self.eof, "{}: the server did not close in time", self.name);
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
                assert!(self.eof, "{}: no EOF after {total} bytes", self.name);
                return total;
            }
            total += std::mem::take(&mut self.buf).len();
        }
    }
}

/// Asserts that `time` is within a few seconds of now.
pub fn assert_recent(time: Timestamp) {
    let now = Timestamp::now().unix();
    let skew = (now - time.unix()).abs();
    assert!(skew <= 5, "time {time} is {skew} s away from now");
}

/// Parses a `MSG` line into `(time, id, room, nick, text)`.
pub fn parse_msg(line: &str) -> (Timestamp, u64, String, String, String) {
    match ServerLine::parse(line) {
        Ok(ServerLine::Msg {
            time,
            id,
            room,
            nick,
            text,
        }) => (time, id, room, nick, text),
        other => panic!("not a MSG line: {line:?} ({other:?})"),
    }
}

/// Runs `f` until it returns `Some`, at most `tries` times, sleeping `pause`
/// in between; panics with `what` if it never does.
pub fn retry<T>(what: &str, tries: usize, pause: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..tries {
        if let Some(value) = f() {
            return value;
        }
        std::thread::sleep(pause);
    }
    panic!("gave up after {tries} tries: {what}");
}
