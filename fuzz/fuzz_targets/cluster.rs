//! Two hubs as the nodes of one cluster, joined by the in-memory bus, with
//! their agreement checked. See `natter_fuzz::cluster` for the operations and
//! every property.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_fuzz::cluster::Script;

fuzz_target!(|script: Script| natter_fuzz::cluster::run(&script));
