//! The TLS listener: the same chat inside TLS, next to the plain port;
//! clear words for a client on the wrong port; handshakes that cannot hold
//! a slot; and the real tools people use (`openssl s_client`, the `natter`
//! binary printing the fingerprint to pin).
//!
//! The TLS client here is rustls in this process, trusting exactly the
//! server's certificate by its fingerprint. The `openssl` test fails when
//! `CI` is set and openssl is missing (`.ci/run` installs it), and is skipped
//! with a message otherwise.
#![cfg(feature = "tls")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::raw::{Client, TlsStream};
use common::{start_tls, TIMEOUT};

/// A chat client over TLS, with the same deadlines as over plain TCP.
type TlsClient = Client<TlsStream>;

/// Connects and completes the handshake, trusting only the certificate with
/// `fingerprint`; panics if the handshake fails.
fn tls_connect(addr: SocketAddr, fingerprint: &str) -> TlsClient {
    Client::tls(addr, fingerprint).unwrap_or_else(|e| panic!("TLS to {addr}: {e}"))
}

/// Connects over TLS and registers as `nick`.
fn tls_register(addr: SocketAddr, fingerprint: &str, nick: &str) -> TlsClient {
    tls_connect(addr, fingerprint).register_as(nick)
}

/// The bytes of a real TLS ClientHello, as any TLS client sends first.
fn client_hello() -> Vec<u8> {
    let config = natter::client::TlsOptions::pinned([0; 32])
        .map(|o| o.config())
        .expect("client config");
    let mut conn = rustls::ClientConnection::new(config, natter::tls::any_server_name())
        .expect("client connection");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("a ClientHello");
    assert_eq!(hello.first(), Some(&0x16), "a handshake record");
    hello
}

/// A user story: Alice connects over TLS, Bob with nc; they talk both ways
/// in #lobby, and Alice's QUIT ends her TLS stream properly.
#[test]
fn tls_and_plain_clients_chat_across_the_two_listeners() {
    let tls = start_tls(common::config(), true);
    let mut alice = tls_register(tls.tls_addr, &tls.fingerprint, "alice");
    assert_eq!(alice.server_fingerprint(), tls.fingerprint);
    let mut bob = Client::register(tls.server.addr, "bob");
    alice.expect("JOIN ");

    alice.send_line("hello from TLS");
    let (_, _, room, nick, text) = common::parse_msg(&bob.expect("MSG "));
    assert_eq!(
        (room.as_str(), nick.as_str(), text.as_str()),
        ("#lobby", "alice", "hello from TLS")
    );
    bob.send_line("and back in plain text");
    let (_, _, _, nick, text) = common::parse_msg(&alice.expect("MSG "));
    assert_eq!(
        (nick.as_str(), text.as_str()),
        ("bob", "and back in plain text")
    );

    alice.send_line("QUIT bye");
    alice.expect("BYE");
    alice.expect_eof();
    let quit = bob.expect("QUIT ");
    assert!(quit.ends_with(" alice bye"), "{quit}");
    tls.server.stop();
}

/// A user story: someone points nc at the TLS port and types; they are told
/// in plain words which port to use instead, and the connection closes.
#[test]
fn plain_text_on_the_tls_port_gets_not_tls_naming_the_plain_port() {
    let tls = start_tls(common::config(), true);
    let mut nc = Client::connect(tls.tls_addr);
    nc.send_line("NICK carol");
    let err = nc.expect("ERR not-tls ");
    assert!(
        err.ends_with(&format!("connect to port {}.", tls.server.addr.port())),
        "{err}"
    );
    nc.expect("BYE ");
    nc.expect_eof();
    // The server carries on.
    tls_register(tls.tls_addr, &tls.fingerprint, "carol");
    tls.server.stop();
}

/// A user story: a TLS-only server tells a plain-text visitor how to
/// connect with openssl.
#[test]
fn a_tls_only_server_tells_plain_text_clients_to_use_openssl() {
    let tls = start_tls(common::config(), false);
    let mut nc = Client::connect(tls.tls_addr);
    nc.send_crlf("hello?");
    let err = nc.expect("ERR not-tls ");
    assert!(
        err.contains(&format!(
            "openssl s_client -quiet -connect HOST:{}",
            tls.tls_addr.port()
        )),
        "{err}"
    );
    nc.expect("BYE ");
    nc.expect_eof();
    tls.server.stop();
}

/// A user story: a TLS client pointed at the plain port is told, in plain
/// text, where the TLS port is.
#[test]
fn a_tls_client_hello_on_the_plain_port_gets_not_chat_naming_the_tls_port() {
    let tls = start_tls(common::config(), true);
    let mut client = Client::connect(tls.server.addr);
    client.expect("HELLO natter/1.1 ");
    client.send(&client_hello());
    let err = client.expect("ERR not-chat ");
    assert!(
        err.ends_with(&format!("Use TLS on port {}.", tls.tls_addr.port())),
        "{err}"
    );
    client.expect("BYE ");
    client.expect_eof();
    tls.server.stop();
}

/// A user story: a peer that connects to the TLS port and says nothing, or
/// stops halfway through its handshake, is dropped after the handshake
/// timeout, and meanwhile everyone else is served at once.
#[test]
fn silent_and_stalled_handshakes_are_closed_after_the_timeout() {
    let timeout = Duration::from_millis(1500);
    let tls = start_tls(
        natter::Config {
            tls_handshake_timeout: timeout,
            ..common::config()
        },
        true,
    );
    let started = Instant::now();
    let mut silent = Client::connect(tls.tls_addr);
    let mut stalled = Client::connect(tls.tls_addr);
    let hello = client_hello();
    stalled.send(&hello[..hello.len() / 2]);

    // Neither holds anyone up.
    let mut alice = tls_register(tls.tls_addr, &tls.fingerprint, "alice");
    let mut bob = Client::register(tls.server.addr, "bob");
    alice.expect("JOIN ");
    bob.send_line("still here");
    alice.expect("MSG ");
    assert!(
        started.elapsed() < timeout,
        "others waited for the silent peers"
    );

    // Silence is no TLS client (they speak first): a person at nc waiting
    // for a greeting is told where to go.
    silent.expect("ERR not-tls ");
    silent.expect("BYE ");
    silent.expect_eof();
    // Half a handshake is just closed.
    stalled.expect_eof();
    let waited = started.elapsed();
    assert!(waited >= timeout, "closed after only {waited:?}");
    assert!(
        waited < timeout + Duration::from_secs(3),
        "closed after {waited:?}"
    );
    tls.server.stop();
}

/// A user story: when the server is full, a TLS newcomer is told so inside
/// TLS, where its client can show it.
#[test]
fn a_full_server_refuses_tls_clients_in_words() {
    let tls = start_tls(
        natter::Config {
            max_clients: 1,
            ..common::config()
        },
        true,
    );
    let _alice = Client::register(tls.server.addr, "alice");
    let mut late = tls_connect(tls.tls_addr, &tls.fingerprint);
    late.expect("ERR server-full ");
    late.expect("BYE ");
    late.expect_eof();
    tls.server.stop();
}

/// Whether `openssl` can be run; under `CI` it must be.
fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required under CI (.ci/run installs it)"
        );
        eprintln!("skipped: openssl is not installed");
    }
    found
}

/// A child process, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's pipe, read on a thread, so a test can wait for one
/// with a deadline.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line from `lines` starting with `prefix`, skipping others,
/// within [`TIMEOUT`].
fn wait_for(lines: &mpsc::Receiver<String>, prefix: &str, what: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.trim_end().starts_with(prefix) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("{what}: no line starting with {prefix:?}; saw {seen:?}"),
        }
    }
}

/// A user story: a console user chats with `openssl s_client -quiet`, as
/// README.md tells them to.
#[test]
fn openssl_s_client_chats_over_tls() {
    if !have_openssl() {
        return;
    }
    let tls = start_tls(common::config(), true);
    let mut bob = Client::register(tls.server.addr, "bob");
    let mut openssl = Killed(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(tls.tls_addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_client"),
    );
    let mut stdin = openssl.0.stdin.take().expect("stdin");
    let stdout = lines_of(openssl.0.stdout.take().expect("stdout"));
    wait_for(&stdout, "HELLO natter/1.1 ", "openssl");
    writeln!(stdin, "NICK dave").expect("write to openssl");
    wait_for(&stdout, "WELCOME dave ", "openssl");
    wait_for(&stdout, "USERS #lobby", "openssl");
    bob.expect("JOIN ");
    writeln!(stdin, "typed into openssl").expect("write to openssl");
    let (_, _, _, nick, text) = common::parse_msg(&bob.expect("MSG "));
    assert_eq!(
        (nick.as_str(), text.as_str()),
        ("dave", "typed into openssl")
    );
    bob.send_line("seen by openssl");
    let line = wait_for(&stdout, "MSG ", "openssl");
    assert!(line.trim_end().ends_with(" bob seen by openssl"), "{line}");
    writeln!(stdin, "QUIT").expect("write to openssl");
    wait_for(&stdout, "BYE", "openssl");
    bob.expect("QUIT ");
    tls.server.stop();
}

/// A free port on 127.0.0.1 a moment ago.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
}

/// A user story: `natter serve --tls-self-signed` prints the fingerprint of
/// the certificate clients actually receive, so that users can pin it.
#[test]
fn the_binary_prints_the_fingerprint_of_its_self_signed_certificate() {
    let (plain, tls) = (free_port(), free_port());
    let mut natter = Killed(
        Command::new(env!("CARGO_BIN_EXE_natter"))
            .args([
                "serve",
                "--no-web",
                "--history",
                "off",
                "--accounts",
                "memory",
                "--threads",
                "2",
                "--tls-self-signed",
            ])
            .args(["--bind", &plain.to_string(), "--tls-bind", &tls.to_string()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start natter serve"),
    );
    let stderr = lines_of(natter.0.stderr.take().expect("stderr"));
    let line = wait_for(
        &stderr,
        "natter: self-signed TLS certificate",
        "natter serve",
    );
    assert!(line.contains("localhost, 127.0.0.1, ::1"), "{line}");
    let fingerprint = line
        .rsplit(' ')
        .next()
        .expect("a last word")
        .trim()
        .to_owned();
    assert!(
        natter::tls::parse_fingerprint(&fingerprint).is_some(),
        "{line}"
    );
    let client = common::retry("the TLS listener", 100, Duration::from_millis(50), || {
        Client::tls(tls, &fingerprint).ok()
    });
    assert_eq!(client.server_fingerprint(), fingerprint);
    let mut client = client;
    client.expect("HELLO natter/1.1 ");
    // Plain text still works next to it.
    Client::register(plain, "erin");
}

/// A user story: an operator with a typo in a certificate path gets one
/// clear line and a failing exit status, not a panic.
#[test]
fn bad_certificate_files_are_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("natter-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "this is not a certificate\n").expect("write junk");
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            "/nonexistent/cert.pem",
        ),
        (
            &[
                "--tls-cert",
                junk.to_str().expect("path"),
                "--tls-key",
                junk.to_str().expect("path"),
            ],
            "holds no PEM certificate",
        ),
        (&["--no-plain"], "--no-plain needs TLS"),
    ];
    for (flags, want) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["serve", "--history", "off", "--accounts", "memory"])
            .arg("--no-web")
            .args(["--bind", "127.0.0.1:0"])
            .args(["--tls-bind", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .output()
            .expect("run natter serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} succeeded");
        assert_eq!(output.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
