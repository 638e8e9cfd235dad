//! History in an SQLite database (bundled, WAL mode), and [`last_id_in`] for
//! `natter admin`, which reads the database without a store.

use std::path::Path;

#[cfg(feature = "sqlite")]
use rusqlite::{params, Connection, OptionalExtension};

#[cfg(feature = "sqlite")]
use super::backend::{pair_key, Backend};
#[cfg(feature = "sqlite")]
use super::{Place, Range, Record, Retention, Scope, StoreError};

#[cfg(feature = "sqlite")]
/// History in an SQLite database in WAL mode.
pub(super) struct Sqlite {
    db: Connection,
}

#[cfg(feature = "sqlite")]
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

#[cfg(feature = "sqlite")]
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
        let last: Option<i64> = self
            .db
            .query_row("SELECT MAX(id) FROM messages", [], |row| row.get(0))?;
        Ok(last.and_then(|id| u64::try_from(id).ok()).unwrap_or(0))
    }
}

#[cfg(feature = "sqlite")]
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

#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    fn append(&mut self, batch: &[Record]) -> Result<(), String> {
        self.try_append(batch).map_err(|err| err.to_string())
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
