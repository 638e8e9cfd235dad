//! Failed-login limits: how many wrong passwords an address or an account
//! may see before it has to wait, and for how long. Pure: fed the time.
//!
//! Each key (an address, or an account) may fail [`FREE_FAILURES`] times;
//! every failure after that locks it for [`FIRST_LOCK`], doubling up to
//! [`MAX_LOCK`]. A key forgets its failures [`FORGET_AFTER`] after the last
//! one, or at once when a login succeeds. Password checks are expensive on
//! purpose, so each failure also cost the server one hash: together with the
//! hashing queue's bound, this keeps guessing slow for a thief and cheap for
//! the server.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// Failures allowed before the first lock: room for typos.
pub const FREE_FAILURES: u32 = 5;
/// The first lock, in seconds.
pub const FIRST_LOCK: i64 = 30;
/// The longest lock, in seconds.
pub const MAX_LOCK: i64 = 15 * 60;
/// Seconds after its last failure that a key starts afresh.
pub const FORGET_AFTER: i64 = 60 * 60;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: i64,
    locked_until: i64,
}

/// Failure counts per key, with their locks.
#[derive(Debug)]
pub struct Limiter<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Default for Limiter<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// If `key` is locked at `now`, the Unix second when it may try again.
    pub fn locked(&self, key: &K, now: i64) -> Option<i64> {
        self.entries
            .get(key)
            .map(|e| e.locked_until)
            .filter(|&until| until > now)
    }

    /// Counts a failure for `key` at `now`; returns when it may try again if
    /// this failure locked it.
    pub fn fail(&mut self, key: &K, now: i64) -> Option<i64> {
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: 0,
        });
        if now - entry.last > FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        let over = entry.failures.checked_sub(FREE_FAILURES)?;
        // 30 s, 60 s, 120 s ... capped: the shift is capped too.
        let lock = FIRST_LOCK
            .saturating_mul(1_i64 << over.saturating_sub(1).min(20))
            .min(MAX_LOCK);
        if over == 0 {
            return None;
        }
        entry.locked_until = now.saturating_add(lock);
        Some(entry.locked_until)
    }

    /// A success: `key` starts afresh.
    pub fn succeed(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Forgets keys whose failures are old, so the map holds only keys
    /// that failed recently (their number is bounded by how fast the
    /// server checks passwords).
    pub fn prune(&mut self, now: i64) {
        self.entries
            .retain(|_, e| now - e.last <= FORGET_AFTER || e.locked_until > now);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The key an address is limited by: IPv4 addresses one by one, IPv6 by
/// their /64 network, since one host commonly holds a whole /64.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            for b in octets.iter_mut().skip(8) {
                *b = 0;
            }
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_failures_then_doubling_locks_up_to_the_cap() {
        let mut limiter = Limiter::default();
        let key = "alice".to_owned();
        let mut now = 1000;
        for _ in 0..FREE_FAILURES {
            assert_eq!(limiter.fail(&key, now), None);
            assert_eq!(limiter.locked(&key, now), None);
        }
        assert_eq!(limiter.fail(&key, now), Some(now + FIRST_LOCK));
        assert_eq!(limiter.locked(&key, now + 1), Some(now + FIRST_LOCK));
        now += FIRST_LOCK;
        assert_eq!(limiter.locked(&key, now), None);
        assert_eq!(limiter.fail(&key, now), Some(now + 2 * FIRST_LOCK));
        for _ in 0..40 {
            limiter.fail(&key, now);
        }
        assert_eq!(limiter.locked(&key, now), Some(now + MAX_LOCK));
    }

    #[test]
    fn success_and_time_forget_failures() {
        let mut limiter = Limiter::default();
        for _ in 0..FREE_FAILURES {
            limiter.fail(&1, 0);
        }
        limiter.succeed(&1);
        assert_eq!(limiter.fail(&1, 0), None);
        for _ in 0..FREE_FAILURES {
            limiter.fail(&2, 0);
        }
        assert_eq!(limiter.fail(&2, FORGET_AFTER + 1), None);
        limiter.prune(3 * FORGET_AFTER);
        assert!(limiter.is_empty());
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
