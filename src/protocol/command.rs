//! Client lines: [`parse_command`] turns one decoded line into a [`Command`],
//! and [`Command::to_line`] writes it back.

use super::error_code::ErrorCode;
use super::secret::Secret;
use super::server_line::is_clean;
use crate::cidr::Cidr;
use crate::names;

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

impl CommandError {
    /// The `ERR` code a server answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::Unknown(_) => ErrorCode::UnknownCommand,
            CommandError::BadRoom(_) => ErrorCode::NoSuchRoom,
            CommandError::BadArgument(_) => ErrorCode::BadArgument,
            CommandError::Empty | CommandError::MissingArgument { .. } => {
                ErrorCode::MissingArgument
            }
        }
    }
}

/// The verbs a client may send. Matching on one is exhaustive, so the
/// compiler checks that every verb is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `NICK`.
    Nick,
    /// `MSG`.
    Msg,
    /// `USERS`.
    Users,
    /// `QUIT`.
    Quit,
    /// `HELP`.
    Help,
    /// `PING`.
    Ping,
    /// `JOIN`.
    Join,
    /// `PART`.
    Part,
    /// `ROOMS`.
    Rooms,
    /// `TOPIC`.
    Topic,
    /// `WHISPER`.
    Whisper,
    /// `HISTORY`.
    History,
    /// `REGISTER`.
    Register,
    /// `LOGIN`.
    Login,
    /// `PASSWORD`.
    Password,
    /// `KICK`.
    Kick,
    /// `MUTE`.
    Mute,
    /// `UNMUTE`.
    Unmute,
    /// `BAN`.
    Ban,
    /// `UNBAN`.
    Unban,
    /// `BANS`.
    Bans,
}

impl Verb {
    /// Every verb, in the order `HELP` lists them.
    pub const ALL: [Verb; 21] = [
        Verb::Nick,
        Verb::Msg,
        Verb::Users,
        Verb::Quit,
        Verb::Help,
        Verb::Ping,
        Verb::Join,
        Verb::Part,
        Verb::Rooms,
        Verb::Topic,
        Verb::Whisper,
        Verb::History,
        Verb::Register,
        Verb::Login,
        Verb::Password,
        Verb::Kick,
        Verb::Mute,
        Verb::Unmute,
        Verb::Ban,
        Verb::Unban,
        Verb::Bans,
    ];

    /// The canonical (capital) form, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Nick => "NICK",
            Verb::Msg => "MSG",
            Verb::Users => "USERS",
            Verb::Quit => "QUIT",
            Verb::Help => "HELP",
            Verb::Ping => "PING",
            Verb::Join => "JOIN",
            Verb::Part => "PART",
            Verb::Rooms => "ROOMS",
            Verb::Topic => "TOPIC",
            Verb::Whisper => "WHISPER",
            Verb::History => "HISTORY",
            Verb::Register => "REGISTER",
            Verb::Login => "LOGIN",
            Verb::Password => "PASSWORD",
            Verb::Kick => "KICK",
            Verb::Mute => "MUTE",
            Verb::Unmute => "UNMUTE",
            Verb::Ban => "BAN",
            Verb::Unban => "UNBAN",
            Verb::Bans => "BANS",
        }
    }

    /// The verb written exactly `word` (capitals only), if there is one.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == word)
    }
}

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
            "EXIT" => Verb::Quit,
            "LEAVE" => Verb::Part,
            // `/msg nick text` is private, as IRC users expect.
            "W" | "MSG" => Verb::Whisper,
            "PONG" => return Err(CommandError::Unknown(verb.to_ascii_lowercase())),
            v => match Verb::parse(v) {
                Some(known) => known,
                None => return Err(CommandError::Unknown(verb.to_ascii_lowercase())),
            },
        };
        return command(verb, arg);
    }
    let (first, arg) = split_word(line);
    match Verb::parse(first) {
        Some(verb) => command(verb, arg),
        None => Ok(Command::Msg {
            room: None,
            text: line.to_owned(),
        }),
    }
}

/// Splits off the first space-separated word; the rest has its outer spaces
/// removed.
pub(crate) fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_matches(' ')),
        None => (s, ""),
    }
}

fn command(verb: Verb, arg: &str) -> Result<Command, CommandError> {
    let missing = |what| {
        Err(CommandError::MissingArgument {
            verb: verb.as_str(),
            what,
        })
    };
    match verb {
        Verb::Nick if arg.is_empty() => missing("a nickname, as in NICK alice"),
        Verb::Nick => Ok(Command::Nick(arg.to_owned())),
        Verb::Msg => {
            let (room, text) = match arg.strip_prefix('#') {
                Some(_) => {
                    let (room, text) = split_word(arg);
                    if !names::is_room(room) {
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
        Verb::Users if arg.is_empty() => Ok(Command::Users { room: None }),
        Verb::Users if names::is_room(arg) => Ok(Command::Users {
            room: Some(arg.to_owned()),
        }),
        Verb::Users => Err(CommandError::BadRoom(arg.to_owned())),
        Verb::Quit => Ok(Command::Quit(arg.to_owned())),
        Verb::Help => Ok(Command::Help),
        Verb::Ping => Ok(Command::Ping(arg.to_owned())),
        Verb::Join if arg.is_empty() => missing("a room, as in JOIN #rust"),
        Verb::Join => {
            // Be kind to `/join rust`.
            let room = if arg.starts_with('#') {
                arg.to_owned()
            } else {
                format!("#{arg}")
            };
            if !names::is_room(&room) {
                return Err(CommandError::BadRoom(room));
            }
            Ok(Command::Join(room))
        }
        Verb::Part => {
            let (room, reason) = room_prefix(arg)?;
            Ok(Command::Part {
                room,
                reason: reason.to_owned(),
            })
        }
        Verb::Rooms => Ok(Command::Rooms),
        Verb::Bans => Ok(Command::Bans),
        Verb::Topic => {
            let (room, text) = room_prefix(arg)?;
            Ok(Command::Topic {
                room,
                text: text.to_owned(),
            })
        }
        Verb::Whisper => {
            let (nick, text) = split_word(arg);
            if nick.is_empty() || text.is_empty() {
                return missing("a nickname and some text, as in WHISPER bob hello");
            }
            Ok(Command::Whisper {
                nick: nick.to_owned(),
                text: text.to_owned(),
            })
        }
        Verb::Register if arg.is_empty() => missing("a password, as in REGISTER <password>"),
        Verb::Register => Ok(Command::Register(password(arg)?)),
        Verb::Login => {
            let (nick, secret) = split_word(arg);
            if nick.is_empty() || secret.is_empty() {
                return missing("a nickname and a password, as in LOGIN alice <password>");
            }
            Ok(Command::Login {
                nick: nick.to_owned(),
                password: password(secret)?,
            })
        }
        Verb::Password => {
            let (old, new) = split_word(arg);
            if old.is_empty() || new.is_empty() {
                return missing("the old and the new password, as in PASSWORD <old> <new>");
            }
            Ok(Command::Password {
                old: password(old)?,
                new: password(new)?,
            })
        }
        Verb::Kick => {
            let (nick, reason) = split_word(arg);
            if nick.is_empty() {
                return missing("a nickname, as in KICK bob flooding");
            }
            Ok(Command::Kick {
                nick: nick.to_owned(),
                reason: reason.to_owned(),
            })
        }
        Verb::Mute | Verb::Ban => {
            let (target, rest) = split_word(arg);
            if target.is_empty() {
                return missing(if verb == Verb::Mute {
                    "a nickname, as in MUTE bob 10m flooding"
                } else {
                    "a nickname, an address or a range, as in BAN bob 1d spam or \
                     BAN 203.0.113.0/24 1d spam"
                });
            }
            if verb == Verb::Ban {
                check_range(target)?;
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
            Ok(if verb == Verb::Mute {
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
        Verb::Unmute | Verb::Unban => {
            let (target, rest) = split_word(arg);
            if target.is_empty() || !rest.is_empty() {
                return missing("one nickname (or, for UNBAN, an address or a range)");
            }
            if verb == Verb::Unban {
                check_range(target)?;
            }
            Ok(if verb == Verb::Unmute {
                Command::Unmute(target.to_owned())
            } else {
                Command::Unban(target.to_owned())
            })
        }
        Verb::History => {
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

/// Whether `target` may be a `BAN`/`UNBAN` target: a valid range if it is
/// meant as one (it has a `/` or a `:`, which no nickname has).
fn is_ban_target(target: &str) -> bool {
    !(target.contains('/') || target.contains(':')) || Cidr::parse(target).is_ok()
}

/// Refuses a `BAN`/`UNBAN` target meant as an address range that is not a
/// valid one (see [`is_ban_target`]).
fn check_range(target: &str) -> Result<(), CommandError> {
    if !is_ban_target(target) {
        return Err(CommandError::BadArgument(format!(
            "{target} is not an address range; write an address (a single IPv6 address \
             stands for its /64) or a range such as 203.0.113.0/24 or 2001:db8::/48"
        )));
    }
    Ok(())
}

/// The longest duration a `MUTE` or `BAN` may name: ten years.
pub(crate) const DURATION_MAX: u64 = 10 * 366 * 24 * 3600;

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
    if !names::is_room(room) {
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
                !text.is_empty() && arg(text) && room.as_deref().is_none_or(names::is_room)
            }
            Command::Users { room } => room.as_deref().is_none_or(names::is_room),
            Command::Quit(s) | Command::Ping(s) => arg(s),
            Command::Help | Command::Rooms | Command::Bans => true,
            Command::Join(room) => names::is_room(room),
            Command::Part { room, reason: text } | Command::Topic { room, text } => {
                arg(text)
                    && match room {
                        Some(room) => names::is_room(room),
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
                    // The parser refuses a malformed range as a ban target.
                    && (matches!(self, Command::Mute { .. }) || is_ban_target(target))
                    && arg(reason)
                    && match secs {
                        Some(secs) => (1..=DURATION_MAX).contains(secs),
                        // A reason that starts like a duration would be read as one.
                        None => parse_duration(split_word(reason).0).is_none(),
                    }
            }
            Command::Unmute(target) => word(target),
            Command::Unban(target) => word(target) && is_ban_target(target),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the command fuzzer: `Unban` of a word with a `/` that is no
    /// range passed as wire-safe, but its line is refused by the parser, so
    /// the round trip failed. Such targets are not wire-safe.
    #[test]
    fn a_malformed_range_is_no_wire_safe_ban_target() {
        for target in [r"\\Z\\/", "1.2.3.4/33", "a:b"] {
            assert!(!Command::Unban(target.into()).is_wire_safe(), "{target}");
            let ban = Command::Ban {
                target: target.into(),
                secs: None,
                reason: String::new(),
            };
            assert!(!ban.is_wire_safe(), "{target}");
            assert!(parse_command(&ban.to_line()).is_err(), "{target}");
        }
        for target in ["203.0.113.0/24", "2001:db8::1", "bob"] {
            let unban = Command::Unban(target.into());
            assert!(unban.is_wire_safe(), "{target}");
            assert_eq!(parse_command(&unban.to_line()), Ok(unban));
        }
        // A nickname-like mute target is untouched by the rule.
        let mute = Command::Mute {
            nick: "a:b".into(),
            secs: None,
            reason: String::new(),
        };
        assert!(mute.is_wire_safe());
    }
}
