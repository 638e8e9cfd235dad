//! IP address ranges in CIDR notation (`203.0.113.0/24`, `2001:db8::/48`),
//! for bans that keep out a whole network.
//!
//! Pure: parsing, display and matching, no IO. A range is kept normalised
//! (host bits cleared, IPv4-mapped IPv6 ranges in their IPv4 form), so two
//! spellings of one range compare equal and display the same. A single
//! IPv4 address is its own /32; a single IPv6 address stands for its /64,
//! because one IPv6 host is usually handed a whole /64 and could hop
//! across it at will (an explicit `/128` still means one address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The prefix a bare IPv6 address is read with.
pub const DEFAULT_V6_PREFIX: u8 = 64;

/// A range of IP addresses: a network address and a prefix length.
///
/// Invariant: `prefix` is at most 32 for IPv4 and 128 for IPv6, the host
/// bits of `network` are zero, and an IPv6 network is never IPv4-mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before any `/` is not an IP address.
    #[error("not an IP address")]
    Address,
    /// The part after `/` is not a prefix length for that address family.
    #[error("the prefix length must be 0–32 for IPv4 and 0–128 for IPv6")]
    Prefix,
}

impl Cidr {
    /// The range of `addr`'s first `prefix` bits (clamped to the family's
    /// width), normalised.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        match addr {
            IpAddr::V4(v4) => Self::v4(v4, prefix),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // ::ffff:0:0/96 and longer are IPv4 ranges in disguise.
                Some(v4) if prefix >= 96 => Self::v4(v4, prefix - 96),
                _ => {
                    let prefix = prefix.min(128);
                    let bits = u128::from(v6) & mask128(prefix);
                    Self {
                        network: IpAddr::V6(Ipv6Addr::from(bits)),
                        prefix,
                    }
                }
            },
        }
    }

    fn v4(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let bits = u32::from(addr) & mask32(prefix);
        Self {
            network: IpAddr::V4(Ipv4Addr::from(bits)),
            prefix,
        }
    }

    /// The range that one connecting address belongs to for a ban: the
    /// address itself for IPv4, its /64 for IPv6.
    pub fn single(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            v4 @ IpAddr::V4(_) => Self::new(v4, 32),
            v6 => Self::new(v6, DEFAULT_V6_PREFIX),
        }
    }

    /// Reads `address` or `address/prefix`. Never panics.
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address)?;
        let Some(prefix) = prefix else {
            return Ok(Self::single(addr));
        };
        // Digits only: no sign, no spaces, no leading zeros beyond "0".
        if prefix.is_empty()
            || prefix.len() > 3
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(CidrError::Prefix);
        }
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::Prefix)?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > width {
            return Err(CidrError::Prefix);
        }
        Ok(Self::new(addr, prefix))
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in the range; an IPv4-mapped IPv6 address counts
    /// as its IPv4 address, and an IPv4 address as its mapped form for an
    /// IPv6 range wide enough to hold `::ffff:0:0/96` (so `::/0` is every
    /// address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                u128::from(a.to_ipv6_mapped()) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }

    /// Whether this range is one single address (/32 or /128).
    pub fn is_single_address(&self) -> bool {
        self.prefix == if self.network.is_ipv4() { 32 } else { 128 }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_are_normalised_and_displayed_with_their_prefix() {
        let net = Cidr::parse("203.0.113.77/24").unwrap();
        assert_eq!(net.to_string(), "203.0.113.0/24");
        assert_eq!(
            Cidr::parse("192.0.2.1").unwrap().to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(
            Cidr::parse("2001:db8:1:2:3:4:5:6").unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            Cidr::parse("2001:db8::1/128").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            Cidr::parse("::ffff:192.0.2.1").unwrap().to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(
            Cidr::parse("::ffff:192.0.2.0/120").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn contains_goes_by_the_prefix_and_sees_through_mapped_addresses() {
        let net = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(net.contains(ip("203.0.113.200")));
        assert!(net.contains(ip("::ffff:203.0.113.9")));
        assert!(!net.contains(ip("203.0.114.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::1").unwrap();
        assert!(v6.contains(ip("2001:db8::ffff:1")));
        assert!(!v6.contains(ip("2001:db8:0:1::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("2001:db8::1")));
        // An IPv6 range that holds the IPv4-mapped block holds IPv4 too.
        assert!(Cidr::parse("::/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::ffff:0:0/95")
            .unwrap()
            .contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("8.8.8.8")));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "",
            "/",
            "1.2.3.4/",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/+8",
            "1.2.3.4/08",
            "1.2.3.4/ 8",
            "bob",
            "1.2.3/8",
            "1.2.3.4/8/8",
            "1.2.3.4/999999",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }
}
