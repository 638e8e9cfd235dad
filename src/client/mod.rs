//! The chat client without a user interface: a connection that keeps itself
//! alive and a model of what a person sees.
//!
//! - [`connection`]: a TCP connection on its own thread. It registers the
//!   nickname, turns server lines into [`Event`]s, sends [`Outgoing`] commands,
//!   and when the connection drops it reconnects with back-off, registers
//!   the nickname again and joins the same rooms.
//! - [`model`]: a pure state machine fed those events: one [`Pane`] per room
//!   and private conversation, which one is shown, your nickname, the
//!   connection state. It also says which history requests to send (after a
//!   reconnection, when scrolling past the top). No IO, no clock (callers
//!   pass the time), no terminal. Its methods are spread over
//!   [`inbound`] (server lines in, mention detection), [`input`] (typed
//!   lines and slash commands) and [`recall`] (input history, Tab
//!   completion); [`words`] holds the sentences it writes.
//! - [`pane`]: one conversation's bounded scrollback, kept in message-id
//!   order without duplicates, and its unread count.
//! - `tls` (feature `tls`): [`TlsOptions`], which certificates a TLS
//!   connection trusts, and the handshake and record IO under the
//!   connection's threads.
//!
//! The terminal client ([`crate::tui`]) is a thin layer over these; tests
//! drive them directly against a real server.
//!
//! ```no_run
//! use natter::client::{Action, Connection, Model, Settings};
//! use natter::protocol::Timestamp;
//!
//! let (tx, rx) = std::sync::mpsc::channel();
//! let conn = Connection::start(Settings::new("127.0.0.1:5555", "alice"), move |event| {
//!     let _ = tx.send(event);
//! })?;
//! let mut model = Model::new("127.0.0.1:5555", "alice", 10_000);
//! // Typing a line: the model decides what to send and echoes it locally.
//! if let Action::Send(out) = model.submit("hello", Timestamp::now()).action {
//!     conn.send(out);
//! }
//! for event in rx.iter().take(3) {
//!     // The model may ask for history on its own behalf.
//!     for request in model.apply(event, Timestamp::now()).requests {
//!         conn.send(request);
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod connection;
pub mod inbound;
pub mod input;
pub mod model;
pub mod pane;
pub mod recall;
#[cfg(feature = "tls")]
pub mod tls;
pub mod words;

pub use connection::{Backoff, ConnState, Connection, Event, Outgoing, Settings};
pub use model::{
    Action, Changes, Model, NickPrompt, Submitted, DEFAULT_SCROLLBACK, MAX_PRIVATE, MAX_ROOMS,
};
pub use pane::{Entry, EntryKind, Pane, Scrollback, SystemKind, Target};
#[cfg(feature = "tls")]
pub use tls::{TlsError, TlsOptions, DEFAULT_TLS_PORT};
