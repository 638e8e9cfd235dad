//! One connection's session: the transport it came in on, then the same
//! reader, writer and rate limiter for all of them.
//!
//! # Layout
//! - `transport`: the `Input`/`Output` traits a transport implements, and
//!   `Ports` for the sentences that name the listeners.
//! - `lines`: the generic session loop over any transport: reader, writer,
//!   token bucket, final flush.
//! - `plain`: the plain-text socket (the hot path), one hand-written future.
//! - `telnet`: the password prompt that turns a telnet client's echo off.
//! - `tls` (feature `tls`): the wrong-port check, the handshake under a
//!   deadline, rustls reads and buffered writes.
//! - `ws` (feature `web`): the WebSocket transport, one line per text
//!   frame, pinged; the HTTP in front of it is `server::web`.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use async_channel::Sender;
use smol::Async;

use crate::config::Config;
use crate::ids::ClientId;
use crate::server::hub_task::Event;
use transport::Ports;

pub(crate) mod lines;
pub(crate) mod plain;
mod telnet;
#[cfg(feature = "tls")]
pub(crate) mod tls;
pub(crate) mod transport;
#[cfg(feature = "web")]
pub(crate) mod ws;

/// A connection as accepted, before anything is read from it.
pub(crate) enum Connection {
    /// From the plain-text listener: the protocol straight on the socket.
    Plain(Arc<Async<TcpStream>>),
    /// From the TLS listener: the session first waits for the handshake.
    #[cfg(feature = "tls")]
    Tls(Arc<Async<TcpStream>>, futures_rustls::TlsAcceptor),
}

impl Connection {
    /// Whether this came to the TLS listener, for the log.
    pub(crate) fn is_tls(&self) -> bool {
        match self {
            Connection::Plain(_) => false,
            #[cfg(feature = "tls")]
            Connection::Tls(..) => true,
        }
    }
}

/// Who a session serves and what it answers to: made once per connection
/// by the accept loop and lent to every layer of the session.
///
/// One reference instead of separate arguments, because every nested
/// `async fn` keeps its arguments for the connection's whole life (and, as
/// rustc lays them out, twice: as received and as moved into its body);
/// five arguments through four layers were about 450 bytes of every idle
/// connection's task.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) id: ClientId,
    /// Where the connection comes from: behind the web client's trusted
    /// proxy, the visitor it forwarded for. Bans and limits go by its
    /// address; the log names it whole.
    pub(crate) peer: SocketAddr,
    pub(crate) config: Arc<Config>,
    pub(crate) ports: Ports,
    pub(crate) events: Sender<Event>,
}
