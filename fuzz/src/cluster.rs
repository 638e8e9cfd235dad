//! Two hubs as the nodes of one cluster, joined by the in-memory bus
//! (`natter::hub::memory_bus`, which does what the Redis bus does): arbitrary
//! scripts of connects on either node, nicknames, joins, parts, messages,
//! whispers, raw lines and disconnects, with the bus delivering a few items
//! at a time in between, so that claims, renames and quits race.
//!
//! Checked:
//! - no panic; every line a client gets is one CRLF-terminated line that
//!   `ServerLine::parse` accepts;
//! - at every client, message ids strictly increase in each room (no message
//!   twice, none out of order), and whisper ids strictly increase;
//! - at every moment, no nickname (folded) is held by two clients, on one
//!   node or across both;
//! - once the bus has drained (at a `Drain` step and at the end): the bus
//!   stops (the hubs do not publish for ever), and both nodes list the same
//!   members, in the same order, for every room.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use natter::hub::memory_bus::MemoryBus;
use natter::hub::outbox::{Outbox, Rejected};
use natter::hub::HubConfig;
use natter::ids::ClientId;
use natter::names::fold;
use natter::protocol::{parse_command, Command, Line, ServerLine, Timestamp};

/// How many clients a script can address; ops name one with `slot % SLOTS`.
pub const SLOTS: usize = 6;

/// Nicknames: some collide case-insensitively, one is invalid.
pub const NAMES: [&str; 6] = ["alice", "Alice", "ALICE", "bob", "carol", "no spaces"];

/// Rooms: two collide case-insensitively, one is the lobby, one is invalid.
pub const ROOMS: [&str; 5] = ["#lobby", "#rust", "#Rust", "#go", "#no room"];

/// The time scripts start at.
pub const START: i64 = 1_795_000_000;

/// One fuzz input: what happens to the cluster.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Script {
    /// The steps, in order.
    pub ops: Vec<Op>,
}

/// One step of a script.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// A new connection in `slot`, on node 1 if `second` else node 0.
    /// Nothing happens while the slot is in use.
    Connect {
        /// Which client.
        slot: u8,
        /// Which node.
        second: bool,
    },
    /// `NICK` with one of [`NAMES`].
    Nick {
        /// Which client.
        slot: u8,
        /// Index into [`NAMES`].
        name: u8,
    },
    /// A chat line to the current room, or to one of [`ROOMS`].
    Say {
        /// Which client.
        slot: u8,
        /// Index into [`ROOMS`], if any.
        room: Option<u8>,
    },
    /// `JOIN` one of [`ROOMS`].
    Join {
        /// Which client.
        slot: u8,
        /// Index into [`ROOMS`].
        room: u8,
    },
    /// `PART` the current room or one of [`ROOMS`].
    Part {
        /// Which client.
        slot: u8,
        /// Index into [`ROOMS`], if any.
        room: Option<u8>,
    },
    /// `WHISPER` to one of [`NAMES`].
    Whisper {
        /// Which client.
        slot: u8,
        /// Index into [`NAMES`].
        to: u8,
    },
    /// A line as a session would hand it over: parsed, errors dropped.
    Line {
        /// Which client.
        slot: u8,
        /// The line.
        line: String,
    },
    /// The connection ends.
    Disconnect {
        /// Which client.
        slot: u8,
    },
    /// The bus carries up to `count % 8 + 1` queued items.
    Deliver {
        /// How many.
        count: u8,
    },
    /// The bus carries everything; then the nodes must agree.
    Drain,
}

/// What a client was sent, and whether its outbox was closed.
#[derive(Clone, Default)]
struct Inbox(Rc<RefCell<Received>>);

#[derive(Default)]
struct Received {
    lines: Vec<Vec<u8>>,
    closed: bool,
}

impl Outbox for Inbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        let bytes: &[u8] = line;
        self.0.borrow_mut().lines.push(bytes.to_vec());
        Ok(())
    }
    fn close(&mut self) {
        self.0.borrow_mut().closed = true;
    }
}

/// A connected client, and what it has seen.
struct Client {
    node: usize,
    id: ClientId,
    inbox: Inbox,
    /// Folded room to the last message id seen in it.
    last_msg: HashMap<String, u64>,
    last_whisper: u64,
}

/// Runs a script, checking every property; panics naming the broken one.
pub fn run(script: &Script) {
    let now = Timestamp::from_unix(START).unwrap_or_else(Timestamp::now);
    let mut bus: MemoryBus<Inbox> = MemoryBus::new(&["a", "b"], HubConfig::default(), 0);
    let mut slots: Vec<Option<Client>> = (0..SLOTS).map(|_| None).collect();
    let mut next_id: ClientId = 1;
    for op in &script.ops {
        step(&mut bus, &mut slots, &mut next_id, op, now);
        settle(&mut bus, &mut slots, now);
        check_nicks(&bus, &slots);
        if matches!(op, Op::Drain) {
            drain(&mut bus, &mut slots, now);
        }
    }
    drain(&mut bus, &mut slots, now);
}

fn command(bus: &mut MemoryBus<Inbox>, client: Option<&Client>, command: Command, now: Timestamp) {
    if let Some(client) = client {
        if let Some(hub) = bus.hubs.get_mut(client.node) {
            hub.command(client.id, command, now);
        }
    }
}

fn step(
    bus: &mut MemoryBus<Inbox>,
    slots: &mut [Option<Client>],
    next_id: &mut ClientId,
    op: &Op,
    now: Timestamp,
) {
    let room = |r: u8| ROOMS[usize::from(r) % ROOMS.len()].to_owned();
    let name = |n: u8| NAMES[usize::from(n) % NAMES.len()].to_owned();
    let slot = |s: u8| usize::from(s) % SLOTS;
    match op {
        Op::Connect { slot: s, second } => {
            let s = slot(*s);
            if slots[s].is_some() {
                return;
            }
            let node = usize::from(*second);
            let id = *next_id;
            *next_id += 1;
            let inbox = Inbox::default();
            bus.hubs[node].connect(id, inbox.clone(), now);
            slots[s] = Some(Client {
                node,
                id,
                inbox,
                last_msg: HashMap::new(),
                last_whisper: 0,
            });
        }
        Op::Nick { slot: s, name: n } => {
            command(bus, slots[slot(*s)].as_ref(), Command::Nick(name(*n)), now);
        }
        Op::Say { slot: s, room: r } => {
            let text = "hello".to_owned();
            let cmd = Command::Msg {
                room: r.map(room),
                text,
            };
            command(bus, slots[slot(*s)].as_ref(), cmd, now);
        }
        Op::Join { slot: s, room: r } => {
            command(bus, slots[slot(*s)].as_ref(), Command::Join(room(*r)), now);
        }
        Op::Part { slot: s, room: r } => {
            let cmd = Command::Part {
                room: r.map(room),
                reason: String::new(),
            };
            command(bus, slots[slot(*s)].as_ref(), cmd, now);
        }
        Op::Whisper { slot: s, to } => {
            let cmd = Command::Whisper {
                nick: name(*to),
                text: "psst".to_owned(),
            };
            command(bus, slots[slot(*s)].as_ref(), cmd, now);
        }
        Op::Line { slot: s, line } => {
            if let Ok(cmd) = parse_command(line) {
                command(bus, slots[slot(*s)].as_ref(), cmd, now);
            }
        }
        Op::Disconnect { slot: s } => {
            if let Some(client) = slots[slot(*s)].take() {
                bus.hubs[client.node].disconnect(client.id, "gone", now);
            }
        }
        Op::Deliver { count } => {
            for _ in 0..=count % 8 {
                if !bus.deliver_one(now) {
                    break;
                }
                settle(bus, slots, now);
                check_nicks(bus, slots);
            }
        }
        Op::Drain => {}
    }
}

/// Reads every client's new lines, checking them; a client whose outbox was
/// closed is disconnected, as its session would.
fn settle(bus: &mut MemoryBus<Inbox>, slots: &mut [Option<Client>], now: Timestamp) {
    for slot in slots.iter_mut() {
        let Some(client) = slot else { continue };
        let (lines, closed) = {
            let mut received = client.inbox.0.borrow_mut();
            (std::mem::take(&mut received.lines), received.closed)
        };
        for raw in lines {
            receive(client, &raw);
        }
        if closed {
            bus.hubs[client.node].disconnect(client.id, "closed", now);
            *slot = None;
        }
    }
}

fn receive(client: &mut Client, raw: &[u8]) {
    let who = (client.node, client.id);
    let text = std::str::from_utf8(raw)
        .unwrap_or_else(|_| panic!("client {who:?}: line {raw:?} is not UTF-8"));
    let body = text
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("client {who:?}: line {text:?} lacks CRLF"));
    let line = ServerLine::parse(body)
        .unwrap_or_else(|e| panic!("client {who:?}: {body:?} does not parse: {e}"));
    match line {
        ServerLine::Msg { id, room, .. } => {
            let last = client.last_msg.entry(fold(&room)).or_insert(0);
            assert!(
                id > *last,
                "client {who:?}: message id {id} in {room} after {last}"
            );
            *last = id;
        }
        ServerLine::Whisper { id, .. } => {
            assert!(
                id > client.last_whisper,
                "client {who:?}: whisper id {id} after {}",
                client.last_whisper
            );
            client.last_whisper = id;
        }
        _ => {}
    }
}

/// No folded nickname is held twice, on a node or across the nodes.
fn check_nicks(bus: &MemoryBus<Inbox>, slots: &[Option<Client>]) {
    let mut held: BTreeMap<String, (usize, ClientId)> = BTreeMap::new();
    for client in slots.iter().flatten() {
        if let Some(nick) = bus.hubs[client.node].nick(client.id) {
            if let Some(other) = held.insert(fold(nick), (client.node, client.id)) {
                panic!(
                    "{nick} is held by client {:?} and client {other:?}",
                    (client.node, client.id)
                );
            }
        }
    }
    for (node, hub) in bus.hubs.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for nick in hub.nicknames() {
            assert!(seen.insert(fold(nick)), "node {node} lists {nick} twice");
        }
    }
}

/// Drains the bus; then the nodes must agree on every room's members.
fn drain(bus: &mut MemoryBus<Inbox>, slots: &mut [Option<Client>], now: Timestamp) {
    for _ in 0..1000 {
        assert!(bus.drain(now), "the hubs never stopped publishing");
        settle(bus, slots, now);
        check_nicks(bus, slots);
        if bus.pending() == 0 {
            break;
        }
    }
    bus.collect();
    assert_eq!(bus.pending(), 0, "the bus did not drain");
    for room in ROOMS {
        let first = bus.hubs[0].members(room);
        let second = bus.hubs[1].members(room);
        assert_eq!(first, second, "the nodes disagree on the members of {room}");
    }
}
