//! [`Timestamp`]: a time assigned by the server, as the protocol writes it.
//!
//! The only clock read in the protocol is [`Timestamp::now`], for callers at
//! the edge (the server task, the client); the pure core takes times as
//! arguments.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A time assigned by the server, with whole-second precision.
///
/// On the wire it is RFC 3339 in UTC: `2026-11-26T09:30:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to the second.
    pub fn now() -> Self {
        Self::from_unix(Utc::now().timestamp()).unwrap_or(Self(DateTime::UNIX_EPOCH))
    }

    /// The time `secs` seconds after the Unix epoch, if it is between the
    /// years 0 and 9999 (the range RFC 3339 can write).
    pub fn from_unix(secs: i64) -> Option<Self> {
        const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
        const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        if !(MIN..=MAX).contains(&secs) {
            return None;
        }
        Utc.timestamp_opt(secs, 0).single().map(Self)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    /// The time as a chrono value, for display in local time.
    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        let t = DateTime::parse_from_rfc3339(s).ok()?;
        Self::from_unix(t.timestamp())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Timestamp {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let secs = u.int_in_range(-62_167_219_200..=253_402_300_799)?;
        Self::from_unix(secs).ok_or(arbitrary::Error::IncorrectFormat)
    }
}
