//! The hub task: the one owner of the [`Hub`], fed [`Event`]s by the
//! sessions and the accounts thread through one bounded inbox.
//!
//! It applies events in order, expires unregistered connections once a
//! second, hands history work to the store thread and password checks and
//! ban changes to the accounts thread, and says goodbye to everyone on
//! shutdown. It never waits on a client; it waits on the disk only when the
//! store falls far behind (see [`STORE_PATIENCE`]), or when the id floor's
//! writer has not reserved the id a message needs (see [`ID_PATIENCE`]).

use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures_lite::future;
use smol::Timer;

use super::outbox::{QueuedBytes, SessionOutbox};
use crate::accounts::thread::Accounts;
use crate::accounts::Answer;
use crate::hub::cluster::{Publish, Remote};
use crate::hub::history::history_line;
use crate::hub::outbox::{Outbox, Rejected};
use crate::hub::Hub;
use crate::ids::ClientId;
use crate::ids::UNRESERVED;
use crate::protocol::{encode, Command, Line, ServerLine, Timestamp};
use crate::store::floor::{now_micros, IdFloor};
use crate::store::thread::Store;
use crate::store::Fetch;

/// How many events the hub's inbox holds before sessions wait to send more.
pub(crate) const HUB_QUEUE: usize = 4096;

/// What sessions tell the hub task.
pub(crate) enum Event {
    /// A connection was accepted; the hub greets it through `outbox`.
    Connect {
        /// The connection.
        id: ClientId,
        /// Where it comes from: bans and failed-login limits go by address.
        addr: std::net::IpAddr,
        /// Where its lines go.
        outbox: SessionOutbox,
    },
    /// A parsed command from a connection.
    Command {
        /// The connection.
        id: ClientId,
        /// What it asked.
        command: Command,
    },
    /// A line for the connection itself (an error about its input, a telnet
    /// reply), passed through the hub so it keeps its place among the
    /// hub's answers.
    Reply {
        /// The connection.
        id: ClientId,
        /// The encoded line.
        line: Line,
    },
    /// The connection ended; `reason` is shown to others if it was registered.
    Disconnect {
        /// The connection.
        id: ClientId,
        /// Why, in words.
        reason: String,
    },
    /// The accounts thread answered (a password check, a reload).
    Account(Answer),
    /// The cluster bus says what happened on the other nodes.
    Cluster(Remote),
    /// The operator reloaded the welcome text (see [`super::Reload`]).
    Motd(std::sync::Arc<[String]>),
}

/// How long the hub waits, in all, for the history store to make room
/// for one message before giving up on storing it.
const STORE_PATIENCE: Duration = Duration::from_secs(1);

/// How long the hub waits for the id floor's writer to reserve the id a
/// message needs, before refusing the message (`ERR busy`). A healthy disk
/// takes milliseconds, and the writer is asked a second ahead, so this is
/// reached only on a disk that hangs.
const ID_PATIENCE: Duration = Duration::from_millis(500);

/// The most queued events a tick applies before expiring registrations; with
/// more than this queued, expiry waits for a later tick.
const TICK_BACKLOG: usize = 64;

/// Applies one session event to the hub.
fn apply(hub: &mut Hub<SessionOutbox>, queued: &Arc<QueuedBytes>, event: Event, now: Timestamp) {
    count(&event);
    match event {
        Event::Connect { id, addr, outbox } => {
            outbox.count_in(queued);
            hub.connect_from(id, outbox, addr, now)
        }
        Event::Command { id, command } => hub.command(id, command, now),
        Event::Reply { id, line } => hub.reply(id, &line, now),
        Event::Disconnect { id, reason } => hub.disconnect(id, &reason, now),
        Event::Account(reply) => hub.account(reply, now),
        Event::Cluster(remote) => hub.cluster(remote, now),
        Event::Motd(motd) => hub.set_motd(motd),
    }
}

/// What the hub task hands the bus.
pub(crate) enum Work {
    /// An effect the hub queued.
    Publish(Publish),
    /// A room history fetch ([`Publish::History`]), with the outbox the
    /// answer goes to.
    History(Fetch, SessionOutbox),
}

impl Work {
    /// What to tell the hub when this cannot be done.
    pub(crate) fn refused(self) -> Remote {
        match self {
            Work::Publish(publish) => Remote::Refused(publish),
            Work::History(fetch, _) => Remote::Refused(Publish::History(fetch)),
        }
    }
}

/// Gives the cluster bus what the hub queued for it; what its full queue
/// refuses is answered `ERR cluster-unavailable` at once. The hub never
/// waits for Redis.
///
/// A room history fetch goes with the asker's outbox: the bus answers it
/// from the room's stream straight into it, as the store does.
fn hand_to_bus(hub: &mut Hub<SessionOutbox>, bus: Option<&Sender<Work>>, now: Timestamp) {
    let Some(bus) = bus else {
        return;
    };
    for publish in hub.take_published() {
        let work = match publish {
            Publish::History(fetch) => match hub.outbox(fetch.client).cloned() {
                Some(outbox) => Work::History(fetch, outbox),
                None => continue,
            },
            publish => Work::Publish(publish),
        };
        if let Err(err) = bus.try_send(work) {
            match err.into_inner() {
                Work::Publish(publish) => hub.cluster_refused(publish, now),
                Work::History(fetch, _) => hub.cluster_refused(Publish::History(fetch), now),
            }
        }
    }
}

/// Counts what the metrics count in the events the hub is given: chat
/// messages, and the answers to password checks.
fn count(event: &Event) {
    match event {
        Event::Command {
            command: Command::Msg { .. } | Command::Whisper { .. },
            ..
        } => crate::metrics::message(),
        Event::Account(Answer::LoggedIn { .. }) => crate::metrics::password_checked(true),
        Event::Account(Answer::WrongPassword { .. }) => crate::metrics::password_checked(false),
        _ => {}
    }
}

/// Gives the accounts thread what the hub queued for it; a request its full
/// queue refuses is answered "busy" at once.
fn hand_to_accounts(hub: &mut Hub<SessionOutbox>, accounts: &Accounts, now: Timestamp) {
    for request in hub.take_requests() {
        if let Err(request) = accounts.try_send(request) {
            hub.refused(request, now);
        }
    }
}

/// Gives the store what the hub queued: messages to keep, and history to
/// fetch, whose answer goes straight into the asking client's outbox.
///
/// When the disk falls behind, the hub waits for it (up to
/// [`STORE_PATIENCE`] per message) instead of dropping history: meanwhile
/// its bounded inbox fills and the senders slow down to the disk's pace.
///
/// `stalled` remembers that the disk did not move for a whole
/// [`STORE_PATIENCE`]: until it takes a message again, messages it has no
/// room for are dropped at once (and logged), so a hung disk slows the chat
/// for one second, not for a second per message.
///
/// `events` is the hub's own inbox, through which a history answer that
/// overflows its client's outbox gets the client removed.
async fn hand_to_store(
    hub: &mut Hub<SessionOutbox>,
    store: &mut Store,
    stalled: &mut bool,
    events: &Sender<Event>,
) {
    for record in hub.take_records() {
        let mut record = record;
        let mut waited = Duration::ZERO;
        loop {
            match store.try_append(record) {
                Ok(()) => {
                    *stalled = false;
                    break;
                }
                Err(back) if *stalled || waited >= STORE_PATIENCE => {
                    *stalled = true;
                    store.drop_record(back);
                    break;
                }
                Err(back) => {
                    Timer::after(Duration::from_millis(1)).await;
                    waited += Duration::from_millis(1);
                    record = back;
                }
            }
        }
    }
    for fetch in hub.take_fetches() {
        let Some(outbox) = hub.outbox(fetch.client).cloned() else {
            continue;
        };
        let Fetch {
            client,
            scope,
            range,
            count,
            target,
            ..
        } = fetch;
        let events = events.clone();
        store.fetch(
            scope,
            range,
            count,
            Box::new(move |records| {
                let end = ServerLine::HistoryEnd {
                    target,
                    count: u32::try_from(records.len()).unwrap_or(u32::MAX),
                };
                let lines = records
                    .iter()
                    .map(|record| encode(&history_line(record, Timestamp::now())))
                    .chain([encode(&end)]);
                deliver_whole(client, outbox, lines, &events);
            }),
        );
    }
}

/// Before a chat message is applied: if no id is reserved for it, has one
/// reserved and waits for the writer, up to [`ID_PATIENCE`]. `stalled`
/// remembers what was on disk when the writer did not answer in time, so
/// that a hung disk costs the chat one wait, not one per message, until it
/// moves again.
async fn reserve_an_id(
    hub: &mut Hub<SessionOutbox>,
    ids: Option<&IdFloor>,
    event: &Event,
    stalled: &mut Option<u64>,
) {
    let Some(ids) = ids else {
        return;
    };
    let chat = matches!(
        event,
        Event::Command {
            command: Command::Msg { .. } | Command::Whisper { .. },
            ..
        }
    );
    if !chat || hub.can_number() {
        return;
    }
    if *stalled == Some(ids.durable()) {
        return;
    }
    let mut waited = Duration::ZERO;
    loop {
        if let Some(upto) = hub.take_id_reservation() {
            ids.reserve(upto);
        }
        hub.clock_ids(now_micros(), ids.durable());
        if hub.can_number() {
            *stalled = None;
            return;
        }
        if waited >= ID_PATIENCE {
            tracing::warn!("the id floor is not written in time: refusing messages");
            *stalled = Some(ids.durable());
            return;
        }
        Timer::after(Duration::from_millis(1)).await;
        waited += Duration::from_millis(1);
    }
}

/// Why a client whose outbox overflowed is gone, as the hub says it.
pub(crate) const OVERFLOW: &str = "too slow: stopped reading";

/// Pushes a history answer into `outbox`, on the store's thread: all of it,
/// ending with `HIST END`, or, if the outbox overflows on the way, the
/// client is dropped like any client whose outbox overflows (the hub
/// removes it and tells the others it was too slow), so that no one is
/// left with a cut-off replay and no end to it.
pub(crate) fn deliver_whole(
    client: ClientId,
    mut outbox: SessionOutbox,
    lines: impl Iterator<Item = Line>,
    events: &Sender<Event>,
) {
    for line in lines {
        match outbox.push(&line) {
            Ok(()) => {}
            Err(Rejected::Closed) => return,
            Err(Rejected::Full) => {
                // The hub removes the client and announces why; closing
                // the outbox at once keeps anything else from following
                // the cut-off answer. Should the hub's inbox be full, the
                // session reports the close itself.
                let _ = events.try_send(Event::Disconnect {
                    id: client,
                    reason: OVERFLOW.into(),
                });
                outbox.close();
                return;
            }
        }
    }
}

/// The threads the hub task hands work to: history, the id floor's writer
/// and accounts.
pub(crate) struct Backends {
    /// The history store, unless history is off.
    pub(crate) store: Option<Store>,
    /// The id floor's writer, if ids are kept across restarts.
    pub(crate) ids: Option<IdFloor>,
    /// The accounts thread.
    pub(crate) accounts: Accounts,
    /// The cluster bus, in cluster mode.
    pub(crate) bus: Option<Sender<Work>>,
}

/// The hub task: applies events in order, expires unregistered connections
/// once a second, and says goodbye to everyone on shutdown. `events` is the
/// sending end of `inbox`, for answers that come back from other threads.
pub(crate) async fn run_hub(
    mut hub: Hub<SessionOutbox>,
    backends: Backends,
    queued: Arc<QueuedBytes>,
    inbox: Receiver<Event>,
    events: Sender<Event>,
    shutdown: Receiver<()>,
    presence_interval: Duration,
) {
    let Backends {
        mut store,
        ids,
        accounts,
        bus,
    } = backends;
    let mut tick = Timer::interval(Duration::from_secs(1));
    // Big rooms' JOINS and PARTS; flushed even while events queue up (a
    // join storm is when they matter), so this timer is polled before the
    // inbox.
    let mut presence = Timer::interval(presence_interval);
    // Whether the history store has stopped taking messages; see
    // `hand_to_store`.
    let mut store_stalled = false;
    // What the id floor held when its writer last failed to keep up; see
    // `reserve_an_id`.
    let mut ids_stalled = None;
    enum Wake {
        Event(Event),
        Tick,
        Presence,
        Shutdown,
    }
    loop {
        // `or` polls its first future first: shutdown and the tick must not
        // starve behind a flood of events.
        let wake = future::or(
            async {
                let _ = shutdown.recv().await;
                Wake::Shutdown
            },
            future::or(
                async {
                    futures_lite::StreamExt::next(&mut tick).await;
                    Wake::Tick
                },
                future::or(
                    async {
                        futures_lite::StreamExt::next(&mut presence).await;
                        Wake::Presence
                    },
                    async {
                        match inbox.recv().await {
                            Ok(event) => Wake::Event(event),
                            Err(_) => Wake::Shutdown,
                        }
                    },
                ),
            ),
        )
        .await;
        let now = Timestamp::now();
        hub.clock_ids(
            now_micros(),
            ids.as_ref().map_or(UNRESERVED, IdFloor::durable),
        );
        match wake {
            Wake::Event(event) => {
                reserve_an_id(&mut hub, ids.as_ref(), &event, &mut ids_stalled).await;
                apply(&mut hub, &queued, event, now);
            }
            // Registration deadlines judge clients, not the server: while the
            // hub is behind on its inbox (a registration storm), a NICK may be
            // waiting in it, so expiry waits for a calmer tick, and what is
            // queued is applied before anyone is timed out.
            Wake::Tick if inbox.len() > TICK_BACKLOG => {}
            Wake::Tick => {
                for _ in 0..TICK_BACKLOG {
                    match inbox.try_recv() {
                        Ok(event) => {
                            reserve_an_id(&mut hub, ids.as_ref(), &event, &mut ids_stalled).await;
                            apply(&mut hub, &queued, event, now);
                        }
                        Err(_) => break,
                    }
                }
                hub.tick(now);
                crate::metrics::hub_sizes(hub.account_count(), hub.room_count());
            }
            Wake::Presence => hub.flush_presence(now),
            Wake::Shutdown => {
                hub.shutdown("The server is shutting down. See you soon!");
                // The accounts thread may be waiting to hand the hub an
                // answer: closing the inbox releases it, and it then stores
                // the last ban changes and stops.
                inbox.close();
                hand_to_accounts(&mut hub, &accounts, now);
                accounts.close();
                if let Some(store) = store {
                    // Writes the last batch before the process ends.
                    store.close();
                }
                return;
            }
        }
        hand_to_accounts(&mut hub, &accounts, now);
        hand_to_bus(&mut hub, bus.as_ref(), now);
        if let (Some(upto), Some(ids)) = (hub.take_id_reservation(), &ids) {
            ids.reserve(upto);
        }
        if let Some(store) = &mut store {
            hand_to_store(&mut hub, store, &mut store_stalled, &events).await;
        }
    }
}
