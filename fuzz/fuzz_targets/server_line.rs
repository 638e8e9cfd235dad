//! The server-line parser the client uses: never panics on any line, every
//! value encodes to exactly one CRLF line, and every wire-safe value parses
//! back to itself. See `natter_fuzz::protocol` for every property.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use natter::protocol::ServerLine;

fuzz_target!(|data: &[u8]| {
    natter_fuzz::protocol::check_server_text(data);
    if let Ok(line) = ServerLine::arbitrary_take_rest(Unstructured::new(data)) {
        natter_fuzz::protocol::check_server_value(&line);
    }
});
