//! The real `natter serve` binary under SIGTERM and SIGINT: every client gets
//! a shutdown notice and then EOF, and the process exits 0. Also what it
//! logs: where it listens, connects and disconnects, and never what people
//! say.
//!
//! Unix only: Windows has no SIGTERM to send, and `kill(1)` sends them.
#![cfg(unix)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::raw::Client;

/// A `natter serve` process, killed if a test fails before it exits.
struct Natter {
    child: Child,
    addr: SocketAddr,
    /// Where its history goes ($XDG_DATA_HOME), removed at the end.
    data: PathBuf,
}

impl Natter {
    /// Starts `natter serve --bind 127.0.0.1:<free port>` with stderr
    /// captured, and waits until it accepts connections.
    fn start(test: &str) -> Natter {
        let data = std::env::temp_dir().join(format!("natter-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("create the data directory");
        // A port that was free a moment ago; nothing else on this machine
        // should grab it in between.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free port");
        let child = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args([
                "serve",
                "--no-web",
                "--bind",
                &addr.to_string(),
                "--threads",
                "2",
            ])
            .env_remove("RUST_LOG")
            .env("XDG_DATA_HOME", &data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start natter serve");
        let mut natter = Natter { child, addr, data };
        natter.wait_until_listening();
        natter
    }

    /// Connects until the port greets (at most 10 s).
    fn wait_until_listening(&mut self) {
        common::process::wait_until_listening(&mut self.child, self.addr);
    }

    /// Sends `signal` with kill(1).
    fn signal(&self, signal: &str) {
        common::process::signal(&self.child, signal);
    }

    /// Waits at most `timeout` for the process to exit.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "natter serve did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it wrote to stderr; call after it exited.
    fn log(&mut self) -> String {
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut log).expect("read stderr");
        }
        log
    }
}

impl Drop for Natter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Registers three clients (and one that never picks a nick), sends
/// `signal`, and checks that each gets BYE then EOF and the process exits 0.
fn shutdown_on(signal: &str) -> String {
    let mut natter = Natter::start(&format!("signal-{signal}"));
    let mut alice = Client::register(natter.addr, "alice");
    let mut bob = Client::register(natter.addr, "bob");
    let mut carol = Client::register(natter.addr, "carol");
    let mut lurker = Client::connect(natter.addr);
    lurker.expect("HELLO ");
    alice.send_line("the secret is swordfish");
    bob.until("MSG ");
    carol.until("MSG ");

    let started = Instant::now();
    natter.signal(signal);
    for client in [&mut alice, &mut bob, &mut carol, &mut lurker] {
        let bye = client.until("BYE ");
        assert!(bye.contains("shutting down"), "{}: {bye}", client.name());
        client.expect_eof();
    }
    let status = natter.wait(Duration::from_secs(10));
    assert!(status.success(), "natter serve exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    let log = natter.log();
    assert!(!log.contains("swordfish"), "chat text in the log:\n{log}");
    log
}

// Stopping the service (systemd, docker stop: SIGTERM) tells every client
// the server is going away, closes their connections, and exits cleanly.
#[test]
fn sigterm_says_bye_to_everyone_and_exits_0() {
    shutdown_on("TERM");
}

// Ctrl-C in the terminal running the server (SIGINT) does the same.
#[test]
fn sigint_says_bye_to_everyone_and_exits_0() {
    shutdown_on("INT");
}

// The log says where the server listens and who came and went, with the
// reason, but never what anyone said.
#[test]
fn log_has_address_and_connections_but_no_chat() {
    let mut natter = Natter::start("log");
    let addr = natter.addr;
    let mut alice = Client::register(addr, "alice");
    let mut bob = Client::register(addr, "bob");
    // The real binary keeps history, so a replay may come before the join.
    alice.until("JOIN ");
    alice.send_line("my password is hunter2");
    bob.until("MSG ");
    bob.send_line("QUIT see you");
    bob.until("BYE ");
    bob.expect_eof();
    alice.until("QUIT ");
    natter.signal("TERM");
    alice.until("BYE ");
    alice.expect_eof();
    assert!(natter.wait(Duration::from_secs(10)).success());
    let log = natter.log();
    assert!(
        log.contains(&addr.to_string()),
        "address in the log:\n{log}"
    );
    assert!(log.contains("connected"), "connects in the log:\n{log}");
    assert!(
        log.contains("disconnected"),
        "disconnects in the log:\n{log}"
    );
    assert!(log.contains("quit"), "the reason of a leave:\n{log}");
    assert!(!log.contains("hunter2"), "chat text in the log:\n{log}");
    assert!(
        !log.contains("see you"),
        "quit reasons are chat text:\n{log}"
    );
}
