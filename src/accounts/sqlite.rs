//! Accounts, bans and mutes in an SQLite database (`accounts.sqlite3`, WAL mode),
//! which notices writes by other processes.
//!
//! Another process may hold the database's write lock for a while (a long
//! `natter admin` transaction). Waits for it are bounded by the deadline of
//! the request at hand ([`wait_until`]), so that a locked database gets a
//! prompt `ERR busy` instead of a login that hangs.
#![cfg(feature = "sqlite")]

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::backend::Backend;
use super::{AccountInfo, AccountsError, Ban, BanTarget, Mute, Snapshot, FILE};
use crate::names;

pub(super) struct Sqlite {
    db: Connection,
    path: PathBuf,
    /// SQLite's count of commits by other connections, when last read.
    version: i64,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS accounts (
        nick_key TEXT PRIMARY KEY,     -- folded nickname
        nick     TEXT NOT NULL,        -- as registered
        hash     TEXT NOT NULL,        -- argon2id PHC string
        operator INTEGER NOT NULL DEFAULT 0,
        since    INTEGER NOT NULL DEFAULT 0,
        created  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS bans (
        kind   TEXT NOT NULL,          -- 'nick' or 'addr'
        value  TEXT NOT NULL,          -- folded nickname or address
        until  INTEGER NOT NULL,       -- Unix seconds
        by     TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (kind, value)
    );
    CREATE TABLE IF NOT EXISTS mutes (
        nick   TEXT PRIMARY KEY,       -- folded nickname
        until  INTEGER NOT NULL,       -- Unix seconds
        by     TEXT NOT NULL
    );
";

/// How long a statement waits for another process's lock when no request
/// deadline is set (`natter admin`).
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// How long to sleep between two tries of a locked database.
const BUSY_NAP: Duration = Duration::from_millis(10);

/// Tries every statement gets, even past the deadline, so that a lock held
/// for a moment (another process's quick write) is waited out.
const MIN_TRIES: i32 = 5;

thread_local! {
    /// The deadline of the request this thread is working on, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Bounds this thread's waits for a locked database until `deadline` (or,
/// with `None`, to [`BUSY_WAIT`] per statement): the accounts thread sets
/// it before each request, so that one request waits at most its deadline
/// in total, however many statements it runs.
pub(super) fn wait_until(deadline: Option<Instant>) {
    DEADLINE.with(|d| d.set(deadline));
}

/// SQLite's busy handler: whether to try the locked database again (after
/// a nap), until the deadline and at least [`MIN_TRIES`] times.
fn busy(tries: i32) -> bool {
    let now = Instant::now();
    let give_up = DEADLINE.with(Cell::get).unwrap_or_else(|| {
        // Without a deadline: `tries` naps so far, as busy_timeout counts.
        let waited = BUSY_NAP.saturating_mul(u32::try_from(tries).unwrap_or(u32::MAX));
        now + BUSY_WAIT.saturating_sub(waited)
    });
    if now >= give_up && tries >= MIN_TRIES {
        return false;
    }
    std::thread::sleep(BUSY_NAP);
    true
}

impl Sqlite {
    pub(super) fn open(dir: &Path) -> Result<Self, AccountsError> {
        std::fs::create_dir_all(dir).map_err(|source| AccountsError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let db = Connection::open(&path).map_err(|source| AccountsError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut this = Self {
            db,
            path,
            version: 0,
        };
        this.db.busy_handler(Some(busy)).map_err(|e| this.fail(e))?;
        this.db.execute_batch(SCHEMA).map_err(|e| this.fail(e))?;
        this.version = this.data_version().map_err(|e| this.fail(e))?;
        Ok(this)
    }

    fn fail(&self, source: rusqlite::Error) -> AccountsError {
        AccountsError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn data_version(&self) -> rusqlite::Result<i64> {
        self.db
            .query_row("PRAGMA data_version", [], |row| row.get(0))
    }

    fn changed(&self, rows: rusqlite::Result<usize>, key: &str) -> Result<(), AccountsError> {
        match rows {
            Ok(0) => Err(AccountsError::NoAccount(key.to_owned())),
            Ok(_) => Ok(()),
            Err(err) => Err(self.fail(err)),
        }
    }
}

impl Backend for Sqlite {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        self.db
            .query_row(
                "SELECT nick, operator, since, hash FROM accounts WHERE nick_key = ?1",
                params![key],
                |row| {
                    Ok((
                        AccountInfo {
                            nick: row.get(0)?,
                            operator: row.get::<_, i64>(1)? != 0,
                            since: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        },
                        row.get(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError> {
        let rows = self.db.execute(
            "INSERT OR IGNORE INTO accounts (nick_key, nick, hash, operator, since, created)
             VALUES (?1, ?2, ?3, ?4, ?5, strftime('%s', 'now'))",
            params![
                names::fold(&account.nick),
                account.nick,
                hash,
                i64::from(account.operator),
                i64::try_from(account.since).unwrap_or(i64::MAX),
            ],
        );
        match rows {
            Ok(0) => Err(AccountsError::Exists(account.nick.clone())),
            Ok(_) => Ok(()),
            Err(err) => Err(self.fail(err)),
        }
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError> {
        let rows = self.db.execute(
            "UPDATE accounts SET hash = ?2 WHERE nick_key = ?1",
            params![key, hash],
        );
        self.changed(rows, key)
    }

    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError> {
        let rows = self.db.execute(
            "UPDATE accounts SET operator = ?2 WHERE nick_key = ?1",
            params![key, i64::from(operator)],
        );
        self.changed(rows, key)
    }

    fn delete(&mut self, key: &str) -> Result<(), AccountsError> {
        let rows = self
            .db
            .execute("DELETE FROM accounts WHERE nick_key = ?1", params![key]);
        self.changed(rows, key)
    }

    fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        let read = |db: &Connection| -> rusqlite::Result<Snapshot> {
            let mut stmt =
                db.prepare("SELECT nick, operator, since FROM accounts ORDER BY nick_key")?;
            let accounts = stmt
                .query_map([], |row| {
                    Ok(AccountInfo {
                        nick: row.get(0)?,
                        operator: row.get::<_, i64>(1)? != 0,
                        since: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = db.prepare("SELECT kind, value, until, by, reason FROM bans")?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let bans = rows
                .into_iter()
                .filter_map(|(kind, value, until, by, reason)| {
                    Some(Ban {
                        target: BanTarget::from_kind_value(&kind, &value)?,
                        until,
                        by,
                        reason,
                    })
                })
                .collect();
            let mut stmt = db.prepare("SELECT nick, until, by FROM mutes")?;
            let mutes = stmt
                .query_map([], |row| {
                    Ok(Mute {
                        nick: row.get(0)?,
                        until: row.get(1)?,
                        by: row.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Snapshot {
                accounts,
                bans,
                mutes,
            })
        };
        read(&self.db).map_err(|e| self.fail(e))
    }

    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError> {
        let (kind, value) = ban.target.kind_value();
        self.db
            .execute(
                "INSERT OR REPLACE INTO bans (kind, value, until, by, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![kind, value, ban.until, ban.by, ban.reason],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError> {
        let (kind, value) = target.kind_value();
        self.db
            .execute(
                "DELETE FROM bans WHERE kind = ?1 AND value = ?2",
                params![kind, value],
            )
            .map(|rows| rows > 0)
            .map_err(|e| self.fail(e))
    }

    fn save_mute(&mut self, mute: &Mute) -> Result<(), AccountsError> {
        self.db
            .execute(
                "INSERT OR REPLACE INTO mutes (nick, until, by) VALUES (?1, ?2, ?3)",
                params![mute.nick, mute.until, mute.by],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    fn remove_mute(&mut self, nick: &str) -> Result<bool, AccountsError> {
        self.db
            .execute("DELETE FROM mutes WHERE nick = ?1", params![nick])
            .map(|rows| rows > 0)
            .map_err(|e| self.fail(e))
    }

    fn changed_elsewhere(&mut self) -> bool {
        match self.data_version() {
            Ok(version) if version != self.version => {
                self.version = version;
                true
            }
            _ => false,
        }
    }
}
