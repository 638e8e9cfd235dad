//! Limits by address against a real server over real sockets. Bans: an
//! operator bans a range, newcomers from inside it are turned away before
//! anything else, `BANS` lists it, `UNBAN` lifts it in any spelling, and it
//! outlasts a restart. Registrations: one address may create only so many
//! accounts an hour.
//!
//! Connections come from chosen loopback addresses (127.0.0.2, 127.0.0.3,
//! ...; Linux routes all of 127.0.0.0/8 to the loopback interface): the
//! operator stays on 127.0.0.1, outside the ranges it bans.

mod common;
mod operators;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

use common::raw::Client;
use common::start;
use natter::protocol::{ErrorCode, ServerLine};
use operators::{expect_err, make_operator, operator, sqlite_config, temp_dir};

/// Connects to `server` from the loopback address `127.0.0.<last>`, bound
/// before connecting (std cannot, so through rustix, which the async
/// runtime already builds with its `net` feature).
fn connect_from(server: SocketAddr, last: u8) -> Client {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let local = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, last), 0);
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    bind(&fd, &local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    connect(&fd, &server).unwrap_or_else(|e| panic!("connect {server} from {local}: {e}"));
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true).expect("set_nodelay");
    Client::over(stream, format!("client from 127.0.0.{last}"))
}

/// A newcomer from `127.0.0.<last>` must be told it is banned and sent
/// `BYE` as its very first lines, then the connection ends.
fn assert_turned_away(server: SocketAddr, last: u8, reason: &str) {
    let mut newcomer = connect_from(server, last);
    let text = expect_err(&mut newcomer, ErrorCode::Banned);
    assert!(
        text.starts_with("Your address is banned by oper until "),
        "{text}"
    );
    assert!(text.ends_with(&format!(": {reason}.")), "{text}");
    newcomer.expect("BYE ");
    newcomer.expect_eof();
}

/// The `INFO` lines `BANS` answers, up to and with its count.
fn bans(op: &mut Client) -> Vec<String> {
    op.send_line("BANS");
    let mut lines = Vec::new();
    loop {
        let line = op.expect("INFO ");
        let done = line.contains("ban(s) and mute(s) in force");
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// A range ban closes who is inside it, turns newcomers from inside it
/// away before the greeting, leaves everyone outside alone, and is lifted by
/// `UNBAN` in any spelling of the same range.
#[test]
fn a_range_ban_keeps_a_network_out_until_it_is_lifted() {
    let dir = temp_dir("range");
    make_operator(&dir);
    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);
    let mut spammer = connect_from(server.addr, 2).register_as("spammer");

    op.send_line("BAN 127.0.0.2/31 1d spam");
    // (After the JOIN of spammer.)
    let line = op.until("MOD ");
    assert!(line.contains(" #lobby oper ban spammer "), "{line}");
    let quit = op.expect("QUIT ");
    assert!(quit.ends_with(" spammer banned by oper: spam"), "{quit}");
    let info = op.expect("INFO ");
    assert!(
        info.starts_with("INFO 127.0.0.2/31 is banned until ")
            && info.ends_with("; 1 connection(s) closed."),
        "{info}"
    );
    spammer.until("ERR banned Your address is banned by oper");
    spammer.expect("BYE ");
    spammer.expect_eof();

    // Both addresses of the /31 are out; the next one over is not.
    assert_turned_away(server.addr, 2, "spam");
    assert_turned_away(server.addr, 3, "spam");
    let mut outside = connect_from(server.addr, 4);
    outside.expect("HELLO ");

    let listed = bans(&mut op);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0].starts_with("INFO ban address 127.0.0.2/31 until ")
            && listed[0].ends_with(" by oper: spam"),
        "{listed:?}"
    );

    // Another range, or one address inside it, is not the ban.
    op.send_line("UNBAN 127.0.0.2");
    op.expect_exact("INFO 127.0.0.2 is not banned.");
    op.send_line("UNBAN 127.0.0.0/30");
    op.expect_exact("INFO 127.0.0.0/30 is not banned.");
    // A range that is no range is refused by the parser.
    op.send_line("UNBAN 127.0.0.2/33");
    let text = expect_err(&mut op, ErrorCode::BadArgument);
    assert!(text.contains("not an address range"), "{text}");
    // The same range with host bits set, or IPv4-mapped, is the same ban.
    op.send_line("UNBAN ::ffff:127.0.0.3/127");
    op.expect_exact("INFO The ban on ::ffff:127.0.0.3/127 is lifted.");
    let mut back = connect_from(server.addr, 3);
    back.expect("HELLO ");
    assert_eq!(bans(&mut op).len(), 1);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bare IPv6 address bans its /64, an explicit /128 one address, and an
/// IPv4-mapped range is kept and matched as the IPv4 range it stands for.
#[test]
fn ban_targets_are_read_as_ranges() {
    let dir = temp_dir("forms");
    make_operator(&dir);
    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);

    op.send_line("BAN 2001:db8::1 1h");
    let info = op.expect("INFO ");
    assert!(
        info.starts_with("INFO 2001:db8::1 (2001:db8::/64) is banned until "),
        "{info}"
    );
    op.send_line("BAN 2001:db8::1/128 2h");
    let info = op.expect("INFO ");
    assert!(
        info.starts_with("INFO 2001:db8::1/128 is banned until "),
        "{info}"
    );
    op.send_line("BAN ::ffff:127.0.0.8/126 3h mapped");
    let info = op.expect("INFO ");
    assert!(
        info.starts_with("INFO ::ffff:127.0.0.8/126 (127.0.0.8/30) is banned until "),
        "{info}"
    );
    let listed = bans(&mut op);
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(
        listed[0].starts_with("INFO ban address 2001:db8::/64 until "),
        "{listed:?}"
    );
    assert!(
        listed[1].starts_with("INFO ban address 2001:db8::1/128 until "),
        "{listed:?}"
    );
    assert!(
        listed[2].starts_with("INFO ban address 127.0.0.8/30 until "),
        "{listed:?}"
    );
    assert_turned_away(server.addr, 9, "mapped");

    // Lifting the /64 leaves the /128.
    op.send_line("UNBAN 2001:db8::ffff");
    op.expect_exact("INFO The ban on 2001:db8::ffff is lifted.");
    let listed = bans(&mut op);
    assert!(
        listed[0].starts_with("INFO ban address 2001:db8::1/128 until "),
        "{listed:?}"
    );
    // A malformed range is refused, not taken for a nickname.
    op.send_line("BAN 10.0.0.0/40 1h");
    let text = expect_err(&mut op, ErrorCode::BadArgument);
    assert!(text.contains("not an address range"), "{text}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A range ban is stored with the accounts: the next run of the server
/// turns the same newcomers away and lists it.
#[test]
fn a_range_ban_outlasts_a_restart() {
    let dir = temp_dir("restart");
    make_operator(&dir);
    let server = start(sqlite_config(&dir));
    let mut op = operator(server.addr);
    op.send_line("BAN 127.0.0.16/28 1d flood");
    op.expect("INFO 127.0.0.16/28 is banned until ");
    server.stop();

    let server = start(sqlite_config(&dir));
    assert_turned_away(server.addr, 20, "flood");
    let mut op = operator(server.addr);
    let listed = bans(&mut op);
    assert!(
        listed[0].starts_with("INFO ban address 127.0.0.16/28 until "),
        "{listed:?}"
    );
    op.send_line("UNBAN 127.0.0.16/28");
    op.expect_exact("INFO The ban on 127.0.0.16/28 is lifted.");
    server.stop();

    // Lifted for good: not back after another restart.
    let server = start(sqlite_config(&dir));
    let mut newcomer = connect_from(server.addr, 20);
    newcomer.expect("HELLO ");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Registers the nickname `nick` from `127.0.0.<last>`: `NICK`, then
/// `REGISTER`; returns the client and the answer to `REGISTER`.
fn try_register(server: SocketAddr, last: u8, nick: &str) -> (Client, ServerLine) {
    let mut client = connect_from(server, last).register_as(nick);
    client.send_line("REGISTER a-long-password");
    // Skipping what others do meanwhile (JOIN, QUIT).
    loop {
        if let answer @ (ServerLine::Account { .. } | ServerLine::Err { .. }) = client.parsed() {
            return (client, answer);
        }
    }
}

/// One address may register 5 accounts an hour; the 6th is refused with
/// when the next is possible, on a connection that stays, and other
/// addresses and everyone's chat go on as before.
#[test]
fn an_address_registers_at_most_five_accounts_an_hour() {
    let server = start(natter::Config {
        registrations_per_hour: 5,
        ..common::config()
    });
    let mut bystander = connect_from(server.addr, 7).register_as("bystander");
    for n in 1..=5 {
        let nick = format!("sock{n}");
        let (_client, answer) = try_register(server.addr, 5, &nick);
        assert!(
            matches!(&answer, ServerLine::Account { nick: got, .. } if *got == nick),
            "registration {n}: {answer:?}"
        );
    }
    let (mut sixth, answer) = try_register(server.addr, 5, "sock6");
    let ServerLine::Err {
        code: ErrorCode::RegisterThrottled,
        text,
    } = answer
    else {
        panic!("the 6th registration: {answer:?}");
    };
    assert!(
        text.starts_with("5 account(s) were registered from your address in the last hour")
            && text.contains("the next is possible in ")
            && text.contains(" (at 20"),
        "{text}"
    );
    // The connection stays and may chat; the nickname is still a guest's.
    sixth.send_line("still here");
    let line = bystander.until("MSG ");
    assert!(line.ends_with(" #lobby sock6 still here"), "{line}");

    // Another address registers as usual.
    let (_other, answer) = try_register(server.addr, 6, "elsewhere");
    assert!(
        matches!(&answer, ServerLine::Account { nick, .. } if nick == "elsewhere"),
        "{answer:?}"
    );
    bystander.send_line("REGISTER bystander-password");
    bystander.until("ACCOUNT bystander user ");
    server.stop();
}

/// With the limit off (`--registrations-per-hour 0`), one address registers
/// as many accounts as it likes.
#[test]
fn the_registration_limit_can_be_switched_off() {
    let server = start(natter::Config {
        registrations_per_hour: 0,
        ..common::config()
    });
    for n in 1..=6 {
        let nick = format!("many{n}");
        let (_client, answer) = try_register(server.addr, 8, &nick);
        assert!(
            matches!(&answer, ServerLine::Account { nick: got, .. } if *got == nick),
            "registration {n}: {answer:?}"
        );
    }
    server.stop();
}
