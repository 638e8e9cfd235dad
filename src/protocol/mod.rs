//! The natter line protocol, version 1.1: pure values and their text form.
//!
//! Nothing here does IO. A client line (already framed and decoded by
//! [`crate::decoder`]) becomes a [`Command`] with [`parse_command`]; a
//! [`ServerLine`] becomes bytes with [`ServerLine::encode`] and, on the client
//! side, comes back with [`ServerLine::parse`]. Encoding is the exact inverse of
//! parsing for every value that [`ServerLine::is_wire_safe`] accepts; the
//! property tests and the fuzzers hold us to that. PROTOCOL.md is the normative
//! description; this module is its executable form.
//!
//! # Layout
//! - `command`: client lines: [`Command`], the [`Verb`]s, [`parse_command`]
//!   and [`CommandError`].
//! - `server_line`: server lines: [`ServerLine`] with its encoding and
//!   parsing, and [`Line`], a line encoded once and shared.
//! - `error_code`: [`ErrorCode`], the stable second word of an `ERR` line.
//! - `time`: [`Timestamp`], a server time on the wire.
//! - `secret`: [`Secret`], a password kept out of `Debug` output.
//!
//! The children import each other by their own paths, never through this
//! module, so the re-exports below close no loop.

mod command;
mod error_code;
mod secret;
mod server_line;
#[cfg(test)]
mod tests;
mod time;

pub use command::{
    parse_command, parse_duration, Command, CommandError, HistoryQuery, Verb, HISTORY_DEFAULT,
    HISTORY_MAX,
};
pub use error_code::ErrorCode;
pub use secret::Secret;
pub use server_line::{encode, is_clean, Line, ModAction, ServerLine, ServerLineError};
pub use time::Timestamp;

/// The protocol name and version the server announces in its greeting.
pub const PROTOCOL_VERSION: &str = "natter/1.1";

/// The room every user is in. Version 1 has no other.
pub const LOBBY: &str = "#lobby";
