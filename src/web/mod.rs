//! The web client: the page, script, styles, icons, manifest and service
//! worker embedded in the binary, and the HTTP in front of them.
//!
//! - [`assets`]: the files of `web/`, compiled in with `include_bytes!`, each
//!   with its path and MIME type.
//! - [`http`]: the request head (bounded, parsed with `httparse`) and what to
//!   answer it with: an asset, the `/ws` upgrade, or an error status. Pure:
//!   bytes in, decisions and response bytes out, no IO, so it can be fuzzed
//!   and unit-tested on its own.
//!
//! The connection itself (reading the head under a deadline, writing the
//! answer, the WebSocket session after an upgrade) is a session transport,
//! next to plain text and TLS.

pub mod assets;
pub mod http;
