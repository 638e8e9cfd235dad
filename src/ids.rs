//! Identifiers shared by the hub, the stores and the server, in a file of
//! their own so that none of them has to import another for a name; and
//! [`MessageIds`], the rule that numbers chat messages.
//!
//! A message id is a promise to clients: it is never handed out twice, and
//! every id is larger than every id before it, across restarts too (a
//! `kill -9` included), so `HISTORY ... since <id>` finds everything said
//! after `<id>`. Ids come from the clock with a stored floor:
//!
//! - `next id = max(previous id + 1, now in microseconds since the Unix
//!   epoch)`. Ids stay below 2^53 until the year 2255, so a JavaScript
//!   number holds them exactly.
//! - Before an id is handed out it must be *reserved*: written to disk (the
//!   id floor file, `crate::store::floor`) by a writer off the hub task. The
//!   hub asks for [`RESERVE_AHEAD`] beyond the current id whenever less than
//!   [`RENEW_BEFORE`] is left, so about once a second while messages flow
//!   and never while the chat is idle.
//! - A restarted server starts above the floor (and above the highest id in
//!   its history), so it never reuses an id sent before it stopped, however
//!   it stopped and wherever the clock was set meanwhile.
//!
//! This module is pure: the time and the reserved ceiling come in as
//! arguments ([`MessageIds::observe`]), reservations go out as numbers
//! ([`MessageIds::take_wanted`]).

/// Identifies a connection for its whole life; never reused by one hub.
pub type ClientId = u64;

/// How far ahead of the current id a reservation reaches: 2 seconds of
/// microseconds.
pub const RESERVE_AHEAD: u64 = 2_000_000;

/// A new reservation is asked for when less than this (1 second of
/// microseconds) is left of the last one asked for: the writer then has a
/// second of clock, and a million ids, before the hub would have to wait
/// for it.
pub const RENEW_BEFORE: u64 = 1_000_000;

/// The ceiling that means "no floor": ids from the clock alone.
pub const UNRESERVED: u64 = u64::MAX;

/// Hands out message ids: from the clock, strictly increasing, never above
/// what is durably reserved.
///
/// When the reservation falls behind the clock (the floor's writer is
/// slow), ids stop following the clock and count up by one from where they
/// are, up to the reserved ceiling: they still only grow, and they stay
/// within what a restart would skip. Only when that runs out — a million
/// messages beyond the last confirmed reservation, far more than a server
/// says while one small file is written — does [`MessageIds::allocate`] return
/// `None`; the server then waits a moment for the writer and, failing
/// that, refuses the message (`ERR busy`) rather than hand out an id a
/// restart could hand out again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIds {
    /// The last id handed out (or the floor at start).
    last: u64,
    /// The clock, in microseconds since the Unix epoch, as last told.
    now: u64,
    /// Ids up to this are durably reserved; [`UNRESERVED`] if nothing is.
    reserved: u64,
    /// The largest reservation asked for, confirmed or not.
    asked: u64,
    /// A reservation to hand to the writer.
    wanted: Option<u64>,
}

impl MessageIds {
    /// Ids continuing above `last`, with no reservation and no clock yet:
    /// until [`MessageIds::observe`] says otherwise they count up by one.
    pub fn new(last: u64) -> Self {
        Self {
            last,
            now: 0,
            reserved: UNRESERVED,
            asked: 0,
            wanted: None,
        }
    }

    /// The time now (microseconds since the Unix epoch) and how far ids are
    /// durably reserved ([`UNRESERVED`] when the floor cannot be written).
    pub fn observe(&mut self, now: u64, reserved: u64) {
        self.now = now;
        self.reserved = reserved;
    }

    /// The next id, or `None` if it is not reserved yet (a reservation has
    /// been asked for).
    pub fn allocate(&mut self) -> Option<u64> {
        let counted = self.last.saturating_add(1);
        // The clock while it is within the reservation; past it, one more.
        let id = match self.now {
            now if now > counted && now <= self.reserved => now,
            _ => counted,
        };
        if id > self.reserved || id <= self.last {
            self.ask();
            return None;
        }
        self.last = id;
        if self.asked < self.last.max(self.now).saturating_add(RENEW_BEFORE) {
            self.ask();
        }
        Some(id)
    }

    /// True if [`MessageIds::allocate`] would give an id now.
    pub fn has_room(&self) -> bool {
        self.reserved > self.last
    }

    /// The last id handed out: every later one is larger.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Makes every later id larger than `floor` (an account's start made
    /// by another process, from its clock), asking for a reservation if
    /// that moves the ids.
    pub fn raise(&mut self, floor: u64) {
        if floor > self.last {
            self.last = floor;
            self.ask();
        }
    }

    /// The reservation to write, if a new one is wanted since the last call.
    pub fn take_wanted(&mut self) -> Option<u64> {
        self.wanted.take()
    }

    fn ask(&mut self) {
        let target = self.last.max(self.now).saturating_add(RESERVE_AHEAD);
        if target > self.asked {
            self.asked = target;
            self.wanted = Some(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000_000;

    #[test]
    fn ids_follow_the_clock_and_only_grow() {
        let mut ids = MessageIds::new(7);
        assert_eq!(ids.allocate(), Some(8), "no clock yet: counting up");
        ids.observe(T, UNRESERVED);
        assert_eq!(ids.allocate(), Some(T));
        assert_eq!(ids.allocate(), Some(T + 1), "same microsecond: one more");
        ids.observe(T - 5_000_000, UNRESERVED);
        assert_eq!(
            ids.allocate(),
            Some(T + 2),
            "the clock went back: ids do not"
        );
        ids.observe(T + 10, UNRESERVED);
        assert_eq!(ids.allocate(), Some(T + 10));
    }

    #[test]
    fn ids_never_pass_the_reservation_and_renewal_keeps_ahead() {
        let mut ids = MessageIds::new(0);
        ids.observe(T, T + 3);
        assert_eq!(ids.allocate(), Some(T));
        assert_eq!(ids.take_wanted(), Some(T + RESERVE_AHEAD), "asked at once");
        assert_eq!(ids.take_wanted(), None, "once");
        // The writer is slow and the clock runs on: ids count up by one to
        // the ceiling, then stop.
        ids.observe(T + 5_000_000, T + 3);
        assert_eq!(ids.allocate(), Some(T + 1));
        assert_eq!(
            ids.take_wanted(),
            Some(T + 5_000_000 + RESERVE_AHEAD),
            "asked again, ahead of the clock"
        );
        assert_eq!(ids.allocate(), Some(T + 2));
        assert_eq!(ids.allocate(), Some(T + 3));
        assert!(!ids.has_room());
        assert_eq!(ids.allocate(), None, "never above what is reserved");
        assert_eq!(ids.take_wanted(), None, "already asked");
        ids.observe(T + 5_000_001, T + 5_000_000 + RESERVE_AHEAD);
        assert!(ids.has_room());
        assert_eq!(ids.allocate(), Some(T + 5_000_001));
        assert_eq!(ids.take_wanted(), None, "well ahead: nothing to ask");
        // Most of a second later, the next id asks for the next block.
        ids.observe(T + 6_500_000, T + 5_000_000 + RESERVE_AHEAD);
        assert_eq!(ids.allocate(), Some(T + 6_500_000));
        assert_eq!(ids.take_wanted(), Some(T + 6_500_000 + RESERVE_AHEAD));
    }

    #[test]
    fn raising_moves_later_ids_above_the_floor() {
        let mut ids = MessageIds::new(0);
        ids.observe(T, UNRESERVED);
        assert_eq!(ids.allocate(), Some(T));
        ids.raise(T + 50);
        ids.raise(3);
        assert_eq!(ids.last(), T + 50);
        assert_eq!(ids.allocate(), Some(T + 51));
    }
}
