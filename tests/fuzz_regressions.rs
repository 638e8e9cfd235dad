//! Every input a fuzzer failed on stays fixed: each file under
//! `fuzz/regressions/<target>/` is replayed with that target's property
//! checks, which are compiled in from `fuzz/src/` (the fuzz targets call the
//! very same functions), and each bug also has a test of its own, below, that
//! states the failing value directly.
//!
//! The decoder's inputs are plain bytes and replay under plain `cargo test`.
//! The other targets read structured values with `arbitrary`, which the
//! crate has only with its `arbitrary` feature: plain `cargo test` replays
//! their files as text (parse, never panic), and
//! `cargo test --features arbitrary --test fuzz_regressions` replays them in
//! full (as does `fuzz/ci.sh`, through the fuzz targets themselves).
//!
//! Bugs found by the fuzzers, by input file:
//! - `decoder/telnet-flood-split-across-reads`: the cap on telnet replies
//!   applied to the replies pending since the last `take_replies`, so a flood
//!   of `IAC DO` split across reads got more answers than the same bytes in
//!   one read (replies depended on chunking, and were unbounded over a
//!   connection). The cap now counts every reply the connection is sent.
//! - `server_line/word-with-lf-breaks-the-line`: `ServerLine::encode` wrote
//!   words (nicks, rooms, `HIST END` targets, the version) as they were, so a
//!   value holding a LF, such as `HistoryEnd { target: "\n" }`, came out as two
//!   lines. Encoding now drops control characters from the whole line.
//! - `hub/join-invalid-room-name`: the hub created a room under any name a
//!   `Command::Join` carried; `JOIN ""` made a room whose `JOIN` and `USERS`
//!   lines no client could parse. The hub now refuses names that are not
//!   room names.
//! - No file (found against the lobby-only hub, before the hub target's
//!   operations changed, so its bytes no longer spell the same script; the
//!   test below states it): `Hub::command` returned early on `MSG` to an
//!   unknown room, skipping the `settle` that removes clients whose outbox
//!   refused a line, so a dead client stayed in the hub. The rooms rewrite of
//!   `command` settles on every path.
//! - `hub/login-answered-after-nick-ban`: a `LOGIN` whose password check was
//!   under way when an operator banned that nickname still succeeded when the
//!   accounts thread answered: `Hub::account(Reply::LoggedIn)` gave the client
//!   the banned nickname (bans were checked only when `LOGIN` arrived). The
//!   answer is now checked against the bans too.
//! - `hub/rename-while-register-pending`: a client logged in to alice took
//!   the nickname carol and sent `REGISTER`; while the password was being
//!   hashed it renamed back to Alice, and the answer then logged it in to
//!   carol, holding alice's registered nickname. A rename now waits, like a
//!   second password, until the accounts thread has answered.
//! - `http_head/head-request-to-a-missing-file-got-a-body` (replayed by
//!   `fuzz/ci.sh`; `src/web/http.rs` has its unit test): a `HEAD` request
//!   answered with an error (404, or 405 on `/ws`) carried the error's body.
//!   A `HEAD` answer is now always the head alone.

use std::fs;
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "../fuzz/src/decoder.rs"]
mod decoder;
#[allow(dead_code)]
#[path = "../fuzz/src/hub.rs"]
mod hub;
#[allow(dead_code)]
#[path = "../fuzz/src/protocol.rs"]
mod protocol;

use hub::{Op, Script};
use natter::protocol::{Command, ServerLine};

/// The committed inputs of one target, with their names.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).expect("readable input"))
        })
        .collect();
    files.sort();
    files
}

/// Runs `check` on each input, naming the file that fails.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, data) in inputs(target) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        if let Err(panic) = result {
            eprintln!("fuzz/regressions/{target}/{name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Builds a value from fuzz bytes as a structure-aware target does, and
/// checks it; bytes that make no value are skipped, as the fuzzer skips them.
#[cfg(feature = "arbitrary")]
fn structured<T: for<'a> arbitrary::Arbitrary<'a>>(data: &[u8], check: impl FnOnce(&T)) {
    if let Ok(value) = T::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        check(&value);
    }
}

/// A raw peer's bytes keep the decoder's properties.
#[test]
fn decoder_regressions_replay() {
    replay("decoder", decoder::check);
}

/// Client lines from the command fuzzer parse without panicking, canonically.
#[test]
fn command_regressions_replay() {
    replay("command", |data| {
        protocol::check_command_text(data);
        #[cfg(feature = "arbitrary")]
        structured::<Command>(data, protocol::check_command_value);
    });
}

/// Server lines from the server_line fuzzer parse, encode and round-trip.
#[test]
fn server_line_regressions_replay() {
    replay("server_line", |data| {
        protocol::check_server_text(data);
        #[cfg(feature = "arbitrary")]
        structured::<ServerLine>(data, protocol::check_server_value);
    });
}

/// Hub scripts from the hub fuzzer keep every hub invariant.
#[test]
fn hub_regressions_replay() {
    replay("hub", |_data| {
        #[cfg(feature = "arbitrary")]
        structured::<Script>(_data, hub::run);
    });
}

/// Bug: a LF in a word (here a `HIST END` target) split the encoded line in two.
#[test]
fn a_line_break_in_a_word_does_not_split_the_line() {
    let line = ServerLine::HistoryEnd {
        target: "\n".into(),
        count: 0,
    };
    protocol::check_server_value(&line);
    assert_eq!(line.to_line(), "HIST END  0\r\n");
}

/// Bug: `JOIN ""` (any invalid name) created a room whose lines did not parse.
#[test]
fn join_with_an_invalid_room_name_creates_no_room() {
    hub::run(&Script {
        register_timeout: 78,
        max_rooms: 3,
        history: false,
        ops: vec![
            Op::Connect {
                slot: 0,
                capacity: 33,
                addr: 0,
            },
            Op::Nick { slot: 0, name: 0 },
            Op::Command {
                slot: 0,
                command: Command::Join(String::new()),
            },
            Op::Command {
                slot: 0,
                command: Command::Join("#no room".into()),
            },
            Op::Join { slot: 0, room: 1 },
        ],
    });
}

/// Bug: a line refused during a command that returned early (here an error
/// about an unknown room, to a client whose peer had gone) left the client
/// in the hub, because `settle` was skipped.
#[test]
fn a_refused_line_removes_the_client_on_every_path() {
    hub::run(&Script {
        register_timeout: 78,
        max_rooms: 3,
        history: false,
        ops: vec![
            Op::Connect {
                slot: 3,
                capacity: 213,
                addr: 0,
            },
            Op::Connect {
                slot: 0,
                capacity: 10,
                addr: 0,
            },
            Op::Nick { slot: 3, name: 6 },
            Op::Nick { slot: 0, name: 3 },
            Op::Vanish { slot: 3 },
            Op::Command {
                slot: 3,
                command: Command::Msg {
                    room: Some("%".into()),
                    text: String::new(),
                },
            },
        ],
    });
}

/// The hub seeds for accounts and moderation keep every hub invariant.
#[test]
fn hub_seed_scripts_pass() {
    for (name, script) in hub::seeds() {
        let result = std::panic::catch_unwind(|| hub::run(&script));
        if let Err(panic) = result {
            eprintln!("seed {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

/// `fuzz/corpus/hub/<name>` holds each seed script in the bytes the fuzzer
/// reads back as it; `NATTER_WRITE_SEEDS=1` rewrites them (after a change to
/// `Script` or `Op`).
#[cfg(feature = "arbitrary")]
#[test]
fn hub_seed_files_are_current() {
    use arbitrary::{Arbitrary, Unstructured};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/hub");
    let write = std::env::var_os("NATTER_WRITE_SEEDS").is_some();
    for (name, script) in hub::seeds() {
        let bytes = hub::to_bytes(&script);
        let read = Script::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        assert_eq!(
            format!("{read:?}"),
            format!("{script:?}"),
            "seed {name} reads back differently"
        );
        let path = dir.join(name);
        if write {
            fs::write(&path, &bytes).expect("writable corpus");
        } else {
            assert_eq!(
                fs::read(&path).ok(),
                Some(bytes),
                "fuzz/corpus/hub/{name} is missing or stale: NATTER_WRITE_SEEDS=1 cargo test \
                 --features arbitrary --test fuzz_regressions rewrites it"
            );
        }
    }
}

/// Every error code, the accounts ones included, parses back from its word.
#[test]
fn every_error_code_parses() {
    protocol::check_error_codes();
}

/// A password shows in no `Debug`, and the new commands round-trip.
#[test]
fn passwords_stay_out_of_debug() {
    use natter::protocol::Secret;
    for command in [
        Command::Register(Secret::new("hunter2-hunter2")),
        Command::Login {
            nick: "alice".into(),
            password: Secret::new("pw with space\r\n"),
        },
        Command::Password {
            old: Secret::new(""),
            new: Secret::new("new-password"),
        },
        Command::Mute {
            nick: "bob".into(),
            secs: None,
            reason: "10m of spam".into(),
        },
        Command::Ban {
            target: "::ffff:192.0.2.1".into(),
            secs: Some(0),
            reason: String::new(),
        },
    ] {
        protocol::check_command_value(&command);
        assert!(!format!("{command:?}").contains("hunter2"));
    }
}

/// The script of `hub/login-answered-after-nick-ban`.
fn login_answered_after_nick_ban() -> Script {
    use hub::{Outcome, Sanction};
    Script {
        register_timeout: 60,
        max_rooms: 2,
        history: false,
        ops: vec![
            // alice (an operator) and bob are registered; slot 0 is alice.
            Op::Load {
                accounts: 1 | 1 << 3,
                operators: 1,
                bans: 0,
            },
            Op::Connect {
                slot: 0,
                capacity: 63,
                addr: 0,
            },
            Op::Login {
                slot: 0,
                name: 0,
                password: 0,
            },
            Op::Answer {
                outcome: Outcome::Operator,
                all: false,
            },
            // Slot 1 logs in as bob; while its password is checked, alice
            // bans the nickname bob; then the check succeeds.
            Op::Connect {
                slot: 1,
                capacity: 63,
                addr: 1,
            },
            Op::Login {
                slot: 1,
                name: 3,
                password: 0,
            },
            Op::Moderate {
                slot: 0,
                action: Sanction::Ban,
                target: 3,
                secs: None,
                reason: 0,
            },
            Op::Answer {
                outcome: Outcome::Accept,
                all: false,
            },
        ],
    }
}

/// Bug (open): a login answered after its nickname was banned takes it.
#[test]
fn a_login_answered_after_a_nick_ban_does_not_take_the_nick() {
    hub::run(&login_answered_after_nick_ban());
}

/// The committed bytes of `hub/login-answered-after-nick-ban` still spell
/// its script (`NATTER_WRITE_SEEDS=1` rewrites them).
#[cfg(feature = "arbitrary")]
#[test]
fn login_answered_after_nick_ban_file_is_current() {
    hub_file_is_current(
        &login_answered_after_nick_ban(),
        "login-answered-after-nick-ban",
    );
}

/// The script of `hub/rename-while-register-pending`.
fn rename_while_register_pending() -> Script {
    use hub::Outcome;
    Script {
        register_timeout: 15,
        max_rooms: 15,
        history: true,
        ops: vec![
            Op::Load {
                accounts: 1,
                operators: 1,
                bans: 0,
            },
            Op::Connect {
                slot: 0,
                capacity: 63,
                addr: 0,
            },
            // Logged in to alice.
            Op::Login {
                slot: 0,
                name: 0,
                password: 0,
            },
            Op::Answer {
                outcome: Outcome::Operator,
                all: true,
            },
            // Renamed, then REGISTER for the new nickname.
            Op::Nick { slot: 54, name: 5 },
            Op::Register {
                slot: 18,
                password: 0,
            },
            Op::Connect {
                slot: 0,
                capacity: 63,
                addr: 0,
            },
            // Back to alice's nickname while the registration is hashed.
            Op::Nick { slot: 0, name: 1 },
            Op::Answer {
                outcome: Outcome::Accept,
                all: false,
            },
        ],
    }
}

/// Bug: a rename while `REGISTER` was pending left the client logged in to
/// the new account and holding another account's nickname.
#[test]
fn a_rename_waits_for_a_pending_registration() {
    hub::run(&rename_while_register_pending());
}

/// The committed bytes of `hub/rename-while-register-pending` still spell
/// its script (`NATTER_WRITE_SEEDS=1` rewrites them).
#[cfg(feature = "arbitrary")]
#[test]
fn rename_while_register_pending_file_is_current() {
    hub_file_is_current(
        &rename_while_register_pending(),
        "rename-while-register-pending",
    );
}

/// The committed bytes of `fuzz/regressions/hub/<name>` still spell
/// `script` (`NATTER_WRITE_SEEDS=1` rewrites them).
#[cfg(feature = "arbitrary")]
fn hub_file_is_current(script: &Script, name: &str) {
    use arbitrary::{Arbitrary, Unstructured};
    let bytes = hub::to_bytes(script);
    let read = Script::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
    assert_eq!(format!("{read:?}"), format!("{script:?}"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/hub")
        .join(name);
    if std::env::var_os("NATTER_WRITE_SEEDS").is_some() {
        fs::write(&path, &bytes).expect("writable");
    }
    assert_eq!(fs::read(&path).ok(), Some(bytes));
}
