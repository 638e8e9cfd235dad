//! natter: a multi-user chat server you can use from `nc` or `telnet`, and a
//! terminal client for it.
//!
//! # Layout
//! The pure core (no files, sockets, threads or clock reads) is `ids`,
//! `protocol`, `names`, `text`, `decoder`, `limiter`, `web`, `config`, `hub` and the plain
//! data at the root of `accounts` and `store`; everything else is the IO
//! side above it (ARCHITECTURE.md says more).
//! - [`accounts`]: registered nicknames (argon2id password hashes) and bans
//!   in SQLite or memory, on a thread of their own, and `natter admin`.
//! - [`mod@bench`]: `natter bench`, a load generator: many real clients against
//!   a server in this process or another, measuring throughput, latency,
//!   memory per connection and churn.
//! - [`cidr`]: IP address ranges (`203.0.113.0/24`) for bans. No IO.
//! - [`cli`]: the `natter` command line: flags per subcommand, turned into
//!   the options above and run; `src/main.rs` only calls [`cli::run`].
//! - [`client`]: the chat client without a UI: a self-healing connection on
//!   its own thread and a pure model of what the user sees.
//! - [`config`]: the server's limits, each with a `natter serve` flag.
//! - [`decoder`]: raw peer bytes to lines: framing, telnet, line editing and
//!   limits. No IO.
//! - [`hub`]: the one owner of the chat's state: clients, nicknames, who
//!   hears what. A state machine without IO, fed events by the server.
//! - [`ids`]: `ClientId`, the one name the hub, the stores and the server
//!   share.
//! - [`limiter`]: failed-login limits per address and per account. No IO.
//! - [`metrics`]: the counters and gauges `GET /metrics` shows, in the
//!   Prometheus text format. IO side: the server counts into it.
//! - [`names`]: what a valid nickname or room name is, and suggestions.
//! - [`protocol`]: the line protocol as pure values: parse client lines, encode
//!   and parse server lines. No IO.
//! - [`server`]: the accept loop, the hub task and each connection's
//!   session (reader and writer); [`server::serve`] runs a server on a
//!   ready listener until a shutdown future completes.
//! - [`store`]: chat history in SQLite or memory, written in batches on its
//!   own thread.
//! - [`text`]: helpers for the sentences natter writes.
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
pub mod cidr;
pub mod cli;
pub mod client;
pub mod config;
pub mod decoder;
pub mod hub;
pub mod ids;
pub mod limiter;
pub mod metrics;
pub mod names;
pub mod protocol;
pub mod server;
pub mod store;
pub mod text;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tui")]
pub mod tui;
#[cfg(feature = "web")]
pub mod web;
