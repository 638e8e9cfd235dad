//! Accounts shared by the nodes of a cluster (`--cluster`), in Redis, over
//! this node's own store.
//!
//! The accounts thread is an OS thread, so this backend uses the redis
//! crate's blocking API, with timeouts on every call. What lives in Redis:
//! - `natter:accounts`: folded nickname to the account as JSON (nickname as
//!   registered, its start id, the argon2 hash, whether it is an operator);
//! - `natter:registered`: the set of registered folded nicknames;
//! - `natter:bans` and `natter:mutes`: the bans (by target as `BanTarget`
//!   writes it) and mutes (by folded nickname) as JSON, so that a node that
//!   was down or cut off when one was made applies it once it reads them;
//! - `natter:accounts:version`: a counter every change raises, which each
//!   node polls (every second) to reload when another node (or `natter
//!   admin --cluster`) registered, changed or deleted an account, or banned
//!   or muted someone. Every node stores a ban it is told of, so a write
//!   that changes nothing raises nothing.
//!
//! In cluster mode the accounts are the cluster's only: one nickname has one
//! owner whichever node a client reached. This node's own store keeps the
//! bans and mutes (as on one node, and for while Redis is out of reach),
//! and its accounts are moved into Redis (see [`Shared::move_local`]):
//! those made before the cluster, or by `natter admin` without `--cluster`
//! on this node's directory. One whose nickname already belongs to a
//! different account in the cluster stays where it is, unused, with a
//! warning in the log each time; the cluster's account wins.
//!
//! An account is an operator if Redis says so, which only `natter admin
//! --cluster` (or moving an operator account of a node) writes: whoever
//! can write to this Redis is trusted like whoever can write to a node's
//! database.
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

/// The most bans, and the most mutes, a snapshot reads from Redis.
const SANCTIONS_MAX: usize = 100_000;

/// HSET `ARGV[2]` to `ARGV[3]` in hash `ARGV[1]` and raise the version,
/// unless it holds that already.
const PUT: &str = r"
if redis.call('HGET', ARGV[1], ARGV[2]) == ARGV[3] then return 0 end
redis.call('HSET', ARGV[1], ARGV[2], ARGV[3])
redis.call('INCR', 'natter:accounts:version')
return 1
";

/// HDEL `ARGV[2]` from hash `ARGV[1]`, raising the version if it was there.
const DROP: &str = r"
if redis.call('HDEL', ARGV[1], ARGV[2]) == 1 then
  redis.call('INCR', 'natter:accounts:version')
  return 1
end
return 0
";

#[derive(Serialize, Deserialize)]
struct StoredBan {
    until: i64,
    by: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct StoredMute {
    until: i64,
    by: String,
}

/// A ban stored under `key`, if it is one.
fn parse_ban(key: &str, value: &[u8]) -> Option<Ban> {
    if value.len() > VALUE_MAX {
        return None;
    }
    let stored: StoredBan = serde_json::from_slice(value).ok()?;
    let target = BanTarget::parse(key);
    if matches!(target, BanTarget::Nick(_)) && names::check_nick(key).is_err() {
        return None;
    }
    if names::check_nick(&stored.by).is_err() || stored.reason.chars().any(char::is_control) {
        return None;
    }
    Some(Ban {
        target,
        until: stored.until,
        by: stored.by,
        reason: stored.reason,
    })
}

/// A mute stored under `key`, if it is one.
fn parse_mute(key: &str, value: &[u8]) -> Option<Mute> {
    if value.len() > VALUE_MAX || names::check_nick(key).is_err() {
        return None;
    }
    let stored: StoredMute = serde_json::from_slice(value).ok()?;
    if names::check_nick(&stored.by).is_err() {
        return None;
    }
    Some(Mute {
        nick: names::fold(key),
        until: stored.until,
        by: stored.by,
    })
}

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

/// HSET an account that exists already and raise the version: 1 if it
/// was there. ARGV: folded nick, JSON.
const UPDATE: &str = r"
if redis.call('HEXISTS', 'natter:accounts', ARGV[1]) == 0 then return 0 end
redis.call('HSET', 'natter:accounts', ARGV[1], ARGV[2])
redis.call('INCR', 'natter:accounts:version')
return 1
";

/// HDEL an account, take it out of the set, raise the version: 1 if it was
/// there. ARGV: folded nick.
const DELETE: &str = r"
if redis.call('HDEL', 'natter:accounts', ARGV[1]) == 0 then return 0 end
redis.call('SREM', 'natter:registered', ARGV[1])
redis.call('INCR', 'natter:accounts:version')
return 1
";

#[derive(Serialize, Deserialize)]
struct Stored {
    nick: String,
    since: u64,
    hash: String,
    #[serde(default)]
    operator: bool,
}

impl Stored {
    fn json(account: &AccountInfo, hash: &str) -> Result<String, AccountsError> {
        serde_json::to_string(&Stored {
            nick: account.nick.clone(),
            since: account.since,
            hash: hash.to_owned(),
            operator: account.operator,
        })
        .map_err(|e| AccountsError::Cluster(e.to_string()))
    }
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
    /// Whether this node's own accounts have been moved into Redis since
    /// its store last changed.
    moved: bool,
    /// For `natter admin --cluster`: a snapshot without Redis is an error,
    /// not this node's own accounts.
    strict: bool,
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
        operator: stored.operator,
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
            moved: false,
            strict: false,
        })
    }

    /// The cluster's store alone, for `natter admin --cluster`: nothing of
    /// this machine's, and every failure to reach Redis is an error.
    pub(super) fn admin(url: &str) -> Result<Self, AccountsError> {
        let mut shared = Self::open(Box::<super::memory::Memory>::default(), url)?;
        shared.strict = true;
        Ok(shared)
    }

    /// The cluster's last message id (`natter:seq`, see `server/cluster.rs`):
    /// an account made by `natter admin --cluster` starts above it.
    pub(super) fn last_id(&mut self) -> Result<u64, AccountsError> {
        let seq: Option<u64> = self.with(|c| c.get("natter:seq"))?;
        Ok(seq.unwrap_or(0))
    }

    /// Moves this node's own accounts into Redis unless that was done
    /// since its store last changed.
    fn move_pending(&mut self, accounts: &[AccountInfo]) -> Result<(), AccountsError> {
        if !self.moved {
            self.move_local(accounts)?;
            self.moved = true;
        }
        Ok(())
    }

    /// Lifts a ban on every node that is up now: they hold bans in their own
    /// stores too, and a node applies an unban it is told of on
    /// `natter:all` (the bus's wire format, `server/cluster.rs`) by removing
    /// it there. `by` is named in the `MOD` lines.
    pub(super) fn announce_unban(
        &mut self,
        target: &BanTarget,
        by: &str,
    ) -> Result<(), AccountsError> {
        let payload = serde_json::json!({
            "t": "mod",
            "node": "natter-admin",
            "by": by,
            "action": "unban",
            "target": target.to_string(),
            "until": 0,
            "reason": "",
            "rooms": [],
        })
        .to_string();
        self.with(|c| c.publish::<_, _, i64>("natter:all", payload))?;
        Ok(())
    }

    /// Moves this node's own accounts into Redis (HSETNX): each one whose
    /// nickname is free there, or holds the same password hash already (a
    /// move cut short), leaves this node's store, so an account deleted in
    /// the cluster does not come back when this node restarts. One whose
    /// nickname a different account holds in the cluster stays here,
    /// unused, and is logged: the cluster's account wins.
    fn move_local(&mut self, accounts: &[AccountInfo]) -> Result<(), AccountsError> {
        for account in accounts {
            let key = names::fold(&account.nick);
            let Some((account, hash)) = self.local.get(&key)? else {
                continue;
            };
            let value = Stored::json(&account, &hash)?;
            let script = redis::Script::new(REGISTER);
            let added: i64 = self.with(|c| script.arg(&key).arg(&value).invoke(c))?;
            let same = added == 1 || self.remote(&key)?.is_some_and(|(_, theirs)| theirs == hash);
            if same {
                self.local.delete(&key)?;
                tracing::info!(account = %account.nick, "this node's account is now the cluster's");
            } else {
                tracing::warn!(
                    account = %account.nick,
                    "this node's account has a nickname that belongs to another account in the \
                     cluster; the cluster's wins, and this one is not used (natter admin delete \
                     without --cluster removes it)"
                );
            }
        }
        Ok(())
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

    /// Runs [`PUT`] or [`DROP`] on `hash`; a failure is logged, as this
    /// node's own store has the change already.
    fn share(&mut self, script: &str, hash: &str, key: &str, value: &str) {
        let script = redis::Script::new(script);
        let done: Result<i64, _> = self.with(|c| script.arg(hash).arg(key).arg(value).invoke(c));
        if let Err(err) = done {
            tracing::warn!(%err, "a ban or mute did not reach the cluster's store");
        }
    }

    fn remote(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        let value: Option<Vec<u8>> = self.with(|c| c.hget("natter:accounts", key))?;
        Ok(value.and_then(|v| parse(key, &v)))
    }

    /// Writes an account that exists (or fails with `NoAccount`: deleted
    /// meanwhile).
    fn update(
        &mut self,
        key: &str,
        account: &AccountInfo,
        hash: &str,
    ) -> Result<(), AccountsError> {
        let value = Stored::json(account, hash)?;
        let script = redis::Script::new(UPDATE);
        let done: i64 = self.with(|c| script.arg(key).arg(&value).invoke(c))?;
        if done == 1 {
            Ok(())
        } else {
            Err(AccountsError::NoAccount(key.to_owned()))
        }
    }
}

impl Backend for Shared {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        self.remote(key)
    }

    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError> {
        let key = names::fold(&account.nick);
        let value = Stored::json(account, hash)?;
        let script = redis::Script::new(REGISTER);
        let added: i64 = self.with(|c| script.arg(&key).arg(&value).invoke(c))?;
        if added == 1 {
            Ok(())
        } else {
            Err(AccountsError::Exists(account.nick.clone()))
        }
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError> {
        let Some((account, _)) = self.remote(key)? else {
            return Err(AccountsError::NoAccount(key.to_owned()));
        };
        self.update(key, &account, hash)
    }

    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError> {
        let Some((mut account, hash)) = self.remote(key)? else {
            return Err(AccountsError::NoAccount(key.to_owned()));
        };
        account.operator = operator;
        self.update(key, &account, &hash)
    }

    fn delete(&mut self, key: &str) -> Result<(), AccountsError> {
        let script = redis::Script::new(DELETE);
        let deleted: i64 = self.with(|c| script.arg(key).invoke(c))?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(AccountsError::NoAccount(key.to_owned()))
        }
    }

    /// The cluster's accounts, and the bans and mutes of this node and
    /// of the cluster, this node's own accounts moved into Redis first.
    /// Without Redis: at start-up this node's only (nobody can take a
    /// nickname until Redis answers, and the reload then replaces them);
    /// later an error, so the hub keeps what it has.
    fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        let mut snapshot = self.local.snapshot()?;
        let read = self.move_pending(&snapshot.accounts).and_then(|()| {
            self.with(|c| {
                let version: Option<i64> = c.get("natter:accounts:version")?;
                let all: Vec<(String, Vec<u8>)> = c.hgetall("natter:accounts")?;
                let bans: Vec<(String, Vec<u8>)> = c.hgetall("natter:bans")?;
                let mutes: Vec<(String, Vec<u8>)> = c.hgetall("natter:mutes")?;
                Ok((version.unwrap_or(0), all, bans, mutes))
            })
        });
        let (version, all, bans, mutes) = match read {
            Ok(read) => read,
            Err(err) if self.version.is_none() && !self.strict => {
                tracing::warn!(%err, "the cluster's accounts are out of reach; this node's only for now");
                return Ok(snapshot);
            }
            Err(err) => return Err(err),
        };
        let known: std::collections::HashSet<BanTarget> =
            snapshot.bans.iter().map(|b| b.target.clone()).collect();
        let more = bans
            .into_iter()
            .take(SANCTIONS_MAX)
            .filter_map(|(k, v)| parse_ban(&k, &v))
            .filter(|b| !known.contains(&b.target));
        snapshot.bans.extend(more.collect::<Vec<_>>());
        let known: std::collections::HashSet<String> =
            snapshot.mutes.iter().map(|m| m.nick.clone()).collect();
        let more = mutes
            .into_iter()
            .take(SANCTIONS_MAX)
            .filter_map(|(k, v)| parse_mute(&k, &v))
            .filter(|m| !known.contains(&m.nick));
        snapshot.mutes.extend(more.collect::<Vec<_>>());
        self.version = Some(version);
        snapshot.accounts = all
            .into_iter()
            .take(ACCOUNTS_MAX)
            .filter_map(|(key, value)| parse(&key, &value).map(|(account, _)| account))
            .collect();
        snapshot.accounts.sort_by_key(|a| names::fold(&a.nick));
        Ok(snapshot)
    }

    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError> {
        self.local.save_ban(ban)?;
        let value = serde_json::to_string(&StoredBan {
            until: ban.until,
            by: ban.by.clone(),
            reason: ban.reason.clone(),
        })
        .map_err(|e| AccountsError::Cluster(e.to_string()))?;
        self.share(PUT, "natter:bans", &ban.target.to_string(), &value);
        Ok(())
    }

    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError> {
        let removed = self.local.remove_ban(target)?;
        if self.strict {
            let script = redis::Script::new(DROP);
            let dropped: i64 = self.with(|c| {
                script
                    .arg("natter:bans")
                    .arg(target.to_string())
                    .arg("")
                    .invoke(c)
            })?;
            return Ok(removed || dropped == 1);
        }
        self.share(DROP, "natter:bans", &target.to_string(), "");
        Ok(removed)
    }

    fn save_mute(&mut self, mute: &Mute) -> Result<(), AccountsError> {
        self.local.save_mute(mute)?;
        let value = serde_json::to_string(&StoredMute {
            until: mute.until,
            by: mute.by.clone(),
        })
        .map_err(|e| AccountsError::Cluster(e.to_string()))?;
        self.share(PUT, "natter:mutes", &mute.nick, &value);
        Ok(())
    }

    fn remove_mute(&mut self, nick: &str) -> Result<bool, AccountsError> {
        let removed = self.local.remove_mute(nick)?;
        self.share(DROP, "natter:mutes", nick, "");
        Ok(removed)
    }

    /// True if this node's store changed, or another node wrote accounts
    /// (the version moved), or Redis is back after it was out of reach, or
    /// this node's accounts are still to be moved into it.
    fn changed_elsewhere(&mut self) -> bool {
        if self.local.changed_elsewhere() {
            // An account `natter admin` made here without --cluster: the
            // reload moves it into the cluster.
            self.moved = false;
            return true;
        }
        let seen = self.version;
        match self.with(|c| c.get::<_, Option<i64>>("natter:accounts:version")) {
            Ok(now) => !self.moved || seen != Some(now.unwrap_or(0)),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_ban, parse_mute};

    #[test]
    fn hostile_bans_and_mutes_are_ignored() {
        let ban = br#"{"until":99,"by":"oper","reason":"spam"}"#;
        assert!(parse_ban("troll", ban).is_some());
        assert!(parse_ban("127.0.0.0/8", ban).is_some());
        assert!(parse_ban("not a nick", ban).is_none());
        assert!(parse_ban("troll", br#"{"until":99,"by":"a b","reason":""}"#).is_none());
        assert!(parse_ban(
            "troll",
            br#"{"until":99,"by":"oper","reason":"a
b"}"#
        )
        .is_none());
        assert!(parse_ban("troll", b"[]").is_none());
        let mute = br#"{"until":99,"by":"oper"}"#;
        assert_eq!(
            parse_mute("Dave", mute).map(|m| m.nick),
            Some("dave".into())
        );
        assert!(parse_mute("a b", mute).is_none());
    }

    #[test]
    fn hostile_values_are_ignored() {
        let ok = br#"{"nick":"Alice","since":5,"hash":"$argon2id$x"}"#;
        let (account, hash) = parse("alice", ok).unwrap_or_else(|| panic!("a good value"));
        assert_eq!((account.nick.as_str(), account.since), ("Alice", 5));
        assert!(!account.operator);
        assert_eq!(hash, "$argon2id$x");
        let op = br#"{"nick":"Alice","since":5,"hash":"h","operator":true}"#;
        assert!(parse("alice", op).is_some_and(|(a, _)| a.operator));
        assert!(parse("bob", ok).is_none(), "under another name");
        assert!(parse("alice", b"not json").is_none());
        assert!(parse("a b", br#"{"nick":"a b","since":0,"hash":"h"}"#).is_none());
        assert!(parse("alice", br#"{"nick":"alice","since":0,"hash":""}"#).is_none());
        assert!(parse("alice", &vec![b' '; super::VALUE_MAX + 1]).is_none());
    }
}
