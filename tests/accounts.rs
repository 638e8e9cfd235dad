//! Accounts and operators against a real server over real sockets: register,
//! log in, impostors refused, failed logins limited, operators' KICK, MUTE and
//! BAN, and `natter admin` changing the database under a running server.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::raw::Client;
use common::{retry, start};
use natter::accounts::admin::Admin;
use natter::accounts::AccountsMode;
use natter::protocol::{ErrorCode, ModAction, Secret, ServerLine};

/// A fresh directory for one test's database.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natter-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn sqlite_config(dir: &std::path::Path) -> natter::Config {
    natter::Config {
        accounts: AccountsMode::Sqlite(dir.to_path_buf()),
        ..common::config()
    }
}

/// The next line must be `ERR <code> ...`; returns its text.
fn expect_err(client: &mut Client, code: ErrorCode) -> String {
    match client.parsed() {
        ServerLine::Err { code: got, text } if got == code => text,
        other => panic!("{}: expected ERR {code}, got {other:?}", client.name()),
    }
}

/// Skips lines until an `ERR`, which must have `code`; returns its text.
fn until_err(client: &mut Client, code: ErrorCode) -> String {
    let line = client.until("ERR ");
    match ServerLine::parse(&line) {
        Ok(ServerLine::Err { code: got, text }) if got == code => text,
        other => panic!("{}: expected ERR {code}, got {other:?}", client.name()),
    }
}

/// Connects and logs in with LOGIN as the first command.
fn login(addr: std::net::SocketAddr, nick: &str, password: &str) -> Client {
    let mut client = Client::connect(addr);
    client.set_name(nick);
    client.expect("HELLO ");
    client.send_line(&format!("/login {nick} {password}"));
    client.expect(&format!("WELCOME {nick} "));
    client.until("USERS #lobby");
    client.until(&format!("ACCOUNT {nick} "));
    client
}

#[test]
fn register_then_log_in_and_impostors_are_refused() {
    let server = start(common::config());
    let mut alice = Client::register(server.addr, "alice");
    alice.send_line("REGISTER short");
    let text = expect_err(&mut alice, ErrorCode::BadArgument);
    assert!(text.contains("8 characters"), "{text}");
    assert!(
        !text.contains("short"),
        "the password is never echoed: {text}"
    );
    alice.send_line("/register correct-horse");
    let line = alice.expect("ACCOUNT alice user ");
    assert!(!line.contains("correct-horse"), "{line}");
    alice.send_line("REGISTER another-one");
    expect_err(&mut alice, ErrorCode::NickRegistered);
    alice.send_line("QUIT bye");
    alice.expect("BYE ");

    // An impostor cannot take the nickname, and is offered a guest one.
    let mut mallory = Client::connect(server.addr);
    mallory.expect("HELLO ");
    mallory.send_line("NICK Alice");
    let text = expect_err(&mut mallory, ErrorCode::NickRegistered);
    let suggestion = text.rsplit(' ').next().unwrap().to_owned();
    assert!(suggestion.starts_with("guest"), "{text}");
    mallory.send_line("LOGIN alice wrong-password");
    let text = expect_err(&mut mallory, ErrorCode::LoginFailed);
    assert!(text.contains("Wrong password"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
    mallory.send_line(&format!("NICK {suggestion}"));
    mallory.expect(&format!("WELCOME {suggestion} "));
    mallory.until("USERS #lobby");

    // The owner logs in again, from nc-style LF lines, as its first command.
    let mut alice = login(server.addr, "alice", "correct-horse");
    let join = mallory.until("JOIN ");
    assert!(join.ends_with(" #lobby alice"), "{join}");
    alice.send_line("hello again");
    let msg = mallory.until("MSG ");
    assert!(msg.ends_with(" #lobby alice hello again"), "{msg}");

    // Only registered nicknames can be logged in to.
    mallory.send_line("LOGIN nobody some-password");
    let text = expect_err(&mut mallory, ErrorCode::LoginFailed);
    assert!(text.contains("not registered"), "{text}");
    server.stop();
}

#[test]
fn logging_in_elsewhere_closes_the_old_connection_and_renames_guests() {
    let server = start(common::config());
    let mut first = Client::register(server.addr, "carol");
    first.send_line("REGISTER carols-password");
    first.expect("ACCOUNT carol user ");
    let mut watcher = Client::register(server.addr, "dave");
    first.until("JOIN ");

    // The same owner from another connection: the old one is closed.
    let mut second = login(server.addr, "carol", "carols-password");
    first.expect("BYE You logged in from another connection.");
    first.expect_eof();
    let quit = watcher.until("QUIT ");
    assert!(
        quit.contains(" carol logged in from another connection"),
        "{quit}"
    );
    let join = watcher.until("JOIN ");
    assert!(join.ends_with(" #lobby carol"), "{join}");

    // A registered user under another nickname takes its own back by LOGIN.
    second.send_line("NICK caroline");
    second.until("NICK ");
    second.send_line("LOGIN carol carols-password");
    let nick = second.until("NICK ");
    assert!(nick.ends_with(" caroline carol"), "{nick}");
    second.expect("ACCOUNT carol user ");
    watcher.until("NICK ");
    let nick = watcher.until("NICK ");
    assert!(nick.ends_with(" caroline carol"), "{nick}");
    server.stop();
}

#[test]
fn failed_logins_are_limited_with_a_time_to_wait() {
    let server = start(common::config());
    let mut owner = Client::register(server.addr, "erin");
    owner.send_line("REGISTER erins-password");
    owner.expect("ACCOUNT erin ");
    let mut thief = Client::connect(server.addr);
    thief.expect("HELLO ");
    for attempt in 1..=6 {
        thief.send_line(&format!("LOGIN erin guess-number-{attempt}"));
        let text = expect_err(&mut thief, ErrorCode::LoginFailed);
        if attempt == 6 {
            assert!(text.contains("try again in 30 s"), "{text}");
        }
    }
    // Locked: even the right password waits, and the text says how long.
    thief.send_line("LOGIN erin erins-password");
    let text = expect_err(&mut thief, ErrorCode::LoginThrottled);
    assert!(text.contains("try again in"), "{text}");
    assert!(text.contains(" s (at "), "{text}");
    // The owner, already logged in, is not disturbed.
    owner.send_line("PING still-here");
    owner.expect("PONG still-here");
    server.stop();
}

#[test]
fn passwords_change_and_need_the_old_one() {
    let server = start(common::config());
    let mut frank = Client::register(server.addr, "frank");
    frank.send_line("PASSWORD old-password new-password");
    expect_err(&mut frank, ErrorCode::NotLoggedIn);
    frank.send_line("REGISTER first-password");
    frank.expect("ACCOUNT frank ");
    frank.send_line("PASSWORD wrong-password new-password");
    expect_err(&mut frank, ErrorCode::LoginFailed);
    frank.send_line("PASSWORD first-password second-password");
    frank.expect("INFO Your password is changed.");
    frank.send_line("QUIT");
    frank.expect("BYE ");
    let _frank = login(server.addr, "frank", "second-password");
    server.stop();
}

#[test]
fn operators_mute_kick_and_ban_and_everyone_sees_it() {
    let dir = temp_dir("operators");
    Admin::open(&dir)
        .unwrap()
        .create("oscar", &Secret::new("operator-password"), true)
        .unwrap();
    let server = start(sqlite_config(&dir));
    let mut oscar = Client::connect(server.addr);
    oscar.expect("HELLO ");
    oscar.send_line("LOGIN oscar operator-password");
    oscar.until("ACCOUNT oscar op You are logged in as oscar. You are an operator");
    let mut flooder = Client::register(server.addr, "flooder");
    let mut bystander = Client::register(server.addr, "bystander");
    oscar.until("JOIN ");
    oscar.until("JOIN ");
    flooder.until("JOIN ");

    // Not an operator: refused.
    bystander.send_line("KICK flooder");
    expect_err(&mut bystander, ErrorCode::NotOperator);

    // MUTE: announced to the room, and the flooder cannot talk or rename.
    oscar.send_line("MUTE flooder 10m stop flooding");
    for client in [&mut oscar, &mut flooder, &mut bystander] {
        match client.parsed() {
            ServerLine::Mod {
                room,
                by,
                action,
                target,
                until,
                reason,
                ..
            } => {
                assert_eq!(
                    (room.as_str(), by.as_str(), action, target.as_str()),
                    ("#lobby", "oscar", ModAction::Mute, "flooder")
                );
                assert_eq!(reason, "stop flooding");
                let left = until.unwrap().unix() - natter::protocol::Timestamp::now().unix();
                assert!((595..=601).contains(&left), "{left}");
            }
            other => panic!("expected MOD, got {other:?}"),
        }
    }
    flooder.send_line("spam spam spam");
    let text = expect_err(&mut flooder, ErrorCode::Muted);
    assert!(text.contains("muted by oscar"), "{text}");
    flooder.send_line("NICK innocent");
    expect_err(&mut flooder, ErrorCode::Muted);
    flooder.send_line("/w bystander psst");
    expect_err(&mut flooder, ErrorCode::Muted);
    bystander.silent(200);
    oscar.send_line("UNMUTE flooder");
    let line = bystander.expect("MOD ");
    assert!(line.ends_with(" #lobby oscar unmute flooder -"), "{line}");
    flooder.until("MOD ");
    flooder.send_line("sorry");
    bystander.until("MSG ");

    // KICK: the target is told and closed; the room sees MOD and QUIT.
    oscar.send_line("KICK flooder enough");
    let line = bystander.expect("MOD ");
    assert!(
        line.contains(" #lobby oscar kick flooder - enough"),
        "{line}"
    );
    let quit = bystander.expect("QUIT ");
    assert!(quit.ends_with(" flooder kicked by oscar: enough"), "{quit}");
    flooder.until("ERR kicked You were kicked by oscar: enough");
    flooder.expect("BYE ");
    flooder.expect_eof();

    // BAN by nickname, with expiry; it outlasts the connection.
    let mut troll = Client::register(server.addr, "troll");
    bystander.until("JOIN ");
    oscar.send_line("BAN troll 1h trolling");
    let line = bystander.expect("MOD ");
    assert!(line.contains(" #lobby oscar ban troll "), "{line}");
    assert!(line.ends_with(" trolling"), "{line}");
    troll.until("ERR banned The nickname troll is banned by oscar until ");
    troll.expect("BYE ");
    troll.expect_eof();
    let mut again = Client::connect(server.addr);
    again.expect("HELLO ");
    again.send_line("NICK Troll");
    let text = expect_err(&mut again, ErrorCode::Banned);
    assert!(text.contains("(60 min left): trolling"), "{text}");

    // BANS lists what is in force, to operators only.
    bystander.send_line("BANS");
    until_err(&mut bystander, ErrorCode::NotOperator);
    oscar.send_line("MUTE bystander 5m");
    oscar.send_line("/bans");
    let line = oscar.until("INFO mute bystander until ");
    assert!(line.contains("(5 min left) by oscar"), "{line}");
    let line = oscar.expect("INFO ban nick troll until ");
    assert!(line.ends_with("(60 min left) by oscar: trolling"), "{line}");
    oscar.expect("INFO 2 ban(s) and mute(s) in force.");
    oscar.send_line("UNMUTE bystander");

    // An operator cannot ban its own address (everyone here is 127.0.0.1).
    oscar.send_line("BAN 127.0.0.1 10m");
    until_err(&mut oscar, ErrorCode::BadArgument);
    oscar.send_line("BAN 1.2.3.4 -5m");
    oscar.until("INFO 1.2.3.4 is banned until ");
    oscar.send_line("UNBAN 1.2.3.4");
    oscar.expect("INFO The ban on 1.2.3.4 is lifted.");
    server.stop();

    // Bans live in the database: after a restart the nickname is still out.
    let server = start(sqlite_config(&dir));
    let mut again = Client::connect(server.addr);
    again.expect("HELLO ");
    again.send_line("NICK troll");
    expect_err(&mut again, ErrorCode::Banned);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn address_bans_turn_connections_away_at_once() {
    let dir = temp_dir("address-ban");
    let server = start(sqlite_config(&dir));
    server.stop();
    // A ban stored by an earlier run (here: straight into the database).
    let mut admin = Admin::open(&dir).unwrap();
    admin
        .create("owner", &Secret::new("owner-password"), true)
        .unwrap();
    drop(admin);
    let server = start(sqlite_config(&dir));
    let mut op = login(server.addr, "owner", "owner-password");
    // Banning a nickname that is offline is announced to the op's room.
    op.send_line("BAN ghost 5m");
    let line = op.expect("MOD ");
    assert!(line.contains(" #lobby owner ban ghost "), "{line}");
    op.send_line("UNBAN ghost");
    let line = op.expect("MOD ");
    assert!(line.ends_with(" #lobby owner unban ghost -"), "{line}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_changes_reach_a_running_server() {
    let dir = temp_dir("admin-live");
    let server = start(sqlite_config(&dir));
    let mut admin = Admin::open(&dir).unwrap();
    admin
        .create("grace", &Secret::new("grace-password"), false)
        .unwrap();
    // Within a second or two the server knows the nickname is registered.
    retry(
        "the server to see the new account",
        50,
        Duration::from_millis(100),
        || {
            let mut client = Client::connect(server.addr);
            client.expect("HELLO ");
            client.send_line("NICK grace");
            match client.parsed() {
                ServerLine::Err {
                    code: ErrorCode::NickRegistered,
                    ..
                } => Some(()),
                _ => None,
            }
        },
    );
    let mut grace = login(server.addr, "grace", "grace-password");
    grace.send_line("KICK nobody");
    expect_err(&mut grace, ErrorCode::NotOperator);
    // Made an operator while logged in: the rights follow at once.
    admin.set_operator("grace", true).unwrap();
    retry(
        "operator rights to arrive",
        50,
        Duration::from_millis(100),
        || {
            grace.send_line("KICK nobody");
            match grace.parsed() {
                ServerLine::Err {
                    code: ErrorCode::NoSuchNick,
                    ..
                } => Some(()),
                _ => None,
            }
        },
    );
    // A reset password works at the next login.
    admin
        .set_password("grace", &Secret::new("reset-password"))
        .unwrap();
    drop(grace);
    let _grace = login(server.addr, "grace", "reset-password");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_command_manages_the_database() {
    let dir = temp_dir("admin-cli");
    let natter = env!("CARGO_BIN_EXE_natter");
    let run = |args: &[&str], input: &str| {
        let mut child = Command::new(natter)
            .arg("admin")
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run natter admin");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["create", "heidi", "--op"], "heidis-password\n");
    assert!(ok, "{out}{err}");
    assert!(out.contains("heidi is registered (operator)."), "{out}");
    let (ok, _, err) = run(&["create", "heidi"], "another-password\n");
    assert!(!ok && err.contains("heidi is registered already"), "{err}");
    let (ok, _, err) = run(&["passwd", "heidi"], "short\n");
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, out, _) = run(&["passwd", "heidi"], "new-heidi-password\n");
    assert!(ok && out.contains("changed"), "{out}");
    let (ok, out, _) = run(&["list"], "");
    assert!(ok, "{out}");
    assert!(out.contains("1 account(s)"), "{out}");
    assert!(out.contains("  heidi  operator"), "{out}");
    assert!(
        !out.contains("password"),
        "no hashes or passwords listed: {out}"
    );
    let (ok, _, _) = run(&["deop", "heidi"], "");
    assert!(ok);
    let mut admin = Admin::open(&dir).unwrap();
    assert!(admin
        .check("heidi", &Secret::new("new-heidi-password"))
        .unwrap());
    assert!(!admin.snapshot().unwrap().accounts[0].operator);
    let (ok, _, err) = run(&["delete", "nobody"], "");
    assert!(!ok && err.contains("no account nobody"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_account_made_by_admin_does_not_read_an_earlier_guests_whispers() {
    let dir = temp_dir("admin-since");
    let config = || natter::Config {
        history: natter::store::HistoryMode::Sqlite(dir.clone()),
        ..sqlite_config(&dir)
    };
    let server = start(config());
    let mut guest = Client::register(server.addr, "dana");
    guest.until("HIST END #lobby");
    let mut bob = Client::register(server.addr, "bob");
    bob.until("HIST END #lobby");
    bob.send_line("/w dana the secret plan");
    let whisper = guest.until("WHISPER ");
    let whisper_id: u64 = whisper
        .split(' ')
        .nth(2)
        .and_then(|id| id.parse().ok())
        .expect("a WHISPER line with an id");
    server.stop();

    let mut admin = Admin::open(&dir).unwrap();
    admin
        .create("dana", &Secret::new("danas-password"), false)
        .unwrap();
    // The account starts after every id already handed out.
    assert!(admin.snapshot().unwrap().accounts[0].since > whisper_id);

    let server = start(config());
    let mut dana = login(server.addr, "dana", "danas-password");
    dana.send_line("HISTORY bob");
    dana.until("HIST END bob 0");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
