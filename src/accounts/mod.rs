//! Registered nicknames, bans and mutes, kept in SQLite (or in memory), on a thread
//! of their own.
//!
//! Password hashing (argon2id) is slow on purpose: tens of milliseconds of
//! one core per check. It never runs on the hub task or a connection's task.
//! The hub queues a [`Request`] with [`thread::Accounts::try_send`] (a bounded queue:
//! when it is full the client is told the server is busy, so a login flood
//! costs at most this one thread), and the answer comes back as a [`Answer`]
//! through the callback given to [`thread::Accounts::open`], which the server turns
//! into a hub event.
//!
//! The hub keeps its own copy of what it must know at once — which nicknames
//! are registered, the bans and the mutes — loaded from a [`Snapshot`] at start-up. When
//! another process changes the database (`natter admin ...` while the server
//! runs), this thread notices within a second and sends a fresh snapshot.
//!
//! This module is plain data shared by the hub and the thread; the IO is
//! beside it:
//! - `thread`: [`thread::Accounts`], the handle, and the thread that
//!   answers requests.
//! - `password`: argon2id hashing and checking.
//! - `memory` and `sqlite`: the two backends, behind the trait in `backend`.
//! - `admin`: [`admin::Admin`], for `natter admin`.
//! - `bans`: [`AddressBans`], the address bans shared with the accept loops.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cidr::Cidr;
use crate::ids::ClientId;
use crate::names;
use crate::protocol::Secret;

pub use bans::AddressBans;

pub mod admin;
mod backend;
mod bans;
mod memory;
pub mod password;
mod shared;
mod sqlite;
pub mod thread;

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
    /// A range of addresses (a single IPv4 address is its /32, a single
    /// IPv6 address its /64; see [`Cidr`]).
    Addr(Cidr),
}

impl BanTarget {
    /// Reads an operator's argument: an address or a range in CIDR
    /// notation, or else a nickname.
    pub fn parse(text: &str) -> Self {
        match Cidr::parse(text) {
            Ok(range) => BanTarget::Addr(range),
            Err(_) => BanTarget::Nick(names::fold(text)),
        }
    }

    /// Whether this ban keeps out a connection from `addr`.
    pub fn covers_addr(&self, addr: IpAddr) -> bool {
        matches!(self, BanTarget::Addr(range) if range.contains(addr))
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
            "addr" => Cidr::parse(value).ok().map(BanTarget::Addr),
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

/// A mute, as stored: kept with the bans so that it outlasts a restart
/// (a user muted for an hour is not let off by a server upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    /// The nickname, folded.
    pub nick: String,
    /// Until this Unix second.
    pub until: i64,
    /// The operator who set it.
    pub by: String,
}

/// What the hub must know without asking: the registered nicknames (with
/// their operator flags), the bans and the mutes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every account.
    pub accounts: Vec<AccountInfo>,
    /// Every ban, expired or not.
    pub bans: Vec<Ban>,
    /// Every mute, ended or not.
    pub mutes: Vec<Mute>,
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
    /// Keep a mute (replacing one on the same nickname).
    SaveMute(Mute),
    /// Forget the mute on a folded nickname.
    RemoveMute(String),
}

/// The accounts thread's answers, for the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
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
    /// The cluster's accounts in Redis could not be reached or read.
    #[error("accounts in Redis: {0}")]
    Cluster(String),
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
