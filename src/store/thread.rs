//! [`Store`]: the handle the hub task holds, and the store's own thread,
//! which writes records in batches and answers fetches after the writes
//! queued before them.
//!
//! A write that fails (a full or read-only disk) loses its batch from the
//! history and nothing else: the chat never waits for it. The first failure
//! of an outage is logged, the rest only counted, and the count is logged
//! when a write succeeds again ([`Outage`]).

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::memory::Memory;
use super::{HistoryMode, Range, Record, Retention, Scope, StoreError};

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

/// The answer to a fetch, delivered on the store's thread.
pub type Deliver = Box<dyn FnOnce(Vec<Record>) + Send>;

/// What the store thread is asked to do, in order.
enum Job {
    Append(Record),
    Fetch {
        scope: Scope,
        range: Range,
        count: usize,
        deliver: Deliver,
    },
}

/// The handle the hub holds. Dropping it (or [`Store::close`]) writes what
/// is queued and stops the thread.
pub struct Store {
    requests: Option<SyncSender<Job>>,
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
            .spawn(move || run(Box::new(Timed(backend)), inbox, retention))
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
        match requests.try_send(Job::Append(record)) {
            Ok(()) => {
                crate::metrics::history_queue(1);
                Ok(())
            }
            Err(TrySendError::Full(Job::Append(record))) => Err(record),
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

    /// Asks for up to `count` messages of `scope`; `deliver` is called on the
    /// store's thread with them, oldest first (with none if the store fails).
    pub fn fetch(&mut self, scope: Scope, range: Range, count: usize, deliver: Deliver) {
        if let Some(requests) = &self.requests {
            let request = Job::Fetch {
                scope,
                range,
                count,
                deliver,
            };
            if let Err(TrySendError::Full(Job::Fetch { deliver, .. })) = requests.try_send(request)
            {
                deliver(Vec::new());
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

/// A backend whose batch writes are timed for the metrics
/// (`natter_history_write_seconds`).
struct Timed(Box<dyn Backend>);

impl Backend for Timed {
    fn append(&mut self, batch: &[Record]) -> Result<(), String> {
        let start = Instant::now();
        let written = self.0.append(batch);
        crate::metrics::history_written(start.elapsed());
        written
    }
    fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record> {
        self.0.fetch(scope, range, count)
    }
    fn prune(&mut self, retention: Retention, now: i64) {
        self.0.prune(retention, now);
    }
    fn last_id(&mut self) -> u64 {
        self.0.last_id()
    }
}

/// A run of failed writes, so that a full disk is one line in the log when
/// it starts and one when it ends, not one per batch.
#[derive(Debug, Default)]
struct Outage {
    /// Failed batches since the last success (0: writing works).
    batches: u64,
    /// Messages those batches held, lost from the history.
    lost: u64,
    /// When the first of them failed.
    since: Option<Instant>,
}

impl Outage {
    /// Writes `batch` (then empties it), logging an outage's start and end.
    fn write(&mut self, backend: &mut dyn Backend, batch: &mut Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        match backend.append(batch) {
            Ok(()) => {
                if let Some(since) = self.since.take() {
                    tracing::warn!(
                        lost = self.lost,
                        batches = self.batches,
                        secs = since.elapsed().as_secs(),
                        "history writes work again; messages sent meanwhile are not in it"
                    );
                    self.batches = 0;
                    self.lost = 0;
                }
            }
            Err(err) => {
                if self.since.is_none() {
                    self.since = Some(Instant::now());
                    tracing::error!(
                        %err,
                        "cannot write history; the chat goes on without it, and this is \
                         logged again only when writes work again"
                    );
                }
                self.batches += 1;
                self.lost += u64::try_from(batch.len()).unwrap_or(u64::MAX);
            }
        }
        batch.clear();
    }
}

/// The store thread: collects appends into batches, answers fetches after
/// writing what came before them, prunes now and then.
fn run(mut backend: Box<dyn Backend>, inbox: mpsc::Receiver<Job>, retention: Retention) {
    let mut batch: Vec<Record> = Vec::new();
    let mut outage = Outage::default();
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
            Ok(Job::Append(record)) => {
                crate::metrics::history_queue(-1);
                let first = batch.is_empty();
                batch.push(record);
                if batch.len() >= BATCH_MAX {
                    outage.write(backend.as_mut(), &mut batch);
                } else if first {
                    // Let a burst gather without waking this thread for
                    // each message; it is written within `GATHER` (well
                    // inside `BATCH_WINDOW`).
                    std::thread::sleep(GATHER);
                }
            }
            Ok(Job::Fetch {
                scope,
                range,
                count,
                deliver,
            }) => {
                outage.write(backend.as_mut(), &mut batch);
                deliver(backend.fetch(&scope, range, count));
            }
            Err(RecvTimeoutError::Timeout) => outage.write(backend.as_mut(), &mut batch),
            Err(RecvTimeoutError::Disconnected) => {
                outage.write(backend.as_mut(), &mut batch);
                return;
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            backend.prune(retention, now());
            last_prune = Instant::now();
        }
    }
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_dir: &Path) -> Result<Box<dyn Backend>, StoreError> {
    Err(StoreError::NoSqlite)
}

#[cfg(feature = "sqlite")]
fn open_sqlite(dir: &Path) -> Result<Box<dyn Backend>, StoreError> {
    super::sqlite::Sqlite::open(dir).map(|db| Box::new(db) as Box<dyn Backend>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Place;
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
        backend.append(&batch).unwrap();
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

    /// A backend whose writes fail while `full` is set.
    #[derive(Default)]
    struct Flaky {
        full: bool,
        inner: Memory,
    }

    impl Backend for Flaky {
        fn append(&mut self, batch: &[Record]) -> Result<(), String> {
            if self.full {
                return Err("database or disk is full".into());
            }
            self.inner.append(batch)
        }
        fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record> {
            self.inner.fetch(scope, range, count)
        }
        fn prune(&mut self, retention: Retention, now: i64) {
            self.inner.prune(retention, now);
        }
        fn last_id(&mut self) -> u64 {
            self.inner.last_id()
        }
    }

    #[test]
    fn an_outage_is_counted_and_ends_at_the_first_write_that_works() {
        let mut backend = Flaky {
            full: true,
            ..Flaky::default()
        };
        let mut outage = Outage::default();
        for id in 1..=3 {
            let mut batch = vec![record(id, room("#a"), "x", "y"); 2];
            outage.write(&mut backend, &mut batch);
            assert!(batch.is_empty(), "a failed batch is dropped");
        }
        assert_eq!((outage.batches, outage.lost), (3, 6));
        assert!(outage.since.is_some());
        backend.full = false;
        outage.write(&mut backend, &mut vec![record(9, room("#a"), "x", "y")]);
        assert_eq!((outage.batches, outage.lost), (0, 0));
        assert!(outage.since.is_none());
        let scope = Scope::Room("#a".into());
        let ids: Vec<u64> = backend
            .fetch(&scope, Range::Last, 10)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [9]);
    }

    #[test]
    fn retention_keeps_the_newest_per_room() {
        retention_keeps_the_newest_per_room_in(&mut Memory::default());
        #[cfg(feature = "sqlite")]
        {
            let dir = std::env::temp_dir().join(format!("natter-prune-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut db = crate::store::sqlite::Sqlite::open(&dir).unwrap();
            retention_keeps_the_newest_per_room_in(&mut db);
            drop(db);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
