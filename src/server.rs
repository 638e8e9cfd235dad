//! The server: accepts connections, runs one session per connection and one
//! hub task that owns the chat's state.
//!
//! Sessions never touch each other. They send [`Event`]s to the hub task over
//! a bounded channel; the hub pushes encoded lines into each session's own
//! bounded outbox, which that session's writer drains. A client that stops
//! reading fills only its own outbox and is then disconnected.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_channel::Receiver;
use futures_lite::{future, AsyncWriteExt, FutureExt};
use smol::net::TcpListener;
use smol::{Async, Executor, Timer};

use crate::accounts::{Accounts, Reply};
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
    Account(Reply),
}

/// Lines waiting for a session's writer, and the signal that tells the
/// session the hub is done with it.
///
/// A plain queue under a mutex, with one stored waker for the writer and one
/// for the session: a push wakes the writer only when the queue goes from
/// empty to non-empty, and the writer takes everything queued in one go. The
/// hub pays a lock and an append per delivery, and an idle connection holds
/// one small allocation.
#[derive(Clone)]
pub(crate) struct SessionOutbox {
    shared: Arc<Shared>,
}

/// What the hub's end and the session's end of an outbox share.
struct Shared {
    /// The most lines the queue may hold.
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Lines not yet taken by the writer; never more than `limit`.
    lines: VecDeque<Line>,
    /// Set by the hub's `close` or when the session ends: nothing more is
    /// queued, and the writer ends once `lines` is empty.
    closed: bool,
    /// The writer, parked on an empty queue.
    writer: Option<Waker>,
    /// The session, waiting for `closed`.
    session: Option<Waker>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but a poisoned queue is
        // still a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionOutbox {
    /// A new outbox for `limit` lines, with the session's end of it.
    pub(crate) fn new(limit: usize) -> (Self, OutboxReader) {
        let shared = Arc::new(Shared {
            limit,
            state: Mutex::new(State::default()),
        });
        let reader = OutboxReader {
            shared: Arc::clone(&shared),
        };
        (Self { shared }, reader)
    }
}

impl Outbox for SessionOutbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        let waker = {
            let mut state = self.shared.state();
            if state.closed {
                return Err(Rejected::Closed);
            }
            if state.lines.len() >= self.shared.limit {
                return Err(Rejected::Full);
            }
            state.lines.push_back(Line::clone(line));
            if state.lines.len() == 1 {
                state.writer.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    fn close(&mut self) {
        let (writer, session) = {
            let mut state = self.shared.state();
            state.closed = true;
            (state.writer.take(), state.session.take())
        };
        for waker in [writer, session].into_iter().flatten() {
            waker.wake();
        }
    }
}

/// The session's end of an outbox: the writer takes lines from it, and the
/// session learns from it when the hub has closed it. Dropping it closes the
/// outbox, so the hub's next push says [`Rejected::Closed`].
pub(crate) struct OutboxReader {
    shared: Arc<Shared>,
}

impl OutboxReader {
    /// Waits for lines and takes all that are queued; `None` once the outbox
    /// is closed and empty. `batch` must be empty; it is swapped with the queue.
    pub(crate) async fn take(&self, batch: &mut VecDeque<Line>) -> Option<()> {
        future::poll_fn(|cx| {
            let mut state = self.shared.state();
            if !state.lines.is_empty() {
                std::mem::swap(&mut state.lines, batch);
                return Poll::Ready(Some(()));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            match &mut state.writer {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Waits until the hub closes the outbox.
    pub(crate) async fn closed(&self) {
        future::poll_fn(|cx| {
            let mut state = self.shared.state();
            if state.closed {
                return Poll::Ready(());
            }
            match &mut state.session {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.closed = true;
        state.lines = VecDeque::new();
        state.writer = None;
        state.session = None;
    }
}

/// How many lines the hub's inbox holds before sessions wait to send more.
const HUB_QUEUE: usize = 4096;

/// The sockets a server accepts connections on: the plain-text port, the TLS
/// port, or both. They share everything else: the hub, the limit on clients
/// and the shutdown.
pub struct Listeners {
    /// Plain text, as `nc` and `telnet` speak it (port 5555 by default).
    pub plain: Option<TcpListener>,
    /// The same protocol inside TLS (port 5556 by default), with the
    /// configuration its handshakes use.
    #[cfg(feature = "tls")]
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// HTTP for the web client (port 8080 in `natter serve`): the page, and
    /// the protocol over WebSocket on `/ws`.
    #[cfg(feature = "web")]
    pub web: Option<TcpListener>,
    /// The web client over HTTPS (port 8443 in `natter serve`).
    #[cfg(all(feature = "web", feature = "tls"))]
    pub web_tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

impl Listeners {
    /// Only a plain-text listener, what [`serve`] runs.
    pub fn plain(listener: TcpListener) -> Self {
        Self {
            plain: Some(listener),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "web")]
            web: None,
            #[cfg(all(feature = "web", feature = "tls"))]
            web_tls: None,
        }
    }
}

/// Where the listeners are, for the sentences that send a client that came
/// to the wrong one to the right one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ports {
    /// The plain-text listener's port, if there is one.
    pub(crate) plain: Option<u16>,
    /// The TLS listener's port, if there is one.
    pub(crate) tls: Option<u16>,
}

/// Runs a chat server on `listener` until `shutdown` completes, then says
/// goodbye to every client, gives their outboxes `config.shutdown_grace` to
/// drain, and returns.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(Listeners::plain(listener), config, shutdown).await
}

/// Like [`serve`], on every listener in `listeners` at once (at least one).
pub async fn serve_with(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if listeners_empty(&listeners) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no listener to serve on",
        ));
    }
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
        mute_default_secs: config.mute_default.as_secs(),
        ban_default_secs: config.ban_default.as_secs(),
    });
    let result = run(&executor, listeners, config, hub, store, shutdown).await;
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
    result
}

fn listeners_empty(listeners: &Listeners) -> bool {
    #[cfg(feature = "tls")]
    if listeners.tls.is_some() {
        return false;
    }
    #[cfg(feature = "web")]
    if listeners.web.is_some() {
        return false;
    }
    #[cfg(all(feature = "web", feature = "tls"))]
    if listeners.web_tls.is_some() {
        return false;
    }
    listeners.plain.is_none()
}

/// What every accept loop of one server shares.
struct Accepting<'a> {
    executor: &'a Arc<Executor<'static>>,
    config: Arc<Config>,
    ports: Ports,
    events: async_channel::Sender<Event>,
    /// Every session holds a clone; when all are dropped, the server knows
    /// they have ended.
    done: async_channel::Sender<()>,
    /// Live sessions on every listener, against `config.max_clients`.
    clients: Arc<AtomicUsize>,
    /// The last connection id handed out, on any listener.
    next_id: Cell<ClientId>,
    /// A descriptor held in reserve: when the process runs out, letting
    /// this one go makes room to accept the newcomer and tell it so,
    /// instead of leaving it hanging in the backlog. One for all listeners:
    /// they draw on the same process limit.
    spare: Cell<Option<std::net::UdpSocket>>,
}

impl Accepting<'_> {
    /// Keeps a spare descriptor if there is none.
    fn restock(&self) {
        let spare = self.spare.take().or_else(reserve);
        self.spare.set(spare);
    }

    /// Accepts connections on `listener` until the future is dropped,
    /// starting one session each; `tls` is set on the TLS listeners, `web`
    /// on the web client's. Nothing here waits on a peer: handshakes happen
    /// on the session's task.
    async fn accept(&self, listener: &TcpListener, tls: Option<Handshake>, web: bool) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    if let Some(spare) = self.spare.take() {
                        drop(spare);
                        if let Ok((stream, peer)) = listener.accept().await {
                            tracing::warn!(%peer, %err, "refused: out of file descriptors");
                            if tls.is_some() || web {
                                // Refusing in words would need a handshake,
                                // which must not happen in the accept loop:
                                // close at once instead of leaving the peer
                                // hanging in the backlog.
                                drop(stream);
                            } else {
                                refuse(stream.into(), self.config.max_clients).await;
                            }
                        }
                    } else {
                        // Back off instead of spinning, and keep serving the
                        // clients we have.
                        tracing::warn!(%err, "accept failed; pausing for 100 ms");
                        Timer::after(Duration::from_millis(100)).await;
                    }
                    self.restock();
                    continue;
                }
            };
            self.restock();
            let stream: Arc<Async<std::net::TcpStream>> = stream.into();
            if self.clients.load(Ordering::Relaxed) >= self.config.max_clients {
                tracing::warn!(%peer, "refused: server full");
                let max = self.config.max_clients;
                match &tls {
                    #[cfg(feature = "web")]
                    None if web => self.executor.spawn(session::refuse_web(stream)).detach(),
                    None => self.executor.spawn(refuse(stream, max)).detach(),
                    #[cfg(feature = "tls")]
                    Some(handshake) => {
                        let handshake = handshake.clone();
                        let timeout = self.config.tls_handshake_timeout;
                        self.executor
                            .spawn(session::refuse_tls(stream, handshake, timeout, max))
                            .detach();
                    }
                    #[cfg(not(feature = "tls"))]
                    Some(never) => match *never {},
                }
                continue;
            }
            let id = self.next_id.get() + 1;
            self.next_id.set(id);
            let guard = Count::new(&self.clients);
            let events = self.events.clone();
            let config = Arc::clone(&self.config);
            let done = self.done.clone();
            let ports = self.ports;
            let connection = match &tls {
                #[cfg(feature = "web")]
                None if web => session::Connection::Web(stream),
                #[cfg(all(feature = "web", feature = "tls"))]
                Some(handshake) if web => session::Connection::WebTls(stream, handshake.clone()),
                None => session::Connection::Plain(stream),
                #[cfg(feature = "tls")]
                Some(handshake) => session::Connection::Tls(stream, handshake.clone()),
                #[cfg(not(feature = "tls"))]
                Some(never) => match *never {},
            };
            self.executor
                .spawn(async move {
                    tracing::info!(id, %peer, tls = connection.is_tls(), "connected");
                    // A bug in one session must not take a worker thread (and
                    // every session on it) down with it.
                    let session = AssertUnwindSafe(session::run(
                        id, peer, connection, &config, ports, events,
                    ));
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
    }
}

/// What a TLS listener's sessions need for their handshakes.
#[cfg(feature = "tls")]
type Handshake = futures_rustls::TlsAcceptor;

/// Without TLS there are no handshakes: a type with no values.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum Handshake {}

async fn run(
    executor: &Arc<Executor<'static>>,
    listeners: Listeners,
    config: Config,
    mut hub: Hub<SessionOutbox>,
    store: Option<Store>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let plain = listeners.plain;
    #[cfg(feature = "tls")]
    let tls = listeners
        .tls
        .map(|(listener, config)| (listener, futures_rustls::TlsAcceptor::from(config)));
    #[cfg(not(feature = "tls"))]
    let tls: Option<(TcpListener, Handshake)> = None;
    #[cfg(feature = "web")]
    let web = listeners.web;
    #[cfg(not(feature = "web"))]
    let web: Option<TcpListener> = None;
    #[cfg(all(feature = "web", feature = "tls"))]
    let web_tls = listeners
        .web_tls
        .map(|(listener, config)| (listener, futures_rustls::TlsAcceptor::from(config)));
    #[cfg(not(all(feature = "web", feature = "tls")))]
    let web_tls: Option<(TcpListener, Handshake)> = None;
    let mut ports = Ports::default();
    if let Some(listener) = &plain {
        let address = listener.local_addr()?;
        ports.plain = Some(address.port());
        tracing::info!(%address, "listening");
    }
    if let Some((listener, _)) = &tls {
        let address = listener.local_addr()?;
        ports.tls = Some(address.port());
        tracing::info!(%address, "listening for TLS");
    }
    if let Some(listener) = &web {
        let url = web_url("http", listener.local_addr()?);
        tracing::info!(%url, "web client");
    }
    if let Some((listener, _)) = &web_tls {
        let url = web_url("https", listener.local_addr()?);
        tracing::info!(%url, "web client");
    }
    let (events, inbox) = async_channel::bounded(HUB_QUEUE);
    let (accounts, snapshot) = {
        let events = events.clone();
        Accounts::open(&config.accounts, move |reply| {
            // Blocks this thread (not the hub) while the hub is behind;
            // fails at once after shutdown.
            let _ = events.send_blocking(Event::Account(reply));
        })
        .map_err(io::Error::other)?
    };
    tracing::info!(
        accounts = snapshot.accounts.len(),
        bans = snapshot.bans.len(),
        "accounts loaded"
    );
    hub.load(snapshot, Timestamp::now());
    let (shutting_down, shutdown_signal) = async_channel::bounded::<()>(1);
    let hub = executor.spawn(run_hub(hub, store, accounts, inbox, shutdown_signal));
    // Every session holds a clone; when all are dropped, `all_done` ends.
    let (done, all_done) = async_channel::bounded::<()>(1);
    let clients = Arc::new(AtomicUsize::new(0));
    let accepting = Accepting {
        executor,
        config: Arc::clone(&config),
        ports,
        events,
        done,
        clients: Arc::clone(&clients),
        next_id: Cell::new(0),
        spare: Cell::new(reserve()),
    };

    let accept_plain = async {
        match &plain {
            Some(listener) => accepting.accept(listener, None, false).await,
            None => future::pending().await,
        }
    };
    let accept_tls = async {
        match &tls {
            Some((listener, handshake)) => {
                accepting
                    .accept(listener, Some(handshake.clone()), false)
                    .await
            }
            None => future::pending().await,
        }
    };
    let accept_web = async {
        match &web {
            Some(listener) => accepting.accept(listener, None, true).await,
            None => future::pending().await,
        }
    };
    let accept_web_tls = async {
        match &web_tls {
            Some((listener, handshake)) => {
                accepting
                    .accept(listener, Some(handshake.clone()), true)
                    .await
            }
            None => future::pending().await,
        }
    };
    let accept_all = future::or(
        future::or(accept_plain, accept_tls),
        future::or(accept_web, accept_web_tls),
    );
    future::or(accept_all, shutdown).await;

    tracing::info!("shutting down");
    drop((plain, tls, web, web_tls));
    drop(accepting);
    let _ = shutting_down.send(()).await;
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

/// The address a person on this machine opens for the web client: a
/// listener on every interface is reachable on loopback.
fn web_url(scheme: &str, address: std::net::SocketAddr) -> String {
    let ip = match address.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "{scheme}://{}/",
        std::net::SocketAddr::new(ip, address.port())
    )
}

/// How long the hub waits, in all, for the history store to make room
/// for one message before giving up on storing it.
const STORE_PATIENCE: Duration = Duration::from_secs(1);

/// The most queued events a tick applies before expiring registrations; with
/// more than this queued, expiry waits for a later tick.
const TICK_BACKLOG: usize = 64;

/// Applies one session event to the hub.
fn apply(hub: &mut Hub<SessionOutbox>, event: Event, now: Timestamp) {
    match event {
        Event::Connect { id, addr, outbox } => hub.connect_from(id, outbox, addr, now),
        Event::Command { id, command } => hub.command(id, command, now),
        Event::Reply { id, line } => hub.reply(id, &line, now),
        Event::Disconnect { id, reason } => hub.disconnect(id, &reason, now),
        Event::Account(reply) => hub.account(reply, now),
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
async fn hand_to_store(hub: &mut Hub<SessionOutbox>, store: &mut Store, stalled: &mut bool) {
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
    accounts: Accounts,
    inbox: Receiver<Event>,
    shutdown: Receiver<()>,
) {
    let mut tick = Timer::interval(Duration::from_secs(1));
    // Whether the history store has stopped taking messages; see
    // `hand_to_store`.
    let mut store_stalled = false;
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
            Wake::Event(event) => apply(&mut hub, event, now),
            // Registration deadlines judge clients, not the server: while the
            // hub is behind on its inbox (a registration storm), a NICK may be
            // waiting in it, so expiry waits for a calmer tick, and what is
            // queued is applied before anyone is timed out.
            Wake::Tick if inbox.len() > TICK_BACKLOG => {}
            Wake::Tick => {
                for _ in 0..TICK_BACKLOG {
                    match inbox.try_recv() {
                        Ok(event) => apply(&mut hub, event, now),
                        Err(_) => break,
                    }
                }
                hub.tick(now);
            }
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
        if let Some(store) = &mut store {
            hand_to_store(&mut hub, store, &mut store_stalled).await;
        }
    }
}
