//! The natter line protocol, end to end: greeting, registration, chat, the
//! user list, nickname rules and how people leave, over real sockets with
//! the bytes `nc` sends (LF line ends).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::raw::Client;
use common::{assert_recent, config, parse_msg, start};
use natter::names;
use natter::protocol::ServerLine;

/// The last space-separated word of a line: the suggestion in a nick error.
fn last_word(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or_default()
}

/// Asserts every client in `clients` answers USERS with exactly `want`.
fn assert_users(clients: &mut [&mut Client], want: &[&str]) {
    let mut want: Vec<&str> = want.to_vec();
    want.sort_by_key(|n| names::fold(n));
    let want = format!("USERS #lobby {}", want.join(" "));
    for client in clients.iter_mut() {
        client.send_line("USERS");
        let got = client.line();
        assert_eq!(got, want, "{}'s user list", client.name());
    }
}

// A person connecting with nc is greeted and told what to type.
#[test]
fn greeting_tells_a_person_how_to_pick_a_nick() {
    let server = start(config());
    let mut c = Client::connect(server.addr);
    let hello = c.expect("HELLO natter/1.1 ");
    assert!(hello.contains("NICK"), "greeting {hello:?} names NICK");
    c.silent(200);
}

// Picking a nickname confirms it and shows who is here.
#[test]
fn nick_gets_welcome_join_and_user_list() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::connect(server.addr);
    bob.expect("HELLO ");
    bob.send_line("NICK bob");
    let welcome = bob.expect("WELCOME bob ");
    assert!(welcome.len() > "WELCOME bob ".len(), "welcome has words");
    match bob.parsed() {
        ServerLine::Join { time, room, nick } => {
            assert_recent(time);
            assert_eq!((room.as_str(), nick.as_str()), ("#lobby", "bob"));
        }
        other => panic!("expected bob's JOIN, got {other:?}"),
    }
    bob.expect_exact("USERS #lobby alice bob");
    let join = alice.expect("JOIN ");
    assert!(join.ends_with(" #lobby bob"), "{join}");
    alice.silent(200);
    bob.silent(200);
}

// People typing by hand can use slash commands in any case.
#[test]
fn slash_commands_work_in_any_case() {
    let server = start(config());
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send_line("/NiCk bob");
    c.expect("WELCOME bob ");
    c.expect("JOIN ");
    c.expect_exact("USERS #lobby bob");
    c.send_line("/users");
    c.expect_exact("USERS #lobby bob");
    c.send_line("/USERS");
    c.expect_exact("USERS #lobby bob");
    c.send_line("/PiNg abc");
    c.expect_exact("PONG abc");
    c.send_line("/help");
    let first = c.expect("INFO ");
    assert!(first.contains("Commands"), "{first}");
    c.until("INFO To start a message");
    c.send_line("/nosuch thing");
    c.expect("ERR unknown-command ");
    c.send_line("/QuIt bye now");
    c.expect("BYE ");
    c.expect_eof();

    let mut d = Client::register(server.addr, "dora");
    d.send_line("/exit");
    d.expect("BYE ");
    d.expect_eof();
}

// HELP works before and after registration and lists the commands.
#[test]
fn help_lists_the_commands() {
    let server = start(config());
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send_line("HELP");
    c.send_line("PING end-of-help");
    let mut help = Vec::new();
    loop {
        let line = c.line();
        if line == "PONG end-of-help" {
            break;
        }
        assert!(line.starts_with("INFO "), "help line {line:?}");
        help.push(line);
        assert!(help.len() < 100, "help never ends");
    }
    let help = help.join("\n");
    for verb in [
        "NICK", "MSG", "USERS", "PING", "QUIT", "HELP", "/exit", "//",
    ] {
        assert!(help.contains(verb), "help mentions {verb}: {help}");
    }
}

// PING is answered with PONG and the same token, registered or not.
#[test]
fn ping_gets_pong_with_its_token() {
    let server = start(config());
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send_line("PING 12345");
    c.expect_exact("PONG 12345");
    c.send_line("PING");
    c.expect_exact("PONG");
    c.send_line("NICK pinger");
    c.until("USERS ");
    c.send_line("PING after registration");
    c.expect_exact("PONG after registration");
}

// Before picking a nickname, only NICK, HELP, PING and QUIT work; anything
// else says how to pick one.
#[test]
fn unregistered_clients_are_told_to_pick_a_nick() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    for line in [
        "hello everyone",
        "MSG hi",
        "MSG #lobby hi",
        "USERS",
        "/users",
    ] {
        c.send_line(line);
        let err = c.expect("ERR not-registered ");
        assert!(err.contains("NICK"), "{line:?} got {err:?}");
    }
    alice.silent(300);
    c.send_line("QUIT never mind");
    c.expect("BYE ");
    c.expect_eof();
    alice.silent(300);
}

// A line typed by a registered user is chat to everyone else, stamped with
// the server's time and a growing id; the sender does not get it back.
#[test]
fn chat_reaches_everyone_but_the_sender() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    let mut carol = Client::register(server.addr, "carol");
    alice.until("JOIN ");
    alice.expect("JOIN ");
    bob.expect("JOIN ");

    alice.send_line("hello everyone");
    let mut ids = Vec::new();
    for receiver in [&mut bob, &mut carol] {
        let (time, id, room, nick, text) = parse_msg(&receiver.line());
        assert_recent(time);
        assert_eq!(
            (room.as_str(), nick.as_str(), text.as_str()),
            ("#lobby", "alice", "hello everyone")
        );
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "one message, one id");
    alice.silent(300);

    bob.send_line("MSG hi alice");
    let (_, id_b, _, nick, text) = parse_msg(&alice.line());
    assert_eq!((nick.as_str(), text.as_str()), ("bob", "hi alice"));
    let (_, id, _, nick, _) = parse_msg(&carol.line());
    assert_eq!((id, nick.as_str()), (id_b, "bob"));
    carol.send_line("and hi bob");
    let (_, id_c, _, nick, text) = parse_msg(&alice.line());
    assert_eq!((nick.as_str(), text.as_str()), ("carol", "and hi bob"));
    let (_, id, _, nick, _) = parse_msg(&bob.line());
    assert_eq!((id, nick.as_str()), (id_c, "carol"));
    assert!(
        ids[0] < id_b && id_b < id_c,
        "ids grow: {ids:?} {id_b} {id_c}"
    );
    for client in [&mut alice, &mut bob, &mut carol] {
        client.silent(200);
    }
}

// Messages that begin with a verb word or a slash can still be sent.
#[test]
fn verb_words_and_slashes_can_be_said() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    for (typed, said) in [
        ("MSG QUIT is a verb", "QUIT is a verb"),
        ("//shrug", "/shrug"),
        ("quit is chat in lower case", "quit is chat in lower case"),
        ("MSG /not a command", "/not a command"),
        ("  spaced out  ", "spaced out"),
    ] {
        alice.send_line(typed);
        let (_, _, _, nick, text) = parse_msg(&bob.line());
        assert_eq!((nick.as_str(), text.as_str()), ("alice", said), "{typed:?}");
    }
    alice.silent(200);
}

// Everyone else sees exactly the messages of a three-way conversation, in
// the order the server stamped them.
#[test]
fn ids_grow_across_a_conversation() {
    let server = start(config());
    let mut clients = [
        Client::register(server.addr, "ann"),
        Client::register(server.addr, "ben"),
        Client::register(server.addr, "cat"),
    ];
    clients[0].until("JOIN ");
    clients[0].expect("JOIN ");
    clients[1].expect("JOIN ");
    let mut last_seen = [0u64; 3];
    for round in 0..5 {
        for speaker in 0..3 {
            let text = format!("round {round} from {speaker}");
            clients[speaker].send_line(&text);
            let mut seen = Vec::new();
            for (i, listener) in clients.iter_mut().enumerate() {
                if i != speaker {
                    let (_, id, _, _, got) = parse_msg(&listener.line());
                    assert_eq!(got, text);
                    assert!(id > last_seen[i], "ids grow: {id} after {}", last_seen[i]);
                    last_seen[i] = id;
                    seen.push(id);
                }
            }
            assert_eq!(seen[0], seen[1], "everyone sees the same id");
        }
    }
    for client in clients.iter_mut() {
        client.silent(200);
    }
    clients[0].send_line("final");
    let (_, first, _, _, _) = parse_msg(&clients[1].line());
    clients[2].send_line("really final");
    let (_, second, _, _, _) = parse_msg(&clients[1].line());
    assert!(second > first, "{second} > {first}");
}

// Nicknames are unique regardless of case; the error suggests a free one
// that is then accepted.
#[test]
fn taken_nick_suggests_a_free_one() {
    let server = start(config());
    let _alice = Client::register(server.addr, "alice");
    let _alice2 = Client::register(server.addr, "alice2");
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send_line("NICK ALICE");
    let err = c.expect("ERR nick-taken ");
    let suggestion = last_word(&err).to_owned();
    assert!(names::check_nick(&suggestion).is_ok(), "{err}");
    assert_ne!(names::fold(&suggestion), "alice", "{err}");
    assert_ne!(names::fold(&suggestion), "alice2", "{err}");
    c.send_line("NICK Alice");
    c.expect("ERR nick-taken ");
    c.send_line(&format!("NICK {suggestion}"));
    c.expect(&format!("WELCOME {suggestion} "));
}

// An invalid nickname is refused with a valid, free suggestion.
#[test]
fn invalid_nick_suggests_a_valid_one() {
    let server = start(config());
    let _bob = Client::register(server.addr, "bob");
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    for wanted in [
        "abcdefghijklmnopq",
        "bob!",
        "9lives",
        "bob smith",
        "caf\u{e9}",
        "-dash",
    ] {
        c.send_line(&format!("NICK {wanted}"));
        let err = c.expect("ERR nick-invalid ");
        let suggestion = last_word(&err);
        assert!(names::check_nick(suggestion).is_ok(), "{wanted:?}: {err}");
        assert_ne!(names::fold(suggestion), "bob", "{wanted:?}: {err} is taken");
    }
    c.send_line("NICK 9lives");
    let err = c.expect("ERR nick-invalid ");
    let suggestion = last_word(&err).to_owned();
    c.send_line(&format!("NICK {suggestion}"));
    c.expect(&format!("WELCOME {suggestion} "));
    c.expect("JOIN ");
    c.expect_exact(&format!("USERS #lobby bob {suggestion}"));
    c.send_line("NICK");
    c.expect("ERR missing-argument ");
}

// A nick change is announced to everyone, the renamer included; USERS shows
// the new name and the old one is free again.
#[test]
fn nick_change_is_announced_and_frees_the_old_name() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    alice.send_line("NICK alicia");
    for client in [&mut alice, &mut bob] {
        match client.parsed() {
            ServerLine::Nick { time, old, new } => {
                assert_recent(time);
                assert_eq!((old.as_str(), new.as_str()), ("alice", "alicia"));
            }
            other => panic!("{}: expected NICK, got {other:?}", client.name()),
        }
    }
    assert_users(&mut [&mut alice, &mut bob], &["alicia", "bob"]);
    let mut newcomer = Client::register(server.addr, "alice");
    alice.expect("JOIN ");
    bob.expect("JOIN ");
    assert_users(
        &mut [&mut alice, &mut bob, &mut newcomer],
        &["alice", "alicia", "bob"],
    );
    bob.send_line("NICK Alicia");
    bob.expect("ERR nick-taken ");
    alice.send_line("NICK ALICIA");
    let line = alice.expect("NICK ");
    assert!(
        line.ends_with(" alicia ALICIA"),
        "a case change is allowed: {line}"
    );
    bob.expect_exact(&line);
    newcomer.expect_exact(&line);
    for client in [&mut alice, &mut bob, &mut newcomer] {
        client.silent(200);
    }
}

// The user list stays in sync through a series of joins, leaves and renames:
// everyone sees each event, and USERS always matches.
#[test]
fn user_list_stays_in_sync() {
    let server = start(config());
    let mut people: Vec<(String, Client)> = Vec::new();
    let mut expected: BTreeSet<String> = BTreeSet::new();

    fn check(people: &mut [(String, Client)], expected: &BTreeSet<String>) {
        let nicks: Vec<&str> = expected.iter().map(String::as_str).collect();
        let mut clients: Vec<&mut Client> = people.iter_mut().map(|(_, c)| c).collect();
        assert_users(&mut clients, &nicks);
    }

    for nick in ["u1", "u2", "u3", "u4"] {
        let client = Client::register(server.addr, nick);
        for (_, other) in people.iter_mut() {
            let join = other.expect("JOIN ");
            assert!(join.ends_with(&format!(" #lobby {nick}")), "{join}");
        }
        people.push((nick.to_owned(), client));
        expected.insert(nick.to_owned());
        check(&mut people, &expected);
    }

    // u2 quits with a reason.
    let (nick, mut gone) = people.remove(1);
    gone.send_line("QUIT off to lunch");
    gone.expect("BYE ");
    gone.expect_eof();
    expected.remove(&nick);
    for (_, other) in people.iter_mut() {
        let quit = other.expect("QUIT ");
        assert!(quit.ends_with(" u2 off to lunch"), "{quit}");
    }
    check(&mut people, &expected);

    // u3 renames.
    people[1].1.send_line("NICK Zed");
    for (_, other) in people.iter_mut() {
        let line = other.expect("NICK ");
        assert!(line.ends_with(" u3 Zed"), "{line}");
    }
    expected.remove("u3");
    expected.insert("Zed".to_owned());
    check(&mut people, &expected);

    // u1 just closes the socket.
    let (_, gone) = people.remove(0);
    drop(gone);
    expected.remove("u1");
    for (_, other) in people.iter_mut() {
        let quit = other.expect("QUIT ");
        assert!(quit.contains(" u1 "), "{quit}");
    }
    check(&mut people, &expected);

    // A newcomer takes a freed name.
    let client = Client::register(server.addr, "u3");
    for (_, other) in people.iter_mut() {
        other.expect("JOIN ");
    }
    people.push(("u3".to_owned(), client));
    expected.insert("u3".to_owned());
    check(&mut people, &expected);
    for (_, other) in people.iter_mut() {
        other.silent(200);
    }
}

// QUIT with a reason says goodbye and closes the socket (so nc exits);
// everyone else sees the leave with the reason.
#[test]
fn quit_says_bye_closes_and_announces_the_reason() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    alice.send_line("QUIT gone fishing");
    alice.expect("BYE ");
    alice.expect_eof();
    match bob.parsed() {
        ServerLine::Quit { time, nick, reason } => {
            assert_recent(time);
            assert_eq!((nick.as_str(), reason.as_str()), ("alice", "gone fishing"));
        }
        other => panic!("expected QUIT, got {other:?}"),
    }
    bob.silent(500);
    assert_users(&mut [&mut bob], &["bob"]);
}

// Closing the socket (nc's Ctrl-D or Ctrl-C) removes the user exactly once.
#[test]
fn eof_removes_the_user_once() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    drop(alice);
    let quit = bob.expect("QUIT ");
    assert!(quit.contains(" alice "), "{quit}");
    bob.silent(700);
    assert_users(&mut [&mut bob], &["bob"]);
}

// A half-closed connection (nc -N after stdin ends) also leaves once, and
// still gets its goodbye if it asked to quit.
#[test]
fn half_close_removes_the_user_once() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    alice.send_line("last words");
    alice.shutdown_write();
    let (_, _, _, nick, text) = parse_msg(&bob.line());
    assert_eq!((nick.as_str(), text.as_str()), ("alice", "last words"));
    let quit = bob.expect("QUIT ");
    assert!(quit.contains(" alice "), "{quit}");
    alice.expect_eof();
    bob.silent(500);
}

// A connection reset (the client vanishes with data unread) removes the user
// exactly once.
#[test]
fn reset_removes_the_user_once() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    // Leave a line unread in alice's receive buffer: closing a socket with
    // unread data makes the kernel send RST instead of FIN.
    bob.send_line("you will never read this");
    common::retry(
        "bob's line reaches alice's socket",
        100,
        Duration::from_millis(20),
        || {
            let mut byte = [0u8; 1];
            alice.stream().set_nonblocking(true).ok()?;
            let peeked = alice.stream().peek(&mut byte).ok();
            alice.stream().set_nonblocking(false).ok()?;
            peeked.filter(|&n| n == 1)
        },
    );
    drop(alice);
    let quit = bob.expect("QUIT ");
    match ServerLine::parse(&quit) {
        Ok(ServerLine::Quit { nick, reason, .. }) => {
            assert_eq!(nick, "alice");
            assert_eq!(reason, "connection reset", "the close was a reset");
        }
        other => panic!("expected QUIT, got {other:?}"),
    }
    bob.silent(700);
    assert_users(&mut [&mut bob], &["bob"]);
}

// Stopping the server says goodbye to every client and closes each socket.
#[test]
fn shutdown_says_bye_to_everyone() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    let mut idle = Client::connect(server.addr);
    idle.expect("HELLO ");
    alice.expect("JOIN ");
    server.stop();
    for client in [&mut alice, &mut bob, &mut idle] {
        let bye = client.expect("BYE ");
        assert!(bye.contains("shutting down"), "{bye}");
        client.expect_eof();
    }
}
