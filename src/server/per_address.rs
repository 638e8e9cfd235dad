//! Connections per address: how many each address holds open, and how fast
//! it opens new ones. Pure: a table fed the time, with no IO.
//!
//! Addresses are counted the way failed logins are
//! ([`crate::limiter::address_key`]): an IPv4 address alone (an IPv4-mapped
//! IPv6 address as its IPv4 form), an IPv6 address by its /64, since one
//! IPv6 host is usually handed a whole /64 and can hop across it at will.
//!
//! On a web listener, a page load opens a connection per file, so there a
//! connection counts against `max_open` as it is accepted and pays the rate
//! only when it becomes a chat session (the WebSocket upgrade); behind the
//! trusted reverse proxy it counts for the client's address, once the
//! request has said it. [`AddressSlot`] is a connection's place in the
//! table, the one part here that reads the clock.
//!
//! The rate is a token bucket kept as one instant per address (the generic
//! cell rate algorithm): `burst` connections at once, then one every
//! `1 / rate`. An address whose bucket is full again and that holds no
//! connection is forgotten, since it is as good as new. The table remembers
//! at most `capacity` addresses besides those holding connections (which
//! `max_clients` bounds): when it is full, forgotten addresses go first,
//! then those that connected longest ago, which start afresh if they come
//! back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::limiter::address_key;

/// The limits an [`AddressTable`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections one address may hold open at once; 0 switches the limit off.
    pub(crate) max_open: usize,
    /// New connections one address may open per minute, over time; 0
    /// switches the rate off.
    pub(crate) per_minute: u32,
    /// New connections one address may open at once before `per_minute`
    /// applies.
    pub(crate) burst: u32,
    /// Addresses remembered for the rate besides those holding connections.
    pub(crate) capacity: usize,
}

/// Why a newcomer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address already holds `Limits::max_open` connections.
    TooMany,
    /// The address opened its burst of connections too recently; its next
    /// one is welcome after this long.
    TooFast(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Connections open now.
    open: usize,
    /// When the bucket is full again: each connection pushes it one
    /// interval later, starting from now if it lies in the past.
    full_at: Instant,
}

/// Open connections and recent connection times per address.
#[derive(Debug)]
pub(crate) struct AddressTable {
    limits: Limits,
    entries: HashMap<IpAddr, Entry>,
}

impl AddressTable {
    /// An empty table enforcing `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
        }
    }

    /// Whether the table has nothing to do: both limits are off.
    pub(crate) fn is_off(&self) -> bool {
        self.limits.max_open == 0 && self.limits.per_minute == 0
    }

    /// The time one connection takes out of the bucket.
    fn interval(&self) -> Option<Duration> {
        (self.limits.per_minute > 0).then(|| Duration::from_secs(60) / self.limits.per_minute)
    }

    /// A newcomer from `addr` at `now`: counts it and says yes, or says why
    /// not. Only admitted connections count against the rate: a client that
    /// reconnects in a loop gets in at the rate and no faster, and one that
    /// is refused costs the server no more than the refusal. An admitted
    /// connection must be [`release`](Self::release)d when it ends.
    pub(crate) fn admit(&mut self, addr: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.enter(addr, now, true)
    }

    /// A newcomer that is not (yet) a chat session, such as a web page's
    /// request for a file: counted against `max_open` only, since a page
    /// load opens a connection per file. It pays the rate with
    /// [`pay`](Self::pay) if it becomes a session.
    pub(crate) fn admit_open(&mut self, addr: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.enter(addr, now, false)
    }

    /// An admitted connection from `addr` becomes a chat session: it takes
    /// its place in the rate, or is refused as a newcomer would be.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) fn pay(&mut self, addr: IpAddr, now: Instant) -> Result<(), Refusal> {
        let Some(interval) = self.interval() else {
            return Ok(());
        };
        let burst = self.limits.burst;
        let key = address_key(addr);
        let Some(entry) = self.entries.get_mut(&key) else {
            // Only an admitted connection pays, and it is remembered while open.
            return Ok(());
        };
        let full_at = entry.full_at.max(now) + interval;
        let allowed = interval.saturating_mul(burst.max(1));
        let ahead = full_at.saturating_duration_since(now);
        if ahead > allowed {
            return Err(Refusal::TooFast(ahead - allowed));
        }
        entry.full_at = full_at;
        Ok(())
    }

    /// Counts a newcomer against `max_open`, and against the rate if `rate`.
    fn enter(&mut self, addr: IpAddr, now: Instant, rate: bool) -> Result<(), Refusal> {
        if self.is_off() {
            return Ok(());
        }
        let key = address_key(addr);
        if !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        let interval = self.interval().filter(|_| rate);
        let limits = self.limits;
        let entry = self.entries.entry(key).or_insert(Entry {
            open: 0,
            full_at: now,
        });
        let mut full_at = entry.full_at;
        if let Some(interval) = interval {
            full_at = entry.full_at.max(now) + interval;
            let allowed = interval.saturating_mul(limits.burst.max(1));
            let ahead = full_at.saturating_duration_since(now);
            if ahead > allowed {
                return Err(Refusal::TooFast(ahead - allowed));
            }
        }
        if limits.max_open > 0 && entry.open >= limits.max_open {
            return Err(Refusal::TooMany);
        }
        entry.full_at = full_at;
        entry.open += 1;
        Ok(())
    }

    /// A connection admitted from `addr` ended. Forgets the address at once
    /// if it holds nothing else and its bucket is full.
    pub(crate) fn release(&mut self, addr: IpAddr, now: Instant) {
        let key = address_key(addr);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && entry.full_at <= now {
                self.entries.remove(&key);
            }
        }
    }

    /// Makes room for one more address when the table is at its capacity:
    /// forgets the addresses as good as new, and if that frees less than an
    /// eighth of it, the eighth that connected longest ago (an address
    /// holding connections is never forgotten: its count must stay right).
    /// Dropping an eighth at a time keeps the work per newcomer constant
    /// on average.
    fn make_room(&mut self, now: Instant) {
        let idle = |entry: &Entry| entry.open == 0;
        if self.entries.values().filter(|e| idle(e)).count() < self.limits.capacity {
            return;
        }
        self.entries
            .retain(|_, entry| !(idle(entry) && entry.full_at <= now));
        let idle_count = self.entries.values().filter(|e| idle(e)).count();
        let target = self
            .limits
            .capacity
            .saturating_sub(self.limits.capacity / 8 + 1);
        if idle_count <= target {
            return;
        }
        let mut times: Vec<Instant> = self
            .entries
            .values()
            .filter(|e| idle(e))
            .map(|e| e.full_at)
            .collect();
        let excess = idle_count - target;
        // The `excess`-th earliest time: everything up to it goes.
        let (_, cut, _) = times.select_nth_unstable(excess - 1);
        let cut = *cut;
        let mut dropped = 0;
        self.entries.retain(|_, entry| {
            if dropped < excess && idle(entry) && entry.full_at <= cut {
                dropped += 1;
                false
            } else {
                true
            }
        });
    }

    /// How many addresses the table remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A connection's place in the per-address table; given back when dropped.
pub(crate) struct AddressSlot {
    table: Arc<Mutex<AddressTable>>,
    /// The address it is counted for; `None` while it counts for nobody
    /// (the limits are off, or it came through the trusted proxy).
    counted: Option<IpAddr>,
}

impl AddressSlot {
    /// Counts a newcomer from `addr`, against the rate too if `session`
    /// (it is a chat session from the start), or says why it is refused.
    pub(crate) fn take(
        table: &Arc<Mutex<AddressTable>>,
        addr: IpAddr,
        session: bool,
    ) -> Result<Self, Refusal> {
        let mut slot = Self::unclaimed(table);
        let mut locked = lock(table);
        if locked.is_off() {
            return Ok(slot);
        }
        let now = Instant::now();
        if session {
            locked.admit(addr, now)?;
        } else {
            locked.admit_open(addr, now)?;
        }
        slot.counted = Some(addr);
        Ok(slot)
    }

    /// A place that counts for nobody yet.
    pub(crate) fn unclaimed(table: &Arc<Mutex<AddressTable>>) -> Self {
        Self {
            table: Arc::clone(table),
            counted: None,
        }
    }

    /// The connection becomes a chat session of `addr` (the peer, or the
    /// client the trusted proxy forwarded for): it pays the rate, and is
    /// counted for `addr` if it was not yet, or says why it is refused.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) fn become_session(&mut self, addr: IpAddr) -> Result<(), Refusal> {
        let mut locked = lock(&self.table);
        if locked.is_off() {
            return Ok(());
        }
        let now = Instant::now();
        match self.counted {
            Some(counted) if address_key(counted) == address_key(addr) => locked.pay(counted, now),
            earlier => {
                locked.admit(addr, now)?;
                if let Some(earlier) = earlier {
                    locked.release(earlier, now);
                }
                self.counted = Some(addr);
                Ok(())
            }
        }
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(addr) = self.counted.take() {
            lock(&self.table).release(addr, Instant::now());
        }
    }
}

/// The table, locked. Nothing panics while holding the lock, but a
/// poisoned table is still a valid table.
fn lock(table: &Mutex<AddressTable>) -> MutexGuard<'_, AddressTable> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn limits(max_open: usize, per_minute: u32, burst: u32) -> Limits {
        Limits {
            max_open,
            per_minute,
            burst,
            capacity: 1000,
        }
    }

    #[test]
    fn an_address_holds_at_most_max_open_and_gets_its_slots_back() {
        let mut table = AddressTable::new(limits(3, 0, 0));
        let now = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(table.admit(a, now), Ok(()));
        }
        assert_eq!(table.admit(a, now), Err(Refusal::TooMany));
        // Others are not affected.
        assert_eq!(table.admit(ip("192.0.2.2"), now), Ok(()));
        table.release(a, now);
        assert_eq!(table.admit(a, now), Ok(()));
        assert_eq!(table.admit(a, now), Err(Refusal::TooMany));
        for _ in 0..3 {
            table.release(a, now);
        }
        table.release(ip("192.0.2.2"), now);
        assert_eq!(table.len(), 0, "released addresses are forgotten");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_addresses_as_ipv4() {
        let mut table = AddressTable::new(limits(2, 0, 0));
        let now = Instant::now();
        assert_eq!(table.admit(ip("2001:db8:1:2::1"), now), Ok(()));
        assert_eq!(table.admit(ip("2001:db8:1:2:ffff::9"), now), Ok(()));
        assert_eq!(
            table.admit(ip("2001:db8:1:2:abcd::5"), now),
            Err(Refusal::TooMany)
        );
        assert_eq!(table.admit(ip("2001:db8:1:3::1"), now), Ok(()));
        assert_eq!(table.admit(ip("198.51.100.7"), now), Ok(()));
        assert_eq!(table.admit(ip("::ffff:198.51.100.7"), now), Ok(()));
        assert_eq!(table.admit(ip("198.51.100.7"), now), Err(Refusal::TooMany));
    }

    #[test]
    fn zero_turns_both_limits_off() {
        let mut table = AddressTable::new(limits(0, 0, 0));
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(table.admit(ip("192.0.2.1"), now), Ok(()));
        }
        assert_eq!(table.len(), 0, "nothing is kept when both are off");
    }

    #[test]
    fn file_requests_count_as_open_and_only_sessions_pay_the_rate() {
        let mut table = AddressTable::new(limits(4, 60, 2));
        let now = Instant::now();
        let a = ip("192.0.2.7");
        // A page load: many files, never more than four at once.
        for _ in 0..50 {
            assert_eq!(table.admit_open(a, now), Ok(()));
            table.release(a, now);
        }
        for _ in 0..4 {
            assert_eq!(table.admit_open(a, now), Ok(()));
        }
        assert_eq!(table.admit_open(a, now), Err(Refusal::TooMany));
        // Two of them become sessions (the burst); the third is too fast.
        assert_eq!(table.pay(a, now), Ok(()));
        assert_eq!(table.pay(a, now), Ok(()));
        assert!(matches!(table.pay(a, now), Err(Refusal::TooFast(_))));
        // And a plain newcomer now finds the bucket spent as well.
        for _ in 0..4 {
            table.release(a, now);
        }
        assert!(matches!(table.admit(a, now), Err(Refusal::TooFast(_))));
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        // 60 a minute: one a second after a burst of 5.
        let mut table = AddressTable::new(limits(0, 60, 5));
        let start = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(table.admit(a, start), Ok(()));
        }
        match table.admit(a, start) {
            Err(Refusal::TooFast(wait)) => assert_eq!(wait, Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        // Refused attempts do not count: a second later, one more gets in,
        // and only one.
        let later = start + Duration::from_millis(1500);
        assert_eq!(table.admit(a, later), Ok(()));
        match table.admit(a, later) {
            Err(Refusal::TooFast(wait)) => assert_eq!(wait, Duration::from_millis(500)),
            other => panic!("{other:?}"),
        }
        // Half a token was left; 1.5 s later there are two.
        let later = start + Duration::from_secs(3);
        assert_eq!(table.admit(a, later), Ok(()));
        assert_eq!(table.admit(a, later), Ok(()));
        assert!(matches!(table.admit(a, later), Err(Refusal::TooFast(_))));
        // A long pause refills the whole burst.
        let much_later = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(table.admit(a, much_later), Ok(()));
        }
        // Another address has its own bucket.
        assert_eq!(table.admit(ip("192.0.2.2"), start), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded_and_never_forgets_open_connections() {
        let mut table = AddressTable::new(Limits {
            max_open: 1,
            per_minute: 1,
            burst: 1,
            capacity: 64,
        });
        let start = Instant::now();
        let held = ip("10.0.0.1");
        assert_eq!(table.admit(held, start), Ok(()));
        for i in 0..10_000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let now = start + Duration::from_millis(u64::from(i));
            assert_eq!(table.admit(addr, now), Ok(()));
            table.release(addr, now);
            assert!(table.len() <= 64 + 1, "{} entries", table.len());
        }
        // The address holding a connection is still counted.
        let end = start + Duration::from_secs(3600);
        assert_eq!(table.admit(held, end), Err(Refusal::TooMany));
    }
}
