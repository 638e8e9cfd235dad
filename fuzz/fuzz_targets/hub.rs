//! The hub as a state machine: scripts of connects, commands, disconnects,
//! ticks and slow or vanished clients, with its invariants checked after
//! every step. See `natter_fuzz::hub` for the operations and every property.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_fuzz::hub::Script;

fuzz_target!(|script: Script| natter_fuzz::hub::run(&script));
