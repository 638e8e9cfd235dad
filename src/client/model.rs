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
//!
//! The model is spread over a few files, all `impl Model` blocks over the
//! state defined here: [`super::inbound`] applies server lines and
//! connection news, [`super::input`] handles typed lines and slash
//! commands, [`super::recall`] keeps the input history and Tab completion,
//! and [`super::words`] holds the sentences the user reads.

use super::connection::{ConnState, Outgoing};
use super::pane::{EntryKind, Pane, Scrollback, SystemKind, Target};
use super::recall::{Completion, History};
use crate::names;
use crate::protocol::{Command, HistoryQuery, Timestamp, HISTORY_DEFAULT, LOBBY};

/// A conversation's scrollback's default capacity, in lines.
pub const DEFAULT_SCROLLBACK: usize = 10_000;

/// The most rooms with a pane. The server allows fewer by default (32); this
/// only stops a broken server from growing the client without bound.
pub const MAX_ROOMS: usize = 64;

/// The most private conversations with a pane; opening one more closes the
/// one quiet for longest, preferably one without unread messages (its
/// history stays on the server).
pub const MAX_PRIVATE: usize = 16;

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
    pub(super) fn merge(&mut self, other: Changes) {
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
    pub(super) fn switched() -> Self {
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
    pub(super) server: String,
    /// Rooms first (in the order we joined them), then private
    /// conversations (in the order they started). Never empty.
    pub(super) panes: Vec<Pane>,
    /// The index of the pane shown.
    pub(super) shown: usize,
    /// Lines per pane.
    pub(super) capacity: usize,
    /// The next [`Pane::uid`].
    pub(super) next_uid: u64,
    /// Counts events, to know which private pane was quiet longest.
    pub(super) tick: u64,
    /// The room (folded) the user asked to join: its pane is shown when
    /// the server confirms.
    pub(super) switch_to: Option<String>,
    /// The server said it keeps no history: stop asking.
    pub(super) history_off: bool,
    /// The server welcomed us before: a welcome now is a reconnection, and
    /// the conversations fetch what they missed.
    pub(super) welcomed_before: bool,
    /// The folded room of the `USERS` line just received: `JOINS` lines
    /// right after it carry the rest of that list, and say nothing.
    pub(super) listing: Option<String>,
    /// The nickname the server gave us, once it has.
    pub(super) nick: Option<String>,
    /// The nickname we asked for, shown until the server answers.
    pub(super) wanted: String,
    pub(super) state: ConnState,
    pub(super) recall: History,
    pub(super) completion: Option<Completion>,
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
            listing: None,
            nick: None,
            wanted: nick.to_owned(),
            state: ConnState::Connecting { attempt: 1 },
            recall: History::default(),
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

    pub(super) fn find(&self, target: &Target) -> Option<usize> {
        self.panes.iter().position(|p| p.target.same(target))
    }

    pub(super) fn room_index(&self, room: &str) -> Option<usize> {
        self.find(&Target::Room(room.to_owned()))
    }

    pub(super) fn private_index(&self, nick: &str) -> Option<usize> {
        self.find(&Target::Private(nick.to_owned()))
    }

    /// The pane of `target`, opened if needed (rooms after rooms, private
    /// conversations at the end). `None` if there are too many rooms.
    pub(super) fn open(&mut self, target: Target) -> Option<usize> {
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
    pub(super) fn remove(&mut self, index: usize) -> Changes {
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

    pub(super) fn set_shown(&mut self, index: usize) -> Changes {
        self.shown = index.min(self.panes.len().saturating_sub(1));
        self.completion = None;
        if let Some(pane) = self.panes.get_mut(self.shown) {
            pane.unread = 0;
            pane.alert = false;
        }
        Changes::switched()
    }

    /// The two participants of a private conversation, sorted.
    pub(super) fn pair(&self, partner: &str) -> Vec<String> {
        let mut users = vec![self.display_nick().to_owned(), partner.to_owned()];
        users.sort_by_key(|n| names::fold(n));
        users
    }

    pub(super) fn is_me(&self, nick: &str) -> bool {
        self.nick
            .as_deref()
            .is_some_and(|me| me.eq_ignore_ascii_case(nick))
    }

    pub(super) fn line_to(
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

    pub(super) fn line_to_all(&mut self, time: Timestamp, kind: SystemKind, text: &str) -> Changes {
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
    pub(super) fn system(&mut self, time: Timestamp, kind: SystemKind, text: String) -> Changes {
        self.line_to(self.shown, time, kind, text)
    }
}

/// A `HISTORY` request.
pub(super) fn history(target: &str, query: HistoryQuery) -> Outgoing {
    Outgoing::Command(Command::History {
        target: target.to_owned(),
        query,
    })
}

#[cfg(test)]
mod tests;
