//! An in-memory cluster bus for tests and fuzzing: several hubs joined by a
//! queue that does what the Redis bus does (one claim per nickname, one id
//! sequence, every event to every other node in one order). Pure, like the
//! hub: nothing here does IO or reads a clock.
//!
//! What the hubs publish is queued in the order they published it (hub by
//! hub, each time [`MemoryBus::collect`] runs), and carried one item at a
//! time, so a caller can interleave commands with partial delivery and see
//! the races a real bus allows; [`MemoryBus::drain`] carries everything.
//! Room history and resynchronisation are left out (tests/cluster.rs covers
//! them against Redis).

use std::collections::{HashMap, VecDeque};

use super::cluster::{Publish, Remote};
use super::outbox::Outbox;
use super::{Hub, HubConfig};
use crate::names;
use crate::protocol::Timestamp;

/// The most items [`MemoryBus::drain`] carries before it gives up: what the
/// hubs publish in answer to what they are told is bounded, so a drain that
/// needs more means a hub that never stops publishing.
pub const DRAIN_LIMIT: usize = 100_000;

/// Nodes joined by an in-memory bus.
pub struct MemoryBus<O> {
    /// The nodes' hubs.
    pub hubs: Vec<Hub<O>>,
    /// The nodes' names, by index.
    names: Vec<String>,
    /// Folded nickname to the node holding it.
    claims: HashMap<String, usize>,
    /// The last id the bus gave a message or whisper.
    seq: u64,
    /// Published but not carried yet: the publishing node and what.
    queue: VecDeque<(usize, Publish)>,
}

impl<O: Outbox> MemoryBus<O> {
    /// A hub per name in `nodes`, with `config` (its `cluster` set), and
    /// message ids after `first_id`.
    pub fn new(nodes: &[&str], config: HubConfig, first_id: u64) -> Self {
        let config = HubConfig {
            cluster: true,
            ..config
        };
        Self {
            hubs: nodes
                .iter()
                .map(|_| Hub::with_config(config.clone()))
                .collect(),
            names: nodes.iter().map(|n| (*n).to_owned()).collect(),
            claims: HashMap::new(),
            seq: first_id,
            queue: VecDeque::new(),
        }
    }

    /// The name of node `index` (empty past the last).
    pub fn node(&self, index: usize) -> String {
        self.names.get(index).cloned().unwrap_or_default()
    }

    /// Which node a name is, if any.
    fn index_of(&self, node: &str) -> Option<usize> {
        self.names.iter().position(|n| n == node)
    }

    /// Items published and not carried yet.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Moves what the hubs published into the queue.
    pub fn collect(&mut self) {
        for (i, hub) in self.hubs.iter_mut().enumerate() {
            self.queue
                .extend(hub.take_published().into_iter().map(|p| (i, p)));
        }
    }

    /// Carries the oldest queued item (collecting first); false if there
    /// was none.
    pub fn deliver_one(&mut self, now: Timestamp) -> bool {
        self.collect();
        match self.queue.pop_front() {
            Some((from, publish)) => {
                self.carry(from, publish, now);
                true
            }
            None => false,
        }
    }

    /// Carries everything, including what the hubs publish in answer;
    /// false if the hubs were still publishing after [`DRAIN_LIMIT`] items.
    pub fn drain(&mut self, now: Timestamp) -> bool {
        for _ in 0..DRAIN_LIMIT {
            if !self.deliver_one(now) {
                return true;
            }
        }
        false
    }

    /// Tells every node but `from`.
    fn send_others(&mut self, from: usize, remote: &Remote, now: Timestamp) {
        for (i, hub) in self.hubs.iter_mut().enumerate() {
            if i != from {
                hub.cluster(remote.clone(), now);
            }
        }
    }

    /// Releases `folded` if `node` holds it (as the bus's scripts do).
    fn release(&mut self, node: usize, folded: &str) {
        if self.claims.get(folded) == Some(&node) {
            self.claims.remove(folded);
        }
    }

    fn carry(&mut self, from: usize, publish: Publish, now: Timestamp) {
        let node = self.node(from);
        match publish {
            Publish::Claim { client, nick } => {
                let key = names::fold(&nick);
                let won = !self.claims.contains_key(&key);
                if won {
                    self.claims.insert(key, from);
                }
                if let Some(hub) = self.hubs.get_mut(from) {
                    let last = self.seq;
                    hub.cluster(
                        Remote::Claimed {
                            client,
                            nick,
                            won,
                            last,
                        },
                        now,
                    );
                }
            }
            Publish::Release { nick } => self.release(from, &names::fold(&nick)),
            Publish::Join { name, nick, .. } => {
                let join = Remote::Join {
                    node,
                    room: name,
                    nick,
                };
                self.send_others(from, &join, now);
            }
            Publish::Part {
                room, nick, reason, ..
            } => {
                let part = Remote::Part {
                    node,
                    room,
                    nick,
                    reason,
                };
                self.send_others(from, &part, now);
            }
            Publish::Quit { nick, reason, .. } => {
                self.release(from, &names::fold(&nick));
                self.send_others(from, &Remote::Quit { node, nick, reason }, now);
            }
            Publish::Rename {
                old, new, release, ..
            } => {
                if let Some(release) = release {
                    self.release(from, &names::fold(&release));
                }
                self.send_others(from, &Remote::Rename { node, old, new }, now);
            }
            Publish::Msg {
                room, nick, text, ..
            } => {
                self.seq += 1;
                for (i, hub) in self.hubs.iter_mut().enumerate() {
                    let msg = Remote::Msg {
                        id: self.seq,
                        room: room.clone(),
                        nick: nick.clone(),
                        text: text.clone(),
                        mine: i == from,
                    };
                    hub.cluster(msg, now);
                }
            }
            Publish::Whisper {
                node: to_node,
                from: sender,
                to,
                text,
                ..
            } => {
                self.seq += 1;
                let at = to_node
                    .as_deref()
                    .and_then(|n| self.index_of(n))
                    .unwrap_or(from);
                let whisper = Remote::Whisper {
                    id: self.seq,
                    from: sender,
                    to,
                    text,
                };
                if let Some(hub) = self.hubs.get_mut(at) {
                    hub.cluster(whisper, now);
                }
            }
            Publish::Moderate(moderation) => {
                self.send_others(from, &Remote::Moderate { node, moderation }, now);
            }
            Publish::Evict { node: holder, nick } => {
                if let Some(at) = self.index_of(&holder) {
                    if let Some(hub) = self.hubs.get_mut(at) {
                        hub.cluster(Remote::Evict { node, nick }, now);
                    }
                }
            }
            Publish::History(_) | Publish::Resync { .. } => {}
        }
    }
}
