//! The web listener's request-head reader and router on raw peer bytes,
//! split into reads at arbitrary points: no panic, the same outcome however
//! it is split, bounded heads, well-formed responses.
//! See `natter_fuzz::http` for the input layout and every property.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| natter_fuzz::http::check(data));
