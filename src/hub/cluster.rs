//! The hub's side of the cluster: what it asks the other nodes to know
//! ([`Publish`]) and what it is told happened on them ([`Remote`]).
//!
//! The hub stays the one owner of this node's state and stays pure: in
//! cluster mode (`HubConfig::cluster`) it queues `Publish` values, taken by
//! [`Hub::take_published`] and handed by the server to the bus task that
//! talks to Redis, and it applies `Remote` values the bus sends back through
//! the hub's inbox. Without cluster mode nothing is ever queued and no
//! `Remote` comes, so a single node behaves exactly as before.
//!
//! Three things change in cluster mode:
//! - A nickname is claimed across the cluster before it is taken: the
//!   client waits (like a password check), and [`Remote::Claimed`] says
//!   whether it won.
//! - Room messages and whispers are numbered by the cluster (one sequence,
//!   agreed by every node) and delivered when they come back from it, to
//!   local and remote members alike, so every member sees one order.
//! - Remote members are mirrored per room, so `USERS`, `ROOMS`, `WHISPER`
//!   and nickname checks see everyone; their joins, parts, quits and
//!   renames are announced to the local members who share a room.
//!
//! Everything a `Remote` carries came over the network: it is checked
//! (nicknames, room names, text) and dropped if it does not fit, never
//! trusted to hold the hub's invariants for it.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::outbox::Outbox;
use super::Hub;
use crate::ids::ClientId;
use crate::names;
use crate::protocol::{encode, ErrorCode, ServerLine, Timestamp, LOBBY};
use crate::store::{Fetch, Place, Record};

/// The longest chat text accepted from another node, in bytes: more than a
/// line can hold, so anything longer is not from a natter node.
const REMOTE_TEXT_MAX: usize = 8192;

/// The most members a snapshot of the cluster may list; past it the rest
/// is ignored (and the bus logs it).
pub const SNAPSHOT_MAX: usize = 1_000_000;

/// What the hub asks the cluster to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Claim `nick` for `client` across the cluster; answered by
    /// [`Remote::Claimed`] (or [`Remote::Refused`]).
    Claim {
        /// The client that wants it.
        client: ClientId,
        /// The nickname as it was asked for.
        nick: String,
    },
    /// A claimed nickname is free again (its claimant left before the
    /// answer came, or the claim came too late).
    Release {
        /// The nickname.
        nick: String,
    },
    /// A local user joined a room.
    Join {
        /// The room's folded name.
        room: String,
        /// The room's name as shown.
        name: String,
        /// Who.
        nick: String,
    },
    /// A local user left a room.
    Part {
        /// The room's folded name.
        room: String,
        /// Who.
        nick: String,
        /// Why, in words.
        reason: String,
    },
    /// A local user left the chat: its memberships and nickname go.
    Quit {
        /// Who.
        nick: String,
        /// The folded names of the rooms it was in.
        rooms: Vec<String>,
        /// Why, in words.
        reason: String,
    },
    /// A local user changed nickname (claimed already).
    Rename {
        /// The old nickname.
        old: String,
        /// The new one.
        new: String,
        /// The folded names of its rooms.
        rooms: Vec<String>,
        /// The old nickname to release, unless only its capitals changed.
        release: Option<String>,
    },
    /// A room message to number and deliver everywhere.
    Msg {
        /// The sender, told if it cannot be sent.
        client: ClientId,
        /// The room's name as shown.
        room: String,
        /// The sender's nickname.
        nick: String,
        /// What was said.
        text: String,
    },
    /// Room history to answer from the room's stream in the cluster (the
    /// answer goes straight to the asking client, like the store's).
    History(Fetch),
    /// After an outage: everything this node holds, to replace what the
    /// cluster knows of it (joins and parts made meanwhile were refused),
    /// publishing only what changed.
    Resync {
        /// The nicknames held here, as shown.
        nicks: Vec<String>,
        /// Who is in which room here.
        members: Vec<Membership>,
    },
    /// An operator's action here, for every other node to apply too.
    Moderate(Moderation),
    /// Someone here logged in to the registered nickname `nick`, which a
    /// user on `node` holds: that node ends its session (the same account)
    /// or makes it a guest.
    Evict {
        /// The node holding it.
        node: String,
        /// The nickname.
        nick: String,
    },
    /// A whisper to number and deliver to the recipient's node.
    Whisper {
        /// The sender, told if it cannot be sent.
        client: ClientId,
        /// The recipient's node; `None` for this one.
        node: Option<String>,
        /// The sender's nickname.
        from: String,
        /// The recipient's nickname.
        to: String,
        /// What was said.
        text: String,
    },
}

/// What an operator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sanction {
    /// The user holding `nick` is disconnected by the node it is on.
    Kick {
        /// Who.
        nick: String,
    },
    /// `nick` may not talk until `until` (Unix seconds), on every node.
    Mute {
        /// Who, folded.
        nick: String,
        /// Until when.
        until: i64,
    },
    /// A mute on `nick` is lifted.
    Unmute {
        /// Who, folded.
        nick: String,
    },
    /// A ban on a nickname or an address range (as `BanTarget` writes and
    /// parses it), until `until`; each node closes who it matches there.
    Ban {
        /// What is banned.
        target: String,
        /// Until when.
        until: i64,
    },
    /// A ban is lifted.
    Unban {
        /// What was banned.
        target: String,
    },
}

/// An operator's action, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    /// The operator's nickname.
    pub by: String,
    /// What was done.
    pub sanction: Sanction,
    /// Why, in words (may be empty).
    pub reason: String,
    /// The folded names of the rooms the `MOD` line goes to: the target's
    /// and the operator's current room.
    pub rooms: Vec<String>,
}

/// The most rooms a remote `MOD` line is announced in.
pub(super) const MOD_ROOMS_MAX: usize = 64;

/// A local user's place in a room, as [`Publish::Resync`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The room's folded name.
    pub room: String,
    /// The room's name as shown.
    pub name: String,
    /// Who.
    pub nick: String,
}

/// A member of a room on another node, as a snapshot lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node it is on.
    pub node: String,
    /// The room's name as shown.
    pub room: String,
    /// Its nickname.
    pub nick: String,
}

/// What the bus tells the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// The cluster is reachable (again).
    Up,
    /// The cluster cannot be reached; the bus keeps trying.
    Down,
    /// Who is where on the other nodes, now: replaces what the hub knew.
    Members(Vec<Member>),
    /// The answer to [`Publish::Claim`].
    Claimed {
        /// The client that asked.
        client: ClientId,
        /// The nickname it asked for.
        nick: String,
        /// True if it is now this node's.
        won: bool,
        /// The cluster's last message id when it was claimed: a guest's
        /// private history under it starts above, whichever node numbered
        /// the whispers its last holder had.
        last: u64,
    },
    /// The bus could not do what was asked (the cluster is unreachable).
    Refused(Publish),
    /// A room message, numbered by the cluster; `mine` if it was sent from
    /// this node (its sender is not sent it back).
    Msg {
        /// Its id.
        id: u64,
        /// The room's name.
        room: String,
        /// The sender.
        nick: String,
        /// What was said.
        text: String,
        /// Sent from this node.
        mine: bool,
    },
    /// A whisper for a user on this node, numbered by the cluster.
    Whisper {
        /// Its id.
        id: u64,
        /// The sender.
        from: String,
        /// The recipient.
        to: String,
        /// What was said.
        text: String,
    },
    /// A user on another node joined a room.
    Join {
        /// Its node.
        node: String,
        /// The room's name.
        room: String,
        /// Who.
        nick: String,
    },
    /// A user on another node left a room.
    Part {
        /// Its node.
        node: String,
        /// The room's name.
        room: String,
        /// Who.
        nick: String,
        /// Why.
        reason: String,
    },
    /// A user on another node left the chat.
    Quit {
        /// Its node.
        node: String,
        /// Who.
        nick: String,
        /// Why.
        reason: String,
    },
    /// A user on another node changed nickname.
    Rename {
        /// Its node.
        node: String,
        /// The old nickname.
        old: String,
        /// The new one.
        new: String,
    },
    /// Someone on `node` logged in to the registered nickname `nick`: its
    /// holder here gives it up.
    Evict {
        /// The node asking.
        node: String,
        /// The nickname.
        nick: String,
    },
    /// An operator on another node acted.
    Moderate {
        /// Its node.
        node: String,
        /// What it did.
        moderation: Moderation,
    },
    /// Another node stopped (its heartbeat ran out): its users are gone.
    NodeDown {
        /// The node.
        node: String,
    },
}

/// A user on another node, as this hub mirrors it.
#[derive(Debug, Clone)]
pub(super) struct RemoteUser {
    /// The node it is on.
    pub(super) node: String,
    /// Its nickname as shown.
    pub(super) nick: String,
    /// The folded names of the rooms it is in.
    pub(super) rooms: Vec<String>,
}

/// True if `text` could have come from a natter node's client: no line
/// breaks or other control characters, and not longer than any line.
fn clean_text(text: &str) -> bool {
    text.len() <= REMOTE_TEXT_MAX && !text.chars().any(char::is_control)
}

/// True if `reason` may go into a `PART`, `QUIT` or `MOD` line.
pub(super) fn clean_reason(reason: &str) -> bool {
    clean_text(reason)
}

/// A departure's reason made fit for a line: control characters dropped,
/// cut to [`REMOTE_TEXT_MAX`] bytes. A departure is applied whatever its
/// reason says, since dropping it would leave a member no one can see leave.
fn tidy_reason(reason: &str) -> String {
    let mut tidy = String::new();
    for c in reason.chars().filter(|c| !c.is_control()) {
        if tidy.len() + c.len_utf8() > REMOTE_TEXT_MAX {
            break;
        }
        tidy.push(c);
    }
    tidy
}

impl<O: Outbox> Hub<O> {
    /// What the cluster should know or do, queued since the last call.
    pub fn take_published(&mut self) -> Vec<Publish> {
        std::mem::take(&mut self.published)
    }

    /// True while this node can reach the cluster (always, for one node).
    pub fn cluster_up(&self) -> bool {
        self.cluster_up
    }

    /// Applies what the bus says happened.
    pub fn cluster(&mut self, remote: Remote, now: Timestamp) {
        match remote {
            Remote::Up => {
                if !self.cluster_up {
                    self.cluster_up = true;
                    self.tell_everyone("This server is in touch with the other nodes again.");
                    self.republish_members();
                }
            }
            Remote::Down => {
                if self.cluster_up {
                    self.cluster_up = false;
                    self.tell_everyone(
                        "This server has lost touch with the other nodes; messages, whispers \
                         and new nicknames are refused until it is back.",
                    );
                }
            }
            Remote::Members(members) => self.remote_snapshot(members, now),
            Remote::Claimed {
                client,
                nick,
                won,
                last,
            } => self.claimed(client, &nick, won, last, now),
            Remote::Refused(publish) => self.cluster_refused(publish, now),
            Remote::Msg {
                id,
                room,
                nick,
                text,
                mine,
            } => self.remote_msg(id, &room, nick, text, mine, now),
            Remote::Whisper { id, from, to, text } => self.remote_whisper(id, from, &to, text, now),
            Remote::Join { node, room, nick } => self.remote_join(&node, &room, &nick, now),
            Remote::Part {
                node,
                room,
                nick,
                reason,
            } => self.remote_part(&node, &room, &nick, &tidy_reason(&reason), now),
            Remote::Quit { node, nick, reason } => {
                self.remote_quit(&node, &nick, &tidy_reason(&reason), now)
            }
            Remote::Rename { node, old, new } => self.remote_rename(&node, &old, &new, now),
            Remote::Evict { node, nick } => self.remote_evict(&node, &nick, now),
            Remote::Moderate { node, moderation } => {
                self.remote_moderation(&node, moderation, now);
            }
            Remote::NodeDown { node } => {
                let gone: Vec<String> = self
                    .remote
                    .iter()
                    .filter(|(_, u)| u.node == node)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in gone {
                    self.remote_quit(&node, &key, "lost with its server", now);
                }
            }
        }
        self.settle(now);
    }

    /// The bus could not take or do `publish`: whoever asked is told.
    pub fn cluster_refused(&mut self, publish: Publish, now: Timestamp) {
        match publish {
            Publish::Claim { client, nick } => {
                if self.claiming.get(&client) == Some(&nick) {
                    self.claiming.remove(&client);
                }
                self.unavailable(client);
            }
            Publish::Msg { client, .. } | Publish::Whisper { client, .. } => {
                self.unavailable(client);
            }
            Publish::History(fetch) => self.unavailable(fetch.client),
            Publish::Resync { .. }
            | Publish::Moderate(_)
            | Publish::Evict { .. }
            | Publish::Release { .. }
            | Publish::Join { .. }
            | Publish::Part { .. }
            | Publish::Quit { .. }
            | Publish::Rename { .. } => {
                tracing::warn!("the cluster did not take a presence change: {publish:?}");
            }
        }
        self.settle(now);
    }

    /// After an outage, tells the cluster again who is here and where, in
    /// one [`Publish::Resync`]: Redis may have restarted empty, the others
    /// may have taken this node for dead, and parts and quits made during
    /// the outage were refused. The bus replaces this node's entries and
    /// publishes only the differences.
    fn republish_members(&mut self) {
        let mut nicks = Vec::new();
        let mut members = Vec::new();
        for client in self.clients.values() {
            let Some(nick) = client.nick.as_deref().map(str::to_owned) else {
                continue;
            };
            nicks.push(nick.clone());
            for key in &client.rooms {
                let name = self
                    .rooms
                    .get(key)
                    .map_or(key.as_str(), |r| r.name.as_str());
                members.push(Membership {
                    room: key.clone(),
                    name: name.to_owned(),
                    nick: nick.clone(),
                });
            }
        }
        self.published.push(Publish::Resync { nicks, members });
    }

    /// Hands a room's history fetch to the cluster (whose stream holds the
    /// room's messages from every node) instead of the local store.
    pub(super) fn fetch_from_cluster(&mut self, fetch: Fetch) {
        if !self.cluster_up {
            return self.unavailable(fetch.client);
        }
        self.published.push(Publish::History(fetch));
    }

    pub(super) fn unavailable(&mut self, id: ClientId) {
        self.error(
            id,
            ErrorCode::ClusterUnavailable,
            "This server cannot reach the other nodes right now; try again in a moment.".into(),
        );
    }

    fn tell_everyone(&mut self, text: &str) {
        let line = encode(&ServerLine::Info(text.to_owned()));
        let ids: Vec<ClientId> = self.nicks.values().copied().collect();
        for id in ids {
            self.send_encoded(id, &line);
        }
    }

    /// Starts claiming `wanted` for client `id` across the cluster; the
    /// answer comes as [`Remote::Claimed`].
    pub(super) fn claim(&mut self, id: ClientId, wanted: &str) {
        if !self.cluster_up {
            return self.unavailable(id);
        }
        if self.claiming.contains_key(&id) {
            return self.error(
                id,
                ErrorCode::Busy,
                "Still asking the other nodes about your last nickname; wait for the answer."
                    .into(),
            );
        }
        self.claiming.insert(id, wanted.to_owned());
        self.published.push(Publish::Claim {
            client: id,
            nick: wanted.to_owned(),
        });
    }

    fn claimed(&mut self, client: ClientId, nick: &str, won: bool, last: u64, now: Timestamp) {
        let asked = self.claiming.get(&client).is_some_and(|n| n == nick);
        if asked {
            self.claiming.remove(&client);
        }
        let key = names::fold(nick);
        // Someone here may have taken it meanwhile (a release and a claim
        // crossing), or a remote user shows it: then the claim is given back.
        let free_here =
            self.nicks.get(&key).is_none_or(|&h| h == client) && !self.remote.contains_key(&key);
        if won
            && (!asked || !free_here || !self.clients.contains_key(&client))
            && !self.nicks.contains_key(&key)
        {
            self.published.push(Publish::Release {
                nick: nick.to_owned(),
            });
        }
        if !asked || !self.clients.contains_key(&client) {
            return;
        }
        if won && free_here {
            self.ids.raise(last);
            return self.take_nick(client, nick, now);
        }
        // A login to an account whose nickname a user on another node
        // holds: that node is asked to give it up, and the claim is made
        // again once it has (see `resume_takeover`).
        let logged_in = self
            .clients
            .get(&client)
            .is_some_and(|c| c.account.as_deref() == Some(key.as_str()));
        if logged_in {
            if let Some(node) = self.remote.get(&key).map(|u| u.node.clone()) {
                self.takeovers.insert(key.clone(), client);
                self.published.push(Publish::Evict {
                    node,
                    nick: nick.to_owned(),
                });
                return;
            }
        }
        let taken = |n: &str| {
            let k = names::fold(n);
            self.nicks.contains_key(&k)
                || self.remote.contains_key(&k)
                || self.registered.contains_key(&k)
                || k == key
        };
        let suggestion = names::suggest_nick(nick, taken);
        self.error(
            client,
            ErrorCode::NickTaken,
            format!("Someone already uses the nickname {nick}; try {suggestion}"),
        );
    }

    /// The rooms and nickname a room message from another node names,
    /// checked: the room's folded name and the room, if it is known here.
    fn remote_msg(
        &mut self,
        id: u64,
        room: &str,
        nick: String,
        text: String,
        mine: bool,
        now: Timestamp,
    ) {
        if !names::is_room(room) || names::check_nick(&nick).is_err() || !clean_text(&text) {
            return;
        }
        let key = names::fold(room);
        self.ids.raise(id);
        let Some(name) = self.rooms.get(&key).map(|r| r.name.clone()) else {
            return;
        };
        let sender = if mine {
            self.nicks.get(&names::fold(&nick)).copied()
        } else {
            None
        };
        let msg = ServerLine::Msg {
            time: now,
            id,
            room: name,
            nick,
            text,
        };
        self.broadcast_room(&key, &encode(&msg), sender);
        if let (
            true,
            ServerLine::Msg {
                room, nick, text, ..
            },
        ) = (self.config.history, msg)
        {
            self.records.push(Record {
                id,
                time: now.unix(),
                place: Place::Room(room),
                nick,
                text,
            });
        }
    }

    /// A whisper for a user here. Its history is the cluster's (the script
    /// that numbered it kept it in the conversation's stream in Redis); this
    /// node's store keeps a copy, as of room messages.
    fn remote_whisper(&mut self, id: u64, from: String, to: &str, text: String, now: Timestamp) {
        if names::check_nick(&from).is_err() || !clean_text(&text) {
            return;
        }
        self.ids.raise(id);
        let Some(&target) = self.nicks.get(&names::fold(to)) else {
            return;
        };
        let to = self.nick_of(target).to_owned();
        let whisper = ServerLine::Whisper {
            time: now,
            id,
            from,
            to,
            text,
        };
        self.send(target, &whisper);
        if let (true, ServerLine::Whisper { from, to, text, .. }) = (self.config.history, whisper) {
            self.records.push(Record {
                id,
                time: now.unix(),
                place: Place::Private(to),
                nick: from,
                text,
            });
        }
    }

    fn remote_join(&mut self, node: &str, room: &str, nick: &str, now: Timestamp) {
        if node.is_empty() || !names::is_room(room) || names::check_nick(nick).is_err() {
            return;
        }
        let folded = names::fold(nick);
        if self.nicks.contains_key(&folded) {
            tracing::warn!(%nick, %node, "a remote user has a nickname held here; ignored");
            return;
        }
        let key = names::fold(room);
        let user = self
            .remote
            .entry(folded.clone())
            .or_insert_with(|| RemoteUser {
                node: node.to_owned(),
                nick: nick.to_owned(),
                rooms: Vec::new(),
            });
        if user.node != node || user.rooms.contains(&key) {
            return;
        }
        if user.rooms.len() >= self.config.max_rooms.max(1).saturating_mul(4) {
            return;
        }
        user.rooms.push(key.clone());
        let shown = user.nick.clone();
        let entry = self
            .rooms
            .entry(key.clone())
            .or_insert_with(|| super::Room {
                name: room.to_owned(),
                members: HashMap::new(),
                remote: BTreeMap::new(),
                presence: None,
                topic: None,
            });
        entry.remote.insert(folded, shown.clone());
        let line = encode(&ServerLine::Join {
            time: now,
            room: entry.name.clone(),
            nick: shown,
        });
        self.broadcast_room(&key, &line, None);
    }

    fn remote_part(&mut self, node: &str, room: &str, nick: &str, reason: &str, now: Timestamp) {
        let folded = names::fold(nick);
        let key = names::fold(room);
        let Some(user) = self.remote.get_mut(&folded) else {
            return;
        };
        if user.node != node || !user.rooms.contains(&key) {
            return;
        }
        user.rooms.retain(|r| *r != key);
        let shown = user.nick.clone();
        let Some(name) = self.rooms.get(&key).map(|r| r.name.clone()) else {
            return;
        };
        let line = encode(&ServerLine::Part {
            time: now,
            room: name,
            nick: shown,
            reason: reason.to_owned(),
        });
        self.broadcast_room(&key, &line, None);
        self.drop_remote_member(&key, &folded);
    }

    fn remote_quit(&mut self, node: &str, nick: &str, reason: &str, now: Timestamp) {
        let folded = names::fold(nick);
        if self.remote.get(&folded).is_none_or(|u| u.node != node) {
            return;
        }
        let Some(user) = self.remote.remove(&folded) else {
            return;
        };
        let line = encode(&ServerLine::Quit {
            time: now,
            nick: user.nick.clone(),
            reason: reason.to_owned(),
        });
        let mut seen = HashSet::new();
        for key in &user.rooms {
            let Some(room) = self.rooms.get_mut(key) else {
                continue;
            };
            for (&member, outbox) in &mut room.members {
                if !seen.insert(member) {
                    continue;
                }
                if let Err(why) = outbox.push(&line) {
                    self.dropped.push((member, why));
                }
            }
        }
        for key in &user.rooms {
            self.drop_remote_member(key, &folded);
        }
        self.resume_takeover(&folded);
    }

    /// A nickname held on another node is free there: a client here that
    /// logged in to it claims it now.
    fn resume_takeover(&mut self, folded: &str) {
        let Some(client) = self.takeovers.remove(folded) else {
            return;
        };
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        if c.account.as_deref() != Some(folded) {
            return;
        }
        let Some(nick) = self.registered.get(folded).map(|a| a.nick.clone()) else {
            return;
        };
        self.claim(client, &nick);
    }

    /// A node asks this one to give up the registered nickname `nick`,
    /// which someone there logged in to: its holder here is logged out if
    /// it is the same account (as a second login on one node does), or
    /// made a guest.
    fn remote_evict(&mut self, node: &str, nick: &str, now: Timestamp) {
        if node.is_empty() || names::check_nick(nick).is_err() {
            return;
        }
        let key = names::fold(nick);
        if !self.registered.contains_key(&key) {
            return;
        }
        let Some(&holder) = self.nicks.get(&key) else {
            return;
        };
        let same_owner = self
            .clients
            .get(&holder)
            .is_some_and(|c| c.account.as_ref() == Some(&key));
        if same_owner {
            self.send(
                holder,
                &ServerLine::Bye("You logged in from another connection.".into()),
            );
            self.remove(holder, "logged in from another connection", now);
        } else {
            self.make_guest(holder, now);
        }
    }

    fn remote_rename(&mut self, node: &str, old: &str, new: &str, now: Timestamp) {
        if names::check_nick(new).is_err() {
            return;
        }
        let old_key = names::fold(old);
        let new_key = names::fold(new);
        if self.remote.get(&old_key).is_none_or(|u| u.node != node) {
            return;
        }
        if old_key != new_key
            && (self.nicks.contains_key(&new_key) || self.remote.contains_key(&new_key))
        {
            tracing::warn!(%new, %node, "a remote rename to a nickname in use; ignored");
            return;
        }
        let Some(mut user) = self.remote.remove(&old_key) else {
            return;
        };
        let line = encode(&ServerLine::Nick {
            time: now,
            old: user.nick.clone(),
            new: new.to_owned(),
        });
        user.nick = new.to_owned();
        let resumed = old_key.clone();
        let mut seen = HashSet::new();
        for key in &user.rooms {
            let Some(room) = self.rooms.get_mut(key) else {
                continue;
            };
            room.remote.remove(&old_key);
            room.remote.insert(new_key.clone(), new.to_owned());
            for (&member, outbox) in &mut room.members {
                if !seen.insert(member) {
                    continue;
                }
                if let Err(why) = outbox.push(&line) {
                    self.dropped.push((member, why));
                }
            }
        }
        self.remote.insert(new_key, user);
        if resumed != names::fold(new) {
            self.resume_takeover(&resumed);
        }
    }

    /// Takes a remote member out of a room's mirror, and drops the room if
    /// nobody is left in it (never the lobby).
    fn drop_remote_member(&mut self, key: &str, folded: &str) {
        if let Some(room) = self.rooms.get_mut(key) {
            room.remote.remove(folded);
            if room.members.is_empty() && room.remote.is_empty() && key != names::fold(LOBBY) {
                self.rooms.remove(key);
            }
        }
    }

    /// Replaces the mirror of the other nodes with `members`, announcing the
    /// differences to local members as joins, parts and quits.
    fn remote_snapshot(&mut self, members: Vec<Member>, now: Timestamp) {
        let mut wanted: HashMap<String, (String, String, Vec<String>)> = HashMap::new();
        for m in members.into_iter().take(SNAPSHOT_MAX) {
            if !names::is_room(&m.room) || names::check_nick(&m.nick).is_err() {
                continue;
            }
            let entry = wanted
                .entry(names::fold(&m.nick))
                .or_insert_with(|| (m.node.clone(), m.nick.clone(), Vec::new()));
            if entry.0 == m.node {
                entry.2.push(m.room);
            }
        }
        let known: Vec<(String, RemoteUser)> = self
            .remote
            .iter()
            .map(|(k, u)| (k.clone(), u.clone()))
            .collect();
        for (key, user) in known {
            match wanted.get(&key) {
                Some((node, _, rooms)) if *node == user.node => {
                    let rooms: HashSet<String> = rooms.iter().map(|r| names::fold(r)).collect();
                    for room in &user.rooms {
                        if !rooms.contains(room) {
                            let name = self
                                .rooms
                                .get(room)
                                .map_or_else(|| room.clone(), |r| r.name.clone());
                            self.remote_part(&user.node, &name, &user.nick, "left", now);
                        }
                    }
                }
                _ => self.remote_quit(&user.node, &user.nick, "left", now),
            }
        }
        for (node, nick, rooms) in wanted.into_values() {
            for room in rooms {
                self.remote_join(&node, &room, &nick, now);
            }
        }
    }
}
