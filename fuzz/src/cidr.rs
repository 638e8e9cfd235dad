//! Properties of [`Cidr`], the address ranges bans are written in.
//!
//! The input is read twice. As text (lossy UTF-8), for [`Cidr::parse`]:
//! - parsing never panics;
//! - a parsed range displays as `network/prefix`, and that text parses back
//!   to the same range (display is canonical: parsing it again changes
//!   nothing);
//! - the prefix fits the family (at most 32 for IPv4, 128 for IPv6), the
//!   host bits of the network are zero, and an IPv6 network is never
//!   IPv4-mapped (those ranges are kept in their IPv4 form).
//!
//! And as bytes, for a range built from values: byte 0 is a prefix length
//! (any `u8`, which [`Cidr::new`] clamps), byte 1 picks the family of the
//! range's address and of a probe address (IPv4, IPv6, or IPv4-mapped
//! IPv6), and the rest fill the two addresses. Then:
//! - a range contains the address it was made from, and [`Cidr::single`]
//!   of an address contains it;
//! - [`Cidr::contains`] agrees with a reference written independently: both
//!   addresses as 128-bit IPv6 (IPv4 as IPv4-mapped), compared on the
//!   range's first `prefix` bits (plus 96 for an IPv4 range);
//! - the range round-trips through its display too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use natter::cidr::Cidr;

/// Checks everything on `data`.
pub fn check(data: &[u8]) {
    check_text(&String::from_utf8_lossy(data));
    check_values(data);
}

/// Checks [`Cidr::parse`] on `text`.
pub fn check_text(text: &str) {
    if let Ok(range) = Cidr::parse(text) {
        check_range(&range);
    }
}

/// The invariants of one range, and its round trip through display.
fn check_range(range: &Cidr) {
    let shown = range.to_string();
    assert_eq!(
        shown,
        format!("{}/{}", range.network(), range.prefix()),
        "{range:?} displays oddly"
    );
    let again = Cidr::parse(&shown).unwrap_or_else(|e| panic!("{shown:?} does not parse: {e}"));
    assert_eq!(again, *range, "{shown:?} parses to another range");
    let width = match range.network() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(v6) => {
            assert!(
                v6.to_ipv4_mapped().is_none() || range.prefix() < 96,
                "{range:?} is an IPv4 range kept as IPv6"
            );
            128
        }
    };
    assert!(range.prefix() <= width, "{range:?}: prefix too long");
    assert_eq!(
        Cidr::new(range.network(), range.prefix()),
        *range,
        "{range:?}: host bits set"
    );
    assert!(
        range.contains(range.network()),
        "{range:?} does not contain its own network address"
    );
}

/// Checks ranges built from values against the reference [`covers`].
pub fn check_values(data: &[u8]) {
    let prefix = data.first().copied().unwrap_or(0);
    let families = data.get(1).copied().unwrap_or(0);
    let rest = data.get(2..).unwrap_or(&[]);
    let addr = address(families % 3, rest);
    let probe = address(families / 3 % 3, rest.get(16..).unwrap_or(&[]));
    let range = Cidr::new(addr, prefix);
    check_range(&range);
    assert!(range.contains(addr), "{range:?} does not contain {addr}");
    let single = Cidr::single(addr);
    check_range(&single);
    assert!(single.contains(addr), "{single:?} does not contain {addr}");
    for probe in [probe, addr, range.network()] {
        assert_eq!(
            range.contains(probe),
            covers(&range, probe),
            "{range} and {probe}"
        );
    }
}

/// An address of `family` (0: IPv4, 1: IPv6, 2: IPv4-mapped IPv6) from the
/// first bytes of `bytes`, zero-padded.
fn address(family: u8, bytes: &[u8]) -> IpAddr {
    let mut octets = [0u8; 16];
    for (slot, byte) in octets.iter_mut().zip(bytes) {
        *slot = *byte;
    }
    let v4 = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]);
    match family {
        0 => IpAddr::V4(v4),
        1 => IpAddr::V6(Ipv6Addr::from(octets)),
        _ => IpAddr::V6(v4.to_ipv6_mapped()),
    }
}

/// The reference for [`Cidr::contains`]: everything in IPv6's 128 bits.
fn covers(range: &Cidr, addr: IpAddr) -> bool {
    let wide = |addr: IpAddr| match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let bits = match range.network() {
        IpAddr::V4(_) => u32::from(range.prefix()) + 96,
        IpAddr::V6(_) => u32::from(range.prefix()),
    };
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    wide(range.network()) & mask == wide(addr) & mask
}
