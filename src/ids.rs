//! Identifiers shared by the hub, the stores and the server, in a file of
//! their own so that none of them has to import another for a name.

/// Identifies a connection for its whole life; never reused by one hub.
pub type ClientId = u64;
