//! One conversation as the client keeps it: a room or a private
//! conversation, with its own bounded scrollback, unread count and the
//! bookkeeping that lets history be fetched without showing a line twice.
//!
//! Messages carry the server's id, and a pane keeps the messages that have
//! one in id order whatever order they arrive in: live lines, a join replay
//! that comes after them, a page of older history fetched when scrolling up,
//! or what was missed during a disconnection. Lines without an id (news such
//! as joins, and our own messages, which the server never sends back) stay
//! where they were added; when replayed history brings one of our own
//! messages, the echo we showed gets its id instead of a second copy.
//!
//! A line is a duplicate only if the pane holds one with the same id *and*
//! the same words from the same sender in the same place: a message the
//! user has not seen is never dropped. A different message under an id the
//! pane already holds (a server that handed an id out twice) is shown
//! anyway, in id order, below the lines with that id.
//!
//! Invariants:
//! - a scrollback never holds more lines than its capacity; the line at the
//!   top goes first;
//! - no two lines of a pane have the same id and the same message, and the
//!   lines that have an id are in id order from top to bottom (equal ids in
//!   the order they came);
//! - a line keeps its sequence number for life, so a view can hold on to it
//!   while lines are added above and below.

use std::collections::VecDeque;

use crate::names;
use crate::protocol::Timestamp;

/// One line of a scrollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Numbers the lines of a scrollback in the order they were added (not
    /// the order shown); a view holds on to a line by its number.
    pub seq: u64,
    /// The server's message id, for chat and private messages it sent; our
    /// own messages have none until replayed history tells us theirs.
    pub id: Option<u64>,
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
        /// Where it was said (a view names it when it is not the pane's room).
        room: String,
        /// Who said it.
        nick: String,
        /// What they said.
        text: String,
        /// We said it.
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
        /// We sent it.
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

/// A bounded list of lines, top (oldest) first.
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

    /// Adds a line without an id at the bottom, dropping the top line if
    /// full. Returns its number.
    pub fn push(&mut self, time: Timestamp, kind: EntryKind) -> u64 {
        let seq = self.take_seq();
        self.place(
            self.entries.len(),
            Entry {
                seq,
                id: None,
                time,
                kind,
            },
        );
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

    /// True if it holds as many lines as it may.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// The most lines it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of the top line.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// The number of the bottom line.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.back().map(|e| e.seq)
    }

    /// Where line `seq` is, counting from the top, if it is still kept.
    pub fn position(&self, seq: u64) -> Option<usize> {
        self.entries.iter().rposition(|e| e.seq == seq)
    }

    /// The line numbered `seq`, if it is still kept.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        self.position(seq).and_then(|i| self.entries.get(i))
    }

    /// The line at `index`, counting from the top.
    pub fn at(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index)
    }

    /// All lines, top first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The smallest message id held: where fetching older history starts.
    pub fn oldest_id(&self) -> Option<u64> {
        self.entries.iter().find_map(|e| e.id)
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Inserts at `index`, then drops the top line if over capacity. False
    /// if the entry itself was dropped (it went in at the top of a full
    /// scrollback).
    fn place(&mut self, index: usize, entry: Entry) -> bool {
        let index = index.min(self.entries.len());
        self.entries.insert(index, entry);
        if self.entries.len() > self.capacity {
            self.entries.pop_front();
            return index > 0;
        }
        true
    }

    /// Where a message with `id` goes: just above the first line with a
    /// larger id, or at the bottom. `Err` if a line with that id says the
    /// same as `kind` already. Scans from the bottom, where new messages
    /// go, so live chat costs nothing.
    fn slot(&self, id: u64, kind: &EntryKind) -> Result<usize, ()> {
        let mut at = self.entries.len();
        for (i, e) in self.entries.iter().enumerate().rev() {
            match e.id {
                Some(other) if other == id && same_message(&e.kind, kind) => return Err(()),
                Some(other) if other > id => at = i,
                // Another message under the same id: it stays above.
                Some(other) if other == id => {}
                Some(_) => break,
                None => {}
            }
        }
        Ok(at)
    }

    /// The position of our own message shown without an id (an echo) that
    /// `kind` is the server's copy of: same sender, same place, same text.
    /// The oldest such echo, since replies come in id order. Only our own
    /// messages are looked for, so others' cost nothing.
    fn echo_of(&self, kind: &EntryKind) -> Option<usize> {
        let own = match kind {
            EntryKind::Chat { own, .. } | EntryKind::Whisper { own, .. } => *own,
            EntryKind::System { .. } => false,
        };
        if !own {
            return None;
        }
        self.entries.iter().position(|e| {
            e.id.is_none()
                && match (&e.kind, kind) {
                    (
                        EntryKind::Chat {
                            room,
                            nick,
                            text,
                            own: true,
                            ..
                        },
                        EntryKind::Chat {
                            room: r,
                            nick: n,
                            text: t,
                            ..
                        },
                    ) => text == t && nick.eq_ignore_ascii_case(n) && room.eq_ignore_ascii_case(r),
                    (
                        EntryKind::Whisper {
                            from,
                            to,
                            text,
                            own: true,
                        },
                        EntryKind::Whisper {
                            from: f,
                            to: o,
                            text: t,
                            ..
                        },
                    ) => text == t && from.eq_ignore_ascii_case(f) && to.eq_ignore_ascii_case(o),
                    _ => false,
                }
        })
    }
}

/// True if `a` and `b` are the same message: the same words, from the same
/// sender, in the same room or to the same nickname. Whether it was ours or
/// mentioned us is left out: that depends on our nickname at the time.
fn same_message(a: &EntryKind, b: &EntryKind) -> bool {
    let same = |x: &str, y: &str| names::fold(x) == names::fold(y);
    match (a, b) {
        (
            EntryKind::Chat {
                room, nick, text, ..
            },
            EntryKind::Chat {
                room: r,
                nick: n,
                text: t,
                ..
            },
        ) => text == t && same(nick, n) && same(room, r),
        (
            EntryKind::Whisper { from, to, text, .. },
            EntryKind::Whisper {
                from: f,
                to: o,
                text: t,
                ..
            },
        ) => text == t && same(from, f) && same(to, o),
        _ => false,
    }
}

/// What a pane is the conversation of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A room, named as the server wrote it.
    Room(String),
    /// A private conversation with this nickname.
    Private(String),
}

impl Target {
    /// The room's name or the partner's nickname: what `HISTORY` takes.
    pub fn name(&self) -> &str {
        match self {
            Target::Room(name) | Target::Private(name) => name,
        }
    }

    /// True if both name the same conversation (names ignore case).
    pub fn same(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Room(a), Target::Room(b)) | (Target::Private(a), Target::Private(b)) => {
                names::fold(a) == names::fold(b)
            }
            _ => false,
        }
    }
}

/// What adding a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// The same message with the same id was already there; nothing
    /// changed.
    Duplicate,
    /// It was our own message, already shown: the echo took its id.
    Matched,
    /// A new line. `newer` if its id is larger than any seen before in this
    /// pane (not history from before what it shows).
    Inserted {
        /// Newer than anything this pane had.
        newer: bool,
        /// Its sequence number, unless it fell off the top of a full
        /// scrollback at once.
        seq: Option<u64>,
    },
}

/// What the replayed lines since the last `HIST END` of a pane did, for the
/// line that sums them up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Batch {
    /// A `HIST` line came since the last `HIST END`.
    pub started: bool,
    /// Lines added (not duplicates, not matched echoes).
    pub inserted: u32,
    /// Of those, lines newer than anything the pane had: missed messages.
    pub newer: u32,
    /// The first replay this pane gets (the one on joining, or the first
    /// page of a private conversation).
    pub fresh: bool,
    /// The largest id added, and its line: the summary goes below it.
    pub last: Option<(u64, u64)>,
}

/// One conversation: what the chat panel shows when it is selected.
#[derive(Debug, Clone)]
pub struct Pane {
    /// Tells panes apart for their whole life, even two panes of the same
    /// room opened one after the other.
    pub(crate) uid: u64,
    pub(crate) target: Target,
    pub(crate) lines: Scrollback,
    /// Members, sorted case-insensitively: a room's from the server, a
    /// private conversation's are its two participants.
    pub(crate) users: Vec<String>,
    /// A room's topic; empty if none.
    pub(crate) topic: String,
    /// For a room: the server has us in it now (false after a PART that
    /// left it as the last pane, and while offline). Private panes: true.
    pub(crate) joined: bool,
    /// Messages from others that arrived while another pane was shown.
    pub(crate) unread: u32,
    /// One of the unread messages mentions us or is private.
    pub(crate) alert: bool,
    /// The largest message id this pane ever held: where `since` starts
    /// after a reconnection.
    pub(crate) newest_id: u64,
    /// A `HISTORY ... before` (or first page) request is on its way, so
    /// scrolling further does not ask again.
    pub(crate) fetching: bool,
    /// The server said there is nothing older.
    pub(crate) exhausted: bool,
    /// Replayed lines since the last `HIST END` for this pane.
    pub(crate) batch: Batch,
    /// A replay for this pane has ended before.
    pub(crate) replayed: bool,
    /// When something last happened here (the model's tick), to choose
    /// which private pane to close when too many are open.
    pub(crate) active: u64,
}

impl Pane {
    pub(crate) fn new(uid: u64, target: Target, capacity: usize) -> Self {
        Self {
            uid,
            target,
            lines: Scrollback::new(capacity),
            users: Vec::new(),
            topic: String::new(),
            joined: false,
            unread: 0,
            alert: false,
            newest_id: 0,
            fetching: false,
            exhausted: false,
            batch: Batch::default(),
            replayed: false,
            active: 0,
        }
    }

    /// Tells this pane apart from every other, including earlier panes of
    /// the same conversation.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// What it is the conversation of.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The room's name or the partner's nickname.
    pub fn name(&self) -> &str {
        self.target.name()
    }

    /// True for a private conversation.
    pub fn is_private(&self) -> bool {
        matches!(self.target, Target::Private(_))
    }

    /// Its lines.
    pub fn scrollback(&self) -> &Scrollback {
        &self.lines
    }

    /// Messages from others that arrived while it was not shown.
    pub fn unread(&self) -> u32 {
        self.unread
    }

    /// True if an unread message mentions us or is private.
    pub fn alert(&self) -> bool {
        self.alert
    }

    /// For a room: true while the server has us in it.
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// Members, sorted case-insensitively.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The room's topic (empty if none, and for private conversations).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Adds a message that has a server id, keeping id order and skipping
    /// one already shown (same id, same message); our own message already
    /// shown as an echo gets the id (and moves to its place in id order)
    /// instead. A different message under a known id is added.
    ///
    /// A message newer than any shown goes at the bottom; an older one
    /// just above the first line with a larger id. So a replay that comes
    /// after live lines or after the news of a reconnection stays below that
    /// news, and a page of older history goes below the news of joining at
    /// the top, right above what it precedes, where a view held on the
    /// line below sees it at once.
    pub(crate) fn add_message(&mut self, id: u64, time: Timestamp, kind: EntryKind) -> Added {
        let newer = id > self.newest_id;
        if !newer && self.lines.slot(id, &kind).is_err() {
            return Added::Duplicate;
        }
        if let Some(at) = self.lines.echo_of(&kind) {
            self.newest_id = self.newest_id.max(id);
            let entries = &mut self.lines.entries;
            let before = entries.range(..at).rev().find_map(|e| e.id);
            let after = entries.range(at + 1..).find_map(|e| e.id);
            let in_order = before.is_none_or(|b| b <= id) && after.is_none_or(|a| a >= id);
            if let Some(echo) = entries.get_mut(at) {
                echo.id = Some(id);
                echo.time = time;
            }
            // Where it was shown, unless that breaks the id order.
            if !in_order {
                if let Some(echo) = entries.remove(at) {
                    let slot = self.lines.slot(id, &echo.kind).unwrap_or(self.lines.len());
                    self.lines.place(slot, echo);
                }
            }
            return Added::Matched;
        }
        let slot = match newer {
            true => self.lines.len(),
            false => self.lines.slot(id, &kind).unwrap_or(self.lines.len()),
        };
        let seq = self.lines.take_seq();
        let kept = self.lines.place(
            slot,
            Entry {
                seq,
                id: Some(id),
                time,
                kind,
            },
        );
        self.newest_id = self.newest_id.max(id);
        Added::Inserted {
            newer,
            seq: kept.then_some(seq),
        }
    }

    /// Adds a line without an id right below line `seq` (or at the bottom
    /// if it is gone).
    pub(crate) fn add_below(&mut self, seq: u64, time: Timestamp, kind: EntryKind) {
        let at = self.lines.position(seq).map_or(self.lines.len(), |i| i + 1);
        let seq = self.lines.take_seq();
        self.lines.place(
            at,
            Entry {
                seq,
                id: None,
                time,
                kind,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_800_000_000 + secs).unwrap_or_else(Timestamp::now)
    }

    fn chat(nick: &str, text: &str, own: bool) -> EntryKind {
        EntryKind::Chat {
            room: "#r".into(),
            nick: nick.into(),
            text: text.into(),
            own,
            mention: false,
        }
    }

    fn shown(p: &Pane) -> Vec<String> {
        p.lines
            .iter()
            .map(|e| match (&e.kind, e.id) {
                (EntryKind::Chat { text, .. }, Some(id)) => format!("{id}:{text}"),
                (EntryKind::Chat { text, .. }, None) => format!("-:{text}"),
                (EntryKind::System { text, .. }, _) => format!("*{text}"),
                (EntryKind::Whisper { text, .. }, _) => format!("w:{text}"),
            })
            .collect()
    }

    #[test]
    fn messages_keep_id_order_whatever_order_they_come_in() {
        // Story: a replay that arrives after live lines, and older pages, still read in order, once.
        let mut p = Pane::new(0, Target::Room("#r".into()), 100);
        p.lines.push(
            t(0),
            EntryKind::System {
                kind: SystemKind::Join,
                text: "joined".into(),
            },
        );
        p.add_message(105, t(5), chat("bob", "live", false));
        for id in [50, 51, 104] {
            p.add_message(id, t(1), chat("bob", &format!("m{id}"), false));
        }
        assert_eq!(
            p.add_message(51, t(1), chat("bob", "m51", false)),
            Added::Duplicate
        );
        p.add_message(10, t(0), chat("bob", "m10", false));
        p.add_message(20, t(0), chat("bob", "m20", false));
        p.add_message(106, t(6), chat("bob", "m106", false));
        assert_eq!(
            shown(&p),
            [
                "*joined", "10:m10", "20:m20", "50:m50", "51:m51", "104:m104", "105:live",
                "106:m106"
            ]
        );
    }

    #[test]
    fn a_different_message_under_a_known_id_is_shown_never_dropped() {
        // Story: a server that handed ids out again (a kill -9 on an old version) loses nothing on screen.
        let mut p = Pane::new(0, Target::Room("#r".into()), 100);
        for id in [790, 791, 792, 800] {
            p.add_message(id, t(0), chat("bob", &format!("m{id}"), false));
        }
        let added = p.add_message(791, t(9), chat("carol", "after the restart", false));
        assert_eq!(
            added,
            Added::Inserted {
                newer: false,
                seq: Some(4)
            }
        );
        assert_eq!(
            p.add_message(791, t(9), chat("bob", "another", false)),
            Added::Inserted {
                newer: false,
                seq: Some(5)
            },
            "same sender, other words: still new"
        );
        let elsewhere = EntryKind::Chat {
            room: "#other".into(),
            nick: "bob".into(),
            text: "m792".into(),
            own: false,
            mention: false,
        };
        assert!(matches!(
            p.add_message(792, t(9), elsewhere),
            Added::Inserted { .. }
        ));
        assert_eq!(
            shown(&p),
            [
                "790:m790",
                "791:m791",
                "791:after the restart",
                "791:another",
                "792:m792",
                "792:m792",
                "800:m800"
            ]
        );
        // The same message again, live or replayed, in any case of its
        // names, is a duplicate.
        for (id, nick, text) in [(791, "CAROL", "after the restart"), (800, "bob", "m800")] {
            assert_eq!(
                p.add_message(id, t(9), chat(nick, text, false)),
                Added::Duplicate
            );
        }
        let whisper = |from: &str, text: &str| EntryKind::Whisper {
            from: from.into(),
            to: "me".into(),
            text: text.into(),
            own: false,
        };
        let mut w = Pane::new(1, Target::Private("bob".into()), 100);
        w.add_message(5, t(0), whisper("bob", "one"));
        assert_eq!(
            w.add_message(5, t(0), whisper("Bob", "one")),
            Added::Duplicate
        );
        assert!(matches!(
            w.add_message(5, t(1), whisper("bob", "two")),
            Added::Inserted { .. }
        ));
        assert_eq!(shown(&w), ["w:one", "w:two"]);
    }

    #[test]
    fn replayed_own_message_gives_the_echo_its_id() {
        // Story: after a reconnect my own messages do not show twice.
        let mut p = Pane::new(0, Target::Room("#r".into()), 100);
        p.add_message(7, t(0), chat("bob", "hi", false));
        p.lines.push(t(1), chat("alice", "ok", true));
        p.lines.push(t(2), chat("alice", "ok", true));
        p.add_message(9, t(3), chat("bob", "?", false));
        assert_eq!(
            p.add_message(8, t(1), chat("alice", "ok", true)),
            Added::Matched
        );
        assert_eq!(shown(&p), ["7:hi", "8:ok", "-:ok", "9:?"]);
        assert_eq!(
            p.add_message(10, t(4), chat("Alice", "ok", true)),
            Added::Matched
        );
        assert_eq!(shown(&p), ["7:hi", "8:ok", "9:?", "10:ok"]);
        assert_eq!(p.newest_id, 10);
    }

    #[test]
    fn a_full_scrollback_drops_from_the_top() {
        // Story: a long-running client keeps a bounded memory of each conversation.
        let mut p = Pane::new(0, Target::Room("#r".into()), 3);
        for id in 1..=5 {
            p.add_message(id, t(0), chat("bob", &id.to_string(), false));
        }
        assert_eq!(shown(&p), ["3:3", "4:4", "5:5"]);
        assert!(p.lines.is_full());
        let added = p.add_message(2, t(0), chat("bob", "2", false));
        assert_eq!(
            added,
            Added::Inserted {
                newer: false,
                seq: None
            }
        );
        assert_eq!(shown(&p), ["3:3", "4:4", "5:5"]);
        assert_eq!(p.lines.first_seq(), Some(2));
        assert!(p.lines.get(1).is_none());
        assert_eq!(p.lines.get(3).map(|e| e.id), Some(Some(4)));
    }
}
