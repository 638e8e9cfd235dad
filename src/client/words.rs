//! The sentences the client shows that it writes itself (rather than
//! passing on the server's), and how it writes the time: in one place, so
//! they read alike and can be changed together (and translated one day).
//! The terminal UI's few labels and dialog texts stay with their views.

use crate::protocol::{ModAction, Timestamp};

/// The start of the `INFO` line the server sends when its idea of our
/// current room changes. This client always names the room, so it is not
/// shown.
pub const CURRENT_ROOM_INFO: &str = "Messages without a room now go to ";

/// The lines `/help` shows before the server's own help.
pub const LOCAL_HELP: [&str; 4] = [
    "Keys: Enter send · Up/Down history · Tab complete nick · PgUp/PgDn or mouse wheel scroll",
    "      (past the top: older history) · Ctrl-N/Ctrl-P or Alt-1..9 switch conversation",
    "      Esc quit (asks) · Ctrl-C quit. Start a message with // to begin it with a slash.",
    "Here: /query nick (or /w nick) opens a private conversation, /close closes it, /history fetches older.",
];

/// The local wall-clock time of a server timestamp, as `HH:MM`.
pub fn clock(time: Timestamp) -> String {
    time.datetime()
        .with_timezone(&chrono::Local)
        .format("%H:%M")
        .to_string()
}

/// ` (reason)` after an event, or nothing when there is no reason.
fn because(reason: &str) -> String {
    match reason {
        "" => String::new(),
        reason => format!(" ({reason})"),
    }
}

/// `n` and the word for it, with an `s` when it is not one.
fn count(n: u32, word: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {word}{s}")
}

/// A line the connection could not send.
pub fn not_sent_offline(line: &str) -> String {
    format!("Not sent, no connection: {line}")
}

/// The first attempt to reach `server`.
pub fn connecting(server: &str) -> String {
    format!("Connecting to {server}…")
}

/// The connection dropped; the next attempt is in `retry_secs`.
pub fn disconnected(reason: &str, retry_secs: f32) -> String {
    format!("Disconnected: {reason}. Retrying in {retry_secs:.1}s.")
}

/// The connection ended for good.
pub fn closed(reason: &str) -> String {
    format!("Connection closed: {reason}.")
}

/// The server's `HELLO`.
pub fn connected(server: &str, version: &str) -> String {
    format!("Connected to {server} ({version}).")
}

/// Someone joined a room.
pub fn joined(nick: &str, room: &str) -> String {
    format!("{nick} joined {room}")
}

/// Several joined a big room at once (`JOINS`).
pub fn joined_many(nicks: &[String], room: &str) -> String {
    format!("{} joined {room}", some_of(nicks))
}

/// Several left a big room at once (`PARTS`).
pub fn left_many(nicks: &[String], room: &str) -> String {
    format!("{} left {room}", some_of(nicks))
}

/// The first few of `nicks` and how many more: a big room's news stays one
/// short line.
fn some_of(nicks: &[String]) -> String {
    const SHOWN: usize = 5;
    let names = nicks
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match nicks.len().saturating_sub(SHOWN) {
        0 => names,
        more => format!("{names} and {more} more"),
    }
}

/// Someone (`None`: this user) left a room.
pub fn left(nick: Option<&str>, room: &str, reason: &str) -> String {
    let who = nick.unwrap_or("You");
    format!("{who} left {room}{}", because(reason))
}

/// Someone left the chat.
pub fn quit(nick: &str, reason: &str) -> String {
    format!("{nick} left{}", because(reason))
}

/// A room's members, as `USERS` gives them.
pub fn members(room: &str, nicks: &[String]) -> String {
    format!("{room} ({}): {}", nicks.len(), nicks.join(" "))
}

/// A topic set (or, when empty, cleared) by `nick`.
pub fn topic(room: &str, text: &str, nick: &str) -> String {
    match text {
        "" => format!("{room} has no topic (cleared by {nick})"),
        text => format!("Topic of {room}: {text} (set by {nick})"),
    }
}

/// The server's `BYE`.
pub fn goodbye(text: &str) -> String {
    format!("The server says goodbye: {text}")
}

/// The server's `PONG`, with the token it echoes, if any.
pub fn pong(token: &str) -> String {
    match token {
        "" => "PONG: the server answers.".to_owned(),
        token => format!("PONG {token}"),
    }
}

/// One room of a `ROOMS` answer.
pub fn room_entry(room: &str, members: u32, joined: bool, topic: &str) -> String {
    let mark = if joined { " (you are in it)" } else { "" };
    format!("{room} ({members}){mark} {topic}")
        .trim_end()
        .to_owned()
}

/// The end of a `ROOMS` answer.
pub fn rooms_listed(count: u32) -> String {
    format!("{count} rooms listed; /join #room to enter one.")
}

/// An operator's action, as a `MOD` line announces it.
pub fn moderation(
    by: &str,
    action: ModAction,
    target: &str,
    until: Option<Timestamp>,
    reason: &str,
) -> String {
    let verb = match action {
        ModAction::Kick => "kicked",
        ModAction::Mute => "muted",
        ModAction::Unmute => "unmuted",
        ModAction::Ban => "banned",
        ModAction::Unban => "unbanned",
    };
    let until = until.map_or_else(String::new, |t| format!(" until {}", clock(t)));
    format!("{by} {verb} {target}{until}{}", because(reason))
}

/// A room the client has no pane left for.
pub fn too_many_rooms(room: &str) -> String {
    format!("Too many rooms open: {room} gets no pane; /part one.")
}

/// A nickname change: this user's (`old` is `None`) or someone else's.
pub fn renamed(old: Option<&str>, new: &str) -> String {
    match old {
        None => format!("You are now known as {new}"),
        Some(old) => format!("{old} is now known as {new}"),
    }
}

/// What a page of history added above a pane: `n` earlier messages of
/// `name` (a room or a nickname, `room` telling which), or, after a gap,
/// `n` messages missed.
pub fn history_above(fresh: bool, n: u32, name: &str, room: bool) -> String {
    match (fresh, room) {
        (true, true) => format!("Above: {} of {name}.", count(n, "earlier message")),
        (true, false) => format!("Above: {} with {name}.", count(n, "earlier message")),
        (false, _) => format!("Above: {} you missed.", count(n, "message")),
    }
}

/// Before the server's `HELP`.
pub const SERVER_HELP_FOLLOWS: &str =
    "The server's commands follow (their /slash forms work here):";

/// `/topic` in a private conversation.
pub const NO_PRIVATE_TOPIC: &str = "Only rooms have topics; this is a private conversation.";

/// `/users` in a private conversation.
pub fn private_between(me: &str, partner: &str) -> String {
    format!("A private conversation between {me} and {partner}.")
}

/// `/query` without a nickname.
pub const QUERY_NEEDS_NICK: &str = "/query needs a nickname, as in /query bob";

/// Why `/history` fetches nothing.
pub fn nothing_to_fetch(history_off: bool, exhausted: bool) -> &'static str {
    match (history_off, exhausted) {
        (true, _) => "This server keeps no history.",
        (false, true) => "There is nothing older here.",
        (false, false) => "Nothing to fetch now (offline, busy, or the scrollback is full).",
    }
}

/// `/query` with something that is not a nickname.
pub fn not_a_nick(nick: &str, why: &str) -> String {
    format!("{nick} is not a nickname: {why}.")
}

/// `/query` with one's own nickname.
pub const QUERY_SELF: &str = "That is you; pick someone else to talk to.";

/// No pane left for another private conversation.
pub const TOO_MANY_PRIVATE: &str = "Too many private conversations are open.";

/// `/close` on the last pane.
pub const ONLY_PANE: &str = "This is the only pane; /join a room first.";

/// Chat in a room this user has left.
pub fn not_in_room(room: &str) -> String {
    format!("You are not in {room}; /join {room} to go back.")
}

/// Why a line cannot be sent in the connection's present state.
pub mod not_sent {
    /// Registered commands before a nickname.
    pub const NO_NICK: &str = "you have no nickname yet; pick one with /nick name";
    /// Before the connection is up.
    pub const CONNECTING: &str = "still connecting";
    /// Between reconnection attempts.
    pub const OFFLINE: &str = "not connected; reconnecting";
    /// After the connection ended for good.
    pub const CLOSED: &str = "the connection is closed";
}

/// A line kept in the input because it could not be sent.
pub fn kept_in_input(why: &str) -> String {
    format!("Not sent ({why}); your text is still in the input line.")
}
