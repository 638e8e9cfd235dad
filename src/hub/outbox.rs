//! [`Outbox`]: where the hub puts a client's lines, and [`Rejected`], why it
//! could not. The server's implementation is a bounded queue; the tests' and
//! fuzzers' are plain vectors.

use crate::protocol::Line;

/// Why an outbox refused a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The client has not read what it was sent and its queue is at its limit.
    #[error("outbox full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Where the hub puts lines for one client. The server's implementation is a
/// bounded queue drained by the client's writer task. Rooms hold clones, so
/// a broadcast goes straight from a room to its members' outboxes.
pub trait Outbox: Clone {
    /// Queues a line for the client, or says why it cannot.
    fn push(&mut self, line: &Line) -> Result<(), Rejected>;
    /// Queues a line that many outboxes hold at once (a big room's member
    /// list and its presence deltas, encoded once per flush): it counts
    /// against this client's bound, but not again as memory of the
    /// server's, which it costs once whoever holds it.
    fn push_shared(&mut self, line: &Line) -> Result<(), Rejected> {
        self.push(line)
    }
    /// Nothing more will be queued: the connection closes once the queued
    /// lines are written.
    fn close(&mut self);
}
