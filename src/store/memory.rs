//! History in memory, for `--history memory` and the tests.

use super::backend::{pair_key, scope_key, Backend};
use super::{Range, Record, Retention, Scope};

/// History in memory: a list ordered by id.
#[derive(Default)]
pub(super) struct Memory {
    records: Vec<Record>,
}

impl Backend for Memory {
    fn append(&mut self, batch: &[Record]) -> Result<(), String> {
        self.records.extend_from_slice(batch);
        Ok(())
    }

    fn fetch(&mut self, scope: &Scope, range: Range, count: usize) -> Vec<Record> {
        let (want_room, key, after) = match scope {
            Scope::Room(room) => (true, room.clone(), 0),
            Scope::Private { a, b, after } => (false, pair_key(a, b), *after),
        };
        let matches = |r: &&Record| r.id > after && scope_key(r) == (want_room, key.clone());
        let mut found: Vec<Record> = match range {
            Range::Last => self
                .records
                .iter()
                .rev()
                .filter(matches)
                .take(count)
                .cloned()
                .collect(),
            Range::Before(id) => self
                .records
                .iter()
                .rev()
                .filter(|r| r.id < id)
                .filter(matches)
                .take(count)
                .cloned()
                .collect(),
            Range::Since(id) => {
                return self
                    .records
                    .iter()
                    .filter(|r| r.id > id)
                    .filter(matches)
                    .take(count)
                    .cloned()
                    .collect()
            }
        };
        found.reverse();
        found
    }

    fn prune(&mut self, retention: Retention, now: i64) {
        if let Some(age) = retention.max_age {
            let oldest = now.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            self.records.retain(|r| r.time >= oldest);
        }
        if let Some(max) = retention.max_per_room {
            let mut seen: std::collections::HashMap<(bool, String), usize> = Default::default();
            let mut keep = vec![true; self.records.len()];
            for (i, record) in self.records.iter().enumerate().rev() {
                let n = seen.entry(scope_key(record)).or_default();
                *n += 1;
                if *n > max {
                    if let Some(k) = keep.get_mut(i) {
                        *k = false;
                    }
                }
            }
            let mut flags = keep.into_iter();
            self.records.retain(|_| flags.next().unwrap_or(true));
        }
    }

    fn last_id(&mut self) -> u64 {
        self.records.last().map_or(0, |r| r.id)
    }
}
