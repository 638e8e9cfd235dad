//! Mutes against a real server over real sockets: the muted user is told
//! when the mute ends, without having to speak first, and a mute outlasts
//! a restart of the server.

mod common;
mod operators;

use std::time::{Duration, Instant};

use common::raw::Client;
use common::start;
use natter::protocol::ErrorCode;
use operators::{expect_err, make_operator, operator, sqlite_config, temp_dir};

/// A muted user who stays silent is told when the mute runs out (within
/// about a second of it), and can talk again.
#[test]
fn the_muted_user_is_told_when_the_mute_ends() {
    let dir = temp_dir("ends");
    make_operator(&dir);
    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);
    let mut chatty = Client::register(server.addr, "chatty");
    op.until("JOIN ");

    op.send_line("MUTE chatty 2s too loud");
    let muted_at = Instant::now();
    let line = chatty.until("MOD ");
    assert!(line.contains(" #lobby oper mute chatty "), "{line}");
    chatty.send_line("hello?");
    let text = expect_err(&mut chatty, ErrorCode::Muted);
    assert!(text.starts_with("You are muted by oper until "), "{text}");

    // Silent, the user still hears of the end, soon after it.
    let line = chatty.line_within(Duration::from_secs(5));
    assert_eq!(
        line, "INFO Your mute by oper has ended; you can talk again.",
        "{line}"
    );
    let waited = muted_at.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_millis(4500),
        "told after {waited:?}"
    );
    chatty.send_line("hello again");
    let line = op.until("MSG ");
    assert!(line.ends_with(" #lobby chatty hello again"), "{line}");
    // Told once only.
    chatty.silent(1500);
    op.send_line("BANS");
    op.expect_exact("INFO 0 ban(s) and mute(s) in force.");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mute is stored with the bans: after a restart the user is still muted
/// until it ends, and `BANS` lists it; `UNMUTE` lifts it for good.
#[test]
fn a_mute_outlasts_a_restart() {
    let dir = temp_dir("restart");
    make_operator(&dir);
    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);
    op.send_line("MUTE chatty 1h spamming");
    op.expect("MOD ");
    server.stop();

    let server = start(sqlite_config(&dir));
    let mut chatty = Client::register(server.addr, "chatty");
    chatty.send_line("am I free?");
    let text = expect_err(&mut chatty, ErrorCode::Muted);
    assert!(text.starts_with("You are muted by oper until "), "{text}");
    let mut op = operator(server.addr);
    op.send_line("BANS");
    let line = op.expect("INFO ");
    assert!(
        line.starts_with("INFO mute chatty until ") && line.ends_with(" by oper"),
        "{line}"
    );
    op.expect_exact("INFO 1 ban(s) and mute(s) in force.");
    op.send_line("UNMUTE chatty");
    op.expect("MOD ");
    server.stop();

    let server = start(sqlite_config(&dir));
    let mut chatty = Client::register(server.addr, "chatty");
    let mut other = Client::register(server.addr, "other");
    chatty.send_line("free at last");
    let line = other.until("MSG ");
    assert!(line.ends_with(" #lobby chatty free at last"), "{line}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mute that ran out while the server was down is gone after the
/// restart, without a word.
#[test]
fn a_mute_that_ended_while_the_server_was_down_is_gone() {
    let dir = temp_dir("ended");
    make_operator(&dir);
    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);
    op.send_line("MUTE chatty 1s");
    op.expect("MOD ");
    server.stop();
    std::thread::sleep(Duration::from_millis(1100));

    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);
    op.send_line("BANS");
    op.expect_exact("INFO 0 ban(s) and mute(s) in force.");
    let mut chatty = Client::register(server.addr, "chatty");
    chatty.send_line("hi");
    let line = op.until("MSG ");
    assert!(line.ends_with(" #lobby chatty hi"), "{line}");
    chatty.silent(300);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
