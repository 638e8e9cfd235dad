//! Accounts shared by the nodes of a cluster (`--cluster`), in Redis, over
//! this node's own store.
//!
//! The accounts thread is an OS thread, so this backend uses the redis
//! crate's blocking API, with timeouts on every call. What lives in Redis:
//! - `natter:accounts`: folded nickname to the account as JSON (nickname as
//!   registered, its start id, the argon2 hash);
//! - `natter:registered`: the set of registered folded nicknames;
//! - `natter:accounts:version`: a counter every write raises, which each
//!   node polls (every second) to reload the accounts when another node
//!   registered one or changed a password.
//!
//! This node's own store (SQLite or memory) stays under it: accounts made
//! there (by `natter admin`, or before the cluster) still log in on this
//! node and win over a Redis account of the same name, and only they can
//! be operators (an operator is made by the administrator of a node, never
//! by what Redis says). Bans and mutes are kept in it, as on one node.
//!
//! What comes from Redis is checked: a value longer than [`VALUE_MAX`],
//! not JSON, or whose nickname is not a nickname or not the key it is
//! under, is ignored.

use std::time::{Duration, Instant};

use redis::Commands;
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::{AccountInfo, AccountsError, Ban, BanTarget, Mute, Snapshot};
use crate::names;

/// The longest account value read from Redis, in bytes.
const VALUE_MAX: usize = 4096;

/// How long connecting to Redis, and each command, may take.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// How long after a failure the next attempt to reach Redis waits: a
/// password check meanwhile uses this node's own accounts only.
const RETRY: Duration = Duration::from_secs(2);

/// The most accounts a snapshot reads from Redis.
const ACCOUNTS_MAX: usize = 1_000_000;

/// HSETNX the account, add it to the set, raise the version: 1 if it was
/// new. KEYS: none; ARGV: folded nick, JSON.
const REGISTER: &str = r"
if redis.call('HSETNX', 'natter:accounts', ARGV[1], ARGV[2]) == 1 then
  redis.call('SADD', 'natter:registered', ARGV[1])
  redis.call('INCR', 'natter:accounts:version')
  return 1
end
return 0
";

#[derive(Serialize, Deserialize)]
struct Stored {
    nick: String,
    since: u64,
    hash: String,
}

/// Accounts in Redis over a node's own backend.
pub(super) struct Shared {
    local: Box<dyn Backend>,
    client: redis::Client,
    con: Option<redis::Connection>,
    /// When Redis last failed: no new attempt before [`RETRY`].
    failed: Option<Instant>,
    /// The version the last snapshot saw; `None` before one succeeded.
    version: Option<i64>,
}

fn lost(err: &redis::RedisError) -> AccountsError {
    AccountsError::Cluster(err.to_string())
}

/// The account stored under `key`, if it is one.
fn parse(key: &str, value: &[u8]) -> Option<(AccountInfo, String)> {
    if value.len() > VALUE_MAX {
        return None;
    }
    let stored: Stored = serde_json::from_slice(value).ok()?;
    if names::check_nick(&stored.nick).is_err()
        || names::fold(&stored.nick) != key
        || stored.hash.is_empty()
    {
        return None;
    }
    let account = AccountInfo {
        nick: stored.nick,
        operator: false,
        since: stored.since,
    };
    Some((account, stored.hash))
}

impl Shared {
    pub(super) fn open(local: Box<dyn Backend>, url: &str) -> Result<Self, AccountsError> {
        let client = redis::Client::open(url).map_err(|e| lost(&e))?;
        Ok(Self {
            local,
            client,
            con: None,
            failed: None,
            version: None,
        })
    }

    /// Runs `f` on a connection to Redis (made if needed); on failure the
    /// connection is dropped and Redis left alone for [`RETRY`].
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, AccountsError> {
        if self.con.is_none() {
            if self.failed.is_some_and(|at| at.elapsed() < RETRY) {
                return Err(AccountsError::Cluster("Redis is unreachable".into()));
            }
            let made = self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .and_then(|c| {
                    c.set_read_timeout(Some(TIMEOUT))?;
                    c.set_write_timeout(Some(TIMEOUT))?;
                    Ok(c)
                });
            match made {
                Ok(con) => self.con = Some(con),
                Err(err) => {
                    self.failed = Some(Instant::now());
                    return Err(lost(&err));
                }
            }
        }
        let Some(con) = self.con.as_mut() else {
            return Err(AccountsError::Cluster("Redis is unreachable".into()));
        };
        match f(con) {
            Ok(value) => {
                self.failed = None;
                Ok(value)
            }
            Err(err) => {
                self.con = None;
                self.failed = Some(Instant::now());
                Err(lost(&err))
            }
        }
    }

    fn remote(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        let value: Option<Vec<u8>> = self.with(|c| c.hget("natter:accounts", key))?;
        Ok(value.and_then(|v| parse(key, &v)))
    }
}

impl Backend for Shared {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        if let Some(found) = self.local.get(key)? {
            return Ok(Some(found));
        }
        self.remote(key)
    }

    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError> {
        let key = names::fold(&account.nick);
        if self.local.get(&key)?.is_some() {
            return Err(AccountsError::Exists(account.nick.clone()));
        }
        let value = serde_json::to_string(&Stored {
            nick: account.nick.clone(),
            since: account.since,
            hash: hash.to_owned(),
        })
        .map_err(|e| AccountsError::Cluster(e.to_string()))?;
        let script = redis::Script::new(REGISTER);
        let added: i64 = self.with(|c| script.arg(&key).arg(&value).invoke(c))?;
        if added == 1 {
            Ok(())
        } else {
            Err(AccountsError::Exists(account.nick.clone()))
        }
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError> {
        if self.local.get(key)?.is_some() {
            return self.local.set_hash(key, hash);
        }
        let Some((account, _)) = self.remote(key)? else {
            return Err(AccountsError::NoAccount(key.to_owned()));
        };
        let value = serde_json::to_string(&Stored {
            nick: account.nick,
            since: account.since,
            hash: hash.to_owned(),
        })
        .map_err(|e| AccountsError::Cluster(e.to_string()))?;
        self.with(|c| {
            redis::pipe()
                .atomic()
                .hset("natter:accounts", key, &value)
                .ignore()
                .incr("natter:accounts:version", 1)
                .ignore()
                .query::<()>(c)
        })
    }

    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError> {
        self.local.set_operator(key, operator)
    }

    fn delete(&mut self, key: &str) -> Result<(), AccountsError> {
        self.local.delete(key)
    }

    /// This node's accounts, bans and mutes, with the cluster's accounts
    /// this node does not have itself. Without Redis, this node's only.
    fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        let mut snapshot = self.local.snapshot()?;
        let read = self.with(|c| {
            let version: Option<i64> = c.get("natter:accounts:version")?;
            let all: Vec<(String, Vec<u8>)> = c.hgetall("natter:accounts")?;
            Ok((version.unwrap_or(0), all))
        });
        match read {
            Ok((version, all)) => {
                self.version = Some(version);
                let mine: std::collections::HashSet<String> = snapshot
                    .accounts
                    .iter()
                    .map(|a| names::fold(&a.nick))
                    .collect();
                for (key, value) in all.into_iter().take(ACCOUNTS_MAX) {
                    if mine.contains(&key) {
                        continue;
                    }
                    if let Some((account, _)) = parse(&key, &value) {
                        snapshot.accounts.push(account);
                    }
                }
                snapshot.accounts.sort_by_key(|a| names::fold(&a.nick));
            }
            Err(err) => {
                tracing::warn!(%err, "the cluster's accounts are out of reach; this node's only for now");
            }
        }
        Ok(snapshot)
    }

    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError> {
        self.local.save_ban(ban)
    }

    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError> {
        self.local.remove_ban(target)
    }

    fn save_mute(&mut self, mute: &Mute) -> Result<(), AccountsError> {
        self.local.save_mute(mute)
    }

    fn remove_mute(&mut self, nick: &str) -> Result<bool, AccountsError> {
        self.local.remove_mute(nick)
    }

    /// True if this node's store changed, or another node wrote accounts
    /// (the version moved), or Redis is back after it was out of reach.
    fn changed_elsewhere(&mut self) -> bool {
        if self.local.changed_elsewhere() {
            return true;
        }
        let seen = self.version;
        match self.with(|c| c.get::<_, Option<i64>>("natter:accounts:version")) {
            Ok(now) => seen != Some(now.unwrap_or(0)),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hostile_values_are_ignored() {
        let ok = br#"{"nick":"Alice","since":5,"hash":"$argon2id$x"}"#;
        let (account, hash) = parse("alice", ok).unwrap_or_else(|| panic!("a good value"));
        assert_eq!((account.nick.as_str(), account.since), ("Alice", 5));
        assert!(!account.operator);
        assert_eq!(hash, "$argon2id$x");
        assert!(parse("bob", ok).is_none(), "under another name");
        assert!(parse("alice", b"not json").is_none());
        assert!(parse("a b", br#"{"nick":"a b","since":0,"hash":"h"}"#).is_none());
        assert!(parse("alice", br#"{"nick":"alice","since":0,"hash":""}"#).is_none());
        assert!(parse("alice", &vec![b' '; super::VALUE_MAX + 1]).is_none());
    }
}
