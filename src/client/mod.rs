//! The chat client without a user interface: a connection that keeps itself
//! alive and a model of what a person sees.
//!
//! - [`connection`]: a TCP connection on its own thread. It registers the
//!   nickname, turns server lines into [`Event`]s, sends [`Outgoing`] commands,
//!   and when the connection drops it reconnects with back-off and registers
//!   the nickname again.
//! - [`model`]: a pure state machine fed those events: the bounded scrollback,
//!   the sorted user list, your nickname, the connection state, input history,
//!   Tab completion and mention detection. No IO, no clock (callers pass the
//!   time), no terminal.
//!
//! The terminal client ([`crate::tui`]) is a thin layer over these two; tests
//! drive them directly against a real server.
//!
//! ```no_run
//! use natter::client::{Connection, Model, Settings};
//! use natter::protocol::Timestamp;
//!
//! let (tx, rx) = std::sync::mpsc::channel();
//! let conn = Connection::start(Settings::new("127.0.0.1:5555", "alice"), move |event| {
//!     let _ = tx.send(event);
//! })?;
//! let mut model = Model::new("127.0.0.1:5555", "alice", 10_000);
//! // Typing a line: the model decides what to send and echoes it locally.
//! if let natter::client::Action::Send(out) = model.submit("hello", Timestamp::now()).action {
//!     conn.send(out);
//! }
//! for event in rx.iter().take(3) {
//!     model.apply(event, Timestamp::now());
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod connection;
pub mod model;

pub use connection::{Backoff, ConnState, Connection, Event, Outgoing, Settings};
pub use model::{
    Action, Changes, Entry, EntryKind, Model, NickPrompt, Scrollback, Submitted, SystemKind,
    DEFAULT_SCROLLBACK,
};
