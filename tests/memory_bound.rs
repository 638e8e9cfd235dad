//! A line that never ends costs the server no memory. Alone in its own test
//! binary: it measures this process's resident memory, which tests running
//! beside it in the same process would move.

mod common;

use std::io::Write;
use std::time::Duration;

use common::raw::Client;
use common::{config, start};

/// This process's resident memory in KiB, from /proc (Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// Megabytes without a newline cost the server no memory and delay nobody:
// it keeps answering this client and others.
#[test]
fn endless_line_keeps_memory_bounded() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    let before = resident_kib();
    let mut flood = alice.stream().try_clone().expect("clone the socket");
    const TOTAL: usize = 32 * 1024 * 1024;
    let writer = std::thread::spawn(move || {
        let chunk = [b'z'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            flood.write_all(&chunk).expect("flood write");
        }
    });
    let err = alice.expect("ERR line-too-long ");
    assert!(err.contains("1024"), "{err}");
    // Others are served while the flood goes on.
    for i in 0..5 {
        bob.send_line(&format!("PING during-{i}"));
        bob.expect_exact(&format!("PONG during-{i}"));
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().expect("the flood thread");
    // The flood is one line; its end makes the session usable again.
    alice.send(b"\nPING after-flood\n");
    alice.expect_exact("PONG after-flood");
    alice.silent(200);
    bob.send_line("PING bob-after");
    bob.expect_exact("PONG bob-after");
    bob.silent(200);
    // 32 MiB went through the server in this process; had it buffered them,
    // resident memory would have grown by as much.
    if let (Some(before), Some(after)) = (before, resident_kib()) {
        let grown = after.saturating_sub(before);
        assert!(grown < 16 * 1024, "resident memory grew by {grown} KiB");
    }
}
