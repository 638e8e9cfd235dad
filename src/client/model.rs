//! What a chat client shows and remembers, as a pure state machine.
//!
//! [`Model::apply`] takes the connection's [`Event`]s and [`Model::submit`]
//! takes what the user typed; both say what changed ([`Changes`]) so a user
//! interface redraws only what it must. The model does no IO and reads no
//! clock: the caller passes the time. That is what lets the tests drive it
//! line by line, and what keeps the terminal layer thin.
//!
//! It follows PROTOCOL.md's rooms: it knows which rooms we are in, who is in
//! each (from `JOIN`, `PART`, `QUIT`, `NICK` and `USERS`, in order) and which
//! is the current one; the chat panel shows every room's lines, naming the
//! room of those not in the current one. Replayed history (`HIST`) is shown
//! like live chat, once: a message whose id was already shown is skipped, so
//! reconnecting does not repeat the conversation.
//!
//! Invariants:
//! - the scrollback never holds more than its capacity; the oldest lines go
//!   first, and every line keeps its sequence number for life;
//! - each room's user list is sorted case-insensitively with no duplicates;
//! - a line the user typed is either sent, refused with a visible reason, or
//!   handled locally (like `/quit`): it is never dropped silently.

use std::collections::{HashMap, VecDeque};

use super::connection::{ConnState, Event, Outgoing};
use crate::names;
use crate::protocol::{
    parse_command, Command, CommandError, ErrorCode, ServerLine, Timestamp, LOBBY,
};

/// The scrollback's default capacity, in lines.
pub const DEFAULT_SCROLLBACK: usize = 10_000;

/// How many typed lines Up/Down can recall.
pub const HISTORY_MAX: usize = 1_000;

/// The most conversations (rooms and private partners) whose last message
/// id is remembered for skipping replayed history; past it the memory starts
/// over, at worst showing some replayed lines twice.
pub const SEEN_MAX: usize = 1_000;

/// The slash commands this client knows, for Tab completion.
pub const SLASH_COMMANDS: [&str; 15] = [
    "/exit", "/help", "/history", "/join", "/leave", "/msg", "/nick", "/part", "/ping", "/quit",
    "/rooms", "/topic", "/users", "/w", "/whisper",
];

/// One line of the scrollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Numbers lines from 0 in arrival order; a view can hold on to a line by
    /// its number while older lines are dropped.
    pub seq: u64,
    /// When it happened: the server's time, or the local time for lines the
    /// client made up (echoes, connection news).
    pub time: Timestamp,
    /// What it says.
    pub kind: EntryKind,
}

/// What a scrollback line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Someone said something.
    Chat {
        /// Where it was said; kept so that rooms can come without a new model.
        room: String,
        /// Who said it.
        nick: String,
        /// What they said.
        text: String,
        /// We said it (local echo).
        own: bool,
        /// It mentions our nickname.
        mention: bool,
    },
    /// A private message.
    Whisper {
        /// Who sent it.
        from: String,
        /// Who it was for.
        to: String,
        /// What they said.
        text: String,
        /// We sent it (local echo).
        own: bool,
    },
    /// News about the chat or the connection, shown dimmed.
    System {
        /// What kind of news, for styling.
        kind: SystemKind,
        /// The words.
        text: String,
    },
}

/// Kinds of system line, so a user interface can mark them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// Someone came in.
    Join,
    /// Someone left.
    Leave,
    /// Someone changed nickname.
    Nick,
    /// Information: server notices, help, the user list.
    Info,
    /// Something went wrong: a server error, a refused command, a lost
    /// connection.
    Error,
    /// A server line this client could not parse, shown as it came.
    Raw,
}

/// A bounded list of lines, oldest first.
#[derive(Debug, Clone)]
pub struct Scrollback {
    entries: VecDeque<Entry>,
    capacity: usize,
    next_seq: u64,
}

impl Scrollback {
    /// An empty scrollback keeping at most `capacity` lines (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    /// Adds a line, dropping the oldest if full. Returns its number.
    pub fn push(&mut self, time: Timestamp, kind: EntryKind) -> u64 {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry { seq, time, kind });
        seq
    }

    /// How many lines it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if it holds no line.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most lines it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of the oldest line kept.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// The number of the newest line.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.back().map(|e| e.seq)
    }

    /// The line numbered `seq`, if it is still kept.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        let first = self.first_seq()?;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.entries.get(index)
    }

    /// All lines, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.iter()
    }
}

/// What an [`Model::apply`] or [`Model::submit`] changed, so a user
/// interface updates only those parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Lines were added to the scrollback.
    pub scrollback: bool,
    /// The user list changed.
    pub users: bool,
    /// The nickname or the connection state changed.
    pub status: bool,
    /// The server refused the nickname while registering: ask the user for
    /// another one.
    pub nick_prompt: Option<NickPrompt>,
}

impl Changes {
    fn merge(&mut self, other: Changes) {
        self.scrollback |= other.scrollback;
        self.users |= other.users;
        self.status |= other.status;
        if other.nick_prompt.is_some() {
            self.nick_prompt = other.nick_prompt;
        }
    }
}

/// The server refused the nickname we registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NickPrompt {
    /// The server's explanation, for the user.
    pub message: String,
    /// A free, valid nickname the server suggested (empty if it gave none).
    pub suggestion: String,
}

/// What to do with a line the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing more (handled locally, refused, or empty).
    None,
    /// Send this to the server.
    Send(Outgoing),
    /// Leave the chat with this reason.
    Quit(String),
}

/// The outcome of [`Model::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// What to do.
    pub action: Action,
    /// True if the input line should be emptied; false when the line was
    /// refused, so the user can fix it or send it later.
    pub clear_input: bool,
    /// What changed in the model (an echo, an error line).
    pub changes: Changes,
}

/// The client's state: everything the user interface shows.
#[derive(Debug, Clone)]
pub struct Model {
    server: String,
    /// The current room: where chat without a room goes.
    room: String,
    /// The rooms we are in, with their members and topics.
    rooms: Vec<Room>,
    /// The highest message id shown per conversation (folded room name, or
    /// `@` and the folded partner), to skip replayed history already shown.
    seen: HashMap<String, u64>,
    /// Replayed lines shown since the last `HIST END`.
    replayed: u32,
    /// The nickname the server gave us, once it has.
    nick: Option<String>,
    /// The nickname we asked for, shown until the server answers.
    wanted: String,
    state: ConnState,
    scrollback: Scrollback,
    history: History,
    completion: Option<Completion>,
}

impl Model {
    /// A model for a client of `server` that will register as `nick`,
    /// keeping `scrollback` lines (0 means [`DEFAULT_SCROLLBACK`]).
    pub fn new(server: &str, nick: &str, scrollback: usize) -> Self {
        let capacity = match scrollback {
            0 => DEFAULT_SCROLLBACK,
            n => n,
        };
        Self {
            server: server.to_owned(),
            room: LOBBY.to_owned(),
            nick: None,
            wanted: nick.to_owned(),
            rooms: Vec::new(),
            seen: HashMap::new(),
            replayed: 0,
            state: ConnState::Connecting { attempt: 1 },
            scrollback: Scrollback::new(capacity),
            history: History::default(),
            completion: None,
        }
    }

    /// The server's address, as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The current room: where chat without a room goes.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The current room's topic (empty if none).
    pub fn topic(&self) -> &str {
        self.current().map_or("", |r| r.topic.as_str())
    }

    /// The rooms we are in, in the order we joined them.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(|r| r.name.as_str())
    }

    /// Our nickname, once the server has accepted it.
    pub fn nick(&self) -> Option<&str> {
        self.nick.as_deref()
    }

    /// Our nickname if registered, else the one we asked for.
    pub fn display_nick(&self) -> &str {
        self.nick.as_deref().unwrap_or(&self.wanted)
    }

    /// The connection state.
    pub fn state(&self) -> &ConnState {
        &self.state
    }

    /// The current room's members, sorted case-insensitively.
    pub fn users(&self) -> &[String] {
        self.current().map_or(&[], |r| r.users.as_slice())
    }

    fn current(&self) -> Option<&Room> {
        self.rooms
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(&self.room))
    }

    fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms
            .iter_mut()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    fn is_current(&self, room: &str) -> bool {
        room.eq_ignore_ascii_case(&self.room)
    }

    /// The chat lines.
    pub fn scrollback(&self) -> &Scrollback {
        &self.scrollback
    }

    /// Adds a line of information from the client itself (help, hints).
    pub fn info(&mut self, text: &str, now: Timestamp) -> Changes {
        self.system(now, SystemKind::Info, text.to_owned())
    }

    /// Applies one event from the connection, received at `now`.
    pub fn apply(&mut self, event: Event, now: Timestamp) -> Changes {
        match event {
            Event::State(state) => self.set_state(state, now),
            Event::Line(line) => self.receive(line, now),
            Event::Unparsed { line, error } => match line.strip_prefix("ERR ") {
                // PROTOCOL.md: clients accept error codes they do not know.
                Some(rest) => {
                    let text = rest.split_once(' ').map_or("", |(_, text)| text);
                    self.system(now, SystemKind::Error, text.to_owned())
                }
                None => self.system(now, SystemKind::Raw, format!("{line}  [{error}]")),
            },
            Event::Refused(out) => self.system(
                now,
                SystemKind::Error,
                format!("Not sent, no connection: {}", out.to_line()),
            ),
        }
    }

    fn set_state(&mut self, state: ConnState, now: Timestamp) -> Changes {
        let mut changes = Changes {
            status: true,
            ..Changes::default()
        };
        let text = match &state {
            ConnState::Connecting { attempt: 1 } => {
                Some((SystemKind::Info, format!("Connecting to {}…", self.server)))
            }
            // Only the first failure of a streak; the status line counts
            // the attempts, so a long outage does not fill the chat.
            ConnState::Offline { .. } if matches!(self.state, ConnState::Connecting { attempt } if attempt > 1) => {
                None
            }
            ConnState::Offline { reason, retry_in } => Some((
                SystemKind::Error,
                format!(
                    "Disconnected: {reason}. Retrying in {:.1}s.",
                    retry_in.as_secs_f32()
                ),
            )),
            ConnState::Closed { reason } => {
                Some((SystemKind::Info, format!("Connection closed: {reason}.")))
            }
            _ => None,
        };
        if !matches!(state, ConnState::Online | ConnState::Registering) {
            // Who is where is unknown until we are back (and have joined
            // again; the connection does that).
            if !self.rooms.is_empty() {
                self.rooms.clear();
                changes.users = true;
            }
            if let Some(nick) = self.nick.take() {
                self.wanted = nick;
            }
        }
        self.state = state;
        if let Some((kind, text)) = text {
            changes.merge(self.system(now, kind, text));
        }
        changes
    }

    fn receive(&mut self, line: ServerLine, now: Timestamp) -> Changes {
        match line {
            ServerLine::Hello { version, .. } => self.system(
                now,
                SystemKind::Info,
                format!("Connected to {} ({version}).", self.server),
            ),
            ServerLine::Welcome { nick, text } => {
                self.wanted = nick.clone();
                self.nick = Some(nick);
                let mut changes = self.system(now, SystemKind::Info, text);
                changes.status = true;
                changes
            }
            ServerLine::Msg { .. } | ServerLine::Whisper { .. } => self.message(line, false),
            ServerLine::History(line) => self.message(*line, true),
            ServerLine::HistoryEnd { target, .. } => match std::mem::take(&mut self.replayed) {
                0 => Changes::default(),
                1 => self.system(
                    now,
                    SystemKind::Info,
                    format!("Above: 1 earlier message of {target}."),
                ),
                n => self.system(
                    now,
                    SystemKind::Info,
                    format!("Above: {n} earlier messages of {target}."),
                ),
            },
            ServerLine::Join { time, room, nick } => {
                let mut changes = Changes::default();
                if self.is_me(&nick) {
                    // Joining (or joining again) makes a room the current one.
                    if self.room_mut(&room).is_none() {
                        self.rooms.push(Room::new(&room));
                    }
                    if !self.is_current(&room) {
                        self.room = room.clone();
                        changes.status = true;
                    }
                    changes.users = true;
                } else if let Some(r) = self.room_mut(&room) {
                    let added = insert_sorted(&mut r.users, &nick);
                    changes.users = added && self.is_current(&room);
                }
                changes.merge(self.system(time, SystemKind::Join, format!("{nick} joined {room}")));
                changes
            }
            ServerLine::Part {
                time,
                room,
                nick,
                reason,
            } => {
                let mut changes = Changes::default();
                if self.is_me(&nick) {
                    self.rooms.retain(|r| !r.name.eq_ignore_ascii_case(&room));
                    changes.users = self.is_current(&room);
                } else if let Some(r) = self.room_mut(&room) {
                    let removed = remove_nick(&mut r.users, &nick);
                    changes.users = removed && self.is_current(&room);
                }
                let text = match reason.as_str() {
                    "" => format!("{nick} left {room}"),
                    reason => format!("{nick} left {room} ({reason})"),
                };
                changes.merge(self.system(time, SystemKind::Leave, text));
                changes
            }
            ServerLine::Quit { time, nick, reason } => {
                let mut changes = Changes::default();
                for r in &mut self.rooms {
                    let removed = remove_nick(&mut r.users, &nick);
                    changes.users |= removed && r.name.eq_ignore_ascii_case(&self.room);
                }
                let text = match reason.as_str() {
                    "" => format!("{nick} left"),
                    reason => format!("{nick} left ({reason})"),
                };
                changes.merge(self.system(time, SystemKind::Leave, text));
                changes
            }
            ServerLine::Nick { time, old, new } => {
                let mut changes = Changes::default();
                for r in &mut self.rooms {
                    if remove_nick(&mut r.users, &old) {
                        insert_sorted(&mut r.users, &new);
                        changes.users |= r.name.eq_ignore_ascii_case(&self.room);
                    }
                }
                let text = if self.is_me(&old) {
                    self.nick = Some(new.clone());
                    self.wanted = new.clone();
                    changes.status = true;
                    format!("You are now known as {new}")
                } else {
                    format!("{old} is now known as {new}")
                };
                changes.merge(self.system(time, SystemKind::Nick, text));
                changes
            }
            ServerLine::Users { room, mut nicks } => {
                let mut changes = Changes::default();
                let text = format!("{room} ({}): {}", nicks.len(), nicks.join(" "));
                nicks.sort_by_key(|n| names::fold(n));
                nicks.dedup_by_key(|n| names::fold(n));
                let current = self.is_current(&room);
                if let Some(r) = self.room_mut(&room) {
                    if r.users != nicks {
                        r.users = nicks;
                        changes.users = current;
                    }
                }
                changes.merge(self.system(now, SystemKind::Info, text));
                changes
            }
            ServerLine::Topic {
                time,
                room,
                nick,
                text,
            } => {
                let mut changes = Changes::default();
                if let Some(r) = self.room_mut(&room) {
                    r.topic = text.clone();
                }
                changes.status = self.is_current(&room);
                let line = match text.as_str() {
                    "" => format!("{room} has no topic (cleared by {nick})"),
                    text => format!("Topic of {room}: {text} (set by {nick})"),
                };
                changes.merge(self.system(time, SystemKind::Info, line));
                changes
            }
            ServerLine::Info(text) => {
                let mut changes = Changes::default();
                // PROTOCOL.md: the server says this whenever the current room
                // changes (after a PART of the current room, say).
                let current = text
                    .strip_prefix("Messages without a room now go to ")
                    .and_then(|rest| rest.strip_suffix('.'));
                if let Some(room) = current.filter(|r| names::is_room(r)) {
                    if !self.is_current(room) {
                        self.room = room.to_owned();
                        changes.status = true;
                        changes.users = true;
                    }
                }
                changes.merge(self.system(now, SystemKind::Info, text));
                changes
            }
            ServerLine::Err { code, text } => {
                let registering = self.nick.is_none();
                let nick_refused = matches!(code, ErrorCode::NickTaken | ErrorCode::NickInvalid);
                let mut changes = self.system(now, SystemKind::Error, text.clone());
                if nick_refused && registering {
                    changes.nick_prompt = Some(NickPrompt {
                        suggestion: suggestion(&text),
                        message: text,
                    });
                }
                changes
            }
            ServerLine::Bye(text) => self.system(
                now,
                SystemKind::Info,
                format!("The server says goodbye: {text}"),
            ),
            ServerLine::Pong(token) => match token.as_str() {
                "" => self.system(now, SystemKind::Info, "PONG: the server answers.".into()),
                token => self.system(now, SystemKind::Info, format!("PONG {token}")),
            },
            ServerLine::Room {
                room,
                members,
                topic,
            } => self.system(now, SystemKind::Info, format!("{room} ({members}) {topic}")),
            ServerLine::Rooms(count) => {
                self.system(now, SystemKind::Info, format!("{count} rooms listed."))
            }
        }
    }

    /// Shows a chat or private message, live or replayed; a replayed one
    /// already shown (by id) is skipped.
    fn message(&mut self, line: ServerLine, replayed: bool) -> Changes {
        let (time, id, key, kind) = match line {
            ServerLine::Msg {
                time,
                id,
                room,
                nick,
                text,
            } => {
                let own = self.is_me(&nick);
                let mention = !own && self.nick.as_deref().is_some_and(|me| mentions(&text, me));
                let kind = EntryKind::Chat {
                    room: room.clone(),
                    nick,
                    text,
                    own,
                    mention,
                };
                (time, id, names::fold(&room), kind)
            }
            ServerLine::Whisper {
                time,
                id,
                from,
                to,
                text,
            } => {
                let own = self.is_me(&from);
                let partner = if own { &to } else { &from };
                let key = format!("@{}", names::fold(partner));
                let kind = EntryKind::Whisper {
                    from,
                    to,
                    text,
                    own,
                };
                (time, id, key, kind)
            }
            // HIST holds only MSG and WHISPER lines; anything else is shown
            // as it came.
            other => {
                let text = other.to_line().trim_end().to_owned();
                return self.system(Timestamp::now(), SystemKind::Raw, text);
            }
        };
        let last = self.seen.get(&key).copied().unwrap_or(0);
        if replayed && id <= last {
            return Changes::default();
        }
        if self.seen.len() >= SEEN_MAX && !self.seen.contains_key(&key) {
            self.seen.clear();
        }
        self.seen.insert(key, last.max(id));
        if replayed {
            self.replayed += 1;
        }
        self.push(time, kind)
    }

    fn is_me(&self, nick: &str) -> bool {
        self.nick
            .as_deref()
            .is_some_and(|me| me.eq_ignore_ascii_case(nick))
    }

    fn push(&mut self, time: Timestamp, kind: EntryKind) -> Changes {
        self.scrollback.push(time, kind);
        Changes {
            scrollback: true,
            ..Changes::default()
        }
    }

    fn system(&mut self, time: Timestamp, kind: SystemKind, text: String) -> Changes {
        self.push(time, EntryKind::System { kind, text })
    }

    /// Handles a line the user typed and pressed Enter on, at `now`.
    ///
    /// Plain text is chat in the current room (echoed at once, since the
    /// server does not send us our own messages; so are whispers). Slash
    /// commands are parsed as PROTOCOL.md says (`/nick`, `/users`, `/join`,
    /// `/msg nick text`, `/quit`, ...); `//text` sends `/text`; unknown slash
    /// commands go to the server as typed, so commands added to the server
    /// later work without a new client. Anything needing a connection is
    /// refused, with a line saying so, while there is none.
    pub fn submit(&mut self, input: &str, now: Timestamp) -> Submitted {
        let line: String = input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = line.trim_matches(' ');
        self.completion = None;
        if line.is_empty() {
            return self.done(Action::None, true, Changes::default());
        }
        self.history.push(line);
        let command = if line.starts_with('/') {
            match parse_command(line) {
                Ok(command) => command,
                Err(CommandError::Unknown(_)) => {
                    return self.send_if(Outgoing::Raw(line.to_owned()), false, now)
                }
                Err(CommandError::Empty) => {
                    return self.done(Action::None, true, Changes::default())
                }
                Err(err) => {
                    let changes = self.system(now, SystemKind::Error, capitalise(&err.to_string()));
                    return self.done(Action::None, false, changes);
                }
            }
        } else {
            Command::Msg {
                room: None,
                text: line.to_owned(),
            }
        };
        match command {
            Command::Quit(reason) => self.done(Action::Quit(reason), true, Changes::default()),
            Command::Help => {
                let mut changes = Changes::default();
                for text in LOCAL_HELP {
                    changes.merge(self.system(now, SystemKind::Info, text.to_owned()));
                }
                if self.connected() {
                    let text = "The server's commands follow (their /slash forms work here):";
                    changes.merge(self.system(now, SystemKind::Info, text.to_owned()));
                    let mut sent = self.send_if(Outgoing::Command(Command::Help), false, now);
                    sent.changes.merge(changes);
                    return sent;
                }
                self.done(Action::None, true, changes)
            }
            Command::Msg { room, text } => {
                let out = Outgoing::Command(Command::Msg {
                    room: room.clone(),
                    text: text.clone(),
                });
                let mut sent = self.send_if(out, true, now);
                if matches!(sent.action, Action::Send(_)) {
                    let room = room.unwrap_or_else(|| self.room.clone());
                    let nick = self.display_nick().to_owned();
                    let chat = EntryKind::Chat {
                        room,
                        nick,
                        text,
                        own: true,
                        mention: false,
                    };
                    sent.changes.merge(self.push(now, chat));
                }
                sent
            }
            Command::Whisper { nick, text } => {
                let out = Outgoing::Command(Command::Whisper {
                    nick: nick.clone(),
                    text: text.clone(),
                });
                let mut sent = self.send_if(out, true, now);
                if matches!(sent.action, Action::Send(_)) {
                    let whisper = EntryKind::Whisper {
                        from: self.display_nick().to_owned(),
                        to: nick,
                        text,
                        own: true,
                    };
                    sent.changes.merge(self.push(now, whisper));
                }
                sent
            }
            Command::Nick(ref nick) => {
                if self.nick.is_none() {
                    self.wanted = nick.clone();
                }
                self.send_if(Outgoing::Command(command), false, now)
            }
            // USERS, PING, JOIN, PART, ROOMS, TOPIC, HISTORY and what comes
            // next: sent as parsed, shown when the server answers.
            other => {
                let needs_nick = !matches!(other, Command::Ping(_));
                self.send_if(Outgoing::Command(other), needs_nick, now)
            }
        }
    }

    /// True if there is a connection to send on (registered or not).
    fn connected(&self) -> bool {
        matches!(self.state, ConnState::Online | ConnState::Registering)
    }

    /// Sends `out` if the connection allows it (`needs_nick`: only once
    /// registered); otherwise refuses it visibly and keeps the input.
    fn send_if(&mut self, out: Outgoing, needs_nick: bool, now: Timestamp) -> Submitted {
        let why = match self.state {
            ConnState::Online => None,
            ConnState::Registering if !needs_nick => None,
            ConnState::Registering => {
                Some("you have no nickname yet; pick one with /nick name".to_owned())
            }
            ConnState::Connecting { .. } => Some("still connecting".to_owned()),
            ConnState::Offline { .. } => Some("not connected; reconnecting".to_owned()),
            ConnState::Closed { .. } => Some("the connection is closed".to_owned()),
        };
        match why {
            None => self.done(Action::Send(out), true, Changes::default()),
            Some(why) => {
                let changes = self.system(
                    now,
                    SystemKind::Error,
                    format!("Not sent ({why}); your text is still in the input line."),
                );
                self.done(Action::None, false, changes)
            }
        }
    }

    fn done(&mut self, action: Action, clear_input: bool, changes: Changes) -> Submitted {
        Submitted {
            action,
            clear_input,
            changes,
        }
    }

    /// The previous line typed (Up). `current` is the input line, kept as a
    /// draft to come back to with Down.
    pub fn history_up(&mut self, current: &str) -> Option<String> {
        self.history.up(current)
    }

    /// The next line typed (Down), ending with the draft.
    pub fn history_down(&mut self) -> Option<String> {
        self.history.down()
    }

    /// Completes the word before byte offset `cursor` of `input` (Tab):
    /// a nickname of someone in the room, or a slash command at the start.
    /// Pressed again, it cycles through the other matches. Returns the new
    /// input and cursor, or `None` if nothing matches.
    pub fn complete(&mut self, input: &str, cursor: usize) -> Option<(String, usize)> {
        let cursor = cursor.min(input.len());
        if !input.is_char_boundary(cursor) {
            return None;
        }
        if let Some(c) = &mut self.completion {
            if c.produced == input && c.produced_cursor == cursor && c.matches.len() > 1 {
                c.index = (c.index + 1) % c.matches.len();
                let (text, cursor) = c.render();
                c.produced = text.clone();
                c.produced_cursor = cursor;
                return Some((text, cursor));
            }
        }
        let start = input[..cursor].rfind(' ').map_or(0, |i| i + 1);
        let word = &input[start..cursor];
        if word.is_empty() {
            return None;
        }
        let folded = names::fold(word);
        let matches: Vec<String> = if start == 0 && word.starts_with('/') {
            SLASH_COMMANDS
                .iter()
                .filter(|c| c.starts_with(&folded))
                .map(|c| c.to_string())
                .collect()
        } else {
            self.users()
                .iter()
                .filter(|n| !self.is_me(n) && names::fold(n).starts_with(&folded))
                .cloned()
                .collect()
        };
        if matches.is_empty() {
            return None;
        }
        let mut c = Completion {
            before: input[..start].to_owned(),
            after: input[cursor..].to_owned(),
            suffix: if start == 0 && !word.starts_with('/') {
                ": "
            } else {
                " "
            },
            matches,
            index: 0,
            produced: String::new(),
            produced_cursor: 0,
        };
        let (text, cursor) = c.render();
        c.produced = text.clone();
        c.produced_cursor = cursor;
        self.completion = Some(c);
        Some((text, cursor))
    }
}

/// The lines `/help` shows before the server's own help.
const LOCAL_HELP: [&str; 2] = [
    "Keys: Enter send · Up/Down history · Tab complete nick · PgUp/PgDn or mouse wheel scroll",
    "      Esc quit (asks) · Ctrl-C quit. Start a message with // to begin it with a slash.",
];

/// A room we are in.
#[derive(Debug, Clone)]
struct Room {
    /// As the server wrote it.
    name: String,
    /// Its members, sorted case-insensitively.
    users: Vec<String>,
    /// Its topic; empty if none.
    topic: String,
}

impl Room {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            users: Vec::new(),
            topic: String::new(),
        }
    }
}

/// Tab completion in progress, so a second Tab cycles.
#[derive(Debug, Clone)]
struct Completion {
    before: String,
    after: String,
    suffix: &'static str,
    matches: Vec<String>,
    index: usize,
    /// The input and cursor this completion produced; if the input is still
    /// this when Tab comes again, Tab cycles.
    produced: String,
    produced_cursor: usize,
}

impl Completion {
    fn render(&self) -> (String, usize) {
        let word = &self.matches[self.index % self.matches.len()];
        let mut text = format!("{}{word}{}", self.before, self.suffix);
        let cursor = text.len();
        text.push_str(self.after.trim_start_matches(' '));
        (text, cursor)
    }
}

/// Typed lines, for Up/Down.
#[derive(Debug, Clone, Default)]
struct History {
    lines: VecDeque<String>,
    /// While walking: the index of the line shown.
    at: Option<usize>,
    /// What was in the input line before walking started.
    draft: String,
}

impl History {
    fn push(&mut self, line: &str) {
        self.at = None;
        self.draft.clear();
        if self.lines.back().is_some_and(|last| last == line) {
            return;
        }
        if self.lines.len() == HISTORY_MAX {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }

    fn up(&mut self, current: &str) -> Option<String> {
        let at = match self.at {
            None if self.lines.is_empty() => return None,
            None => {
                self.draft = current.to_owned();
                self.lines.len() - 1
            }
            Some(0) => return None,
            Some(at) => at - 1,
        };
        self.at = Some(at);
        self.lines.get(at).cloned()
    }

    fn down(&mut self) -> Option<String> {
        let at = self.at?;
        if at + 1 < self.lines.len() {
            self.at = Some(at + 1);
            return self.lines.get(at + 1).cloned();
        }
        self.at = None;
        Some(std::mem::take(&mut self.draft))
    }
}

/// True if `text` mentions `nick` as a whole word, ignoring ASCII case:
/// `bob:` and `@bob` do, `bobby` does not.
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let hay = text.to_ascii_lowercase();
    let needle = nick.to_ascii_lowercase();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let bytes = hay.as_bytes();
    hay.match_indices(&needle).any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + needle.len()).copied();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// The nickname an `ERR nick-taken` or `ERR nick-invalid` suggests: its last
/// word, if that is a valid nickname.
pub fn suggestion(text: &str) -> String {
    let word = text
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .trim_end_matches(['.', '!', ',', ';']);
    match names::check_nick(word) {
        Ok(()) => word.to_owned(),
        Err(_) => String::new(),
    }
}

/// Inserts `nick` in case-insensitive order unless present; true if added.
fn insert_sorted(users: &mut Vec<String>, nick: &str) -> bool {
    let key = names::fold(nick);
    match users.binary_search_by(|n| names::fold(n).cmp(&key)) {
        Ok(_) => false,
        Err(i) => {
            users.insert(i, nick.to_owned());
            true
        }
    }
}

/// Removes `nick` (ignoring case); true if it was there.
fn remove_nick(users: &mut Vec<String>, nick: &str) -> bool {
    let before = users.len();
    users.retain(|n| !n.eq_ignore_ascii_case(nick));
    users.len() != before
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_800_000_000 + secs).unwrap_or_else(Timestamp::now)
    }

    fn line(s: &str) -> Event {
        match ServerLine::parse(s) {
            Ok(l) => Event::Line(l),
            Err(e) => panic!("bad test line {s:?}: {e}"),
        }
    }

    /// A model registered as alice with bob and carol in the room.
    fn online() -> Model {
        let mut m = Model::new("host:1", "alice", 5);
        m.apply(Event::State(ConnState::Registering), t(0));
        m.apply(line("WELCOME alice Hello alice!"), t(0));
        m.apply(Event::State(ConnState::Online), t(0));
        m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby alice"), t(0));
        m.apply(line("USERS #lobby alice bob Carol"), t(0));
        m
    }

    fn texts(m: &Model) -> Vec<String> {
        m.scrollback()
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Chat { nick, text, .. } => format!("<{nick}> {text}"),
                EntryKind::Whisper { from, to, text, .. } => format!("[{from}->{to}] {text}"),
                EntryKind::System { text, .. } => format!("* {text}"),
            })
            .collect()
    }

    fn ends_with(m: &Model, want: &[&str]) -> bool {
        let got = texts(m);
        got.len() >= want.len()
            && got[got.len() - want.len()..]
                .iter()
                .zip(want)
                .all(|(a, b)| a == b)
    }

    #[test]
    fn replayed_history_is_shown_once() {
        // Story: joining shows the recent conversation, and reconnecting does not repeat it.
        let mut m = online();
        m.apply(
            line("HIST MSG 2026-11-26T09:00:00Z 1 #lobby bob first"),
            t(1),
        );
        m.apply(
            line("HIST MSG 2026-11-26T09:01:00Z 2 #lobby Carol second alice"),
            t(1),
        );
        m.apply(line("HIST END #lobby 2"), t(1));
        m.apply(line("MSG 2026-11-26T09:02:00Z 3 #lobby bob live"), t(2));
        let expected = [
            "<bob> first",
            "<Carol> second alice",
            "* Above: 2 earlier messages of #lobby.",
            "<bob> live",
        ];
        assert!(ends_with(&m, &expected), "{:#?}", texts(&m));
        let mention = m.scrollback().iter().rev().nth(2).map(|e| e.kind.clone());
        assert!(matches!(
            mention,
            Some(EntryKind::Chat { mention: true, .. })
        ));
        // Reconnected: the server replays 1 to 4; only 4 is new.
        for l in [
            "HIST MSG 2026-11-26T09:00:00Z 1 #lobby bob first",
            "HIST MSG 2026-11-26T09:02:00Z 3 #lobby bob live",
            "HIST MSG 2026-11-26T09:03:00Z 4 #lobby bob while you were away",
            "HIST END #lobby 3",
        ] {
            m.apply(line(l), t(3));
        }
        let expected = [
            "<bob> live",
            "<bob> while you were away",
            "* Above: 1 earlier message of #lobby.",
        ];
        assert!(ends_with(&m, &expected), "{:#?}", texts(&m));
    }

    #[test]
    fn rooms_keep_their_own_user_lists() {
        // Story: after /join the user list and chat title follow the current room.
        let mut m = online();
        let c = m.apply(line("JOIN 2026-11-26T09:30:00Z #rust alice"), t(1));
        assert!(c.status && c.users);
        assert_eq!(m.room(), "#rust");
        m.apply(
            line("TOPIC 2026-11-26T09:30:00Z #rust bob all about crabs"),
            t(1),
        );
        m.apply(line("USERS #rust alice bob"), t(1));
        assert_eq!(m.users(), ["alice", "bob"]);
        assert_eq!(m.topic(), "all about crabs");
        let c = m.apply(line("JOIN 2026-11-26T09:31:00Z #lobby dave"), t(2));
        assert!(!c.users, "a join elsewhere leaves this list alone");
        m.apply(line("QUIT 2026-11-26T09:32:00Z bob gone"), t(2));
        assert_eq!(m.users(), ["alice"]);
        m.apply(line("PART 2026-11-26T09:33:00Z #rust alice"), t(3));
        let c = m.apply(line("INFO Messages without a room now go to #lobby."), t(3));
        assert!(c.users && c.status);
        assert_eq!(m.room(), "#lobby");
        assert_eq!(m.users(), ["alice", "Carol", "dave"]);
        assert_eq!(m.rooms().collect::<Vec<_>>(), ["#lobby"]);
    }

    #[test]
    fn whispers_are_shown_and_echoed() {
        // Story: private messages reach me visibly, and mine show at once.
        let mut m = online();
        m.apply(line("WHISPER 2026-11-26T09:30:00Z 9 bob alice psst"), t(1));
        let sent = m.submit("/msg bob hi there", t(2));
        assert_eq!(
            sent.action,
            Action::Send(Outgoing::Command(Command::Whisper {
                nick: "bob".into(),
                text: "hi there".into()
            }))
        );
        assert!(
            ends_with(&m, &["[bob->alice] psst", "[alice->bob] hi there"]),
            "{:#?}",
            texts(&m)
        );
    }

    #[test]
    fn a_long_outage_is_one_line_not_many() {
        // Story: while the server is down the chat says so once; the status line counts attempts.
        let mut m = online();
        let offline = |reason: &str| {
            Event::State(ConnState::Offline {
                reason: reason.into(),
                retry_in: std::time::Duration::from_secs(1),
            })
        };
        m.apply(offline("the server closed the connection"), t(1));
        for attempt in 2..6 {
            m.apply(Event::State(ConnState::Connecting { attempt }), t(2));
            m.apply(offline("connection refused"), t(2));
        }
        let drops = texts(&m)
            .iter()
            .filter(|l| l.starts_with("* Disconnected"))
            .count();
        assert_eq!(drops, 1, "{:#?}", texts(&m));
        assert_eq!(
            *m.state(),
            ConnState::Offline {
                reason: "connection refused".into(),
                retry_in: std::time::Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn unknown_error_codes_are_shown_as_errors() {
        // Story: a newer server's error still reaches the user as words.
        let mut m = online();
        m.apply(
            Event::Unparsed {
                line: "ERR slow-down Please wait a moment.".into(),
                error: "malformed ERR line".into(),
            },
            t(1),
        );
        assert_eq!(
            texts(&m).last().map(String::as_str),
            Some("* Please wait a moment.")
        );
    }

    #[test]
    fn scrollback_is_bounded_and_keeps_numbers() {
        // Story: a long-running client keeps a bounded memory of the chat.
        let mut s = Scrollback::new(3);
        for i in 0..5 {
            s.push(
                t(i),
                EntryKind::System {
                    kind: SystemKind::Info,
                    text: i.to_string(),
                },
            );
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.first_seq(), Some(2));
        assert_eq!(s.last_seq(), Some(4));
        assert!(s.get(1).is_none());
        assert_eq!(s.get(3).map(|e| e.seq), Some(3));
    }

    #[test]
    fn user_list_follows_joins_leaves_and_nick_changes() {
        // Story: the user list shows who is in the room right now, sorted.
        let mut m = online();
        assert_eq!(m.users(), ["alice", "bob", "Carol"]);
        assert!(
            m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby Bea"), t(1))
                .users
        );
        assert_eq!(m.users(), ["alice", "Bea", "bob", "Carol"]);
        assert!(
            m.apply(line("QUIT 2026-11-26T09:31:00Z bob gone"), t(2))
                .users
        );
        assert!(
            m.apply(line("NICK 2026-11-26T09:32:00Z Carol zed"), t(3))
                .users
        );
        assert_eq!(m.users(), ["alice", "Bea", "zed"]);
        let last = texts(&m);
        assert_eq!(
            last.last().map(String::as_str),
            Some("* Carol is now known as zed")
        );
    }

    #[test]
    fn own_nick_change_and_mentions() {
        // Story: lines that mention me stand out, even after I change nickname.
        let mut m = online();
        m.apply(line("NICK 2026-11-26T09:32:00Z alice Al"), t(1));
        assert_eq!(m.nick(), Some("Al"));
        m.apply(
            line("MSG 2026-11-26T09:33:00Z 7 #lobby bob hi al, how are you"),
            t(2),
        );
        m.apply(line("MSG 2026-11-26T09:33:00Z 8 #lobby bob hi alice"), t(2));
        let mentions: Vec<bool> = m
            .scrollback()
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Chat { mention, .. } => Some(*mention),
                _ => None,
            })
            .collect();
        assert_eq!(mentions, [true, false]);
        assert!(super::mentions("@bob: hi", "bob"));
        assert!(!super::mentions("bobby", "bob"));
        assert!(!super::mentions("bob-2", "bob"));
    }

    #[test]
    fn chat_is_echoed_and_refused_when_offline() {
        // Story: my messages appear at once, and typing while disconnected is refused visibly.
        let mut m = online();
        let sent = m.submit("hello  ", t(1));
        assert_eq!(
            sent.action,
            Action::Send(Outgoing::Command(Command::Msg {
                room: None,
                text: "hello".into()
            }))
        );
        assert!(sent.clear_input);
        assert_eq!(texts(&m).last().map(String::as_str), Some("<alice> hello"));
        m.apply(
            Event::State(ConnState::Offline {
                reason: "gone".into(),
                retry_in: std::time::Duration::from_secs(1),
            }),
            t(2),
        );
        assert!(m.users().is_empty());
        let refused = m.submit("are you there", t(3));
        assert_eq!(refused.action, Action::None);
        assert!(!refused.clear_input);
        assert!(texts(&m).last().is_some_and(|l| l.contains("Not sent")));
    }

    #[test]
    fn slash_commands() {
        // Story: /nick, /users, /quit and unknown commands do what a chat user expects.
        let mut m = online();
        assert_eq!(
            m.submit("/nick bobby", t(1)).action,
            Action::Send(Outgoing::Command(Command::Nick("bobby".into())))
        );
        assert_eq!(
            m.submit("/exit bye all", t(1)).action,
            Action::Quit("bye all".into())
        );
        assert_eq!(
            m.submit("/dance wildly", t(1)).action,
            Action::Send(Outgoing::Raw("/dance wildly".into())),
            "unknown commands go to the server as typed"
        );
        assert_eq!(
            m.submit("//shrug", t(1)).action,
            Action::Send(Outgoing::Command(Command::Msg {
                room: None,
                text: "/shrug".into()
            }))
        );
        let bad = m.submit("/nick", t(1));
        assert_eq!(bad.action, Action::None);
        assert!(!bad.clear_input);
    }

    #[test]
    fn taken_nick_prompts_with_the_suggestion() {
        // Story: a taken nickname re-prompts with the server's suggestion.
        let mut m = Model::new("host:1", "bob", 10);
        m.apply(Event::State(ConnState::Registering), t(0));
        let c = m.apply(
            line("ERR nick-taken Someone already uses the nickname bob; try bob2"),
            t(0),
        );
        assert_eq!(c.nick_prompt.map(|p| p.suggestion), Some("bob2".to_owned()));
        // Once registered, a refused /nick is just an error line.
        let mut m = online();
        let c = m.apply(
            line("ERR nick-taken Someone already uses the nickname bob; try bob2"),
            t(0),
        );
        assert_eq!(c.nick_prompt, None);
    }

    #[test]
    fn history_walks_back_and_returns_to_the_draft() {
        // Story: Up/Down recall what I typed before without losing what I was typing.
        let mut m = online();
        m.submit("one", t(1));
        m.submit("two", t(1));
        assert_eq!(m.history_up("dra").as_deref(), Some("two"));
        assert_eq!(m.history_up("two").as_deref(), Some("one"));
        assert_eq!(m.history_up("one"), None);
        assert_eq!(m.history_down().as_deref(), Some("two"));
        assert_eq!(m.history_down().as_deref(), Some("dra"));
        assert_eq!(m.history_down(), None);
    }

    #[test]
    fn tab_completes_and_cycles() {
        // Story: Tab completes nicknames so I can address people quickly.
        let mut m = online();
        m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby bea"), t(1));
        assert_eq!(m.complete("b", 1), Some(("bea: ".to_owned(), 5)));
        assert_eq!(m.complete("bea: ", 5), Some(("bob: ".to_owned(), 5)));
        assert_eq!(m.complete("bob: ", 5), Some(("bea: ".to_owned(), 5)));
        assert_eq!(m.complete("hi ca", 5), Some(("hi Carol ".to_owned(), 9)));
        assert_eq!(m.complete("hi al", 5), None, "never completes my own nick");
        assert_eq!(m.complete("/ni", 3), Some(("/nick ".to_owned(), 6)));
    }

    #[test]
    fn unparsed_lines_are_shown_raw() {
        // Story: a newer or broken server never crashes the client; its odd lines are shown.
        let mut m = online();
        m.apply(
            Event::Unparsed {
                line: "TOPIC #lobby hi".into(),
                error: "unknown".into(),
            },
            t(1),
        );
        assert!(texts(&m)
            .last()
            .is_some_and(|l| l.starts_with("* TOPIC #lobby hi")));
    }
}
