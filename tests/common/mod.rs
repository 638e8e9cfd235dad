//! Shared helpers for the integration tests: an in-process server on
//! `127.0.0.1:0` (here), a blocking line client that speaks raw bytes the
//! way `nc` and `telnet` do, over TCP or TLS ([`raw`]), the client core
//! driven as a user interface drives it ([`driver`]), the terminal
//! client in memory ([`screen`]), and real programs in tmux ([`tmux`]).
//!
//! Every wait has a deadline, so a test that waits for a line that never
//! comes fails with a message saying what it waited for instead of hanging.
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::Duration;

use natter::protocol::{ServerLine, Timestamp};

pub mod driver;
pub mod process;
pub mod raw;
#[cfg(feature = "tui")]
pub mod screen;
pub mod tmux;

/// How long a client waits for a line before the test fails. Generous, for
/// loaded machines; tests that pass never wait this long.
pub const TIMEOUT: Duration = Duration::from_secs(5);

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
/// history replay would follow them otherwise, from another thread), and
/// without the per-address limits, since every test client comes from
/// 127.0.0.1 (`tests/limits.rs` tests those).
pub fn config() -> natter::Config {
    natter::Config {
        threads: 2,
        history: natter::store::HistoryMode::Off,
        registrations_per_hour: 0, // Tests register many accounts from 127.0.0.1.
        max_per_address: 0,
        connect_rate: 0,
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

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `natter-<name>-<pid>`, emptied first.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("natter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
