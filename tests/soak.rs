//! `natter bench soak` for a minute against its in-process server: the mixed
//! load runs, the server's memory and descriptors stay bounded, and every
//! message counted as delivered arrives. And a soak that goes wrong exits
//! non-zero, saying why.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Seconds of load, as CI runs it.
const SECONDS: &str = "60";

/// The longest the whole command may take: the load, the residents'
/// joining and the drain at the end, on cores shared with other builds.
const LIMIT: Duration = Duration::from_secs(300);

/// Waits for `child` at most `limit`; kills it (this test's own child, by
/// its handle) if it runs longer.
fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for natter") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("natter bench soak ran past {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads a child's pipe to the end on a thread of its own, so a full pipe
/// never stalls the child.
fn drain(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Runs `natter bench soak <args> --json --quiet`, bounded by [`LIMIT`]:
/// its exit status, stdout (the JSON line) and stderr (the summary).
fn soak(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["bench", "soak"])
        .args(args)
        .args(["--json", "--quiet"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("natter runs");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_bounded(&mut child, LIMIT);
    let stdout = stdout.join().expect("stdout read");
    let stderr = stderr.join().expect("stderr read");
    (status, stdout, stderr)
}

fn num(json: &Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a count: {json}"))
}

/// An operator soaking a server for a minute gets a passing verdict backed by
/// real traffic of every kind and by memory and descriptor samples.
#[test]
fn a_minute_of_mixed_load_passes_with_samples_and_real_traffic() {
    let (status, stdout, stderr) = soak(&["--seconds", SECONDS]);
    assert!(status.success(), "{status}\n{stderr}\n{stdout}");

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {stdout}");
    let json: Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(json["scenario"], "soak");
    assert_eq!(json["ok"], true, "{stderr}");
    assert!(json["secs"].as_f64() >= Some(60.0), "{json}");

    // Samples every few seconds, with figures where they can be read.
    let samples = json["samples"].as_array().expect("samples");
    assert!(samples.len() >= 10, "{} samples", samples.len());
    if cfg!(target_os = "linux") {
        for sample in samples {
            assert!(sample["rss"].as_u64() > Some(0), "{sample}");
            assert!(sample["fds"].as_u64() > Some(0), "{sample}");
        }
    }

    // Real traffic of every kind, and nothing lost.
    for key in [
        "room_received",
        "whispers_received",
        "mover_received",
        "history_pages",
        "registrations",
        "logins",
        "tls_cycles",
        "killed_mid_line",
        "slow_dropped",
    ] {
        assert!(num(&json, key) > 0, "{key}: {json}");
    }
    assert_eq!(num(&json, "room_received"), num(&json, "room_expected"));
    assert_eq!(num(&json, "whispers_received"), num(&json, "whispers_sent"));
    assert_eq!(num(&json, "mover_received"), num(&json, "mover_expected"));
    for key in [
        "missing",
        "duplicated",
        "unexpected",
        "residents_lost",
        "errors",
    ] {
        assert_eq!(num(&json, key), 0, "{key}: {json}");
    }
    // The summary says the same on stderr for a person.
    assert!(stderr.contains("natter bench soak"), "{stderr}");
}

/// A soak whose clients cannot do their work fails loudly: a server that
/// lets a client into two rooms only (the lobby and one more) refuses the
/// movers' side rooms, and the command exits non-zero with the server's
/// refusal as the reason, after printing its report.
#[test]
fn a_soak_that_goes_wrong_exits_non_zero_and_says_why() {
    let data = std::env::temp_dir().join(format!("natter-soak-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("create the data directory");
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .to_string();
    let mut server = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "serve",
            "--no-web",
            "--bind",
            &addr,
            "--threads",
            "1",
            "--rate",
            "0",
        ])
        .args(["--history", "memory", "--accounts", "memory"])
        .args(["--max-rooms", "2"])
        .env_remove("RUST_LOG")
        .env("XDG_DATA_HOME", &data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start natter serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "natter serve is not listening");
        std::thread::sleep(Duration::from_millis(50));
    }

    let pid = server.id().to_string();
    let (status, stdout, stderr) = soak(&[
        "--server",
        &addr,
        "--server-pid",
        &pid,
        "--clients",
        "2",
        "--seconds",
        "3",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);

    assert!(!status.success(), "{stderr}\n{stdout}");
    let json: Value = serde_json::from_str(stdout.trim()).expect("the JSON line still comes");
    assert_eq!(json["ok"], false);
    assert!(num(&json, "errors") > 0, "{json}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("soak failed"), "{stderr}");
    assert!(last.contains("too-many-rooms"), "{stderr}");
}
