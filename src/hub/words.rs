//! The hub's fixed sentences: the greeting, `HELP`, and the words for bans,
//! mutes and how long they last.

use crate::accounts::Ban;
use crate::accounts::BanTarget;
use crate::protocol::{ServerLine, Timestamp, PROTOCOL_VERSION};

pub(super) fn greeting() -> ServerLine {
    ServerLine::Hello {
        version: PROTOCOL_VERSION.to_owned(),
        text: "Welcome to natter! Pick a nickname: type NICK yourname (or /nick yourname) and \
               press Enter. HELP lists commands."
            .to_owned(),
    }
}

/// The `HELP` text, one `INFO` line each.
pub(super) const HELP: [&str; 19] = [
    "Commands (the /slash forms work in any case):",
    "  NICK <name>               pick or change your nickname     /nick <name>",
    "  MSG [#room] <text>        say something                    (any line that is not a command)",
    "  WHISPER <nick> <text>     a private message                /w, /msg <nick> <text>",
    "  JOIN #room                enter or create a room           /join",
    "  PART [#room] [reason]     leave a room                     /part, /leave",
    "  ROOMS                     list the rooms                   /rooms",
    "  TOPIC [#room] [text]      show or set a room's topic       /topic",
    "  USERS [#room]             who is in the room               /users",
    "  HISTORY <#room|nick> [n | before <id> | since <id>]        /history",
    "  PING [token]              check the connection             /ping",
    "  REGISTER <password>       keep your nickname (8+ characters) /register",
    "  LOGIN <nick> <password>   take your registered nickname    /login",
    "  PASSWORD <old> <new>      change your password             /password",
    "  Operators: KICK <nick> [reason], MUTE <nick> [10m] [reason], UNMUTE <nick>, BAN <nick|address|range> [1d] [reason], UNBAN <nick|address|range>, BANS",
    "  QUIT [reason]             leave the chat                   /quit, /exit",
    "  HELP                      this list                        /help",
    "Messages without a #room go to the room you joined last.",
    "To start a message with a command word or a slash, use MSG (MSG QUIT is a verb) or //.",
];

/// The sentence a banned user is told.
pub(super) fn ban_text(ban: &Ban, now: Timestamp) -> String {
    let what = match &ban.target {
        BanTarget::Nick(nick) => format!("The nickname {nick} is"),
        BanTarget::Addr(_) => "Your address is".to_owned(),
    };
    format!(
        "{what} banned by {} until {} ({} left){}.",
        ban.by,
        Timestamp::from_unix(ban.until).map_or_else(String::new, |t| t.to_string()),
        left(ban.until - now.unix()),
        because(&ban.reason)
    )
}

/// ": reason", or nothing.
pub(super) fn because(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// A duration in words: "42 s", "10 min", "3 h", "2 d".
pub(super) fn left(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}
