//! The server: accepts connections, runs one session per connection and one
//! hub task that owns the chat's state.
//!
//! Sessions never touch each other. They send [`Event`]s to the hub task over
//! a bounded channel; the hub pushes encoded lines into each session's own
//! bounded outbox, which that session's writer drains. A client that stops
//! reading fills only its own outbox and is then disconnected.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures_lite::{future, AsyncWriteExt, FutureExt};
use smol::net::TcpListener;
use smol::{Async, Executor, Timer};

use crate::config::Config;
use crate::hub::{self, ClientId, Fetch, Hub, HubConfig, Line, Outbox, Rejected};
use crate::protocol::{Command, ErrorCode, ServerLine, Timestamp};
use crate::session;
use crate::store::Store;

/// What sessions tell the hub task.
pub(crate) enum Event {
    /// A connection was accepted; the hub greets it through `outbox`.
    Connect {
        /// The connection.
        id: ClientId,
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
}

/// Lines waiting for a session's writer, and the signal that tells the
/// session the hub is done with it.
#[derive(Clone)]
pub(crate) struct SessionOutbox {
    /// Drained by the writer; bounded by `limit`, checked on every push.
    lines: Sender<Line>,
    /// The most lines `lines` may hold.
    limit: usize,
    /// Never carries a value; closing it wakes the session.
    closed: Sender<()>,
}

impl SessionOutbox {
    /// A new outbox for `limit` lines, with the writer's and the session's
    /// ends of it.
    pub(crate) fn new(limit: usize) -> (Self, Receiver<Line>, Receiver<()>) {
        // Unbounded underneath, bounded by the length check in `push`: a
        // bounded channel would allocate all `limit` slots up front, for
        // every idle connection.
        let (lines, lines_rx) = async_channel::unbounded();
        let (closed, closed_rx) = async_channel::bounded(1);
        let outbox = Self {
            lines,
            limit,
            closed,
        };
        (outbox, lines_rx, closed_rx)
    }
}

impl Outbox for SessionOutbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        if self.lines.len() >= self.limit {
            return Err(Rejected::Full);
        }
        self.lines
            .try_send(Line::clone(line))
            .map_err(|_| Rejected::Closed)
    }

    fn close(&mut self) {
        self.lines.close();
        self.closed.close();
    }
}

/// How many lines the hub's inbox holds before sessions wait to send more.
const HUB_QUEUE: usize = 4096;

/// Runs a chat server on `listener` until `shutdown` completes, then says
/// goodbye to every client, gives their outboxes `config.shutdown_grace` to
/// drain, and returns.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let executor = Arc::new(Executor::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let executor = Arc::clone(&executor);
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("natter-{i}"))
                .spawn(move || future::block_on(executor.run(stopped.recv())))
        })
        .collect::<io::Result<_>>()?;

    let (store, last_msg_id) =
        Store::open(&config.history, config.retention).map_err(io::Error::other)?;
    let hub = Hub::with_config(HubConfig {
        register_timeout_secs: config.register_timeout.as_secs(),
        max_rooms: config.max_rooms,
        history: store.is_some(),
        replay: config.replay,
        last_msg_id,
    });
    let result = run(&executor, listener, config, hub, store, shutdown).await;
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
    result
}

async fn run(
    executor: &Arc<Executor<'static>>,
    listener: TcpListener,
    config: Config,
    hub: Hub<SessionOutbox>,
    store: Option<Store>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    tracing::info!(address = %listener.local_addr()?, "listening");
    let (events, inbox) = async_channel::bounded(HUB_QUEUE);
    let (shutting_down, shutdown_signal) = async_channel::bounded::<()>(1);
    let hub = executor.spawn(run_hub(hub, store, inbox, shutdown_signal));
    // Every session holds a clone; when all are dropped, `all_done` ends.
    let (done, all_done) = async_channel::bounded::<()>(1);
    let clients = Arc::new(AtomicUsize::new(0));

    let accept = async {
        let mut next_id: ClientId = 0;
        // A descriptor held in reserve: when the process runs out, letting
        // this one go makes room to accept the newcomer and tell it so,
        // instead of leaving it hanging in the backlog.
        let mut spare = reserve();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    if spare.take().is_some() {
                        if let Ok((stream, peer)) = listener.accept().await {
                            tracing::warn!(%peer, %err, "refused: out of file descriptors");
                            refuse(stream.into(), config.max_clients).await;
                        }
                    } else {
                        // Back off instead of spinning, and keep serving the
                        // clients we have.
                        tracing::warn!(%err, "accept failed; pausing for 100 ms");
                        Timer::after(Duration::from_millis(100)).await;
                    }
                    spare = spare.or_else(reserve);
                    continue;
                }
            };
            spare = spare.or_else(reserve);
            let stream: Arc<Async<std::net::TcpStream>> = stream.into();
            if clients.load(Ordering::Relaxed) >= config.max_clients {
                tracing::warn!(%peer, "refused: server full");
                executor.spawn(refuse(stream, config.max_clients)).detach();
                continue;
            }
            next_id += 1;
            let id = next_id;
            let guard = Count::new(&clients);
            let events = events.clone();
            let config = Arc::clone(&config);
            let done = done.clone();
            executor
                .spawn(async move {
                    tracing::info!(id, %peer, "connected");
                    // A bug in one session must not take a worker thread (and
                    // every session on it) down with it.
                    let session = AssertUnwindSafe(session::run(id, stream, &config, events));
                    match session.catch_unwind().await {
                        Ok(reason) => tracing::info!(id, %peer, %reason, "disconnected"),
                        Err(_) => {
                            tracing::error!(id, %peer, "session panicked; connection dropped")
                        }
                    }
                    drop((guard, done));
                })
                .detach();
        }
    };
    future::or(accept, shutdown).await;

    tracing::info!("shutting down");
    drop(listener);
    drop(events);
    let _ = shutting_down.send(()).await;
    drop(done);
    let grace = config.shutdown_grace + Duration::from_millis(500);
    let drained = future::or(async { all_done.recv().await.is_err() }, async {
        Timer::after(grace).await;
        false
    })
    .await;
    if !drained {
        tracing::warn!(
            left = clients.load(Ordering::Relaxed),
            "some clients did not take their last lines in time"
        );
    }
    // The hub task writes the last history batch as it stops.
    future::or(
        async {
            hub.await;
        },
        async {
            Timer::after(Duration::from_secs(2)).await;
        },
    )
    .await;
    Ok(())
}

/// Gives the store what the hub queued: messages to keep, and history to
/// fetch, whose answer goes straight into the asking client's outbox.
fn hand_to_store(hub: &mut Hub<SessionOutbox>, store: &mut Store) {
    for record in hub.take_records() {
        store.append(record);
    }
    for fetch in hub.take_fetches() {
        let Some(outbox) = hub.outbox(fetch.client).cloned() else {
            continue;
        };
        let Fetch {
            scope,
            range,
            count,
            target,
            ..
        } = fetch;
        store.fetch(
            scope,
            range,
            count,
            Box::new(move |records| {
                let mut outbox = outbox;
                for record in &records {
                    let _ = outbox.push(&hub::encode(&hub::history_line(record)));
                }
                let end = ServerLine::HistoryEnd {
                    target,
                    count: u32::try_from(records.len()).unwrap_or(u32::MAX),
                };
                let _ = outbox.push(&hub::encode(&end));
            }),
        );
    }
}

/// Counts a live session; the count goes down when it is dropped.
struct Count(Arc<AtomicUsize>);

impl Count {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A descriptor to give back when the process has no other: any small
/// socket will do.
fn reserve() -> Option<std::net::UdpSocket> {
    std::net::UdpSocket::bind(("127.0.0.1", 0)).ok()
}

/// Tells a newcomer the server is full, politely and briefly, and closes.
async fn refuse(stream: Arc<Async<std::net::TcpStream>>, max: usize) {
    let mut bytes = Vec::new();
    ServerLine::Err {
        code: ErrorCode::ServerFull,
        text: format!("The server is full ({max} clients); please try again later."),
    }
    .encode(&mut bytes);
    ServerLine::Bye("Sorry!".into()).encode(&mut bytes);
    let write = async {
        let _ = (&*stream).write_all(&bytes).await;
    };
    future::or(write, async {
        Timer::after(Duration::from_secs(1)).await;
    })
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

/// The hub task: applies events in order, expires unregistered connections
/// once a second, and says goodbye to everyone on shutdown.
async fn run_hub(
    mut hub: Hub<SessionOutbox>,
    mut store: Option<Store>,
    inbox: Receiver<Event>,
    shutdown: Receiver<()>,
) {
    let mut tick = Timer::interval(Duration::from_secs(1));
    enum Wake {
        Event(Event),
        Tick,
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
                async {
                    match inbox.recv().await {
                        Ok(event) => Wake::Event(event),
                        Err(_) => Wake::Shutdown,
                    }
                },
            ),
        )
        .await;
        let now = Timestamp::now();
        match wake {
            Wake::Event(Event::Connect { id, outbox }) => hub.connect(id, outbox, now),
            Wake::Event(Event::Command { id, command }) => hub.command(id, command, now),
            Wake::Event(Event::Reply { id, line }) => hub.reply(id, &line, now),
            Wake::Event(Event::Disconnect { id, reason }) => hub.disconnect(id, &reason, now),
            Wake::Tick => hub.tick(now),
            Wake::Shutdown => {
                hub.shutdown("The server is shutting down. See you soon!");
                if let Some(store) = store {
                    // Writes the last batch before the process ends.
                    store.close();
                }
                return;
            }
        }
        if let Some(store) = &mut store {
            hand_to_store(&mut hub, store);
        }
    }
}
