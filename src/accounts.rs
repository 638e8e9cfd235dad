//! Registered nicknames and bans, kept in SQLite (or in memory), on a thread
//! of their own.
//!
//! Password hashing (argon2id) is slow on purpose: tens of milliseconds of
//! one core per check. It never runs on the hub task or a connection's task.
//! The hub queues a [`Request`] with [`Accounts::try_send`] (a bounded queue:
//! when it is full the client is told the server is busy, so a login flood
//! costs at most this one thread), and the answer comes back as a [`Reply`]
//! through the callback given to [`Accounts::open`], which the server turns
//! into a hub event.
//!
//! The hub keeps its own copy of what it must know at once — which nicknames
//! are registered, and the bans — loaded from a [`Snapshot`] at start-up. When
//! another process changes the database (`natter admin ...` while the server
//! runs), this thread notices within a second and sends a fresh snapshot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ids::ClientId;
use crate::names;
use crate::protocol::Secret;

/// Requests queued for the accounts thread before [`Accounts::try_send`]
/// says "busy": a few seconds of password checks.
const QUEUE: usize = 64;

/// How often the thread looks for changes made by another process.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The file, in the data directory, that holds accounts and bans.
pub const FILE: &str = "accounts.sqlite3";

/// Where accounts are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountsMode {
    /// In an SQLite database in this directory (created if needed).
    Sqlite(PathBuf),
    /// In memory only: gone when the server stops.
    Memory,
}

/// A registered nickname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// The nickname as it was registered.
    pub nick: String,
    /// Whether it may use the operator commands.
    pub operator: bool,
    /// The last message id when it was registered: its owner may read the
    /// private history of the nickname from there on, never what an earlier
    /// guest of the same nickname was told.
    pub since: u64,
}

/// What a ban keeps out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanTarget {
    /// A nickname, folded.
    Nick(String),
    /// An IP address (IPv4-mapped IPv6 addresses in their IPv4 form).
    Addr(IpAddr),
}

impl BanTarget {
    /// Reads an operator's argument: an IP address, or else a nickname.
    pub fn parse(text: &str) -> Self {
        match text.parse::<IpAddr>() {
            Ok(addr) => BanTarget::Addr(addr.to_canonical()),
            Err(_) => BanTarget::Nick(names::fold(text)),
        }
    }

    #[cfg(feature = "sqlite")]
    fn kind_value(&self) -> (&'static str, String) {
        match self {
            BanTarget::Nick(nick) => ("nick", nick.clone()),
            BanTarget::Addr(addr) => ("addr", addr.to_string()),
        }
    }

    #[cfg(feature = "sqlite")]
    fn from_kind_value(kind: &str, value: &str) -> Option<Self> {
        match kind {
            "nick" => Some(BanTarget::Nick(value.to_owned())),
            "addr" => value.parse().ok().map(BanTarget::Addr),
            _ => None,
        }
    }
}

impl std::fmt::Display for BanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanTarget::Nick(nick) => f.write_str(nick),
            BanTarget::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// A ban, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// What it keeps out.
    pub target: BanTarget,
    /// Until this Unix second.
    pub until: i64,
    /// The operator who set it.
    pub by: String,
    /// Why; may be empty.
    pub reason: String,
}

/// What the hub must know without asking: the registered nicknames (with
/// their operator flags) and the bans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every account.
    pub accounts: Vec<AccountInfo>,
    /// Every ban, expired or not.
    pub bans: Vec<Ban>,
}

/// Work for the accounts thread.
#[derive(Debug)]
pub enum Request {
    /// Register `nick` with `password`, unless it is registered already.
    Register {
        /// Who asked.
        client: ClientId,
        /// The nickname, as written.
        nick: String,
        /// The password.
        password: Secret,
        /// The last message id now; see [`AccountInfo::since`].
        since: u64,
    },
    /// Check `password` for `nick`.
    Login {
        /// Who asked.
        client: ClientId,
        /// The nickname.
        nick: String,
        /// The password to check.
        password: Secret,
    },
    /// Replace `nick`'s password if `old` is right.
    ChangePassword {
        /// Who asked.
        client: ClientId,
        /// The account.
        nick: String,
        /// The current password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// Keep a ban (replacing one on the same target).
    SaveBan(Ban),
    /// Forget a ban.
    RemoveBan(BanTarget),
}

/// The accounts thread's answers, for the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `nick` is now registered.
    Registered {
        /// Who asked.
        client: ClientId,
        /// The new account.
        account: AccountInfo,
    },
    /// `nick` was registered already.
    Taken {
        /// Who asked.
        client: ClientId,
        /// The nickname.
        nick: String,
    },
    /// The password was right.
    LoggedIn {
        /// Who asked.
        client: ClientId,
        /// The account.
        account: AccountInfo,
    },
    /// The password was wrong, or there is no such account.
    WrongPassword {
        /// Who asked.
        client: ClientId,
        /// The nickname tried.
        nick: String,
    },
    /// The password was changed.
    PasswordChanged {
        /// Who asked.
        client: ClientId,
    },
    /// The request could not be carried out (a disk error); logged.
    Failed {
        /// Who asked.
        client: ClientId,
    },
    /// Another process changed the database: what it holds now.
    Reloaded(Snapshot),
}

/// Why the accounts database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
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
    #[error("accounts database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The accounts thread could not be started.
    #[error("cannot start the accounts thread: {0}")]
    Thread(std::io::Error),
    /// This build has no SQLite.
    #[error("this natter was built without SQLite; use --accounts memory")]
    NoSqlite,
    /// A password could not be hashed.
    #[error("{0}")]
    Hash(String),
    /// A nickname or password that breaks the rules.
    #[error("{0}")]
    Invalid(String),
    /// No such account.
    #[error("there is no account {0}")]
    NoAccount(String),
    /// The account exists already.
    #[error("{0} is registered already")]
    Exists(String),
}

/// The handle the server holds: queue requests, close on shutdown.
pub struct Accounts {
    queue: Option<SyncSender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Accounts {
    /// Opens the accounts and starts their thread; `reply` is called on that
    /// thread with every answer. Also returns what the hub must start with.
    pub fn open(
        mode: &AccountsMode,
        reply: impl Fn(Reply) + Send + 'static,
    ) -> Result<(Self, Snapshot), AccountsError> {
        let mut backend = open_backend(mode)?;
        let snapshot = backend.snapshot()?;
        let (queue, inbox) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("natter-accounts".into())
            .spawn(move || run(backend, inbox, reply))
            .map_err(AccountsError::Thread)?;
        Ok((
            Self {
                queue: Some(queue),
                thread: Some(thread),
            },
            snapshot,
        ))
    }

    /// Queues a request; gives it back if the queue is full.
    pub fn try_send(&self, request: Request) -> Result<(), Request> {
        let Some(queue) = &self.queue else {
            return Err(request);
        };
        queue.try_send(request).map_err(|err| match err {
            TrySendError::Full(r) | TrySendError::Disconnected(r) => r,
        })
    }

    /// Finishes the queued requests and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut backend: Box<dyn Backend>, inbox: mpsc::Receiver<Request>, reply: impl Fn(Reply)) {
    let mut watched = Instant::now();
    loop {
        match inbox.recv_timeout(WATCH_EVERY) {
            Ok(request) => {
                if let Some(answer) = handle(backend.as_mut(), request) {
                    reply(answer);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if watched.elapsed() >= WATCH_EVERY {
            watched = Instant::now();
            if backend.changed_elsewhere() {
                match backend.snapshot() {
                    Ok(snapshot) => reply(Reply::Reloaded(snapshot)),
                    Err(err) => tracing::error!(%err, "cannot reload the accounts"),
                }
            }
        }
    }
}

fn handle(backend: &mut dyn Backend, request: Request) -> Option<Reply> {
    let failed = |client, err: AccountsError| {
        tracing::error!(%err, "accounts request failed");
        Reply::Failed { client }
    };
    Some(match request {
        Request::Register {
            client,
            nick,
            password,
            since,
        } => {
            let key = names::fold(&nick);
            match backend.get(&key) {
                Ok(Some(_)) => return Some(Reply::Taken { client, nick }),
                Ok(None) => {}
                Err(err) => return Some(failed(client, err)),
            }
            let account = AccountInfo {
                nick,
                operator: false,
                since,
            };
            match hash(&password).and_then(|hash| backend.insert(&account, &hash)) {
                Ok(()) => Reply::Registered { client, account },
                Err(AccountsError::Exists(nick)) => Reply::Taken { client, nick },
                Err(err) => failed(client, err),
            }
        }
        Request::Login {
            client,
            nick,
            password,
        } => match backend.get(&names::fold(&nick)) {
            Ok(Some((account, stored))) if verify(&password, &stored) => {
                Reply::LoggedIn { client, account }
            }
            Ok(Some(_)) => Reply::WrongPassword { client, nick },
            Ok(None) => {
                // As slow as a real check, so timing does not tell.
                let _ = hash(&password);
                Reply::WrongPassword { client, nick }
            }
            Err(err) => failed(client, err),
        },
        Request::ChangePassword {
            client,
            nick,
            old,
            new,
        } => {
            let key = names::fold(&nick);
            match backend.get(&key) {
                Ok(Some((_, stored))) if verify(&old, &stored) => {
                    match hash(&new).and_then(|hash| backend.set_hash(&key, &hash)) {
                        Ok(()) => Reply::PasswordChanged { client },
                        Err(err) => failed(client, err),
                    }
                }
                Ok(_) => Reply::WrongPassword { client, nick },
                Err(err) => failed(client, err),
            }
        }
        Request::SaveBan(ban) => {
            if let Err(err) = backend.save_ban(&ban) {
                tracing::error!(%err, "cannot store a ban");
            }
            return None;
        }
        Request::RemoveBan(target) => {
            if let Err(err) = backend.remove_ban(&target) {
                tracing::error!(%err, "cannot remove a ban");
            }
            return None;
        }
    })
}

/// An argon2id hash of `password` with a fresh salt, as a PHC string.
#[cfg(feature = "accounts")]
pub fn hash(password: &Secret) -> Result<String, AccountsError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| AccountsError::Hash(err.to_string()))
}

/// Without the `accounts` feature nothing can be registered.
#[cfg(not(feature = "accounts"))]
pub fn hash(_password: &Secret) -> Result<String, AccountsError> {
    Err(AccountsError::Hash(
        "this natter was built without password hashing".into(),
    ))
}

/// True if `password` matches the stored PHC string.
#[cfg(feature = "accounts")]
pub fn verify(password: &Secret, stored: &str) -> bool {
    use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

/// Without the `accounts` feature no password is right.
#[cfg(not(feature = "accounts"))]
pub fn verify(_password: &Secret, _stored: &str) -> bool {
    false
}

/// The shortest password the server accepts.
pub const PASSWORD_MIN: usize = 8;
/// The longest password the server accepts, in bytes.
pub const PASSWORD_MAX: usize = 128;

/// Why a password is refused, in words, or `None` if it is fine.
pub fn password_problem(password: &Secret) -> Option<String> {
    let len = password.expose().chars().count();
    if len < PASSWORD_MIN {
        return Some(format!(
            "A password needs at least {PASSWORD_MIN} characters"
        ));
    }
    if password.expose().len() > PASSWORD_MAX {
        return Some(format!("A password has at most {PASSWORD_MAX} bytes"));
    }
    None
}

/// Where accounts live; the same operations on disk or in memory.
trait Backend: Send {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError>;
    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError>;
    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError>;
    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError>;
    fn delete(&mut self, key: &str) -> Result<(), AccountsError>;
    fn snapshot(&mut self) -> Result<Snapshot, AccountsError>;
    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError>;
    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError>;
    /// True if another process wrote to the store since the last call.
    fn changed_elsewhere(&mut self) -> bool;
}

fn open_backend(mode: &AccountsMode) -> Result<Box<dyn Backend>, AccountsError> {
    match mode {
        AccountsMode::Memory => Ok(Box::<Memory>::default()),
        AccountsMode::Sqlite(dir) => open_sqlite(dir),
    }
}

#[derive(Default)]
struct Memory {
    accounts: HashMap<String, (AccountInfo, String)>,
    bans: HashMap<BanTarget, Ban>,
}

impl Backend for Memory {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        Ok(self.accounts.get(key).cloned())
    }

    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError> {
        let key = names::fold(&account.nick);
        if self.accounts.contains_key(&key) {
            return Err(AccountsError::Exists(account.nick.clone()));
        }
        self.accounts
            .insert(key, (account.clone(), hash.to_owned()));
        Ok(())
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError> {
        let entry = self
            .accounts
            .get_mut(key)
            .ok_or_else(|| AccountsError::NoAccount(key.to_owned()))?;
        entry.1 = hash.to_owned();
        Ok(())
    }

    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError> {
        let entry = self
            .accounts
            .get_mut(key)
            .ok_or_else(|| AccountsError::NoAccount(key.to_owned()))?;
        entry.0.operator = operator;
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), AccountsError> {
        self.accounts
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| AccountsError::NoAccount(key.to_owned()))
    }

    fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        let mut accounts: Vec<AccountInfo> =
            self.accounts.values().map(|(a, _)| a.clone()).collect();
        accounts.sort_by_key(|a| names::fold(&a.nick));
        Ok(Snapshot {
            accounts,
            bans: self.bans.values().cloned().collect(),
        })
    }

    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError> {
        self.bans.insert(ban.target.clone(), ban.clone());
        Ok(())
    }

    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError> {
        Ok(self.bans.remove(target).is_some())
    }

    fn changed_elsewhere(&mut self) -> bool {
        false
    }
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_dir: &Path) -> Result<Box<dyn Backend>, AccountsError> {
    Err(AccountsError::NoSqlite)
}

#[cfg(feature = "sqlite")]
fn open_sqlite(dir: &Path) -> Result<Box<dyn Backend>, AccountsError> {
    sqlite::Sqlite::open(dir).map(|db| Box::new(db) as Box<dyn Backend>)
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use rusqlite::{params, Connection, OptionalExtension};

    pub(super) struct Sqlite {
        db: Connection,
        path: PathBuf,
        /// SQLite's count of commits by other connections, when last read.
        version: i64,
    }

    const SCHEMA: &str = "
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        PRAGMA busy_timeout = 5000;
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
    ";

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
                Ok(Snapshot { accounts, bans })
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
}

/// `natter admin`: account and ban management straight on the database,
/// for whoever runs the server. A running server picks the changes up
/// within a second.
pub struct Admin {
    backend: Box<dyn Backend>,
    /// The data directory, where the history database may be too.
    dir: Option<PathBuf>,
}

impl Admin {
    /// Opens the accounts database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, AccountsError> {
        Ok(Self {
            backend: open_sqlite(dir)?,
            dir: Some(dir.to_owned()),
        })
    }

    /// An admin over an in-memory store, for tests.
    pub fn memory() -> Self {
        Self {
            backend: Box::<Memory>::default(),
            dir: None,
        }
    }

    /// Every account and ban.
    pub fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        self.backend.snapshot()
    }

    /// Creates an account.
    pub fn create(
        &mut self,
        nick: &str,
        password: &Secret,
        operator: bool,
    ) -> Result<(), AccountsError> {
        if let Err(err) = names::check_nick(nick) {
            return Err(AccountsError::Invalid(format!(
                "{nick} is not a valid nickname ({err:?})"
            )));
        }
        if let Some(problem) = password_problem(password) {
            return Err(AccountsError::Invalid(problem));
        }
        // Private history from now on, as for an account registered in
        // the chat.
        let since = self
            .dir
            .as_deref()
            .map_or(0, crate::store::sqlite::last_id_in);
        let account = AccountInfo {
            nick: nick.to_owned(),
            operator,
            since,
        };
        self.backend.insert(&account, &hash(password)?)
    }

    /// Sets a new password (a reset: the old one is not needed).
    pub fn set_password(&mut self, nick: &str, password: &Secret) -> Result<(), AccountsError> {
        if let Some(problem) = password_problem(password) {
            return Err(AccountsError::Invalid(problem));
        }
        let key = names::fold(nick);
        if self.backend.get(&key)?.is_none() {
            return Err(AccountsError::NoAccount(nick.to_owned()));
        }
        self.backend.set_hash(&key, &hash(password)?)
    }

    /// Makes an account an operator, or not.
    pub fn set_operator(&mut self, nick: &str, operator: bool) -> Result<(), AccountsError> {
        self.backend.set_operator(&names::fold(nick), operator)
    }

    /// Deletes an account: the nickname is free again.
    pub fn delete(&mut self, nick: &str) -> Result<(), AccountsError> {
        self.backend.delete(&names::fold(nick))
    }

    /// Lifts a ban on a nickname or address; false if there was none.
    pub fn unban(&mut self, target: &str) -> Result<bool, AccountsError> {
        self.backend.remove_ban(&BanTarget::parse(target))
    }

    /// True if `password` is `nick`'s.
    pub fn check(&mut self, nick: &str, password: &Secret) -> Result<bool, AccountsError> {
        Ok(self
            .backend
            .get(&names::fold(nick))?
            .is_some_and(|(_, stored)| verify(password, &stored)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    fn exercise(admin: &mut Admin) {
        admin
            .create("Alice", &secret("correct horse"), false)
            .unwrap();
        assert!(matches!(
            admin.create("alice", &secret("something else"), false),
            Err(AccountsError::Exists(_))
        ));
        assert!(admin.check("ALICE", &secret("correct horse")).unwrap());
        assert!(!admin.check("alice", &secret("wrong one!")).unwrap());
        admin
            .set_password("alice", &secret("battery staple"))
            .unwrap();
        assert!(admin.check("alice", &secret("battery staple")).unwrap());
        assert!(!admin.check("alice", &secret("correct horse")).unwrap());
        assert!(admin.set_password("alice", &secret("short")).is_err());
        assert!(admin
            .set_password("nobody", &secret("long enough"))
            .is_err());
        admin.set_operator("alice", true).unwrap();
        let snapshot = admin.snapshot().unwrap();
        assert_eq!(
            snapshot.accounts,
            vec![AccountInfo {
                nick: "Alice".into(),
                operator: true,
                since: 0
            }]
        );
        admin.delete("alice").unwrap();
        assert!(admin.snapshot().unwrap().accounts.is_empty());
        assert!(admin.delete("alice").is_err());
    }

    #[test]
    fn memory_admin_manages_accounts() {
        exercise(&mut Admin::memory());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_admin_manages_accounts_and_bans_and_a_server_sees_changes() {
        let dir = std::env::temp_dir().join(format!("natter-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        exercise(&mut Admin::open(&dir).unwrap());

        // The server's thread notices another process's change.
        let (tx, rx) = mpsc::channel();
        let (accounts, snapshot) = Accounts::open(&AccountsMode::Sqlite(dir.clone()), move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        assert!(snapshot.accounts.is_empty());
        let ban = Ban {
            target: BanTarget::parse("::ffff:192.0.2.1"),
            until: 99,
            by: "op".into(),
            reason: "spam".into(),
        };
        accounts.try_send(Request::SaveBan(ban.clone())).unwrap();
        let mut admin = Admin::open(&dir).unwrap();
        admin
            .create("bob", &secret("hunter2hunter2"), true)
            .unwrap();
        let reloaded = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let Reply::Reloaded(snapshot) = reloaded else {
            panic!("expected a reload, got {reloaded:?}");
        };
        assert_eq!(snapshot.accounts.len(), 1);
        assert!(snapshot.accounts[0].operator);
        assert_eq!(snapshot.bans, vec![ban]);
        assert_eq!(snapshot.bans[0].target.to_string(), "192.0.2.1");
        assert!(admin.unban("192.0.2.1").unwrap());
        accounts.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_thread_registers_logs_in_and_changes_passwords() {
        let (tx, rx) = mpsc::channel();
        let (accounts, _) = Accounts::open(&AccountsMode::Memory, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        let ask = |request| {
            accounts.try_send(request).unwrap();
            rx.recv_timeout(Duration::from_secs(10)).unwrap()
        };
        let reply = ask(Request::Register {
            client: 1,
            nick: "Carol".into(),
            password: secret("longpassword"),
            since: 7,
        });
        let carol = AccountInfo {
            nick: "Carol".into(),
            operator: false,
            since: 7,
        };
        assert_eq!(
            reply,
            Reply::Registered {
                client: 1,
                account: carol.clone()
            }
        );
        let reply = ask(Request::Register {
            client: 2,
            nick: "carol".into(),
            password: secret("otherpassword"),
            since: 8,
        });
        assert_eq!(
            reply,
            Reply::Taken {
                client: 2,
                nick: "carol".into()
            }
        );
        let login = |password: &str| Request::Login {
            client: 3,
            nick: "CAROL".into(),
            password: secret(password),
        };
        assert_eq!(
            ask(login("longpassword")),
            Reply::LoggedIn {
                client: 3,
                account: carol
            }
        );
        assert!(matches!(
            ask(login("wrongpassword")),
            Reply::WrongPassword { client: 3, .. }
        ));
        let change = |old: &str| Request::ChangePassword {
            client: 4,
            nick: "carol".into(),
            old: secret(old),
            new: secret("newpassword"),
        };
        assert!(matches!(
            ask(change("wrongpassword")),
            Reply::WrongPassword { .. }
        ));
        assert_eq!(
            ask(change("longpassword")),
            Reply::PasswordChanged { client: 4 }
        );
        assert!(matches!(
            ask(login("newpassword")),
            Reply::LoggedIn { client: 3, .. }
        ));
        assert!(format!("{:?}", login("newpassword")).contains("Secret(..)"));
        assert!(!format!("{:?}", login("newpassword")).contains("newpassword"));
    }
}
