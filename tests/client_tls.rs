//! The client's TLS (feature `tls`) against small scripted servers on
//! 127.0.0.1: a rustls server with a certificate made by rcgen that speaks
//! just enough natter, and plain servers on the wrong side of TLS. Every
//! server records the raw bytes it receives, so the tests can say what went
//! over the wire in the clear.
#![cfg(feature = "tls")]

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::driver::{settings, Driver};
use common::TIMEOUT;
use natter::client::{ConnState, Connection, Event, Outgoing, Settings, TlsOptions};
use natter::protocol::ServerLine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A socket that keeps a copy of every byte read from it.
struct Tee {
    stream: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.seen
            .lock()
            .expect("tee lock")
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A certificate made for the test, and where its PEM is on disk (for
/// `--ca`).
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem: PathBuf,
}

impl Cert {
    fn new(names: &[&str], file: &str) -> Cert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let dir = std::env::temp_dir().join(format!("natter-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pem = dir.join(file);
        std::fs::write(&pem, made.cert.pem()).expect("write the PEM");
        Cert {
            der: made.cert.der().clone(),
            key: made.signing_key.serialize_der(),
            pem,
        }
    }

    /// What `natter serve` prints for it.
    fn fingerprint(&self) -> String {
        natter::tls::fingerprint(&self.der)
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem);
    }
}

type TlsLines = BufReader<StreamOwned<ServerConnection, Tee>>;

/// A listener whose connections are recorded raw.
struct Fake {
    addr: SocketAddr,
    listener: TcpListener,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Fake {
    fn new() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Fake {
            addr: listener.local_addr().expect("address"),
            listener,
            seen: Arc::default(),
        }
    }

    fn accept_raw(&self) -> Tee {
        let (stream, _) = self.listener.accept().expect("accept");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Tee {
            stream,
            seen: self.seen.clone(),
        }
    }

    /// Accepts one connection and serves TLS on it with `cert`; the
    /// handshake happens on the first read.
    fn accept_tls(&self, cert: &Cert) -> TlsLines {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der.clone()],
                    PrivateKeyDer::Pkcs8(cert.key.clone().into()),
                )
                .expect("the server's certificate");
        let conn = ServerConnection::new(Arc::new(config)).expect("a server connection");
        BufReader::new(StreamOwned::new(conn, self.accept_raw()))
    }

    /// Every byte received so far, as it came over the wire.
    fn seen(&self) -> Vec<u8> {
        self.seen.lock().expect("tee lock").clone()
    }

    /// True if nobody else connected within `wait`: the client gave up
    /// rather than retrying.
    fn no_second_connection(&self, wait: Duration) -> bool {
        self.listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.listener.accept().is_ok() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line from the client");
    line
}

fn send(lines: &mut TlsLines, text: &[u8]) {
    let stream = lines.get_mut();
    stream.write_all(text).expect("write");
    stream.flush().expect("flush");
}

/// The client core as a user interface drives it, as alice, connecting
/// with `tls`.
fn driver(server: String, tls: TlsOptions) -> Driver {
    Driver::with(Settings {
        tls: Some(tls),
        ..settings(server, "alice")
    })
}

#[test]
fn chats_over_tls_trusting_a_ca_file() {
    // Story: `natter tui --tls --ca ca.pem` registers and chats, and nothing readable crosses the wire.
    let cert = Cert::new(&["localhost"], "ca.pem");
    let fake = Fake::new();
    let tls = TlsOptions::ca_file(&cert.pem).expect("the CA file");
    let mut alice = driver(format!("localhost:{}", fake.addr.port()), tls);
    let mut server = fake.accept_tls(&cert);
    send(&mut server, b"HELLO natter/1 hi\r\n");
    assert_eq!(read_line(&mut server), "NICK alice\r\n");
    send(&mut server, b"WELCOME alice hi\r\n");
    alice.until_event("online", |e| *e == Event::State(ConnState::Online));

    alice
        .conn
        .send(Outgoing::Raw("MSG #lobby a secret plan".into()));
    assert_eq!(read_line(&mut server), "MSG #lobby a secret plan\r\n");
    // Longer than a TLS record and than the client's line cap.
    let mut long = vec![b'x'; 40_000];
    long.extend_from_slice(b"\r\nINFO still here\r\n");
    send(&mut server, &long);
    alice.until_event("a too-long line", |e| matches!(e, Event::Unparsed { .. }));
    alice.until_event("the line after it", |e| {
        *e == Event::Line(ServerLine::Info("still here".into()))
    });

    alice.conn.quit("bye");
    assert_eq!(read_line(&mut server), "QUIT bye\r\n");
    server.get_mut().conn.send_close_notify();
    let _ = server.get_mut().flush();
    assert_eq!(alice.closed(), "you quit");
    let wire = fake.seen();
    assert!(!contains(&wire, b"NICK"), "the nickname went in the clear");
    assert!(!contains(&wire, b"secret"), "a message went in the clear");
}

#[test]
fn pinning_the_printed_fingerprint_trusts_a_self_signed_server() {
    // Story: `natter tui --fingerprint AB:CD:..` trusts the certificate `natter serve --tls-self-signed` printed.
    let cert = Cert::new(&["natter.invalid"], "pinned.pem");
    let fake = Fake::new();
    let tls = TlsOptions::from_flags(None, Some(&cert.fingerprint())).expect("a pin");
    // The pin stands in for the host-name check: 127.0.0.1 is not in the certificate.
    let mut alice = driver(fake.addr.to_string(), tls);
    let mut server = fake.accept_tls(&cert);
    send(&mut server, b"HELLO natter/1 hi\r\n");
    assert_eq!(read_line(&mut server), "NICK alice\r\n");
    send(&mut server, b"WELCOME alice hi\r\n");
    alice.until_event("online", |e| *e == Event::State(ConnState::Online));
    assert!(alice.shows("Connected to"), "{:#?}", alice.lines());
}

#[test]
fn a_wrong_fingerprint_is_refused_and_nothing_is_sent_in_the_clear() {
    // Story: a server with another certificate never sees the nickname, and the user is told which fingerprint it had.
    let cert = Cert::new(&["localhost"], "impostor.pem");
    let pinned = Cert::new(&["localhost"], "expected.pem");
    let fake = Fake::new();
    let tls = TlsOptions::from_flags(None, Some(&pinned.fingerprint())).expect("a pin");
    let mut alice = driver(fake.addr.to_string(), tls);
    let mut server = fake.accept_tls(&cert);
    let mut line = String::new();
    assert!(
        server.read_line(&mut line).is_err(),
        "the client aborts the handshake"
    );
    let reason = alice.closed();
    let want = format!(
        "TLS: the server's certificate fingerprint {} does not match the pinned {}",
        cert.fingerprint(),
        pinned.fingerprint()
    );
    assert!(reason.starts_with(&want), "{reason}");
    assert!(reason.ends_with("not retrying"), "{reason}");
    assert!(
        alice.shows(&want),
        "shown in the chat: {:#?}",
        alice.lines()
    );
    assert!(
        fake.no_second_connection(Duration::from_millis(300)),
        "no retry"
    );
    assert!(
        !contains(&fake.seen(), b"NICK"),
        "nothing in the clear after a failed handshake"
    );
}

#[test]
fn an_unknown_authority_is_refused() {
    // Story: a certificate not signed by the --ca authority stops the client with a clear reason, not a plain retry.
    let cert = Cert::new(&["localhost"], "server.pem");
    let other = Cert::new(&["localhost"], "other-ca.pem");
    let fake = Fake::new();
    let tls = TlsOptions::ca_file(&other.pem).expect("the CA file");
    let mut alice = driver(format!("localhost:{}", fake.addr.port()), tls);
    let mut server = fake.accept_tls(&cert);
    let mut line = String::new();
    assert!(server.read_line(&mut line).is_err(), "no session");
    let reason = alice.closed();
    let want = format!(
        "TLS: the server's certificate (fingerprint {}) is not signed by a trusted authority",
        cert.fingerprint()
    );
    assert!(reason.starts_with(&want), "{reason}");
    assert!(!contains(&fake.seen(), b"NICK"));
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    // Story: a trusted certificate for another name does not pass for this server.
    let cert = Cert::new(&["chat.example.org"], "elsewhere.pem");
    let fake = Fake::new();
    let tls = TlsOptions::ca_file(&cert.pem).expect("the CA file");
    let mut alice = driver(format!("localhost:{}", fake.addr.port()), tls);
    let mut server = fake.accept_tls(&cert);
    let mut line = String::new();
    assert!(server.read_line(&mut line).is_err(), "no session");
    let reason = alice.closed();
    assert!(
        reason.contains("is not valid for localhost: it names chat.example.org"),
        "{reason}"
    );
}

#[test]
fn tls_against_a_plain_port_says_to_drop_tls() {
    // Story: `--tls` pointed at the plain port says so, and never falls back to sending the nickname in plain text.
    let cert = Cert::new(&["localhost"], "plain.pem");
    let fake = Fake::new();
    let tls = TlsOptions::ca_file(&cert.pem).expect("the CA file");
    let mut alice = driver(format!("localhost:{}", fake.addr.port()), tls);
    let mut raw = fake.accept_raw();
    raw.stream
        .write_all(b"HELLO natter/1 Welcome! Pick a nickname: NICK <name>\r\n")
        .expect("greet");
    let reason = alice.closed();
    assert!(
        reason.contains("this looks like a plain natter port; drop --tls or use the TLS port"),
        "{reason}"
    );
    // Whatever the client sent has arrived by the time it closed.
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    let wire = fake.seen();
    assert!(
        wire.first() == Some(&22),
        "a TLS ClientHello came first: {wire:?}"
    );
    assert!(!contains(&wire, b"NICK"), "no plain-text fallback");
    assert!(fake.no_second_connection(Duration::from_millis(300)));
}

#[test]
fn a_plain_client_on_the_tls_port_is_told_to_use_tls() {
    // Story: a client without --tls that reaches the TLS port (answered `ERR not-tls`) says what to do and stops.
    let fake = Fake::new();
    let (tx, events) = mpsc::channel();
    let settings = Settings::new(fake.addr.to_string(), "alice");
    let conn = Connection::start(settings, move |event| {
        let _ = tx.send(event);
    })
    .expect("start the connection thread");
    let raw = fake.accept_raw();
    let mut reader = BufReader::new(raw);
    assert_eq!(read_line(&mut reader), "NICK alice\r\n");
    reader
        .get_mut()
        .stream
        .write_all(b"ERR not-tls This port speaks TLS.\r\n")
        .expect("refuse");
    let deadline = Instant::now() + TIMEOUT;
    let reason = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).expect("an event") {
            Event::State(ConnState::Closed { reason }) => break reason,
            Event::State(ConnState::Offline { reason, .. }) => panic!("retrying: {reason}"),
            _ => {}
        }
    };
    assert!(
        reason.contains("use natter's TLS option (--tls)"),
        "{reason}"
    );
    assert!(conn.wait(TIMEOUT));
}

/// The terminal client in Cursive's puppet backend: the screen as rows.
/// The terminal client in memory, connecting to `server` as alice with `tls`.
#[cfg(feature = "tui")]
fn tui_with(server: String, tls: TlsOptions) -> common::screen::Ui {
    let options = natter::tui::Options {
        server: Some(server),
        nick: Some("alice".into()),
        scrollback: 100,
        tls: Some(tls),
    };
    common::screen::Ui::start(options, (100, 24))
}

#[cfg(feature = "tui")]
#[test]
fn the_status_line_says_the_connection_is_encrypted() {
    // Story: a person can see at a glance that their chat goes over TLS.
    let cert = Cert::new(&["localhost"], "status.pem");
    let fake = Fake::new();
    let tls = TlsOptions::ca_file(&cert.pem).expect("the CA file");
    let server = format!("localhost:{}", fake.addr.port());
    let mut ui = tui_with(server.clone(), tls);
    let mut conn = fake.accept_tls(&cert);
    send(&mut conn, b"HELLO natter/1 hi\r\n");
    assert_eq!(read_line(&mut conn), "NICK alice\r\n");
    send(&mut conn, b"WELCOME alice hi\r\n");
    let status = ui.wait_for("online");
    assert!(status.contains(&format!("{server} [TLS]")), "{status}");
    ui.finish();
}

#[cfg(feature = "tui")]
#[test]
fn a_refused_certificate_is_shown_in_the_chat() {
    // Story: when the certificate does not match the pin, the chat says so in words and the client stops.
    let cert = Cert::new(&["localhost"], "shown.pem");
    let pinned = Cert::new(&["localhost"], "shown-pin.pem");
    let fake = Fake::new();
    let tls = TlsOptions::from_flags(None, Some(&pinned.fingerprint())).expect("a pin");
    let mut ui = tui_with(fake.addr.to_string(), tls);
    let mut conn = fake.accept_tls(&cert);
    let mut line = String::new();
    assert!(conn.read_line(&mut line).is_err(), "no session");
    ui.wait_for("closed");
    ui.wait_for("Connection closed: TLS: the server's certificate");
    ui.finish();
}

#[test]
fn a_tls_connection_cut_short_reconnects() {
    // Story: a TLS server that vanishes mid-session is a network failure: the client says so and comes back.
    let cert = Cert::new(&["localhost"], "cut.pem");
    let fake = Fake::new();
    let tls = TlsOptions::ca_file(&cert.pem).expect("the CA file");
    let mut alice = driver(format!("localhost:{}", fake.addr.port()), tls);
    let mut server = fake.accept_tls(&cert);
    assert_eq!(read_line(&mut server), "NICK alice\r\n");
    send(&mut server, b"WELCOME alice hi\r\n");
    alice.until_event("online", |e| *e == Event::State(ConnState::Online));
    // Half a line, then the socket closes without a TLS close_notify.
    send(&mut server, b"INFO half a li");
    drop(server);
    let offline = alice.until_event("offline", |e| {
        matches!(e, Event::State(ConnState::Offline { .. }))
    });
    assert!(
        matches!(&offline, Event::State(ConnState::Offline { reason, .. })
            if reason.contains("without ending TLS")),
        "{offline:?}"
    );
    assert!(!alice.shows("half a li"), "a cut line is not shown");
    let mut again = fake.accept_tls(&cert);
    assert_eq!(read_line(&mut again), "NICK alice\r\n");
}
