//! Server lines: [`ServerLine`] with [`ServerLine::encode`] and
//! [`ServerLine::parse`], and [`Line`], one encoded line shared by every
//! outbox it goes to.

use std::sync::Arc;

use super::error_code::ErrorCode;
use super::time::Timestamp;
use crate::names;

/// An encoded server line (with CRLF), shared by every recipient of a broadcast.
pub type Line = Arc<[u8]>;

/// Encodes a line once, ready to share among recipients.
pub fn encode(line: &ServerLine) -> Line {
    let mut out = Vec::with_capacity(64);
    line.encode(&mut out);
    out.into()
}

/// True if `s` has no control characters (C0, DEL or C1), the characters
/// that could move a cursor, change colours or end a line.
pub fn is_clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// A line the server sends. The first word is always the keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ServerLine {
    /// `HELLO <version> <text>`: the greeting, telling a person what to type.
    Hello {
        /// The protocol version, [`PROTOCOL_VERSION`](crate::protocol::PROTOCOL_VERSION).
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
    /// `JOINS <room> <nick>...`: these entered a room (protocol 1.1): a big
    /// room's arrivals, gathered; or the rest of a member list after `USERS`.
    Joins {
        /// Which room.
        room: String,
        /// Who, sorted case-insensitively.
        nicks: Vec<String>,
    },
    /// `PARTS <room> <nick>...`: these left a big room, gathered (protocol
    /// 1.1). Sent before the `JOINS` of the same flush.
    Parts {
        /// Which room.
        room: String,
        /// Who, sorted case-insensitively.
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
    /// The keyword of a line that lists nicknames (`USERS`, `JOINS`,
    /// `PARTS`); empty for the others.
    fn keyword(&self) -> &'static str {
        match self {
            ServerLine::Users { .. } => "USERS",
            ServerLine::Joins { .. } => "JOINS",
            ServerLine::Parts { .. } => "PARTS",
            _ => "",
        }
    }

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
            ServerLine::Users { room, nicks }
            | ServerLine::Joins { room, nicks }
            | ServerLine::Parts { room, nicks } => {
                out.extend_from_slice(self.keyword().as_bytes());
                out.push(b' ');
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
            | ServerLine::Joins { .. }
            | ServerLine::Parts { .. }
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
                let (room, nicks) = fields.room_and_nicks("USERS")?;
                ServerLine::Users { room, nicks }
            }
            "JOINS" => {
                let (room, nicks) = fields.room_and_nicks("JOINS")?;
                ServerLine::Joins { room, nicks }
            }
            "PARTS" => {
                let (room, nicks) = fields.room_and_nicks("PARTS")?;
                ServerLine::Parts { room, nicks }
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
        let nick = |s: &str| names::check_nick(s).is_ok();
        let room = names::is_room;
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
            ServerLine::Users { room: r, nicks }
            | ServerLine::Joins { room: r, nicks }
            | ServerLine::Parts { room: r, nicks } => room(r) && nicks.iter().all(|n| nick(n)),
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

    /// A room, then nicknames separated by single spaces (maybe none).
    fn room_and_nicks(
        &mut self,
        what: &'static str,
    ) -> Result<(String, Vec<String>), ServerLineError> {
        let room = self.word(what)?;
        let nicks: Vec<String> = match self.rest() {
            rest if rest.is_empty() => Vec::new(),
            rest => rest.split(' ').map(str::to_owned).collect(),
        };
        if nicks.iter().any(String::is_empty) {
            return Err(ServerLineError::Malformed(what));
        }
        Ok((room, nicks))
    }

    fn rest(&mut self) -> String {
        std::mem::take(&mut self.0).to_owned()
    }
}
