//! Unit and property tests of the protocol: parsing, encoding and their round trips.

use super::command::{split_word, DURATION_MAX};
use super::*;
use proptest::prelude::*;

fn msg(room: Option<&str>, text: &str) -> Command {
    Command::Msg {
        room: room.map(str::to_owned),
        text: text.to_owned(),
    }
}

#[test]
fn verbs_in_capitals_are_commands() {
    assert_eq!(parse_command("NICK bob"), Ok(Command::Nick("bob".into())));
    assert_eq!(parse_command("MSG hi there"), Ok(msg(None, "hi there")));
    assert_eq!(
        parse_command("MSG #lobby hi"),
        Ok(msg(Some("#lobby"), "hi"))
    );
    assert_eq!(parse_command("USERS"), Ok(Command::Users { room: None }));
    assert_eq!(parse_command("QUIT"), Ok(Command::Quit(String::new())));
    assert_eq!(
        parse_command("QUIT  gone  "),
        Ok(Command::Quit("gone".into()))
    );
    assert_eq!(parse_command("HELP"), Ok(Command::Help));
    assert_eq!(parse_command("PING 42"), Ok(Command::Ping("42".into())));
}

#[test]
fn other_lines_are_chat() {
    assert_eq!(parse_command("hello"), Ok(msg(None, "hello")));
    assert_eq!(
        parse_command("quit bugging me"),
        Ok(msg(None, "quit bugging me"))
    );
    assert_eq!(parse_command("LOL"), Ok(msg(None, "LOL")));
    assert_eq!(parse_command("#rust is fun"), Ok(msg(None, "#rust is fun")));
    assert_eq!(
        parse_command("MSG QUIT is a verb"),
        Ok(msg(None, "QUIT is a verb"))
    );
    assert_eq!(parse_command("//shrug"), Ok(msg(None, "/shrug")));
    assert_eq!(parse_command("   "), Err(CommandError::Empty));
}

#[test]
fn slash_commands_work_in_any_case() {
    assert_eq!(parse_command("/NiCk bob"), Ok(Command::Nick("bob".into())));
    assert_eq!(parse_command("/exit"), Ok(Command::Quit(String::new())));
    assert_eq!(parse_command("/quit bye"), Ok(Command::Quit("bye".into())));
    assert_eq!(parse_command("/Users"), Ok(Command::Users { room: None }));
    assert_eq!(
        parse_command("/bogus"),
        Err(CommandError::Unknown("bogus".into()))
    );
    assert_eq!(
        parse_command("/"),
        Err(CommandError::Unknown(String::new()))
    );
}

#[test]
fn rooms_whispers_and_history_parse() {
    let whisper = Command::Whisper {
        nick: "bob".into(),
        text: "psst there".into(),
    };
    assert_eq!(parse_command("WHISPER bob psst there"), Ok(whisper.clone()));
    assert_eq!(parse_command("/w bob psst there"), Ok(whisper.clone()));
    assert_eq!(
        parse_command("/msg bob psst there"),
        Ok(whisper),
        "IRC habit"
    );
    assert_eq!(
        parse_command("/join rust"),
        Ok(Command::Join("#rust".into()))
    );
    assert_eq!(
        parse_command("JOIN #Rust"),
        Ok(Command::Join("#Rust".into()))
    );
    assert_eq!(
        parse_command("/join #a b"),
        Err(CommandError::BadRoom("#a b".into()))
    );
    assert_eq!(
        parse_command("/leave #rust bye now"),
        Ok(Command::Part {
            room: Some("#rust".into()),
            reason: "bye now".into()
        })
    );
    assert_eq!(
        parse_command("PART tired"),
        Ok(Command::Part {
            room: None,
            reason: "tired".into()
        })
    );
    assert_eq!(parse_command("/rooms"), Ok(Command::Rooms));
    assert_eq!(
        parse_command("/topic #rust Rust talk"),
        Ok(Command::Topic {
            room: Some("#rust".into()),
            text: "Rust talk".into()
        })
    );
    let history = |target: &str, query| Command::History {
        target: target.into(),
        query,
    };
    assert_eq!(
        parse_command("HISTORY #rust"),
        Ok(history("#rust", HistoryQuery::Last(HISTORY_DEFAULT)))
    );
    assert_eq!(
        parse_command("/history bob 10"),
        Ok(history("bob", HistoryQuery::Last(10)))
    );
    assert_eq!(
        parse_command("HISTORY #rust before 42"),
        Ok(history("#rust", HistoryQuery::Before(42)))
    );
    assert_eq!(
        parse_command("HISTORY #rust since 7"),
        Ok(history("#rust", HistoryQuery::Since(7)))
    );
    for bad in ["0", "501", "-1", "before", "since x", "10 20", "lots"] {
        assert!(
            matches!(
                parse_command(&format!("HISTORY #rust {bad}")),
                Err(CommandError::BadArgument(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn room_lines_have_their_documented_shape() {
    let time = Timestamp::from_unix(1_795_000_000).unwrap();
    let msg = ServerLine::Msg {
        time,
        id: 9,
        room: "#rust".into(),
        nick: "bob".into(),
        text: "old news".into(),
    };
    let replay = ServerLine::History(Box::new(msg));
    assert_eq!(
        replay.to_line(),
        "HIST MSG 2026-11-18T11:06:40Z 9 #rust bob old news\r\n"
    );
    assert_eq!(
        ServerLine::parse("HIST MSG 2026-11-18T11:06:40Z 9 #rust bob old news"),
        Ok(replay)
    );
    assert_eq!(
        ServerLine::parse("HIST END #rust 1"),
        Ok(ServerLine::HistoryEnd {
            target: "#rust".into(),
            count: 1
        })
    );
    assert!(ServerLine::parse("HIST HIST MSG 2026-11-18T11:06:40Z 9 #rust bob x").is_err());
    assert!(ServerLine::parse("HIST PONG").is_err());
    assert_eq!(
        ServerLine::parse("ROOM #rust 3 Rust talk"),
        Ok(ServerLine::Room {
            room: "#rust".into(),
            members: 3,
            topic: "Rust talk".into()
        })
    );
    assert!(ServerLine::parse("ROOM #rust -3 x").is_err());
    assert_eq!(ServerLine::parse("ROOMS 2"), Ok(ServerLine::Rooms(2)));
}

#[test]
fn missing_arguments_and_bad_rooms_are_errors() {
    assert!(matches!(
        parse_command("NICK"),
        Err(CommandError::MissingArgument { verb: "NICK", .. })
    ));
    assert!(matches!(
        parse_command("MSG #lobby"),
        Err(CommandError::MissingArgument { verb: "MSG", .. })
    ));
    assert_eq!(
        parse_command("MSG #bad!room hi"),
        Err(CommandError::BadRoom("#bad!room".into()))
    );
    assert_eq!(
        parse_command("USERS lobby"),
        Err(CommandError::BadRoom("lobby".into()))
    );
}

#[test]
fn server_lines_have_their_documented_shape() {
    let time = Timestamp::from_unix(1_795_000_000).unwrap();
    let line = ServerLine::Msg {
        time,
        id: 7,
        room: LOBBY.into(),
        nick: "alice".into(),
        text: "hi  there".into(),
    };
    assert_eq!(
        line.to_line(),
        "MSG 2026-11-18T11:06:40Z 7 #lobby alice hi  there\r\n"
    );
    assert_eq!(ServerLine::Pong(String::new()).to_line(), "PONG\r\n");
    assert_eq!(
        ServerLine::Users {
            room: LOBBY.into(),
            nicks: vec![]
        }
        .to_line(),
        "USERS #lobby\r\n"
    );
    assert_eq!(
        ServerLine::parse("JOINS #big alice bob"),
        Ok(ServerLine::Joins {
            room: "#big".into(),
            nicks: vec!["alice".into(), "bob".into()]
        })
    );
    assert_eq!(
        ServerLine::Parts {
            room: "#big".into(),
            nicks: vec!["carol".into()]
        }
        .to_line(),
        "PARTS #big carol\r\n"
    );
    assert!(ServerLine::parse("PARTS #big alice  bob").is_err());
    assert!(ServerLine::parse("JOINS").is_err());
    assert_eq!(
        ServerLine::parse("ERR nick-taken bob is taken; try bob2"),
        Ok(ServerLine::Err {
            code: ErrorCode::NickTaken,
            text: "bob is taken; try bob2".into()
        })
    );
    assert!(ServerLine::parse("MSG not-a-time 1 #lobby a b").is_err());
    assert!(ServerLine::parse("JOIN 2026-11-18T11:06:40Z #lobby a extra").is_err());
    assert!(ServerLine::parse("USERS #lobby a  b").is_err());
    assert!(ServerLine::parse("WHATEVER").is_err());
}

#[test]
fn encoding_drops_control_characters() {
    let line = ServerLine::Info("a\r\nMSG forged\x1b[2J\u{9b}".into()).to_line();
    assert_eq!(line, "INFO aMSG forged[2J\r\n");
}

fn nick() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_-]{0,15}"
}

fn room() -> impl Strategy<Value = String> {
    "#[A-Za-z0-9_-]{1,31}"
}

/// Text without control characters; spaces anywhere.
fn text() -> impl Strategy<Value = String> {
    "[ a-zA-Z0-9#/:é漢😀-]{0,40}"
}

fn time() -> impl Strategy<Value = Timestamp> {
    (0i64..4_000_000_000).prop_map(|s| Timestamp::from_unix(s).unwrap())
}

fn server_line() -> impl Strategy<Value = ServerLine> {
    prop_oneof![
        ("[a-z/0-9]{1,10}", text()).prop_map(|(version, text)| ServerLine::Hello { version, text }),
        (nick(), text()).prop_map(|(nick, text)| ServerLine::Welcome { nick, text }),
        (time(), any::<u64>(), room(), nick(), text()).prop_map(|(time, id, room, nick, text)| {
            ServerLine::Msg {
                time,
                id,
                room,
                nick,
                text,
            }
        }),
        (time(), room(), nick()).prop_map(|(time, room, nick)| ServerLine::Join {
            time,
            room,
            nick
        }),
        (time(), nick(), text()).prop_map(|(time, nick, reason)| ServerLine::Quit {
            time,
            nick,
            reason
        }),
        (time(), nick(), nick()).prop_map(|(time, old, new)| ServerLine::Nick { time, old, new }),
        (room(), prop::collection::vec(nick(), 0..5))
            .prop_map(|(room, nicks)| ServerLine::Users { room, nicks }),
        (room(), prop::collection::vec(nick(), 0..5))
            .prop_map(|(room, nicks)| ServerLine::Joins { room, nicks }),
        (room(), prop::collection::vec(nick(), 0..5))
            .prop_map(|(room, nicks)| ServerLine::Parts { room, nicks }),
        text().prop_map(ServerLine::Pong),
        text().prop_map(ServerLine::Info),
        (prop::sample::select(ErrorCode::ALL.to_vec()), text())
            .prop_map(|(code, text)| ServerLine::Err { code, text }),
        text().prop_map(ServerLine::Bye),
        (time(), room(), nick(), text()).prop_map(|(time, room, nick, reason)| {
            ServerLine::Part {
                time,
                room,
                nick,
                reason,
            }
        }),
        (time(), room(), nick(), text()).prop_map(|(time, room, nick, text)| {
            ServerLine::Topic {
                time,
                room,
                nick,
                text,
            }
        }),
        (room(), any::<u32>(), text()).prop_map(|(room, members, topic)| ServerLine::Room {
            room,
            members,
            topic
        }),
        any::<u32>().prop_map(ServerLine::Rooms),
        (time(), any::<u64>(), nick(), nick(), text(), any::<bool>()).prop_map(
            |(time, id, from, to, text, replayed)| {
                let line = ServerLine::Whisper {
                    time,
                    id,
                    from,
                    to,
                    text,
                };
                if replayed {
                    ServerLine::History(Box::new(line))
                } else {
                    line
                }
            }
        ),
        (prop_oneof![room(), nick()], any::<u32>())
            .prop_map(|(target, count)| ServerLine::HistoryEnd { target, count }),
        (nick(), any::<bool>(), text()).prop_map(|(nick, operator, text)| {
            ServerLine::Account {
                nick,
                operator,
                text,
            }
        }),
        (
            time(),
            room(),
            nick(),
            prop::sample::select(vec![
                ModAction::Kick,
                ModAction::Mute,
                ModAction::Unmute,
                ModAction::Ban,
                ModAction::Unban
            ]),
            nick(),
            proptest::option::of(time()),
            text()
        )
            .prop_map(|(time, room, by, action, target, until, reason)| {
                ServerLine::Mod {
                    time,
                    room,
                    by,
                    action,
                    target,
                    until,
                    reason,
                }
            }),
    ]
}

/// A password: one word of visible characters.
fn secret() -> impl Strategy<Value = Secret> {
    "[!-~]{1,20}".prop_map(Secret::new)
}

fn sanction() -> impl Strategy<Value = (String, Option<u64>, String)> {
    (nick(), proptest::option::of(1..=DURATION_MAX), arg()).prop_filter(
        "a reason starting like a duration would be read as one",
        |(_, secs, reason)| secs.is_some() || parse_duration(split_word(reason).0).is_none(),
    )
}

/// An argument as a parsed command holds it: no outer spaces.
fn arg() -> impl Strategy<Value = String> {
    text().prop_map(|t| t.trim_matches(' ').to_owned())
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        arg()
            .prop_filter("nonempty", |s| !s.is_empty())
            .prop_map(Command::Nick),
        (proptest::option::of(room()), arg())
            .prop_filter("nonempty", |(_, t)| !t.is_empty())
            .prop_map(|(room, text)| Command::Msg { room, text }),
        proptest::option::of(room()).prop_map(|room| Command::Users { room }),
        arg().prop_map(Command::Quit),
        Just(Command::Help),
        arg().prop_map(Command::Ping),
        room().prop_map(Command::Join),
        (proptest::option::of(room()), arg())
            .prop_filter("a bare #word would be a room", |(r, t)| r.is_some()
                || !t.starts_with('#'))
            .prop_map(|(room, reason)| Command::Part { room, reason }),
        Just(Command::Rooms),
        Just(Command::Bans),
        (proptest::option::of(room()), arg())
            .prop_filter("a bare #word would be a room", |(r, t)| r.is_some()
                || !t.starts_with('#'))
            .prop_map(|(room, text)| Command::Topic { room, text }),
        (nick(), arg())
            .prop_filter("nonempty", |(_, t)| !t.is_empty())
            .prop_map(|(nick, text)| Command::Whisper { nick, text }),
        (
            prop_oneof![room(), nick()],
            prop_oneof![
                (1..=HISTORY_MAX).prop_map(HistoryQuery::Last),
                any::<u64>().prop_map(HistoryQuery::Before),
                any::<u64>().prop_map(HistoryQuery::Since),
            ]
        )
            .prop_map(|(target, query)| Command::History { target, query }),
        secret().prop_map(Command::Register),
        (nick(), secret()).prop_map(|(nick, password)| Command::Login { nick, password }),
        (secret(), secret()).prop_map(|(old, new)| Command::Password { old, new }),
        (nick(), arg()).prop_map(|(nick, reason)| Command::Kick { nick, reason }),
        sanction().prop_map(|(nick, secs, reason)| Command::Mute { nick, secs, reason }),
        sanction().prop_map(|(target, secs, reason)| Command::Ban {
            target,
            secs,
            reason
        }),
        nick().prop_map(Command::Unmute),
        nick().prop_map(Command::Unban),
    ]
}

#[test]
fn durations_need_a_unit_and_fit() {
    assert_eq!(parse_duration("30s"), Some(Ok(30)));
    assert_eq!(parse_duration("10m"), Some(Ok(600)));
    assert_eq!(parse_duration("2h"), Some(Ok(7200)));
    assert_eq!(parse_duration("7d"), Some(Ok(7 * 86400)));
    assert_eq!(parse_duration("0m"), Some(Err(())));
    assert_eq!(parse_duration("99999999999999999999d"), Some(Err(())));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("m"), None);
    assert_eq!(parse_duration("spam"), None);
    assert_eq!(parse_duration("é"), None);
    assert_eq!(
        parse_command("/mute bob 10m stop flooding"),
        Ok(Command::Mute {
            nick: "bob".into(),
            secs: Some(600),
            reason: "stop flooding".into()
        })
    );
    assert_eq!(
        parse_command("BAN 192.0.2.7 spam bots"),
        Ok(Command::Ban {
            target: "192.0.2.7".into(),
            secs: None,
            reason: "spam bots".into()
        })
    );
    assert!(matches!(
        parse_command("MUTE bob 0s"),
        Err(CommandError::BadArgument(_))
    ));
}

#[test]
fn passwords_are_one_word_and_never_printed() {
    assert_eq!(
        parse_command("/login alice s3cret-pass"),
        Ok(Command::Login {
            nick: "alice".into(),
            password: Secret::new("s3cret-pass")
        })
    );
    assert!(matches!(
        parse_command("REGISTER two words"),
        Err(CommandError::BadArgument(_))
    ));
    assert!(matches!(
        parse_command("LOGIN alice"),
        Err(CommandError::MissingArgument { .. })
    ));
    let debug = format!("{:?}", parse_command("PASSWORD old-one new-one"));
    assert!(
        !debug.contains("old-one") && !debug.contains("new-one"),
        "{debug}"
    );
}

proptest! {
    #[test]
    fn server_lines_round_trip(line in server_line()) {
        prop_assert!(line.is_wire_safe());
        let encoded = line.to_line();
        let body = encoded.strip_suffix("\r\n").unwrap();
        prop_assert!(!body.contains(['\r', '\n']));
        prop_assert_eq!(ServerLine::parse(body), Ok(line));
    }

    #[test]
    fn commands_round_trip(command in command()) {
        prop_assert!(command.is_wire_safe());
        prop_assert_eq!(parse_command(&command.to_line()), Ok(command));
    }

    #[test]
    fn parsers_never_panic(line in "\\PC{0,60}") {
        let _ = parse_command(&line);
        let _ = ServerLine::parse(&line);
    }
}
