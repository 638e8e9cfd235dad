//! [`ErrorCode`]: the stable word after `ERR`, which programs match on.

use std::fmt;

/// A stable error code, sent as the second word of an `ERR` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ErrorCode {
    /// The command needs a nickname first.
    NotRegistered,
    /// No such command.
    UnknownCommand,
    /// The command lacks an argument.
    MissingArgument,
    /// The nickname breaks the rules; the sentence ends with a valid, free one.
    NickInvalid,
    /// Someone else has the nickname; the sentence ends with a free one.
    NickTaken,
    /// The line was longer than the server's limit; the rest of it was dropped.
    LineTooLong,
    /// The line was not valid UTF-8 and was dropped.
    BadUtf8,
    /// The room does not exist, or is not a valid room name.
    NoSuchRoom,
    /// The server has as many clients as it accepts; the connection closes.
    ServerFull,
    /// No nickname was picked in time; the connection closes.
    Timeout,
    /// The bytes were not a chat client's (HTTP, TLS, SSH); the connection closes.
    NotChat,
    /// The command names a room the client is not in.
    NotInRoom,
    /// No one with that nickname is online.
    NoSuchNick,
    /// An argument does not fit the command.
    BadArgument,
    /// This server keeps no history.
    HistoryOff,
    /// The client is in as many rooms as one may be.
    TooManyRooms,
    /// The nickname is registered: `LOGIN` takes it; the last word is a free guest nickname.
    NickRegistered,
    /// `LOGIN` or `PASSWORD` with a wrong password, or a nickname that is not registered.
    LoginFailed,
    /// Too many failed logins from this address or for this account; the text says when to try again.
    LoginThrottled,
    /// `PASSWORD` without being logged in.
    NotLoggedIn,
    /// An operator command from someone who is not an operator.
    NotOperator,
    /// Talking while muted by an operator; the text says until when.
    Muted,
    /// The nickname or address is banned; the text says until when.
    Banned,
    /// An operator disconnected you.
    Kicked,
    /// The server cannot check a password right now (or is still checking your last one).
    Busy,
    /// Plain text reached the TLS port; the sentence names the plain port.
    /// The connection closes.
    NotTls,
    // Registrations per address.
    /// Too many accounts registered from this address in the last hour; the
    /// text says when the next one is possible.
    RegisterThrottled,
    // Connections per address.
    /// The address already holds as many connections as one may; the
    /// connection closes.
    TooManyConnections,
    /// The address opened too many connections too quickly; the text says
    /// when to try again. The connection closes.
    ConnectThrottled,
    // Several nodes.
    /// The command needs the cluster (Redis), which this node cannot reach
    /// right now; nothing was done.
    ClusterUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of PROTOCOL.md.
    pub const ALL: [ErrorCode; 30] = [
        ErrorCode::NotRegistered,
        ErrorCode::UnknownCommand,
        ErrorCode::MissingArgument,
        ErrorCode::NickInvalid,
        ErrorCode::NickTaken,
        ErrorCode::LineTooLong,
        ErrorCode::BadUtf8,
        ErrorCode::NoSuchRoom,
        ErrorCode::ServerFull,
        ErrorCode::Timeout,
        ErrorCode::NotChat,
        ErrorCode::NotInRoom,
        ErrorCode::NoSuchNick,
        ErrorCode::BadArgument,
        ErrorCode::HistoryOff,
        ErrorCode::TooManyRooms,
        ErrorCode::NickRegistered,
        ErrorCode::LoginFailed,
        ErrorCode::LoginThrottled,
        ErrorCode::NotLoggedIn,
        ErrorCode::NotOperator,
        ErrorCode::Muted,
        ErrorCode::Banned,
        ErrorCode::Kicked,
        ErrorCode::Busy,
        ErrorCode::NotTls,
        // Registrations per address.
        ErrorCode::RegisterThrottled,
        // Connections per address.
        ErrorCode::TooManyConnections,
        ErrorCode::ConnectThrottled,
        // Several nodes.
        ErrorCode::ClusterUnavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotRegistered => "not-registered",
            ErrorCode::UnknownCommand => "unknown-command",
            ErrorCode::MissingArgument => "missing-argument",
            ErrorCode::NickInvalid => "nick-invalid",
            ErrorCode::NickTaken => "nick-taken",
            ErrorCode::LineTooLong => "line-too-long",
            ErrorCode::BadUtf8 => "bad-utf8",
            ErrorCode::NoSuchRoom => "no-such-room",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotChat => "not-chat",
            ErrorCode::NotInRoom => "not-in-room",
            ErrorCode::NoSuchNick => "no-such-nick",
            ErrorCode::BadArgument => "bad-argument",
            ErrorCode::HistoryOff => "history-off",
            ErrorCode::TooManyRooms => "too-many-rooms",
            ErrorCode::NickRegistered => "nick-registered",
            ErrorCode::LoginFailed => "login-failed",
            ErrorCode::LoginThrottled => "login-throttled",
            ErrorCode::NotLoggedIn => "not-logged-in",
            ErrorCode::NotOperator => "not-operator",
            ErrorCode::Muted => "muted",
            ErrorCode::Banned => "banned",
            ErrorCode::Kicked => "kicked",
            ErrorCode::Busy => "busy",
            ErrorCode::NotTls => "not-tls",
            // Registrations per address.
            ErrorCode::RegisterThrottled => "register-throttled",
            // Connections per address.
            ErrorCode::TooManyConnections => "too-many-connections",
            ErrorCode::ConnectThrottled => "connect-throttled",
            // Several nodes.
            ErrorCode::ClusterUnavailable => "cluster-unavailable",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
