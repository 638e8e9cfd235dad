//! Chat history: every room and private message, kept in SQLite (or in
//! memory), written in batches on a thread of its own.
//!
//! The hub does not wait for the disk while it keeps up. It hands each message
//! to [`Store::try_append`], which only queues it; the store's thread writes
//! what has queued in one transaction at least every [`BATCH_WINDOW`]. When the
//! queue is full the server's hub task waits a little (a bounded time) for the
//! disk, which slows the senders to the disk's pace: the queue is kept short so
//! that a crash (even `kill -9`) loses at most the batch being collected and
//! what is queued behind it, and SQLite's write-ahead log keeps the
//! database consistent. Reads ([`Store::fetch`]) go through the same thread,
//! after any queued writes, so a client always sees what was said before it
//! asked; the answer comes back through a callback, never by blocking the hub.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often queued messages are written at the latest: what a crash can
/// lose, plus the time one write takes.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// How long the store thread lets messages gather after the first of a
/// batch before it writes them.
const GATHER: Duration = Duration::from_millis(10);

/// The most messages written in one transaction.
const BATCH_MAX: usize = 4096;

/// Messages queued for the store thread before [`Store::try_append`] says
/// "full": about a tenth of a second of SQLite's pace on a small machine, so
/// a crash loses little more than a batch (and the channel, allocated up
/// front, stays small).
const QUEUE: usize = 8192;

/// How often retention limits are applied.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

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

/// The answer to a fetch, delivered on the store's thread.
pub type Reply = Box<dyn FnOnce(Vec<Record>) + Send>;

enum Request {
    Append(Record),
    Fetch {
        scope: Scope,
        range: Range,
        count: usize,
        reply: Reply,
    },
}

/// The handle the hub holds. Dropping it (or [`Store::close`]) writes what
/// is queued and stops the thread.
pub struct Store {
    requests: Option<SyncSender<Request>>,
    thread: Option<JoinHandle<()>>,
    dropped: u64,
}

impl Store {
    /// Opens the history in `mode` and starts its thread. Also returns the
    /// largest message id stored, so new ids continue above it.
    pub fn open(
        mode: &HistoryMode,
        retention: Retention,
    ) -> Result<(Option<Store>, u64), StoreError> {
        let mut backend: Box<dyn Backend> = match mode {
            HistoryMode::Off => return Ok((None, 0)),
            HistoryMode::Memory => Box::new(Memory::default()),
            HistoryMode::Sqlite(dir) => open_sqlite(dir)?,
        };
        backend.prune(retention, now());
        let last_id = backend.last_id();
        let (requests, inbox) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("natter-history".into())
            .spawn(move || run(backend, inbox, retention))
            .map_err(StoreError::Thread)?;
        let store = Store {
            requests: Some(requests),
            thread: Some(thread),
            dropped: 0,
        };
        Ok((Some(store), last_id))
    }

    /// Queues a message to be written. Never blocks: if the disk has fallen
    /// so far behind that the queue is full, the message is not stored (and
    /// that is logged).
    pub fn append(&mut self, record: Record) {
        if let Err(record) = self.try_append(record) {
            self.drop_record(record);
        }
    }

    /// Queues a message to be written, or gives it back if the queue is
    /// full, so the caller can wait for the disk (and slow the chat down to
    /// its pace) before trying again or giving up with
    /// [`Store::drop_record`].
    pub fn try_append(&mut self, record: Record) -> Result<(), Record> {
        let Some(requests) = &self.requests else {
            return Ok(());
        };
        match requests.try_send(Request::Append(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Request::Append(record))) => Err(record),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.count_dropped();
                Ok(())
            }
        }
    }

    /// Gives up on storing a message the queue had no room for (and logs it).
    pub fn drop_record(&mut self, record: Record) {
        drop(record);
        self.count_dropped();
    }

    fn count_dropped(&mut self) {
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            tracing::warn!(dropped = self.dropped, "history store is behind");
        }
    }

    /// Asks for up to `count` messages of `scope`; `reply` is called on the
    /// store's thread with them, oldest first (with none if the store fails).
    pub fn fetch(&mut self, scope: Scope, range: Range, count: usize, reply: Reply) {
        if let Some(requests) = &self.requests {
            let request = Request::Fetch {
                scope,
                range,
                count,
                reply,
            };
            if let Err(TrySendError::Full(Request::Fetch { reply, .. })) =
                requests.try_send(request)
            {
                reply(Vec::new());
            }
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The store thread: collects appends into batches, answers fetches after
/// writing what came before them, prunes now and then.
fn run(mut backend: Box<dyn Backend>, inbox: mpsc::Receiver<Request>, retention: Retention) {
    let mut batch: Vec<Record> = Vec::new();
    let mut last_prune = Instant::now();
    loop {
        // Park only with nothing to write: a batch is written as soon as
        // the queue is drained, so a parked thread (which every send would
        // have to wake, a system call per message) never holds a batch.
        let request = if batch.is_empty() {
            inbox.recv_timeout(PRUNE_EVERY)
        } else {
            inbox.try_recv().map_err(|err| match err {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        };
        match request {
            Ok(Request::Append(record)) => {
                let first = batch.is_empty();
                batch.push(record);
                if batch.len() >= BATCH_MAX {
                    backend.append(&batch);
                    batch.clear();
                } else if first {
                    // Let a burst gather without waking this thread for
                    // each message; it is written within `GATHER` (well
                    // inside `BATCH_WINDOW`).
                    std::thread::sleep(GATHER);
                }
            }
            Ok(Request::Fetch {
                scope,
                range,
                count,
                reply,
            }) => {
                if !batch.is_empty() {
                    backend.append(&batch);
                    batch.clear();
                }
                reply(backend.fetch(&scope, range, count));
            }
            Err(RecvTimeoutError::Timeout) => {
                if !batch.is_empty() {
                    backend.append(&batch);
                    batch.clear();
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !batch.is_empty() {
                    backend.append(&batch);
                }
                return;
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            backend.prune(retention, now());
            last_prune = Instant::now();
        }
    }
}

/// Where records actually go. Failures are logged, not returned: history is
/// a service to users, and the chat goes on without it.
trait Backend: Send {
    fn append(&mut self, batch: &[Record]);
    fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record>;
    fn prune(&mut self, retention: Retention, now: i64);
    fn last_id(&mut self) -> u64;
}

/// The key of a private conversation: the two folded nicknames in order.
fn pair_key(a: &str, b: &str) -> String {
    let (a, b) = (crate::names::fold(a), crate::names::fold(b));
    if a <= b {
        format!("{a} {b}")
    } else {
        format!("{b} {a}")
    }
}

fn scope_key(record: &Record) -> (bool, String) {
    match &record.place {
        Place::Room(room) => (true, crate::names::fold(room)),
        Place::Private(to) => (false, pair_key(&record.nick, to)),
    }
}

/// History in memory: a list ordered by id.
#[derive(Default)]
struct Memory {
    records: Vec<Record>,
}

impl Backend for Memory {
    fn append(&mut self, batch: &[Record]) {
        self.records.extend_from_slice(batch);
    }

    fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record> {
        let (want_room, key, after) = match scope {
            Scope::Room(room) => (true, room.clone(), 0),
            Scope::Private { a, b, after } => (false, pair_key(a, b), *after),
        };
        let matches = |r: &&Record| r.id > after && scope_key(r) == (want_room, key.clone());
        let mut found: Vec<Record> = match range {
            Range::Last => self
                .records
                .iter()
                .rev()
                .filter(matches)
                .take(count)
                .cloned()
                .collect(),
            Range::Before(id) => self
                .records
                .iter()
                .rev()
                .filter(|r| r.id < id)
                .filter(matches)
                .take(count)
                .cloned()
                .collect(),
            Range::Since(id) => {
                return self
                    .records
                    .iter()
                    .filter(|r| r.id > id)
                    .filter(matches)
                    .take(count)
                    .cloned()
                    .collect()
            }
        };
        found.reverse();
        found
    }

    fn prune(&mut self, retention: Retention, now: i64) {
        if let Some(age) = retention.max_age {
            let oldest = now.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            self.records.retain(|r| r.time >= oldest);
        }
        if let Some(max) = retention.max_per_room {
            let mut seen: std::collections::HashMap<(bool, String), usize> = Default::default();
            let mut keep = vec![true; self.records.len()];
            for (i, record) in self.records.iter().enumerate().rev() {
                let n = seen.entry(scope_key(record)).or_default();
                *n += 1;
                if *n > max {
                    if let Some(k) = keep.get_mut(i) {
                        *k = false;
                    }
                }
            }
            let mut flags = keep.into_iter();
            self.records.retain(|_| flags.next().unwrap_or(true));
        }
    }

    fn last_id(&mut self) -> u64 {
        self.records.last().map_or(0, |r| r.id)
    }
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_dir: &Path) -> Result<Box<dyn Backend>, StoreError> {
    Err(StoreError::NoSqlite)
}

#[cfg(feature = "sqlite")]
fn open_sqlite(dir: &Path) -> Result<Box<dyn Backend>, StoreError> {
    sqlite::Sqlite::open(dir).map(|db| Box::new(db) as Box<dyn Backend>)
}

/// The largest message id in the history database in `dir`, or 0 if there
/// is none. `natter admin` gives a new account this as its start, so its
/// owner never reads private history addressed to an earlier guest of the
/// nickname.
pub fn last_id_in(dir: &Path) -> u64 {
    #[cfg(feature = "sqlite")]
    {
        use rusqlite::{Connection, OpenFlags};
        let path = dir.join("history.sqlite3");
        if !path.exists() {
            return 0;
        }
        let last =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).and_then(|db| {
                db.query_row("SELECT MAX(id) FROM messages", [], |row| {
                    row.get::<_, Option<i64>>(0)
                })
            });
        last.ok()
            .flatten()
            .and_then(|id| u64::try_from(id).ok())
            .unwrap_or(0)
    }
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = dir;
        0
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use rusqlite::{params, Connection, OptionalExtension};

    /// History in an SQLite database in WAL mode.
    pub(super) struct Sqlite {
        db: Connection,
    }

    const SCHEMA: &str = "
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        CREATE TABLE IF NOT EXISTS messages (
            id        INTEGER PRIMARY KEY,
            time      INTEGER NOT NULL,
            room      TEXT,             -- folded room name; NULL for private messages
            room_name TEXT,             -- the room as it was written
            pair      TEXT,             -- private: the two folded nicks, sorted
            nick      TEXT NOT NULL,    -- the sender
            recipient TEXT,             -- private: to whom
            text      TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id) WHERE room IS NOT NULL;
        CREATE INDEX IF NOT EXISTS messages_by_pair ON messages (pair, id) WHERE pair IS NOT NULL;
        CREATE INDEX IF NOT EXISTS messages_by_time ON messages (time);
    ";

    impl Sqlite {
        pub(super) fn open(dir: &Path) -> Result<Self, StoreError> {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
            let path = dir.join("history.sqlite3");
            let fail = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let db = Connection::open(&path).map_err(fail)?;
            db.execute_batch(SCHEMA).map_err(fail)?;
            Ok(Self { db })
        }

        fn try_append(&mut self, batch: &[Record]) -> rusqlite::Result<()> {
            let tx = self.db.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO messages (id, time, room, room_name, pair, nick, recipient, text)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for r in batch {
                    let (room, room_name, pair, recipient) = match &r.place {
                        Place::Room(name) => (
                            Some(crate::names::fold(name)),
                            Some(name.as_str()),
                            None,
                            None,
                        ),
                        Place::Private(to) => {
                            (None, None, Some(pair_key(&r.nick, to)), Some(to.as_str()))
                        }
                    };
                    let id = i64::try_from(r.id).unwrap_or(i64::MAX);
                    insert.execute(params![
                        id, r.time, room, room_name, pair, r.nick, recipient, r.text
                    ])?;
                }
            }
            tx.commit()
        }

        fn try_fetch(
            &mut self,
            scope: &Scope,
            range: Range,
            count: usize,
        ) -> rusqlite::Result<Vec<Record>> {
            let (column, key, after) = match scope {
                Scope::Room(room) => ("room", room.clone(), 0u64),
                Scope::Private { a, b, after } => ("pair", pair_key(a, b), *after),
            };
            let (bound, order, cmp) = match range {
                Range::Last => (after, "DESC", ">"),
                Range::Before(id) => (id, "DESC", "<"),
                Range::Since(id) => (id.max(after), "ASC", ">"),
            };
            // `after` also bounds Before: only ids above it are visible.
            let sql = format!(
                "SELECT id, time, room_name, nick, recipient, text FROM messages
                 WHERE {column} = ?1 AND id {cmp} ?2 AND id > ?3
                 ORDER BY id {order} LIMIT ?4"
            );
            let mut stmt = self.db.prepare_cached(&sql)?;
            let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            let rows = stmt.query_map(
                params![key, to_i64(bound), to_i64(after), count],
                row_to_record,
            )?;
            let mut found = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            if order == "DESC" {
                found.reverse();
            }
            Ok(found)
        }

        fn try_prune(&mut self, retention: Retention, now: i64) -> rusqlite::Result<()> {
            if let Some(age) = retention.max_age {
                let oldest = now.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
                self.db
                    .execute("DELETE FROM messages WHERE time < ?1", params![oldest])?;
            }
            if let Some(max) = retention.max_per_room {
                let max = i64::try_from(max).unwrap_or(i64::MAX);
                for column in ["room", "pair"] {
                    // One cut-off per conversation, found through its index:
                    // a correlated subquery per row would be quadratic.
                    let keys: Vec<String> = {
                        let mut stmt = self.db.prepare(&format!(
                            "SELECT DISTINCT {column} FROM messages WHERE {column} IS NOT NULL"
                        ))?;
                        let rows = stmt.query_map([], |row| row.get(0))?;
                        rows.collect::<rusqlite::Result<_>>()?
                    };
                    for key in keys {
                        let cutoff: Option<i64> = self
                            .db
                            .query_row(
                                &format!(
                                    "SELECT id FROM messages WHERE {column} = ?1
                                     ORDER BY id DESC LIMIT 1 OFFSET ?2"
                                ),
                                params![key, max],
                                |row| row.get(0),
                            )
                            .optional()?;
                        if let Some(cutoff) = cutoff {
                            self.db.execute(
                                &format!("DELETE FROM messages WHERE {column} = ?1 AND id <= ?2"),
                                params![key, cutoff],
                            )?;
                        }
                    }
                }
            }
            Ok(())
        }

        fn try_last_id(&mut self) -> rusqlite::Result<u64> {
            let last: Option<i64> =
                self.db
                    .query_row("SELECT MAX(id) FROM messages", [], |row| row.get(0))?;
            Ok(last.and_then(|id| u64::try_from(id).ok()).unwrap_or(0))
        }
    }

    fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
        let id: i64 = row.get(0)?;
        let room_name: Option<String> = row.get(2)?;
        let recipient: Option<String> = row.get(4)?;
        let place = match (room_name, recipient) {
            (Some(room), _) => Place::Room(room),
            (None, Some(to)) => Place::Private(to),
            (None, None) => Place::Room(String::new()),
        };
        Ok(Record {
            id: u64::try_from(id).unwrap_or(0),
            time: row.get(1)?,
            place,
            nick: row.get(3)?,
            text: row.get(5)?,
        })
    }

    impl Backend for Sqlite {
        fn append(&mut self, batch: &[Record]) {
            if let Err(err) = self.try_append(batch) {
                tracing::error!(%err, lost = batch.len(), "cannot write history");
            }
        }

        fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record> {
            self.try_fetch(scope, range, count).unwrap_or_else(|err| {
                tracing::error!(%err, "cannot read history");
                Vec::new()
            })
        }

        fn prune(&mut self, retention: Retention, now: i64) {
            if let Err(err) = self.try_prune(retention, now) {
                tracing::error!(%err, "cannot prune history");
            }
        }

        fn last_id(&mut self) -> u64 {
            self.try_last_id().unwrap_or_else(|err| {
                tracing::error!(%err, "cannot read the last message id");
                0
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn record(id: u64, place: Place, nick: &str, text: &str) -> Record {
        Record {
            id,
            time: now(),
            place,
            nick: nick.into(),
            text: text.into(),
        }
    }

    fn room(name: &str) -> Place {
        Place::Room(name.into())
    }

    fn fetch(store: &mut Store, scope: Scope, range: Range, count: usize) -> Vec<u64> {
        let (tx, rx) = channel();
        store.fetch(
            scope,
            range,
            count,
            Box::new(move |records| {
                let _ = tx.send(records.iter().map(|r| r.id).collect());
            }),
        );
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    fn exercise(mode: HistoryMode) {
        let (store, last_id) = Store::open(&mode, Retention::default()).unwrap();
        let mut store = store.unwrap();
        assert_eq!(last_id, 0);
        for id in 1..=10 {
            let place = if id % 2 == 0 {
                room("#Rust")
            } else {
                room("#lobby")
            };
            store.append(record(id, place, "alice", "hi"));
        }
        store.append(record(11, Place::Private("Bob".into()), "alice", "psst"));
        store.append(record(12, Place::Private("alice".into()), "bob", "yes?"));
        let rust = Scope::Room("#rust".into());
        assert_eq!(fetch(&mut store, rust.clone(), Range::Last, 3), [6, 8, 10]);
        assert_eq!(fetch(&mut store, rust.clone(), Range::Before(6), 2), [2, 4]);
        assert_eq!(fetch(&mut store, rust.clone(), Range::Since(4), 2), [6, 8]);
        let pair = |after| Scope::Private {
            a: "BOB".into(),
            b: "Alice".into(),
            after,
        };
        assert_eq!(fetch(&mut store, pair(0), Range::Last, 50), [11, 12]);
        assert_eq!(fetch(&mut store, pair(11), Range::Last, 50), [12]);
        assert_eq!(
            fetch(&mut store, pair(11), Range::Before(12), 50),
            Vec::<u64>::new()
        );
        store.close();
    }

    #[test]
    fn memory_history_answers_every_range() {
        exercise(HistoryMode::Memory);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_history_answers_every_range_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("natter-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        exercise(HistoryMode::Sqlite(dir.clone()));
        let (store, last_id) =
            Store::open(&HistoryMode::Sqlite(dir.clone()), Retention::default()).unwrap();
        assert_eq!(last_id, 12);
        let mut store = store.unwrap();
        let lobby = Scope::Room("#lobby".into());
        assert_eq!(fetch(&mut store, lobby, Range::Last, 2), [7, 9]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn retention_keeps_the_newest_per_room_in(backend: &mut dyn Backend) {
        let mut batch: Vec<_> = (1..=6)
            .map(|id| record(id, room(if id <= 3 { "#a" } else { "#b" }), "x", "y"))
            .collect();
        let mut old = record(7, room("#b"), "x", "ancient");
        old.time = now() - 3600;
        batch.insert(0, old);
        backend.append(&batch);
        let retention = Retention {
            max_age: Some(Duration::from_secs(60)),
            max_per_room: Some(2),
        };
        backend.prune(retention, now());
        let ids = |backend: &mut dyn Backend, room: &str| -> Vec<u64> {
            let scope = Scope::Room(room.into());
            backend
                .fetch(&scope, Range::Since(0), 100)
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(ids(backend, "#a"), [2, 3]);
        assert_eq!(
            ids(backend, "#b"),
            [5, 6],
            "the oldest by count and by age go"
        );
    }

    #[test]
    fn retention_keeps_the_newest_per_room() {
        retention_keeps_the_newest_per_room_in(&mut Memory::default());
        #[cfg(feature = "sqlite")]
        {
            let dir = std::env::temp_dir().join(format!("natter-prune-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut db = sqlite::Sqlite::open(&dir).unwrap();
            retention_keeps_the_newest_per_room_in(&mut db);
            drop(db);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
