//! The `natter` command: parse arguments, then hand over to the library
//! ([`natter::cli`]).

use std::process::ExitCode;

/// With the `mimalloc` feature, the whole process allocates through
/// mimalloc, which returns freed pages to the system on its own instead of
/// keeping them in per-thread arenas the way glibc's allocator does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match natter::cli::run(argh::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("natter: {err}");
            ExitCode::FAILURE
        }
    }
}
