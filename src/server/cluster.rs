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
//!   microseconds and the node's own floor), adds a room message to the
//!   room's stream `stream:<room>` (trimmed to `--history-max`), and
//!   publishes it, all at once: ids are agreed by every node and only grow,
//!   and publication order is id order.
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
//! subscribes to the pattern), `natter:all` (quits, renames, dead nodes) and
//! `natter:node:<node>` (whispers to that node's users). Payloads are JSON,
//! at most [`PAYLOAD_MAX`] bytes; anything else is dropped, and what is
//! parsed is checked again by the hub.
//!
//! While Redis is unreachable the task answers every effect with
//! [`Remote::Refused`] and reconnects with back-off, doubling from 100 ms up
//! to [`BACKOFF_MAX`].

use std::collections::HashSet;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures_lite::{future, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use serde::{Deserialize, Serialize};
use smol::Timer;

use super::hub_task::Event;
use crate::hub::cluster::{Member, Publish, Remote, SNAPSHOT_MAX};
use crate::names;

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
}

/// The Lua that takes the next message id into `s`; `ARGV[1]` is the
/// node's floor.
const NEXT_ID: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', 'natter:seq') or '0') or 0
local floor = tonumber(ARGV[1]) or 0
local id = math.max(last + 1, now, floor + 1)
local s = string.format('%.0f', id)
redis.call('SET', 'natter:seq', s)
";

/// ARGV: floor, room key, stream length, nick, text, JSON without the id.
const MSG_TAIL: &str = r#"
redis.call('XADD', 'natter:stream:' .. ARGV[2], 'MAXLEN', '~', ARGV[3], '*',
  'id', s, 'nick', ARGV[4], 'text', ARGV[5])
redis.call('PUBLISH', 'natter:room:' .. ARGV[2], '{"id":' .. s .. ',' .. string.sub(ARGV[6], 2))
return s
"#;

/// ARGV: floor, recipient node, JSON without the id.
const WHISPER_TAIL: &str = r#"
redis.call('PUBLISH', 'natter:node:' .. ARGV[2], '{"id":' .. s .. ',' .. string.sub(ARGV[3], 2))
return s
"#;

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

/// ARGV: node, folded nick, TTL in ms. 1 if claimed.
const CLAIM: &str = r"
if redis.call('SET', 'natter:nick:' .. ARGV[2], ARGV[1], 'NX', 'PX', ARGV[3]) then
  redis.call('SADD', 'natter:node:' .. ARGV[1] .. ':nicks', ARGV[2])
  return 1
end
return 0
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
}

impl Scripts {
    fn new() -> Self {
        Self {
            msg: Script::new(&format!("{NEXT_ID}{MSG_TAIL}")),
            whisper: Script::new(&format!("{NEXT_ID}{WHISPER_TAIL}")),
            join: Script::new(JOIN),
            part: Script::new(PART),
            quit: Script::new(QUIT),
            rename: Script::new(RENAME),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            heartbeat: Script::new(HEARTBEAT),
            prune: Script::new(PRUNE),
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
pub(crate) async fn run_bus(bus: Bus, effects: Receiver<Publish>, events: Sender<Event>) {
    let scripts = Scripts::new();
    let client = match redis::Client::open(bus.url.as_str()) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "--cluster is not a Redis URL; every cluster command is refused");
            let _ = events.send(Event::Cluster(Remote::Down)).await;
            while let Ok(effect) = effects.recv().await {
                if events
                    .send(Event::Cluster(Remote::Refused(effect)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
    };
    let mut state = State {
        owned: HashSet::new(),
        started: false,
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
                        if events
                            .send(Event::Cluster(Remote::Refused(effect)))
                            .await
                            .is_err()
                        {
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
    effects: &Receiver<Publish>,
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
        state.started = true;
    } else {
        // Back after an outage: Redis may have restarted empty, so this
        // node's nicknames are claimed again (a claim someone else made
        // meanwhile stays theirs, and is logged).
        let owned: Vec<String> = state.owned.iter().cloned().collect();
        for folded in owned {
            let won: Result<i64, _> = scripts
                .claim
                .arg(&bus.node)
                .arg(&folded)
                .arg(ms(bus.ttl))
                .invoke_async(&mut con)
                .await;
            match won {
                Ok(1) => {}
                Ok(_) => {
                    let holder: Option<String> = redis::cmd("GET")
                        .arg(format!("natter:nick:{folded}"))
                        .query_async(&mut con)
                        .await
                        .unwrap_or(None);
                    if holder.as_deref() != Some(bus.node.as_str()) {
                        tracing::warn!(nick = %folded, "a nickname held here was claimed elsewhere during an outage");
                    }
                }
                Err(e) => return lost(e),
            }
        }
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
    let beat = (bus.ttl / 3).max(Duration::from_millis(100));
    let mut ticks = Timer::interval(beat);
    enum Wake {
        Effect(Option<Publish>),
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
            Wake::Effect(Some(effect)) => {
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
                if let Some(remote) = receive(bus, msg.get_payload_bytes()) {
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
            let won: i64 = scripts
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
                .invoke_async(con)
                .await?;
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
                from,
                to,
                text,
            });
            let _: String = scripts
                .whisper
                .arg(bus.floor)
                .arg(to_node)
                .arg(strip_id(&payload))
                .invoke_async(con)
                .await?;
            Ok(None)
        }
    }
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
    fn node_names() {
        assert_eq!(node_name(Some("n-1.x"), None), Ok("n-1.x".into()));
        assert!(node_name(Some("a:b"), None).is_err());
        assert!(node_name(Some(""), None).is_err());
        let default = node_name(None, Some(5555)).unwrap_or_default();
        assert!(default.ends_with("-5555"), "{default}");
    }
}
