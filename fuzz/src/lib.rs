//! The properties natter's fuzz targets check, as plain functions.
//!
//! Each module holds one target's checks; the files in `fuzz_targets/` only
//! turn libFuzzer's bytes into an input and call them. The same files are
//! compiled into `tests/fuzz_regressions.rs` in the main crate (with
//! `#[path]`), so a committed regression input is replayed by `cargo test`
//! with exactly the checks that found it. The modules therefore use only
//! natter's public API and std (plus `arbitrary` behind the `arbitrary`
//! feature, which the main crate has too).
//!
//! Every check panics with a message naming the broken property.

pub mod cidr;
pub mod cluster;
pub mod decoder;
pub mod http;
pub mod hub;
pub mod protocol;
