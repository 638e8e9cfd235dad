//! Telnet users type their passwords unseen: a password left off `REGISTER`,
//! `LOGIN <nick>` or `PASSWORD` is asked for with the echo turned off
//! (`IAC WILL ECHO`), and the echo comes back after it (`IAC WONT ECHO`).
//! Raw telnet bytes over a real socket, then the real `telnet` client in
//! tmux against the real `natter serve`; `nc` peers are never sent telnet
//! bytes.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::raw::Client;
use common::tmux::{skip_without, ServerProcess, Tmux};
use natter::accounts::AccountsMode;
use natter::protocol::{ErrorCode, ServerLine};

const WILL_ECHO: [u8; 3] = [0xff, 0xfb, 0x01];
const WONT_ECHO: [u8; 3] = [0xff, 0xfc, 0x01];
const WILL_TTYPE: [u8; 3] = [0xff, 0xfb, 0x18];
const DONT_TTYPE: [u8; 3] = [0xff, 0xfe, 0x18];
const DO_ECHO: [u8; 3] = [0xff, 0xfd, 0x01];

fn config() -> natter::Config {
    natter::Config {
        accounts: AccountsMode::Memory,
        ..common::config()
    }
}

/// Connects, speaks telnet (`IAC WILL TERMINAL-TYPE`, refused), and reads
/// the greeting and the refusal.
fn telnet_client(addr: SocketAddr) -> Client {
    let mut client = Client::connect(addr);
    client.expect("HELLO natter/1.1 ");
    client.send(&WILL_TTYPE);
    assert_eq!(client.bytes(3), DONT_TTYPE, "the option is refused");
    client
}

/// The next bytes must be exactly `want`.
fn expect_bytes(client: &mut Client, want: &[u8], what: &str) {
    assert_eq!(client.bytes(want.len()), want, "{what}");
}

#[test]
fn telnet_register_asks_for_the_password_with_the_echo_off() {
    let server = common::start(config());
    let mut alice = telnet_client(server.addr);
    alice.send_crlf("NICK alice");
    alice.expect("WELCOME alice ");
    alice.until("USERS #lobby");
    alice.send_crlf("REGISTER");
    alice.expect_exact("INFO Choose a password for your nickname (8 or more characters):");
    expect_bytes(&mut alice, &WILL_ECHO, "echo off after the prompt");
    // The client agrees, as telnet does; the agreement is not refused.
    alice.send(&DO_ECHO);
    alice.send_crlf("correct-horse");
    expect_bytes(&mut alice, &WONT_ECHO, "echo back after the password");
    let account = alice.expect("ACCOUNT alice user ");
    assert!(
        !account.contains("correct-horse"),
        "the password is never repeated: {account:?}"
    );

    // LOGIN <nick> on a fresh telnet connection: the prompt names the account.
    let mut again = telnet_client(server.addr);
    again.send_crlf("/login alice");
    again.expect_exact("INFO Password for alice:");
    expect_bytes(&mut again, &WILL_ECHO, "echo off for the login");
    again.send_crlf("correct-horse");
    expect_bytes(&mut again, &WONT_ECHO, "echo back after the login");
    again.expect("WELCOME alice ");
    again.until("ACCOUNT alice user ");

    // PASSWORD alone asks twice, turning the echo off once.
    again.send_crlf("PASSWORD");
    again.expect_exact("INFO Current password:");
    expect_bytes(&mut again, &WILL_ECHO, "echo off for the old password");
    again.send_crlf("correct-horse");
    again.expect_exact("INFO New password:");
    again.send_crlf("battery-staple");
    expect_bytes(&mut again, &WONT_ECHO, "echo back after the new password");
    again.expect_exact("INFO Your password is changed.");
    drop(again);

    let mut third = telnet_client(server.addr);
    third.send_crlf("LOGIN alice battery-staple");
    third.expect("WELCOME alice ");
    third.until("ACCOUNT alice user ");
    server.stop();
}

#[test]
fn nc_users_get_the_error_as_before_and_no_telnet_bytes() {
    let server = common::start(config());
    let mut bob = Client::register(server.addr, "bob");
    bob.send_line("REGISTER");
    match bob.parsed() {
        ServerLine::Err { code, .. } => assert_eq!(code, ErrorCode::MissingArgument),
        other => panic!("expected the missing-argument error, got {other:?}"),
    }
    bob.send_line("/login bob");
    match bob.parsed() {
        ServerLine::Err { code, .. } => assert_eq!(code, ErrorCode::MissingArgument),
        other => panic!("expected the missing-argument error, got {other:?}"),
    }
    // Passwords on the line work as ever.
    bob.send_line("REGISTER correct-horse");
    bob.expect("ACCOUNT bob user ");
    bob.silent(200);
    server.stop();
}

#[test]
fn the_real_telnet_client_hides_the_password() {
    if skip_without(&[("tmux", "-V"), ("telnet", "--version")]) {
        return;
    }
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let server = ServerProcess::start(addr);
    let tmux = Tmux::new("telnet");
    // To a port other than 23, telnet negotiates only when the port is
    // written with a leading dash.
    let command = format!("telnet -- {} -{}", addr.ip(), addr.port());
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "telnet",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(out.status.success(), "tmux new-session: {out:?}");
    tmux.wait_for("HELLO natter/1.1");
    tmux.keys("NICK alice");
    tmux.key("Enter");
    tmux.wait_for("WELCOME alice");
    tmux.keys("/register");
    tmux.key("Enter");
    tmux.wait_for("Choose a password for your nickname");
    // Let the client take the echo offer before typing.
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys("correct-horse");
    tmux.key("Enter");
    let screen = tmux.wait_for("ACCOUNT alice user");
    assert!(
        !screen.contains("correct-horse"),
        "the password was shown:\n{screen}"
    );
    // The echo is back for what follows.
    tmux.keys("PING visible-again");
    tmux.key("Enter");
    tmux.wait_for("PONG visible-again");
    let screen = tmux.capture();
    assert!(
        screen.matches("visible-again").count() >= 2,
        "the echo did not come back:\n{screen}"
    );
    drop(tmux);
    drop(server);
}
