//! Properties of the protocol's parsers and encoders: [`parse_command`] and
//! [`Command::to_line`] (the server reads what clients send), and
//! [`ServerLine::parse`] and [`ServerLine::encode`] (the client reads what the
//! server sends).
//!
//! Checked, for any bytes taken as a line:
//! - parsing never panics;
//! - a parsed value that is wire-safe encodes back to a line that parses to
//!   the same value (parsing gives a canonical form);
//! - a command parsed from a line without control characters is wire-safe.
//!
//! And for any value (from `arbitrary`):
//! - encoding never panics; a server line ends with exactly one CRLF and has
//!   no other CR or LF, whatever its fields hold;
//! - if the value is wire-safe, encode → parse gives it back;
//! - the value made wire-safe by [`safe_command`] / [`safe_server_line`]
//!   (so that the round trip is checked on most inputs, not only the few
//!   random values that happen to be valid) is accepted by `is_wire_safe`
//!   and round-trips too.
//!
//! And for passwords ([`Secret`], in `REGISTER`, `LOGIN` and `PASSWORD`): a
//! secret's `Debug` is `Secret(..)` whatever it holds, and a command's `Debug`
//! does not change when its passwords do, so no password reaches a log or a
//! panic message through `{:?}`. Every [`ErrorCode`] parses back from its
//! wire word ([`check_error_codes`]).

use natter::cidr::Cidr;
use natter::names;
use natter::protocol::{
    is_clean, parse_command, parse_duration, Command, ErrorCode, HistoryQuery, Secret, ServerLine,
    HISTORY_MAX,
};

/// Checks `parse_command` on `data` taken as text.
pub fn check_command_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(command) = parse_command(&text) else {
        return;
    };
    if is_clean(&text) {
        assert!(
            command.is_wire_safe(),
            "{text:?} parsed to {command:?}, which is not wire-safe"
        );
    }
    check_secrets_hidden(&command);
    if command.is_wire_safe() {
        command_round_trip(&command);
    }
}

/// Checks encoding and the round trip of one command value.
pub fn check_command_value(command: &Command) {
    check_secrets_hidden(command);
    let line = command.to_line();
    if command.is_wire_safe() {
        command_round_trip(command);
    } else {
        // Still no panic parsing what we wrote.
        let _ = parse_command(&line);
    }
    let safe = safe_command(command);
    assert!(
        safe.is_wire_safe(),
        "{safe:?} should be wire-safe (made from {command:?})"
    );
    command_round_trip(&safe);
}

/// The passwords a command carries.
pub fn secrets(command: &Command) -> Vec<&Secret> {
    match command {
        Command::Register(password) | Command::Login { password, .. } => vec![password],
        Command::Password { old, new } => vec![old, new],
        _ => Vec::new(),
    }
}

/// `command` with every password replaced by `with`.
fn with_secrets(command: &Command, with: &Secret) -> Command {
    match command.clone() {
        Command::Register(_) => Command::Register(with.clone()),
        Command::Login { nick, .. } => Command::Login {
            nick,
            password: with.clone(),
        },
        Command::Password { .. } => Command::Password {
            old: with.clone(),
            new: with.clone(),
        },
        other => other,
    }
}

/// A password never shows in `Debug`: not the secret's, not the command's.
fn check_secrets_hidden(command: &Command) {
    for secret in secrets(command) {
        assert_eq!(
            format!("{secret:?}"),
            "Secret(..)",
            "a Secret's Debug shows what it holds"
        );
    }
    let shown = format!("{command:?}");
    let blank = format!("{:?}", with_secrets(command, &Secret::new("")));
    assert_eq!(
        shown, blank,
        "a command's Debug depends on its password (it shows it)"
    );
}

/// Every error code's wire word parses back to it, and no two share a word.
pub fn check_error_codes() {
    for (i, code) in ErrorCode::ALL.iter().enumerate() {
        let line = ServerLine::Err {
            code: *code,
            text: "why".into(),
        };
        assert_eq!(
            ServerLine::parse(line.to_line().trim_end()),
            Ok(line),
            "ERR {code} does not parse back"
        );
        assert!(
            ErrorCode::ALL[..i]
                .iter()
                .all(|c| c.as_str() != code.as_str()),
            "two error codes are written {code}"
        );
    }
}

fn command_round_trip(command: &Command) {
    let line = command.to_line();
    assert!(is_clean(&line), "{command:?} encodes to {line:?}");
    assert_eq!(
        parse_command(&line).as_ref(),
        Ok(command),
        "{command:?} encodes to {line:?}, which parses differently"
    );
}

/// Checks `ServerLine::parse` on `data` taken as text.
pub fn check_server_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(line) = ServerLine::parse(&text) else {
        return;
    };
    check_encoding(&line);
    if line.is_wire_safe() {
        server_round_trip(&line);
    }
}

/// Checks encoding and the round trip of one server line value.
pub fn check_server_value(line: &ServerLine) {
    check_encoding(line);
    if line.is_wire_safe() {
        server_round_trip(line);
    }
    let safe = safe_server_line(line);
    assert!(
        safe.is_wire_safe(),
        "{safe:?} should be wire-safe (made from {line:?})"
    );
    server_round_trip(&safe);
}

/// Encodes `line`; checks it is one UTF-8 line ending in CRLF and returns it
/// without the CRLF.
fn check_encoding(line: &ServerLine) -> String {
    let mut out = b"previous\r\n".to_vec();
    line.encode(&mut out);
    let out = out.split_off(10);
    let text = String::from_utf8(out).expect("encoded line is UTF-8");
    let body = text
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("{line:?} encodes to {text:?}, without a CRLF ending"));
    assert!(
        !body.contains(['\r', '\n']),
        "{line:?} encodes to {text:?}, with a line break inside"
    );
    assert_eq!(line.to_line(), text, "to_line differs from encode");
    body.to_owned()
}

fn server_round_trip(line: &ServerLine) {
    let body = check_encoding(line);
    assert_eq!(
        ServerLine::parse(&body).as_ref(),
        Ok(line),
        "{line:?} encodes to {body:?}, which parses differently"
    );
}

/// Text with control characters removed.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Clean text without outer spaces; `x` if that leaves nothing and
/// `non_empty` is asked for.
fn arg(s: &str, non_empty: bool) -> String {
    let s = clean(s).trim_matches(' ').to_owned();
    if s.is_empty() && non_empty {
        "x".to_owned()
    } else {
        s
    }
}

/// One space-free, clean, non-empty word.
fn word(s: &str) -> String {
    let s: String = clean(s).chars().filter(|&c| c != ' ').collect();
    if s.is_empty() {
        "w".to_owned()
    } else {
        s
    }
}

/// A `BAN`/`UNBAN` target made from `s`: a word, and if it is meant as a
/// range (a `/` or a `:`) but is none, the word without those.
fn ban_target(s: &str) -> String {
    let target = word(s);
    if !(target.contains('/') || target.contains(':')) || Cidr::parse(&target).is_ok() {
        return target;
    }
    word(&target.replace(['/', ':'], ""))
}

/// A wire-safe password made from `s`: one word, clean, non-empty.
fn secret(s: &Secret) -> Secret {
    Secret::new(word(s.expose()))
}

/// A duration that survives the round trip through `<secs>s`, made from `secs`.
fn duration(secs: Option<u64>) -> Option<u64> {
    secs.map(|s| match parse_duration(&format!("{s}s")) {
        Some(Ok(ok)) if ok == s => s,
        _ => 1 + s % 3600,
    })
}

/// A reason for `MUTE` or `BAN`: without a duration, its first word must not
/// look like one.
fn sanction_reason(secs: Option<u64>, reason: &str) -> String {
    let reason = arg(reason, false);
    let first = reason.split(' ').next().unwrap_or_default();
    if secs.is_none() && parse_duration(first).is_some() {
        format!("for {reason}")
    } else {
        reason
    }
}

/// A valid nickname made from `s`.
fn nick(s: &str) -> String {
    names::suggest_nick(s, |_| false)
}

/// A valid room name made from `s`.
fn room(s: &str) -> String {
    let name: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(names::ROOM_MAX - 1)
        .collect();
    if name.is_empty() {
        "#lobby".to_owned()
    } else {
        format!("#{name}")
    }
}

/// An optional room and a text after it, as `PART` and `TOPIC` take them: a
/// text after no room must not look like a room.
fn room_and_text(r: Option<&str>, text: &str) -> (Option<String>, String) {
    match r {
        Some(r) => (Some(room(r)), arg(text, false)),
        None => (
            None,
            arg(text, false).trim_start_matches(['#', ' ']).to_owned(),
        ),
    }
}

/// The closest wire-safe command to `command`.
pub fn safe_command(command: &Command) -> Command {
    match command {
        Command::Nick(n) => Command::Nick(arg(n, true)),
        Command::Msg { room: r, text } => Command::Msg {
            room: r.as_deref().map(room),
            text: arg(text, true),
        },
        Command::Users { room: r } => Command::Users {
            room: r.as_deref().map(room),
        },
        Command::Quit(s) => Command::Quit(arg(s, false)),
        Command::Help => Command::Help,
        Command::Ping(s) => Command::Ping(arg(s, false)),
        Command::Join(r) => Command::Join(room(r)),
        Command::Part { room: r, reason } => {
            let (room, reason) = room_and_text(r.as_deref(), reason);
            Command::Part { room, reason }
        }
        Command::Rooms => Command::Rooms,
        Command::Bans => Command::Bans,
        Command::Topic { room: r, text } => {
            let (room, text) = room_and_text(r.as_deref(), text);
            Command::Topic { room, text }
        }
        Command::Whisper { nick, text } => Command::Whisper {
            nick: word(nick),
            text: arg(text, true),
        },
        Command::History { target, query } => Command::History {
            target: word(target),
            query: match *query {
                HistoryQuery::Last(n) => HistoryQuery::Last(1 + n % HISTORY_MAX),
                other => other,
            },
        },
        Command::Register(password) => Command::Register(secret(password)),
        Command::Login { nick, password } => Command::Login {
            nick: word(nick),
            password: secret(password),
        },
        Command::Password { old, new } => Command::Password {
            old: secret(old),
            new: secret(new),
        },
        Command::Kick { nick, reason } => Command::Kick {
            nick: word(nick),
            reason: arg(reason, false),
        },
        Command::Mute { nick, secs, reason } => Command::Mute {
            nick: word(nick),
            secs: duration(*secs),
            reason: sanction_reason(duration(*secs), reason),
        },
        Command::Unmute(nick) => Command::Unmute(word(nick)),
        Command::Ban {
            target,
            secs,
            reason,
        } => Command::Ban {
            target: ban_target(target),
            secs: duration(*secs),
            reason: sanction_reason(duration(*secs), reason),
        },
        Command::Unban(target) => Command::Unban(ban_target(target)),
    }
}

/// The closest wire-safe server line to `line`.
pub fn safe_server_line(line: &ServerLine) -> ServerLine {
    match line.clone() {
        ServerLine::Hello { version, text } => ServerLine::Hello {
            version: word(&version),
            text: clean(&text),
        },
        ServerLine::Welcome { nick: n, text } => ServerLine::Welcome {
            nick: nick(&n),
            text: clean(&text),
        },
        ServerLine::Msg {
            time,
            id,
            room: r,
            nick: n,
            text,
        } => ServerLine::Msg {
            time,
            id,
            room: room(&r),
            nick: nick(&n),
            text: clean(&text),
        },
        ServerLine::Join {
            time,
            room: r,
            nick: n,
        } => ServerLine::Join {
            time,
            room: room(&r),
            nick: nick(&n),
        },
        ServerLine::Quit {
            time,
            nick: n,
            reason,
        } => ServerLine::Quit {
            time,
            nick: nick(&n),
            reason: clean(&reason),
        },
        ServerLine::Nick { time, old, new } => ServerLine::Nick {
            time,
            old: nick(&old),
            new: nick(&new),
        },
        ServerLine::Users { room: r, nicks } => ServerLine::Users {
            room: room(&r),
            nicks: nicks.iter().map(|n| nick(n)).collect(),
        },
        ServerLine::Joins { room: r, nicks } => ServerLine::Joins {
            room: room(&r),
            nicks: nicks.iter().map(|n| nick(n)).collect(),
        },
        ServerLine::Parts { room: r, nicks } => ServerLine::Parts {
            room: room(&r),
            nicks: nicks.iter().map(|n| nick(n)).collect(),
        },
        ServerLine::Pong(text) => ServerLine::Pong(clean(&text)),
        ServerLine::Info(text) => ServerLine::Info(clean(&text)),
        ServerLine::Err { code, text } => ServerLine::Err {
            code,
            text: clean(&text),
        },
        ServerLine::Bye(text) => ServerLine::Bye(clean(&text)),
        ServerLine::Part {
            time,
            room: r,
            nick: n,
            reason,
        } => ServerLine::Part {
            time,
            room: room(&r),
            nick: nick(&n),
            reason: clean(&reason),
        },
        ServerLine::Topic {
            time,
            room: r,
            nick: n,
            text,
        } => ServerLine::Topic {
            time,
            room: room(&r),
            nick: nick(&n),
            text: clean(&text),
        },
        ServerLine::Room {
            room: r,
            members,
            topic,
        } => ServerLine::Room {
            room: room(&r),
            members,
            topic: clean(&topic),
        },
        ServerLine::Rooms(count) => ServerLine::Rooms(count),
        ServerLine::Whisper {
            time,
            id,
            from,
            to,
            text,
        } => ServerLine::Whisper {
            time,
            id,
            from: nick(&from),
            to: nick(&to),
            text: clean(&text),
        },
        // Only stored chat is replayed; anything else stands for itself.
        ServerLine::History(inner) => match *inner {
            inner @ (ServerLine::Msg { .. } | ServerLine::Whisper { .. }) => {
                ServerLine::History(Box::new(safe_server_line(&inner)))
            }
            other => safe_server_line(&other),
        },
        ServerLine::HistoryEnd { target, count } => ServerLine::HistoryEnd {
            target: if target.starts_with('#') {
                room(&target)
            } else {
                nick(&target)
            },
            count,
        },
        ServerLine::Account {
            nick: n,
            operator,
            text,
        } => ServerLine::Account {
            nick: nick(&n),
            operator,
            text: clean(&text),
        },
        ServerLine::Mod {
            time,
            room: r,
            by,
            action,
            target,
            until,
            reason,
        } => ServerLine::Mod {
            time,
            room: room(&r),
            by: nick(&by),
            action,
            target: nick(&target),
            until,
            reason: clean(&reason),
        },
    }
}
