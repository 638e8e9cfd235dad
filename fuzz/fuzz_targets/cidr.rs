//! Address ranges for bans: `Cidr::parse` never panics, display and parse
//! round-trip, and `contains` agrees with the prefix.
//! See `natter_fuzz::cidr` for the input layout and every property.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| natter_fuzz::cidr::check(data));
