//! natter: a multi-user chat server you can use from `nc` or `telnet`, and a
//! terminal client for it.
//!
//! # Layout
//! - [`accounts`]: registered nicknames (argon2id password hashes) and bans
//!   in SQLite or memory, on a thread of their own, and `natter admin`.
//! - [`mod@bench`]: `natter bench`, a load generator: many real clients against
//!   a server in this process or another, measuring throughput, latency,
//!   memory per connection and churn.
//! - [`client`]: the chat client without a UI: a self-healing connection on
//!   its own thread and a pure model of what the user sees.
//! - [`config`]: the server's limits, each with a `natter serve` flag.
//! - [`decoder`]: raw peer bytes to lines: framing, telnet, line editing and
//!   limits. No IO.
//! - [`hub`]: the one owner of the chat's state: clients, nicknames, who
//!   hears what. A state machine without IO, fed events by the server.
//! - [`limiter`]: failed-login limits per address and per account. No IO.
//! - [`names`]: what a valid nickname or room name is, and suggestions.
//! - [`protocol`]: the line protocol as pure values: parse client lines, encode
//!   and parse server lines. No IO.
//! - [`server`]: the accept loop and the hub task; [`server::serve`] runs a
//!   server on a ready listener until a shutdown future completes.
//! - `session`: one connection's reader and writer.
//! - [`store`]: chat history in SQLite or memory, written in batches on its
//!   own thread.
//! - `tls`: certificate fingerprints, PEM loading and self-signed
//!   certificates, for the TLS listener and clients (feature `tls`).
//! - [`tui`]: the Cursive terminal client (feature `tui`, on by default).
//! - [`web`]: the web client's embedded files and the HTTP in front of them
//!   (feature `web`, on by default); its WebSocket sessions are a session
//!   transport.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub use config::Config;
pub use server::serve;

pub mod accounts;
pub mod bench;
pub mod client;
pub mod config;
pub mod decoder;
pub mod hub;
pub mod limiter;
pub mod names;
pub mod protocol;
pub mod server;
mod session;
pub mod store;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tui")]
pub mod tui;
#[cfg(feature = "web")]
pub mod web;
