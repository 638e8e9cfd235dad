//! The `natter` command: parse arguments, then hand over to the library
//! ([`natter::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    match natter::cli::run(argh::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("natter: {err}");
            ExitCode::FAILURE
        }
    }
}
