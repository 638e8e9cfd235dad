//! What a chat client shows and remembers, as a pure state machine.
//!
//! [`Model::apply`] takes the connection's [`Event`]s and [`Model::submit`]
//! takes what the user typed; both say what changed ([`Changes`]) so a user
//! interface redraws only what it must, and which requests to send on the
//! model's behalf (fetching history). The model does no IO and reads no
//! clock: the caller passes the time. That is what lets the tests drive it
//! line by line, and what keeps the terminal layer thin.
//!
//! Each room we are in and each private conversation is a [`Pane`] with its
//! own scrollback; one pane is shown. Server lines go to the pane they
//! belong to (a room's lines to the room, a whisper to the conversation with
//! its sender); news that belongs to no conversation (errors, `/rooms`,
//! connection news) goes to the pane shown. A line the user types goes to
//! the shown conversation, always naming it (`MSG #room text` or
//! `WHISPER nick text`), so the server's idea of a "current room" never
//! matters.
//!
//! History: joining a room shows the server's replay; scrolling past the top
//! asks for the page before ([`Model::older`]); after a reconnection each
//! room, once joined again, and each private conversation asks for what it
//! missed with `HISTORY ... since <newest id>`. Every message is shown once,
//! in id order (see [`super::pane`]).
//!
//! Invariants:
//! - there is always at least one pane, and the shown one exists;
//! - each scrollback holds at most the capacity given to [`Model::new`], at
//!   most [`MAX_ROOMS`] rooms and [`MAX_PRIVATE`] private conversations have
//!   a pane, so memory is bounded by (rooms + conversations) x capacity;
//! - each room's user list is sorted case-insensitively with no duplicates;
//! - a line the user typed is either sent, refused with a visible reason, or
//!   handled locally (like `/quit`): it is never dropped silently.

use std::collections::VecDeque;

use super::connection::{ConnState, Event, Outgoing};
use super::pane::{Added, Batch, EntryKind, Pane, Scrollback, SystemKind, Target};
use crate::names;
use crate::protocol::{
    parse_command, Command, CommandError, ErrorCode, HistoryQuery, ModAction, ServerLine,
    Timestamp, HISTORY_DEFAULT, LOBBY,
};

/// A conversation's scrollback's default capacity, in lines.
pub const DEFAULT_SCROLLBACK: usize = 10_000;

/// How many typed lines Up/Down can recall.
pub const HISTORY_MAX: usize = 1_000;

/// The most rooms with a pane. The server allows fewer by default (32); this
/// only stops a broken server from growing the client without bound.
pub const MAX_ROOMS: usize = 64;

/// The most private conversations with a pane; opening one more closes the
/// one quiet for longest, preferably one without unread messages (its
/// history stays on the server).
pub const MAX_PRIVATE: usize = 16;

/// The slash commands this client knows, for Tab completion.
pub const SLASH_COMMANDS: [&str; 17] = [
    "/close", "/exit", "/help", "/history", "/join", "/leave", "/msg", "/nick", "/part", "/ping",
    "/query", "/quit", "/rooms", "/topic", "/users", "/w", "/whisper",
];

/// The start of the `INFO` line the server sends when its idea of our
/// current room changes. This client always names the room, so it is not
/// shown.
const CURRENT_ROOM_INFO: &str = "Messages without a room now go to ";

/// What an [`Model::apply`] or [`Model::submit`] changed, so a user
/// interface updates only those parts, and what to send for the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Lines were added to the shown pane (or another pane is shown).
    pub scrollback: bool,
    /// The shown pane's user list changed.
    pub users: bool,
    /// The nickname, the connection state, or the shown pane's title
    /// changed.
    pub status: bool,
    /// The list of panes changed: one opened or closed, an unread count,
    /// which one is shown.
    pub panes: bool,
    /// The server refused the nickname while registering: ask the user for
    /// another one.
    pub nick_prompt: Option<NickPrompt>,
    /// Commands to send to the server, in order (history requests).
    pub requests: Vec<Outgoing>,
}

impl Changes {
    fn merge(&mut self, other: Changes) {
        self.scrollback |= other.scrollback;
        self.users |= other.users;
        self.status |= other.status;
        self.panes |= other.panes;
        if other.nick_prompt.is_some() {
            self.nick_prompt = other.nick_prompt;
        }
        self.requests.extend(other.requests);
    }

    /// Everything about the shown pane changed.
    fn switched() -> Self {
        Self {
            scrollback: true,
            users: true,
            status: true,
            panes: true,
            ..Self::default()
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
    /// The nickname asked for, if it was refused because it is registered:
    /// its owner may log in instead.
    pub registered: Option<String>,
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
    /// What changed in the model (an echo, an error line), and requests to
    /// send after the action.
    pub changes: Changes,
}

/// The client's state: everything the user interface shows.
#[derive(Debug, Clone)]
pub struct Model {
    server: String,
    /// Rooms first (in the order we joined them), then private
    /// conversations (in the order they started). Never empty.
    panes: Vec<Pane>,
    /// The index of the pane shown.
    shown: usize,
    /// Lines per pane.
    capacity: usize,
    /// The next [`Pane::uid`].
    next_uid: u64,
    /// Counts events, to know which private pane was quiet longest.
    tick: u64,
    /// The room (folded) the user asked to join: its pane is shown when
    /// the server confirms.
    switch_to: Option<String>,
    /// The server said it keeps no history: stop asking.
    history_off: bool,
    /// The server welcomed us before: a welcome now is a reconnection, and
    /// the conversations fetch what they missed.
    welcomed_before: bool,
    /// The nickname the server gave us, once it has.
    nick: Option<String>,
    /// The nickname we asked for, shown until the server answers.
    wanted: String,
    state: ConnState,
    history: History,
    completion: Option<Completion>,
}

impl Model {
    /// A model for a client of `server` that will register as `nick`,
    /// keeping `scrollback` lines per conversation (0 means
    /// [`DEFAULT_SCROLLBACK`]). It starts with the lobby's pane, where
    /// every user lands.
    pub fn new(server: &str, nick: &str, scrollback: usize) -> Self {
        let capacity = match scrollback {
            0 => DEFAULT_SCROLLBACK,
            n => n,
        };
        Self {
            server: server.to_owned(),
            panes: vec![Pane::new(0, Target::Room(LOBBY.to_owned()), capacity)],
            shown: 0,
            capacity,
            next_uid: 1,
            tick: 0,
            switch_to: None,
            history_off: false,
            welcomed_before: false,
            nick: None,
            wanted: nick.to_owned(),
            state: ConnState::Connecting { attempt: 1 },
            history: History::default(),
            completion: None,
        }
    }

    /// The server's address, as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Every pane: rooms first, then private conversations.
    pub fn panes(&self) -> &[Pane] {
        &self.panes
    }

    /// The pane shown.
    pub fn shown(&self) -> &Pane {
        let last = self.panes.len().saturating_sub(1);
        &self.panes[self.shown.min(last)]
    }

    /// The index in [`Model::panes`] of the pane shown.
    pub fn shown_index(&self) -> usize {
        self.shown
    }

    /// The pane of a conversation, if it has one.
    pub fn pane(&self, target: &Target) -> Option<&Pane> {
        self.find(target).map(|i| &self.panes[i])
    }

    /// The shown room, where plain lines go; empty when the shown pane is a
    /// private conversation.
    pub fn room(&self) -> &str {
        match &self.shown().target {
            Target::Room(name) => name,
            Target::Private(_) => "",
        }
    }

    /// The shown room's topic (empty if none).
    pub fn topic(&self) -> &str {
        &self.shown().topic
    }

    /// The rooms the server has us in, in the order we joined them.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.panes
            .iter()
            .filter(|p| !p.is_private() && p.joined)
            .map(|p| p.name())
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

    /// The shown pane's members, sorted case-insensitively.
    pub fn users(&self) -> &[String] {
        &self.shown().users
    }

    /// The shown pane's lines.
    pub fn scrollback(&self) -> &Scrollback {
        &self.shown().lines
    }

    /// Shows pane `index` (of [`Model::panes`]) and marks it read.
    pub fn show(&mut self, index: usize) -> Changes {
        if index >= self.panes.len() || index == self.shown {
            return Changes::default();
        }
        self.set_shown(index)
    }

    /// Shows the next pane, after the last the first.
    pub fn show_next(&mut self) -> Changes {
        let n = self.panes.len();
        self.show((self.shown + 1) % n)
    }

    /// Shows the previous pane, before the first the last.
    pub fn show_prev(&mut self) -> Changes {
        let n = self.panes.len();
        self.show((self.shown + n - 1) % n)
    }

    /// The request for the messages just older than the shown pane's
    /// oldest, when the user scrolls past its top; `None` if there is
    /// nothing to ask (offline, no history on the server, one on its way,
    /// the server has nothing older, or the scrollback is full).
    pub fn older(&mut self) -> Option<Outgoing> {
        if self.state != ConnState::Online || self.history_off {
            return None;
        }
        let index = self.shown;
        let pane = self.panes.get_mut(index)?;
        if pane.fetching || pane.exhausted || pane.lines.is_full() {
            return None;
        }
        if !pane.is_private() && !pane.joined {
            return None;
        }
        let query = match pane.lines.oldest_id() {
            Some(id) => HistoryQuery::Before(id),
            None => HistoryQuery::Last(HISTORY_DEFAULT),
        };
        pane.fetching = true;
        Some(history(pane.name(), query))
    }

    /// Adds a line of information from the client itself (help, hints) to
    /// the shown pane.
    pub fn info(&mut self, text: &str, now: Timestamp) -> Changes {
        self.system(now, SystemKind::Info, text.to_owned())
    }

    /// Applies one event from the connection, received at `now`.
    pub fn apply(&mut self, event: Event, now: Timestamp) -> Changes {
        self.tick += 1;
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

    fn find(&self, target: &Target) -> Option<usize> {
        self.panes.iter().position(|p| p.target.same(target))
    }

    fn room_index(&self, room: &str) -> Option<usize> {
        self.find(&Target::Room(room.to_owned()))
    }

    fn private_index(&self, nick: &str) -> Option<usize> {
        self.find(&Target::Private(nick.to_owned()))
    }

    /// The pane of `target`, opened if needed (rooms after rooms, private
    /// conversations at the end). `None` if there are too many rooms.
    fn open(&mut self, target: Target) -> Option<usize> {
        if let Some(i) = self.find(&target) {
            return Some(i);
        }
        let rooms = self.panes.iter().filter(|p| !p.is_private()).count();
        let at = match &target {
            Target::Room(_) if rooms >= MAX_ROOMS => return None,
            Target::Room(_) => rooms,
            Target::Private(_) => {
                if self.panes.len() - rooms >= MAX_PRIVATE {
                    // Read ones first, then the one quiet for longest.
                    let quietest = (0..self.panes.len())
                        .filter(|&i| self.panes[i].is_private() && i != self.shown)
                        .min_by_key(|&i| (self.panes[i].unread > 0, self.panes[i].active))?;
                    self.remove(quietest);
                }
                self.panes.len()
            }
        };
        let mut pane = Pane::new(self.next_uid, target, self.capacity);
        self.next_uid += 1;
        pane.active = self.tick;
        if let Target::Private(partner) = &pane.target {
            pane.joined = true;
            pane.users = self.pair(partner);
        }
        self.panes.insert(at, pane);
        if at <= self.shown && self.panes.len() > 1 {
            self.shown += 1;
        }
        Some(at)
    }

    /// Closes pane `index` unless it is the last one; if it was shown, the
    /// one before it is shown.
    fn remove(&mut self, index: usize) -> Changes {
        if self.panes.len() <= 1 || index >= self.panes.len() {
            return Changes::default();
        }
        self.panes.remove(index);
        let mut changes = Changes {
            panes: true,
            ..Changes::default()
        };
        if index < self.shown {
            self.shown -= 1;
        } else if index == self.shown {
            let next = index.saturating_sub(1).min(self.panes.len() - 1);
            changes.merge(self.set_shown(next));
        }
        changes
    }

    fn set_shown(&mut self, index: usize) -> Changes {
        self.shown = index.min(self.panes.len().saturating_sub(1));
        self.completion = None;
        if let Some(pane) = self.panes.get_mut(self.shown) {
            pane.unread = 0;
            pane.alert = false;
        }
        Changes::switched()
    }

    /// The two participants of a private conversation, sorted.
    fn pair(&self, partner: &str) -> Vec<String> {
        let mut users = vec![self.display_nick().to_owned(), partner.to_owned()];
        users.sort_by_key(|n| names::fold(n));
        users
    }

    fn set_state(&mut self, state: ConnState, now: Timestamp) -> Changes {
        let mut changes = Changes {
            status: true,
            ..Changes::default()
        };
        // (to every pane, kind, text)
        let text = match &state {
            ConnState::Connecting { attempt: 1 } => Some((
                false,
                SystemKind::Info,
                format!("Connecting to {}…", self.server),
            )),
            // Only the first failure of a streak; the status line counts
            // the attempts, so a long outage does not fill the chat.
            ConnState::Offline { .. } if matches!(self.state, ConnState::Connecting { attempt } if attempt > 1) => {
                None
            }
            // In every pane, to mark the gap in each conversation.
            ConnState::Offline { reason, retry_in } => Some((
                true,
                SystemKind::Error,
                format!(
                    "Disconnected: {reason}. Retrying in {:.1}s.",
                    retry_in.as_secs_f32()
                ),
            )),
            ConnState::Closed { reason } => Some((
                false,
                SystemKind::Info,
                format!("Connection closed: {reason}."),
            )),
            _ => None,
        };
        if !matches!(state, ConnState::Online | ConnState::Registering) {
            // Who is where is unknown until we are back (and have joined
            // again; the connection does that).
            for (i, pane) in self.panes.iter_mut().enumerate() {
                if !pane.is_private() {
                    changes.users |= i == self.shown && !pane.users.is_empty();
                    changes.panes |= pane.joined;
                    pane.joined = false;
                    pane.users.clear();
                }
                pane.fetching = false;
                pane.batch = Batch::default();
            }
            self.switch_to = None;
            if let Some(nick) = self.nick.take() {
                self.wanted = nick;
            }
        }
        self.state = state;
        match text {
            Some((true, kind, text)) => changes.merge(self.line_to_all(now, kind, &text)),
            Some((false, kind, text)) => changes.merge(self.system(now, kind, text)),
            None => {}
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
                changes.users = true;
                let reconnected = std::mem::replace(&mut self.welcomed_before, true);
                for i in 0..self.panes.len() {
                    let Target::Private(partner) = self.panes[i].target.clone() else {
                        continue;
                    };
                    self.panes[i].users = self.pair(&partner);
                    // What was said while we were away.
                    let newest = self.panes[i].newest_id;
                    if reconnected && newest > 0 && !self.history_off {
                        changes
                            .requests
                            .push(history(&partner, HistoryQuery::Since(newest)));
                    }
                }
                changes
            }
            ServerLine::Msg { .. } | ServerLine::Whisper { .. } => self.message(line, false, now),
            ServerLine::History(line) => self.message(*line, true, now),
            ServerLine::HistoryEnd { target, count } => self.history_end(&target, count, now),
            ServerLine::Join { time, room, nick } => self.join(time, room, nick, now),
            ServerLine::Part {
                time,
                room,
                nick,
                reason,
            } => {
                let text = match (self.is_me(&nick), reason.as_str()) {
                    (true, "") => format!("You left {room}"),
                    (true, reason) => format!("You left {room} ({reason})"),
                    (false, "") => format!("{nick} left {room}"),
                    (false, reason) => format!("{nick} left {room} ({reason})"),
                };
                let index = self.room_index(&room);
                if !self.is_me(&nick) {
                    let Some(i) = index else {
                        return self.system(time, SystemKind::Leave, text);
                    };
                    let mut changes = Changes::default();
                    if remove_nick(&mut self.panes[i].users, &nick) {
                        changes.users = i == self.shown;
                    }
                    changes.merge(self.line_to(i, time, SystemKind::Leave, text));
                    return changes;
                }
                let mut changes = Changes::default();
                if let Some(i) = index {
                    if self.panes.len() > 1 {
                        changes.merge(self.remove(i));
                    } else {
                        // The last pane stays, to show something.
                        self.panes[i].joined = false;
                        self.panes[i].users.clear();
                        changes.users = true;
                        changes.panes = true;
                    }
                }
                changes.merge(self.system(time, SystemKind::Leave, text));
                changes
            }
            ServerLine::Quit { time, nick, reason } => {
                let text = match reason.as_str() {
                    "" => format!("{nick} left"),
                    reason => format!("{nick} left ({reason})"),
                };
                let mut changes = Changes::default();
                let mut anywhere = false;
                for i in 0..self.panes.len() {
                    let pane = &mut self.panes[i];
                    let here = match &pane.target {
                        Target::Room(_) => remove_nick(&mut pane.users, &nick),
                        Target::Private(partner) => partner.eq_ignore_ascii_case(&nick),
                    };
                    if here {
                        anywhere = true;
                        changes.users |= i == self.shown;
                        changes.merge(self.line_to(i, time, SystemKind::Leave, text.clone()));
                    }
                }
                if !anywhere {
                    changes.merge(self.system(time, SystemKind::Leave, text));
                }
                changes
            }
            ServerLine::Nick { time, old, new } => self.renamed(time, old, new),
            ServerLine::Users { room, mut nicks } => {
                let text = format!("{room} ({}): {}", nicks.len(), nicks.join(" "));
                nicks.sort_by_key(|n| names::fold(n));
                nicks.dedup_by_key(|n| names::fold(n));
                let Some(i) = self.room_index(&room) else {
                    return self.system(now, SystemKind::Info, text);
                };
                let mut changes = Changes::default();
                if self.panes[i].users != nicks {
                    self.panes[i].users = nicks;
                    changes.users = i == self.shown;
                }
                changes.merge(self.line_to(i, now, SystemKind::Info, text));
                changes
            }
            ServerLine::Topic {
                time,
                room,
                nick,
                text,
            } => {
                let line = match text.as_str() {
                    "" => format!("{room} has no topic (cleared by {nick})"),
                    text => format!("Topic of {room}: {text} (set by {nick})"),
                };
                let Some(i) = self.room_index(&room) else {
                    return self.system(time, SystemKind::Info, line);
                };
                self.panes[i].topic = text;
                let mut changes = self.line_to(i, time, SystemKind::Info, line);
                changes.status = i == self.shown;
                changes
            }
            // This client names the room in everything it sends.
            ServerLine::Info(text) if text.starts_with(CURRENT_ROOM_INFO) => Changes::default(),
            ServerLine::Info(text) => self.system(now, SystemKind::Info, text),
            ServerLine::Err { code, text } => {
                if code == ErrorCode::HistoryOff {
                    self.history_off = true;
                }
                // It may answer a history request or a JOIN: let the user
                // ask again, and do not switch to a room later.
                for pane in &mut self.panes {
                    pane.fetching = false;
                }
                self.switch_to = None;
                let registering = self.nick.is_none();
                let nick_refused = matches!(
                    code,
                    ErrorCode::NickTaken | ErrorCode::NickInvalid | ErrorCode::NickRegistered
                );
                // A login tried from the prompt failed: ask again.
                let login_refused = matches!(
                    code,
                    ErrorCode::LoginFailed | ErrorCode::LoginThrottled | ErrorCode::Busy
                );
                let mut changes = self.system(now, SystemKind::Error, text.clone());
                if nick_refused && registering {
                    changes.nick_prompt = Some(NickPrompt {
                        suggestion: suggestion(&text),
                        message: text,
                        registered: (code == ErrorCode::NickRegistered)
                            .then(|| self.wanted.clone()),
                    });
                } else if login_refused && registering {
                    changes.nick_prompt = Some(NickPrompt {
                        suggestion: String::new(),
                        message: text,
                        registered: Some(self.wanted.clone()),
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
            } => {
                let mark = match self.room_index(&room).map(|i| self.panes[i].joined) {
                    Some(true) => " (you are in it)",
                    _ => "",
                };
                let text = format!("{room} ({members}){mark} {topic}");
                self.system(now, SystemKind::Info, text.trim_end().to_owned())
            }
            ServerLine::Rooms(count) => self.system(
                now,
                SystemKind::Info,
                format!("{count} rooms listed; /join #room to enter one."),
            ),
            ServerLine::Account { text, .. } => {
                let mut changes = self.system(now, SystemKind::Info, text);
                changes.status = true;
                changes
            }
            ServerLine::Mod {
                time,
                room,
                by,
                action,
                target,
                until,
                reason,
            } => {
                let until = until.map_or_else(String::new, |t| {
                    format!(
                        " until {}",
                        t.datetime().with_timezone(&chrono::Local).format("%H:%M")
                    )
                });
                let reason = match reason.as_str() {
                    "" => String::new(),
                    reason => format!(" ({reason})"),
                };
                let verb = match action {
                    ModAction::Kick => "kicked",
                    ModAction::Mute => "muted",
                    ModAction::Unmute => "unmuted",
                    ModAction::Ban => "banned",
                    ModAction::Unban => "unbanned",
                };
                let text = format!("{by} {verb} {target}{until}{reason}");
                match self.room_index(&room) {
                    Some(i) => self.line_to(i, time, SystemKind::Error, text),
                    None => self.system(time, SystemKind::Error, text),
                }
            }
        }
    }

    fn join(&mut self, time: Timestamp, room: String, nick: String, now: Timestamp) -> Changes {
        let text = format!("{nick} joined {room}");
        let mut changes = Changes::default();
        if !self.is_me(&nick) {
            let Some(i) = self.room_index(&room) else {
                return self.system(time, SystemKind::Join, text);
            };
            if insert_sorted(&mut self.panes[i].users, &nick) {
                changes.users = i == self.shown;
            }
            changes.merge(self.line_to(i, time, SystemKind::Join, text));
            return changes;
        }
        let Some(i) = self.open(Target::Room(room.clone())) else {
            let text = format!("Too many rooms open: {room} gets no pane; /part one.");
            return self.system(now, SystemKind::Error, text);
        };
        let pane = &mut self.panes[i];
        pane.target = Target::Room(room.clone());
        pane.joined = true;
        // A TOPIC line follows if the room has one (it may have been
        // emptied and made again while we were away).
        pane.topic.clear();
        // Back after a reconnection (or a PART of the last room): fetch
        // what was said meanwhile. The server's replay may bring some of it
        // too; nothing shows twice.
        if pane.newest_id > 0 && !self.history_off {
            changes
                .requests
                .push(history(&room, HistoryQuery::Since(pane.newest_id)));
        }
        changes.panes = true;
        changes.users = i == self.shown;
        changes.status = i == self.shown;
        if self.switch_to.as_deref() == Some(names::fold(&room).as_str()) {
            self.switch_to = None;
            changes.merge(self.show(i));
        }
        changes.merge(self.line_to(i, time, SystemKind::Join, text));
        changes
    }

    fn renamed(&mut self, time: Timestamp, old: String, new: String) -> Changes {
        let mut changes = Changes::default();
        if self.is_me(&old) {
            self.nick = Some(new.clone());
            self.wanted = new.clone();
            changes.status = true;
            for i in 0..self.panes.len() {
                match self.panes[i].target.clone() {
                    Target::Room(_) => {
                        let users = &mut self.panes[i].users;
                        if remove_nick(users, &old) {
                            insert_sorted(users, &new);
                        }
                    }
                    Target::Private(partner) => self.panes[i].users = self.pair(&partner),
                }
            }
            changes.users = true;
            let text = format!("You are now known as {new}");
            changes.merge(self.line_to_all(time, SystemKind::Nick, &text));
            return changes;
        }
        let text = format!("{old} is now known as {new}");
        let mut anywhere = false;
        for i in 0..self.panes.len() {
            let here = match self.panes[i].target.clone() {
                Target::Room(_) => {
                    let users = &mut self.panes[i].users;
                    let here = remove_nick(users, &old);
                    if here {
                        insert_sorted(users, &new);
                    }
                    here
                }
                Target::Private(partner) if partner.eq_ignore_ascii_case(&old) => {
                    // The conversation follows the person, unless one with
                    // the new name is open already.
                    if self.private_index(&new).is_none() {
                        self.panes[i].target = Target::Private(new.clone());
                        self.panes[i].users = self.pair(&new);
                        changes.panes = true;
                        changes.status |= i == self.shown;
                    }
                    true
                }
                Target::Private(_) => false,
            };
            if here {
                anywhere = true;
                changes.users |= i == self.shown;
                changes.merge(self.line_to(i, time, SystemKind::Nick, text.clone()));
            }
        }
        if !anywhere {
            changes.merge(self.system(time, SystemKind::Nick, text));
        }
        changes
    }

    /// Shows a chat or private message, live or replayed, in its pane: once,
    /// in id order.
    fn message(&mut self, line: ServerLine, replayed: bool, now: Timestamp) -> Changes {
        let (time, id, index, kind, own, alert) = match line {
            ServerLine::Msg {
                time,
                id,
                room,
                nick,
                text,
            } => {
                let own = self.is_me(&nick);
                let mention = !own && self.nick.as_deref().is_some_and(|me| mentions(&text, me));
                let index = match self.room_index(&room) {
                    Some(i) => i,
                    // History of a room we have no pane for: not asked for.
                    None if replayed => return Changes::default(),
                    // Shown with its room's name.
                    None => self.shown,
                };
                let kind = EntryKind::Chat {
                    room,
                    nick,
                    text,
                    own,
                    mention,
                };
                (time, id, index, kind, own, mention)
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
                let Some(index) = self.open(Target::Private(partner.clone())) else {
                    return Changes::default();
                };
                let kind = EntryKind::Whisper {
                    from,
                    to,
                    text,
                    own,
                };
                (time, id, index, kind, own, !own)
            }
            // HIST holds only MSG and WHISPER lines; anything else is shown
            // as it came.
            other => {
                let text = other.to_line().trim_end().to_owned();
                return self.system(now, SystemKind::Raw, text);
            }
        };
        let shown = index == self.shown;
        let tick = self.tick;
        let Some(pane) = self.panes.get_mut(index) else {
            return Changes::default();
        };
        if replayed && !pane.batch.started {
            pane.batch.started = true;
            pane.batch.fresh = !pane.replayed;
        }
        let mut changes = Changes::default();
        match pane.add_message(id, time, kind) {
            Added::Duplicate => return changes,
            Added::Matched => {}
            Added::Inserted { newer, seq } => {
                if replayed {
                    let batch = &mut pane.batch;
                    batch.inserted = batch.inserted.saturating_add(1);
                    batch.newer = batch.newer.saturating_add(u32::from(newer));
                    if let Some(seq) = seq.filter(|_| batch.last.is_none_or(|(last, _)| id > last))
                    {
                        batch.last = Some((id, seq));
                    }
                }
                if newer && !own && !shown {
                    pane.unread = pane.unread.saturating_add(1);
                    pane.alert |= alert;
                    changes.panes = true;
                }
            }
        }
        if !replayed {
            pane.active = tick;
        }
        changes.scrollback = shown;
        changes
    }

    /// The end of a replay: sums it up below its newest line, and asks for
    /// more when a `since` answer was full.
    fn history_end(&mut self, target: &str, count: u32, now: Timestamp) -> Changes {
        let target = match names::is_room(target) {
            true => Target::Room(target.to_owned()),
            false => Target::Private(target.to_owned()),
        };
        let Some(index) = self.find(&target) else {
            return Changes::default();
        };
        let history_off = self.history_off;
        let pane = &mut self.panes[index];
        let batch = std::mem::take(&mut pane.batch);
        pane.replayed = true;
        let mut changes = Changes::default();
        if std::mem::take(&mut pane.fetching) && count == 0 {
            pane.exhausted = true;
        }
        if count >= crate::protocol::HISTORY_MAX && pane.joined && !history_off {
            // A full page of what we missed: there may be more.
            changes
                .requests
                .push(history(pane.name(), HistoryQuery::Since(pane.newest_id)));
        }
        let n = batch.inserted;
        let s = if n == 1 { "" } else { "s" };
        let text = if batch.fresh {
            match &pane.target {
                Target::Room(room) => format!("Above: {n} earlier message{s} of {room}."),
                Target::Private(nick) => {
                    format!("Above: {n} earlier message{s} with {nick}.")
                }
            }
        } else {
            let n = batch.newer;
            let s = if n == 1 { "" } else { "s" };
            format!("Above: {n} message{s} you missed.")
        };
        let worth_saying = n > 0 && (batch.fresh || batch.newer > 0);
        if let (true, Some((_, seq))) = (worth_saying, batch.last) {
            let kind = EntryKind::System {
                kind: SystemKind::Info,
                text,
            };
            pane.add_below(seq, now, kind);
            changes.scrollback = index == self.shown;
        }
        changes
    }

    fn is_me(&self, nick: &str) -> bool {
        self.nick
            .as_deref()
            .is_some_and(|me| me.eq_ignore_ascii_case(nick))
    }

    fn line_to(
        &mut self,
        index: usize,
        time: Timestamp,
        kind: SystemKind,
        text: String,
    ) -> Changes {
        let Some(pane) = self.panes.get_mut(index) else {
            return Changes::default();
        };
        pane.lines.push(time, EntryKind::System { kind, text });
        Changes {
            scrollback: index == self.shown,
            ..Changes::default()
        }
    }

    fn line_to_all(&mut self, time: Timestamp, kind: SystemKind, text: &str) -> Changes {
        for pane in &mut self.panes {
            let text = text.to_owned();
            pane.lines.push(time, EntryKind::System { kind, text });
        }
        Changes {
            scrollback: true,
            ..Changes::default()
        }
    }

    /// A system line in the shown pane.
    fn system(&mut self, time: Timestamp, kind: SystemKind, text: String) -> Changes {
        self.line_to(self.shown, time, kind, text)
    }

    /// Handles a line the user typed and pressed Enter on, at `now`.
    ///
    /// Plain text is chat in the shown conversation: `MSG #room text` in a
    /// room, `WHISPER nick text` in a private one, echoed at once (the
    /// server does not send us our own messages). Slash commands are parsed
    /// as PROTOCOL.md says (`/nick`, `/users`, `/join`, `/msg nick text`,
    /// `/quit`, ...), with the shown room filled in where the server would
    /// take its "current room"; `/query nick` and `/w nick` without text
    /// open a private conversation, `/close` closes the shown one, and
    /// `/history` alone fetches older messages. `//text` sends `/text`;
    /// unknown slash commands go to the server as typed, so commands added
    /// to the server later work without a new client. Anything needing a
    /// connection is refused, with a line saying so, while there is none.
    pub fn submit(&mut self, input: &str, now: Timestamp) -> Submitted {
        let line: String = input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = line.trim_matches(' ');
        self.completion = None;
        self.tick += 1;
        if line.is_empty() {
            return self.done(Action::None, true, Changes::default());
        }
        // Lines with a password are never kept for Up to bring back.
        let secret = matches!(
            parse_command(line),
            Ok(Command::Register(_) | Command::Login { .. } | Command::Password { .. })
        );
        if !secret {
            self.history.push(line);
        }
        if let Some(submitted) = self.local(line, now) {
            return submitted;
        }
        let command = if line.starts_with('/') {
            match parse_command(line) {
                Ok(command) => command,
                Err(CommandError::Unknown(_)) => {
                    return self.send_if(Outgoing::Raw(line.to_owned()), false, now)
                }
                Err(CommandError::Empty) => {
                    return self.done(Action::None, true, Changes::default())
                }
                Err(err) => return self.refuse(capitalise(&err.to_string()), now),
            }
        } else {
            Command::Msg {
                room: None,
                text: line.to_owned(),
            }
        };
        let shown = self.shown().target.clone();
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
            Command::Msg { room, text } => match (room, shown) {
                (Some(room), _) | (None, Target::Room(room)) => self.say(room, text, now),
                (None, Target::Private(nick)) => self.whisper(nick, text, now),
            },
            Command::Whisper { nick, text } => self.whisper(nick, text, now),
            Command::Join(room) => {
                if let Some(i) = self.room_index(&room).filter(|&i| self.panes[i].joined) {
                    let changes = self.show(i);
                    return self.done(Action::None, true, changes);
                }
                let sent = self.send_if(Outgoing::Command(Command::Join(room.clone())), true, now);
                if matches!(sent.action, Action::Send(_)) {
                    self.switch_to = Some(names::fold(&room));
                }
                sent
            }
            Command::Part { room: None, reason } => match shown {
                Target::Private(_) => self.close_shown(now),
                Target::Room(room) => self.send_command(
                    Command::Part {
                        room: Some(room),
                        reason,
                    },
                    now,
                ),
            },
            Command::Topic { room: None, text } => match shown {
                Target::Private(_) => self.refuse(
                    "Only rooms have topics; this is a private conversation.".into(),
                    now,
                ),
                Target::Room(room) => self.send_command(
                    Command::Topic {
                        room: Some(room),
                        text,
                    },
                    now,
                ),
            },
            Command::Users { room: None } => match shown {
                Target::Private(partner) => {
                    let text = format!(
                        "A private conversation between {} and {partner}.",
                        self.display_nick()
                    );
                    let changes = self.system(now, SystemKind::Info, text);
                    self.done(Action::None, true, changes)
                }
                Target::Room(room) => self.send_command(Command::Users { room: Some(room) }, now),
            },
            Command::Nick(ref nick) => {
                if self.nick.is_none() {
                    self.wanted = nick.clone();
                }
                self.send_if(Outgoing::Command(command), false, now)
            }
            // USERS, PING, PART, ROOMS, TOPIC, HISTORY and what comes next:
            // sent as parsed, shown when the server answers.
            other => {
                // LOGIN is a way to register, so it needs no nickname.
                let needs_nick = !matches!(other, Command::Ping(_) | Command::Login { .. });
                self.send_if(Outgoing::Command(other), needs_nick, now)
            }
        }
    }

    /// The commands this client handles itself, or `None`.
    fn local(&mut self, line: &str, now: Timestamp) -> Option<Submitted> {
        let rest = line.strip_prefix('/').filter(|r| !r.starts_with('/'))?;
        let (verb, arg) = match rest.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim_matches(' ')),
            None => (rest, ""),
        };
        let verb = verb.to_ascii_lowercase();
        let one_word = !arg.is_empty() && !arg.contains(' ');
        match verb.as_str() {
            "w" | "msg" | "whisper" | "query" if one_word => Some(self.converse(arg, now)),
            "query" if arg.is_empty() => {
                Some(self.refuse("/query needs a nickname, as in /query bob".to_owned(), now))
            }
            "query" => {
                let (nick, text) = arg.split_once(' ').unwrap_or((arg, ""));
                let opened = self.converse(nick, now);
                if !opened.clear_input {
                    return Some(opened);
                }
                let mut sent = self.whisper(nick.to_owned(), text.trim().to_owned(), now);
                sent.changes.merge(opened.changes);
                Some(sent)
            }
            "close" => Some(self.close_shown(now)),
            "history" if arg.is_empty() => Some(match self.older() {
                Some(out) => self.done(Action::Send(out), true, Changes::default()),
                None => {
                    let why = match (self.history_off, self.shown().exhausted) {
                        (true, _) => "This server keeps no history.",
                        (false, true) => "There is nothing older here.",
                        (false, false) => {
                            "Nothing to fetch now (offline, busy, or the scrollback is full)."
                        }
                    };
                    let changes = self.system(now, SystemKind::Info, why.to_owned());
                    self.done(Action::None, true, changes)
                }
            }),
            _ => None,
        }
    }

    /// Opens (or shows) the private conversation with `nick`; a new one
    /// asks the server for its recent history.
    fn converse(&mut self, nick: &str, now: Timestamp) -> Submitted {
        if let Err(err) = names::check_nick(nick) {
            return self.refuse(format!("{nick} is not a nickname: {err}."), now);
        }
        if self.is_me(nick) {
            return self.refuse("That is you; pick someone else to talk to.".into(), now);
        }
        let existed = self.private_index(nick).is_some();
        let Some(index) = self.open(Target::Private(nick.to_owned())) else {
            return self.refuse("Too many private conversations are open.".into(), now);
        };
        let mut changes = self.set_shown(index);
        if !existed && self.state == ConnState::Online && !self.history_off {
            if let Some(out) = self.older() {
                changes.requests.push(out);
            }
        }
        self.done(Action::None, true, changes)
    }

    /// `/close`: a private pane closes here; a room is left.
    fn close_shown(&mut self, now: Timestamp) -> Submitted {
        match self.shown().target.clone() {
            Target::Room(room) => self.send_command(
                Command::Part {
                    room: Some(room),
                    reason: String::new(),
                },
                now,
            ),
            Target::Private(_) if self.panes.len() == 1 => {
                self.refuse("This is the only pane; /join a room first.".into(), now)
            }
            Target::Private(_) => {
                let changes = self.remove(self.shown);
                self.done(Action::None, true, changes)
            }
        }
    }

    /// Chat in `room`, echoed in its pane.
    fn say(&mut self, room: String, text: String, now: Timestamp) -> Submitted {
        let index = self.room_index(&room);
        if self.state == ConnState::Online && index.is_some_and(|i| !self.panes[i].joined) {
            return self.refuse(
                format!("You are not in {room}; /join {room} to go back."),
                now,
            );
        }
        let out = Outgoing::Command(Command::Msg {
            room: Some(room.clone()),
            text: text.clone(),
        });
        let mut sent = self.send_if(out, true, now);
        if matches!(sent.action, Action::Send(_)) {
            let index = index.unwrap_or(self.shown);
            let chat = EntryKind::Chat {
                room,
                nick: self.display_nick().to_owned(),
                text,
                own: true,
                mention: false,
            };
            sent.changes.merge(self.echo(index, now, chat));
        }
        sent
    }

    /// A private message, echoed in the conversation's pane (opened if
    /// needed) and, if another pane is shown, there too.
    fn whisper(&mut self, nick: String, text: String, now: Timestamp) -> Submitted {
        let out = Outgoing::Command(Command::Whisper {
            nick: nick.clone(),
            text: text.clone(),
        });
        let mut sent = self.send_if(out, true, now);
        if !matches!(sent.action, Action::Send(_)) {
            return sent;
        }
        let whisper = EntryKind::Whisper {
            from: self.display_nick().to_owned(),
            to: nick.clone(),
            text,
            own: true,
        };
        let index = self.open(Target::Private(nick)).unwrap_or(self.shown);
        if index != self.shown {
            sent.changes.panes = true;
            sent.changes
                .merge(self.echo(self.shown, now, whisper.clone()));
        }
        sent.changes.merge(self.echo(index, now, whisper));
        sent
    }

    fn echo(&mut self, index: usize, now: Timestamp, kind: EntryKind) -> Changes {
        let tick = self.tick;
        let Some(pane) = self.panes.get_mut(index) else {
            return Changes::default();
        };
        pane.lines.push(now, kind);
        pane.active = tick;
        Changes {
            scrollback: index == self.shown,
            ..Changes::default()
        }
    }

    /// True if there is a connection to send on (registered or not).
    fn connected(&self) -> bool {
        matches!(self.state, ConnState::Online | ConnState::Registering)
    }

    fn send_command(&mut self, command: Command, now: Timestamp) -> Submitted {
        self.send_if(Outgoing::Command(command), true, now)
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
            Some(why) => self.refuse(
                format!("Not sent ({why}); your text is still in the input line."),
                now,
            ),
        }
    }

    /// Refuses the typed line with `why`, keeping it in the input line.
    fn refuse(&mut self, why: String, now: Timestamp) -> Submitted {
        let changes = self.system(now, SystemKind::Error, why);
        self.done(Action::None, false, changes)
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
    /// a nickname of someone in the shown conversation, or a slash command
    /// at the start. Pressed again, it cycles through the other matches.
    /// Returns the new input and cursor, or `None` if nothing matches.
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

/// A `HISTORY` request.
fn history(target: &str, query: HistoryQuery) -> Outgoing {
    Outgoing::Command(Command::History {
        target: target.to_owned(),
        query,
    })
}

/// The lines `/help` shows before the server's own help.
const LOCAL_HELP: [&str; 4] = [
    "Keys: Enter send · Up/Down history · Tab complete nick · PgUp/PgDn or mouse wheel scroll",
    "      (past the top: older history) · Ctrl-N/Ctrl-P or Alt-1..9 switch conversation",
    "      Esc quit (asks) · Ctrl-C quit. Start a message with // to begin it with a slash.",
    "Here: /query nick (or /w nick) opens a private conversation, /close closes it, /history fetches older.",
];

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
    use crate::client::Entry;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_800_000_000 + secs).unwrap_or_else(Timestamp::now)
    }

    fn line(s: &str) -> Event {
        match ServerLine::parse(s) {
            Ok(l) => Event::Line(l),
            Err(e) => panic!("bad test line {s:?}: {e}"),
        }
    }

    /// A model registered as alice with bob and carol in the lobby.
    fn online() -> Model {
        let mut m = Model::new("host:1", "alice", 50);
        m.apply(Event::State(ConnState::Registering), t(0));
        m.apply(line("WELCOME alice Hello alice!"), t(0));
        m.apply(Event::State(ConnState::Online), t(0));
        m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby alice"), t(0));
        m.apply(line("USERS #lobby alice bob Carol"), t(0));
        m
    }

    fn render(e: &Entry) -> String {
        match &e.kind {
            EntryKind::Chat { nick, text, .. } => format!("<{nick}> {text}"),
            EntryKind::Whisper { from, to, text, .. } => format!("[{from}->{to}] {text}"),
            EntryKind::System { text, .. } => format!("* {text}"),
        }
    }

    fn texts(m: &Model) -> Vec<String> {
        m.scrollback().iter().map(render).collect()
    }

    fn pane_texts(m: &Model, target: Target) -> Vec<String> {
        m.pane(&target)
            .map(|p| p.scrollback().iter().map(render).collect())
            .unwrap_or_default()
    }

    fn ends_with(got: &[String], want: &[&str]) -> bool {
        got.len() >= want.len()
            && got[got.len() - want.len()..]
                .iter()
                .zip(want)
                .all(|(a, b)| a == b)
    }

    fn room(name: &str) -> Target {
        Target::Room(name.into())
    }

    fn private(nick: &str) -> Target {
        Target::Private(nick.into())
    }

    fn send(command: Command) -> Action {
        Action::Send(Outgoing::Command(command))
    }

    fn hist(target: &str, query: HistoryQuery) -> Outgoing {
        history(target, query)
    }

    #[test]
    fn replayed_history_is_shown_once_in_id_order() {
        // Story: joining shows the recent conversation in order, and reconnecting does not repeat it.
        let mut m = online();
        // A live line overtakes the replay, which still goes above it.
        m.apply(line("MSG 2026-11-26T09:02:00Z 3 #lobby bob live"), t(1));
        m.apply(
            line("HIST MSG 2026-11-26T09:00:00Z 1 #lobby bob first"),
            t(1),
        );
        m.apply(
            line("HIST MSG 2026-11-26T09:01:00Z 2 #lobby Carol second alice"),
            t(1),
        );
        m.apply(
            line("HIST MSG 2026-11-26T09:01:00Z 2 #lobby Carol second alice"),
            t(1),
        );
        m.apply(line("HIST END #lobby 3"), t(1));
        let expected = [
            "<bob> first",
            "<Carol> second alice",
            "* Above: 2 earlier messages of #lobby.",
            "<bob> live",
        ];
        assert!(ends_with(&texts(&m), &expected), "{:#?}", texts(&m));
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
            "* Above: 1 message you missed.",
        ];
        assert!(ends_with(&texts(&m), &expected), "{:#?}", texts(&m));
    }

    #[test]
    fn each_room_has_its_own_pane_users_and_unread_count() {
        // Story: after /join the chat panel, title and user list follow the shown room; other rooms count unread lines.
        let mut m = online();
        let sent = m.submit("/join rust", t(1));
        assert_eq!(sent.action, send(Command::Join("#rust".into())));
        assert_eq!(m.room(), "#lobby", "shown once the server confirms");
        let c = m.apply(line("JOIN 2026-11-26T09:30:00Z #rust alice"), t(1));
        assert!(c.status && c.users && c.panes && c.scrollback);
        assert_eq!(m.room(), "#rust");
        m.apply(
            line("TOPIC 2026-11-26T09:30:00Z #rust bob all about crabs"),
            t(1),
        );
        m.apply(line("USERS #rust alice bob"), t(1));
        assert_eq!(m.users(), ["alice", "bob"]);
        assert_eq!(m.topic(), "all about crabs");
        let c = m.apply(line("JOIN 2026-11-26T09:31:00Z #lobby dave"), t(2));
        assert!(
            !c.users && !c.scrollback,
            "a join elsewhere leaves this pane alone"
        );
        let c = m.apply(
            line("MSG 2026-11-26T09:31:00Z 5 #lobby bob over here alice"),
            t(2),
        );
        assert!(c.panes && !c.scrollback);
        let lobby = m.pane(&room("#lobby")).map(|p| (p.unread(), p.alert()));
        assert_eq!(lobby, Some((1, true)));
        assert!(!texts(&m).iter().any(|l| l.contains("over here")));
        // Plain lines go to the shown room, by name.
        let sent = m.submit("hello crabs", t(3));
        assert_eq!(
            sent.action,
            send(Command::Msg {
                room: Some("#rust".into()),
                text: "hello crabs".into()
            })
        );
        m.apply(line("QUIT 2026-11-26T09:32:00Z bob gone"), t(3));
        assert_eq!(m.users(), ["alice"]);
        assert!(pane_texts(&m, room("#lobby")).contains(&"* bob left (gone)".to_owned()));
        // Switching back marks the lobby read.
        let c = m.show(0);
        assert!(c.scrollback && c.users && c.status);
        assert_eq!(m.shown().unread(), 0);
        assert_eq!(m.users(), ["alice", "Carol", "dave"]);
        m.show(1);
        assert_eq!(
            m.submit("/part", t(4)).action,
            send(Command::Part {
                room: Some("#rust".into()),
                reason: String::new()
            })
        );
        m.apply(line("PART 2026-11-26T09:33:00Z #rust alice"), t(4));
        m.apply(line("INFO Messages without a room now go to #lobby."), t(4));
        assert_eq!(m.room(), "#lobby");
        assert_eq!(m.rooms().collect::<Vec<_>>(), ["#lobby"]);
        assert_eq!(m.panes().len(), 1);
        assert_eq!(
            texts(&m).last().map(String::as_str),
            Some("* You left #rust")
        );
    }

    #[test]
    fn private_conversations_get_their_own_pane() {
        // Story: a whisper opens a private pane; lines typed there stay private; nobody else's pane shows them.
        let mut m = online();
        let c = m.apply(line("WHISPER 2026-11-26T09:30:00Z 9 bob alice psst"), t(1));
        assert!(c.panes && !c.scrollback);
        let bob = m
            .pane(&private("bob"))
            .map(|p| (p.unread(), p.alert(), p.users().to_vec()));
        assert_eq!(
            bob,
            Some((1, true, vec!["alice".to_owned(), "bob".to_owned()]))
        );
        assert!(!texts(&m).iter().any(|l| l.contains("psst")));
        // /msg from the lobby: sent privately, echoed in bob's pane and here.
        let sent = m.submit("/msg bob hi there", t(2));
        assert_eq!(
            sent.action,
            send(Command::Whisper {
                nick: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(
            texts(&m).last().map(String::as_str),
            Some("[alice->bob] hi there")
        );
        m.show_next();
        assert_eq!(m.shown().name(), "bob");
        assert_eq!(m.room(), "");
        assert_eq!(texts(&m), ["[bob->alice] psst", "[alice->bob] hi there"]);
        let sent = m.submit("plain line", t(3));
        assert_eq!(
            sent.action,
            send(Command::Whisper {
                nick: "bob".into(),
                text: "plain line".into()
            })
        );
        assert!(!m.submit("/topic x", t(3)).clear_input, "no topics here");
        m.apply(line("NICK 2026-11-26T09:31:00Z bob robert"), t(4));
        assert_eq!(
            m.shown().name(),
            "robert",
            "the conversation follows the rename"
        );
        let c = m.submit("/close", t(5)).changes;
        assert!(c.panes && c.scrollback);
        assert_eq!(m.room(), "#lobby");
        // /query opens and shows a pane and asks for its history.
        let opened = m.submit("/query carol", t(6));
        assert_eq!(m.shown().name(), "carol");
        assert_eq!(
            opened.changes.requests,
            [hist("carol", HistoryQuery::Last(HISTORY_DEFAULT))]
        );
    }

    #[test]
    fn private_panes_are_bounded() {
        // Story: a flood of whisperers cannot grow the client without bound.
        let mut m = online();
        for i in 0..(MAX_PRIVATE + 5) {
            let l = format!("WHISPER 2026-11-26T09:30:00Z {} u{i} alice hey", i + 1);
            m.apply(line(&l), t(1));
        }
        let private = m.panes().iter().filter(|p| p.is_private()).count();
        assert_eq!(private, MAX_PRIVATE);
        assert!(
            m.pane(&Target::Private("u0".into())).is_none(),
            "the quietest went"
        );
        assert!(m
            .pane(&Target::Private(format!("u{}", MAX_PRIVATE + 4)))
            .is_some());
        assert_eq!(m.shown().name(), "#lobby");
    }

    #[test]
    fn scrolling_past_the_top_asks_for_the_page_before() {
        // Story: scrolling up past the oldest line fetches older history, once at a time, until there is none.
        let mut m = online();
        m.apply(
            line("HIST MSG 2026-11-26T09:00:00Z 40 #lobby bob forty"),
            t(1),
        );
        m.apply(line("HIST END #lobby 1"), t(1));
        assert_eq!(m.older(), Some(hist("#lobby", HistoryQuery::Before(40))));
        assert_eq!(m.older(), None, "one request at a time");
        m.apply(
            line("HIST MSG 2026-11-26T08:00:00Z 12 #lobby bob twelve"),
            t(2),
        );
        m.apply(line("HIST END #lobby 1"), t(2));
        let older: Vec<String> = texts(&m)
            .into_iter()
            .filter(|l| l.starts_with("<bob>"))
            .collect();
        assert_eq!(older, ["<bob> twelve", "<bob> forty"]);
        assert_eq!(m.older(), Some(hist("#lobby", HistoryQuery::Before(12))));
        m.apply(line("HIST END #lobby 0"), t(3));
        assert_eq!(m.older(), None, "nothing older");
        // A private pane without any id asks for the newest page.
        m.apply(line("WHISPER 2026-11-26T09:30:00Z 50 bob alice hi"), t(4));
        m.show_next();
        assert_eq!(m.older(), Some(hist("bob", HistoryQuery::Before(50))));
    }

    #[test]
    fn reconnecting_fetches_what_was_missed_and_own_echoes_get_their_ids() {
        // Story: back after a drop, each conversation fetches exactly what it missed, and my own lines are not repeated.
        let mut m = online();
        m.apply(line("HIST END #lobby 0"), t(1));
        m.apply(line("TOPIC 2026-11-26T09:30:00Z #lobby bob old news"), t(1));
        m.apply(line("MSG 2026-11-26T09:31:00Z 10 #lobby bob before"), t(1));
        m.submit("mine", t(2));
        m.apply(
            line("WHISPER 2026-11-26T09:31:00Z 11 bob alice private"),
            t(2),
        );
        m.apply(
            Event::State(ConnState::Offline {
                reason: "gone".into(),
                retry_in: std::time::Duration::from_secs(1),
            }),
            t(3),
        );
        assert_eq!(m.rooms().count(), 0);
        m.apply(Event::State(ConnState::Registering), t(4));
        let c = m.apply(line("WELCOME alice Hello again!"), t(4));
        assert_eq!(c.requests, [hist("bob", HistoryQuery::Since(11))]);
        m.apply(Event::State(ConnState::Online), t(4));
        let c = m.apply(line("JOIN 2026-11-26T09:40:00Z #lobby alice"), t(4));
        assert_eq!(c.requests, [hist("#lobby", HistoryQuery::Since(10))]);
        assert_eq!(m.topic(), "", "the room was made again without one");
        for l in [
            "HIST MSG 2026-11-26T09:31:00Z 10 #lobby bob before",
            "HIST MSG 2026-11-26T09:32:00Z 12 #lobby alice mine",
            "HIST MSG 2026-11-26T09:35:00Z 13 #lobby bob while away",
            "HIST END #lobby 3",
            "HIST MSG 2026-11-26T09:32:00Z 12 #lobby alice mine",
            "HIST MSG 2026-11-26T09:35:00Z 13 #lobby bob while away",
            "HIST END #lobby 2",
        ] {
            m.apply(line(l), t(5));
        }
        let chat: Vec<String> = texts(&m)
            .into_iter()
            .filter(|l| l.starts_with('<'))
            .collect();
        assert_eq!(chat, ["<bob> before", "<alice> mine", "<bob> while away"]);
        let ids: Vec<Option<u64>> = m
            .scrollback()
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Chat { .. }))
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [Some(10), Some(12), Some(13)]);
        assert!(texts(&m).contains(&"* Above: 1 message you missed.".to_owned()));
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
        assert_eq!(
            texts(&m).last().map(String::as_str),
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
            send(Command::Msg {
                room: Some("#lobby".into()),
                text: "hello".into()
            })
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
    fn passwords_stay_out_of_the_input_history() {
        // Story: /login and /register go to the server, and Up never brings a password back.
        let mut m = online();
        assert_eq!(
            m.submit("/register secret-pass", t(1)).action,
            send(Command::Register(crate::protocol::Secret::new(
                "secret-pass"
            )))
        );
        m.submit("hello", t(1));
        m.submit("/login alice other-secret", t(1));
        m.submit("/password old-secret new-secret", t(1));
        let mut seen = Vec::new();
        while let Some(line) = m.history_up("") {
            if seen.last() == Some(&line) {
                break;
            }
            seen.push(line);
        }
        assert_eq!(seen, ["hello"]);
    }

    #[test]
    fn slash_commands() {
        // Story: /nick, /users, /quit and unknown commands do what a chat user expects.
        let mut m = online();
        assert_eq!(
            m.submit("/nick bobby", t(1)).action,
            send(Command::Nick("bobby".into()))
        );
        assert_eq!(
            m.submit("/users", t(1)).action,
            send(Command::Users {
                room: Some("#lobby".into())
            })
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
            send(Command::Msg {
                room: Some("#lobby".into()),
                text: "/shrug".into()
            })
        );
        assert_eq!(
            m.submit("/join #lobby", t(1)).action,
            Action::None,
            "already there: just shown"
        );
        let bad = m.submit("/nick", t(1));
        assert_eq!(bad.action, Action::None);
        assert!(!bad.clear_input);
        let me = m.submit("/w alice", t(1));
        assert!(!me.clear_input, "no conversation with myself");
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
