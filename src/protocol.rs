//! The natter line protocol, version 1: pure values and their text form.
//!
//! Nothing here does IO. A client line (already framed and decoded by
//! [`crate::decoder`]) becomes a [`Command`] with [`parse_command`]; a
//! [`ServerLine`] becomes bytes with [`ServerLine::encode`] and, on the client
//! side, comes back with [`ServerLine::parse`]. Encoding is the exact inverse of
//! parsing for every value that [`ServerLine::is_wire_safe`] accepts; the
//! property tests and the fuzzers hold us to that. PROTOCOL.md is the normative
//! description; this module is its executable form.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// The protocol name and version the server announces in its greeting.
pub const PROTOCOL_VERSION: &str = "natter/1";

/// The room every user is in. Version 1 has no other.
pub const LOBBY: &str = "#lobby";

/// A time assigned by the server, with whole-second precision.
///
/// On the wire it is RFC 3339 in UTC: `2026-11-26T09:30:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to the second.
    pub fn now() -> Self {
        Self::from_unix(Utc::now().timestamp()).unwrap_or(Self(DateTime::UNIX_EPOCH))
    }

    /// The time `secs` seconds after the Unix epoch, if it is between the
    /// years 0 and 9999 (the range RFC 3339 can write).
    pub fn from_unix(secs: i64) -> Option<Self> {
        const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
        const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        if !(MIN..=MAX).contains(&secs) {
            return None;
        }
        Utc.timestamp_opt(secs, 0).single().map(Self)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    /// The time as a chrono value, for display in local time.
    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    fn parse(s: &str) -> Option<Self> {
        let t = DateTime::parse_from_rfc3339(s).ok()?;
        Self::from_unix(t.timestamp())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Timestamp {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let secs = u.int_in_range(-62_167_219_200..=253_402_300_799)?;
        Self::from_unix(secs).ok_or(arbitrary::Error::IncorrectFormat)
    }
}

/// What a client asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Command {
    /// `NICK <name>`: pick a nickname, or change it.
    Nick(String),
    /// `MSG [#room] <text>`: say something; without a room, in the current one.
    Msg {
        /// The room named before the text, if any.
        room: Option<String>,
        /// What to say; never empty.
        text: String,
    },
    /// `USERS [#room]`: who is here.
    Users {
        /// The room asked about; the current one if absent.
        room: Option<String>,
    },
    /// `QUIT [reason]`: leave; the reason (possibly empty) is shown to others.
    Quit(String),
    /// `HELP`: list the commands.
    Help,
    /// `PING [token]`: check the connection; the server answers `PONG [token]`.
    Ping(String),
    /// `JOIN #room`: enter a room (creating it if needed) and make it the
    /// current one.
    Join(String),
    /// `PART [#room] [reason]`: leave a room, by default the current one.
    Part {
        /// The room to leave; the current one if absent.
        room: Option<String>,
        /// Why, shown to the room; may be empty.
        reason: String,
    },
    /// `ROOMS`: list the rooms with their member counts and topics.
    Rooms,
    /// `TOPIC [#room] [text]`: set a room's topic, or ask for it when the
    /// text is empty.
    Topic {
        /// The room; the current one if absent.
        room: Option<String>,
        /// The new topic; empty to ask.
        text: String,
    },
    /// `WHISPER <nick> <text>`: a private message to one user.
    Whisper {
        /// The recipient.
        nick: String,
        /// What to say; never empty.
        text: String,
    },
    /// `HISTORY <#room|nick> [count | before <id> | since <id>]`: earlier
    /// messages of a room, or of a private conversation.
    History {
        /// A room, or the other participant of a private conversation.
        target: String,
        /// Which messages.
        query: HistoryQuery,
    },
    /// `REGISTER <password>`: make the nickname you hold an account that
    /// only this password can take.
    Register(Secret),
    /// `LOGIN <nick> <password>`: prove you own a registered nickname, and
    /// take it (registering the connection if it had no nickname yet).
    Login {
        /// The account's nickname.
        nick: String,
        /// Its password.
        password: Secret,
    },
    /// `PASSWORD <old> <new>`: change your account's password.
    Password {
        /// The current password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// `KICK <nick> [reason]` (operators): disconnect a user.
    Kick {
        /// Who.
        nick: String,
        /// Why, shown to everyone concerned; may be empty.
        reason: String,
    },
    /// `MUTE <nick> [duration] [reason]` (operators): stop a user from
    /// talking for a while.
    Mute {
        /// Who.
        nick: String,
        /// For how many seconds; the server's default if absent.
        secs: Option<u64>,
        /// Why; may be empty.
        reason: String,
    },
    /// `UNMUTE <nick>` (operators): lift a mute early.
    Unmute(String),
    /// `BAN <nick|address> [duration] [reason]` (operators): keep a
    /// nickname or an IP address out for a while.
    Ban {
        /// A nickname or an IP address.
        target: String,
        /// For how many seconds; the server's default if absent.
        secs: Option<u64>,
        /// Why; may be empty.
        reason: String,
    },
    /// `UNBAN <nick|address>` (operators): lift a ban early.
    Unban(String),
    /// `BANS` (operators): list the bans and mutes in force.
    Bans,
}

/// A password as it arrived: kept out of `Debug` output, so it cannot reach
/// a log or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Which stored messages a `HISTORY` command asks for; at most
/// [`HISTORY_MAX`] at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum HistoryQuery {
    /// The newest messages, this many.
    Last(u32),
    /// The messages just before this id.
    Before(u64),
    /// The messages just after this id (what a reconnecting client missed).
    Since(u64),
}

/// How many messages `HISTORY` returns when no count is given.
pub const HISTORY_DEFAULT: u32 = 50;
/// The most messages one `HISTORY` returns.
pub const HISTORY_MAX: u32 = 500;

/// Why a client line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line was empty or only spaces; the server ignores it.
    #[error("empty line")]
    Empty,
    /// A slash command that does not exist.
    #[error("there is no command /{0}")]
    Unknown(String),
    /// A command without the argument it needs.
    #[error("{verb} needs {what}")]
    MissingArgument {
        /// The canonical verb.
        verb: &'static str,
        /// What is missing, in words.
        what: &'static str,
    },
    /// A room argument that is not a valid room name.
    #[error("{0} is not a room name (rooms look like #lobby: # then letters, digits, _ or -)")]
    BadRoom(String),
    /// An argument that does not fit the command; the text says how it should look.
    #[error("{0}")]
    BadArgument(String),
}

/// The verbs a client may send, in canonical (capital) form.
pub const VERBS: [&str; 21] = [
    "NICK", "MSG", "USERS", "QUIT", "HELP", "PING", "JOIN", "PART", "ROOMS", "TOPIC", "WHISPER",
    "HISTORY", "REGISTER", "LOGIN", "PASSWORD", "KICK", "MUTE", "UNMUTE", "BAN", "UNBAN", "BANS",
];

/// Parses one decoded client line.
///
/// The rules, from PROTOCOL.md: a line whose first word is a verb in
/// capitals is that command; a line starting with `/` is a slash command whose
/// verb may be in any case (`//` escapes a leading slash); anything else is
/// chat, the same as `MSG` with the whole line as text.
pub fn parse_command(line: &str) -> Result<Command, CommandError> {
    let line = line.trim_matches(' ');
    if line.is_empty() {
        return Err(CommandError::Empty);
    }
    if let Some(rest) = line.strip_prefix('/') {
        if rest.starts_with('/') {
            return Ok(Command::Msg {
                room: None,
                text: rest.to_owned(),
            });
        }
        let (verb, arg) = split_word(rest);
        let verb = verb.to_ascii_uppercase();
        let verb = match verb.as_str() {
            "EXIT" => "QUIT",
            "LEAVE" => "PART",
            // `/msg nick text` is private, as IRC users expect.
            "W" | "MSG" => "WHISPER",
            "PONG" => return Err(CommandError::Unknown(verb.to_ascii_lowercase())),
            v => match VERBS.iter().find(|&&known| known == v) {
                Some(known) => known,
                None => return Err(CommandError::Unknown(verb.to_ascii_lowercase())),
            },
        };
        return command(verb, arg);
    }
    let (first, arg) = split_word(line);
    match VERBS.iter().find(|&&v| v == first) {
        Some(verb) => command(verb, arg),
        None => Ok(Command::Msg {
            room: None,
            text: line.to_owned(),
        }),
    }
}

/// Splits off the first space-separated word; the rest has its outer spaces
/// removed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_matches(' ')),
        None => (s, ""),
    }
}

fn command(verb: &'static str, arg: &str) -> Result<Command, CommandError> {
    let missing = |what| Err(CommandError::MissingArgument { verb, what });
    match verb {
        "NICK" if arg.is_empty() => missing("a nickname, as in NICK alice"),
        "NICK" => Ok(Command::Nick(arg.to_owned())),
        "MSG" => {
            let (room, text) = match arg.strip_prefix('#') {
                Some(_) => {
                    let (room, text) = split_word(arg);
                    if !crate::names::is_room(room) {
                        return Err(CommandError::BadRoom(room.to_owned()));
                    }
                    (Some(room.to_owned()), text)
                }
                None => (None, arg),
            };
            if text.is_empty() {
                return missing("some text, as in MSG hello");
            }
            Ok(Command::Msg {
                room,
                text: text.to_owned(),
            })
        }
        "USERS" if arg.is_empty() => Ok(Command::Users { room: None }),
        "USERS" if crate::names::is_room(arg) => Ok(Command::Users {
            room: Some(arg.to_owned()),
        }),
        "USERS" => Err(CommandError::BadRoom(arg.to_owned())),
        "QUIT" => Ok(Command::Quit(arg.to_owned())),
        "HELP" => Ok(Command::Help),
        "PING" => Ok(Command::Ping(arg.to_owned())),
        "JOIN" if arg.is_empty() => missing("a room, as in JOIN #rust"),
        "JOIN" => {
            // Be kind to `/join rust`.
            let room = if arg.starts_with('#') {
                arg.to_owned()
            } else {
                format!("#{arg}")
            };
            if !crate::names::is_room(&room) {
                return Err(CommandError::BadRoom(room));
            }
            Ok(Command::Join(room))
        }
        "PART" => {
            let (room, reason) = room_prefix(arg)?;
            Ok(Command::Part {
                room,
                reason: reason.to_owned(),
            })
        }
        "ROOMS" => Ok(Command::Rooms),
        "BANS" => Ok(Command::Bans),
        "TOPIC" => {
            let (room, text) = room_prefix(arg)?;
            Ok(Command::Topic {
                room,
                text: text.to_owned(),
            })
        }
        "WHISPER" => {
            let (nick, text) = split_word(arg);
            if nick.is_empty() || text.is_empty() {
                return missing("a nickname and some text, as in WHISPER bob hello");
            }
            Ok(Command::Whisper {
                nick: nick.to_owned(),
                text: text.to_owned(),
            })
        }
        "REGISTER" if arg.is_empty() => missing("a password, as in REGISTER <password>"),
        "REGISTER" => Ok(Command::Register(password(arg)?)),
        "LOGIN" => {
            let (nick, secret) = split_word(arg);
            if nick.is_empty() || secret.is_empty() {
                return missing("a nickname and a password, as in LOGIN alice <password>");
            }
            Ok(Command::Login {
                nick: nick.to_owned(),
                password: password(secret)?,
            })
        }
        "PASSWORD" => {
            let (old, new) = split_word(arg);
            if old.is_empty() || new.is_empty() {
                return missing("the old and the new password, as in PASSWORD <old> <new>");
            }
            Ok(Command::Password {
                old: password(old)?,
                new: password(new)?,
            })
        }
        "KICK" => {
            let (nick, reason) = split_word(arg);
            if nick.is_empty() {
                return missing("a nickname, as in KICK bob flooding");
            }
            Ok(Command::Kick {
                nick: nick.to_owned(),
                reason: reason.to_owned(),
            })
        }
        "MUTE" | "BAN" => {
            let (target, rest) = split_word(arg);
            if target.is_empty() {
                return missing(if verb == "MUTE" {
                    "a nickname, as in MUTE bob 10m flooding"
                } else {
                    "a nickname or an address, as in BAN bob 1d spam"
                });
            }
            let (first, after) = split_word(rest);
            let (secs, reason) = match parse_duration(first) {
                Some(Ok(secs)) => (Some(secs), after),
                Some(Err(())) => {
                    return Err(CommandError::BadArgument(
                        "a duration is a positive number and a unit, as in 30s, 10m, 2h or 7d"
                            .into(),
                    ))
                }
                None => (None, rest),
            };
            let (target, reason) = (target.to_owned(), reason.to_owned());
            Ok(if verb == "MUTE" {
                Command::Mute {
                    nick: target,
                    secs,
                    reason,
                }
            } else {
                Command::Ban {
                    target,
                    secs,
                    reason,
                }
            })
        }
        "UNMUTE" | "UNBAN" => {
            let (target, rest) = split_word(arg);
            if target.is_empty() || !rest.is_empty() {
                return missing("one nickname (or, for UNBAN, an address)");
            }
            Ok(if verb == "UNMUTE" {
                Command::Unmute(target.to_owned())
            } else {
                Command::Unban(target.to_owned())
            })
        }
        _ => {
            let (target, query) = split_word(arg);
            if target.is_empty() {
                return missing("a room or a nickname, as in HISTORY #lobby 50");
            }
            let query = parse_history_query(query).ok_or_else(|| {
                CommandError::BadArgument(format!(
                    "HISTORY takes a count from 1 to {HISTORY_MAX}, before <id> or since <id>"
                ))
            })?;
            Ok(Command::History {
                target: target.to_owned(),
                query,
            })
        }
    }
}

/// A password argument: one word (so `PASSWORD <old> <new>` can be told
/// apart). How long it must be is the server's policy, not syntax.
fn password(word: &str) -> Result<Secret, CommandError> {
    if word.contains(' ') {
        return Err(CommandError::BadArgument(
            "a password is one word, without spaces".into(),
        ));
    }
    Ok(Secret::new(word))
}

/// The longest duration a `MUTE` or `BAN` may name: ten years.
const DURATION_MAX: u64 = 10 * 366 * 24 * 3600;

/// Reads a duration word (`30s`, `10m`, `2h`, `7d`, `1w`) as seconds:
/// `None` if the word is not shaped like one (so it starts the reason),
/// `Some(Err)` if it is but is zero or too long.
pub fn parse_duration(word: &str) -> Option<Result<u64, ()>> {
    let split = word.len().checked_sub(1)?;
    let (digits, unit) = (word.get(..split)?, word.get(split..)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        "w" => 7 * 24 * 3600,
        _ => return None,
    };
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale));
    Some(match secs {
        Some(secs) if (1..=DURATION_MAX).contains(&secs) => Ok(secs),
        _ => Err(()),
    })
}

/// Splits an optional leading `#room` off an argument.
fn room_prefix(arg: &str) -> Result<(Option<String>, &str), CommandError> {
    if !arg.starts_with('#') {
        return Ok((None, arg));
    }
    let (room, rest) = split_word(arg);
    if !crate::names::is_room(room) {
        return Err(CommandError::BadRoom(room.to_owned()));
    }
    Ok((Some(room.to_owned()), rest))
}

fn parse_history_query(query: &str) -> Option<HistoryQuery> {
    let number = |s: &str| -> Option<u64> {
        // Plain digits only: no sign, no spaces.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match split_word(query) {
        ("", _) => Some(HistoryQuery::Last(HISTORY_DEFAULT)),
        ("before", id) => number(id).map(HistoryQuery::Before),
        ("since", id) => number(id).map(HistoryQuery::Since),
        (count, "") => {
            let count = u32::try_from(number(count)?).ok()?;
            (1..=HISTORY_MAX)
                .contains(&count)
                .then_some(HistoryQuery::Last(count))
        }
        _ => None,
    }
}

impl Command {
    /// The canonical line for this command, without the line ending.
    ///
    /// A room-less message whose text starts with `#` is written as a plain
    /// chat line, because `MSG #word` would name a room.
    pub fn to_line(&self) -> String {
        let with_arg = |verb: &str, arg: &str| {
            if arg.is_empty() {
                verb.to_owned()
            } else {
                format!("{verb} {arg}")
            }
        };
        match self {
            Command::Nick(nick) => format!("NICK {nick}"),
            Command::Msg {
                room: Some(room),
                text,
            } => format!("MSG {room} {text}"),
            Command::Msg { room: None, text } if text.starts_with('#') => text.clone(),
            Command::Msg { room: None, text } => format!("MSG {text}"),
            Command::Users { room } => with_arg("USERS", room.as_deref().unwrap_or("")),
            Command::Quit(reason) => with_arg("QUIT", reason),
            Command::Help => "HELP".to_owned(),
            Command::Ping(token) => with_arg("PING", token),
            Command::Join(room) => format!("JOIN {room}"),
            Command::Part { room, reason } => {
                with_arg("PART", &join_words(room.as_deref(), reason))
            }
            Command::Rooms => "ROOMS".to_owned(),
            Command::Bans => "BANS".to_owned(),
            Command::Topic { room, text } => with_arg("TOPIC", &join_words(room.as_deref(), text)),
            Command::Whisper { nick, text } => format!("WHISPER {nick} {text}"),
            Command::History { target, query } => match query {
                HistoryQuery::Last(count) => format!("HISTORY {target} {count}"),
                HistoryQuery::Before(id) => format!("HISTORY {target} before {id}"),
                HistoryQuery::Since(id) => format!("HISTORY {target} since {id}"),
            },
            Command::Register(password) => format!("REGISTER {}", password.expose()),
            Command::Login { nick, password } => format!("LOGIN {nick} {}", password.expose()),
            Command::Password { old, new } => {
                format!("PASSWORD {} {}", old.expose(), new.expose())
            }
            Command::Kick { nick, reason } => with_arg("KICK", &join_words(Some(nick), reason)),
            Command::Mute { nick, secs, reason } => {
                with_arg("MUTE", &sanction_args(nick, *secs, reason))
            }
            Command::Unmute(nick) => format!("UNMUTE {nick}"),
            Command::Ban {
                target,
                secs,
                reason,
            } => with_arg("BAN", &sanction_args(target, *secs, reason)),
            Command::Unban(target) => format!("UNBAN {target}"),
        }
    }

    /// True if [`Command::to_line`] of this value parses back to it: the
    /// strings are non-empty where required, free of control characters and
    /// of leading or trailing spaces, and names are names.
    pub fn is_wire_safe(&self) -> bool {
        let arg = |s: &str| is_clean(s) && s.trim_matches(' ') == s;
        let word = |s: &str| !s.is_empty() && !s.contains(' ') && is_clean(s);
        let secret = |s: &Secret| word(s.expose());
        match self {
            Command::Nick(nick) => !nick.is_empty() && arg(nick),
            Command::Msg { room, text } => {
                !text.is_empty() && arg(text) && room.as_deref().is_none_or(crate::names::is_room)
            }
            Command::Users { room } => room.as_deref().is_none_or(crate::names::is_room),
            Command::Quit(s) | Command::Ping(s) => arg(s),
            Command::Help | Command::Rooms | Command::Bans => true,
            Command::Join(room) => crate::names::is_room(room),
            Command::Part { room, reason: text } | Command::Topic { room, text } => {
                arg(text)
                    && match room {
                        Some(room) => crate::names::is_room(room),
                        None => !text.starts_with('#'),
                    }
            }
            Command::Whisper { nick, text } => {
                !nick.is_empty()
                    && !nick.contains(' ')
                    && is_clean(nick)
                    && !text.is_empty()
                    && arg(text)
            }
            Command::History { target, query } => {
                !target.is_empty()
                    && !target.contains(' ')
                    && is_clean(target)
                    && match query {
                        HistoryQuery::Last(n) => (1..=HISTORY_MAX).contains(n),
                        HistoryQuery::Before(_) | HistoryQuery::Since(_) => true,
                    }
            }
            Command::Register(password) => secret(password),
            Command::Login { nick, password } => word(nick) && secret(password),
            Command::Password { old, new } => secret(old) && secret(new),
            Command::Kick { nick, reason } => word(nick) && arg(reason),
            Command::Mute {
                nick: target,
                secs,
                reason,
            }
            | Command::Ban {
                target,
                secs,
                reason,
            } => {
                word(target)
                    && arg(reason)
                    && match secs {
                        Some(secs) => (1..=DURATION_MAX).contains(secs),
                        // A reason that starts like a duration would be read as one.
                        None => parse_duration(split_word(reason).0).is_none(),
                    }
            }
            Command::Unmute(target) | Command::Unban(target) => word(target),
        }
    }
}

/// `"target [<secs>s] [reason]"`.
fn sanction_args(target: &str, secs: Option<u64>, reason: &str) -> String {
    match secs {
        Some(secs) => join_words(Some(&format!("{target} {secs}s")), reason),
        None => join_words(Some(target), reason),
    }
}

/// `"#room rest"`, `"#room"` or `"rest"`.
fn join_words(room: Option<&str>, rest: &str) -> String {
    match (room, rest.is_empty()) {
        (Some(room), true) => room.to_owned(),
        (Some(room), false) => format!("{room} {rest}"),
        (None, _) => rest.to_owned(),
    }
}

/// True if `s` has no control characters (C0, DEL or C1), the characters
/// that could move a cursor, change colours or end a line.
pub fn is_clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// A stable error code, sent as the second word of an `ERR` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ErrorCode {
    /// The command needs a nickname first.
    NotRegistered,
    /// No such command.
    UnknownCommand,
    /// The command lacks an argument.
    MissingArgument,
    /// The nickname breaks the rules; the sentence ends with a valid, free one.
    NickInvalid,
    /// Someone else has the nickname; the sentence ends with a free one.
    NickTaken,
    /// The line was longer than the server's limit; the rest of it was dropped.
    LineTooLong,
    /// The line was not valid UTF-8 and was dropped.
    BadUtf8,
    /// The room does not exist, or is not a valid room name.
    NoSuchRoom,
    /// The server has as many clients as it accepts; the connection closes.
    ServerFull,
    /// No nickname was picked in time; the connection closes.
    Timeout,
    /// The bytes were not a chat client's (HTTP, TLS, SSH); the connection closes.
    NotChat,
    /// The command names a room the client is not in.
    NotInRoom,
    /// No one with that nickname is online.
    NoSuchNick,
    /// An argument does not fit the command.
    BadArgument,
    /// This server keeps no history.
    HistoryOff,
    /// The client is in as many rooms as one may be.
    TooManyRooms,
    /// The nickname is registered: `LOGIN` takes it; the last word is a free guest nickname.
    NickRegistered,
    /// `LOGIN` or `PASSWORD` with a wrong password, or a nickname that is not registered.
    LoginFailed,
    /// Too many failed logins from this address or for this account; the text says when to try again.
    LoginThrottled,
    /// `PASSWORD` without being logged in.
    NotLoggedIn,
    /// An operator command from someone who is not an operator.
    NotOperator,
    /// Talking while muted by an operator; the text says until when.
    Muted,
    /// The nickname or address is banned; the text says until when.
    Banned,
    /// An operator disconnected you.
    Kicked,
    /// The server cannot check a password right now (or is still checking your last one).
    Busy,
    /// Plain text reached the TLS port; the sentence names the plain port.
    /// The connection closes.
    NotTls,
}

impl ErrorCode {
    /// Every code, in the order of PROTOCOL.md.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::NotRegistered,
        ErrorCode::UnknownCommand,
        ErrorCode::MissingArgument,
        ErrorCode::NickInvalid,
        ErrorCode::NickTaken,
        ErrorCode::LineTooLong,
        ErrorCode::BadUtf8,
        ErrorCode::NoSuchRoom,
        ErrorCode::ServerFull,
        ErrorCode::Timeout,
        ErrorCode::NotChat,
        ErrorCode::NotInRoom,
        ErrorCode::NoSuchNick,
        ErrorCode::BadArgument,
        ErrorCode::HistoryOff,
        ErrorCode::TooManyRooms,
        ErrorCode::NickRegistered,
        ErrorCode::LoginFailed,
        ErrorCode::LoginThrottled,
        ErrorCode::NotLoggedIn,
        ErrorCode::NotOperator,
        ErrorCode::Muted,
        ErrorCode::Banned,
        ErrorCode::Kicked,
        ErrorCode::Busy,
        ErrorCode::NotTls,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotRegistered => "not-registered",
            ErrorCode::UnknownCommand => "unknown-command",
            ErrorCode::MissingArgument => "missing-argument",
            ErrorCode::NickInvalid => "nick-invalid",
            ErrorCode::NickTaken => "nick-taken",
            ErrorCode::LineTooLong => "line-too-long",
            ErrorCode::BadUtf8 => "bad-utf8",
            ErrorCode::NoSuchRoom => "no-such-room",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotChat => "not-chat",
            ErrorCode::NotInRoom => "not-in-room",
            ErrorCode::NoSuchNick => "no-such-nick",
            ErrorCode::BadArgument => "bad-argument",
            ErrorCode::HistoryOff => "history-off",
            ErrorCode::TooManyRooms => "too-many-rooms",
            ErrorCode::NickRegistered => "nick-registered",
            ErrorCode::LoginFailed => "login-failed",
            ErrorCode::LoginThrottled => "login-throttled",
            ErrorCode::NotLoggedIn => "not-logged-in",
            ErrorCode::NotOperator => "not-operator",
            ErrorCode::Muted => "muted",
            ErrorCode::Banned => "banned",
            ErrorCode::Kicked => "kicked",
            ErrorCode::Busy => "busy",
            ErrorCode::NotTls => "not-tls",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line the server sends. The first word is always the keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ServerLine {
    /// `HELLO <version> <text>`: the greeting, telling a person what to type.
    Hello {
        /// The protocol version, [`PROTOCOL_VERSION`].
        version: String,
        /// Words for a person.
        text: String,
    },
    /// `WELCOME <nick> <text>`: the nickname was accepted and the client is
    /// now registered. `JOIN` and `USERS` lines for the lobby follow.
    Welcome {
        /// The nickname, as the server will show it.
        nick: String,
        /// Words for a person.
        text: String,
    },
    /// `MSG <time> <id> <room> <nick> <text>`: someone said something.
    Msg {
        /// When the server received it.
        time: Timestamp,
        /// Server-assigned, only ever growing.
        id: u64,
        /// The room it was said in.
        room: String,
        /// Who said it.
        nick: String,
        /// What they said.
        text: String,
    },
    /// `JOIN <time> <room> <nick>`: someone entered a room (also sent to them).
    Join {
        /// When.
        time: Timestamp,
        /// Which room.
        room: String,
        /// Who.
        nick: String,
    },
    /// `QUIT <time> <nick> <reason>`: someone left the chat.
    Quit {
        /// When.
        time: Timestamp,
        /// Who.
        nick: String,
        /// Why, in words; may be empty.
        reason: String,
    },
    /// `NICK <time> <old> <new>`: someone changed nickname (also sent to them).
    Nick {
        /// When.
        time: Timestamp,
        /// The nickname they had.
        old: String,
        /// The nickname they have now.
        new: String,
    },
    /// `USERS <room> <nick>...`: everyone in the room, sorted case-insensitively.
    Users {
        /// Which room.
        room: String,
        /// Its members.
        nicks: Vec<String>,
    },
    /// `PONG [token]`: the answer to `PING`, with its token.
    Pong(String),
    /// `INFO <text>`: words for a person (help, notices).
    Info(String),
    /// `ERR <code> <text>`: something went wrong; the text says what to do.
    Err {
        /// Stable, for programs.
        code: ErrorCode,
        /// A sentence for a person.
        text: String,
    },
    /// `BYE <text>`: the server is closing this connection.
    Bye(String),
    /// `PART <time> <room> <nick> <reason>`: someone left a room (also sent
    /// to them).
    Part {
        /// When.
        time: Timestamp,
        /// Which room.
        room: String,
        /// Who.
        nick: String,
        /// Why, in words; may be empty.
        reason: String,
    },
    /// `TOPIC <time> <room> <nick> <text>`: the room's topic, set by `nick`
    /// at `time`; sent to the room when it changes and to whoever asks.
    Topic {
        /// When it was set.
        time: Timestamp,
        /// Which room.
        room: String,
        /// Who set it.
        nick: String,
        /// The topic.
        text: String,
    },
    /// `ROOM <room> <members> <topic>`: one room, in answer to `ROOMS`.
    Room {
        /// The room.
        room: String,
        /// How many are in it.
        members: u32,
        /// Its topic; may be empty.
        topic: String,
    },
    /// `ROOMS <count>`: ends the answer to `ROOMS`, after `count` `ROOM` lines.
    Rooms(u32),
    /// `WHISPER <time> <id> <from> <to> <text>`: a private message.
    Whisper {
        /// When the server received it.
        time: Timestamp,
        /// Server-assigned, from the same sequence as room messages.
        id: u64,
        /// The sender.
        from: String,
        /// The recipient.
        to: String,
        /// What was said.
        text: String,
    },
    /// `HIST <line>`: a stored `MSG` or `WHISPER`, replayed; never live.
    History(Box<ServerLine>),
    /// `HIST END <target> <count>`: the end of a replay of `count` lines for a
    /// room or private conversation.
    HistoryEnd {
        /// The room, or the other participant's nickname.
        target: String,
        /// How many `HIST` lines came.
        count: u32,
    },
    /// `ACCOUNT <nick> <user|op> <text>`: this connection is now logged in
    /// to the account `nick` (after `REGISTER` or `LOGIN`).
    Account {
        /// The account's nickname.
        nick: String,
        /// Whether the account is an operator.
        operator: bool,
        /// Words for a person.
        text: String,
    },
    /// `MOD <time> <room> <op> <action> <target> <until|-> <text>`: an
    /// operator acted; sent to the rooms concerned.
    Mod {
        /// When.
        time: Timestamp,
        /// The room told.
        room: String,
        /// The operator.
        by: String,
        /// What was done.
        action: ModAction,
        /// To whom: a nickname.
        target: String,
        /// When a mute or ban ends; `None` for the others.
        until: Option<Timestamp>,
        /// The operator's reason; may be empty.
        reason: String,
    },
}

/// What an operator did, as the `MOD` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ModAction {
    /// Disconnected a user.
    Kick,
    /// Silenced a user until a time.
    Mute,
    /// Lifted a mute.
    Unmute,
    /// Kept a nickname or address out until a time.
    Ban,
    /// Lifted a ban.
    Unban,
}

impl ModAction {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ModAction::Kick => "kick",
            ModAction::Mute => "mute",
            ModAction::Unmute => "unmute",
            ModAction::Ban => "ban",
            ModAction::Unban => "unban",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            ModAction::Kick,
            ModAction::Mute,
            ModAction::Unmute,
            ModAction::Ban,
            ModAction::Unban,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// Why a server line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerLineError {
    /// The keyword is not one this version knows.
    #[error("unknown keyword {0:?}")]
    UnknownKeyword(String),
    /// A field is missing or malformed.
    #[error("malformed {0} line")]
    Malformed(&'static str),
}

/// Writes `text` with control characters dropped, so no value can smuggle a
/// line break or escape sequence onto the wire.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    if is_clean(text) {
        out.extend_from_slice(text.as_bytes());
    } else {
        for c in text.chars().filter(|c| !c.is_control()) {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Removes control characters from what was appended to `out` after
/// `start`; cheap when there are none.
fn drop_controls(out: &mut Vec<u8>, start: usize) {
    let tail = out.get(start..).unwrap_or_default();
    // Every control character's UTF-8 form has a byte below 0x20, 0x7F, or
    // the lead byte 0xC2 (C1 controls, U+0080 to U+009F).
    if !tail.iter().any(|&b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return;
    }
    let Ok(text) = std::str::from_utf8(tail) else {
        return;
    };
    if is_clean(text) {
        return;
    }
    let cleaned: String = text.chars().filter(|c| !c.is_control()).collect();
    out.truncate(start);
    out.extend_from_slice(cleaned.as_bytes());
}

impl ServerLine {
    /// Appends the line, with its CRLF ending, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        if let ServerLine::History(line) = self {
            out.extend_from_slice(b"HIST ");
            return line.encode(out);
        }
        let start = out.len();
        // Writing into a Vec cannot fail.
        let _ = match self {
            ServerLine::Hello { version, .. } => write!(out, "HELLO {version} "),
            ServerLine::Welcome { nick, text: _ } => write!(out, "WELCOME {nick} "),
            ServerLine::Msg {
                time,
                id,
                room,
                nick,
                ..
            } => write!(out, "MSG {time} {id} {room} {nick} "),
            ServerLine::Join { time, room, nick } => write!(out, "JOIN {time} {room} {nick}"),
            ServerLine::Quit { time, nick, .. } => write!(out, "QUIT {time} {nick} "),
            ServerLine::Nick { time, old, new } => write!(out, "NICK {time} {old} {new}"),
            ServerLine::Users { room, nicks } => {
                out.extend_from_slice(b"USERS ");
                out.extend_from_slice(room.as_bytes());
                for nick in nicks {
                    out.push(b' ');
                    out.extend_from_slice(nick.as_bytes());
                }
                Ok(())
            }
            ServerLine::Pong(_) => write!(out, "PONG "),
            ServerLine::Info(_) => write!(out, "INFO "),
            ServerLine::Err { code, .. } => write!(out, "ERR {code} "),
            ServerLine::Bye(_) => write!(out, "BYE "),
            ServerLine::Part {
                time, room, nick, ..
            } => write!(out, "PART {time} {room} {nick} "),
            ServerLine::Topic {
                time, room, nick, ..
            } => write!(out, "TOPIC {time} {room} {nick} "),
            ServerLine::Room { room, members, .. } => write!(out, "ROOM {room} {members} "),
            ServerLine::Rooms(count) => write!(out, "ROOMS {count}"),
            ServerLine::Whisper {
                time, id, from, to, ..
            } => write!(out, "WHISPER {time} {id} {from} {to} "),
            ServerLine::HistoryEnd { target, count } => write!(out, "HIST END {target} {count}"),
            ServerLine::History(_) => Ok(()),
            ServerLine::Account { nick, operator, .. } => {
                let role = if *operator { "op" } else { "user" };
                write!(out, "ACCOUNT {nick} {role} ")
            }
            ServerLine::Mod {
                time,
                room,
                by,
                action,
                target,
                until,
                ..
            } => {
                let action = action.as_str();
                match until {
                    Some(until) => write!(out, "MOD {time} {room} {by} {action} {target} {until} "),
                    None => write!(out, "MOD {time} {room} {by} {action} {target} - "),
                }
            }
        };
        match self {
            ServerLine::Hello { text, .. }
            | ServerLine::Welcome { text, .. }
            | ServerLine::Msg { text, .. }
            | ServerLine::Quit { reason: text, .. }
            | ServerLine::Pong(text)
            | ServerLine::Info(text)
            | ServerLine::Err { text, .. }
            | ServerLine::Bye(text)
            | ServerLine::Part { reason: text, .. }
            | ServerLine::Topic { text, .. }
            | ServerLine::Room { topic: text, .. }
            | ServerLine::Whisper { text, .. }
            | ServerLine::Account { text, .. }
            | ServerLine::Mod { reason: text, .. } => {
                if text.is_empty() {
                    // "PONG" rather than "PONG ", for tidy transcripts.
                    if out.last() == Some(&b' ') {
                        out.pop();
                    }
                } else {
                    push_clean(out, text);
                }
            }
            ServerLine::Join { .. }
            | ServerLine::Nick { .. }
            | ServerLine::Users { .. }
            | ServerLine::Rooms(_)
            | ServerLine::History(_)
            | ServerLine::HistoryEnd { .. } => {}
        }
        // Words (nicks, rooms, the version) are written as they are, and a
        // value that is not wire-safe may hold a CR or LF in one: it must
        // still make exactly one line.
        drop_controls(out, start);
        out.extend_from_slice(b"\r\n");
    }

    /// The encoded line as a string, with its CRLF ending.
    pub fn to_line(&self) -> String {
        let mut out = Vec::new();
        self.encode(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Parses one server line, without its line ending.
    pub fn parse(line: &str) -> Result<Self, ServerLineError> {
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        let mut fields = Fields(rest);
        let line = match keyword {
            "HELLO" => ServerLine::Hello {
                version: fields.word("HELLO")?,
                text: fields.rest(),
            },
            "WELCOME" => ServerLine::Welcome {
                nick: fields.word("WELCOME")?,
                text: fields.rest(),
            },
            "MSG" => ServerLine::Msg {
                time: fields.time("MSG")?,
                id: fields.number("MSG")?,
                room: fields.word("MSG")?,
                nick: fields.word("MSG")?,
                text: fields.rest(),
            },
            "JOIN" => ServerLine::Join {
                time: fields.time("JOIN")?,
                room: fields.word("JOIN")?,
                nick: fields.last_word("JOIN")?,
            },
            "QUIT" => ServerLine::Quit {
                time: fields.time("QUIT")?,
                nick: fields.word("QUIT")?,
                reason: fields.rest(),
            },
            "NICK" => ServerLine::Nick {
                time: fields.time("NICK")?,
                old: fields.word("NICK")?,
                new: fields.last_word("NICK")?,
            },
            "USERS" => {
                let room = fields.word("USERS")?;
                let nicks: Vec<String> = match fields.rest() {
                    rest if rest.is_empty() => Vec::new(),
                    rest => rest.split(' ').map(str::to_owned).collect(),
                };
                if nicks.iter().any(String::is_empty) {
                    return Err(ServerLineError::Malformed("USERS"));
                }
                ServerLine::Users { room, nicks }
            }
            "PONG" => ServerLine::Pong(fields.rest()),
            "INFO" => ServerLine::Info(fields.rest()),
            "ERR" => ServerLine::Err {
                code: ErrorCode::parse(&fields.word("ERR")?)
                    .ok_or(ServerLineError::Malformed("ERR"))?,
                text: fields.rest(),
            },
            "BYE" => ServerLine::Bye(fields.rest()),
            "PART" => ServerLine::Part {
                time: fields.time("PART")?,
                room: fields.word("PART")?,
                nick: fields.word("PART")?,
                reason: fields.rest(),
            },
            "TOPIC" => ServerLine::Topic {
                time: fields.time("TOPIC")?,
                room: fields.word("TOPIC")?,
                nick: fields.word("TOPIC")?,
                text: fields.rest(),
            },
            "ROOM" => ServerLine::Room {
                room: fields.word("ROOM")?,
                members: fields.number("ROOM")?,
                topic: fields.rest(),
            },
            "ROOMS" => ServerLine::Rooms(fields.last_number("ROOMS")?),
            "WHISPER" => ServerLine::Whisper {
                time: fields.time("WHISPER")?,
                id: fields.number("WHISPER")?,
                from: fields.word("WHISPER")?,
                to: fields.word("WHISPER")?,
                text: fields.rest(),
            },
            "ACCOUNT" => ServerLine::Account {
                nick: fields.word("ACCOUNT")?,
                operator: match fields.word("ACCOUNT")?.as_str() {
                    "op" => true,
                    "user" => false,
                    _ => return Err(ServerLineError::Malformed("ACCOUNT")),
                },
                text: fields.rest(),
            },
            "MOD" => ServerLine::Mod {
                time: fields.time("MOD")?,
                room: fields.word("MOD")?,
                by: fields.word("MOD")?,
                action: ModAction::parse(&fields.word("MOD")?)
                    .ok_or(ServerLineError::Malformed("MOD"))?,
                target: fields.word("MOD")?,
                until: match fields.word("MOD")?.as_str() {
                    "-" => None,
                    time => Some(Timestamp::parse(time).ok_or(ServerLineError::Malformed("MOD"))?),
                },
                reason: fields.rest(),
            },
            "HIST" if rest.starts_with("END ") => {
                fields.word("HIST")?;
                ServerLine::HistoryEnd {
                    target: fields.word("HIST")?,
                    count: fields.last_number("HIST")?,
                }
            }
            // One level only: a `HIST` inside a `HIST` is malformed, so
            // parsing never recurses deeper than this.
            "HIST" if rest.starts_with("HIST") => return Err(ServerLineError::Malformed("HIST")),
            "HIST" => match ServerLine::parse(rest)? {
                line @ (ServerLine::Msg { .. } | ServerLine::Whisper { .. }) => {
                    ServerLine::History(Box::new(line))
                }
                _ => return Err(ServerLineError::Malformed("HIST")),
            },
            other => return Err(ServerLineError::UnknownKeyword(other.to_owned())),
        };
        Ok(line)
    }

    /// True if [`ServerLine::encode`] of this value parses back to it: words
    /// are non-empty and space-free, texts are clean, rooms and nicks are names.
    pub fn is_wire_safe(&self) -> bool {
        let word = |s: &str| !s.is_empty() && !s.contains(' ') && is_clean(s);
        let nick = |s: &str| crate::names::check_nick(s).is_ok();
        let room = crate::names::is_room;
        match self {
            ServerLine::Hello { version, text } => word(version) && is_clean(text),
            ServerLine::Welcome { nick: n, text } => nick(n) && is_clean(text),
            ServerLine::Msg {
                room: r,
                nick: n,
                text,
                ..
            } => room(r) && nick(n) && is_clean(text),
            ServerLine::Join {
                room: r, nick: n, ..
            } => room(r) && nick(n),
            ServerLine::Quit {
                nick: n, reason, ..
            } => nick(n) && is_clean(reason),
            ServerLine::Nick { old, new, .. } => nick(old) && nick(new),
            ServerLine::Users { room: r, nicks } => room(r) && nicks.iter().all(|n| nick(n)),
            ServerLine::Pong(text)
            | ServerLine::Info(text)
            | ServerLine::Err { text, .. }
            | ServerLine::Bye(text) => is_clean(text),
            ServerLine::Part {
                room: r,
                nick: n,
                reason: text,
                ..
            }
            | ServerLine::Topic {
                room: r,
                nick: n,
                text,
                ..
            } => room(r) && nick(n) && is_clean(text),
            ServerLine::Room { room: r, topic, .. } => room(r) && is_clean(topic),
            ServerLine::Rooms(_) => true,
            ServerLine::Whisper { from, to, text, .. } => nick(from) && nick(to) && is_clean(text),
            ServerLine::History(line) => {
                matches!(**line, ServerLine::Msg { .. } | ServerLine::Whisper { .. })
                    && line.is_wire_safe()
            }
            ServerLine::HistoryEnd { target, .. } => room(target) || nick(target),
            ServerLine::Account { nick: n, text, .. } => nick(n) && is_clean(text),
            ServerLine::Mod {
                room: r,
                by,
                target,
                reason,
                ..
            } => room(r) && nick(by) && nick(target) && is_clean(reason),
        }
    }
}

/// A cursor over the space-separated fields of a server line.
struct Fields<'a>(&'a str);

impl Fields<'_> {
    fn word(&mut self, what: &'static str) -> Result<String, ServerLineError> {
        let (word, rest) = self.0.split_once(' ').unwrap_or((self.0, ""));
        if word.is_empty() {
            return Err(ServerLineError::Malformed(what));
        }
        self.0 = rest;
        Ok(word.to_owned())
    }

    /// The final word: nothing may follow it.
    fn last_word(&mut self, what: &'static str) -> Result<String, ServerLineError> {
        let word = self.word(what)?;
        if self.0.is_empty() {
            Ok(word)
        } else {
            Err(ServerLineError::Malformed(what))
        }
    }

    /// A decimal number: digits only, no sign.
    fn number<T: std::str::FromStr>(&mut self, what: &'static str) -> Result<T, ServerLineError> {
        let word = self.word(what)?;
        if !word.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ServerLineError::Malformed(what));
        }
        word.parse().map_err(|_| ServerLineError::Malformed(what))
    }

    fn last_number<T: std::str::FromStr>(
        &mut self,
        what: &'static str,
    ) -> Result<T, ServerLineError> {
        let n = self.number(what)?;
        if self.0.is_empty() {
            Ok(n)
        } else {
            Err(ServerLineError::Malformed(what))
        }
    }

    fn time(&mut self, what: &'static str) -> Result<Timestamp, ServerLineError> {
        Timestamp::parse(&self.word(what)?).ok_or(ServerLineError::Malformed(what))
    }

    fn rest(&mut self) -> String {
        std::mem::take(&mut self.0).to_owned()
    }
}

#[cfg(test)]
mod tests {
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
            ("[a-z/0-9]{1,10}", text())
                .prop_map(|(version, text)| ServerLine::Hello { version, text }),
            (nick(), text()).prop_map(|(nick, text)| ServerLine::Welcome { nick, text }),
            (time(), any::<u64>(), room(), nick(), text()).prop_map(
                |(time, id, room, nick, text)| ServerLine::Msg {
                    time,
                    id,
                    room,
                    nick,
                    text
                }
            ),
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
            (time(), nick(), nick()).prop_map(|(time, old, new)| ServerLine::Nick {
                time,
                old,
                new
            }),
            (room(), prop::collection::vec(nick(), 0..5))
                .prop_map(|(room, nicks)| ServerLine::Users { room, nicks }),
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
}
