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
    /// Lines queued for a client that is not reading them; one more and the
    /// client is disconnected, so it never delays anyone else.
    pub outbox: usize,
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_line: 1024,
            outbox: 1024,
            register_timeout: Duration::from_secs(60),
            rate: 10,
            burst: 50,
            shutdown_grace: Duration::from_secs(2),
            threads: 0,
            max_rooms: 32,
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
        }
    }
}
