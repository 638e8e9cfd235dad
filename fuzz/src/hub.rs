//! The hub as a state machine: arbitrary scripts of connects, commands,
//! room changes, disconnects, ticks, slow readers and vanished peers over a
//! few clients, with the invariants checked after every step.
//!
//! Each client's outbox is a test double that parses every line it is given
//! (as the terminal client would) and replays it into that client's view of
//! the chat: its own nick, its rooms and who is in each. Checked:
//! - no panic; every line is one CRLF-terminated line that
//!   `ServerLine::parse` accepts; `HELLO` comes first and nothing after `BYE`;
//! - nicknames are valid and unique case-insensitively; `nicknames()` is
//!   sorted case-insensitively and is exactly the registered clients' nicks;
//! - every connected, registered client's view (replayed from the `WELCOME`,
//!   `JOIN`, `PART`, `QUIT`, `NICK` and `USERS` lines it received) equals the
//!   truth (`nick`, `rooms_of`, `members`), and room names are valid; an
//!   unregistered client hears no chat and is in no room;
//! - a room line (`MSG`, `JOIN`, `PART`, `TOPIC`) reaches only the room's
//!   members, a `QUIT` or `NICK` only those who share a room, a `WHISPER`
//!   only its recipient; nobody receives a message they sent (by id: the
//!   sender's outbox gets no `MSG` or `WHISPER` in that step; by name: none
//!   carries the receiver's own nick, whatever renames happened); message ids
//!   grow;
//! - an outbox never holds more than its capacity, the hub never pushes to a
//!   closed outbox or closes one twice, and a client whose outbox refused a
//!   line is removed (its outbox closed) within the same step;
//! - `len()` counts exactly the connections not yet removed; after a tick no
//!   unregistered connection is past its deadline and no registered one was
//!   timed out.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use natter::hub::{encode, ClientId, Hub, HubConfig, Line, Outbox, Rejected};
use natter::names::{self, fold};
use natter::protocol::{parse_command, Command, ErrorCode, ServerLine, Timestamp, LOBBY};

/// How many clients a script can address; ops name one with `slot % SLOTS`.
pub const SLOTS: usize = 6;

/// Nicknames the `Nick` and `Whisper` ops pick from: some collide
/// case-insensitively, one is at the length limit, two are invalid.
pub const NAMES: [&str; 10] = [
    "alice",
    "Alice",
    "ALICE",
    "bob",
    "Bob2",
    "carol",
    "d-_",
    "sixteen_chars_16",
    "9lives",
    "no spaces",
];

/// Rooms the room ops pick from: two collide case-insensitively, one is the
/// lobby in other capitals, one is longest, one is invalid.
pub const ROOMS: [&str; 7] = [
    "#lobby",
    "#rust",
    "#Rust",
    "#LOBBY",
    "#go",
    "#room_with-32-chars_xxxxxxxxxxxx",
    "#no room",
];

/// The time scripts start at.
pub const START: i64 = 1_795_000_000;

/// One fuzz input: a hub configuration and what happens to it.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Script {
    /// Seconds a connection may stay without a nickname.
    pub register_timeout: u8,
    /// The most rooms a client may be in: `1 + max_rooms % 4`.
    pub max_rooms: u8,
    /// Whether the hub records messages and queues history requests.
    pub history: bool,
    /// The steps, in order.
    pub ops: Vec<Op>,
}

/// One step of a script.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// A new connection in `slot`, with an outbox of `1 + capacity % 64`
    /// unread lines. Nothing happens while the slot's last connection is
    /// still in the hub.
    Connect {
        /// Which client.
        slot: u8,
        /// Outbox size.
        capacity: u8,
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
        /// What it says.
        text: String,
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
        /// What it says.
        text: String,
    },
    /// Any command value at all.
    Command {
        /// Which client.
        slot: u8,
        /// The command.
        command: Command,
    },
    /// A line as a session would hand it over: parsed, errors dropped.
    Line {
        /// Which client.
        slot: u8,
        /// The line.
        line: String,
    },
    /// The session reports the connection ended.
    Disconnect {
        /// Which client.
        slot: u8,
        /// Why.
        reason: String,
    },
    /// Time passes and the server's once-a-second tick runs.
    Tick {
        /// Seconds that pass.
        secs: u8,
    },
    /// The client stops reading: its outbox fills up.
    StopReading {
        /// Which client.
        slot: u8,
    },
    /// The peer is gone but the hub has not heard: pushes fail as closed.
    Vanish {
        /// Which client.
        slot: u8,
    },
    /// The session sends the client an error about its own input.
    Reply {
        /// Which client.
        slot: u8,
        /// The error.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The server stops: everyone is told and every outbox closed.
    Shutdown,
}

/// A room as one client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoomView {
    /// The name as the server shows it.
    name: String,
    /// Members by folded nick.
    members: BTreeMap<String, String>,
}

/// What one client has been sent, as the client understands it.
#[derive(Debug, Default)]
struct View {
    /// Every line so far was HELLO first.
    greeted: bool,
    /// BYE was received: nothing may follow.
    bye: bool,
    /// Own nick, from WELCOME and NICK.
    me: Option<String>,
    /// The rooms it is in, by folded name.
    rooms: BTreeMap<String, RoomView>,
    /// The last MSG or WHISPER id seen.
    last_msg_id: u64,
    /// MSG and WHISPER lines received.
    msgs: usize,
}

impl View {
    fn is_me(&self, nick: &str) -> bool {
        self.me.as_deref().is_some_and(|me| fold(me) == fold(nick))
    }

    /// The room a line names, which this client must be in.
    fn room(&mut self, who: ClientId, room: &str, body: &str) -> &mut RoomView {
        assert!(names::is_room(room), "client {who}: bad room in {body:?}");
        self.rooms
            .get_mut(&fold(room))
            .unwrap_or_else(|| panic!("client {who}: {body:?} but not in {room}"))
    }

    fn receive(&mut self, who: ClientId, raw: &[u8]) {
        let text = std::str::from_utf8(raw)
            .unwrap_or_else(|_| panic!("client {who}: line {raw:?} is not UTF-8"));
        let body = text
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("client {who}: line {text:?} lacks CRLF"));
        assert!(
            !body.contains(['\r', '\n']),
            "client {who}: line break inside {text:?}"
        );
        let line = ServerLine::parse(body)
            .unwrap_or_else(|e| panic!("client {who}: {body:?} does not parse: {e}"));
        assert!(!self.bye, "client {who}: {body:?} after BYE");
        if !self.greeted {
            assert!(
                matches!(line, ServerLine::Hello { .. }),
                "client {who}: first line {body:?} is not HELLO"
            );
            self.greeted = true;
            return;
        }
        let registered = self.me.is_some();
        let chat = !matches!(
            line,
            ServerLine::Welcome { .. }
                | ServerLine::Pong(_)
                | ServerLine::Info(_)
                | ServerLine::Err { .. }
                | ServerLine::Bye(_)
        );
        assert!(!chat || registered, "client {who}: {body:?} before WELCOME");
        match line {
            ServerLine::Hello { .. } => panic!("client {who}: a second HELLO"),
            ServerLine::Welcome { nick, .. } => {
                assert!(
                    !registered,
                    "client {who}: WELCOME when already {:?}",
                    self.me
                );
                self.me = Some(nick);
            }
            ServerLine::Join { room, nick, .. } => {
                if self.is_me(&nick) {
                    assert!(names::is_room(&room), "client {who}: bad room in {body:?}");
                    let members = BTreeMap::from([(fold(&nick), nick)]);
                    let old = self.rooms.insert(
                        fold(&room),
                        RoomView {
                            name: room,
                            members,
                        },
                    );
                    assert!(old.is_none(), "client {who}: {body:?} but already there");
                } else {
                    let room = self.room(who, &room, body);
                    let old = room.members.insert(fold(&nick), nick);
                    assert!(old.is_none(), "client {who}: {body:?} but {old:?} is there");
                }
            }
            ServerLine::Part { room, nick, .. } => {
                self.room(who, &room, body);
                if self.is_me(&nick) {
                    self.rooms.remove(&fold(&room));
                } else {
                    let room = self.room(who, &room, body);
                    let old = room.members.remove(&fold(&nick));
                    assert_eq!(
                        old,
                        Some(nick),
                        "client {who}: {body:?} for someone not there"
                    );
                }
            }
            ServerLine::Quit { nick, .. } => {
                assert!(!self.is_me(&nick), "client {who}: own QUIT");
                let mut seen = false;
                for room in self.rooms.values_mut() {
                    seen |= room.members.remove(&fold(&nick)).is_some();
                }
                assert!(
                    seen,
                    "client {who}: {body:?} from someone in none of its rooms"
                );
            }
            ServerLine::Nick { old, new, .. } => {
                let mine = self.me.as_ref() == Some(&old);
                let mut seen = false;
                for room in self.rooms.values_mut() {
                    if let Some(was) = room.members.remove(&fold(&old)) {
                        assert_eq!(was, old, "client {who}: {body:?}");
                        let clash = room.members.insert(fold(&new), new.clone());
                        assert!(
                            clash.is_none(),
                            "client {who}: {body:?} but {clash:?} is here"
                        );
                        seen = true;
                    }
                }
                assert!(
                    mine || seen,
                    "client {who}: {body:?} from someone in none of its rooms"
                );
                if mine {
                    self.me = Some(new);
                }
            }
            ServerLine::Users { room, nicks } => {
                assert!(
                    nicks.windows(2).all(|w| fold(&w[0]) < fold(&w[1])),
                    "client {who}: {body:?} not sorted or has duplicates"
                );
                let me = self.me.clone().unwrap_or_default();
                assert!(nicks.contains(&me), "client {who}: {body:?} without itself");
                let room = self.room(who, &room, body);
                room.members = nicks.into_iter().map(|n| (fold(&n), n)).collect();
            }
            ServerLine::Msg { id, room, nick, .. } => {
                assert!(
                    !self.is_me(&nick),
                    "client {who} got its own message {body:?}"
                );
                let room = self.room(who, &room, body);
                assert!(
                    room.members.contains_key(&fold(&nick)),
                    "client {who}: {body:?} from someone not in the room"
                );
                assert!(id > self.last_msg_id, "client {who}: message id went back");
                self.last_msg_id = id;
                self.msgs += 1;
            }
            ServerLine::Whisper { id, from, to, .. } => {
                assert!(
                    self.me.as_ref() == Some(&to),
                    "client {who}: overheard {body:?}"
                );
                assert!(
                    !self.is_me(&from),
                    "client {who} got its own whisper {body:?}"
                );
                assert!(id > self.last_msg_id, "client {who}: message id went back");
                self.last_msg_id = id;
                self.msgs += 1;
            }
            ServerLine::Topic { room, .. } => {
                self.room(who, &room, body);
            }
            ServerLine::Room { room, .. } => {
                assert!(names::is_room(&room), "client {who}: bad room in {body:?}")
            }
            // Stored history comes from the server's store, not the hub.
            ServerLine::History(_) | ServerLine::HistoryEnd { .. } => {
                panic!("client {who}: {body:?} from the hub")
            }
            ServerLine::Bye(_) => self.bye = true,
            ServerLine::Rooms(_)
            | ServerLine::Pong(_)
            | ServerLine::Info(_)
            | ServerLine::Err { .. } => {}
        }
    }
}

/// One client's side, shared between the harness and its outbox.
#[derive(Debug)]
struct Peer {
    id: ClientId,
    capacity: usize,
    /// Lines pushed and not yet read.
    unread: usize,
    reading: bool,
    vanished: bool,
    /// The hub closed the outbox: it has removed the client.
    closed: bool,
    /// A push was refused.
    refused: bool,
    /// When it connected (Unix seconds).
    since: i64,
    view: View,
}

/// The test double the hub pushes lines into; clones share the peer.
#[derive(Clone)]
struct TestOutbox(Rc<RefCell<Peer>>);

impl Outbox for TestOutbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        let mut peer = self.0.borrow_mut();
        let peer = &mut *peer;
        assert!(!peer.closed, "client {}: push after close", peer.id);
        if peer.vanished {
            peer.refused = true;
            return Err(Rejected::Closed);
        }
        if peer.unread >= peer.capacity {
            peer.refused = true;
            return Err(Rejected::Full);
        }
        peer.unread += 1;
        peer.view.receive(peer.id, line);
        Ok(())
    }

    fn close(&mut self) {
        let mut peer = self.0.borrow_mut();
        assert!(!peer.closed, "client {}: outbox closed twice", peer.id);
        peer.closed = true;
    }
}

/// The harness: the hub, the clients and the clock.
struct World {
    hub: Hub<TestOutbox>,
    timeout: i64,
    now: i64,
    next_id: ClientId,
    slots: [Option<Rc<RefCell<Peer>>>; SLOTS],
    /// Every client ever connected.
    all: Vec<Rc<RefCell<Peer>>>,
    /// The id of the last message recorded for the store.
    last_record: u64,
    /// Whether the hub keeps history.
    history: bool,
}

fn room_name(index: u8) -> String {
    ROOMS[usize::from(index) % ROOMS.len()].to_owned()
}

fn time(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs).expect("script times stay in range")
}

/// Runs a script, checking every invariant after every step.
pub fn run(script: &Script) {
    let mut world = World {
        hub: Hub::with_config(HubConfig {
            register_timeout_secs: u64::from(script.register_timeout),
            max_rooms: 1 + usize::from(script.max_rooms % 4),
            history: script.history,
            ..HubConfig::default()
        }),
        timeout: i64::from(script.register_timeout),
        now: START,
        next_id: 0,
        slots: Default::default(),
        all: Vec::new(),
        last_record: 0,
        history: script.history,
    };
    for op in &script.ops {
        world.step(op);
        world.check();
    }
}

impl World {
    fn peer(&self, slot: u8) -> Option<Rc<RefCell<Peer>>> {
        self.slots[usize::from(slot) % SLOTS].clone()
    }

    /// Applies `command` from the client in `slot`, and checks the sender
    /// was not sent its own message.
    fn command(&mut self, slot: u8, command: Command) {
        let Some(peer) = self.peer(slot) else { return };
        let id = peer.borrow().id;
        let msgs = peer.borrow().view.msgs;
        self.hub.command(id, command, time(self.now));
        assert_eq!(
            peer.borrow().view.msgs,
            msgs,
            "client {id} was sent its own MSG"
        );
    }

    fn step(&mut self, op: &Op) {
        let now = time(self.now);
        match op {
            Op::Connect { slot, capacity } => {
                let slot = usize::from(*slot) % SLOTS;
                if self.slots[slot]
                    .as_ref()
                    .is_some_and(|p| !p.borrow().closed)
                {
                    return;
                }
                self.next_id += 1;
                let peer = Rc::new(RefCell::new(Peer {
                    id: self.next_id,
                    capacity: 1 + usize::from(*capacity % 64),
                    unread: 0,
                    reading: true,
                    vanished: false,
                    closed: false,
                    refused: false,
                    since: self.now,
                    view: View::default(),
                }));
                self.slots[slot] = Some(Rc::clone(&peer));
                self.all.push(Rc::clone(&peer));
                self.hub.connect(self.next_id, TestOutbox(peer), now);
            }
            Op::Nick { slot, name } => {
                let name = NAMES[usize::from(*name) % NAMES.len()];
                self.command(*slot, Command::Nick(name.to_owned()));
            }
            Op::Say { slot, room, text } => self.command(
                *slot,
                Command::Msg {
                    room: room.map(room_name),
                    text: text.clone(),
                },
            ),
            Op::Join { slot, room } => self.command(*slot, Command::Join(room_name(*room))),
            Op::Part { slot, room } => self.command(
                *slot,
                Command::Part {
                    room: room.map(room_name),
                    reason: "bye".to_owned(),
                },
            ),
            Op::Whisper { slot, to, text } => self.command(
                *slot,
                Command::Whisper {
                    nick: NAMES[usize::from(*to) % NAMES.len()].to_owned(),
                    text: text.clone(),
                },
            ),
            Op::Command { slot, command } => self.command(*slot, command.clone()),
            Op::Line { slot, line } => {
                if let Ok(command) = parse_command(line) {
                    self.command(*slot, command);
                }
            }
            Op::Disconnect { slot, reason } => {
                if let Some(peer) = self.peer(*slot) {
                    let id = peer.borrow().id;
                    self.hub.disconnect(id, reason, now);
                    assert!(
                        peer.borrow().closed,
                        "client {id}: still open after disconnect"
                    );
                }
            }
            Op::Tick { secs } => {
                let registered: Vec<_> = self
                    .all
                    .iter()
                    .filter(|p| self.hub.nick(p.borrow().id).is_some())
                    .cloned()
                    .collect();
                self.now += i64::from(*secs);
                self.hub.tick(time(self.now));
                for peer in &self.all {
                    let peer = peer.borrow();
                    if !peer.closed && self.hub.nick(peer.id).is_none() {
                        assert!(
                            peer.since + self.timeout > self.now,
                            "client {}: unregistered past its deadline",
                            peer.id
                        );
                    }
                }
                for peer in registered {
                    let peer = peer.borrow();
                    assert!(
                        !peer.closed || peer.refused,
                        "client {}: registered, yet timed out",
                        peer.id
                    );
                }
            }
            Op::StopReading { slot } => {
                if let Some(peer) = self.peer(*slot) {
                    peer.borrow_mut().reading = false;
                }
            }
            Op::Vanish { slot } => {
                if let Some(peer) = self.peer(*slot) {
                    peer.borrow_mut().vanished = true;
                }
            }
            Op::Reply { slot, code, text } => {
                if let Some(peer) = self.peer(*slot) {
                    let id = peer.borrow().id;
                    let line = encode(&ServerLine::Err {
                        code: *code,
                        text: text.clone(),
                    });
                    self.hub.reply(id, &line, now);
                }
            }
            Op::Shutdown => {
                self.hub.shutdown("The server is stopping.");
                for peer in &self.all {
                    let peer = peer.borrow();
                    assert!(peer.closed, "client {}: still open after shutdown", peer.id);
                }
                assert!(
                    self.hub.nicknames().next().is_none(),
                    "nicks after shutdown"
                );
                assert!(
                    self.hub.members(LOBBY).is_empty(),
                    "lobby members after shutdown"
                );
            }
        }
    }

    /// The invariants that hold between steps.
    fn check(&mut self) {
        let mut open = 0;
        let mut registered: Vec<(ClientId, String)> = Vec::new();
        for peer in &self.all {
            let mut peer = peer.borrow_mut();
            let id = peer.id;
            assert!(
                peer.unread <= peer.capacity,
                "client {id}: outbox over capacity"
            );
            if peer.reading {
                peer.unread = 0;
            }
            if peer.refused {
                assert!(
                    peer.closed,
                    "client {id}: a line was refused, yet still in the hub"
                );
            }
            let nick = self.hub.nick(id);
            if peer.closed {
                assert_eq!(nick, None, "client {id}: removed, yet has a nick");
                assert!(
                    self.hub.rooms_of(id).is_empty(),
                    "client {id}: removed, yet in a room"
                );
                continue;
            }
            open += 1;
            assert!(peer.view.greeted, "client {id}: never greeted");
            let Some(nick) = nick else {
                assert_eq!(peer.view.me, None, "client {id}: thinks it is registered");
                assert!(
                    self.hub.rooms_of(id).is_empty(),
                    "client {id}: in a room unregistered"
                );
                continue;
            };
            assert_eq!(
                names::check_nick(nick),
                Ok(()),
                "client {id}: nick {nick:?}"
            );
            assert_eq!(
                peer.view.me.as_deref(),
                Some(nick),
                "client {id}: does not know its own nick"
            );
            registered.push((id, nick.to_owned()));
            // Its rooms, and who is in each, as the hub has them.
            let mut truth = BTreeMap::new();
            for name in self.hub.rooms_of(id) {
                assert!(
                    names::is_room(name),
                    "client {id}: in a room called {name:?}"
                );
                let members = self
                    .hub
                    .members(name)
                    .into_iter()
                    .map(|n| (fold(n), n.to_owned()))
                    .collect();
                let room = RoomView {
                    name: name.to_owned(),
                    members,
                };
                assert!(
                    truth.insert(fold(name), room).is_none(),
                    "client {id}: {name} twice"
                );
            }
            assert_eq!(
                peer.view.rooms, truth,
                "client {id}: wrong rooms or members"
            );
        }
        assert_eq!(self.hub.len(), open, "len() is not the open connections");

        let listed: Vec<&str> = self.hub.nicknames().collect();
        assert!(
            listed.windows(2).all(|w| fold(w[0]) < fold(w[1])),
            "nicknames() {listed:?} not sorted case-insensitively or not unique"
        );
        let mut truth: Vec<&str> = registered.iter().map(|(_, n)| n.as_str()).collect();
        truth.sort_by_key(|n| fold(n));
        assert_eq!(listed, truth, "nicknames() is not the registered clients");
        // Every member of a room a client sees is a registered client.
        let nicks: BTreeSet<&str> = truth.iter().copied().collect();
        for peer in &self.all {
            let peer = peer.borrow();
            for room in self.hub.rooms_of(peer.id) {
                for member in self.hub.members(room) {
                    assert!(
                        nicks.contains(member),
                        "{member:?} in {room} is not registered"
                    );
                }
            }
        }
        // What the hub hands the store: only with history on, ids growing,
        // and history fetched only for registered clients.
        let records = self.hub.take_records();
        let fetches = self.hub.take_fetches();
        if !self.history {
            assert!(records.is_empty(), "records with history off");
            assert!(fetches.is_empty(), "fetches with history off");
        }
        for record in records {
            assert!(record.id > self.last_record, "record ids went back");
            assert_eq!(
                names::check_nick(&record.nick),
                Ok(()),
                "record by {:?}",
                record.nick
            );
            self.last_record = record.id;
        }
        for fetch in fetches {
            let asker = self.all.iter().find(|p| p.borrow().id == fetch.client);
            let asker = asker.expect("fetches are for known clients").borrow();
            assert!(
                asker.closed || self.hub.nick(asker.id).is_some(),
                "history fetched for unregistered client {}",
                asker.id
            );
        }
    }
}
