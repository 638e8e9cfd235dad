//! What a session runs over: the [`Input`] and [`Output`] traits each
//! transport implements, and the [`Ports`] the sessions' sentences name.
//!
//! The traits are used generically (monomorphised), never as trait objects,
//! so the plain path pays nothing for there being other transports.

use std::collections::VecDeque;
use std::io;

use crate::protocol::Line;

/// Where a session's bytes come from: the socket itself, or what TLS
/// decrypted from it. Monomorphised, so the plain path pays nothing for
/// the choice.
pub(crate) trait Input {
    /// Waits for bytes and returns them; empty once the peer has closed.
    async fn read_some(&mut self) -> io::Result<Vec<u8>>;
}

/// Where a session's lines go: the socket itself, or TLS on top of it.
pub(crate) trait Output {
    /// Writes every line of `batch`, emptying it.
    async fn write_batch(&mut self, batch: &mut VecDeque<Line>) -> io::Result<()>;

    /// Ends the stream politely once everything is written (TLS sends its
    /// close_notify); the socket itself is shut down by the caller.
    async fn finish(&mut self) {}
}

/// Where the listeners are, for the sentences that send a client that came
/// to the wrong one to the right one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ports {
    /// The plain-text listener's port, if there is one.
    pub(crate) plain: Option<u16>,
    /// The TLS listener's port, if there is one.
    pub(crate) tls: Option<u16>,
}
