//! The server: accepts connections, runs one session per connection and one
//! hub task that owns the chat's state.
//!
//! Sessions never touch each other. They send `Event`s to the hub task over
//! a bounded channel; the hub pushes encoded lines into each session's own
//! bounded outbox, which that session's writer drains. A client that stops
//! reading fills only its own outbox and is then disconnected.
//!
//! # Layout
//! - this file: [`serve`], [`serve_with`] and [`Listeners`]; starts the
//!   worker threads, the store, the accounts thread and the hub task, runs
//!   the accept loops until shutdown, then winds down in order.
//! - `accept`: the accept loops, the count of live connections, the spare
//!   descriptor and the refusal of newcomers past the limits.
//! - `per_address`: the pure table of open connections and recent arrivals
//!   per address that the accept loops check newcomers against.
//! - `hub_task`: the `Event`s sessions send, and the task that owns the hub
//!   and hands work to the store and accounts threads.
//! - `outbox`: `SessionOutbox`, the bounded queue between the hub and one
//!   session's writer, and its reading end.
//! - `session`: one connection, over the plain, the TLS or the WebSocket
//!   transport.
//! - `web` (feature `web`): the web listener's connections: HTTP heads under
//!   a deadline, the embedded files, and the upgrade to a WebSocket session.
//! - [`metrics`]: the `--metrics-bind` listener, serving `GET /metrics`.
//!
//! Children import each other by their own paths and never this file, so
//! the module graph has no loop.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use smol::net::TcpListener;
use smol::{Executor, Timer};

use crate::accounts::thread::Accounts;
use crate::config::Config;
use crate::hub::{Hub, HubConfig};
use crate::protocol::Timestamp;
use crate::store::floor::IdFloor;
use crate::store::thread::Store;
use crate::store::HistoryMode;
#[cfg(not(all(feature = "web", feature = "tls")))]
use accept::Handshake;
use accept::{address_table, reserve, Accepting};
use hub_task::{run_hub, Backends, Event, HUB_QUEUE};
use outbox::{QueuedBytes, SessionOutbox};
use session::transport::Ports;

mod accept;
mod cluster;
mod hub_task;
pub mod listen;
pub mod metrics;
mod outbox;
mod per_address;
mod session;
#[cfg(feature = "web")]
mod web;

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
    // No sender: nothing is ever reloaded.
    let (_, reloads) = async_channel::bounded(1);
    serve_reloadable(listeners, config, reloads, shutdown).await
}

/// What a reload changes in a running server besides the TLS certificate,
/// which [`crate::tls::CertSwap`] changes on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The welcome text newcomers get from now on (see `Config::motd`).
    Motd(Vec<String>),
}

/// Like [`serve_with`], applying each [`Reload`] from `reloads` while it
/// runs (`natter serve` sends them on SIGHUP).
pub async fn serve_reloadable(
    listeners: Listeners,
    config: Config,
    reloads: async_channel::Receiver<Reload>,
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

    let (store, stored_id) =
        Store::open(&config.history, config.retention).map_err(io::Error::other)?;
    let (ids, last_msg_id) = open_id_floor(&config, stored_id);
    let hub = Hub::with_config(HubConfig {
        register_timeout_secs: config.register_timeout.as_secs(),
        max_rooms: config.max_rooms,
        history: store.is_some(),
        replay: config.replay,
        last_msg_id,
        mute_default_secs: config.mute_default.as_secs(),
        ban_default_secs: config.ban_default.as_secs(),
        motd: config.motd.clone().into(),
        registrations_per_hour: config.registrations_per_hour,
        registration_addresses: config.registration_addresses,
        big_room: config.big_room,
        cluster: config.cluster.is_some(),
    });
    let result = run(
        &executor,
        listeners,
        config,
        (hub, last_msg_id),
        store,
        ids,
        (reloads, shutdown),
    )
    .await;
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
    result
}

/// The id floor in the configured directory (or beside the SQLite
/// history), and the id new ones start above; without either, no floor and
/// ids from the clock alone, above the highest one stored.
fn open_id_floor(config: &Config, stored_id: u64) -> (Option<IdFloor>, u64) {
    let dir = match (&config.id_floor_dir, &config.history) {
        (Some(dir), _) | (None, HistoryMode::Sqlite(dir)) => dir,
        (None, _) => return (None, stored_id),
    };
    let (floor, last) = IdFloor::open(dir, stored_id);
    (Some(floor), last)
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

/// Starts the hub task and the accounts thread, accepts on every listener
/// (passing on `reloads`) until `shutdown`, then winds everything down in
/// order. The two come as a pair: what the outside world tells a running
/// server.
async fn run(
    executor: &Arc<Executor<'static>>,
    listeners: Listeners,
    config: Config,
    (mut hub, last_msg_id): (Hub<SessionOutbox>, u64),
    store: Option<Store>,
    ids: Option<IdFloor>,
    (reloads, shutdown): (async_channel::Receiver<Reload>, impl Future<Output = ()>),
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
        // Blocks this thread (not the hub) while the hub is behind; fails
        // at once after shutdown.
        let reply = move |reply| {
            let _ = events.send_blocking(Event::Account(reply));
        };
        match &config.cluster {
            Some(url) => Accounts::open_shared(&config.accounts, config.accounts_wait, url, reply),
            None => Accounts::open_with(&config.accounts, config.accounts_wait, reply),
        }
        .map_err(io::Error::other)?
    };
    tracing::info!(
        accounts = snapshot.accounts.len(),
        bans = snapshot.bans.len(),
        "accounts loaded"
    );
    hub.load(snapshot, Timestamp::now());
    let bans = hub.address_bans();
    let (bus, bus_task) = match &config.cluster {
        Some(url) => {
            let node = cluster::node_name(config.node_id.as_deref(), ports.plain.or(ports.tls))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            tracing::info!(%node, "one node of a cluster");
            let (publish, effects) = async_channel::bounded(cluster::BUS_QUEUE);
            let task = executor.spawn(cluster::run_bus(
                cluster::Bus {
                    url: url.clone(),
                    node,
                    ttl: config.node_ttl,
                    floor: last_msg_id,
                    maxlen: config.retention.max_per_room.unwrap_or(100_000),
                },
                effects,
                events.clone(),
            ));
            (Some(publish), Some(task))
        }
        None => (None, None),
    };
    let (shutting_down, shutdown_signal) = async_channel::bounded::<()>(1);
    let hub = executor.spawn(run_hub(
        hub,
        Backends {
            store,
            ids,
            accounts,
            bus,
        },
        QueuedBytes::new(config.outbox_total_bytes),
        inbox,
        events.clone(),
        shutdown_signal,
        config.presence_interval,
    ));
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
        bans,
        addresses: address_table(&config),
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
    // Reloads go to the hub as events, in their place among the others.
    let reload_events = accepting.events.clone();
    let reloading = async move {
        while let Ok(Reload::Motd(motd)) = reloads.recv().await {
            let _ = reload_events.send(Event::Motd(motd.into())).await;
        }
        future::pending().await
    };
    future::or(future::or(accept_all, reloading), shutdown).await;

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
    // The bus takes this node's users out of the cluster as it stops.
    if let Some(task) = bus_task {
        future::or(
            async {
                task.await;
            },
            async {
                Timer::after(Duration::from_secs(3)).await;
            },
        )
        .await;
    }
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
