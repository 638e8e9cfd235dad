//! Chat history: every room and private message, kept in SQLite (or in
//! memory), written in batches on a thread of its own.
//!
//! The hub does not wait for the disk while it keeps up. It hands each message
//! to [`thread::Store::try_append`], which only queues it; the store's thread writes
//! what has queued in one transaction at least every [`BATCH_WINDOW`]. When the
//! queue is full the server's hub task waits a little (a bounded time) for the
//! disk, which slows the senders to the disk's pace: the queue is kept short so
//! that a crash (even `kill -9`) loses at most the batch being collected and
//! what is queued behind it, and SQLite's write-ahead log keeps the
//! database consistent. Reads ([`thread::Store::fetch`]) go through the same thread,
//! after any queued writes, so a client always sees what was said before it
//! asked; the answer comes back through a callback, never by blocking the hub.
//!
//! This module is plain data, shared by the hub (which makes [`Record`]s and
//! [`Fetch`]es) and the store: what a message is, where it was said, which
//! part of the history is asked for. The IO is beside it:
//! - `thread`: [`thread::Store`], the handle, and the thread that batches.
//! - `memory` and `sqlite`: the two backends (`sqlite` also has
//!   [`sqlite::last_id_in`] for `natter admin`).
//! - `backend`: the `Backend` trait both implement, and the keys they share.
//! - `floor`: [`floor::IdFloor`], the id floor file (`ids.floor`) that keeps
//!   message ids growing across restarts in every history mode.

use std::path::PathBuf;
use std::time::Duration;

use crate::ids::ClientId;

mod backend;
pub mod floor;
mod memory;
pub mod sqlite;
pub mod thread;

/// How often queued messages are written at the latest: what a crash can
/// lose, plus the time one write takes.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// Where history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryMode {
    /// In an SQLite database in this directory (created if needed).
    Sqlite(PathBuf),
    /// In memory only: gone when the server stops.
    Memory,
    /// Not kept at all.
    Off,
}

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this are deleted; `None` keeps them forever.
    pub max_age: Option<Duration>,
    /// The most messages kept per room (and per private conversation);
    /// `None` keeps them all.
    pub max_per_room: Option<usize>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(90 * 24 * 3600)),
            max_per_room: Some(100_000),
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The message id; ids only grow.
    pub id: u64,
    /// When the server received it, in Unix seconds.
    pub time: i64,
    /// Where it was said: a room, or a private conversation.
    pub place: Place,
    /// Who said it.
    pub nick: String,
    /// What was said.
    pub text: String,
}

/// Where a message was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In a room, by its display name (`#Rust`).
    Room(String),
    /// A private message to this nickname.
    Private(String),
}

/// Which messages a fetch is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A room, by folded name.
    Room(String),
    /// The private conversation between two folded nicknames, limited to
    /// messages with an id above `after` (a guest sees only what was said
    /// since it took its nickname).
    Private {
        /// One participant.
        a: String,
        /// The other.
        b: String,
        /// Only messages with a larger id.
        after: u64,
    },
}

/// Which part of a scope's history to fetch; always at most `count`
/// messages, returned oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The newest messages.
    Last,
    /// The newest messages with an id below this one.
    Before(u64),
    /// The oldest messages with an id above this one.
    Since(u64),
}

/// A store's failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused.
    #[cfg(feature = "sqlite")]
    #[error("history database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// This build has no SQLite.
    #[error("this natter was built without SQLite; use --history memory or off")]
    NoSqlite,
    /// The store thread could not be started.
    #[error("cannot start the history thread: {0}")]
    Thread(std::io::Error),
}

/// A history request for the store: when it answers, the records go to
/// `client` as `HIST` lines, then `HIST END <target> <count>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Who asked.
    pub client: ClientId,
    /// Which conversation.
    pub scope: Scope,
    /// Which part of it.
    pub range: Range,
    /// At most this many records.
    pub count: usize,
    /// The room or nickname to name in `HIST END`.
    pub target: String,
}
