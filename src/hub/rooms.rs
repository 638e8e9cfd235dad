//! Rooms: joining, leaving, listing and topics.

use std::collections::HashMap;

use super::outbox::Outbox;
use super::{Hub, Room, Topic};
use crate::ids::ClientId;
use crate::names;
use crate::protocol::{encode, ErrorCode, ServerLine, Timestamp, LOBBY};
use crate::store::{Fetch, Range, Scope};

/// The most rooms one `ROOMS` answer lists.
const ROOMS_LISTED: usize = 100;

impl<O: Outbox> Hub<O> {
    pub(super) fn join(&mut self, id: ClientId, room: &str, now: Timestamp) {
        // The parser only makes valid names, but the hub owns the rooms: a
        // name with a space or a line break would corrupt every line naming
        // the room (found by the hub fuzzer with `Command::Join("")`).
        if !names::is_room(room) {
            return self.error(
                id,
                ErrorCode::NoSuchRoom,
                format!("{room} is not a room name (rooms look like #lobby)."),
            );
        }
        let key = names::fold(room);
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(at) = client.rooms.iter().position(|r| *r == key) {
            // Already there: JOIN switches the current room.
            let key = client.rooms.remove(at);
            let name = self.rooms.get(&key).map(|r| r.name.clone());
            client.rooms.push(key);
            if let Some(name) = name {
                self.send(
                    id,
                    &ServerLine::Info(format!("Messages without a room now go to {name}.")),
                );
            }
            return;
        }
        if client.rooms.len() >= self.config.max_rooms {
            let max = self.config.max_rooms;
            return self.error(
                id,
                ErrorCode::TooManyRooms,
                format!("You are in {max} rooms, the most one can be in; PART one first."),
            );
        }
        self.enter(id, &key, room, now);
        let name = self
            .rooms
            .get(&key)
            .map_or(room, |r| r.name.as_str())
            .to_owned();
        self.send(
            id,
            &ServerLine::Info(format!("Messages without a room now go to {name}.")),
        );
    }

    /// Puts client `id` in the room (creating it), announces it, and sends the
    /// newcomer the topic, the members and the room's recent history.
    pub(super) fn enter(&mut self, id: ClientId, key: &str, name: &str, now: Timestamp) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        // Most clients are in one room: room for exactly that many (a
        // growing vector would make room for four).
        client.rooms.reserve_exact(1);
        client.rooms.push(key.to_owned());
        let outbox = client.outbox.clone();
        let nick = client.nick.as_deref().unwrap_or_default().to_owned();
        self.rooms.entry(key.to_owned()).or_insert_with(|| Room {
            name: name.to_owned(),
            members: HashMap::new(),
            remote: std::collections::BTreeMap::new(),
            topic: None,
            presence: None,
        });
        self.before_entering(key);
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.members.insert(id, outbox);
        let big = room.presence.is_some();
        let name = room.name.clone();
        if self.config.cluster {
            self.published.push(super::cluster::Publish::Join {
                room: key.to_owned(),
                name: name.clone(),
                nick: nick.clone(),
            });
        }
        let topic = room.topic.as_ref().map(|t| ServerLine::Topic {
            time: t.time,
            room: name.clone(),
            nick: t.nick.clone(),
            text: t.text.clone(),
        });
        let join = encode(&ServerLine::Join {
            time: now,
            room: name.clone(),
            nick,
        });
        if big {
            // The others hear of it at the flush.
            self.send_encoded(id, &join);
            self.presence_changed(id, key);
        } else {
            self.broadcast_room(key, &join, None);
        }
        if let Some(topic) = topic {
            self.send(id, &topic);
        }
        self.send_list(id, key);
        let fetch = Fetch {
            client: id,
            scope: Scope::Room(key.to_owned()),
            // Only what was said before this join: anything later
            // reaches the newcomer live.
            range: Range::Before(self.ids.last().saturating_add(1)),
            count: self.config.replay,
            target: name,
        };
        if self.config.replay > 0 {
            if self.config.cluster {
                // The room's history is the cluster's; none while it is away.
                if self.cluster_up {
                    self.published.push(super::cluster::Publish::History(fetch));
                }
            } else if self.config.history {
                self.fetches.push(fetch);
            }
        }
    }

    pub(super) fn part(&mut self, id: ClientId, key: &str, reason: &str, now: Timestamp) {
        let Some(name) = self.rooms.get(key).map(|r| r.name.clone()) else {
            return;
        };
        let line = encode(&ServerLine::Part {
            time: now,
            room: name,
            nick: self.nick_of(id).to_owned(),
            reason: reason.to_owned(),
        });
        if self.coalesces(key) {
            self.send_encoded(id, &line);
        } else {
            self.broadcast_room(key, &line, None);
        }
        if self.config.cluster {
            self.published.push(super::cluster::Publish::Part {
                room: key.to_owned(),
                nick: self.nick_of(id).to_owned(),
                reason: reason.to_owned(),
            });
        }
        self.leave_room(id, key);
        let current = self
            .clients
            .get(&id)
            .and_then(|c| c.rooms.last())
            .and_then(|k| self.rooms.get(k))
            .map(|r| r.name.clone());
        let text = match current {
            Some(name) => format!("Messages without a room now go to {name}."),
            None => "You are in no room now; JOIN #lobby (or any #room) to chat.".to_owned(),
        };
        self.send(id, &ServerLine::Info(text));
    }

    /// Takes client `id` out of a room, and drops the room if it is empty
    /// (but never the lobby).
    pub(super) fn leave_room(&mut self, id: ClientId, key: &str) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.rooms.retain(|r| r != key);
        }
        self.presence_changed(id, key);
        if let Some(room) = self.rooms.get_mut(key) {
            room.members.remove(&id);
            if room.members.is_empty() && room.remote.is_empty() && key != names::fold(LOBBY) {
                self.rooms.remove(key);
                self.big_rooms.remove(key);
            }
        }
    }

    pub(super) fn list_rooms(&mut self, id: ClientId) {
        let mut rooms: Vec<&Room<O>> = self.rooms.values().collect();
        rooms.sort_by(|a, b| {
            (b.members.len() + b.remote.len())
                .cmp(&(a.members.len() + a.remote.len()))
                .then_with(|| names::fold(&a.name).cmp(&names::fold(&b.name)))
        });
        let total = rooms.len();
        let lines: Vec<ServerLine> = rooms
            .iter()
            .take(ROOMS_LISTED)
            .map(|room| ServerLine::Room {
                room: room.name.clone(),
                members: u32::try_from(room.members.len() + room.remote.len()).unwrap_or(u32::MAX),
                topic: room
                    .topic
                    .as_ref()
                    .map_or_else(String::new, |t| t.text.clone()),
            })
            .collect();
        let shown = u32::try_from(lines.len()).unwrap_or(u32::MAX);
        for line in &lines {
            self.send(id, line);
        }
        self.send(id, &ServerLine::Rooms(shown));
        if total > ROOMS_LISTED {
            let more = total - ROOMS_LISTED;
            self.send(
                id,
                &ServerLine::Info(format!("...and {more} smaller rooms not listed.")),
            );
        }
    }

    pub(super) fn topic(&mut self, id: ClientId, key: &str, text: String, now: Timestamp) {
        let nick = self.nick_of(id).to_owned();
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if text.is_empty() {
            let line = match &room.topic {
                Some(t) => ServerLine::Topic {
                    time: t.time,
                    room: room.name.clone(),
                    nick: t.nick.clone(),
                    text: t.text.clone(),
                },
                None => ServerLine::Info(format!(
                    "{} has no topic; TOPIC {} <text> sets one.",
                    room.name, room.name
                )),
            };
            return self.send(id, &line);
        }
        if let Some(why) = self.muted(id, now) {
            return self.error(id, ErrorCode::Muted, why);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let line = encode(&ServerLine::Topic {
            time: now,
            room: room.name.clone(),
            nick: nick.clone(),
            text: text.clone(),
        });
        room.topic = Some(Topic {
            time: now,
            nick,
            text,
        });
        self.broadcast_room(key, &line, None);
    }
}
