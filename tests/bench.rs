//! `natter bench` at toy sizes: each scenario runs against a real server and
//! reports a sane, complete result. Functional only: no timing is asserted.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use natter::bench::{self, Options, Scenario};
use serde_json::Value;

/// The in-process server shares this process's descriptors and memory with
/// every test here, so the tests that count them run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn options(scenario: Scenario) -> Options {
    Options {
        scenario,
        progress: false,
        ..Options::default()
    }
}

fn run(options: &Options) -> Value {
    let _serial = serial();
    let report = bench::run_scenario(options).expect("the scenario runs");
    assert_eq!(report.scenario(), options.scenario);
    let json: Value = serde_json::from_str(report.json()).expect("the JSON line parses");
    assert_eq!(json["scenario"], options.scenario.to_string());
    assert_eq!(json["ok"], true, "{report}");
    // Only the soak judges its run; the other scenarios only measure.
    assert_eq!(report.failure(), None, "{report}");
    json
}

/// Asserts that a fan-out report counts no lost, duplicated, unexpected or
/// malformed message and no disconnection.
fn assert_no_faults(json: &Value) {
    for key in [
        "lost",
        "duplicated",
        "unexpected",
        "malformed",
        "disconnected",
    ] {
        assert_eq!(num(json, key), 0, "{key}");
    }
}

fn num(json: &Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a count: {json}"))
}

/// A benchmark of a chat where everyone hears everything counts every
/// delivery exactly once.
#[test]
fn fanout_delivers_every_message_to_everyone_else_once() {
    let json = run(&Options {
        clients: 20,
        senders: 3,
        seconds: Some(0.5),
        window: 30,
        ..options(Scenario::Fanout)
    });
    assert_eq!(num(&json, "registered"), 20);
    let sent = num(&json, "sent");
    assert!(sent > 0);
    assert_eq!(num(&json, "expected"), sent * 19);
    assert_eq!(num(&json, "received"), num(&json, "expected"));
    assert_no_faults(&json);
    assert_eq!(num(&json, "latency_samples"), num(&json, "received"));
    assert_eq!(json["tls"], false);
    assert!(json["p50_ms"].as_f64() <= json["p99_ms"].as_f64());
    assert!(json["p99_ms"].as_f64() <= json["max_ms"].as_f64());
}

/// The same fan-out over TLS: every delivery counted exactly once, through
/// the in-process server's TLS listener.
#[cfg(feature = "tls")]
#[test]
fn fanout_over_tls_delivers_every_message_to_everyone_else_once() {
    let json = run(&Options {
        clients: 12,
        senders: 3,
        seconds: Some(0.5),
        window: 30,
        tls: true,
        ..options(Scenario::Fanout)
    });
    assert_eq!(json["tls"], true);
    assert_eq!(num(&json, "registered"), 12);
    let sent = num(&json, "sent");
    assert!(sent > 0);
    assert_eq!(num(&json, "received"), sent * 11);
    assert_no_faults(&json);
}

/// Paced sending sends about what was asked and loses nothing.
#[test]
fn fanout_at_a_fixed_rate_sends_that_many() {
    let json = run(&Options {
        clients: 10,
        senders: 2,
        rate: 40,
        seconds: Some(0.5),
        ..options(Scenario::Fanout)
    });
    assert_eq!(num(&json, "sent"), 20);
    assert_eq!(num(&json, "received"), 20 * 9);
    assert_eq!(num(&json, "lost"), 0);
}

/// Holding idle connections reports every announcement read and a memory
/// figure per connection.
#[test]
fn idle_registers_everyone_and_measures_memory() {
    let json = run(&Options {
        clients: 30,
        seconds: Some(0.0),
        ..options(Scenario::Idle)
    });
    assert_eq!(num(&json, "registered"), 30);
    // Each knows all 30: its USERS list and the JOINs after it.
    assert_eq!(num(&json, "joins_read"), 30 * 30);
    assert!(json["server_bytes_per_conn"].is_number(), "{json}");
    assert_eq!(num(&json, "fds_after"), num(&json, "fds_before") + 2 * 30);
}

/// Past `--big-room` (200 by default) the lobby's arrivals come gathered in
/// `JOINS` lines, and a flush may name a newcomer to itself: each client
/// still ends up knowing every member once, and is counted as registered
/// once its list came.
#[test]
fn idle_in_a_big_lobby_counts_every_member_known() {
    let json = run(&Options {
        clients: 260,
        seconds: Some(0.0),
        ..options(Scenario::Idle)
    });
    assert_eq!(num(&json, "registered"), 260);
    assert_eq!(num(&json, "joins_read"), 260 * 260);
}

/// Churn finishes its cycles and gives back every descriptor.
#[test]
fn churn_cycles_and_returns_descriptors() {
    let json = run(&Options {
        clients: 4,
        cycles: 100,
        ..options(Scenario::Churn)
    });
    assert_eq!(num(&json, "done"), 100);
    assert_eq!(num(&json, "failed"), 0);
    assert_eq!(json["fds_equal"], true);
}

/// The binary's subcommand prints a JSON line a program can read.
#[test]
fn the_command_prints_one_json_line() {
    let _serial = serial();
    let out = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["bench", "fanout", "--clients", "5", "--senders", "1"])
        .args(["--seconds", "0.3", "--json", "--quiet"])
        .output()
        .expect("natter runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let json: Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(json["lost"], 0);
}

/// Too many connections for one process is refused with advice, not tried.
#[test]
fn too_many_in_process_connections_is_an_error() {
    let _serial = serial();
    let err = bench::run_scenario(&Options {
        clients: 12_000,
        ..options(Scenario::Idle)
    })
    .expect_err("refused");
    assert!(err.to_string().contains("natter serve"), "{err}");
}

/// Only servers on this machine may be loaded.
#[test]
fn remote_servers_are_refused() {
    let _serial = serial();
    let err = bench::run_scenario(&Options {
        server: Some("192.0.2.1:5555".into()),
        ..options(Scenario::Fanout)
    })
    .expect_err("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

/// A soak needs residents to talk to each other: one alone is refused with
/// the reason.
#[test]
fn a_soak_of_one_resident_is_refused() {
    let _serial = serial();
    let err = bench::run_scenario(&Options {
        clients: 1,
        seconds: Some(1.0),
        ..options(Scenario::Soak)
    })
    .expect_err("refused");
    assert!(err.to_string().contains("at least 2"), "{err}");
}
