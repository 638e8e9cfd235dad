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
//!   `JOIN`, `PART`, `QUIT`, `NICK`, `USERS`, `JOINS` and `PARTS` lines it
//!   received) equals the truth (`nick`, `rooms_of`, `members`), and room
//!   names are valid; an unregistered client hears no chat and is in no
//!   room. Big rooms (from 2, 3 or 4 members, by the script's `max_rooms`
//!   byte) tell arrivals and departures at a flush (each `Tick` flushes):
//!   their member lists are checked whenever no news is pending, and a
//!   `JOINS` never names someone already listed;
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
//!
//! Accounts and moderation: connections come from a few addresses (IPv4,
//! IPv6 in one /64, and an IPv4-mapped IPv6 one); `REGISTER`, `LOGIN` and
//! `PASSWORD` queue requests that the script answers as the accounts thread
//! would (or refuses, as if its queue were full); snapshots are loaded as at
//! start-up or after `natter admin`. Checked as well:
//! - a registered nickname is only ever held by a client logged in to that
//!   account; a client's account is registered; only logged-in clients are
//!   operators; a client has at most one password check queued;
//! - no client holds a nickname under a ban, and none is connected from a
//!   banned address (bans mirrored from the hub's `SaveBan`/`RemoveBan`
//!   requests and the snapshots);
//! - a kick or ban by an operator closes its targets, which get `ERR kicked`
//!   or `ERR banned` then `BYE` as their last lines; everyone who shared a
//!   room with a target gets `MOD` for it, then its `QUIT`; a banned address
//!   gets `ERR banned` and `BYE` instead of `HELLO`;
//! - `MOD` lines reach only members of the room they name and name valid
//!   nicks; `ACCOUNT` comes only after `WELCOME`; `ERR kicked` is followed by
//!   `BYE`; a client evicted from a registered nick is told with a `NICK` line
//!   (its view of its own nick stays true);
//! - a muted client's message reaches nobody;
//! - the script's passwords ([`PASSWORDS`]) never appear in any line any
//!   client receives (unless the script itself said them in the clear, in a
//!   chat line or a nick), nor in the `Debug` of a request.
//!
//! (One long file on purpose: the operations, the model each client keeps,
//! the invariants and the seed scripts must change together whenever the hub
//! gains a command, and reviewing them side by side is how that stays true.)

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;

use natter::accounts::{AccountInfo, Answer, Ban, BanTarget, Request, Snapshot};
use natter::cidr::Cidr;
use natter::hub::outbox::{Outbox, Rejected};
use natter::hub::{Hub, HubConfig};
use natter::ids::ClientId;
use natter::names::{self, fold};
use natter::protocol::{
    encode, parse_command, Command, ErrorCode, Line, ModAction, Secret, ServerLine, Timestamp,
    LOBBY,
};

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

/// Where connections come from: two IPv4 addresses, two IPv6 ones in the
/// same /64 (login limits go by /64), and the first IPv4 one again, mapped
/// into IPv6 (the hub must treat it as the IPv4 one).
pub const ADDRS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.2",
    "2001:db8::1",
    "2001:db8::2",
    "::ffff:192.0.2.1",
];

/// Passwords the account ops pick from: recognisable, so that a leak into
/// any line is caught; one is too short for the server, one too long.
pub const PASSWORDS: [&str; 5] = [
    "pw-Correct-Horse-1",
    "pw-Tr0ub4dor-and-3",
    "pw-Short",
    "pw-Zq9-hunter2-Zq9",
    "pw-Long-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// What `KICK`, `MUTE`, `BAN` and the rest name, past [`NAMES`]: addresses
/// in use (one written as IPv4-mapped IPv6), one nobody uses, and ranges:
/// one holding both IPv4 addresses, one exactly one IPv6 address, and a
/// malformed one.
pub const TARGETS: [&str; 7] = [
    "192.0.2.2",
    "::ffff:192.0.2.1",
    "2001:db8::1",
    "198.51.100.9",
    "192.0.2.0/30",
    "2001:db8::2/128",
    "192.0.2.0/33",
];

/// Operators' reasons; one looks like a duration.
pub const REASONS: [&str; 3] = ["", "flooding the room", "10m"];

/// Bans a snapshot loaded before anyone connects may hold (by mask bit):
/// nick bans, address bans, and one that has already run out.
fn snapshot_bans(now: i64) -> [Ban; 5] {
    let ban = |target, until| Ban {
        target,
        until,
        by: "admin".into(),
        reason: "loaded".into(),
    };
    let addr = |a: &str| BanTarget::Addr(Cidr::parse(a).expect("an address"));
    [
        ban(BanTarget::Nick("bob".into()), now + 300),
        ban(BanTarget::Nick("carol".into()), now + 20),
        ban(addr("192.0.2.2"), now + 300),
        ban(addr("2001:db8::1"), now + 60),
        ban(BanTarget::Nick("alice".into()), now - 1),
    ]
}

/// The time scripts start at.
pub const START: i64 = 1_795_000_000;

/// One fuzz input: a hub configuration and what happens to it.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Script {
    /// Seconds a connection may stay without a nickname.
    pub register_timeout: u8,
    /// The most rooms a client may be in: `1 + max_rooms % 4`; also the
    /// registrations per address and hour: `max_rooms / 4 % 4` (0: no limit);
    /// and the size of a big room: `max_rooms / 16 % 4` (0: none).
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
    /// A new connection in `slot` from one of [`ADDRS`], with an outbox of
    /// `1 + capacity % 64` unread lines. Nothing happens while the slot's
    /// last connection is still in the hub.
    Connect {
        /// Which client.
        slot: u8,
        /// Outbox size.
        capacity: u8,
        /// Index into [`ADDRS`].
        addr: u8,
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
    /// `REGISTER` with one of [`PASSWORDS`].
    Register {
        /// Which client.
        slot: u8,
        /// Index into [`PASSWORDS`].
        password: u8,
    },
    /// `LOGIN` to one of [`NAMES`] with one of [`PASSWORDS`].
    Login {
        /// Which client.
        slot: u8,
        /// Index into [`NAMES`].
        name: u8,
        /// Index into [`PASSWORDS`].
        password: u8,
    },
    /// `PASSWORD` from one of [`PASSWORDS`] to another.
    Password {
        /// Which client.
        slot: u8,
        /// Index into [`PASSWORDS`].
        old: u8,
        /// Index into [`PASSWORDS`].
        new: u8,
    },
    /// An operator command on one of [`NAMES`] or [`TARGETS`].
    Moderate {
        /// Which client.
        slot: u8,
        /// Which command.
        action: Sanction,
        /// Index into [`NAMES`] then [`TARGETS`].
        target: u8,
        /// `1 + secs` seconds, or the server's default.
        secs: Option<u8>,
        /// Index into [`REASONS`].
        reason: u8,
    },
    /// The accounts thread answers the oldest queued request (or all of
    /// them) as `outcome` says, or the request is refused as if the queue
    /// had been full.
    Answer {
        /// How.
        outcome: Outcome,
        /// Every queued request, not just the oldest.
        all: bool,
    },
    /// A snapshot of the accounts database is loaded: the [`NAMES`] whose
    /// bit is set in `accounts` (valid ones, first spelling of each) are
    /// registered, operators if their bit is set in `operators`. Before
    /// anyone connected (start-up), `bans` picks bans to load; later (a
    /// reload after `natter admin`, which can only lift bans) it picks the
    /// hub's current bans to drop.
    Load {
        /// Registered names, by bit.
        accounts: u16,
        /// Operators, by bit.
        operators: u16,
        /// Bans, by bit.
        bans: u8,
    },
}

/// The operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Sanction {
    /// `KICK`.
    Kick,
    /// `MUTE`.
    Mute,
    /// `UNMUTE`.
    Unmute,
    /// `BAN`.
    Ban,
    /// `UNBAN`.
    Unban,
}

/// How the accounts thread answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Outcome {
    /// As it would with the right password: `Registered` (or `Taken` if the
    /// database has the name), `LoggedIn` as a user, `PasswordChanged`
    /// (`WrongPassword` if the database lacks the account).
    Accept,
    /// The same, but the account is an operator (for a login).
    Operator,
    /// `Taken` for a registration (another process registered the name
    /// meanwhile), `WrongPassword` otherwise.
    Reject,
    /// `Failed`: a disk error.
    Failed,
    /// The request never reached the thread: `Hub::refused`.
    Refused,
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
    /// The last line was `ERR kicked` (or `ERR banned` instead of `HELLO`):
    /// `BYE` must come next.
    bye_next: bool,
    /// Every line received since the last check, parsed.
    log: Vec<ServerLine>,
    /// Big rooms exist: a message may come from someone not listed yet.
    big: bool,
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
        self.log.push(line.clone());
        if self.bye_next {
            assert!(
                matches!(line, ServerLine::Bye(_)),
                "client {who}: {body:?} where BYE was due"
            );
        }
        self.bye_next = matches!(
            line,
            ServerLine::Err {
                code: ErrorCode::Kicked,
                ..
            }
        );
        if !self.greeted {
            // A banned address is turned away at once: ERR banned, BYE.
            let turned_away = matches!(
                line,
                ServerLine::Err {
                    code: ErrorCode::Banned,
                    ..
                }
            );
            assert!(
                matches!(line, ServerLine::Hello { .. }) || turned_away,
                "client {who}: first line {body:?} is not HELLO"
            );
            self.greeted = true;
            self.bye_next |= turned_away;
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
            ServerLine::Joins { room, nicks } => {
                let big = self.big;
                let room = self.room(who, &room, body);
                for nick in nicks {
                    assert_eq!(names::check_nick(&nick), Ok(()), "client {who}: {body:?}");
                    let old = room.members.insert(fold(&nick), nick);
                    // A big room's newcomer holds its own name, and the
                    // rest of the list, before the flush names them.
                    assert!(
                        old.is_none() || big,
                        "client {who}: {body:?} but {old:?} is there"
                    );
                }
            }
            ServerLine::Parts { room, nicks } => {
                let me = self.me.clone().unwrap_or_default();
                let big = self.big;
                let room = self.room(who, &room, body);
                for nick in nicks {
                    // In a big room, a newcomer that took the nickname of
                    // someone gone since the last flush is sent that one's
                    // PARTS (the members' lists still name it); it keeps
                    // its own name, as clients do.
                    if big && fold(&nick) == fold(&me) {
                        continue;
                    }
                    assert!(fold(&nick) != fold(&me), "client {who}: own PARTS {body:?}");
                    // It may be gone already: a QUIT through a small room.
                    room.members.remove(&fold(&nick));
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
                let big = self.big;
                let room = self.room(who, &room, body);
                // In a big room the sender may come before its JOINS.
                assert!(
                    big || room.members.contains_key(&fold(&nick)),
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
            ServerLine::Account { nick, .. } => {
                assert_eq!(
                    names::check_nick(&nick),
                    Ok(()),
                    "client {who}: {body:?} names no nick"
                );
            }
            ServerLine::Mod {
                room, by, target, ..
            } => {
                // Only members of the room named hear it.
                self.room(who, &room, body);
                assert_eq!(names::check_nick(&by), Ok(()), "client {who}: {body:?}");
                assert_eq!(names::check_nick(&target), Ok(()), "client {who}: {body:?}");
            }
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
    /// Where it connects from, canonical (IPv4-mapped shown as IPv4).
    addr: IpAddr,
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

/// A connection a kick or ban must close: its nick and folded rooms before.
type Victim = (Rc<RefCell<Peer>>, Option<String>, BTreeSet<String>);

/// The harness: the hub, the clients and the clock.
struct World {
    hub: Hub<TestOutbox>,
    /// From how many members a room is big; 0: never.
    big_room: usize,
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
    /// Password checks taken from the hub, not yet answered: the accounts
    /// thread's queue.
    queue: VecDeque<Request>,
    /// What the accounts database holds, by folded nick.
    db: BTreeMap<String, AccountInfo>,
    /// The bans the hub has in force, as its requests and the snapshots
    /// tell: until when.
    bans: BTreeMap<String, (BanTarget, i64)>,
    /// [`PASSWORDS`] the script has said in the clear (in a chat line, a
    /// nick, a reason): those may appear in lines legitimately.
    said: BTreeSet<&'static str>,
}

fn room_name(index: u8) -> String {
    ROOMS[usize::from(index) % ROOMS.len()].to_owned()
}

fn time(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs).expect("script times stay in range")
}

fn password(index: u8) -> Secret {
    Secret::new(PASSWORDS[usize::from(index) % PASSWORDS.len()])
}

fn addr(index: u8) -> IpAddr {
    ADDRS[usize::from(index) % ADDRS.len()]
        .parse()
        .expect("ADDRS are addresses")
}

/// What an operator command names: one of [`NAMES`], then [`TARGETS`].
fn target(index: u8) -> String {
    let i = usize::from(index) % (NAMES.len() + TARGETS.len());
    NAMES
        .get(i)
        .unwrap_or_else(|| &TARGETS[i - NAMES.len()])
        .to_string()
}

fn ban_key(target: &BanTarget) -> String {
    format!("{target:?}")
}

/// The operator command an [`Op::Moderate`] stands for.
fn sanction(action: Sanction, target: String, secs: Option<u8>, reason: u8) -> Command {
    let secs = secs.map(|s| 1 + u64::from(s));
    let reason = REASONS[usize::from(reason) % REASONS.len()].to_owned();
    match action {
        Sanction::Kick => Command::Kick {
            nick: target,
            reason,
        },
        Sanction::Mute => Command::Mute {
            nick: target,
            secs,
            reason,
        },
        Sanction::Unmute => Command::Unmute(target),
        Sanction::Ban => Command::Ban {
            target,
            secs,
            reason,
        },
        Sanction::Unban => Command::Unban(target),
    }
}

/// From how many members a script's rooms are big: `max_rooms / 16 % 4`
/// picks never, 2, 3 or 4.
fn big_room(script: &Script) -> usize {
    match script.max_rooms / 16 % 4 {
        0 => 0,
        n => 1 + usize::from(n),
    }
}

/// Runs a script, checking every invariant after every step.
pub fn run(script: &Script) {
    let mut world = World {
        hub: Hub::with_config(HubConfig {
            register_timeout_secs: u64::from(script.register_timeout),
            max_rooms: 1 + usize::from(script.max_rooms % 4),
            history: script.history,
            // Off, or low enough for scripts to reach (the same byte as
            // `max_rooms`, so that the seeds stay as they are).
            registrations_per_hour: u32::from(script.max_rooms / 4 % 4),
            // Big rooms: never, or from 2, 3 or 4 members (the same byte
            // again; the seeds' small values keep them off).
            big_room: big_room(script),
            ..HubConfig::default()
        }),
        big_room: big_room(script),
        timeout: i64::from(script.register_timeout),
        now: START,
        next_id: 0,
        slots: Default::default(),
        all: Vec::new(),
        last_record: 0,
        history: script.history,
        queue: VecDeque::new(),
        db: BTreeMap::new(),
        bans: BTreeMap::new(),
        said: BTreeSet::new(),
    };
    for op in &script.ops {
        world.taint(op);
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
        let victims = self.victims(id, &command);
        let said = matches!(
            command,
            Command::Msg { .. } | Command::Whisper { .. } | Command::Topic { .. }
        );
        let heard = self.heard();
        self.hub.command(id, command, time(self.now));
        assert_eq!(
            peer.borrow().view.msgs,
            msgs,
            "client {id} was sent its own MSG"
        );
        let muted = peer.borrow().view.log.iter().any(|l| {
            matches!(
                l,
                ServerLine::Err {
                    code: ErrorCode::Muted,
                    ..
                }
            )
        });
        if said && muted {
            assert_eq!(
                self.heard(),
                heard,
                "client {id} is muted, yet its message went out"
            );
        }
        if let Some((action, victims)) = victims {
            self.check_sanction(id, action, &victims);
        }
    }

    /// The connections not removed, in the order they came.
    fn open(&self) -> impl Iterator<Item = &Rc<RefCell<Peer>>> {
        self.all.iter().filter(|p| !p.borrow().closed)
    }

    /// How many `MSG` and `WHISPER` lines all clients have received.
    fn heard(&self) -> usize {
        self.all.iter().map(|p| p.borrow().view.msgs).sum()
    }

    /// If `command` from `op` is a kick or ban that must close someone: the
    /// action, and for each connection it must close, its nick and the
    /// folded rooms it is in.
    fn victims(&self, op: ClientId, command: &Command) -> Option<(ModAction, Vec<Victim>)> {
        if !self.hub.is_operator(op) || self.hub.nick(op).is_none() {
            return None;
        }
        type Hit<'a> = Box<dyn Fn(&Peer) -> bool + 'a>;
        let (action, hit): (ModAction, Hit) = match command {
            Command::Kick { nick, .. } => {
                let key = fold(nick);
                let hub = &self.hub;
                (
                    ModAction::Kick,
                    Box::new(move |p: &Peer| hub.nick(p.id).map(fold).as_ref() == Some(&key)),
                )
            }
            Command::Ban { target, .. } => match BanTarget::parse(target) {
                BanTarget::Nick(key) => {
                    if names::check_nick(target).is_err() {
                        return None;
                    }
                    let hub = &self.hub;
                    (
                        ModAction::Ban,
                        Box::new(move |p: &Peer| hub.nick(p.id).map(fold).as_ref() == Some(&key)),
                    )
                }
                BanTarget::Addr(range) => (
                    ModAction::Ban,
                    Box::new(move |p: &Peer| range.contains(p.addr)),
                ),
            },
            _ => return None,
        };
        let victims: Vec<_> = self
            .open()
            .filter(|p| hit(&p.borrow()))
            .map(|p| {
                let id = p.borrow().id;
                let nick = self.hub.nick(id).map(str::to_owned);
                let rooms = self.hub.rooms_of(id).into_iter().map(fold).collect();
                (Rc::clone(p), nick, rooms)
            })
            .collect();
        // An operator cannot sanction itself: then nothing happens.
        if victims.iter().any(|(p, ..)| p.borrow().id == op) {
            return None;
        }
        Some((action, victims))
    }

    /// After a kick or ban: each target is gone, told `ERR kicked|banned`
    /// then `BYE`; everyone who shared a room with it saw `MOD`, then `QUIT`.
    fn check_sanction(&self, op: ClientId, action: ModAction, victims: &[Victim]) {
        let code = match action {
            ModAction::Kick => ErrorCode::Kicked,
            _ => ErrorCode::Banned,
        };
        let ids: BTreeSet<ClientId> = victims.iter().map(|(p, ..)| p.borrow().id).collect();
        for (victim, nick, rooms) in victims {
            let victim = victim.borrow();
            let id = victim.id;
            assert!(
                victim.closed,
                "client {id}: {action:?} by {op}, yet still here"
            );
            if !victim.refused {
                let log = &victim.view.log;
                let tail = log.get(log.len().saturating_sub(2)..).unwrap_or_default();
                assert!(
                    matches!(tail, [ServerLine::Err { code: c, .. }, ServerLine::Bye(_)] if *c == code),
                    "client {id}: {action:?}, and its last lines are {log:?}"
                );
            }
            let Some(nick) = nick else { continue };
            for other in self.all.iter().map(|p| p.borrow()) {
                if other.refused || ids.contains(&other.id) || other.view.me.is_none() {
                    continue;
                }
                let shared: Vec<&str> = self
                    .hub
                    .rooms_of(other.id)
                    .into_iter()
                    .filter(|r| rooms.contains(&fold(r)))
                    .collect();
                if shared.is_empty() {
                    continue;
                }
                // A big room tells the departure at its next flush (it has
                // news pending now); a small one with a QUIT at once.
                let small = shared.iter().any(|r| !self.hub.presence_pending(r));
                let log = &other.view.log;
                let told = log.iter().position(|l| {
                    matches!(l, ServerLine::Mod { action: a, target, .. }
                        if *a == action && target == nick)
                });
                let quit = log
                    .iter()
                    .rposition(|l| matches!(l, ServerLine::Quit { nick: n, .. } if n == nick));
                assert!(
                    match (told, quit) {
                        (Some(t), Some(q)) => t < q || !small,
                        (Some(_), None) => !small,
                        _ => false,
                    },
                    "client {}: shared a room with {nick}, {action:?} by {op}, yet got {log:?}",
                    other.id
                );
            }
        }
    }

    /// Notes the [`PASSWORDS`] an op says in the clear. A password field
    /// is hidden from `Debug`, so what `Debug` shows is what others may see.
    fn taint(&mut self, op: &Op) {
        let shown = match op {
            Op::Line { line, .. } => parse_command(line)
                .map(|c| format!("{c:?}"))
                .unwrap_or_default(),
            Op::Command { command, .. } => format!("{command:?}"),
            other => format!("{other:?}"),
        };
        // The server drops characters from what it echoes (control
        // characters from every line, anything not allowed from a
        // suggested nickname), so a password the script wrote with other
        // characters in between (`pw-a\u{1}b`, `pw-a!b`) may reach the wire
        // whole: it counts as said if it is a subsequence of what the op
        // shows, with `Debug`'s escapes for control characters removed.
        let shown = without_control_escapes(&shown);
        for password in PASSWORDS {
            if is_subsequence(password, &shown) {
                self.said.insert(password);
            }
        }
    }

    /// The accounts thread's answer to `request`, as `outcome` says; `None`
    /// if it sends none.
    fn answer(&mut self, request: &Request, outcome: Outcome) -> Option<Answer> {
        let accept = matches!(outcome, Outcome::Accept | Outcome::Operator);
        Some(match request {
            Request::Register { client, .. }
            | Request::Login { client, .. }
            | Request::ChangePassword { client, .. }
                if outcome == Outcome::Failed =>
            {
                Answer::Failed { client: *client }
            }
            Request::Register {
                client,
                nick,
                since,
                ..
            } => {
                if accept && !self.db.contains_key(&fold(nick)) {
                    let account = AccountInfo {
                        nick: nick.clone(),
                        operator: false,
                        since: *since,
                    };
                    self.db.insert(fold(nick), account.clone());
                    Answer::Registered {
                        client: *client,
                        account,
                    }
                } else {
                    Answer::Taken {
                        client: *client,
                        nick: nick.clone(),
                    }
                }
            }
            Request::Login { client, nick, .. } => match self.db.get_mut(&fold(nick)) {
                Some(account) if accept => {
                    account.operator = outcome == Outcome::Operator;
                    Answer::LoggedIn {
                        client: *client,
                        account: account.clone(),
                    }
                }
                _ => Answer::WrongPassword {
                    client: *client,
                    nick: nick.clone(),
                },
            },
            Request::ChangePassword { client, nick, .. } => {
                if accept && self.db.contains_key(&fold(nick)) {
                    Answer::PasswordChanged { client: *client }
                } else {
                    Answer::WrongPassword {
                        client: *client,
                        nick: nick.clone(),
                    }
                }
            }
            Request::SaveBan(_)
            | Request::RemoveBan(_)
            | Request::SaveMute(_)
            | Request::RemoveMute(_) => return None,
        })
    }

    /// Takes the hub's new requests into the queue, checking them and
    /// mirroring the bans they store.
    fn take_requests(&mut self) {
        for request in self.hub.take_requests() {
            let shown = format!("{request:?}");
            for password in PASSWORDS {
                assert!(
                    !shown.contains(password),
                    "a request's Debug shows a password: {shown}"
                );
            }
            let closed = |client: &ClientId| {
                self.all
                    .iter()
                    .find(|p| p.borrow().id == *client)
                    .is_none_or(|p| p.borrow().closed)
            };
            match &request {
                Request::Register { client, nick, .. } => assert!(
                    closed(client) || self.hub.nick(*client) == Some(nick.as_str()),
                    "client {client}: registers {nick} but is {:?}",
                    self.hub.nick(*client)
                ),
                Request::Login { client, nick, .. } => {
                    assert_eq!(names::check_nick(nick), Ok(()), "client {client}: login");
                    assert!(
                        closed(client) || self.hub.is_registered(nick),
                        "client {client}: login to {nick}, which is not registered"
                    );
                }
                Request::ChangePassword { client, nick, .. } => assert!(
                    closed(client) || self.hub.account_of(*client) == Some(fold(nick).as_str()),
                    "client {client}: changes the password of {nick}, not its account"
                ),
                // The thread stores these and answers nothing: they take no
                // `Answer` op.
                Request::SaveBan(ban) => {
                    self.bans
                        .insert(ban_key(&ban.target), (ban.target.clone(), ban.until));
                    continue;
                }
                Request::RemoveBan(target) => {
                    self.bans.remove(&ban_key(target));
                    continue;
                }
                Request::SaveMute(_) | Request::RemoveMute(_) => continue,
            }
            self.queue.push_back(request);
        }
        // One password check at a time per connection.
        let mut checking = BTreeSet::new();
        for request in &self.queue {
            if let Request::Register { client, .. }
            | Request::Login { client, .. }
            | Request::ChangePassword { client, .. } = request
            {
                assert!(
                    checking.insert(*client),
                    "client {client}: two password checks queued"
                );
            }
        }
    }

    fn step(&mut self, op: &Op) {
        let now = time(self.now);
        match op {
            Op::Connect {
                slot,
                capacity,
                addr: at,
            } => {
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
                    addr: addr(*at).to_canonical(),
                    view: View {
                        big: self.big_room > 0,
                        ..View::default()
                    },
                }));
                self.slots[slot] = Some(Rc::clone(&peer));
                self.all.push(Rc::clone(&peer));
                self.hub
                    .connect_from(self.next_id, TestOutbox(Rc::clone(&peer)), addr(*at), now);
                let peer = peer.borrow();
                let banned = self.address_banned(peer.addr);
                assert_eq!(
                    peer.closed, banned,
                    "client {}: from {}, banned: {banned}, turned away: {}",
                    peer.id, peer.addr, peer.closed
                );
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
                self.hub.flush_presence(time(self.now));
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
                    // The session's own ERR (any code, even `kicked`) is not
                    // the hub closing the connection: no BYE follows.
                    peer.borrow_mut().view.bye_next = false;
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
            Op::Register { slot, password: p } => {
                self.command(*slot, Command::Register(password(*p)));
            }
            Op::Login {
                slot,
                name,
                password: p,
            } => {
                let nick = NAMES[usize::from(*name) % NAMES.len()].to_owned();
                self.command(
                    *slot,
                    Command::Login {
                        nick,
                        password: password(*p),
                    },
                );
            }
            Op::Password { slot, old, new } => {
                self.command(
                    *slot,
                    Command::Password {
                        old: password(*old),
                        new: password(*new),
                    },
                );
            }
            Op::Moderate {
                slot,
                action,
                target: t,
                secs,
                reason,
            } => self.command(*slot, sanction(*action, target(*t), *secs, *reason)),
            Op::Answer { outcome, all } => {
                let n = if *all { self.queue.len() } else { 1 };
                for _ in 0..n {
                    let Some(request) = self.queue.pop_front() else {
                        break;
                    };
                    if *outcome == Outcome::Refused {
                        self.hub.refused(request, now);
                    } else if let Some(reply) = self.answer(&request, *outcome) {
                        self.hub.account(reply, now);
                    }
                }
            }
            Op::Load {
                accounts,
                operators,
                bans,
            } => {
                let mut snapshot = Snapshot::default();
                for (i, nick) in NAMES.iter().enumerate() {
                    let taken = snapshot
                        .accounts
                        .iter()
                        .any(|a| fold(&a.nick) == fold(nick));
                    if accounts >> i & 1 == 0 || names::check_nick(nick).is_err() || taken {
                        continue;
                    }
                    snapshot.accounts.push(AccountInfo {
                        nick: (*nick).to_owned(),
                        operator: operators >> i & 1 == 1,
                        since: 0,
                    });
                }
                if self.hub.is_empty() {
                    for (i, ban) in snapshot_bans(self.now).into_iter().enumerate() {
                        if bans >> i & 1 == 1 {
                            snapshot.bans.push(ban);
                        }
                    }
                } else {
                    // An admin can only lift bans while the server runs.
                    for (i, (target, until)) in self.bans.values().enumerate() {
                        if bans >> (i % 8) & 1 == 0 {
                            snapshot.bans.push(Ban {
                                target: target.clone(),
                                until: *until,
                                by: "op".into(),
                                reason: String::new(),
                            });
                        }
                    }
                }
                self.db = snapshot
                    .accounts
                    .iter()
                    .map(|a| (fold(&a.nick), a.clone()))
                    .collect();
                self.bans = snapshot
                    .bans
                    .iter()
                    .map(|b| (ban_key(&b.target), (b.target.clone(), b.until)))
                    .collect();
                self.hub.load(snapshot, now);
            }
        }
    }

    /// True if the hub has a ban on `target` in force now.
    fn banned(&self, target: &BanTarget) -> bool {
        self.bans
            .get(&ban_key(target))
            .is_some_and(|(_, until)| *until > self.now)
    }

    /// True if an address ban in force now covers `addr` (a range, or the
    /// /64 of an IPv6 address).
    fn address_banned(&self, addr: IpAddr) -> bool {
        self.bans
            .values()
            .any(|(target, until)| *until > self.now && target.covers_addr(addr))
    }

    /// Accounts, operators and bans, as the hub has them.
    fn check_accounts(&self) {
        for peer in self.open() {
            let peer = peer.borrow();
            let id = peer.id;
            let account = self.hub.account_of(id);
            if let Some(nick) = self.hub.nick(id) {
                if self.hub.is_registered(nick) {
                    assert_eq!(
                        account,
                        Some(fold(nick).as_str()),
                        "client {id} holds the registered {nick}, logged in to {account:?}"
                    );
                }
                assert!(
                    !self.banned(&BanTarget::Nick(fold(nick))),
                    "client {id} holds the banned nick {nick}"
                );
            }
            if let Some(account) = account {
                assert!(
                    self.hub.is_registered(account),
                    "client {id} is logged in to {account}, which is not registered"
                );
            }
            assert!(
                !self.hub.is_operator(id) || account.is_some(),
                "client {id} is an operator without an account"
            );
            assert!(
                !self.address_banned(peer.addr),
                "client {id} is connected from the banned {}",
                peer.addr
            );
        }
    }

    /// The invariants that hold between steps.
    fn check(&mut self) {
        self.take_requests();
        self.check_accounts();
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
            for line in std::mem::take(&mut peer.view.log) {
                let text = line.to_line();
                for password in PASSWORDS {
                    assert!(
                        self.said.contains(password) || !text.contains(password),
                        "client {id} was sent a password: {text:?}"
                    );
                }
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
            // Rooms are the truth at once; members where no presence
            // news is pending.
            assert!(
                peer.view.rooms.keys().eq(truth.keys()),
                "client {id}: in {:?}, not {:?}",
                peer.view.rooms.keys().collect::<Vec<_>>(),
                truth.keys().collect::<Vec<_>>()
            );
            for (key, room) in &truth {
                if !self.hub.presence_pending(&room.name) {
                    assert_eq!(
                        peer.view.rooms.get(key),
                        Some(room),
                        "client {id}: wrong members of {}",
                        room.name
                    );
                }
            }
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

/// The seed scripts for accounts and moderation, committed as
/// `fuzz/corpus/hub/<name>` in the bytes [`to_bytes`] gives
/// (`tests/fuzz_regressions.rs` checks the files are current, and rewrites
/// them with `NATTER_WRITE_SEEDS=1`).
pub fn seeds() -> Vec<(&'static str, Script)> {
    let connect = |slot, addr| Op::Connect {
        slot,
        capacity: 63,
        addr,
    };
    let nick = |slot, name| Op::Nick { slot, name };
    let login = |slot, name, password| Op::Login {
        slot,
        name,
        password,
    };
    let answer = |outcome| Op::Answer {
        outcome,
        all: false,
    };
    let moderate = |slot, action, target, secs, reason| Op::Moderate {
        slot,
        action,
        target,
        secs,
        reason,
    };
    let say = |slot, text: &str| Op::Say {
        slot,
        room: None,
        text: text.into(),
    };
    let script = |history, ops| Script {
        register_timeout: 60,
        max_rooms: 2,
        history,
        ops,
    };
    // Slot 0 logs in to alice, an operator, from 192.0.2.1.
    let operator = || {
        vec![
            Op::Load {
                accounts: 1,
                operators: 1,
                bans: 0,
            },
            connect(0, 0),
            login(0, 0, 0),
            answer(Outcome::Operator),
        ]
    };
    let with_operator = |ops: Vec<Op>| [operator(), ops].concat();
    let join = |slot, room| Op::Join { slot, room };
    let tick = Op::Tick { secs: 0 };
    vec![
        (
            // Rooms of 2 and more are big: arrivals and departures inside
            // one interval, a rename, a disconnect and a retaken nick.
            "big-rooms",
            Script {
                register_timeout: 60,
                max_rooms: 16 + 2,
                history: false,
                ops: vec![
                    connect(0, 0),
                    nick(0, 0),
                    connect(1, 1),
                    nick(1, 3),
                    tick.clone(),
                    connect(2, 2),
                    nick(2, 5),
                    join(2, 1),
                    join(0, 1),
                    Op::Part {
                        slot: 2,
                        room: Some(1),
                    },
                    join(2, 1),
                    say(2, "hi"),
                    nick(1, 4),
                    tick.clone(),
                    Op::Disconnect {
                        slot: 1,
                        reason: "reset".into(),
                    },
                    connect(3, 3),
                    nick(3, 4),
                    join(3, 1),
                    tick.clone(),
                    Op::Disconnect {
                        slot: 2,
                        reason: String::new(),
                    },
                    tick,
                ],
            },
        ),
        (
            "accounts-register-login",
            script(
                false,
                vec![
                    connect(0, 0),
                    nick(0, 0),
                    Op::Register {
                        slot: 0,
                        password: 2,
                    },
                    Op::Register {
                        slot: 0,
                        password: 0,
                    },
                    answer(Outcome::Accept),
                    connect(1, 2),
                    nick(1, 1),
                    say(1, "pw-Correct-Horse-1?"),
                    Op::Disconnect {
                        slot: 0,
                        reason: "eof".into(),
                    },
                    login(1, 2, 1),
                    answer(Outcome::Reject),
                    login(1, 2, 0),
                    login(1, 2, 0),
                    answer(Outcome::Accept),
                    Op::Password {
                        slot: 1,
                        old: 0,
                        new: 3,
                    },
                    answer(Outcome::Accept),
                ],
            ),
        ),
        (
            "accounts-evict-guest",
            script(
                true,
                vec![
                    connect(0, 1),
                    nick(0, 5),
                    Op::Join { slot: 0, room: 1 },
                    connect(1, 3),
                    nick(1, 3),
                    Op::Join { slot: 1, room: 2 },
                    Op::Load {
                        accounts: 1 << 5,
                        operators: 0,
                        bans: 0,
                    },
                    login(1, 5, 0),
                    answer(Outcome::Accept),
                    connect(2, 2),
                    login(2, 5, 0),
                    answer(Outcome::Operator),
                    Op::Load {
                        accounts: 0,
                        operators: 0,
                        bans: 0,
                    },
                ],
            ),
        ),
        (
            "accounts-busy-refused-failed",
            script(
                false,
                vec![
                    connect(0, 3),
                    nick(0, 4),
                    Op::Register {
                        slot: 0,
                        password: 0,
                    },
                    answer(Outcome::Refused),
                    Op::Register {
                        slot: 0,
                        password: 0,
                    },
                    answer(Outcome::Failed),
                    Op::Register {
                        slot: 0,
                        password: 4,
                    },
                    Op::Register {
                        slot: 0,
                        password: 1,
                    },
                    connect(1, 4),
                    login(1, 4, 1),
                    Op::Answer {
                        outcome: Outcome::Accept,
                        all: true,
                    },
                ],
            ),
        ),
        (
            "moderation-kick",
            script(
                false,
                with_operator(vec![
                    connect(1, 1),
                    nick(1, 3),
                    Op::Join { slot: 1, room: 1 },
                    Op::Join { slot: 0, room: 2 },
                    connect(2, 2),
                    nick(2, 5),
                    moderate(2, Sanction::Kick, 3, None, 1),
                    moderate(0, Sanction::Kick, 0, None, 1),
                    moderate(0, Sanction::Kick, 3, None, 1),
                    moderate(0, Sanction::Kick, 5, None, 0),
                ]),
            ),
        ),
        (
            "moderation-mute",
            script(
                false,
                with_operator(vec![
                    connect(1, 1),
                    nick(1, 3),
                    moderate(0, Sanction::Mute, 3, Some(29), 2),
                    say(1, "hello"),
                    nick(1, 4),
                    Op::Tick { secs: 20 },
                    moderate(0, Sanction::Unmute, 3, None, 0),
                    say(1, "hello again"),
                    moderate(0, Sanction::Mute, 4, None, 1),
                    Op::Tick { secs: 255 },
                    say(1, "still here"),
                ]),
            ),
        ),
        (
            "moderation-ban",
            script(
                false,
                with_operator(vec![
                    connect(1, 1),
                    nick(1, 3),
                    connect(2, 3),
                    nick(2, 5),
                    connect(3, 1),
                    moderate(0, Sanction::Ban, 11, None, 0),
                    moderate(0, Sanction::Ban, 5, Some(9), 1),
                    moderate(0, Sanction::Ban, 10, Some(99), 2),
                    connect(1, 1),
                    connect(2, 2),
                    nick(2, 5),
                    Op::Tick { secs: 11 },
                    nick(2, 5),
                    moderate(0, Sanction::Unban, 10, None, 0),
                    connect(1, 1),
                    login(1, 0, 0),
                    answer(Outcome::Accept),
                ]),
            ),
        ),
        (
            "moderation-startup-bans",
            script(
                false,
                vec![
                    Op::Load {
                        accounts: 0b10_0010_1001,
                        operators: 0b1000,
                        bans: 0b1_1111,
                    },
                    connect(0, 1),
                    connect(1, 2),
                    connect(2, 3),
                    nick(2, 3),
                    login(2, 5, 0),
                    login(2, 0, 0),
                    answer(Outcome::Accept),
                    Op::Tick { secs: 61 },
                    connect(3, 2),
                    nick(3, 5),
                    Op::Load {
                        accounts: 0,
                        operators: 0,
                        bans: 0xff,
                    },
                    connect(0, 1),
                ],
            ),
        ),
    ]
}

/// The bytes that `arbitrary` (1.x) reads back as `script`, for seeds.
/// Only what seeds need: strings must be short (the whole input at most 256
/// bytes), and `Op::Command`, `Op::Line` and `Op::Reply` are not written.
pub fn to_bytes(script: &Script) -> Vec<u8> {
    let mut out = Bytes::default();
    out.u8(script.register_timeout);
    out.u8(script.max_rooms);
    out.u8(script.history.into());
    for op in &script.ops {
        // A collection read to the end: "one more" before each element.
        out.u8(1);
        out.op(op);
    }
    out.u8(0);
    out.finish()
}

/// Bytes for `arbitrary`: fields from the front, string lengths from the back.
#[derive(Default)]
struct Bytes {
    front: Vec<u8>,
    lengths: Vec<u8>,
}

impl Bytes {
    fn u8(&mut self, v: u8) {
        self.front.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.front.extend_from_slice(&v.to_le_bytes());
    }

    /// Variant `index` of an enum of `count`: `arbitrary` takes a `u32` `x`
    /// and picks `(x * count) >> 32`.
    fn tag(&mut self, index: u64, count: u64) {
        let x = (index << 32).div_ceil(count);
        assert_eq!((x * count) >> 32, index);
        self.front
            .extend_from_slice(&u32::try_from(x).expect("a u32").to_le_bytes());
    }

    fn option(&mut self, v: Option<u8>) {
        self.u8(v.is_some().into());
        if let Some(v) = v {
            self.u8(v);
        }
    }

    fn text(&mut self, s: &str) {
        self.lengths
            .push(u8::try_from(s.len()).expect("a short string"));
        self.front.extend_from_slice(s.as_bytes());
    }

    fn op(&mut self, op: &Op) {
        const OPS: u64 = 20;
        match op {
            Op::Connect {
                slot,
                capacity,
                addr,
            } => {
                self.tag(0, OPS);
                self.u8(*slot);
                self.u8(*capacity);
                self.u8(*addr);
            }
            Op::Nick { slot, name } => {
                self.tag(1, OPS);
                self.u8(*slot);
                self.u8(*name);
            }
            Op::Say { slot, room, text } => {
                self.tag(2, OPS);
                self.u8(*slot);
                self.option(*room);
                self.text(text);
            }
            Op::Join { slot, room } => {
                self.tag(3, OPS);
                self.u8(*slot);
                self.u8(*room);
            }
            Op::Part { slot, room } => {
                self.tag(4, OPS);
                self.u8(*slot);
                self.option(*room);
            }
            Op::Whisper { slot, to, text } => {
                self.tag(5, OPS);
                self.u8(*slot);
                self.u8(*to);
                self.text(text);
            }
            Op::Disconnect { slot, reason } => {
                self.tag(8, OPS);
                self.u8(*slot);
                self.text(reason);
            }
            Op::Tick { secs } => {
                self.tag(9, OPS);
                self.u8(*secs);
            }
            Op::StopReading { slot } => {
                self.tag(10, OPS);
                self.u8(*slot);
            }
            Op::Vanish { slot } => {
                self.tag(11, OPS);
                self.u8(*slot);
            }
            Op::Shutdown => self.tag(13, OPS),
            Op::Register { slot, password } => {
                self.tag(14, OPS);
                self.u8(*slot);
                self.u8(*password);
            }
            Op::Login {
                slot,
                name,
                password,
            } => {
                self.tag(15, OPS);
                self.u8(*slot);
                self.u8(*name);
                self.u8(*password);
            }
            Op::Password { slot, old, new } => {
                self.tag(16, OPS);
                self.u8(*slot);
                self.u8(*old);
                self.u8(*new);
            }
            Op::Moderate {
                slot,
                action,
                target,
                secs,
                reason,
            } => {
                self.tag(17, OPS);
                self.u8(*slot);
                self.tag(*action as u64, 5);
                self.u8(*target);
                self.option(*secs);
                self.u8(*reason);
            }
            Op::Answer { outcome, all } => {
                self.tag(18, OPS);
                self.tag(*outcome as u64, 5);
                self.u8((*all).into());
            }
            Op::Load {
                accounts,
                operators,
                bans,
            } => {
                self.tag(19, OPS);
                self.u16(*accounts);
                self.u16(*operators);
                self.u8(*bans);
            }
            Op::Command { .. } | Op::Line { .. } | Op::Reply { .. } => {
                panic!("seed scripts do not write {op:?}")
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.front.extend(self.lengths.iter().rev());
        assert!(
            self.lengths.is_empty() || self.front.len() <= 256,
            "a seed with strings must fit in 256 bytes"
        );
        self.front
    }
}

/// `text` without the escapes `Debug` writes for control characters
/// (`\n`, `\r`, `\t`, `\0`, `\u{..}`).
fn without_control_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('n' | 'r' | 't' | '0') => {
                chars.next();
            }
            Some('u') => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
            }
            Some(&other) => {
                chars.next();
                out.push('\\');
                out.push(other);
            }
            None => out.push(c),
        }
    }
    out
}

/// True if the characters of `needle` appear in `haystack` in order.
fn is_subsequence(needle: &str, haystack: &str) -> bool {
    let mut rest = haystack.chars();
    needle.chars().all(|c| rest.any(|h| h == c))
}
