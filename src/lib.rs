//! natter: a multi-user chat server you can use from `nc` or `telnet`, and a
//! terminal client for it.
//!
//! # Layout
//! - [`names`]: what a valid nickname or room name is, and suggestions.
//! - [`protocol`]: the line protocol as pure values: parse client lines, encode
//!   and parse server lines. No IO.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod names;
pub mod protocol;
