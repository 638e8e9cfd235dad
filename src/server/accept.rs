//! The accept loops: one per listener, sharing the count of live
//! connections, the connection ids and one spare descriptor.
//!
//! Nothing here waits on a peer. Each accepted connection gets its own
//! task (a TLS handshake happens there, never here). A newcomer is checked
//! before anything else is done for it, in this order: address bans, the
//! per-address limits (`Config::max_per_address`, `Config::connect_rate`),
//! `Config::max_clients`; one that is refused is told why on a task of its
//! own too, as is one accepted on the spare descriptor.

use std::cell::Cell;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::{future, AsyncWriteExt, FutureExt};
use smol::net::TcpListener;
use smol::{Async, Executor, Timer};

use super::hub_task::Event;
use super::per_address::{AddressSlot, AddressTable, Limits, Refusal};
use super::session::transport::Ports;
use super::session::{self, Connection, Session};
#[cfg(feature = "web")]
use super::web;
use crate::accounts::AddressBans;
use crate::config::Config;
use crate::hub::ban_refusal;
use crate::ids::ClientId;
use crate::protocol::{ErrorCode, ServerLine, Timestamp};
#[cfg(feature = "web")]
use crate::web::http::Status;

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
    /// The address bans in force, kept up to date by the hub.
    pub(super) bans: AddressBans,
    /// Open connections and recent arrivals per address, against
    /// `config.max_per_address` and `config.connect_rate`.
    pub(super) addresses: Arc<Mutex<AddressTable>>,
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
                    self.accept_failed(listener, &tls, web, err).await;
                    continue;
                }
            };
            self.restock();
            let stream: Arc<Async<std::net::TcpStream>> = stream.into();
            if let Some(bytes) = ban_refusal(&self.bans, peer.ip(), Timestamp::now()) {
                tracing::warn!(%peer, "refused: banned address");
                crate::metrics::refused(crate::metrics::Refusal::Banned);
                self.turn_away(stream, &tls, web, bytes, Refused::Banned);
                continue;
            }
            // A web listener's file requests pay only for being open; behind
            // the trusted proxy, nothing is counted until the request says
            // whose it is (see `AddressSlot::become_session`).
            let counted = if web && self.config.web_trust_proxy == Some(peer.ip()) {
                Ok(AddressSlot::unclaimed(&self.addresses))
            } else {
                AddressSlot::take(&self.addresses, peer.ip(), !web)
            };
            #[cfg_attr(not(feature = "web"), allow(unused_mut))]
            let mut slot = match counted {
                Ok(slot) => slot,
                Err(refused) => {
                    tracing::warn!(%peer, ?refused, "refused: per-address limit");
                    crate::metrics::refused(match refused {
                        Refusal::TooMany => crate::metrics::Refusal::TooManyConnections,
                        Refusal::TooFast(_) => crate::metrics::Refusal::ConnectThrottled,
                    });
                    let bytes = address_refusal(refused, self.config.max_per_address);
                    self.turn_away(stream, &tls, web, bytes, Refused::Limited);
                    continue;
                }
            };
            if self.clients.load(Ordering::Relaxed) >= self.config.max_clients {
                tracing::warn!(%peer, "refused: server full");
                crate::metrics::refused(crate::metrics::Refusal::ServerFull);
                self.turn_away(
                    stream,
                    &tls,
                    web,
                    refusal(self.config.max_clients),
                    Refused::Full,
                );
                continue;
            }
            let id = self.next_id.get() + 1;
            self.next_id.set(id);
            let guard = Count::new(&self.clients);
            let done = self.done.clone();
            let session = Session {
                id,
                peer,
                config: Arc::clone(&self.config),
                ports: self.ports,
                events: self.events.clone(),
            };
            let accepted = match &tls {
                #[cfg(all(feature = "web", feature = "tls"))]
                _ if web => Accepted::Web(web::Newcomer {
                    stream,
                    tls: tls.clone(),
                    // The session owns its place from here on.
                    slot: std::mem::replace(&mut slot, AddressSlot::unclaimed(&self.addresses)),
                }),
                // Without TLS, no listener has a handshake.
                #[cfg(all(feature = "web", not(feature = "tls")))]
                _ if web => Accepted::Web(web::Newcomer {
                    stream,
                    tls: None,
                    // The session owns its place from here on.
                    slot: std::mem::replace(&mut slot, AddressSlot::unclaimed(&self.addresses)),
                }),
                None => Accepted::Session(Connection::Plain(stream)),
                #[cfg(feature = "tls")]
                Some(handshake) => Accepted::Session(Connection::Tls(stream, handshake.clone())),
                #[cfg(not(feature = "tls"))]
                Some(never) => match *never {},
            };
            self.executor
                .spawn(async move {
                    tracing::info!(
                        id = session.id,
                        peer = %session.peer,
                        tls = accepted.is_tls(),
                        web = accepted.is_web(),
                        "connected"
                    );
                    let _open = crate::metrics::connected(accepted.is_tls(), accepted.is_web());
                    // A bug in one session must not take a worker thread (and
                    // every session on it) down with it.
                    let session = &session;
                    let serve = AssertUnwindSafe(async move {
                        match accepted {
                            // The plain transport is the common case and
                            // small; the TLS one carries a handshake and rustls
                            // state several times its size, so it is boxed, and
                            // a plain connection's task pays only for its own.
                            Accepted::Session(Connection::Plain(stream)) => {
                                session::plain::run(session, stream).await
                            }
                            #[cfg(feature = "tls")]
                            Accepted::Session(Connection::Tls(stream, acceptor)) => {
                                Box::pin(session::tls::run(session, stream, acceptor)).await
                            }
                            #[cfg(feature = "web")]
                            Accepted::Web(newcomer) => {
                                // Boxed: the HTTP and TLS state is ten times a plain
                                // session's, and every task would be sized for it.
                                Box::pin(web::run(session, newcomer)).await
                            }
                        }
                    });
                    match serve.catch_unwind().await {
                        Ok(reason) => tracing::info!(
                            id = session.id,
                            peer = %session.peer,
                            %reason,
                            "disconnected"
                        ),
                        Err(_) => tracing::error!(
                            id = session.id,
                            peer = %session.peer,
                            "session panicked; connection dropped"
                        ),
                    }
                    drop((guard, slot, done));
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
    Web(web::Newcomer),
}

impl Accepted {
    /// Whether this came to a TLS listener, for the log.
    fn is_tls(&self) -> bool {
        match self {
            Accepted::Session(connection) => connection.is_tls(),
            #[cfg(feature = "web")]
            Accepted::Web(newcomer) => newcomer.tls.is_some(),
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

impl Accepting<'_> {
    /// Deals with a failed `accept`. Out of descriptors (EMFILE, ENFILE),
    /// the spare one is let go to accept the newcomer and refuse it in
    /// words, on a task of its own; with no spare left, or short of kernel
    /// memory (ENOBUFS, ENOMEM), the loop pauses instead of spinning. Any
    /// other error (a peer that gave up in the backlog, ECONNABORTED, a
    /// firewall's EPERM) concerns that one peer: it is logged and the loop
    /// goes on at once.
    async fn accept_failed(
        &self,
        listener: &TcpListener,
        tls: &Option<Handshake>,
        web: bool,
        err: io::Error,
    ) {
        match accept_error_kind(&err) {
            AcceptError::OutOfDescriptors => match self.spare.take() {
                Some(spare) => {
                    drop(spare);
                    if let Ok((stream, peer)) = listener.accept().await {
                        tracing::warn!(%peer, %err, "refused: out of file descriptors");
                        crate::metrics::refused(crate::metrics::Refusal::OutOfDescriptors);
                        let bytes = refusal(self.config.max_clients);
                        self.turn_away(stream.into(), tls, web, bytes, Refused::Full);
                    }
                }
                None => {
                    tracing::warn!(%err, "accept failed; pausing for 100 ms");
                    Timer::after(RESOURCE_PAUSE).await;
                }
            },
            AcceptError::OutOfMemory => {
                tracing::warn!(%err, "accept failed; pausing for 100 ms");
                Timer::after(RESOURCE_PAUSE).await;
            }
            AcceptError::Peer => tracing::info!(%err, "accept failed; going on"),
        }
        self.restock();
    }

    /// Writes `bytes` (an `ERR` and a `BYE`) to a newcomer and closes it, on
    /// a task of its own: in plain text, or inside TLS after a handshake. A
    /// plain web listener answers in HTTP instead, as a browser expects.
    fn turn_away(
        &self,
        stream: Arc<Async<std::net::TcpStream>>,
        tls: &Option<Handshake>,
        web: bool,
        bytes: Vec<u8>,
        why: Refused,
    ) {
        #[cfg(not(feature = "web"))]
        let _ = (web, why);
        match tls {
            #[cfg(feature = "web")]
            None if web => {
                let status = match why {
                    Refused::Banned => Status::Forbidden,
                    Refused::Limited => Status::TooManyRequests,
                    Refused::Full => Status::Unavailable,
                };
                self.executor.spawn(web::refuse(stream, status)).detach()
            }
            None => self.executor.spawn(refuse(stream, bytes)).detach(),
            #[cfg(feature = "tls")]
            Some(handshake) => {
                let handshake = handshake.clone();
                let timeout = self.config.tls_handshake_timeout;
                self.executor
                    .spawn(session::tls::refuse(stream, handshake, timeout, bytes))
                    .detach();
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        }
    }
}

/// Why a newcomer is turned away, for the status a web listener answers.
#[derive(Clone, Copy)]
enum Refused {
    /// Its address is banned.
    Banned,
    /// The address holds or opens too many connections.
    Limited,
    /// The server is full (or out of descriptors).
    Full,
}

/// How long the accept loop pauses when the system is short of a resource
/// that closing connections gives back: long enough not to spin, short
/// enough that newcomers wait little once it is back.
const RESOURCE_PAUSE: Duration = Duration::from_millis(100);

/// What a failed `accept` means for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// The process or the system has no descriptor left.
    OutOfDescriptors,
    /// The kernel is short of memory for sockets.
    OutOfMemory,
    /// Something about one peer; the next accept may well succeed.
    Peer,
}

/// Sorts an `accept` error by what the loop should do about it.
#[cfg(unix)]
fn accept_error_kind(err: &io::Error) -> AcceptError {
    use rustix::io::Errno;
    match Errno::from_io_error(err) {
        Some(Errno::MFILE | Errno::NFILE) => AcceptError::OutOfDescriptors,
        Some(Errno::NOBUFS | Errno::NOMEM) => AcceptError::OutOfMemory,
        _ => AcceptError::Peer,
    }
}

/// Sorts an `accept` error by what the loop should do about it: Winsock's
/// codes for the same conditions (WSAEMFILE, WSAENOBUFS).
#[cfg(not(unix))]
fn accept_error_kind(err: &io::Error) -> AcceptError {
    const WSAEMFILE: i32 = 10024;
    const WSAENOBUFS: i32 = 10055;
    match err.raw_os_error() {
        Some(WSAEMFILE) => AcceptError::OutOfDescriptors,
        Some(WSAENOBUFS) => AcceptError::OutOfMemory,
        _ => AcceptError::Peer,
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

/// The per-address table `config` asks for.
pub(super) fn address_table(config: &Config) -> Arc<Mutex<AddressTable>> {
    Arc::new(Mutex::new(AddressTable::new(Limits {
        max_open: config.max_per_address,
        per_minute: config.connect_rate,
        burst: config.connect_burst,
        capacity: config.address_table,
    })))
}

/// A descriptor to give back when the process has no other: any small
/// socket will do.
pub(super) fn reserve() -> Option<std::net::UdpSocket> {
    std::net::UdpSocket::bind(("127.0.0.1", 0)).ok()
}

/// What a newcomer past the limit on clients is told, on either port (in
/// plain text, or inside TLS): why, and goodbye.
fn refusal(max: usize) -> Vec<u8> {
    goodbye(
        ErrorCode::ServerFull,
        format!("The server is full ({max} clients); please try again later."),
    )
}

/// An `ERR` with `code` and `text`, then `BYE`: what every refused newcomer
/// is sent.
fn goodbye(code: ErrorCode, text: String) -> Vec<u8> {
    let mut bytes = Vec::new();
    ServerLine::Err { code, text }.encode(&mut bytes);
    ServerLine::Bye("Sorry!".into()).encode(&mut bytes);
    bytes
}

/// What a newcomer refused by the per-address limits is told: why, and
/// goodbye.
fn address_refusal(refused: Refusal, max: usize) -> Vec<u8> {
    let (code, text) = match refused {
        Refusal::TooMany => (
            ErrorCode::TooManyConnections,
            format!("Your address already has {max} connections open; close one and try again."),
        ),
        Refusal::TooFast(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            (
                ErrorCode::ConnectThrottled,
                format!("Too many new connections from your address; try again in {secs} s."),
            )
        }
    };
    goodbye(code, text)
}

/// Tells a newcomer on the plain port why it is refused (`bytes`),
/// politely and briefly, and closes.
async fn refuse(stream: Arc<Async<std::net::TcpStream>>, bytes: Vec<u8>) {
    let write = async {
        let _ = (&*stream).write_all(&bytes).await;
    };
    future::or(write, async {
        Timer::after(Duration::from_secs(1)).await;
    })
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: rustix::io::Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.raw_os_error())
    }

    #[test]
    fn only_running_out_of_descriptors_uses_the_spare() {
        use rustix::io::Errno;
        assert_eq!(
            accept_error_kind(&os(Errno::MFILE)),
            AcceptError::OutOfDescriptors
        );
        assert_eq!(
            accept_error_kind(&os(Errno::NFILE)),
            AcceptError::OutOfDescriptors
        );
        assert_eq!(
            accept_error_kind(&os(Errno::NOBUFS)),
            AcceptError::OutOfMemory
        );
        assert_eq!(
            accept_error_kind(&os(Errno::NOMEM)),
            AcceptError::OutOfMemory
        );
        for peer in [Errno::CONNABORTED, Errno::PROTO, Errno::PERM, Errno::INTR] {
            assert_eq!(accept_error_kind(&os(peer)), AcceptError::Peer, "{peer:?}");
        }
        let not_os = io::Error::other("not from the system");
        assert_eq!(accept_error_kind(&not_os), AcceptError::Peer);
    }
}
