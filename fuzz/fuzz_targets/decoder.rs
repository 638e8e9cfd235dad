//! The line decoder on raw peer bytes, fed in arbitrary chunks: no panic,
//! bounded memory, the same frames and replies whatever the chunking.
//! See `natter_fuzz::decoder` for the input layout and every property.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| natter_fuzz::decoder::check(data));
