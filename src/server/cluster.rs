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
//! Channels: `natter:room:<room>` (the room's messages; a node subscribes
//! to it only while the room has a member on it, see [`listen`]),
//! `natter:all` (joins, parts, quits, renames, dead nodes, operators'
//! actions: kicks, mutes and bans, which every node applies: every node
//! mirrors every room's members) and
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
//! Effects go to Redis in order, on one connection, as pipelines of up to
//! [`PIPELINE_MAX`]: what the hub queued while the last pipeline was out
//! goes in the next, one round trip for all of it (see [`flush`]). Redis
//! runs one connection's commands in the order they came, so a node's ids,
//! stream entries and publications keep the hub's order.
//!
//! While Redis is unreachable the task answers every effect with
//! [`Remote::Refused`] and reconnects with back-off, doubling from 100 ms up
//! to [`BACKOFF_MAX`]. Once back, it subscribes first, then tells the hub
//! `Up` (which answers with a [`Publish::Resync`], applied by the [`SYNC`]
//! script), then reads the stream of each room with members here after
//! the last id it delivered there (bounded by [`CATCHUP_PER_ROOM`] and [`CATCHUP_MAX`]), so that a
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

/// The most effects the bus sends to Redis in one pipeline: at most this
/// many message scripts are in flight from one node.
const PIPELINE_MAX: usize = 256;

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
redis.call('PUBLISH', 'natter:all', ARGV[5])
return 1
";

/// ARGV: node, room key, nick, JSON.
const PART: &str = r"
redis.call('SREM', 'natter:members:' .. ARGV[2], ARGV[1] .. ':' .. ARGV[3])
redis.call('SREM', 'natter:node:' .. ARGV[1] .. ':members', ARGV[2] .. ' ' .. ARGV[3])
if redis.call('SCARD', 'natter:members:' .. ARGV[2]) == 0 then
  redis.call('HDEL', 'natter:rooms', ARGV[2])
end
redis.call('PUBLISH', 'natter:all', ARGV[4])
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
        redis.call('PUBLISH', 'natter:all', cjson.encode({t = 'part', node = node,
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
    redis.call('PUBLISH', 'natter:all', cjson.encode({t = 'join', node = node,
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

/// ARGV: node, TTL in ms, then folded nicks. Claims each nickname for the
/// node again after an outage (or renews its claim); returns those another
/// node holds now, which stay theirs.
const RECLAIM: &str = r"
local taken = {}
for i = 3, #ARGV do
  local key = 'natter:nick:' .. ARGV[i]
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    redis.call('SADD', 'natter:node:' .. ARGV[1] .. ':nicks', ARGV[i])
  elseif redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    taken[#taken + 1] = ARGV[i]
  end
end
return taken
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

/// The scripts, loaded into Redis on each connection ([`Scripts::load`]):
/// pipelines call them by hash (`EVALSHA`); single calls fall back to
/// `EVAL` should Redis have forgotten one.
struct Scripts {
    msg: Script,
    whisper: Script,
    join: Script,
    part: Script,
    quit: Script,
    rename: Script,
    claim: Script,
    reclaim: Script,
    release: Script,
    heartbeat: Script,
    prune: Script,
    sync: Script,
    /// Every script's source, for `SCRIPT LOAD`.
    sources: Vec<String>,
}

impl Scripts {
    fn new() -> Self {
        let msg = format!("{NEXT_ID}{STREAM_FLOOR}{NEXT_ID_END}{MSG_TAIL}");
        let whisper = format!("{NEXT_ID}{PRIVATE_FLOOR}{NEXT_ID_END}{WHISPER_TAIL}");
        let plain = [
            JOIN, PART, QUIT, RENAME, CLAIM, RECLAIM, RELEASE, HEARTBEAT, PRUNE, SYNC,
        ];
        let mut sources = vec![msg.clone(), whisper.clone()];
        sources.extend(plain.iter().map(|s| (*s).to_owned()));
        Self {
            msg: Script::new(&msg),
            whisper: Script::new(&whisper),
            join: Script::new(JOIN),
            part: Script::new(PART),
            quit: Script::new(QUIT),
            rename: Script::new(RENAME),
            claim: Script::new(CLAIM),
            reclaim: Script::new(RECLAIM),
            release: Script::new(RELEASE),
            heartbeat: Script::new(HEARTBEAT),
            prune: Script::new(PRUNE),
            sync: Script::new(SYNC),
            sources,
        }
    }

    /// Loads every script, in one round trip: a Redis that restarted has
    /// forgotten them, and a pipeline's `EVALSHA` has no fallback.
    async fn load(&self, con: &mut MultiplexedConnection) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        for source in &self.sources {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source).ignore();
        }
        pipe.query_async::<()>(con).await
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
        local: HashMap::new(),
        subscribed: HashSet::new(),
        fresh: HashMap::new(),
        runs: 0,
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
    /// This node's own members, by room key (folded nicknames), as the hub
    /// published them: the rooms whose channel this node listens to.
    local: HashMap<String, HashSet<String>>,
    /// The room keys whose channel the current connection subscribes to.
    subscribed: HashSet<String>,
    /// Rooms just subscribed to, with the `seq` read before and the number
    /// of the [`run`] that subscribed: the newcomer's join replay, the
    /// room's next fetch, reads up to that id (the hub, which did not hear
    /// the room's messages, asks for those before the last id it saw).
    fresh: HashMap<String, (u64, u64)>,
    /// How many times [`run`] started.
    runs: u64,
}

impl State {
    /// Follows this node's own memberships in what the hub publishes.
    fn follow(&mut self, effect: &Publish) {
        let fold = |n: &str| names::fold(n);
        match effect {
            Publish::Join { room, nick, .. } => {
                self.local
                    .entry(room.clone())
                    .or_default()
                    .insert(fold(nick));
            }
            Publish::Part { room, nick, .. } => self.leave(room, &fold(nick)),
            Publish::Quit { nick, rooms, .. } => {
                for room in rooms {
                    self.leave(room, &fold(nick));
                }
            }
            Publish::Rename {
                old, new, rooms, ..
            } => {
                for room in rooms {
                    if let Some(members) = self.local.get_mut(room) {
                        members.remove(&fold(old));
                        members.insert(fold(new));
                    }
                }
            }
            Publish::Resync { members, .. } => {
                self.local.clear();
                for m in members {
                    self.local
                        .entry(m.room.clone())
                        .or_default()
                        .insert(fold(&m.nick));
                }
            }
            _ => {}
        }
    }

    fn leave(&mut self, room: &str, nick: &str) {
        if let Some(members) = self.local.get_mut(room) {
            members.remove(nick);
            if members.is_empty() {
                self.local.remove(room);
            }
        }
    }

    /// Messages of `room` up to `id` are not news here: a room this node
    /// starts listening to catches up from there.
    fn start_at(&mut self, room: &str, id: u64) {
        if let Some(last) = self.last.get_mut(room) {
            *last = (*last).max(id);
        } else if self.last.len() < ROOMS_TRACKED {
            self.last.insert(room.to_owned(), id);
        }
    }

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
    pubsub: redis::aio::PubSub,
    effects: &Receiver<Work>,
    events: &Sender<Event>,
) -> End {
    let lost = |e: redis::RedisError| End::Lost(e.to_string());
    if let Err(e) = scripts.load(&mut con).await {
        return lost(e);
    }
    let node_channel = format!("natter:node:{}", bus.node);
    let (mut sink, mut messages) = pubsub.split();
    if let Err(e) = timed(sink.subscribe(&["natter:all", node_channel.as_str()])).await {
        return lost(e);
    }
    // The rooms with members here, as before an outage; the resync that
    // follows `Up` puts this right.
    state.subscribed.clear();
    let rooms: Vec<String> = state.local.keys().cloned().collect();
    if !rooms.is_empty() {
        let channels: Vec<String> = rooms.iter().map(|r| format!("natter:room:{r}")).collect();
        if let Err(e) = timed(sink.subscribe(&channels)).await {
            return lost(e);
        }
        state.subscribed.extend(rooms);
    }
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
            Wake::Effect(Some(first)) => {
                // Whatever else the hub queued meanwhile goes along, up to
                // PIPELINE_MAX: one round trip to Redis for them all.
                let mut work = vec![first];
                while work.len() < PIPELINE_MAX {
                    match effects.try_recv() {
                        Ok(more) => work.push(more),
                        Err(_) => break,
                    }
                }
                if let Err(end) = run(bus, scripts, state, &mut con, &mut sink, work, events).await
                {
                    return end;
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

/// Does what the hub queued, in order: runs of effects that are one
/// command each go to Redis as one pipeline ([`flush`]); a history fetch
/// or a resync waits for what came before it and is done on its own.
async fn run(
    bus: &Bus,
    scripts: &Scripts,
    state: &mut State,
    con: &mut MultiplexedConnection,
    sink: &mut redis::aio::PubSubSink,
    work: Vec<Work>,
    events: &Sender<Event>,
) -> Result<(), End> {
    state.runs += 1;
    // A join replay comes in the same run as its join, or the next.
    let runs = state.runs;
    state.fresh.retain(|_, (_, run)| *run + 1 >= runs);
    let mut batch = Vec::new();
    let mut work = work.into_iter();
    while let Some(next) = work.next() {
        let lost = |e: redis::RedisError| End::Lost(e.to_string());
        match next {
            Work::History(mut fetch, outbox) => {
                if let Err(end) = flush(bus, scripts, state, con, sink, &mut batch, events).await {
                    refuse_rest(work, events).await;
                    return Err(end);
                }
                if let Scope::Room(room) = &fetch.scope {
                    if let (Some((mark, _)), Range::Before(before)) =
                        (state.fresh.remove(room), fetch.range)
                    {
                        if before <= mark {
                            fetch.range = Range::Before(mark.saturating_add(1));
                        }
                    }
                }
                if let Err(e) = history(con, &fetch, outbox.clone(), events).await {
                    deliver_whole(fetch.client, outbox, unavailable(), events);
                    refuse_rest(work, events).await;
                    return Err(lost(e));
                }
            }
            Work::Publish(Publish::Resync { nicks, members }) => {
                if let Err(end) = flush(bus, scripts, state, con, sink, &mut batch, events).await {
                    refuse_rest(work, events).await;
                    return Err(end);
                }
                state.follow(&Publish::Resync {
                    nicks: Vec::new(),
                    members: members.clone(),
                });
                let done = match listen(bus, state, con, sink, events).await {
                    Ok(()) => resync(bus, scripts, state, con, nicks, members)
                        .await
                        .map_err(lost),
                    Err(end) => Err(end),
                };
                if let Err(end) = done {
                    refuse_rest(work, events).await;
                    return Err(end);
                }
                if let Err(e) = unlisten(state, sink).await {
                    refuse_rest(work, events).await;
                    return Err(lost(e));
                }
            }
            // The hub task hands fetches over as `Work::History`, with their
            // outbox; one without cannot be answered.
            Work::Publish(Publish::History(fetch)) => {
                let refused = Remote::Refused(Publish::History(fetch));
                if events.send(Event::Cluster(refused)).await.is_err() {
                    return Err(End::Stop);
                }
            }
            Work::Publish(effect) => {
                state.follow(&effect);
                batch.push(effect);
            }
        }
    }
    flush(bus, scripts, state, con, sink, &mut batch, events).await
}

/// Refuses what was taken from the hub's queue but not done, the
/// connection having failed.
async fn refuse_rest(work: impl Iterator<Item = Work>, events: &Sender<Event>) {
    for rest in work {
        if events.send(Event::Cluster(rest.refused())).await.is_err() {
            return;
        }
    }
}

/// A call of `script` by its hash, for a pipeline (the scripts are loaded
/// when the connection is made, see [`Scripts::load`]).
fn evalsha(script: &Script) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(0);
    cmd
}

/// The one Redis command that does `effect`, or `None` for the effects
/// done on their own (a history fetch, a resync). What the bus remembers of
/// the nicknames it gives up changes here, before the command is sent.
fn command(
    bus: &Bus,
    scripts: &Scripts,
    state: &mut State,
    effect: &Publish,
) -> Option<redis::Cmd> {
    let node = bus.node.as_str();
    let mut cmd;
    match effect {
        Publish::Claim { nick, .. } => {
            cmd = evalsha(&scripts.claim);
            cmd.arg(node).arg(names::fold(nick)).arg(ms(bus.ttl));
        }
        Publish::Release { nick } => {
            let folded = names::fold(nick);
            state.owned.remove(&folded);
            cmd = evalsha(&scripts.release);
            cmd.arg(node).arg(folded);
        }
        Publish::Join { room, name, nick } => {
            let payload = json(&Wire::Join {
                node: node.to_owned(),
                room: name.clone(),
                nick: nick.clone(),
            });
            cmd = evalsha(&scripts.join);
            cmd.arg(node).arg(room).arg(name).arg(nick).arg(payload);
        }
        Publish::Part { room, nick, reason } => {
            let payload = json(&Wire::Part {
                node: node.to_owned(),
                room: room.clone(),
                nick: nick.clone(),
                reason: reason.clone(),
            });
            cmd = evalsha(&scripts.part);
            cmd.arg(node).arg(room).arg(nick).arg(payload);
        }
        Publish::Quit {
            nick,
            rooms,
            reason,
        } => {
            let folded = names::fold(nick);
            state.owned.remove(&folded);
            let payload = json(&Wire::Quit {
                node: node.to_owned(),
                nick: nick.clone(),
                reason: reason.clone(),
            });
            cmd = evalsha(&scripts.quit);
            cmd.arg(node).arg(nick).arg(folded).arg(payload).arg(rooms);
        }
        Publish::Rename {
            old,
            new,
            rooms,
            release,
        } => {
            let release = release.as_deref().map(names::fold).unwrap_or_default();
            if !release.is_empty() {
                state.owned.remove(&release);
            }
            let payload = json(&Wire::Rename {
                node: node.to_owned(),
                old: old.clone(),
                new: new.clone(),
            });
            cmd = evalsha(&scripts.rename);
            cmd.arg(node)
                .arg(old)
                .arg(new)
                .arg(release)
                .arg(payload)
                .arg(rooms);
        }
        Publish::Msg {
            room, nick, text, ..
        } => {
            let payload = json(&Wire::Msg {
                id: 0,
                node: node.to_owned(),
                room: room.clone(),
                nick: nick.clone(),
                text: text.clone(),
            });
            cmd = evalsha(&scripts.msg);
            cmd.arg(bus.floor)
                .arg(names::fold(room))
                .arg(bus.maxlen)
                .arg(nick)
                .arg(text)
                .arg(strip_id(&payload))
                .arg(node);
        }
        Publish::Evict { node: holder, nick } => {
            let payload = json(&Wire::Evict {
                node: node.to_owned(),
                nick: nick.clone(),
            });
            cmd = redis::cmd("PUBLISH");
            cmd.arg(format!("natter:node:{holder}")).arg(payload);
        }
        Publish::Moderate(moderation) => {
            let payload = json(&Wire::moderation(node, moderation.clone()));
            cmd = redis::cmd("PUBLISH");
            cmd.arg("natter:all").arg(payload);
        }
        Publish::Whisper {
            node: to_node,
            from,
            to,
            text,
            ..
        } => {
            let to_node = to_node.as_deref().unwrap_or(node);
            let payload = json(&Wire::Whisper {
                id: 0,
                node: node.to_owned(),
                from: from.clone(),
                to: to.clone(),
                text: text.clone(),
            });
            cmd = evalsha(&scripts.whisper);
            cmd.arg(bus.floor)
                .arg(to_node)
                .arg(strip_id(&payload))
                .arg(pair_key(from, to))
                .arg(bus.maxlen)
                .arg(from)
                .arg(to)
                .arg(text)
                .arg(node);
        }
        Publish::History(_) | Publish::Resync { .. } => return None,
    }
    Some(cmd)
}

/// What the hub hears of an effect Redis did: a claim's answer; `Err` if
/// the reply is not what the script returns.
fn answer(state: &mut State, effect: Publish, reply: redis::Value) -> Result<Option<Remote>, ()> {
    match effect {
        Publish::Claim { client, nick } => {
            let (won, last): (i64, String) = redis::from_redis_value(reply).map_err(|_| ())?;
            if won == 1 {
                state.owned.insert(names::fold(&nick));
            }
            Ok(Some(Remote::Claimed {
                client,
                nick,
                won: won == 1,
                last: last.parse().unwrap_or(0),
            }))
        }
        _ => Ok(None),
    }
}

/// Sends the effects of `batch` (each one command, see [`command`]) to
/// Redis as one pipeline, so that they cost one round trip together rather
/// than one each, and hands the hub the answers, in order. Redis runs one
/// connection's commands in the order they came, so ids, stream entries and
/// publications keep the order the hub queued them in. An effect Redis
/// failed, or all of them if the connection failed (one may still have
/// been done: a message then comes back once, on its channel or in the
/// catch-up), is refused, and the connection is dropped.
async fn flush(
    bus: &Bus,
    scripts: &Scripts,
    state: &mut State,
    con: &mut MultiplexedConnection,
    sink: &mut redis::aio::PubSubSink,
    batch: &mut Vec<Publish>,
    events: &Sender<Event>,
) -> Result<(), End> {
    if batch.is_empty() {
        return Ok(());
    }
    let effects = std::mem::take(batch);
    // A join that brings a room its first member here is sent once this
    // node listens to the room's channel.
    if let Err(end) = listen(bus, state, con, sink, events).await {
        for effect in effects {
            let _ = events.send(Event::Cluster(Remote::Refused(effect))).await;
        }
        return Err(end);
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for effect in &effects {
        if let Some(cmd) = command(bus, scripts, state, effect) {
            pipe.add_command(cmd);
        }
    }
    let replies: Vec<redis::RedisResult<redis::Value>> = match pipe.query_async(con).await {
        Ok(replies) => replies,
        Err(e) => {
            for effect in effects {
                if events
                    .send(Event::Cluster(Remote::Refused(effect)))
                    .await
                    .is_err()
                {
                    return Err(End::Stop);
                }
            }
            return Err(End::Lost(e.to_string()));
        }
    };
    let mut failed = None;
    let mut replies = replies.into_iter();
    for effect in effects {
        let remote = match replies.next() {
            Some(Ok(reply)) => match answer(state, effect.clone(), reply) {
                Ok(remote) => remote,
                Err(()) => {
                    failed.get_or_insert_with(|| "a script answered nonsense".to_owned());
                    Some(Remote::Refused(effect))
                }
            },
            Some(Err(e)) => {
                failed.get_or_insert_with(|| e.to_string());
                Some(Remote::Refused(effect))
            }
            None => {
                failed.get_or_insert_with(|| "a pipeline came back short".to_owned());
                Some(Remote::Refused(effect))
            }
        };
        if let Some(remote) = remote {
            if events.send(Event::Cluster(remote)).await.is_err() {
                return Err(End::Stop);
            }
        }
    }
    if let Some(why) = failed {
        return Err(End::Lost(why));
    }
    // A part that took a room's last member here is done: stop listening.
    unlisten(state, sink)
        .await
        .map_err(|e| End::Lost(e.to_string()))
}

/// Subscribes to the channel of every room that has members here and no
/// subscription yet. Messages numbered before the subscription took hold
/// are not lost: the bus reads `seq` first, subscribes, then reads the
/// room's stream after that id (once delivered, a message is not delivered
/// again, see [`State::deliver`]).
async fn listen(
    bus: &Bus,
    state: &mut State,
    con: &mut MultiplexedConnection,
    sink: &mut redis::aio::PubSubSink,
    events: &Sender<Event>,
) -> Result<(), End> {
    let lost = |e: redis::RedisError| End::Lost(e.to_string());
    let rooms: Vec<String> = state
        .local
        .keys()
        .filter(|room| !state.subscribed.contains(*room))
        .cloned()
        .collect();
    if rooms.is_empty() {
        return Ok(());
    }
    let seq: Option<String> = redis::cmd("GET")
        .arg("natter:seq")
        .query_async(con)
        .await
        .map_err(lost)?;
    let mark: u64 = seq.and_then(|s| s.parse().ok()).unwrap_or(0);
    let channels: Vec<String> = rooms.iter().map(|r| format!("natter:room:{r}")).collect();
    timed(sink.subscribe(&channels)).await.map_err(lost)?;
    for room in &rooms {
        state.subscribed.insert(room.clone());
        state.start_at(room, mark);
        state.fresh.insert(room.clone(), (mark, state.runs));
    }
    let mut pipe = redis::pipe();
    for room in &rooms {
        pipe.cmd("XRANGE")
            .arg(format!("natter:stream:{room}"))
            .arg(format!("{}-0", mark.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(CATCHUP_PER_ROOM);
    }
    let found: Vec<redis::Value> = pipe.query_async(con).await.map_err(lost)?;
    for (room, reply) in rooms.into_iter().zip(found) {
        for entry in entries(reply, CATCHUP_PER_ROOM) {
            if !state.deliver(&room, entry.id) {
                continue;
            }
            let remote = Remote::Msg {
                id: entry.id,
                room: room.clone(),
                nick: entry.nick,
                text: entry.text,
                mine: entry.node == bus.node,
            };
            if events.send(Event::Cluster(remote)).await.is_err() {
                return Err(End::Stop);
            }
        }
    }
    Ok(())
}

/// A subscription change, which fails after [`REDIS_TIMEOUT`] (the
/// command connection has its own response timeout).
async fn timed(
    change: impl std::future::Future<Output = Result<(), redis::RedisError>>,
) -> Result<(), redis::RedisError> {
    future::or(change, async {
        Timer::after(REDIS_TIMEOUT).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "a subscription timed out").into())
    })
    .await
}

/// Unsubscribes from the channel of every room that no longer has members
/// here.
async fn unlisten(
    state: &mut State,
    sink: &mut redis::aio::PubSubSink,
) -> Result<(), redis::RedisError> {
    let rooms: Vec<String> = state
        .subscribed
        .iter()
        .filter(|room| !state.local.contains_key(*room))
        .cloned()
        .collect();
    if rooms.is_empty() {
        return Ok(());
    }
    let channels: Vec<String> = rooms.iter().map(|r| format!("natter:room:{r}")).collect();
    timed(sink.unsubscribe(&channels)).await?;
    for room in rooms {
        state.subscribed.remove(&room);
    }
    Ok(())
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
    let owned: Vec<&String> = state.owned.iter().collect();
    let mut pipe = redis::pipe();
    for chunk in owned.chunks(RENEW_BATCH) {
        pipe.add_command(evalsha(&scripts.reclaim))
            .arg(node)
            .arg(ms(bus.ttl))
            .arg(chunk);
    }
    if !pipe.is_empty() {
        let taken: Vec<Vec<String>> = pipe.query_async(con).await?;
        for nick in taken.iter().flatten() {
            tracing::warn!(%nick, "a nickname held here was claimed elsewhere during an outage");
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

/// After an outage: the messages of every room with members here (whose
/// channel this node listens to) numbered after the last one this node
/// delivered there, oldest first, bounded.
async fn missed(
    state: &State,
    con: &mut MultiplexedConnection,
) -> Result<Vec<(String, Entry)>, redis::RedisError> {
    let rooms: Vec<String> = state.subscribed.iter().cloned().collect();
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
    fn the_bus_follows_this_node_s_memberships() {
        let mut state = State {
            owned: HashSet::new(),
            started: true,
            last: HashMap::new(),
            high: 0,
            local: HashMap::new(),
            subscribed: HashSet::new(),
            fresh: HashMap::new(),
            runs: 0,
        };
        let join = |room: &str, nick: &str| Publish::Join {
            room: room.into(),
            name: room.into(),
            nick: nick.into(),
        };
        state.follow(&join("#a", "Bob"));
        state.follow(&join("#a", "eve"));
        state.follow(&join("#b", "bob"));
        state.follow(&Publish::Rename {
            old: "eve".into(),
            new: "Eva".into(),
            rooms: vec!["#a".into()],
            release: Some("eve".into()),
        });
        state.follow(&Publish::Part {
            room: "#a".into(),
            nick: "BOB".into(),
            reason: String::new(),
        });
        assert_eq!(
            state.local.get("#a"),
            Some(&HashSet::from(["eva".to_owned()]))
        );
        state.follow(&Publish::Quit {
            nick: "bob".into(),
            rooms: vec!["#b".into()],
            reason: String::new(),
        });
        assert!(!state.local.contains_key("#b"), "the last member left");
        state.follow(&Publish::Resync {
            nicks: vec!["zed".into()],
            members: vec![Membership {
                room: "#c".into(),
                name: "#C".into(),
                nick: "zed".into(),
            }],
        });
        let rooms: Vec<&String> = state.local.keys().collect();
        assert_eq!(rooms, ["#c"]);
        state.start_at("#c", 7);
        state.start_at("#c", 5);
        assert!(!state.deliver("#c", 7), "caught up to 7 already");
        assert!(state.deliver("#c", 8));
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
