//! The accept loops: one per listener, sharing the count of live
//! connections, the connection ids and one spare descriptor.
//!
//! Nothing here waits on a peer. Each accepted connection gets its own
//! task (a TLS handshake happens there, never here); a newcomer past
//! `Config::max_clients` is refused in words on a task of its own too.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncWriteExt, FutureExt};
use smol::net::TcpListener;
use smol::{Async, Executor, Timer};

use super::hub_task::Event;
use super::session::transport::Ports;
use super::session::{self, Connection};
#[cfg(feature = "web")]
use super::web;
use crate::config::Config;
use crate::ids::ClientId;
use crate::protocol::{ErrorCode, ServerLine};

/// What every accept loop of one server shares.
pub(super) struct Accepting<'a> {
    pub(super) executor: &'a Arc<Executor<'static>>,
    pub(super) config: Arc<Config>,
    pub(super) ports: Ports,
    pub(super) events: async_channel::Sender<Event>,
    /// Every session holds a clone; when all are dropped, the server knows
    /// they have ended.
    pub(super) done: async_channel::Sender<()>,
    /// Live sessions on every listener, against `config.max_clients`.
    pub(super) clients: Arc<AtomicUsize>,
    /// The last connection id handed out, on any listener.
    pub(super) next_id: Cell<ClientId>,
    /// A descriptor held in reserve: when the process runs out, letting
    /// this one go makes room to accept the newcomer and tell it so,
    /// instead of leaving it hanging in the backlog. One for all listeners:
    /// they draw on the same process limit.
    pub(super) spare: Cell<Option<std::net::UdpSocket>>,
}

impl Accepting<'_> {
    /// Keeps a spare descriptor if there is none.
    fn restock(&self) {
        let spare = self.spare.take().or_else(reserve);
        self.spare.set(spare);
    }

    /// Accepts connections on `listener` until the future is dropped,
    /// starting one session each; `tls` is set on the TLS listeners, `web`
    /// on the web client's. Nothing here waits on a peer: handshakes (TLS,
    /// HTTP) happen on the session's task.
    pub(super) async fn accept(&self, listener: &TcpListener, tls: Option<Handshake>, web: bool) {
        // Built without the web client, no listener is one.
        #[cfg(not(feature = "web"))]
        let _ = web;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    if let Some(spare) = self.spare.take() {
                        drop(spare);
                        if let Ok((stream, peer)) = listener.accept().await {
                            tracing::warn!(%peer, %err, "refused: out of file descriptors");
                            crate::metrics::refused(crate::metrics::Refusal::OutOfDescriptors);
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
                crate::metrics::refused(crate::metrics::Refusal::ServerFull);
                let max = self.config.max_clients;
                match &tls {
                    #[cfg(feature = "web")]
                    None if web => self.executor.spawn(web::refuse(stream)).detach(),
                    None => self.executor.spawn(refuse(stream, max)).detach(),
                    #[cfg(feature = "tls")]
                    Some(handshake) => {
                        let handshake = handshake.clone();
                        let timeout = self.config.tls_handshake_timeout;
                        self.executor
                            .spawn(session::tls::refuse(
                                stream,
                                handshake,
                                timeout,
                                refusal(max),
                            ))
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
            let accepted = match &tls {
                #[cfg(all(feature = "web", feature = "tls"))]
                _ if web => Accepted::Web(stream, tls.clone()),
                // Without TLS, no listener has a handshake.
                #[cfg(all(feature = "web", not(feature = "tls")))]
                _ if web => Accepted::Web(stream, None),
                None => Accepted::Session(Connection::Plain(stream)),
                #[cfg(feature = "tls")]
                Some(handshake) => Accepted::Session(Connection::Tls(stream, handshake.clone())),
                #[cfg(not(feature = "tls"))]
                Some(never) => match *never {},
            };
            self.executor
                .spawn(async move {
                    tracing::info!(id, %peer, tls = accepted.is_tls(), web = accepted.is_web(), "connected");
                    let _open = crate::metrics::connected(accepted.is_tls(), accepted.is_web());
                    // A bug in one session must not take a worker thread (and
                    // every session on it) down with it.
                    let session = AssertUnwindSafe(async move {
                        match accepted {
                            Accepted::Session(connection) => {
                                session::run(id, peer, connection, &config, ports, events).await
                            }
                            #[cfg(feature = "web")]
                            Accepted::Web(stream, tls) => {
                                web::run(id, peer, stream, tls, &config, ports, &events).await
                            }
                        }
                    });
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

/// A connection as accepted: a chat session straight away, or (on a web
/// listener) HTTP first.
enum Accepted {
    /// From the plain or the TLS listener.
    Session(Connection),
    /// From a web listener, with the TLS handshake it needs first, if any.
    #[cfg(feature = "web")]
    Web(Arc<Async<std::net::TcpStream>>, Option<web::Acceptor>),
}

impl Accepted {
    /// Whether this came to a TLS listener, for the log.
    fn is_tls(&self) -> bool {
        match self {
            Accepted::Session(connection) => connection.is_tls(),
            #[cfg(feature = "web")]
            Accepted::Web(_, tls) => tls.is_some(),
        }
    }

    /// Whether this came to a web listener, for the log.
    fn is_web(&self) -> bool {
        match self {
            Accepted::Session(_) => false,
            #[cfg(feature = "web")]
            Accepted::Web(..) => true,
        }
    }
}

/// What a TLS listener's sessions need for their handshakes.
#[cfg(feature = "tls")]
pub(super) type Handshake = futures_rustls::TlsAcceptor;

/// Without TLS there are no handshakes: a type with no values.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(super) enum Handshake {}

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
pub(super) fn reserve() -> Option<std::net::UdpSocket> {
    std::net::UdpSocket::bind(("127.0.0.1", 0)).ok()
}

/// What a newcomer past the limit on clients is told, on either port (in
/// plain text, or inside TLS): why, and goodbye.
fn refusal(max: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    ServerLine::Err {
        code: ErrorCode::ServerFull,
        text: format!("The server is full ({max} clients); please try again later."),
    }
    .encode(&mut bytes);
    ServerLine::Bye("Sorry!".into()).encode(&mut bytes);
    bytes
}

/// Tells a newcomer on the plain port the server is full, politely and
/// briefly, and closes.
async fn refuse(stream: Arc<Async<std::net::TcpStream>>, max: usize) {
    let bytes = refusal(max);
    let write = async {
        let _ = (&*stream).write_all(&bytes).await;
    };
    future::or(write, async {
        Timer::after(Duration::from_secs(1)).await;
    })
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}
