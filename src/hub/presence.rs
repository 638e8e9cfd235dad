//! Presence in big rooms (protocol 1.1): who entered and left, gathered and
//! told at each flush instead of line by line.
//!
//! A room with at least `HubConfig::big_room` members keeps a [`Presence`].
//! Its members are not sent `JOIN`, `PART` or `QUIT` for one another; the
//! hub task calls [`Hub::flush_presence`] every presence interval, and each
//! big room with news then sends:
//! to every member, `PARTS` with the nicknames of those who left since the
//! last flush, then `JOINS` with those who came (both sorted, split to fit
//! [`LIST_LINE`]).
//!
//! A newcomer (or a member who asks `USERS`) is not kept waiting for the
//! flush: it is sent at once a `USERS` line with its own name and any members
//! on other nodes (whose arrivals are not gathered), then the list the
//! members hold, `told`, as `JOINS` lines (encoded once per flush and
//! shared). From then on it holds what every member holds, its own name
//! besides, and the next flush's deltas bring it to the room like everyone
//! else (they may name it again). So
//! a join in a big room costs the room nothing until the flush, and the
//! newcomer one shared list: a storm of joins neither waits for the interval
//! nor costs a list per newcomer to build.
//!
//! Why the lists stay exact. `told` is the list the members were last given,
//! by connection, not by nickname; a flush tells them the difference
//! between it and the room, per connection: a connection that left and came
//! back within one interval is no news, and one that left while another took
//! its nickname and came is a `PARTS` and a `JOINS` of the same nickname, in
//! that order. What else can change a member's list between flushes:
//! - a `QUIT` from someone it shares a small room with removes that nickname
//!   everywhere; `told` still has it under the connection that left, so the
//!   flush's `PARTS` names it again, which removes nothing, and any `JOINS`
//!   of the nickname (someone else who took it) comes after;
//! - a `NICK`: before announcing one, the hub flushes the big rooms whose
//!   lists could name the old nickname otherwise than the room does (those
//!   the renamer is in or left since the last flush, and those still owing
//!   a `PARTS` of the same nickname for someone gone), so every list the
//!   `NICK` line renames in is exact; then it renames it in `told`. The
//!   `NICK` line itself stays immediate and reaches every member, as in
//!   small rooms.
//!
//! A room drops its `Presence`, and so goes back to immediate lines, at a
//! flush that leaves it below the threshold: everyone holds the exact list
//! then.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::outbox::Outbox;
use super::Hub;
use crate::ids::ClientId;
use crate::names;
use crate::protocol::{encode, Line, ServerLine, Timestamp};

/// The longest line that lists nicknames (`USERS`, `JOINS`, `PARTS`), CRLF
/// included: the protocol's line limit, so that a client may bound its
/// buffer the same way the server does.
pub const LIST_LINE: usize = 1024;

/// What a big room's members have been told, and what not yet.
#[derive(Default)]
pub(super) struct Presence {
    /// Each connection on the list the members hold, and the nickname they
    /// know it by: the client's own (shared, not copied per room) until it
    /// leaves or renames.
    told: HashMap<ClientId, Arc<str>>,
    /// Connections that entered or left since the last flush.
    changed: HashSet<ClientId>,
    /// `told` as `JOINS` lines, built when first asked for after `told`
    /// changed, and shared by every newcomer until it changes again.
    told_lines: Option<Vec<Line>>,
}

impl Presence {
    fn pending(&self) -> bool {
        !self.changed.is_empty()
    }

    /// `told` as it is sent: sorted, in `JOINS` lines.
    fn told_lines(&mut self, room: &str) -> &[Line] {
        let told = &self.told;
        self.told_lines.get_or_insert_with(|| {
            let mut nicks: Vec<&str> = told.values().map(|n| &**n).collect();
            nicks.sort_by_cached_key(|n| names::fold(n));
            list_lines(room, &nicks, "JOINS", "JOINS")
        })
    }
}

/// `first` with as many of `nicks` as fit in [`LIST_LINE`], then `rest`
/// lines with the others. With no nicknames, one `first` line if it is
/// `USERS` (an empty list is news), none otherwise.
pub(super) fn list_lines(room: &str, nicks: &[&str], first: &str, rest: &str) -> Vec<Line> {
    // Keywords are 5 bytes; a room name and a nickname are far shorter than
    // a line, so every line holds at least one nickname.
    let budget = LIST_LINE.saturating_sub(2 + 5 + 1 + room.len());
    let mut lines = Vec::new();
    let mut chunk: Vec<String> = Vec::new();
    let mut used = 0;
    let make = |keyword: &str, room: &str, nicks: Vec<String>| {
        let room = room.to_owned();
        encode(&match keyword {
            "USERS" => ServerLine::Users { room, nicks },
            "PARTS" => ServerLine::Parts { room, nicks },
            _ => ServerLine::Joins { room, nicks },
        })
    };
    for nick in nicks {
        if !chunk.is_empty() && used + 1 + nick.len() > budget {
            let keyword = if lines.is_empty() { first } else { rest };
            lines.push(make(keyword, room, std::mem::take(&mut chunk)));
            used = 0;
        }
        used += 1 + nick.len();
        chunk.push((*nick).to_owned());
    }
    if !chunk.is_empty() || (lines.is_empty() && first == "USERS") {
        let keyword = if lines.is_empty() { first } else { rest };
        lines.push(make(keyword, room, chunk));
    }
    lines
}

impl<O: Outbox> Hub<O> {
    /// True if the room (folded) gathers its presence lines.
    pub(super) fn coalesces(&self, key: &str) -> bool {
        self.rooms.get(key).is_some_and(|r| r.presence.is_some())
    }

    /// True if a room (any case) has presence news its members have not
    /// been told yet: until the next [`Hub::flush_presence`], their lists
    /// may differ from [`Hub::members`].
    pub fn presence_pending(&self, room: &str) -> bool {
        self.rooms
            .get(&names::fold(room))
            .and_then(|r| r.presence.as_ref())
            .is_some_and(Presence::pending)
    }

    /// Client `id` is about to enter the room (folded): if that makes it
    /// big, it starts gathering, with everyone already there on the list.
    pub(super) fn before_entering(&mut self, key: &str) {
        let big = self.config.big_room;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if big == 0 || room.presence.is_some() || room.members.len() + 1 < big {
            return;
        }
        let clients = &self.clients;
        let told = room
            .members
            .keys()
            .filter_map(|id| Some((*id, clients.get(id)?.nick.clone()?)))
            .collect();
        room.presence = Some(Presence {
            told,
            ..Presence::default()
        });
        self.big_rooms.insert(key.to_owned());
    }

    /// Client `id` entered or left a big room (folded): news for the flush.
    pub(super) fn presence_changed(&mut self, id: ClientId, key: &str) {
        if let Some(presence) = self.rooms.get_mut(key).and_then(|r| r.presence.as_mut()) {
            presence.changed.insert(id);
        }
    }

    /// The member list of a room (folded) as client `id`, a member, is sent
    /// it. A small room's is the truth, and so is a big room's when nothing is
    /// waiting for the flush. Otherwise it is a `USERS` line with
    /// `id`'s own name and the members on other nodes, then what the local
    /// members were last told, in `JOINS` lines, so that the next flush's
    /// deltas apply to it as to theirs.
    ///
    /// The part many newcomers share is queued as shared, so that it counts
    /// once as the server's memory: a storm of joins would otherwise count
    /// each newcomer's copy of one list against `--outbox-total-bytes`.
    pub(super) fn send_list(&mut self, id: ClientId, key: &str) {
        let (own, shared) = self.list_parts(id, key);
        for line in &own {
            self.send_encoded(id, line);
        }
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        for line in &shared {
            if let Err(why) = client.outbox.push_shared(line) {
                self.dropped.push((id, why));
                break;
            }
        }
    }

    /// [`Hub::send_list`]'s lines: those made for `id`, and those shared.
    fn list_parts(&mut self, id: ClientId, key: &str) -> (Vec<Line>, Vec<Line>) {
        let own = self
            .clients
            .get(&id)
            .and_then(|c| c.nick.as_deref())
            .unwrap_or("");
        let Some(room) = self.rooms.get_mut(key) else {
            return (Vec::new(), Vec::new());
        };
        let Some(presence) = room.presence.as_mut().filter(|p| p.pending()) else {
            return (self.member_lines(key), Vec::new());
        };
        let mut first: Vec<&str> = room.remote.values().map(String::as_str).collect();
        first.push(own);
        first.sort_by_cached_key(|n| names::fold(n));
        let lines = list_lines(&room.name, &first, "USERS", "JOINS");
        (lines, presence.told_lines(&room.name).to_vec())
    }

    /// Before client `id` is renamed from `old`: flushes every big room
    /// with news where a member's list may name `old` differently from the
    /// room: one `id` is in or left since the last flush, or one where a
    /// connection that held `old` before `id` is still listed (it left, and
    /// is in `changed`; a listed member that renamed was flushed then). The
    /// `NICK` line then applies to exact lists.
    pub(super) fn flush_before_rename(&mut self, id: ClientId, old: &str) {
        let old = names::fold(old);
        let keys: Vec<String> = self
            .big_rooms
            .iter()
            .filter(|key| {
                let Some(room) = self.rooms.get(*key) else {
                    return false;
                };
                room.presence.as_ref().is_some_and(|p| {
                    p.pending()
                        && (p.told.contains_key(&id)
                            || room.members.contains_key(&id)
                            || p.changed
                                .iter()
                                .any(|w| p.told.get(w).is_some_and(|n| names::fold(n) == old)))
                })
            })
            .cloned()
            .collect();
        for key in keys {
            self.flush_room(&key);
        }
    }

    /// After client `id` was renamed and the `NICK` line sent: the big
    /// rooms' members know it by its new name.
    pub(super) fn renamed_in_presence(&mut self, id: ClientId, new: &str) {
        // The client's own nickname, renamed by now, shared again.
        let new: Arc<str> = match self.clients.get(&id).and_then(|c| c.nick.clone()) {
            Some(nick) if &*nick == new => nick,
            _ => Arc::from(new),
        };
        for key in &self.big_rooms {
            let told = self
                .rooms
                .get_mut(key)
                .and_then(|r| r.presence.as_mut())
                .and_then(|p| p.told.get_mut(&id));
            if let Some(nick) = told {
                nick.clone_from(&new);
                if let Some(p) = self.rooms.get_mut(key).and_then(|r| r.presence.as_mut()) {
                    p.told_lines = None;
                }
            }
        }
    }

    /// Tells every big room's members what changed since the last flush.
    /// The server calls it every presence interval (`--presence-interval`).
    pub fn flush_presence(&mut self, now: Timestamp) {
        let rooms = &self.rooms;
        let keys: Vec<String> = self
            .big_rooms
            .iter()
            .filter(|key| {
                rooms
                    .get(*key)
                    .and_then(|r| r.presence.as_ref())
                    .is_some_and(Presence::pending)
            })
            .cloned()
            .collect();
        for key in keys {
            self.flush_room(&key);
        }
        self.settle(now);
    }

    /// One room's flush (see the module's comment). Clients whose outbox
    /// refuses a line are left in `dropped`, for the caller to settle.
    fn flush_room(&mut self, key: &str) {
        let big = self.config.big_room;
        let clients = &self.clients;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(presence) = room.presence.as_mut() else {
            return;
        };
        let mut parts = Vec::new();
        let mut joins = Vec::new();
        for id in presence.changed.drain() {
            let now = room
                .members
                .contains_key(&id)
                .then(|| clients.get(&id).and_then(|c| c.nick.clone()))
                .flatten();
            match (presence.told.remove(&id), now) {
                (Some(was), Some(now)) if was == now => {
                    presence.told.insert(id, now);
                }
                (was, now) => {
                    parts.extend(was);
                    if let Some(now) = now {
                        joins.push(now.clone());
                        presence.told.insert(id, now);
                    }
                }
            }
        }
        parts.sort_by_cached_key(|n| names::fold(n));
        joins.sort_by_cached_key(|n| names::fold(n));
        let parts: Vec<&str> = parts.iter().map(|n| &**n).collect();
        let joins: Vec<&str> = joins.iter().map(|n| &**n).collect();
        let mut deltas = list_lines(&room.name, &parts, "PARTS", "PARTS");
        deltas.extend(list_lines(&room.name, &joins, "JOINS", "JOINS"));
        if !deltas.is_empty() {
            presence.told_lines = None;
            // Shared, like the list newcomers get: one copy of each line
            // is held whoever holds it, so it counts once as the server's
            // memory. Counted per member, 10,000 arrivals in one interval
            // (a list of 10,000 names for each of 10,000 members) would
            // pass the server-wide bound and cut off members reading as
            // fast as they can.
            for (&member, outbox) in &mut room.members {
                for line in &deltas {
                    if let Err(why) = outbox.push_shared(line) {
                        self.dropped.push((member, why));
                        break;
                    }
                }
            }
        }
        if big == 0 || room.members.len() < big {
            room.presence = None;
            self.big_rooms.remove(key);
        }
    }
}
