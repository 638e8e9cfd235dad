//! The server's limits and policies, each with a flag in `natter serve` (see
//! `natter serve --help`). Bounds that are not a policy but the size of an
//! internal queue are constants beside the queue they bound (the hub's inbox,
//! the store's and the accounts thread's queues; see ARCHITECTURE.md).

use std::path::PathBuf;
use std::time::Duration;

use crate::accounts::AccountsMode;
use crate::store::{HistoryMode, Retention};

/// How a server behaves under load and abuse. `Config::default()` is what
/// `natter serve` uses without flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections served at once; past it a newcomer gets `ERR server-full`.
    /// Each connection holds a file descriptor, and a process may hold a
    /// limited number of them.
    pub max_clients: usize,
    /// The most bytes one line may hold; longer lines get `ERR line-too-long`
    /// and are dropped. Also bounds the memory a connection's read side holds.
    pub max_line: usize,
    /// Bytes a client may have pending (queued for it, or being written to
    /// its socket) before it is disconnected, so it never delays anyone
    /// else. A client with nothing pending is always sent its next line.
    pub outbox_bytes: usize,
    /// Bytes pending for all clients together; past it, a client with
    /// something already pending is disconnected rather than queued more,
    /// so that many stalled clients cannot take the machine's memory.
    pub outbox_total_bytes: usize,
    /// How long a connection may stay without a nickname before it is closed.
    pub register_timeout: Duration,
    /// Lines per second a client may send over time; 0 switches the limit off.
    /// Past it, the server reads that client's lines more slowly.
    pub rate: u32,
    /// Lines a client may send at once before `rate` applies: a normal paste
    /// goes through at full speed.
    pub burst: u32,
    /// On shutdown, how long to wait for outboxes to be written.
    pub shutdown_grace: Duration,
    /// Threads that run the connections; 0 means one per core.
    pub threads: usize,
    /// The most rooms one client may be in at once.
    pub max_rooms: usize,
    /// Members from which a room is big (protocol 1.1): its members are not
    /// sent a `JOIN`, `PART` or `QUIT` line for each arrival and departure,
    /// but `JOINS` and `PARTS` lines every `presence_interval`; a newcomer
    /// gets the list they were last told at once. 0: never. Without it, a crowd
    /// joining one room costs lines in the square of its size.
    pub big_room: usize,
    /// How often big rooms are told who came and went.
    pub presence_interval: Duration,
    /// Where history is kept. The default here is off, so that tests and
    /// embedders write no files and see no replays unless they ask;
    /// `natter serve` defaults to SQLite in its data directory.
    pub history: HistoryMode,
    /// How much history to keep.
    pub retention: Retention,
    /// How many earlier messages a client is sent on joining a room.
    pub replay: usize,
    /// Where registered nicknames and bans are kept. The default here is
    /// memory (tests write no files); `natter serve` defaults to SQLite in
    /// its data directory.
    pub accounts: AccountsMode,
    /// How long a `MUTE` without a duration lasts.
    pub mute_default: Duration,
    /// How long a `BAN` without a duration lasts.
    pub ban_default: Duration,
    /// How long a connection to the TLS listener may take to finish its
    /// handshake (from the first byte it must send): a peer that connects and
    /// stays silent would otherwise hold a slot of `max_clients` forever.
    /// Only used when a TLS listener runs (see [`crate::server::Listeners`]).
    pub tls_handshake_timeout: Duration,
    // The web client.
    /// Origins besides the page's own whose pages may open the WebSocket
    /// (`--web-origin`): the handshake refuses others, so that a page on
    /// another site cannot chat in its visitor's name.
    pub web_origins: Vec<String>,
    /// The reverse proxy in front of the web listener (`--web-trust-proxy`):
    /// only from this address is `X-Forwarded-For` believed, so that bans
    /// and limits see the real client and nobody else can claim to be one.
    pub web_trust_proxy: Option<std::net::IpAddr>,
    /// How often an idle WebSocket is pinged (`--web-ping`): mobile
    /// carriers' NATs forget a quiet connection after a minute or so, and a
    /// peer that has not answered one ping by the next is closed.
    pub web_ping: Duration,
    // Message ids across restarts.
    /// Where the id floor file (`ids.floor`) is kept, so message ids grow
    /// across restarts (a `kill -9` included) in every history mode. `None`
    /// keeps it next to the SQLite history if there is one, and otherwise
    /// nowhere: ids then come from the clock alone. `natter serve` keeps it
    /// in its data directory.
    pub id_floor_dir: Option<PathBuf>,
    // Operations: the welcome text.
    /// The welcome text (MOTD) every client gets after `WELCOME`, one `INFO`
    /// line each; `natter serve --motd FILE` reads it at start. Empty: none.
    pub motd: Vec<String>,
    /// Whether the web listener answers `GET /metrics` as `--metrics-bind`
    /// does (`--web-metrics`). Off unless asked: the web listener usually
    /// faces everyone, and the load and counts are the operator's business.
    pub web_metrics: bool,
    // A locked accounts database.
    /// How long a `LOGIN`, `REGISTER` or `PASSWORD` may wait, from when it
    /// is queued, for an accounts database another process holds locked,
    /// before it gets `ERR busy` (`--accounts-wait`).
    pub accounts_wait: Duration,
    // Registrations per address.
    /// Accounts one address (IPv6: one /64) may register per hour; 0 turns
    /// the limit off. Registering is cheap for a script and every account is
    /// kept for good, so without it one host could fill the database.
    pub registrations_per_hour: u32,
    /// Addresses whose recent registrations are remembered for that limit;
    /// past it the one that registered least recently is forgotten, so
    /// many addresses cost bounded memory.
    pub registration_addresses: usize,
    // Connections per address, checked when a connection is accepted.
    /// Connections one address may hold open at once (an IPv6 address counts
    /// by its /64); past it a newcomer gets `ERR too-many-connections`. 0
    /// switches the limit off. Keeps one host from taking every slot of
    /// `max_clients`, while a household behind one NAT still fits.
    pub max_per_address: usize,
    /// New connections one address may open per minute, over time; past
    /// `connect_burst` a newcomer gets `ERR connect-throttled`. 0 switches
    /// the limit off. Keeps a client that reconnects in a loop from costing
    /// the server a registration each time.
    pub connect_rate: u32,
    /// New connections one address may open at once before `connect_rate`
    /// applies: everyone behind one NAT reconnecting after a network hiccup.
    pub connect_burst: u32,
    /// Addresses remembered for `connect_rate`, besides those holding
    /// connections; when full, those that connected longest ago are
    /// forgotten (and start afresh).
    pub address_table: usize,
    // Several nodes.
    /// The Redis that makes this node one of several (`--cluster`, a
    /// `redis://` URL); `None`, the default, is a single node that needs
    /// nothing else.
    pub cluster: Option<String>,
    /// This node's name in the cluster (`--node-id`): letters, digits,
    /// `.`, `_` and `-`, at most 64. `None` takes the host name and port.
    /// A node restarted under the same name clears what it left behind.
    pub node_id: Option<String>,
    /// How long a node's heartbeat lasts in Redis (`--node-ttl`): a node
    /// silent for that long is taken for dead, and its users leave.
    pub node_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_line: 1024,
            outbox_bytes: 1 << 20,
            outbox_total_bytes: 512 << 20,
            register_timeout: Duration::from_secs(60),
            rate: 10,
            burst: 50,
            shutdown_grace: Duration::from_secs(2),
            threads: 0,
            max_rooms: 32,
            big_room: 200,
            presence_interval: Duration::from_millis(500),
            history: HistoryMode::Off,
            retention: Retention::default(),
            replay: 50,
            accounts: AccountsMode::Memory,
            mute_default: Duration::from_secs(10 * 60),
            ban_default: Duration::from_secs(24 * 3600),
            tls_handshake_timeout: Duration::from_secs(10),
            // The web client.
            web_origins: Vec::new(),
            web_trust_proxy: None,
            web_ping: Duration::from_secs(25),
            id_floor_dir: None,
            // Operations: the welcome text.
            motd: Vec::new(),
            web_metrics: false,
            // A locked accounts database.
            accounts_wait: Duration::from_secs(2),
            // Registrations per address.
            registrations_per_hour: 5,
            registration_addresses: 4096,
            // Connections per address.
            max_per_address: 16,
            connect_rate: 30,
            connect_burst: 20,
            address_table: 65_536,
            // Several nodes.
            cluster: None,
            node_id: None,
            node_ttl: Duration::from_secs(10),
        }
    }
}
