//! History hand-off: the hub's side of `HISTORY` (which queues a [`Fetch`]
//! for the server to hand to the store) and [`history_line`], which the
//! store's answer is written with.

use super::outbox::Outbox;
use super::Hub;
use crate::ids::ClientId;
use crate::names;
use crate::protocol::{ErrorCode, HistoryQuery, ServerLine, Timestamp};
use crate::store::{Fetch, Place, Range, Record, Scope};

/// The `HIST` line for a stored record; `now` stands in for a stored time
/// outside the years a timestamp can write.
pub fn history_line(record: &Record, now: Timestamp) -> ServerLine {
    let time = Timestamp::from_unix(record.time).unwrap_or(now);
    let live = match &record.place {
        Place::Room(room) => ServerLine::Msg {
            time,
            id: record.id,
            room: room.clone(),
            nick: record.nick.clone(),
            text: record.text.clone(),
        },
        Place::Private(to) => ServerLine::Whisper {
            time,
            id: record.id,
            from: record.nick.clone(),
            to: to.clone(),
            text: record.text.clone(),
        },
    };
    ServerLine::History(Box::new(live))
}

impl<O: Outbox> Hub<O> {
    pub(super) fn history(&mut self, id: ClientId, target: &str, query: HistoryQuery) {
        // In cluster mode history is the cluster's (rooms' and whispers'),
        // whatever this node keeps.
        let from_cluster = self.config.cluster;
        if !self.config.history && !from_cluster {
            return self.error(
                id,
                ErrorCode::HistoryOff,
                "This server keeps no history.".into(),
            );
        }
        let (scope, target) = if target.starts_with('#') {
            let Some(key) = self.member_room(id, Some(target)) else {
                return;
            };
            let name = self.rooms.get(&key).map_or(target, |r| r.name.as_str());
            (Scope::Room(key.clone()), name.to_owned())
        } else {
            if names::check_nick(target).is_err() {
                return self.error(
                    id,
                    ErrorCode::BadArgument,
                    format!("{target} is neither a #room nor a nickname."),
                );
            }
            let Some(client) = self.clients.get(&id) else {
                return;
            };
            let scope = Scope::Private {
                a: names::fold(self.nick_of(id)),
                b: names::fold(target),
                after: client.since,
            };
            (scope, target.to_owned())
        };
        let (range, count) = match query {
            HistoryQuery::Last(count) => (Range::Last, count),
            HistoryQuery::Before(id) => (Range::Before(id), crate::protocol::HISTORY_DEFAULT),
            HistoryQuery::Since(id) => (Range::Since(id), crate::protocol::HISTORY_MAX),
        };
        let fetch = Fetch {
            client: id,
            scope,
            range,
            count: usize::try_from(count).unwrap_or(usize::MAX),
            target,
        };
        if from_cluster {
            return self.fetch_from_cluster(fetch);
        }
        self.fetches.push(fetch);
    }
}
