//! The sentences the client shows that it writes itself (rather than
//! passing on the server's), and how it writes the time: in one place, so
//! they read alike and can be changed together.

use crate::protocol::Timestamp;

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
