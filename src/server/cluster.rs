//! The cluster bus: the task that makes this node one of several through
//! Redis (`--cluster`), between the hub and Redis.
//!
//! The hub never waits for Redis. It queues [`Publish`] effects, which the
//! hub task hands over a bounded channel ([`BUS_QUEUE`]; when it is full the
//! asker gets `ERR cluster-unavailable`), and this task sends what Redis
//! tells it back into the hub's inbox as [`Remote`] events.
//!
//! # What lives in Redis (all keys under `natter:`)
//! - `seq`: the last message id. One Lua script per message or whisper
//!   takes the next id (the later of "last + 1", Redis's clock in
//!   microseconds, the node's own floor and the stream's last entry), adds a
//!   room message to the room's stream `stream:<room>` (trimmed to
//!   `--history-max`; the entry's id is `<message id>-0`, its fields `nick`,
//!   `text`, `node` and `time`: the room's history, read by id), and
//!   publishes it, all at once: ids are agreed by every node and only grow,
//!   and publication order is id order. A whisper is kept the same way in
//!   its conversation's stream `private:<a> <b>` (the two folded nicknames
//!   in order, as the store keys a private conversation; fields `nick`,
//!   `to`, `text`, `node` and `time`), trimmed alike.
//! - `nick:<folded>`: the node holding a nickname, set with `NX PX` (the
//!   claim), renewed by its node with each heartbeat, deleted by a
//!   compare-and-delete script; `node:<node>:nicks` lists a node's claims.
//! - `members:<room>`: a room's members as `node:nick`; `rooms`: the rooms'
//!   names; `node:<node>:members`: a node's `room nick` entries, so that
//!   survivors can remove a dead node's members.
//! - `alive:<node>`: the heartbeat, with the TTL `--node-ttl`; `nodes`: the
//!   nodes seen. A node whose heartbeat ran out is pruned by one survivor
//!   (a script, so only one), which publishes one `down` event: every node
//!   announces the leave of that node's users once.
//!
//! Channels: `natter:room:<room>` (messages, joins and parts; every node
//! subscribes to the pattern), `natter:all` (quits, renames, dead nodes,
//! operators' actions: kicks, mutes and bans, which every node applies) and
//! `natter:node:<node>` (whispers to that node's users, and requests to give
//! up a registered nickname someone logged in to elsewhere). Payloads are JSON,
//! at most [`PAYLOAD_MAX`] bytes; anything else is dropped, and what is
//! parsed is checked again by the hub.
//!
//! History (`HISTORY #room`, the join replay, and `HISTORY nick` of a
//! private conversation) is read from the stream by id, `XRANGE` for
//! `since`, `XREVRANGE` for the newest and `before`, at most [`FETCH_MAX`]
//! entries, and written straight into the asker's outbox. A private fetch
//! reads only ids above its `after`, as the store does: a guest sees only
//! whispers from after it took its nickname (a claim answers with the
//! cluster's last id, which the hub starts it at), an account's owner
//! those since its registration.
//!
//! While Redis is unreachable the task answers every effect with
//! [`Remote::Refused`] and reconnects with back-off, doubling from 100 ms up
//! to [`BACKOFF_MAX`]. Once back, it subscribes first, then tells the hub
//! `Up` (which answers with a [`Publish::Resync`], applied by the [`SYNC`]
//! script), then reads each room's stream after the last id it delivered
//! there (bounded by [`CATCHUP_PER_ROOM`] and [`CATCHUP_MAX`]), so that a
//! message is delivered once, whether it came on the channel or the stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures_lite::{future, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use serde::{Deserialize, Serialize};
use smol::Timer;

use super::hub_task::{deliver_whole, Event, Work};
use super::outbox::SessionOutbox;
use crate::hub::cluster::{
    Member, Membership, Moderation, Publish, Remote, Sanction, SNAPSHOT_MAX,
};
use crate::hub::history::history_line;
use crate::names;
use crate::protocol::{encode, ServerLine, Timestamp};
use crate::store::{Fetch, Place, Range, Record, Scope};

/// Effects the hub may have queued for the bus before askers are refused.
pub(crate) const BUS_QUEUE: usize = 4096;

/// The largest payload read from a channel; longer ones are dropped.
const PAYLOAD_MAX: usize = 16 * 1024;

/// The longest wait between two attempts to reach Redis.
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// How long one Redis command or connection attempt may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The most nicknames one heartbeat script renews at once.
const RENEW_BATCH: usize = 500;

/// The most messages one history answer reads from a room's stream.
const FETCH_MAX: usize = 1000;

/// The most messages fetched from one room's stream after an outage, and
/// from all of them together; past that, clients catch up with `HISTORY`.
const CATCHUP_PER_ROOM: usize = 1000;
const CATCHUP_MAX: usize = 20_000;

/// The most rooms whose last delivered id the bus remembers (and catches
/// up on after an outage); rooms past it catch up from the highest id seen.
const ROOMS_TRACKED: usize = 65_536;

/// The longest text taken from a stream entry, in bytes.
const TEXT_MAX: usize = 8192;

/// What the bus needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Bus {
    /// The Redis URL.
    pub(crate) url: String,
    /// This node's name.
    pub(crate) node: String,
    /// The heartbeat's and nick claims' lifetime.
    pub(crate) ttl: Duration,
    /// Ids this node handed out before: cluster ids start above.
    pub(crate) floor: u64,
    /// Messages kept in a room's stream.
    pub(crate) maxlen: usize,
}

/// A node's name from `--node-id`, or the host name and port; `Err` says
/// why a given one does not fit.
pub(crate) fn node_name(given: Option<&str>, port: Option<u16>) -> Result<String, String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    };
    if let Some(given) = given {
        return if ok(given) {
            Ok(given.to_owned())
        } else {
            Err(format!(
                "--node-id {given:?}: use 1 to 64 letters, digits, '.', '_' and '-'"
            ))
        };
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    let host = if host.is_empty() {
        "natter".into()
    } else {
        host
    };
    Ok(format!("{host}-{}", port.unwrap_or(0)))
}

/// What travels on the channels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Wire {
    Msg {
        id: u64,
        node: String,
        room: String,
        nick: String,
        text: String,
    },
    Whisper {
        id: u64,
        node: String,
        from: String,
        to: String,
        text: String,
    },
    Join {
        node: String,
        room: String,
        nick: String,
    },
    Part {
        node: String,
        room: String,
        nick: String,
        reason: String,
    },
    Quit {
        node: String,
        nick: String,
        reason: String,
    },
    Rename {
        node: String,
        old: String,
        new: String,
    },
    Down {
        node: String,
    },
    Evict {
        node: String,
        nick: String,
    },
    Mod {
        node: String,
        by: String,
        /// `kick`, `mute`, `unmute`, `ban` or `unban`.
        action: String,
        /// A nickname, or for bans a nickname or an address range.
        target: String,
        #[serde(default)]
        until: i64,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        rooms: Vec<String>,
    },
}

impl Wire {
    /// An operator's action as it travels.
    fn moderation(node: &str, m: Moderation) -> Wire {
        let (action, target, until) = match m.sanction {
            Sanction::Kick { nick } => ("kick", nick, 0),
            Sanction::Mute { nick, until } => ("mute", nick, until),
            Sanction::Unmute { nick } => ("unmute", nick, 0),
            Sanction::Ban { target, until } => ("ban", target, until),
            Sanction::Unban { target } => ("unban", target, 0),
        };
        Wire::Mod {
            node: node.to_owned(),
            by: m.by,
            action: action.to_owned(),
            target,
            until,
            reason: m.reason,
            rooms: m.rooms,
        }
    }
}

/// The Lua that takes the next message id into `s`; `ARGV[1]` is the
/// node's floor. `STREAM_FLOOR` may come between its two halves.
const NEXT_ID: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', 'natter:seq') or '0') or 0
local floor = tonumber(ARGV[1]) or 0
local id = math.max(last + 1, now, floor + 1)
";

/// Keeps the id above the room stream's last entry (whose stream id is
/// `<message id>-0`), should `seq` ever be behind it.
const STREAM_FLOOR: &str = r"
local top = redis.call('XREVRANGE', 'natter:stream:' .. ARGV[2], '+', '-', 'COUNT', 1)
if top[1] then
  local ms = tonumber(string.match(top[1][1], '^(%d+)')) or 0
  if ms >= id then id = ms + 1 end
end
";

const NEXT_ID_END: &str = r"
local s = string.format('%.0f', id)
redis.call('SET', 'natter:seq', s)
";

/// ARGV: floor, room key, stream length, nick, text, JSON without the id,
/// node. The stream entry's id is the message id (`<id>-0`), so history
/// is read by id with `XRANGE`.
const MSG_TAIL: &str = r#"
redis.call('XADD', 'natter:stream:' .. ARGV[2], 'MAXLEN', '~', ARGV[3], s .. '-0',
  'nick', ARGV[4], 'text', ARGV[5], 'node', ARGV[7], 'time', t[1])
redis.call('PUBLISH', 'natter:room:' .. ARGV[2], '{"id":' .. s .. ',' .. string.sub(ARGV[6], 2))
return s
"#;

/// Keeps the id above the private stream's last entry (`ARGV[4]`, see
/// [`WHISPER_TAIL`]), as [`STREAM_FLOOR`] does for rooms.
const PRIVATE_FLOOR: &str = r"
local top = redis.call('XREVRANGE', 'natter:private:' .. ARGV[4], '+', '-', 'COUNT', 1)
if top[1] then
  local ms = tonumber(string.match(top[1][1], '^(%d+)')) or 0
  if ms >= id then id = ms + 1 end
end
";

/// ARGV: floor, recipient node, JSON without the id, the conversation's
/// key, stream length, sender, recipient, text, node. The stream entry's
/// id is the message id, as for rooms.
const WHISPER_TAIL: &str = r#"
redis.call('XADD', 'natter:private:' .. ARGV[4], 'MAXLEN', '~', ARGV[5], s .. '-0',
  'nick', ARGV[6], 'to', ARGV[7], 'text', ARGV[8], 'node', ARGV[9], 'time', t[1])
redis.call('PUBLISH', 'natter:node:' .. ARGV[2], '{"id":' .. s .. ',' .. string.sub(ARGV[3], 2))
return s
"#;

/// The key of a private conversation's stream: the two folded nicknames
/// in order, as the store files it.
fn pair_key(a: &str, b: &str) -> String {
    let (a, b) = (names::fold(a), names::fold(b));
    if a <= b {
        format!("{a} {b}")
    } else {
        format!("{b} {a}")
    }
}

/// ARGV: node, room key, room name, nick, JSON.
const JOIN: &str = r"
redis.call('SADD', 'natter:members:' .. ARGV[2], ARGV[1] .. ':' .. ARGV[4])
redis.call('SADD', 'natter:node:' .. ARGV[1] .. ':members', ARGV[2] .. ' ' .. ARGV[4])
redis.call('HSETNX', 'natter:rooms', ARGV[2], ARGV[3])
redis.call('PUBLISH', 'natter:room:' .. ARGV[2], ARGV[5])
return 1
";

/// ARGV: node, room key, nick, JSON.
const PART: &str = r"
redis.call('SREM', 'natter:members:' .. ARGV[2], ARGV[1] .. ':' .. ARGV[3])
redis.call('SREM', 'natter:node:' .. ARGV[1] .. ':members', ARGV[2] .. ' ' .. ARGV[3])
if redis.call('SCARD', 'natter:members:' .. ARGV[2]) == 0 then
  redis.call('HDEL', 'natter:rooms', ARGV[2])
end
redis.call('PUBLISH', 'natter:room:' .. ARGV[2], ARGV[4])
return 1
";

/// ARGV: node, nick, folded nick, JSON, then the room keys.
const QUIT: &str = r"
local node = ARGV[1]
for i = 5, #ARGV do
  local room = ARGV[i]
  redis.call('SREM', 'natter:members:' .. room, node .. ':' .. ARGV[2])
  redis.call('SREM', 'natter:node:' .. node .. ':members', room .. ' ' .. ARGV[2])
  if redis.call('SCARD', 'natter:members:' .. room) == 0 then
    redis.call('HDEL', 'natter:rooms', room)
  end
end
if redis.call('GET', 'natter:nick:' .. ARGV[3]) == node then
  redis.call('DEL', 'natter:nick:' .. ARGV[3])
end
redis.call('SREM', 'natter:node:' .. node .. ':nicks', ARGV[3])
redis.call('PUBLISH', 'natter:all', ARGV[4])
return 1
";

/// ARGV: node, old nick, new nick, folded nick to release or '', JSON,
/// then the room keys.
const RENAME: &str = r"
local node = ARGV[1]
for i = 6, #ARGV do
  local room = ARGV[i]
  redis.call('SREM', 'natter:members:' .. room, node .. ':' .. ARGV[2])
  redis.call('SADD', 'natter:members:' .. room, node .. ':' .. ARGV[3])
  redis.call('SREM', 'natter:node:' .. node .. ':members', room .. ' ' .. ARGV[2])
  redis.call('SADD', 'natter:node:' .. node .. ':members', room .. ' ' .. ARGV[3])
end
if ARGV[4] ~= '' then
  if redis.call('GET', 'natter:nick:' .. ARGV[4]) == node then
    redis.call('DEL', 'natter:nick:' .. ARGV[4])
  end
  redis.call('SREM', 'natter:node:' .. node .. ':nicks', ARGV[4])
end
redis.call('PUBLISH', 'natter:all', ARGV[5])
return 1
";

/// ARGV: node, the number of nicknames held here, each as shown and
/// folded, then `room key, room name, nick` for each membership here.
/// Replaces what Redis lists for this node with that, at once, and
/// publishes only the differences: a part for a member still here, a quit
/// for a nickname no longer here, a join for a new membership; claims of
/// nicknames no longer here are released.
const SYNC: &str = r"
local node = ARGV[1]
local n = tonumber(ARGV[2]) or 0
local held, heldf = {}, {}
local i = 3
for _ = 1, n do
  held[ARGV[i]] = true
  heldf[ARGV[i + 1]] = true
  i = i + 2
end
local want, list = {}, {}
while i + 2 <= #ARGV do
  want[ARGV[i] .. ' ' .. ARGV[i + 2]] = true
  list[#list + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2]}
  i = i + 3
end
local mkey = 'natter:node:' .. node .. ':members'
local quit = {}
for _, e in ipairs(redis.call('SMEMBERS', mkey)) do
  if not want[e] then
    local sp = string.find(e, ' ', 1, true)
    if sp then
      local room = string.sub(e, 1, sp - 1)
      local nick = string.sub(e, sp + 1)
      redis.call('SREM', 'natter:members:' .. room, node .. ':' .. nick)
      if redis.call('SCARD', 'natter:members:' .. room) == 0 then
        redis.call('HDEL', 'natter:rooms', room)
      end
      if held[nick] then
        redis.call('PUBLISH', 'natter:room:' .. room, cjson.encode({t = 'part', node = node,
          room = room, nick = nick, reason = 'left'}))
      else
        quit[nick] = true
      end
    end
    redis.call('SREM', mkey, e)
  end
end
for nick, _ in pairs(quit) do
  redis.call('PUBLISH', 'natter:all', cjson.encode({t = 'quit', node = node, nick = nick,
    reason = 'left'}))
end
for _, m in ipairs(list) do
  local added = redis.call('SADD', mkey, m[1] .. ' ' .. m[3])
  redis.call('SADD', 'natter:members:' .. m[1], node .. ':' .. m[3])
  redis.call('HSETNX', 'natter:rooms', m[1], m[2])
  if added == 1 then
    redis.call('PUBLISH', 'natter:room:' .. m[1], cjson.encode({t = 'join', node = node,
      room = m[2], nick = m[3]}))
  end
end
local nkey = 'natter:node:' .. node .. ':nicks'
for _, f in ipairs(redis.call('SMEMBERS', nkey)) do
  if not heldf[f] then
    if redis.call('GET', 'natter:nick:' .. f) == node then
      redis.call('DEL', 'natter:nick:' .. f)
    end
    redis.call('SREM', nkey, f)
  end
end
return 1
";

/// ARGV: node, folded nick, TTL in ms. 1 if claimed, 0 if not, then the
/// last message id.
const CLAIM: &str = r"
local last = redis.call('GET', 'natter:seq') or '0'
if redis.call('SET', 'natter:nick:' .. ARGV[2], ARGV[1], 'NX', 'PX', ARGV[3]) then
  redis.call('SADD', 'natter:node:' .. ARGV[1] .. ':nicks', ARGV[2])
  return {1, last}
end
return {0, last}
";

/// ARGV: node, folded nick. Deletes the claim only if it is the node's.
const RELEASE: &str = r"
if redis.call('GET', 'natter:nick:' .. ARGV[2]) == ARGV[1] then
  redis.call('DEL', 'natter:nick:' .. ARGV[2])
end
redis.call('SREM', 'natter:node:' .. ARGV[1] .. ':nicks', ARGV[2])
return 1
";

/// ARGV: node, TTL in ms, then folded nicks to renew.
const HEARTBEAT: &str = r"
redis.call('SET', 'natter:alive:' .. ARGV[1], '1', 'PX', ARGV[2])
redis.call('SADD', 'natter:nodes', ARGV[1])
for i = 3, #ARGV do
  if redis.call('GET', 'natter:nick:' .. ARGV[i]) == ARGV[1] then
    redis.call('PEXPIRE', 'natter:nick:' .. ARGV[i], ARGV[2])
  end
end
return 1
";

/// ARGV: node, '1' to prune even a live node (itself, at start), JSON of
/// its `down` event. Removes the node's members and claims and publishes
/// the event, once: 1 if it did.
const PRUNE: &str = r"
local node = ARGV[1]
if ARGV[2] ~= '1' then
  if redis.call('EXISTS', 'natter:alive:' .. node) == 1 then return 0 end
  if redis.call('SISMEMBER', 'natter:nodes', node) == 0 then return 0 end
end
for _, e in ipairs(redis.call('SMEMBERS', 'natter:node:' .. node .. ':members')) do
  local sp = string.find(e, ' ', 1, true)
  if sp then
    local room = string.sub(e, 1, sp - 1)
    redis.call('SREM', 'natter:members:' .. room, node .. ':' .. string.sub(e, sp + 1))
    if redis.call('SCARD', 'natter:members:' .. room) == 0 then
      redis.call('HDEL', 'natter:rooms', room)
    end
  end
end
redis.call('DEL', 'natter:node:' .. node .. ':members')
for _, n in ipairs(redis.call('SMEMBERS', 'natter:node:' .. node .. ':nicks')) do
  if redis.call('GET', 'natter:nick:' .. n) == node then
    redis.call('DEL', 'natter:nick:' .. n)
  end
end
redis.call('DEL', 'natter:node:' .. node .. ':nicks')
redis.call('SREM', 'natter:nodes', node)
redis.call('DEL', 'natter:alive:' .. node)
redis.call('PUBLISH', 'natter:all', ARGV[3])
return 1
";

/// The scripts, loaded once (`EVALSHA`, falling back to `EVAL`).
struct Scripts {
    msg: Script,
    whisper: Script,
    join: Script,
    part: Script,
    quit: Script,
    rename: Script,
    claim: Script,
    release: Script,
    heartbeat: Script,
    prune: Script,
    sync: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            msg: Script::new(&format!("{NEXT_ID}{STREAM_FLOOR}{NEXT_ID_END}{MSG_TAIL}")),
            whisper: Script::new(&format!(
                "{NEXT_ID}{PRIVATE_FLOOR}{NEXT_ID_END}{WHISPER_TAIL}"
            )),
            join: Script::new(JOIN),
            part: Script::new(PART),
            quit: Script::new(QUIT),
            rename: Script::new(RENAME),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            heartbeat: Script::new(HEARTBEAT),
            prune: Script::new(PRUNE),
            sync: Script::new(SYNC),
        }
    }
}

/// Why a connection to Redis ended.
enum End {
    /// The hub stopped: the bus stops too.
    Stop,
    /// Redis failed or went away: reconnect.
    Lost(String),
}

fn json(wire: &Wire) -> String {
    serde_json::to_string(wire).unwrap_or_else(|_| "{}".to_owned())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The bus task: connects, serves, and reconnects with back-off until the
/// hub stops (its effect channel closes), then takes this node's users out
/// of the cluster.
pub(crate) async fn run_bus(bus: Bus, effects: Receiver<Work>, events: Sender<Event>) {
    let scripts = Scripts::new();
    let client = match redis::Client::open(bus.url.as_str()) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "--cluster is not a Redis URL; every cluster command is refused");
            let _ = events.send(Event::Cluster(Remote::Down)).await;
            while let Ok(effect) = effects.recv().await {
                if events.send(Event::Cluster(effect.refused())).await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    let mut state = State {
        owned: HashSet::new(),
        started: false,
        last: HashMap::new(),
        high: 0,
    };
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    loop {
        let end = match connect(&client).await {
            Ok((con, pubsub)) => {
                backoff = Duration::from_millis(100);
                down = false;
                serve(&bus, &scripts, &mut state, con, pubsub, &effects, &events).await
            }
            Err(err) => End::Lost(err),
        };
        match end {
            End::Stop => {
                leave(&bus, &scripts, &client).await;
                return;
            }
            End::Lost(why) => {
                if !down {
                    tracing::warn!(%why, "lost touch with Redis; reconnecting");
                    down = true;
                    if events.send(Event::Cluster(Remote::Down)).await.is_err() {
                        return;
                    }
                }
            }
        }
        // Until the next attempt, everything asked is refused at once.
        let wait = Timer::after(backoff);
        let refuse = async {
            loop {
                match effects.recv().await {
                    Ok(effect) => {
                        if events.send(Event::Cluster(effect.refused())).await.is_err() {
                            return true;
                        }
                    }
                    Err(_) => return true,
                }
            }
        };
        let stop = future::or(refuse, async {
            wait.await;
            false
        })
        .await;
        if stop {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// What the bus remembers across connections.
struct State {
    /// Nicknames this node holds, renewed with each heartbeat.
    owned: HashSet<String>,
    /// Whether this node has cleared what an earlier run under its name
    /// left behind.
    started: bool,
    /// The last message id handed to the hub, by room key: what came
    /// before is not handed again, and catching up starts after it.
    last: HashMap<String, u64>,
    /// The highest message id seen: rooms without an entry in `last` catch
    /// up from it.
    high: u64,
}

impl State {
    /// True if the room message `id` in `room` (a key) is new, which it then
    /// records as delivered.
    fn deliver(&mut self, room: &str, id: u64) -> bool {
        self.high = self.high.max(id);
        match self.last.get_mut(room) {
            Some(last) if *last >= id => false,
            Some(last) => {
                *last = id;
                true
            }
            None => {
                if self.last.len() < ROOMS_TRACKED {
                    self.last.insert(room.to_owned(), id);
                }
                true
            }
        }
    }
}

async fn connect(
    client: &redis::Client,
) -> Result<(MultiplexedConnection, redis::aio::PubSub), String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT));
    let con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let pubsub = future::or(
        async { client.get_async_pubsub().await.map_err(|e| e.to_string()) },
        async {
            Timer::after(REDIS_TIMEOUT).await;
            Err("timed out".to_owned())
        },
    )
    .await?;
    Ok((con, pubsub))
}

/// On shutdown, this node's users leave the cluster at once, announced to
/// the other nodes, rather than when its heartbeat runs out.
async fn leave(bus: &Bus, scripts: &Scripts, client: &redis::Client) {
    let attempt = async {
        let Ok((mut con, _)) = connect(client).await else {
            return;
        };
        let down = json(&Wire::Down {
            node: bus.node.clone(),
        });
        let _: Result<i64, _> = scripts
            .prune
            .arg(&bus.node)
            .arg("1")
            .arg(down)
            .invoke_async(&mut con)
            .await;
    };
    future::or(attempt, async {
        Timer::after(REDIS_TIMEOUT).await;
    })
    .await;
}

/// Serves one connection to Redis until it fails or the hub stops.
async fn serve(
    bus: &Bus,
    scripts: &Scripts,
    state: &mut State,
    mut con: MultiplexedConnection,
    mut pubsub: redis::aio::PubSub,
    effects: &Receiver<Work>,
    events: &Sender<Event>,
) -> End {
    let lost = |e: redis::RedisError| End::Lost(e.to_string());
    let node_channel = format!("natter:node:{}", bus.node);
    if let Err(e) = pubsub
        .subscribe(&["natter:all", node_channel.as_str()])
        .await
    {
        return lost(e);
    }
    if let Err(e) = pubsub.psubscribe("natter:room:*").await {
        return lost(e);
    }
    let mut messages = pubsub.into_on_message();
    // Back after an outage, the hub answers `Up` with a `Resync`: this
    // node's nicknames are claimed again (Redis may have restarted empty)
    // and its memberships replaced; messages it missed are fetched below.
    let catch_up = state.started;
    if !state.started {
        // A node restarted under its old name takes its ghosts out first.
        let down = json(&Wire::Down {
            node: bus.node.clone(),
        });
        let pruned: Result<i64, _> = scripts
            .prune
            .arg(&bus.node)
            .arg("1")
            .arg(down)
            .invoke_async(&mut con)
            .await;
        if let Err(e) = pruned {
            return lost(e);
        }
        // Messages numbered before this start are history, not news.
        let seq: Option<String> = match redis::cmd("GET")
            .arg("natter:seq")
            .query_async(&mut con)
            .await
        {
            Ok(seq) => seq,
            Err(e) => return lost(e),
        };
        state.high = seq.and_then(|s| s.parse().ok()).unwrap_or(0);
        state.started = true;
    }
    if let Err(e) = heartbeat(bus, scripts, state, &mut con).await {
        return lost(e);
    }
    let members = match snapshot(bus, &mut con).await {
        Ok(members) => members,
        Err(e) => return lost(e),
    };
    if events.send(Event::Cluster(Remote::Up)).await.is_err()
        || events
            .send(Event::Cluster(Remote::Members(members)))
            .await
            .is_err()
    {
        return End::Stop;
    }
    if catch_up {
        // Subscribed already: what comes on the channels meanwhile waits,
        // and whatever of it the catch-up delivered is not delivered again.
        let missed = match missed(state, &mut con).await {
            Ok(missed) => missed,
            Err(e) => return lost(e),
        };
        for (key, entry) in missed {
            if !state.deliver(&key, entry.id) {
                continue;
            }
            let remote = Remote::Msg {
                id: entry.id,
                room: key,
                nick: entry.nick,
                text: entry.text,
                mine: entry.node == bus.node,
            };
            if events.send(Event::Cluster(remote)).await.is_err() {
                return End::Stop;
            }
        }
    }
    let beat = (bus.ttl / 3).max(Duration::from_millis(100));
    let mut ticks = Timer::interval(beat);
    enum Wake {
        Effect(Option<Work>),
        Message(Option<redis::Msg>),
        Tick,
    }
    loop {
        let wake = future::or(
            async { Wake::Message(messages.next().await) },
            future::or(
                async {
                    ticks.next().await;
                    Wake::Tick
                },
                async { Wake::Effect(effects.recv().await.ok()) },
            ),
        )
        .await;
        match wake {
            Wake::Effect(None) => return End::Stop,
            Wake::Effect(Some(Work::History(fetch, outbox))) => {
                if let Err(e) = history(&mut con, &fetch, outbox.clone(), events).await {
                    deliver_whole(fetch.client, outbox, unavailable(), events);
                    return lost(e);
                }
            }
            Wake::Effect(Some(Work::Publish(effect))) => {
                match apply(bus, scripts, state, &mut con, effect.clone()).await {
                    Ok(Some(remote)) => {
                        if events.send(Event::Cluster(remote)).await.is_err() {
                            return End::Stop;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = events.send(Event::Cluster(Remote::Refused(effect))).await;
                        return lost(e);
                    }
                }
            }
            Wake::Message(None) => return End::Lost("the subscription ended".into()),
            Wake::Message(Some(msg)) => {
                let remote = receive(bus, msg.get_payload_bytes());
                if let Some(Remote::Msg { id, room, .. }) = &remote {
                    if !state.deliver(&names::fold(room), *id) {
                        continue;
                    }
                }
                if let Some(remote) = remote {
                    if events.send(Event::Cluster(remote)).await.is_err() {
                        return End::Stop;
                    }
                }
            }
            Wake::Tick => {
                if let Err(e) = heartbeat(bus, scripts, state, &mut con).await {
                    return lost(e);
                }
                if let Err(e) = prune_dead(bus, scripts, &mut con).await {
                    return lost(e);
                }
            }
        }
    }
}

/// Does one effect in Redis; the answer for the hub, if it needs one.
async fn apply(
    bus: &Bus,
    scripts: &Scripts,
    state: &mut State,
    con: &mut MultiplexedConnection,
    effect: Publish,
) -> Result<Option<Remote>, redis::RedisError> {
    let node = bus.node.as_str();
    match effect {
        Publish::Claim { client, nick } => {
            let folded = names::fold(&nick);
            let (won, last): (i64, String) = scripts
                .claim
                .arg(node)
                .arg(&folded)
                .arg(ms(bus.ttl))
                .invoke_async(con)
                .await?;
            if won == 1 {
                state.owned.insert(folded);
            }
            Ok(Some(Remote::Claimed {
                client,
                nick,
                won: won == 1,
                last: last.parse().unwrap_or(0),
            }))
        }
        Publish::Release { nick } => {
            let folded = names::fold(&nick);
            state.owned.remove(&folded);
            let _: i64 = scripts
                .release
                .arg(node)
                .arg(folded)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
        Publish::Join { room, name, nick } => {
            let payload = json(&Wire::Join {
                node: node.to_owned(),
                room: name.clone(),
                nick: nick.clone(),
            });
            let _: i64 = scripts
                .join
                .arg(node)
                .arg(room)
                .arg(name)
                .arg(nick)
                .arg(payload)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
        Publish::Part { room, nick, reason } => {
            let payload = json(&Wire::Part {
                node: node.to_owned(),
                room: room.clone(),
                nick: nick.clone(),
                reason,
            });
            let _: i64 = scripts
                .part
                .arg(node)
                .arg(room)
                .arg(nick)
                .arg(payload)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
        Publish::Quit {
            nick,
            rooms,
            reason,
        } => {
            let folded = names::fold(&nick);
            state.owned.remove(&folded);
            let payload = json(&Wire::Quit {
                node: node.to_owned(),
                nick: nick.clone(),
                reason,
            });
            let _: i64 = scripts
                .quit
                .arg(node)
                .arg(nick)
                .arg(folded)
                .arg(payload)
                .arg(rooms)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
        Publish::Rename {
            old,
            new,
            rooms,
            release,
        } => {
            let release = release.map(|r| names::fold(&r)).unwrap_or_default();
            if !release.is_empty() {
                state.owned.remove(&release);
            }
            let payload = json(&Wire::Rename {
                node: node.to_owned(),
                old: old.clone(),
                new: new.clone(),
            });
            let _: i64 = scripts
                .rename
                .arg(node)
                .arg(old)
                .arg(new)
                .arg(release)
                .arg(payload)
                .arg(rooms)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
        Publish::Msg {
            room,
            nick,
            text,
            client: _,
        } => {
            let key = names::fold(&room);
            let payload = json(&Wire::Msg {
                id: 0,
                node: node.to_owned(),
                room,
                nick: nick.clone(),
                text: text.clone(),
            });
            let _: String = scripts
                .msg
                .arg(bus.floor)
                .arg(key)
                .arg(bus.maxlen)
                .arg(nick)
                .arg(text)
                .arg(strip_id(&payload))
                .arg(node)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
        // The hub task hands fetches over as `Work::History`, with their
        // outbox; one without cannot be answered.
        Publish::History(fetch) => Ok(Some(Remote::Refused(Publish::History(fetch)))),
        Publish::Evict { node: holder, nick } => {
            let payload = json(&Wire::Evict {
                node: node.to_owned(),
                nick,
            });
            let _: i64 = redis::cmd("PUBLISH")
                .arg(format!("natter:node:{holder}"))
                .arg(payload)
                .query_async(con)
                .await?;
            Ok(None)
        }
        Publish::Moderate(moderation) => {
            let payload = json(&Wire::moderation(node, moderation));
            let _: i64 = redis::cmd("PUBLISH")
                .arg("natter:all")
                .arg(payload)
                .query_async(con)
                .await?;
            Ok(None)
        }
        Publish::Resync { nicks, members } => {
            resync(bus, scripts, state, con, nicks, members).await?;
            Ok(None)
        }
        Publish::Whisper {
            node: to_node,
            from,
            to,
            text,
            client: _,
        } => {
            let to_node = to_node.unwrap_or_else(|| node.to_owned());
            let payload = json(&Wire::Whisper {
                id: 0,
                node: node.to_owned(),
                from: from.clone(),
                to: to.clone(),
                text: text.clone(),
            });
            let _: String = scripts
                .whisper
                .arg(bus.floor)
                .arg(to_node)
                .arg(strip_id(&payload))
                .arg(pair_key(&from, &to))
                .arg(bus.maxlen)
                .arg(from)
                .arg(to)
                .arg(text)
                .arg(node)
                .invoke_async(con)
                .await?;
            Ok(None)
        }
    }
}

/// Replaces what Redis knows of this node with what its hub holds (see
/// [`SYNC`]): its nicknames are claimed again first (a claim someone else
/// made meanwhile stays theirs, and is logged).
async fn resync(
    bus: &Bus,
    scripts: &Scripts,
    state: &mut State,
    con: &mut MultiplexedConnection,
    nicks: Vec<String>,
    members: Vec<Membership>,
) -> Result<(), redis::RedisError> {
    let node = bus.node.as_str();
    state.owned = nicks.iter().map(|n| names::fold(n)).collect();
    for folded in &state.owned {
        let (won, _): (i64, String) = scripts
            .claim
            .arg(node)
            .arg(folded)
            .arg(ms(bus.ttl))
            .invoke_async(con)
            .await?;
        if won != 1 {
            let holder: Option<String> = redis::cmd("GET")
                .arg(format!("natter:nick:{folded}"))
                .query_async(con)
                .await?;
            if holder.as_deref() != Some(node) {
                tracing::warn!(nick = %folded, "a nickname held here was claimed elsewhere during an outage");
            }
        }
    }
    let mut sync = scripts.sync.prepare_invoke();
    sync.arg(node).arg(nicks.len());
    for nick in &nicks {
        sync.arg(nick).arg(names::fold(nick));
    }
    for m in &members {
        sync.arg(&m.room).arg(&m.name).arg(&m.nick);
    }
    let _: i64 = sync.invoke_async(con).await?;
    Ok(())
}

/// One message of a room's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: u64,
    time: Option<i64>,
    node: String,
    nick: String,
    /// A whisper's recipient; empty in a room's stream.
    to: String,
    text: String,
}

/// The text of a reply value, if it is one.
fn text_of(value: &redis::Value) -> Option<&str> {
    match value {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        redis::Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The entries of an `XRANGE` or `XREVRANGE` reply, at most `max`, each
/// checked: a stream id `<id>-0`, a nickname, text without control
/// characters. What does not fit is skipped.
fn entries(reply: redis::Value, max: usize) -> Vec<Entry> {
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.into_iter().take(max) {
        let redis::Value::Array(pair) = item else {
            continue;
        };
        let (Some(id), Some(redis::Value::Array(fields))) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let Some(id) = text_of(id)
            .and_then(|id| id.strip_suffix("-0"))
            .and_then(|id| id.parse::<u64>().ok())
        else {
            continue;
        };
        let mut entry = Entry {
            id,
            time: None,
            node: String::new(),
            nick: String::new(),
            to: String::new(),
            text: String::new(),
        };
        for field in fields.chunks(2).take(8) {
            let (Some(key), Some(value)) = (
                field.first().and_then(text_of),
                field.get(1).and_then(text_of),
            ) else {
                continue;
            };
            match key {
                "nick" => value.clone_into(&mut entry.nick),
                "text" => value.clone_into(&mut entry.text),
                "to" => value.clone_into(&mut entry.to),
                "node" => value.clone_into(&mut entry.node),
                "time" => entry.time = value.parse().ok(),
                _ => {}
            }
        }
        if names::check_nick(&entry.nick).is_err()
            || (!entry.to.is_empty() && names::check_nick(&entry.to).is_err())
            || entry.text.len() > TEXT_MAX
            || entry.text.chars().any(char::is_control)
        {
            continue;
        }
        out.push(entry);
    }
    out
}

/// Reads up to `count` messages of the stream `key` with ids above
/// `after`: the newest (`Last`), the newest before an id, or the oldest
/// after one; oldest first.
async fn read_stream(
    con: &mut MultiplexedConnection,
    key: &str,
    after: u64,
    range: Range,
    count: usize,
) -> Result<Vec<Entry>, redis::RedisError> {
    let count = count.min(FETCH_MAX);
    let Some(lowest) = after.checked_add(1) else {
        return Ok(Vec::new());
    };
    if count == 0 {
        return Ok(Vec::new());
    }
    let (reply, newest_first) = match range {
        Range::Last => (
            redis::cmd("XREVRANGE")
                .arg(key)
                .arg("+")
                .arg(format!("{lowest}-0"))
                .arg("COUNT")
                .arg(count)
                .query_async(con)
                .await?,
            true,
        ),
        Range::Before(0) => return Ok(Vec::new()),
        Range::Before(id) => (
            redis::cmd("XREVRANGE")
                .arg(key)
                .arg(format!("{}-{}", id - 1, u64::MAX))
                .arg(format!("{lowest}-0"))
                .arg("COUNT")
                .arg(count)
                .query_async(con)
                .await?,
            true,
        ),
        Range::Since(u64::MAX) => return Ok(Vec::new()),
        Range::Since(id) => (
            redis::cmd("XRANGE")
                .arg(key)
                .arg(format!("{}-0", (id + 1).max(lowest)))
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async(con)
                .await?,
            false,
        ),
    };
    let mut found = entries(reply, count);
    if newest_first {
        found.reverse();
    }
    Ok(found)
}

/// Answers a history fetch from the room's or the conversation's stream,
/// straight into the asker's outbox, whole (like the store's answers). A
/// private entry that is not between the two is skipped.
async fn history(
    con: &mut MultiplexedConnection,
    fetch: &Fetch,
    outbox: SessionOutbox,
    events: &Sender<Event>,
) -> Result<(), redis::RedisError> {
    let (key, after) = match &fetch.scope {
        Scope::Room(room) => (format!("natter:stream:{room}"), 0),
        Scope::Private { a, b, after } => (format!("natter:private:{}", pair_key(a, b)), *after),
    };
    let mut found = read_stream(con, &key, after, fetch.range, fetch.count).await?;
    if let Scope::Private { a, b, .. } = &fetch.scope {
        let pair = pair_key(a, b);
        found.retain(|e| pair_key(&e.nick, &e.to) == pair);
    }
    let now = Timestamp::now();
    let end = ServerLine::HistoryEnd {
        target: fetch.target.clone(),
        count: u32::try_from(found.len()).unwrap_or(u32::MAX),
    };
    let lines = found
        .into_iter()
        .map(|e| {
            let place = match fetch.scope {
                Scope::Room(_) => Place::Room(fetch.target.clone()),
                Scope::Private { .. } => Place::Private(e.to),
            };
            let record = Record {
                id: e.id,
                time: e.time.unwrap_or(now.unix()),
                place,
                nick: e.nick,
                text: e.text,
            };
            encode(&history_line(&record, now))
        })
        .chain([encode(&end)]);
    deliver_whole(fetch.client, outbox, lines, events);
    Ok(())
}

/// The answer to a fetch the bus could not make.
fn unavailable() -> impl Iterator<Item = crate::protocol::Line> {
    std::iter::once(encode(&ServerLine::Err {
        code: crate::protocol::ErrorCode::ClusterUnavailable,
        text: "This server cannot reach the other nodes right now; try again in a moment.".into(),
    }))
}

/// After an outage: the messages of every room with members (and every
/// room this node delivered messages of) numbered after the last one this
/// node delivered there, oldest first, bounded.
async fn missed(
    state: &State,
    con: &mut MultiplexedConnection,
) -> Result<Vec<(String, Entry)>, redis::RedisError> {
    let mut rooms: Vec<String> = redis::cmd("HKEYS")
        .arg("natter:rooms")
        .query_async(con)
        .await?;
    rooms.truncate(ROOMS_TRACKED);
    let listed: HashSet<String> = rooms.iter().cloned().collect();
    rooms.extend(state.last.keys().filter(|k| !listed.contains(*k)).cloned());
    let mut all = Vec::new();
    for room in rooms {
        if !names::is_room(&room) {
            continue;
        }
        let since = state.last.get(&room).copied().unwrap_or(state.high);
        let key = format!("natter:stream:{room}");
        let found = read_stream(con, &key, 0, Range::Since(since), CATCHUP_PER_ROOM).await?;
        if found.len() == CATCHUP_PER_ROOM {
            tracing::warn!(%room, "more messages missed than a node catches up on; clients fetch the rest with HISTORY");
        }
        all.extend(found.into_iter().map(|e| (room.clone(), e)));
        if all.len() >= CATCHUP_MAX {
            tracing::warn!("more messages missed than a node catches up on");
            break;
        }
    }
    all.sort_by_key(|(_, e)| e.id);
    Ok(all)
}

/// The JSON of a message without its placeholder id, `{"t":...}`: the
/// script puts the real one in front.
fn strip_id(payload: &str) -> String {
    // serde_json writes the tag first, then the fields in order: the id
    // comes right after the tag.
    payload.replacen(",\"id\":0", "", 1)
}

/// Renews the heartbeat and this node's nickname claims.
async fn heartbeat(
    bus: &Bus,
    scripts: &Scripts,
    state: &State,
    con: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    let owned: Vec<&String> = state.owned.iter().collect();
    let mut batches = owned.chunks(RENEW_BATCH).peekable();
    if batches.peek().is_none() {
        let _: i64 = scripts
            .heartbeat
            .arg(&bus.node)
            .arg(ms(bus.ttl))
            .invoke_async(con)
            .await?;
    }
    for batch in batches {
        let _: i64 = scripts
            .heartbeat
            .arg(&bus.node)
            .arg(ms(bus.ttl))
            .arg(batch)
            .invoke_async(con)
            .await?;
    }
    Ok(())
}

/// Prunes the nodes whose heartbeat ran out; the script makes sure one
/// survivor does each, once.
async fn prune_dead(
    bus: &Bus,
    scripts: &Scripts,
    con: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg("natter:nodes")
        .query_async(con)
        .await?;
    for node in nodes.into_iter().filter(|n| *n != bus.node).take(1024) {
        let alive: i64 = redis::cmd("EXISTS")
            .arg(format!("natter:alive:{node}"))
            .query_async(con)
            .await?;
        if alive == 1 {
            continue;
        }
        let down = json(&Wire::Down { node: node.clone() });
        let pruned: i64 = scripts
            .prune
            .arg(&node)
            .arg("0")
            .arg(down)
            .invoke_async(con)
            .await?;
        if pruned == 1 {
            tracing::warn!(%node, "a node's heartbeat ran out: its users left");
        }
    }
    Ok(())
}

/// Who is in which room on the other nodes.
async fn snapshot(
    bus: &Bus,
    con: &mut MultiplexedConnection,
) -> Result<Vec<Member>, redis::RedisError> {
    let rooms: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("natter:rooms")
        .query_async(con)
        .await?;
    let mut members = Vec::new();
    for (key, name) in rooms {
        if members.len() >= SNAPSHOT_MAX {
            tracing::warn!("the cluster lists more members than a node mirrors");
            break;
        }
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("natter:members:{key}"))
            .query_async(con)
            .await?;
        for entry in entries {
            let Some((node, nick)) = entry.split_once(':') else {
                continue;
            };
            if node == bus.node {
                continue;
            }
            members.push(Member {
                node: node.to_owned(),
                room: name.clone(),
                nick: nick.to_owned(),
            });
        }
    }
    Ok(members)
}

/// A channel message as the hub's event, if it is one this node should act
/// on: this node's own presence changes are already applied.
fn receive(bus: &Bus, payload: &[u8]) -> Option<Remote> {
    if payload.len() > PAYLOAD_MAX {
        return None;
    }
    let wire: Wire = serde_json::from_slice(payload).ok()?;
    let mine = |node: &str| node == bus.node;
    Some(match wire {
        Wire::Msg {
            id,
            node,
            room,
            nick,
            text,
        } => Remote::Msg {
            id,
            room,
            nick,
            text,
            mine: mine(&node),
        },
        Wire::Whisper {
            id, from, to, text, ..
        } => Remote::Whisper { id, from, to, text },
        Wire::Join { node, room, nick } if !mine(&node) => Remote::Join { node, room, nick },
        Wire::Part {
            node,
            room,
            nick,
            reason,
        } if !mine(&node) => Remote::Part {
            node,
            room,
            nick,
            reason,
        },
        Wire::Quit { node, nick, reason } if !mine(&node) => Remote::Quit { node, nick, reason },
        Wire::Rename { node, old, new } if !mine(&node) => Remote::Rename { node, old, new },
        Wire::Down { node } if !mine(&node) => Remote::NodeDown { node },
        Wire::Evict { node, nick } if !mine(&node) => Remote::Evict { node, nick },
        Wire::Mod {
            node,
            by,
            action,
            target,
            until,
            reason,
            rooms,
        } if !mine(&node) => {
            let sanction = match action.as_str() {
                "kick" => Sanction::Kick { nick: target },
                "mute" => Sanction::Mute {
                    nick: target,
                    until,
                },
                "unmute" => Sanction::Unmute { nick: target },
                "ban" => Sanction::Ban { target, until },
                "unban" => Sanction::Unban { target },
                _ => return None,
            };
            Remote::Moderate {
                node,
                moderation: Moderation {
                    by,
                    sanction,
                    reason,
                    rooms,
                },
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> Bus {
        Bus {
            url: String::new(),
            node: "a".into(),
            ttl: Duration::from_secs(10),
            floor: 0,
            maxlen: 10,
        }
    }

    #[test]
    fn the_script_puts_the_id_first() {
        let payload = json(&Wire::Msg {
            id: 0,
            node: "a".into(),
            room: "#lobby".into(),
            nick: "bob".into(),
            text: "hi \"there\"".into(),
        });
        let stripped = strip_id(&payload);
        assert!(!stripped.contains("\"id\""), "{stripped}");
        let with_id = format!("{{\"id\":1800000000000001,{}", &stripped[1..]);
        match receive(&bus(), with_id.as_bytes()) {
            Some(Remote::Msg { id, text, mine, .. }) => {
                assert_eq!(id, 1_800_000_000_000_001);
                assert_eq!(text, "hi \"there\"");
                assert!(mine);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_payloads_are_dropped() {
        let b = bus();
        assert_eq!(receive(&b, b"not json"), None);
        assert_eq!(receive(&b, b"{\"t\":\"msg\"}"), None);
        assert_eq!(receive(&b, &vec![b' '; PAYLOAD_MAX + 1]), None);
        let own = br##"{"t":"join","node":"a","room":"#x","nick":"n"}"##;
        assert_eq!(receive(&b, own), None, "own presence is applied already");
    }

    #[test]
    fn hostile_stream_entries_are_skipped() {
        use redis::Value::{Array, BulkString, Int};
        let b = |s: &str| BulkString(s.as_bytes().to_vec());
        let fields = |nick: &str, text: &str| {
            Array(vec![
                b("nick"),
                b(nick),
                b("text"),
                b(text),
                b("node"),
                b("a"),
            ])
        };
        let reply = Array(vec![
            Array(vec![b("17-0"), fields("bob", "hi")]),
            Array(vec![b("18-1"), fields("bob", "not ours")]),
            Array(vec![b("x-0"), fields("bob", "bad id")]),
            Array(vec![b("19-0"), fields("bad nick", "x")]),
            Array(vec![b("20-0"), fields("bob", "line\nbreak")]),
            Array(vec![b("21-0")]),
            Int(5),
            Array(vec![b("22-0"), Array(vec![b("nick")])]),
            Array(vec![b("23-0"), fields("eve", "ok")]),
        ]);
        let got = entries(reply, 100);
        let ids: Vec<u64> = got.iter().map(|e| e.id).collect();
        assert_eq!(ids, [17, 23]);
        assert_eq!(got[0].node, "a");
        assert!(entries(Int(1), 10).is_empty());
        let whisper = |to: &str| {
            Array(vec![
                b("30-0"),
                Array(vec![
                    b("nick"),
                    b("bob"),
                    b("to"),
                    b(to),
                    b("text"),
                    b("hi"),
                ]),
            ])
        };
        let got = entries(Array(vec![whisper("alice"), whisper("not a nick")]), 10);
        assert_eq!(got.len(), 1, "a whisper to a bad nickname is skipped");
        assert_eq!(got[0].to, "alice");
        assert_eq!(pair_key("Bob", "alice"), pair_key("ALICE", "bob"));
        let many = Array(
            (0..50)
                .map(|i| Array(vec![b(&format!("{i}-0")), fields("bob", "x")]))
                .collect(),
        );
        assert_eq!(entries(many, 10).len(), 10);
    }

    #[test]
    fn node_names() {
        assert_eq!(node_name(Some("n-1.x"), None), Ok("n-1.x".into()));
        assert!(node_name(Some("a:b"), None).is_err());
        assert!(node_name(Some(""), None).is_err());
        let default = node_name(None, Some(5555)).unwrap_or_default();
        assert!(default.ends_with("-5555"), "{default}");
    }
}
