//! The client-command parser: never panics on any line, and every wire-safe
//! command value encodes to a line that parses back to it.
//! See `natter_fuzz::protocol` for every property.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use natter::protocol::Command;

fuzz_target!(|data: &[u8]| {
    natter_fuzz::protocol::check_command_text(data);
    if let Ok(command) = Command::arbitrary_take_rest(Unstructured::new(data)) {
        natter_fuzz::protocol::check_command_value(&command);
    }
});
