//! The trait the store's thread writes through, and the conversation keys
//! both backends file records under.

use super::{Place, Range, Record, Retention, Scope};
use crate::names;

/// Where records actually go. Failures are logged, not returned: history is
/// a service to users, and the chat goes on without it. Writes are the
/// exception: their error comes back, so that the store thread can log an
/// outage (a full or read-only disk) once instead of once per batch.
pub(super) trait Backend: Send {
    /// Writes a batch, all or nothing; the error is for the log.
    fn append(&mut self, batch: &[Record]) -> Result<(), String>;
    fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record>;
    fn prune(&mut self, retention: Retention, now: i64);
    fn last_id(&mut self) -> u64;
}

/// The key of a private conversation: the two folded nicknames in order.
pub(super) fn pair_key(a: &str, b: &str) -> String {
    let (a, b) = (names::fold(a), names::fold(b));
    if a <= b {
        format!("{a} {b}")
    } else {
        format!("{b} {a}")
    }
}

pub(super) fn scope_key(record: &Record) -> (bool, String) {
    match &record.place {
        Place::Room(room) => (true, names::fold(room)),
        Place::Private(to) => (false, pair_key(&record.nick, to)),
    }
}
