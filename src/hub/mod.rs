//! The hub: the one owner of who is connected, who is called what, who is in
//! which room, and who hears what.
//!
//! It is a plain state machine with no IO and no clock: the server's hub task
//! feeds it connects, commands and disconnects with the current time, and it
//! pushes encoded lines into each client's [`outbox::Outbox`]. Messages to keep and
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
//!
//! # Layout
//! This file holds the state and the dispatch of events; the rest is split by
//! concern, as more `impl Hub` blocks (which need no import back here):
//! - `outbox`: the [`outbox::Outbox`] trait and [`outbox::Rejected`].
//! - `nicks`: taking and changing nicknames.
//! - `rooms`: joining, leaving, listing rooms, topics.
//! - `presence`: big rooms, whose arrivals and departures are gathered and
//!   told at each [`Hub::flush_presence`].
//! - `history`: `HISTORY` and [`history::history_line`].
//! - `accounts`: `REGISTER`, `LOGIN`, `PASSWORD` and the answers to them.
//! - `moderation`: the operator commands.
//! - `words`: fixed sentences (greeting, `HELP`, bans and mutes), a leaf the
//!   others share.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::accounts::{AccountInfo, AddressBans, Ban, BanTarget, Request};
use crate::ids::{ClientId, MessageIds};
use crate::limiter::Limiter;
use crate::names;
use crate::protocol::{encode, Command, ErrorCode, Line, ServerLine, Timestamp, LOBBY};
use crate::store::{Fetch, Place, Record};
use outbox::{Outbox, Rejected};
use words::{ban_text, greeting, HELP};

mod accounts;
pub mod cluster;
mod cluster_moderation;
#[cfg(test)]
mod cluster_tests;
pub mod history;
#[doc(hidden)]
pub mod memory_bus;
mod moderation;
mod nicks;
pub mod outbox;
mod presence;
mod rooms;
#[cfg(test)]
mod tests;
mod words;

pub use moderation::ban_refusal;
pub use presence::LIST_LINE;

struct Client<O> {
    /// `None` until the client picks a nickname. Shared with the big rooms'
    /// lists of who their members were told of (`presence`), which would
    /// otherwise hold a copy per room.
    nick: Option<Arc<str>>,
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
    /// Members on other nodes (cluster mode): folded nickname to nickname.
    remote: BTreeMap<String, String>,
    topic: Option<Topic>,
    /// While the room is big: what its members have been told of who is
    /// in it (see `presence`).
    presence: Option<presence::Presence>,
}

/// What the hub is told at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Seconds a connection may go without a nickname.
    pub register_timeout_secs: u64,
    /// The most rooms one client may be in at once.
    pub max_rooms: usize,
    /// Whether messages are recorded and history can be fetched.
    pub history: bool,
    /// How many messages are replayed on joining a room.
    pub replay: usize,
    /// The largest message id already used (from the id floor and the
    /// store), so ids keep growing across restarts.
    pub last_msg_id: u64,
    /// Seconds a `MUTE` without a duration lasts.
    pub mute_default_secs: u64,
    /// Seconds a `BAN` without a duration lasts.
    pub ban_default_secs: u64,
    // Operations: the welcome text.
    /// The operator's welcome text (the MOTD), one `INFO` line each, sent
    /// after `WELCOME`; empty sends none. Shared, as every newcomer gets it.
    pub motd: Arc<[String]>,
    /// Accounts one address may register per hour; 0: no limit.
    pub registrations_per_hour: u32,
    /// Addresses whose recent registrations are remembered at once.
    pub registration_addresses: usize,
    /// Members from which a room is big: its arrivals and departures are
    /// gathered and told at each [`Hub::flush_presence`]; 0: never.
    pub big_room: usize,
    /// One node of several (`--cluster`): nicknames are claimed, and
    /// messages numbered, by the cluster (see [`cluster`]).
    pub cluster: bool,
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
            motd: Arc::from([]),
            registrations_per_hour: 5,
            registration_addresses: 4096,
            big_room: 200,
            cluster: false,
        }
    }
}

/// The chat's state: clients, their nicknames and the rooms.
pub struct Hub<O> {
    config: HubConfig,
    clients: HashMap<ClientId, Client<O>>,
    /// Registered clients by folded nickname; sorted, so lists are too.
    nicks: BTreeMap<String, ClientId>,
    /// Rooms by folded name. A room exists while it has members; the lobby
    /// always exists.
    rooms: HashMap<String, Room<O>>,
    /// The folded names of the rooms that are big (have a `presence`), so
    /// that flushes look at those only.
    big_rooms: HashSet<String>,
    /// Numbers messages: from the clock, only growing, never above what
    /// the id floor has reserved.
    ids: MessageIds,
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
    /// The address bans, shared with the accept loops (see `moderation`).
    address_bans: AddressBans,
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
    /// Recent registrations per address key (see `accounts`).
    registrations: accounts::Registrations,
    /// What the cluster should know, taken by [`Hub::take_published`].
    published: Vec<cluster::Publish>,
    /// Whether the cluster is reachable; always true for one node.
    cluster_up: bool,
    /// Users on other nodes by folded nickname (cluster mode).
    remote: HashMap<String, cluster::RemoteUser>,
    /// Nicknames being claimed across the cluster, by client.
    claiming: HashMap<ClientId, String>,
    /// Registered nicknames (folded) held on another node that a client
    /// here logged in to: claimed for it once their holder has left.
    takeovers: HashMap<String, ClientId>,
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
        let last_msg_id = config.last_msg_id;
        let mut rooms = HashMap::new();
        rooms.insert(
            names::fold(LOBBY),
            Room {
                name: LOBBY.to_owned(),
                members: HashMap::new(),
                remote: BTreeMap::new(),
                topic: None,
                presence: None,
            },
        );
        Self {
            config,
            clients: HashMap::new(),
            nicks: BTreeMap::new(),
            rooms,
            big_rooms: HashSet::new(),
            ids: MessageIds::new(last_msg_id),
            dropped: Vec::new(),
            deadlines: VecDeque::new(),
            records: Vec::new(),
            fetches: Vec::new(),
            registered: HashMap::new(),
            bans: HashMap::new(),
            address_bans: AddressBans::default(),
            mutes: HashMap::new(),
            failed_by_addr: Limiter::default(),
            failed_by_account: Limiter::default(),
            requests: Vec::new(),
            checking: HashMap::new(),
            registrations: accounts::Registrations::default(),
            published: Vec::new(),
            cluster_up: true,
            remote: HashMap::new(),
            claiming: HashMap::new(),
            takeovers: HashMap::new(),
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
        if let Some(ban) = self.address_bans.find(addr, now.unix()) {
            let text = ban_text(&ban, now);
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
                    self.send_list(id, &key);
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
            Command::Register(password) => self.register(id, password, now),
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
        self.big_rooms.clear();
        self.rooms.retain(|key, room| {
            room.members.clear();
            room.topic = None;
            room.presence = None;
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

    /// How many rooms exist, the lobby included (for metrics).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// How many nicknames are registered (for metrics).
    pub fn account_count(&self) -> usize {
        self.registered.len()
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
        if !room.remote.is_empty() {
            let mut nicks: Vec<&str> = room
                .members
                .keys()
                .map(|id| self.nick_of(*id))
                .chain(room.remote.values().map(String::as_str))
                .collect();
            nicks.sort_by_cached_key(|n| names::fold(n));
            return nicks;
        }
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

    /// A room's (folded) member list as it is sent: a `USERS` line with as
    /// many as fit in [`LIST_LINE`], then `JOINS` lines with the rest.
    fn member_lines(&self, key: &str) -> Vec<Line> {
        let name = self.rooms.get(key).map_or(LOBBY, |r| r.name.as_str());
        presence::list_lines(name, &self.members(key), "USERS", "JOINS")
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

    /// Tells the hub the time in microseconds since the Unix epoch and how
    /// far message ids are durably reserved ([`crate::ids::UNRESERVED`] for
    /// no limit); the server calls it before every event. Without it, ids
    /// count up by one.
    pub fn clock_ids(&mut self, now_micros: u64, reserved: u64) {
        self.ids.observe(now_micros, reserved);
    }

    /// A new reservation for the id floor, if one is wanted since the last
    /// call: the server has it written, off the hub task.
    pub fn take_id_reservation(&mut self) -> Option<u64> {
        self.ids.take_wanted()
    }

    /// True if a message could be numbered now; false while the id floor's
    /// writer is behind (the server waits a moment for it then).
    pub fn can_number(&self) -> bool {
        self.ids.has_room()
    }

    /// The id of the last message: every later one is larger.
    pub fn last_id(&self) -> u64 {
        self.ids.last()
    }

    /// The next message id, or `None` (and `ERR busy` to client `id`) when
    /// none is reserved: a message is refused rather than given an id a
    /// restart could give again.
    fn next_id(&mut self, id: ClientId) -> Option<u64> {
        let next = self.ids.allocate();
        if next.is_none() {
            self.error(
                id,
                ErrorCode::Busy,
                "The server cannot take messages this instant; say that again in a moment.".into(),
            );
        }
        next
    }

    fn say(&mut self, id: ClientId, room: Option<&str>, text: String, now: Timestamp) {
        if let Some(why) = self.muted(id, now) {
            return self.error(id, ErrorCode::Muted, why);
        }
        let Some(key) = self.member_room(id, room) else {
            return;
        };
        if self.config.cluster {
            if !self.cluster_up {
                return self.unavailable(id);
            }
            let room = self.rooms.get(&key).map_or(LOBBY, |r| r.name.as_str());
            return self.published.push(cluster::Publish::Msg {
                client: id,
                room: room.to_owned(),
                nick: self.nick_of(id).to_owned(),
                text,
            });
        }
        let Some(msg_id) = self.next_id(id) else {
            return;
        };
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
        if self.config.cluster {
            return self.whisper_cluster(id, to, text);
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
        let Some(msg_id) = self.next_id(id) else {
            return;
        };
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

    /// A whisper in cluster mode: numbered by the cluster and delivered by
    /// the recipient's node (this one's included).
    fn whisper_cluster(&mut self, id: ClientId, to: &str, text: String) {
        let key = names::fold(to);
        let node = match (self.nicks.get(&key), self.remote.get(&key)) {
            (Some(&target), _) if target == id => {
                return self.error(
                    id,
                    ErrorCode::BadArgument,
                    "Whispering to yourself? Nobody else would hear it anyway.".into(),
                );
            }
            (Some(&target), _) => (None, self.nick_of(target).to_owned()),
            (None, Some(user)) => (Some(user.node.clone()), user.nick.clone()),
            (None, None) => {
                return self.error(
                    id,
                    ErrorCode::NoSuchNick,
                    format!("Nobody called {to} is online."),
                );
            }
        };
        if !self.cluster_up {
            return self.unavailable(id);
        }
        let (node, to) = node;
        self.published.push(cluster::Publish::Whisper {
            client: id,
            node,
            from: self.nick_of(id).to_owned(),
            to,
            text,
        });
    }

    fn error(&mut self, id: ClientId, code: ErrorCode, text: String) {
        self.send(id, &ServerLine::Err { code, text });
    }

    /// Replaces the welcome text newcomers get from now on (a reload of the
    /// MOTD file); clients already here are not sent it again.
    pub fn set_motd(&mut self, motd: Arc<[String]>) {
        self.config.motd = motd;
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
    /// each, but not to `id` itself; with `big` false, not through big
    /// rooms (whose members learn of a departure at the next flush).
    fn broadcast_neighbours(&mut self, id: ClientId, line: &Line, big: bool) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        match client.rooms.as_slice() {
            [] => {}
            [only] => {
                let key = only.clone();
                if big || !self.coalesces(&key) {
                    self.broadcast_room(&key, line, Some(id));
                }
            }
            several => {
                let mut seen = HashSet::new();
                for key in several {
                    let Some(room) = self.rooms.get_mut(key) else {
                        continue;
                    };
                    if !big && room.presence.is_some() {
                        continue;
                    }
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
        self.claiming.remove(&id);
        self.takeovers.retain(|_, c| *c != id);
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.outbox.close();
        if let Some(nick) = client.nick.as_deref().map(str::to_owned) {
            if self.config.cluster {
                self.published.push(cluster::Publish::Quit {
                    nick: nick.clone(),
                    rooms: client.rooms.clone(),
                    reason: reason.to_owned(),
                });
            }
            self.nicks.remove(&names::fold(&nick));
            let line = encode(&ServerLine::Quit {
                time: now,
                nick,
                reason: reason.to_owned(),
            });
            self.broadcast_neighbours(id, &line, false);
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
