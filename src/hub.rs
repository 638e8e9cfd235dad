//! The hub: the one owner of who is connected, who is called what, who is in
//! which room, and who hears what.
//!
//! It is a plain state machine with no IO and no clock: the server's hub task
//! feeds it connects, commands and disconnects with the current time, and it
//! pushes encoded lines into each client's [`Outbox`]. Messages to keep and
//! history to fetch are queued as [`Record`]s and [`Fetch`]es for the server
//! to hand to the store. That is what lets the fuzzers and unit tests drive it
//! directly, with many clients, in one thread.
//!
//! Invariants (checked by the tests and the hub fuzz target):
//! - nicknames are unique case-insensitively;
//! - every registered client starts in `#lobby`; `USERS #room` lists exactly
//!   the room's members, and a room line reaches only its members;
//! - nobody is sent their own chat message, and a private message reaches
//!   only its recipient;
//! - a client whose outbox rejects a line is removed at once, its leave is
//!   announced once, and nobody else waits for it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use crate::accounts::{AccountInfo, Ban, BanTarget, Request};
use crate::ids::ClientId;
use crate::limiter::Limiter;
use crate::names::{self, NickError};
use crate::protocol::{
    encode, Command, ErrorCode, HistoryQuery, Line, ServerLine, Timestamp, LOBBY, PROTOCOL_VERSION,
};
use crate::store::{Fetch, Place, Range, Record, Scope};

/// Why an outbox refused a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The client has not read what it was sent and its queue is at its limit.
    #[error("outbox full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Where the hub puts lines for one client. The server's implementation is a
/// bounded queue drained by the client's writer task. Rooms hold clones, so
/// a broadcast goes straight from a room to its members' outboxes.
pub trait Outbox: Clone {
    /// Queues a line for the client, or says why it cannot.
    fn push(&mut self, line: &Line) -> Result<(), Rejected>;
    /// Nothing more will be queued: the connection closes once the queued
    /// lines are written.
    fn close(&mut self);
}

/// The `HIST` line for a stored record.
pub fn history_line(record: &Record) -> ServerLine {
    let time = Timestamp::from_unix(record.time).unwrap_or_else(Timestamp::now);
    let live = match &record.place {
        Place::Room(room) => ServerLine::Msg {
            time,
            id: record.id,
            room: room.clone(),
            nick: record.nick.clone(),
            text: record.text.clone(),
        },
        Place::Private(to) => ServerLine::Whisper {
            time,
            id: record.id,
            from: record.nick.clone(),
            to: to.clone(),
            text: record.text.clone(),
        },
    };
    ServerLine::History(Box::new(live))
}

mod accounts;
mod moderation;

struct Client<O> {
    /// `None` until the client picks a nickname.
    nick: Option<String>,
    outbox: O,
    /// Folded names of the rooms the client is in, in the order it joined
    /// them; the last one is where messages without a room go.
    rooms: Vec<String>,
    /// The last message id when the client took its nickname: a guest may
    /// read only private history newer than that, so a nickname's next owner
    /// never reads the last one's whispers. For an account's owner, the id
    /// when the account was registered.
    since: u64,
    /// Where the connection comes from: bans and login limits go by it.
    addr: IpAddr,
    /// The folded nickname of the account it logged in to, if any.
    account: Option<String>,
    /// Whether that account is an operator.
    operator: bool,
    /// A password check for it is under way: one at a time.
    pending: bool,
}

struct Topic {
    time: Timestamp,
    nick: String,
    text: String,
}

struct Room<O> {
    /// The name as its creator wrote it.
    name: String,
    /// Members and a clone of each one's outbox, so a broadcast needs no
    /// other lookup.
    members: HashMap<ClientId, O>,
    topic: Option<Topic>,
}

/// What the hub is told at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Seconds a connection may go without a nickname.
    pub register_timeout_secs: u64,
    /// The most rooms one client may be in at once.
    pub max_rooms: usize,
    /// Whether messages are recorded and history can be fetched.
    pub history: bool,
    /// How many messages are replayed on joining a room.
    pub replay: usize,
    /// The largest message id already used (from the store), so ids keep
    /// growing across restarts.
    pub last_msg_id: u64,
    /// Seconds a `MUTE` without a duration lasts.
    pub mute_default_secs: u64,
    /// Seconds a `BAN` without a duration lasts.
    pub ban_default_secs: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            register_timeout_secs: 60,
            max_rooms: 32,
            history: false,
            replay: 50,
            last_msg_id: 0,
            mute_default_secs: 10 * 60,
            ban_default_secs: 24 * 3600,
        }
    }
}

/// The most `ROOM` lines one `ROOMS` answer holds.
const ROOMS_LISTED: usize = 100;

/// The chat's state: clients, their nicknames and the rooms.
pub struct Hub<O> {
    config: HubConfig,
    clients: HashMap<ClientId, Client<O>>,
    /// Registered clients by folded nickname; sorted, so lists are too.
    nicks: BTreeMap<String, ClientId>,
    /// Rooms by folded name. A room exists while it has members; the lobby
    /// always exists.
    rooms: HashMap<String, Room<O>>,
    /// The id of the last message; ids only grow.
    last_msg_id: u64,
    /// Clients whose outbox rejected a line, to be removed once the current
    /// broadcast is done.
    dropped: Vec<(ClientId, Rejected)>,
    /// Connections in the order they came, with the Unix second by which
    /// they must have a nickname; deadlines only grow, so expiry pops the
    /// front. `tick` drops the entries of clients no longer waiting.
    deadlines: VecDeque<(i64, ClientId)>,
    /// Messages to store, taken by [`Hub::take_records`].
    records: Vec<Record>,
    /// History requests for the store, taken by [`Hub::take_fetches`].
    fetches: Vec<Fetch>,
    /// Registered nicknames by folded name.
    registered: HashMap<String, AccountInfo>,
    /// Bans by target; expired ones are dropped by `tick`.
    bans: HashMap<BanTarget, Ban>,
    /// Muted folded nicknames: until when, and by whom.
    mutes: HashMap<String, (i64, String)>,
    /// Failed logins per address.
    failed_by_addr: Limiter<IpAddr>,
    /// Failed logins per account (folded nickname).
    failed_by_account: Limiter<String>,
    /// Work for the accounts thread, taken by [`Hub::take_requests`].
    requests: Vec<Request>,
    /// Password checks under way, per address key.
    checking: HashMap<IpAddr, u32>,
}

impl<O: Outbox> Hub<O> {
    /// An empty chat without history whose connections must pick a nickname
    /// within `register_timeout_secs` seconds.
    pub fn new(register_timeout_secs: u64) -> Self {
        Self::with_config(HubConfig {
            register_timeout_secs,
            ..HubConfig::default()
        })
    }

    /// An empty chat configured by `config`.
    pub fn with_config(config: HubConfig) -> Self {
        let mut rooms = HashMap::new();
        rooms.insert(
            names::fold(LOBBY),
            Room {
                name: LOBBY.to_owned(),
                members: HashMap::new(),
                topic: None,
            },
        );
        Self {
            config,
            clients: HashMap::new(),
            nicks: BTreeMap::new(),
            rooms,
            last_msg_id: config.last_msg_id,
            dropped: Vec::new(),
            deadlines: VecDeque::new(),
            records: Vec::new(),
            fetches: Vec::new(),
            registered: HashMap::new(),
            bans: HashMap::new(),
            mutes: HashMap::new(),
            failed_by_addr: Limiter::default(),
            failed_by_account: Limiter::default(),
            requests: Vec::new(),
            checking: HashMap::new(),
        }
    }

    /// A new connection at `now`, from an unknown address: see
    /// [`Hub::connect_from`].
    pub fn connect(&mut self, id: ClientId, outbox: O, now: Timestamp) {
        self.connect_from(id, outbox, IpAddr::V4(Ipv4Addr::UNSPECIFIED), now);
    }

    /// A new connection from `addr` at `now`: greets it, or turns it away if
    /// the address is banned. It must register with `NICK` (or `LOGIN`) to
    /// chat.
    pub fn connect_from(&mut self, id: ClientId, outbox: O, addr: IpAddr, now: Timestamp) {
        let client = Client {
            nick: None,
            outbox,
            rooms: Vec::new(),
            since: 0,
            addr: addr.to_canonical(),
            account: None,
            operator: false,
            pending: false,
        };
        self.clients.insert(id, client);
        if let Some(ban) = self.ban_on(&BanTarget::Addr(addr.to_canonical()), now) {
            let text = moderation::ban_text(&ban, now);
            self.error(id, ErrorCode::Banned, text);
            self.send(id, &ServerLine::Bye("Goodbye.".into()));
            self.remove(id, "banned address", now);
            return self.settle(now);
        }
        let timeout = i64::try_from(self.config.register_timeout_secs).unwrap_or(i64::MAX);
        self.deadlines
            .push_back((now.unix().saturating_add(timeout), id));
        self.send(id, &greeting());
        self.settle(now);
    }

    /// Closes the connections that have gone without a nickname past their
    /// deadline. The server calls it about once a second.
    pub fn tick(&mut self, now: Timestamp) {
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now.unix() {
                break;
            }
            self.deadlines.pop_front();
            if self.nick(id).is_some() || !self.clients.contains_key(&id) {
                continue;
            }
            let secs = self.config.register_timeout_secs;
            self.error(
                id,
                ErrorCode::Timeout,
                format!("No nickname was picked within {secs} seconds; closing the connection."),
            );
            self.send(
                id,
                &ServerLine::Bye("Come back when you have a nickname.".into()),
            );
            self.remove(id, "registration timeout", now);
        }
        // Entries of clients that registered or left stay until their
        // deadline; under churn that is a minute of connections. Drop them
        // once they outnumber the waiting ones, and give the memory back.
        let waiting = self.clients.len().saturating_sub(self.nicks.len());
        if self.deadlines.len() > 2 * waiting + 64 {
            let clients = &self.clients;
            self.deadlines
                .retain(|(_, id)| clients.get(id).is_some_and(|c| c.nick.is_none()));
            self.deadlines.shrink_to(2 * self.deadlines.len() + 64);
        }
        self.expire_sanctions(now);
        self.settle(now);
    }

    /// Applies one command from client `id`, received at `now`.
    pub fn command(&mut self, id: ClientId, command: Command, now: Timestamp) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let registered = client.nick.is_some();
        match command {
            Command::Nick(nick) => self.set_nick(id, &nick, now),
            Command::Help => {
                for text in HELP {
                    self.send(id, &ServerLine::Info(text.to_owned()));
                }
            }
            Command::Ping(token) => self.send(id, &ServerLine::Pong(token)),
            Command::Quit(reason) => {
                self.send(id, &ServerLine::Bye("Goodbye!".to_owned()));
                self.remove(id, &reason, now);
            }
            Command::Login { nick, password } => self.login(id, nick, password, now),
            _ if !registered => self.error(
                id,
                ErrorCode::NotRegistered,
                "Pick a nickname first: type NICK yourname (letters, digits, _ and -).".into(),
            ),
            Command::Msg { room, text } => self.say(id, room.as_deref(), text, now),
            Command::Users { room } => {
                if let Some(key) = self.member_room(id, room.as_deref()) {
                    let line = self.users(&key);
                    self.send(id, &line);
                }
            }
            Command::Join(room) => self.join(id, &room, now),
            Command::Part { room, reason } => {
                if let Some(key) = self.member_room(id, room.as_deref()) {
                    self.part(id, &key, &reason, now);
                }
            }
            Command::Rooms => self.list_rooms(id),
            Command::Topic { room, text } => {
                if let Some(key) = self.member_room(id, room.as_deref()) {
                    self.topic(id, &key, text, now);
                }
            }
            Command::Whisper { nick, text } => self.whisper(id, &nick, text, now),
            Command::History { target, query } => self.history(id, &target, query),
            Command::Register(password) => self.register(id, password),
            Command::Password { old, new } => self.change_password(id, old, new, now),
            Command::Kick { .. }
            | Command::Mute { .. }
            | Command::Unmute(_)
            | Command::Ban { .. }
            | Command::Unban(_)
            | Command::Bans => self.moderate(id, command, now),
        }
        self.settle(now);
    }

    /// Sends an encoded line to client `id` alone.
    pub fn reply(&mut self, id: ClientId, line: &Line, now: Timestamp) {
        self.send_encoded(id, line);
        self.settle(now);
    }

    /// Client `id`'s connection ended (EOF, reset, error, timeout). Removes it
    /// and announces the leave if it had a nickname; a second call for the
    /// same client does nothing.
    pub fn disconnect(&mut self, id: ClientId, reason: &str, now: Timestamp) {
        self.remove(id, reason, now);
        self.settle(now);
    }

    /// Says goodbye to everyone and closes every outbox: the server is
    /// stopping.
    pub fn shutdown(&mut self, text: &str) {
        let line = encode(&ServerLine::Bye(text.to_owned()));
        for client in self.clients.values_mut() {
            let _ = client.outbox.push(&line);
            client.outbox.close();
        }
        self.clients.clear();
        self.nicks.clear();
        self.checking.clear();
        self.rooms.retain(|key, room| {
            room.members.clear();
            room.topic = None;
            *key == names::fold(LOBBY)
        });
    }

    /// Work for the accounts thread queued since the last call.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// Messages said since the last call, for the store.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// History requests made since the last call, for the store.
    pub fn take_fetches(&mut self) -> Vec<Fetch> {
        std::mem::take(&mut self.fetches)
    }

    /// Client `id`'s outbox, so the store's answer can reach it.
    pub fn outbox(&self, id: ClientId) -> Option<&O> {
        self.clients.get(&id).map(|c| &c.outbox)
    }

    /// How many connections the hub knows, registered or not.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True if nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The registered nicknames, sorted case-insensitively.
    pub fn nicknames(&self) -> impl Iterator<Item = &str> {
        self.nicks.values().map(|id| self.nick_of(*id))
    }

    /// The nickname of client `id`, if it has one.
    pub fn nick(&self, id: ClientId) -> Option<&str> {
        self.clients.get(&id)?.nick.as_deref()
    }

    /// The folded nickname of the account client `id` is logged in to.
    pub fn account_of(&self, id: ClientId) -> Option<&str> {
        self.clients.get(&id)?.account.as_deref()
    }

    /// True if `nick` (any case) is a registered nickname.
    pub fn is_registered(&self, nick: &str) -> bool {
        self.registered.contains_key(&names::fold(nick))
    }

    /// True if client `id` is logged in to an operator account.
    pub fn is_operator(&self, id: ClientId) -> bool {
        self.clients.get(&id).is_some_and(|c| c.operator)
    }

    /// The rooms client `id` is in, as their names are shown, in the order
    /// it joined them (the last is its current room).
    pub fn rooms_of(&self, id: ClientId) -> Vec<&str> {
        let Some(client) = self.clients.get(&id) else {
            return Vec::new();
        };
        client
            .rooms
            .iter()
            .filter_map(|key| self.rooms.get(key).map(|r| r.name.as_str()))
            .collect()
    }

    /// The members of a room (any case), sorted case-insensitively; empty
    /// if there is no such room.
    pub fn members(&self, room: &str) -> Vec<&str> {
        let Some(room) = self.rooms.get(&names::fold(room)) else {
            return Vec::new();
        };
        // A big room (the lobby holds everyone) is listed by walking the
        // nicknames, which are already sorted by folded name: no sort and
        // no folding per member on every join.
        if room.members.len() * 4 >= self.nicks.len() {
            let nicks: Vec<&str> = self
                .nicks
                .values()
                .filter(|id| room.members.contains_key(id))
                .map(|id| self.nick_of(*id))
                .collect();
            if nicks.len() == room.members.len() {
                return nicks;
            }
        }
        let mut nicks: Vec<&str> = room.members.keys().map(|id| self.nick_of(*id)).collect();
        nicks.sort_by_cached_key(|n| names::fold(n));
        nicks
    }

    fn nick_of(&self, id: ClientId) -> &str {
        self.nick(id).unwrap_or("")
    }

    fn users(&self, key: &str) -> ServerLine {
        let name = self.rooms.get(key).map_or(LOBBY, |r| r.name.as_str());
        ServerLine::Users {
            room: name.to_owned(),
            nicks: self.members(key).into_iter().map(str::to_owned).collect(),
        }
    }

    /// The folded name of the room a command is about: the one it names, or
    /// the client's current room. Answers with an error and returns `None` if
    /// there is no such room or the client is not in it.
    fn member_room(&mut self, id: ClientId, room: Option<&str>) -> Option<String> {
        let client = self.clients.get(&id)?;
        let key = match room {
            Some(room) => names::fold(room),
            None => match client.rooms.last() {
                Some(key) => key.clone(),
                None => {
                    self.error(
                        id,
                        ErrorCode::NotInRoom,
                        "You are in no room; JOIN #lobby (or any #room) first.".into(),
                    );
                    return None;
                }
            },
        };
        if client.rooms.contains(&key) {
            return Some(key);
        }
        let name = room.unwrap_or(&key).to_owned();
        if self.rooms.contains_key(&key) {
            self.error(
                id,
                ErrorCode::NotInRoom,
                format!("You are not in {name}; JOIN {name} first."),
            );
        } else {
            self.error(
                id,
                ErrorCode::NoSuchRoom,
                format!("There is no room {name}; JOIN {name} creates it."),
            );
        }
        None
    }

    fn next_id(&mut self) -> u64 {
        self.last_msg_id += 1;
        self.last_msg_id
    }

    fn say(&mut self, id: ClientId, room: Option<&str>, text: String, now: Timestamp) {
        if let Some(why) = self.muted(id, now) {
            return self.error(id, ErrorCode::Muted, why);
        }
        let Some(key) = self.member_room(id, room) else {
            return;
        };
        let msg_id = self.next_id();
        let nick = self.nick_of(id).to_owned();
        let name = self
            .rooms
            .get(&key)
            .map_or(LOBBY, |r| r.name.as_str())
            .to_owned();
        let msg = ServerLine::Msg {
            time: now,
            id: msg_id,
            room: name,
            nick,
            text,
        };
        self.broadcast_room(&key, &encode(&msg), Some(id));
        // The line is encoded; its fields move into the record, no copies.
        if let (
            true,
            ServerLine::Msg {
                room, nick, text, ..
            },
        ) = (self.config.history, msg)
        {
            self.records.push(Record {
                id: msg_id,
                time: now.unix(),
                place: Place::Room(room),
                nick,
                text,
            });
        }
    }

    fn whisper(&mut self, id: ClientId, to: &str, text: String, now: Timestamp) {
        if let Some(why) = self.muted(id, now) {
            return self.error(id, ErrorCode::Muted, why);
        }
        let Some(&target) = self.nicks.get(&names::fold(to)) else {
            return self.error(
                id,
                ErrorCode::NoSuchNick,
                format!("Nobody called {to} is online."),
            );
        };
        if target == id {
            return self.error(
                id,
                ErrorCode::BadArgument,
                "Whispering to yourself? Nobody else would hear it anyway.".into(),
            );
        }
        let msg_id = self.next_id();
        let from = self.nick_of(id).to_owned();
        let to = self.nick_of(target).to_owned();
        let whisper = ServerLine::Whisper {
            time: now,
            id: msg_id,
            from,
            to,
            text,
        };
        self.send(target, &whisper);
        if let (true, ServerLine::Whisper { from, to, text, .. }) = (self.config.history, whisper) {
            self.records.push(Record {
                id: msg_id,
                time: now.unix(),
                place: Place::Private(to),
                nick: from,
                text,
            });
        }
    }

    fn join(&mut self, id: ClientId, room: &str, now: Timestamp) {
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
    fn enter(&mut self, id: ClientId, key: &str, name: &str, now: Timestamp) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.rooms.push(key.to_owned());
        let outbox = client.outbox.clone();
        let nick = client.nick.clone().unwrap_or_default();
        let room = self.rooms.entry(key.to_owned()).or_insert_with(|| Room {
            name: name.to_owned(),
            members: HashMap::new(),
            topic: None,
        });
        room.members.insert(id, outbox);
        let name = room.name.clone();
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
        self.broadcast_room(key, &join, None);
        if let Some(topic) = topic {
            self.send(id, &topic);
        }
        let users = self.users(key);
        self.send(id, &users);
        if self.config.history && self.config.replay > 0 {
            self.fetches.push(Fetch {
                client: id,
                scope: Scope::Room(key.to_owned()),
                // Only what was said before this join: anything later
                // reaches the newcomer live.
                range: Range::Before(self.last_msg_id.saturating_add(1)),
                count: self.config.replay,
                target: name,
            });
        }
    }

    fn part(&mut self, id: ClientId, key: &str, reason: &str, now: Timestamp) {
        let Some(name) = self.rooms.get(key).map(|r| r.name.clone()) else {
            return;
        };
        let line = encode(&ServerLine::Part {
            time: now,
            room: name,
            nick: self.nick_of(id).to_owned(),
            reason: reason.to_owned(),
        });
        self.broadcast_room(key, &line, None);
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
    fn leave_room(&mut self, id: ClientId, key: &str) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.rooms.retain(|r| r != key);
        }
        if let Some(room) = self.rooms.get_mut(key) {
            room.members.remove(&id);
            if room.members.is_empty() && key != names::fold(LOBBY) {
                self.rooms.remove(key);
            }
        }
    }

    fn list_rooms(&mut self, id: ClientId) {
        let mut rooms: Vec<&Room<O>> = self.rooms.values().collect();
        rooms.sort_by(|a, b| {
            b.members
                .len()
                .cmp(&a.members.len())
                .then_with(|| names::fold(&a.name).cmp(&names::fold(&b.name)))
        });
        let total = rooms.len();
        let lines: Vec<ServerLine> = rooms
            .iter()
            .take(ROOMS_LISTED)
            .map(|room| ServerLine::Room {
                room: room.name.clone(),
                members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
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

    fn topic(&mut self, id: ClientId, key: &str, text: String, now: Timestamp) {
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

    fn history(&mut self, id: ClientId, target: &str, query: HistoryQuery) {
        if !self.config.history {
            return self.error(
                id,
                ErrorCode::HistoryOff,
                "This server keeps no history.".into(),
            );
        }
        let (scope, target) = if target.starts_with('#') {
            let Some(key) = self.member_room(id, Some(target)) else {
                return;
            };
            let name = self.rooms.get(&key).map_or(target, |r| r.name.as_str());
            (Scope::Room(key.clone()), name.to_owned())
        } else {
            if names::check_nick(target).is_err() {
                return self.error(
                    id,
                    ErrorCode::BadArgument,
                    format!("{target} is neither a #room nor a nickname."),
                );
            }
            let Some(client) = self.clients.get(&id) else {
                return;
            };
            let scope = Scope::Private {
                a: names::fold(self.nick_of(id)),
                b: names::fold(target),
                after: client.since,
            };
            (scope, target.to_owned())
        };
        let (range, count) = match query {
            HistoryQuery::Last(count) => (Range::Last, count),
            HistoryQuery::Before(id) => (Range::Before(id), crate::protocol::HISTORY_DEFAULT),
            HistoryQuery::Since(id) => (Range::Since(id), crate::protocol::HISTORY_MAX),
        };
        self.fetches.push(Fetch {
            client: id,
            scope,
            range,
            count: usize::try_from(count).unwrap_or(usize::MAX),
            target,
        });
    }

    fn set_nick(&mut self, id: ClientId, wanted: &str, now: Timestamp) {
        let folded = names::fold(wanted);
        let holder = self.nicks.get(&folded).copied();
        let own = self.clients.get(&id).and_then(|c| c.account.clone());
        let taken = |n: &str| {
            let key = names::fold(n);
            self.nicks.get(&key).is_some_and(|&holder| holder != id)
                || (self.registered.contains_key(&key) && own.as_ref() != Some(&key))
        };
        if let Err(err) = names::check_nick(wanted) {
            let suggestion = names::suggest_nick(wanted, taken);
            let why = match err {
                NickError::Empty => "A nickname cannot be empty",
                NickError::TooLong => "A nickname has at most 16 characters",
                NickError::BadStart => "A nickname starts with a letter",
                NickError::BadChar => "A nickname uses only letters, digits, _ and -",
            };
            return self.error(
                id,
                ErrorCode::NickInvalid,
                format!("{why}; try {suggestion}"),
            );
        }
        if holder.is_some_and(|holder| holder != id) {
            let suggestion = names::suggest_nick(wanted, taken);
            return self.error(
                id,
                ErrorCode::NickTaken,
                format!("Someone already uses the nickname {wanted}; try {suggestion}"),
            );
        }
        if let Some(ban) = self.ban_on(&BanTarget::Nick(folded.clone()), now) {
            let text = moderation::ban_text(&ban, now);
            return self.error(id, ErrorCode::Banned, text);
        }
        if let Some(text) = self.muted(id, now) {
            return self.error(id, ErrorCode::Muted, text);
        }
        let owner = self.clients.get(&id).and_then(|c| c.account.as_deref()) == Some(&folded);
        if self.registered.contains_key(&folded) && !owner {
            let suggestion = self.guest_nick(id);
            return self.error(
                id,
                ErrorCode::NickRegistered,
                format!(
                    "{wanted} is a registered nickname: if it is yours, LOGIN {wanted} \
                     <password>; otherwise pick another, such as {suggestion}"
                ),
            );
        }
        self.assign_nick(id, wanted, now);
    }

    /// Gives client `id` the nickname `wanted`, which it may take: registers
    /// the connection, or renames it and tells everyone concerned.
    fn assign_nick(&mut self, id: ClientId, wanted: &str, now: Timestamp) {
        let folded = names::fold(wanted);
        // The owner of an account reads its private history from the
        // account's registration on; anyone else from now on.
        let since = match self.clients.get(&id).and_then(|c| c.account.as_ref()) {
            Some(account) if *account == folded => self
                .registered
                .get(&folded)
                .map_or(self.last_msg_id, |a| a.since),
            _ => self.last_msg_id,
        };
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let old = client.nick.replace(wanted.to_owned());
        match old {
            None => {
                client.since = since;
                self.nicks.insert(folded, id);
                self.send(
                    id,
                    &ServerLine::Welcome {
                        nick: wanted.to_owned(),
                        text: format!(
                            "Hello {wanted}! Type a line and press Enter to talk to everyone in \
                             {LOBBY}. HELP lists commands."
                        ),
                    },
                );
                self.enter(id, &names::fold(LOBBY), LOBBY, now);
            }
            Some(old) => {
                if old == wanted {
                    return self.send(id, &ServerLine::Info(format!("You are already {old}.")));
                }
                if names::fold(&old) != folded {
                    // A new name, not just new capitals: private history
                    // under it starts now (or at its account's start).
                    client.since = since;
                }
                self.nicks.remove(&names::fold(&old));
                self.nicks.insert(folded, id);
                let line = encode(&ServerLine::Nick {
                    time: now,
                    old,
                    new: wanted.to_owned(),
                });
                self.send_encoded(id, &line);
                self.broadcast_neighbours(id, &line);
            }
        }
    }

    fn error(&mut self, id: ClientId, code: ErrorCode, text: String) {
        self.send(id, &ServerLine::Err { code, text });
    }

    /// Sends one line to one client.
    fn send(&mut self, id: ClientId, line: &ServerLine) {
        self.send_encoded(id, &encode(line));
    }

    fn send_encoded(&mut self, id: ClientId, line: &Line) {
        if let Some(client) = self.clients.get_mut(&id) {
            if let Err(why) = client.outbox.push(line) {
                self.dropped.push((id, why));
            }
        }
    }

    /// Sends a line to every member of a room except `except`.
    fn broadcast_room(&mut self, key: &str, line: &Line, except: Option<ClientId>) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        for (&member, outbox) in &mut room.members {
            if Some(member) == except {
                continue;
            }
            if let Err(why) = outbox.push(line) {
                self.dropped.push((member, why));
            }
        }
    }

    /// Sends a line to everyone who shares a room with client `id`, once
    /// each, but not to `id` itself.
    fn broadcast_neighbours(&mut self, id: ClientId, line: &Line) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        match client.rooms.as_slice() {
            [] => {}
            [only] => {
                let key = only.clone();
                self.broadcast_room(&key, line, Some(id));
            }
            several => {
                let mut seen = HashSet::new();
                for key in several {
                    let Some(room) = self.rooms.get_mut(key) else {
                        continue;
                    };
                    for (&member, outbox) in &mut room.members {
                        if member == id || !seen.insert(member) {
                            continue;
                        }
                        if let Err(why) = outbox.push(line) {
                            self.dropped.push((member, why));
                        }
                    }
                }
            }
        }
    }

    /// Removes a client; if it was registered, tells those who shared a room
    /// with it that it left.
    fn remove(&mut self, id: ClientId, reason: &str, now: Timestamp) {
        self.done(id);
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.outbox.close();
        if let Some(nick) = client.nick.clone() {
            self.nicks.remove(&names::fold(&nick));
            let line = encode(&ServerLine::Quit {
                time: now,
                nick,
                reason: reason.to_owned(),
            });
            self.broadcast_neighbours(id, &line);
        }
        let rooms = self
            .clients
            .get(&id)
            .map(|c| c.rooms.clone())
            .unwrap_or_default();
        for key in rooms {
            self.leave_room(id, &key);
        }
        self.clients.remove(&id);
    }

    /// Removes the clients whose outboxes rejected a line. Announcing their
    /// leave may overflow others in turn; each client is removed at most once,
    /// so this ends.
    fn settle(&mut self, now: Timestamp) {
        while let Some((id, why)) = self.dropped.pop() {
            let reason = match why {
                Rejected::Full => "too slow: stopped reading",
                Rejected::Closed => "connection closed",
            };
            self.remove(id, reason, now);
        }
    }
}

fn greeting() -> ServerLine {
    ServerLine::Hello {
        version: PROTOCOL_VERSION.to_owned(),
        text: "Welcome to natter! Pick a nickname: type NICK yourname (or /nick yourname) and \
               press Enter. HELP lists commands."
            .to_owned(),
    }
}

/// The `HELP` text, one `INFO` line each.
const HELP: [&str; 19] = [
    "Commands (the /slash forms work in any case):",
    "  NICK <name>               pick or change your nickname     /nick <name>",
    "  MSG [#room] <text>        say something                    (any line that is not a command)",
    "  WHISPER <nick> <text>     a private message                /w, /msg <nick> <text>",
    "  JOIN #room                enter or create a room           /join",
    "  PART [#room] [reason]     leave a room                     /part, /leave",
    "  ROOMS                     list the rooms                   /rooms",
    "  TOPIC [#room] [text]      show or set a room's topic       /topic",
    "  USERS [#room]             who is in the room               /users",
    "  HISTORY <#room|nick> [n | before <id> | since <id>]        /history",
    "  PING [token]              check the connection             /ping",
    "  REGISTER <password>       keep your nickname (8+ characters) /register",
    "  LOGIN <nick> <password>   take your registered nickname    /login",
    "  PASSWORD <old> <new>      change your password             /password",
    "  Operators: KICK <nick> [reason], MUTE <nick> [10m] [reason], UNMUTE <nick>, BAN <nick|address> [1d] [reason], UNBAN <nick|address>, BANS",
    "  QUIT [reason]             leave the chat                   /quit, /exit",
    "  HELP                      this list                        /help",
    "Messages without a #room go to the room you joined last.",
    "To start a message with a command word or a slash, use MSG (MSG QUIT is a verb) or //.",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Answer;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A test outbox: a shared list of received lines with a capacity.
    #[derive(Clone)]
    struct Inbox {
        lines: Rc<RefCell<Vec<String>>>,
        cap: usize,
        closed: Rc<RefCell<bool>>,
    }

    impl Inbox {
        fn new(cap: usize) -> Self {
            Self {
                lines: Rc::default(),
                cap,
                closed: Rc::default(),
            }
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.lines.borrow_mut())
        }
    }

    impl Outbox for Inbox {
        fn push(&mut self, line: &Line) -> Result<(), Rejected> {
            if *self.closed.borrow() {
                return Err(Rejected::Closed);
            }
            let mut lines = self.lines.borrow_mut();
            if lines.len() >= self.cap {
                return Err(Rejected::Full);
            }
            lines.push(String::from_utf8_lossy(line).trim_end().to_owned());
            Ok(())
        }
        fn close(&mut self) {
            *self.closed.borrow_mut() = true;
        }
    }

    fn t() -> Timestamp {
        Timestamp::from_unix(1_795_000_000).unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(t().unix() + secs).unwrap()
    }

    fn account(nick: &str, operator: bool) -> AccountInfo {
        AccountInfo {
            nick: nick.into(),
            operator,
            since: 0,
        }
    }

    fn login(nick: &str) -> Command {
        Command::Login {
            nick: nick.into(),
            password: crate::protocol::Secret::new("whatever-it-is"),
        }
    }

    #[test]
    fn failed_logins_are_limited_per_address_and_per_account() {
        let mut hub: Hub<Inbox> = Hub::new(60);
        let snapshot = crate::accounts::Snapshot {
            accounts: vec![account("alice", false), account("bob", false)],
            bans: Vec::new(),
        };
        hub.load(snapshot, t());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let thief = Inbox::new(100);
        hub.connect_from(1, thief.clone(), one, t());
        for _ in 0..6 {
            hub.command(1, login("alice"), t());
            assert_eq!(hub.take_requests().len(), 1, "{:?}", thief.take());
            hub.account(
                Answer::WrongPassword {
                    client: 1,
                    nick: "alice".into(),
                },
                t(),
            );
        }
        assert!(thief.take().last().unwrap().ends_with("try again in 30 s."));
        // The address is locked, for every account...
        hub.command(1, login("bob"), t());
        assert!(hub.take_requests().is_empty());
        let err = thief.take().pop().unwrap();
        assert!(
            err.starts_with(
                "ERR login-throttled Too many failed logins from your address and for this account"
            ) || err.starts_with("ERR login-throttled Too many failed logins from your address;"),
            "{err}"
        );
        // ...and the account, from every address; other accounts are fine.
        let other = Inbox::new(100);
        hub.connect_from(2, other.clone(), two, t());
        other.take();
        hub.command(2, login("ALICE"), t());
        assert!(hub.take_requests().is_empty());
        let err = other.take().pop().unwrap();
        assert!(err.contains("for ALICE; try again in 30 s"), "{err}");
        hub.command(2, login("bob"), t());
        assert_eq!(hub.take_requests().len(), 1);
        hub.account(
            Answer::LoggedIn {
                client: 2,
                account: account("bob", false),
            },
            t(),
        );
        assert!(other
            .take()
            .iter()
            .any(|l| l.starts_with("ACCOUNT bob user ")));
        // The lock runs out.
        hub.command(1, login("alice"), at(31));
        assert_eq!(hub.take_requests().len(), 1);
    }

    #[test]
    fn one_password_check_at_a_time_and_busy_when_the_queue_is_full() {
        let mut hub: Hub<Inbox> = Hub::new(60);
        hub.load(
            crate::accounts::Snapshot {
                accounts: vec![account("alice", false)],
                bans: Vec::new(),
            },
            t(),
        );
        let c = Inbox::new(100);
        hub.connect(1, c.clone(), t());
        c.take();
        hub.command(1, login("alice"), t());
        hub.command(1, login("alice"), t());
        assert!(c
            .take()
            .pop()
            .unwrap()
            .starts_with("ERR busy Still checking"));
        let requests = hub.take_requests();
        assert_eq!(requests.len(), 1);
        for request in requests {
            hub.refused(request, t());
        }
        assert!(c
            .take()
            .pop()
            .unwrap()
            .starts_with("ERR busy The server is checking many"));
        // Not pending any more: it may try again.
        hub.command(1, login("alice"), t());
        assert_eq!(hub.take_requests().len(), 1);
        // One address has at most four checks under way, however many
        // connections it opens; one leaving makes room.
        let others: Vec<Inbox> = (2..=5)
            .map(|id| {
                let inbox = Inbox::new(100);
                hub.connect(id, inbox.clone(), t());
                hub.command(id, login("alice"), t());
                inbox
            })
            .collect();
        assert_eq!(hub.take_requests().len(), 3);
        assert!(others[3]
            .take()
            .pop()
            .unwrap()
            .starts_with("ERR busy Too many password checks"));
        hub.disconnect(2, "gone", t());
        hub.command(5, login("alice"), t());
        assert_eq!(hub.take_requests().len(), 1);
    }

    #[test]
    fn an_owner_reads_private_history_from_the_account_start() {
        let mut hub: Hub<Inbox> = Hub::with_config(HubConfig {
            history: true,
            ..HubConfig::default()
        });
        hub.load(
            crate::accounts::Snapshot {
                accounts: vec![AccountInfo {
                    nick: "alice".into(),
                    operator: false,
                    since: 7,
                }],
                bans: Vec::new(),
            },
            t(),
        );
        let guest = join(&mut hub, 1, "bob");
        guest.take();
        hub.command(
            1,
            Command::History {
                target: "alice".into(),
                query: HistoryQuery::Last(10),
            },
            t(),
        );
        let c = Inbox::new(100);
        hub.connect(2, c.clone(), t());
        hub.command(2, login("alice"), t());
        hub.take_requests();
        hub.account(
            Answer::LoggedIn {
                client: 2,
                account: AccountInfo {
                    nick: "alice".into(),
                    operator: false,
                    since: 7,
                },
            },
            t(),
        );
        hub.command(
            2,
            Command::History {
                target: "bob".into(),
                query: HistoryQuery::Last(10),
            },
            t(),
        );
        let fetches = hub.take_fetches();
        let afters: Vec<u64> = fetches
            .iter()
            .filter_map(|f| match f.scope {
                Scope::Private { after, .. } => Some(after),
                _ => None,
            })
            .collect();
        // bob took his nickname at message 0; alice's account began at 7.
        assert_eq!(afters, [0, 7]);
    }

    fn join(hub: &mut Hub<Inbox>, id: ClientId, nick: &str) -> Inbox {
        let inbox = Inbox::new(100);
        hub.connect(id, inbox.clone(), t());
        hub.command(id, Command::Nick(nick.into()), t());
        inbox
    }

    fn chat(text: &str) -> Command {
        Command::Msg {
            room: None,
            text: text.into(),
        }
    }

    #[test]
    fn registration_greets_joins_and_lists_users() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let got = a.take();
        assert!(got[0].starts_with("HELLO natter/1 "));
        assert!(got[1].starts_with("WELCOME alice "));
        assert_eq!(got[2], format!("JOIN {} #lobby alice", t()));
        assert_eq!(got[3], "USERS #lobby alice");
        let b = join(&mut hub, 2, "Bob");
        assert_eq!(a.take(), [format!("JOIN {} #lobby Bob", t())]);
        assert_eq!(b.take().last().unwrap(), "USERS #lobby alice Bob");
    }

    #[test]
    fn chat_reaches_everyone_but_the_sender() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        let c = Inbox::new(10);
        hub.connect(3, c.clone(), t());
        a.take();
        b.take();
        c.take();
        hub.command(1, chat("hi all"), t());
        assert_eq!(a.take(), Vec::<String>::new());
        assert_eq!(b.take(), [format!("MSG {} 1 #lobby alice hi all", t())]);
        assert_eq!(c.take(), Vec::<String>::new(), "unregistered hear nothing");
    }

    #[test]
    fn unregistered_may_only_nick_help_ping_quit() {
        let mut hub = Hub::new(60);
        let c = Inbox::new(100);
        hub.connect(1, c.clone(), t());
        c.take();
        hub.command(1, chat("hello"), t());
        hub.command(1, Command::Users { room: None }, t());
        let got = c.take();
        assert!(
            got.iter().all(|l| l.starts_with("ERR not-registered ")),
            "{got:?}"
        );
        hub.command(1, Command::Ping("x".into()), t());
        assert_eq!(c.take(), ["PONG x"]);
        hub.command(1, Command::Help, t());
        assert_eq!(c.take().len(), HELP.len());
    }

    #[test]
    fn taken_and_invalid_nicks_get_a_free_suggestion() {
        let mut hub = Hub::new(60);
        let _a = join(&mut hub, 1, "alice");
        let b = Inbox::new(100);
        hub.connect(2, b.clone(), t());
        hub.command(2, Command::Nick("ALICE".into()), t());
        assert_eq!(
            b.take().last().unwrap(),
            "ERR nick-taken Someone already uses the nickname ALICE; try ALICE2"
        );
        hub.command(2, Command::Nick("9 lives".into()), t());
        assert_eq!(
            b.take(),
            ["ERR nick-invalid A nickname starts with a letter; try guest9lives"]
        );
    }

    #[test]
    fn nick_change_is_announced_and_frees_the_old_name() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        a.take();
        b.take();
        hub.command(1, Command::Nick("Alicia".into()), t());
        let line = format!("NICK {} alice Alicia", t());
        assert_eq!(a.take(), std::slice::from_ref(&line));
        assert_eq!(b.take(), [line]);
        let _c = join(&mut hub, 3, "alice");
        assert_eq!(
            hub.nicknames().collect::<Vec<_>>(),
            ["alice", "Alicia", "bob"]
        );
        hub.command(1, Command::Nick("ALICIA".into()), t());
        assert_eq!(
            hub.nick(1),
            Some("ALICIA"),
            "case change of own nick is allowed"
        );
    }

    #[test]
    fn quit_says_bye_and_announces_once() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        a.take();
        b.take();
        hub.command(1, Command::Quit("lunch".into()), t());
        hub.disconnect(1, "connection closed", t());
        assert_eq!(a.take(), ["BYE Goodbye!"]);
        assert_eq!(b.take(), [format!("QUIT {} alice lunch", t())]);
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn a_full_outbox_drops_only_that_client() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let slow = Inbox::new(6);
        hub.connect(2, slow.clone(), t());
        hub.command(2, Command::Nick("slow".into()), t());
        a.take();
        for i in 0..5 {
            hub.command(1, chat(&format!("line {i}")), t());
        }
        assert_eq!(hub.nicknames().collect::<Vec<_>>(), ["alice"]);
        assert!(*slow.closed.borrow());
        assert_eq!(
            a.take(),
            [format!("QUIT {} slow too slow: stopped reading", t())]
        );
    }

    fn cmd(hub: &mut Hub<Inbox>, id: ClientId, line: &str) {
        let command = crate::protocol::parse_command(line).unwrap();
        hub.command(id, command, t());
    }

    #[test]
    fn rooms_carry_their_own_messages() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        let c = join(&mut hub, 3, "carol");
        cmd(&mut hub, 1, "JOIN #Rust");
        cmd(&mut hub, 2, "/join rust");
        a.take();
        b.take();
        c.take();
        cmd(&mut hub, 1, "borrowck!");
        assert_eq!(b.take(), [format!("MSG {} 1 #Rust alice borrowck!", t())]);
        assert_eq!(c.take(), Vec::<String>::new(), "carol is not in #Rust");
        cmd(&mut hub, 1, "MSG #lobby hi all");
        assert_eq!(b.take(), [format!("MSG {} 2 #lobby alice hi all", t())]);
        assert_eq!(c.take(), [format!("MSG {} 2 #lobby alice hi all", t())]);
        cmd(&mut hub, 3, "MSG #rust sneaky");
        assert!(c.take()[0].starts_with("ERR not-in-room "));
        cmd(&mut hub, 3, "MSG #nowhere hi");
        assert!(c.take()[0].starts_with("ERR no-such-room "));
        cmd(&mut hub, 1, "USERS");
        assert_eq!(a.take(), ["USERS #Rust alice bob"]);
        assert_eq!(hub.rooms_of(1), ["#lobby", "#Rust"]);
    }

    #[test]
    fn join_announces_and_part_leaves_quietly_elsewhere() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        a.take();
        b.take();
        cmd(&mut hub, 1, "JOIN #rust");
        assert_eq!(
            a.take(),
            [
                format!("JOIN {} #rust alice", t()),
                "USERS #rust alice".to_string(),
                "INFO Messages without a room now go to #rust.".to_string(),
            ]
        );
        assert_eq!(b.take(), Vec::<String>::new(), "bob is not in #rust");
        cmd(&mut hub, 2, "JOIN #rust");
        assert_eq!(a.take(), [format!("JOIN {} #rust bob", t())]);
        b.take();
        cmd(&mut hub, 2, "PART #rust bored");
        let part = format!("PART {} #rust bob bored", t());
        assert_eq!(a.take(), std::slice::from_ref(&part));
        assert_eq!(
            b.take(),
            [
                part,
                "INFO Messages without a room now go to #lobby.".to_string()
            ]
        );
        cmd(&mut hub, 1, "PART");
        cmd(&mut hub, 1, "ROOMS");
        let got = a.take();
        assert_eq!(
            got[got.len() - 2..],
            ["ROOM #lobby 2 ", "ROOMS 1"].map(|s| s.trim_end())
        );
    }

    #[test]
    fn whispers_reach_only_their_recipient() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        let c = join(&mut hub, 3, "carol");
        a.take();
        b.take();
        c.take();
        cmd(&mut hub, 1, "/w BOB meet at 5");
        assert_eq!(b.take(), [format!("WHISPER {} 1 alice bob meet at 5", t())]);
        assert_eq!(a.take(), Vec::<String>::new());
        assert_eq!(c.take(), Vec::<String>::new());
        cmd(&mut hub, 1, "/w dave hi");
        assert!(a.take()[0].starts_with("ERR no-such-nick "));
    }

    #[test]
    fn topics_are_set_shown_and_listed() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        b.take();
        cmd(&mut hub, 1, "TOPIC Welcome all");
        a.take();
        let topic = format!("TOPIC {} #lobby alice Welcome all", t());
        assert_eq!(b.take(), std::slice::from_ref(&topic));
        cmd(&mut hub, 2, "/topic");
        assert_eq!(b.take(), std::slice::from_ref(&topic));
        cmd(&mut hub, 2, "ROOMS");
        assert_eq!(b.take(), ["ROOM #lobby 2 Welcome all", "ROOMS 1"]);
        let _c = join(&mut hub, 3, "carol");
        let c_lines = _c.take();
        assert!(c_lines.contains(&topic), "a newcomer is told the topic");
    }

    #[test]
    fn history_is_recorded_and_fetched_only_when_on() {
        let mut hub: Hub<Inbox> = Hub::with_config(HubConfig {
            history: true,
            last_msg_id: 41,
            ..HubConfig::default()
        });
        let a = join(&mut hub, 1, "alice");
        let _b = join(&mut hub, 2, "bob");
        let fetches = hub.take_fetches();
        assert_eq!(fetches.len(), 2, "each registration replays the lobby");
        assert_eq!(fetches[1].range, Range::Before(42));
        cmd(&mut hub, 1, "hello");
        cmd(&mut hub, 1, "/w bob secret");
        let records = hub.take_records();
        assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [42, 43]);
        assert_eq!(records[1].place, Place::Private("bob".into()));
        cmd(&mut hub, 2, "HISTORY alice 10");
        let fetch = &hub.take_fetches()[0];
        assert_eq!(fetch.client, 2);
        assert_eq!(
            fetch.scope,
            Scope::Private {
                a: "bob".into(),
                b: "alice".into(),
                after: 41
            }
        );
        cmd(&mut hub, 1, "HISTORY #rust");
        assert!(a.take().last().unwrap().starts_with("ERR no-such-room "));

        let mut off = Hub::new(60);
        let x = join(&mut off, 1, "x");
        x.take();
        cmd(&mut off, 1, "HISTORY #lobby");
        assert!(x.take()[0].starts_with("ERR history-off "));
        assert!(off.take_fetches().is_empty());
    }

    #[test]
    fn connections_without_a_nick_time_out() {
        let mut hub = Hub::new(60);
        let idle = Inbox::new(100);
        hub.connect(1, idle.clone(), t());
        let a = join(&mut hub, 2, "alice");
        idle.take();
        a.take();
        let later = |s| Timestamp::from_unix(t().unix() + s).unwrap();
        hub.tick(later(59));
        assert_eq!(hub.len(), 2);
        hub.tick(later(60));
        let got = idle.take();
        assert!(got[0].starts_with("ERR timeout "), "{got:?}");
        assert!(got[1].starts_with("BYE "));
        assert!(*idle.closed.borrow());
        assert_eq!(hub.len(), 1, "the registered client stays");
        assert_eq!(a.take(), Vec::<String>::new(), "nobody hears of it");
    }
}
