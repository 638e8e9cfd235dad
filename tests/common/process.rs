//! A `natter serve` child process: waiting until it greets, and signals.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::raw::Client;

/// Connects until `addr` accepts and greets (at most 10 s); the probe
/// connection is closed again. Fails if `child` exits first.
pub fn wait_until_listening(child: &mut Child, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("natter serve exited before listening: {status}");
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            Client::connect(addr).expect("HELLO natter/1.1 ");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "natter serve is not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (TERM, HUP, INT, ...) to `child` with kill(1).
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed: {status}");
}
