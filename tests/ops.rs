//! Running natter for real, as an operator does: the real `natter serve`
//! binary under a service manager (`READY=1` on `$NOTIFY_SOCKET`), the
//! systemd unit in `contrib/`, and what the server logs.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::Client;

/// A `natter serve` process on a free loopback port, killed when dropped.
struct Natter {
    child: Child,
    addr: SocketAddr,
    /// A directory of its own (data directory, files the test writes),
    /// removed at the end.
    dir: PathBuf,
}

/// A free loopback port: one that was free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
}

/// A fresh directory for the test `name`.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natter-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

impl Natter {
    /// `natter serve --bind <addr> <args>` in `dir`, with `env` set and
    /// stderr captured, once it greets connections.
    fn start_in(dir: PathBuf, args: &[&str], env: &[(&str, &Path)]) -> Natter {
        let addr = free_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_natter"));
        command
            .args(["serve", "--bind", &addr.to_string(), "--threads", "2"])
            .args(["--history", "memory", "--accounts", "memory"])
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            // The web listener only where the test moves it off its port.
            .args((!args.contains(&"--web-bind")).then_some("--no-web"))
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start natter serve");
        let mut natter = Natter { child, addr, dir };
        natter.wait_until_listening();
        natter
    }

    /// Connects until the port greets (at most 10 s).
    fn wait_until_listening(&mut self) {
        common::process::wait_until_listening(&mut self.child, self.addr);
    }

    /// Sends `signal` with kill(1).
    fn signal(&self, signal: &str) {
        common::process::signal(&self.child, signal);
    }

    /// Stops it with SIGTERM and returns everything it wrote to stderr.
    fn stop(mut self) -> String {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "natter serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut log).expect("read stderr");
        }
        log
    }
}

impl Drop for Natter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// Under systemd (`Type=notify`), the server says READY=1 on the socket
// systemd passes in $NOTIFY_SOCKET once it listens, so that units ordered
// after it start only then.
#[cfg(unix)]
#[test]
fn tells_the_service_manager_it_is_ready() {
    use std::os::unix::net::UnixDatagram;
    let dir = test_dir("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let natter = Natter::start_in(dir, &[], &[("NOTIFY_SOCKET", &path)]);
    let mut buf = [0; 512];
    let n = socket.recv(&mut buf).expect("a notification within 10 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        message.lines().any(|line| line == "READY=1"),
        "not a readiness notification: {message:?}"
    );
    // Still serving after saying so.
    let mut alice = Client::register(natter.addr, "alice");
    alice.send_line("hello");
    natter.stop();
}

// The systemd unit in contrib/ is one systemd accepts: no unknown or
// misspelt option, a valid hardening set, an executable ExecStart.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/natter.service"
    ))
    .expect("read contrib/natter.service");
    for option in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=natter",
        "--data-dir /var/lib/natter",
        "--config /etc/natter/natter.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(option), "the unit lacks {option:?}");
    }
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if !analyze.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    }
    // verify wants ExecStart to exist: point it at the binary under test.
    let dir = test_dir("unit");
    let copy = dir.join("natter.service");
    let unit = unit.replace("/usr/local/bin/natter", env!("CARGO_BIN_EXE_natter"));
    std::fs::write(&copy, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let _ = std::fs::remove_dir_all(&dir);
    let complaints = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd, verify may note that it cannot reach the
    // manager; anything naming the unit is a real complaint.
    let about_unit: Vec<&str> = complaints
        .lines()
        .filter(|line| line.contains("natter.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {}\n{complaints}",
        out.status
    );
}

// A log shipper reads `--log-format json`: every stderr line is one JSON
// object with a time, a level, a target and the event's fields, and chat
// text is never among them.
#[test]
fn json_logs_are_one_object_a_line_without_chat_text() {
    let natter = Natter::start_in(test_dir("json"), &["--log-format", "json"], &[]);
    let mut alice = Client::register(natter.addr, "alice");
    let mut bob = Client::register(natter.addr, "bob");
    alice.until("JOIN ");
    alice.send_line("the secret is swordfish");
    bob.until("MSG ");
    bob.send_line("QUIT off to bed");
    bob.until("BYE ");
    drop(alice);
    let log = natter.stop();
    assert!(!log.contains("swordfish"), "chat text in the log:\n{log}");
    assert!(!log.contains("off to bed"), "quit text in the log:\n{log}");
    let mut messages = Vec::new();
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}\n{log}"));
        for field in ["timestamp", "level", "target", "fields"] {
            assert!(event.get(field).is_some(), "no {field} in {line}");
        }
        let message = event["fields"]["message"].as_str().unwrap_or_default();
        messages.push(message.to_owned());
    }
    for expected in ["listening", "connected", "disconnected", "shutting down"] {
        assert!(
            messages.iter().any(|m| m == expected),
            "no {expected:?} event in {messages:?}"
        );
    }
}

// An operator's welcome text (`--motd FILE`) greets every newcomer right
// after WELCOME, one INFO line per line, cleaned of control characters
// like all server text.
#[test]
fn motd_follows_welcome_as_info_lines() {
    let dir = test_dir("motd");
    let motd = dir.join("motd.txt");
    std::fs::write(
        &motd,
        "Welcome to the test server.\r\n\nRules: be \x1b[31mkind\x07.\n\n\n",
    )
    .expect("write the motd");
    let motd = motd.to_string_lossy().into_owned();
    let natter = Natter::start_in(dir, &["--motd", &motd], &[]);
    for nick in ["alice", "bob"] {
        let mut client = Client::connect(natter.addr);
        client.expect("HELLO natter/1.1 ");
        client.send_line(&format!("NICK {nick}"));
        client.expect(&format!("WELCOME {nick} "));
        assert_eq!(client.line(), "INFO Welcome to the test server.");
        assert_eq!(client.line(), "INFO");
        assert_eq!(client.line(), "INFO Rules: be [31mkind.");
        client.expect("JOIN ");
    }
    natter.stop();
}

// A --motd file that is too large is refused at start with a message that
// names the bound, instead of being sent to everyone.
#[test]
fn a_motd_past_its_bound_stops_the_start() {
    let dir = test_dir("motd-big");
    let motd = dir.join("motd.txt");
    std::fs::write(&motd, "x".repeat(200)).expect("write the motd");
    let out = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--bind", &free_addr().to_string()])
        .args([
            "--history",
            "off",
            "--accounts",
            "memory",
            "--motd-max",
            "100",
            "--no-web",
        ])
        .arg("--motd")
        .arg(&motd)
        .stdin(Stdio::null())
        .output()
        .expect("run natter serve");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway:\n{stderr}");
    assert!(
        stderr.contains("larger than 100 bytes (--motd-max)"),
        "{stderr}"
    );
}

/// `GET /metrics` on `addr`: the status line and the samples by series
/// (name and labels), plus the whole body.
fn scrape(addr: SocketAddr) -> (String, std::collections::HashMap<String, f64>, String) {
    scrape_path(addr, "/metrics")
}

/// `GET path` on `addr`, read as a scrape.
fn scrape_path(
    addr: SocketAddr,
    path: &str,
) -> (String, std::collections::HashMap<String, f64>, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let samples = body
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    (status, samples, body.to_owned())
}

/// One sample of a scrape, 0 when absent.
fn sample(samples: &std::collections::HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

// An operator graphs the server: during a small load, GET /metrics on
// --metrics-bind shows connections, messages, deliveries, rate-limit hits,
// refusals, rooms, accounts and password checks moving as they happened,
// and never a nickname or a word of chat.
#[test]
fn metrics_move_with_the_load() {
    let metrics = free_addr();
    let metrics_arg = metrics.to_string();
    let natter = Natter::start_in(
        test_dir("metrics"),
        &[
            "--metrics-bind",
            &metrics_arg,
            "--max-clients",
            "3",
            "--rate",
            "20",
            "--burst",
            "5",
        ],
        &[],
    );
    let plain = "natter_connections{transport=\"plain\"}";
    let accepted = "natter_connections_accepted_total{transport=\"plain\"}";
    let full = "natter_connections_refused_total{reason=\"server_full\"}";
    // The probe that saw the server up has gone.
    let before = common::retry("the probe to close", 50, Duration::from_millis(50), || {
        let (status, samples, _) = scrape(metrics);
        assert_eq!(status, "HTTP/1.1 200 OK");
        (sample(&samples, plain) == 0.0).then_some(samples)
    });

    let mut alice = Client::register(natter.addr, "alice");
    let mut bob = Client::register(natter.addr, "bob");
    let mut carol = Client::register(natter.addr, "carol");
    let mut newcomer = Client::connect(natter.addr);
    newcomer.expect("ERR server-full ");
    alice.send_line("REGISTER orange-marmalade-42");
    alice.until("ACCOUNT ");
    carol.send_line("LOGIN alice wrong-password-here");
    carol.until("ERR ");
    bob.send_line("JOIN #ops");
    bob.until("JOIN ");
    // Ten messages at once: past the burst of 5, the rate limit holds
    // some back.
    for i in 0..10 {
        alice.send_line(&format!("sesame number {i}"));
    }
    alice.send_line("WHISPER bob sesame in private");
    bob.until("WHISPER ");
    carol.until("MSG ");

    let after = common::retry(
        "the counters to catch up",
        50,
        Duration::from_millis(100),
        || {
            let (_, samples, text) = scrape(metrics);
            let grown = |series: &str| sample(&samples, series) - sample(&before, series);
            let ready = grown("natter_messages_total") == 11.0
                && sample(&samples, "natter_registered_accounts") == 1.0
                && sample(&samples, "natter_rooms") == 2.0
                && grown("natter_password_checks_total") == 1.0;
            ready.then_some((samples, text))
        },
    );
    let (samples, text) = after;
    let grown = |series: &str| sample(&samples, series) - sample(&before, series);
    assert_eq!(sample(&samples, plain), 3.0, "{text}");
    // The newcomer past --max-clients is refused, not accepted.
    assert_eq!(grown(accepted), 3.0, "{text}");
    assert_eq!(grown(full), 1.0, "{text}");
    assert_eq!(grown("natter_password_failures_total"), 1.0, "{text}");
    assert!(grown("natter_rate_limited_total") >= 1.0, "{text}");
    // Each of ten room messages reaches two others, the whisper one.
    assert!(grown("natter_deliveries_total") >= 21.0, "{text}");
    assert!(sample(&samples, "natter_history_queue") >= 0.0, "{text}");
    #[cfg(target_os = "linux")]
    {
        assert!(
            sample(&samples, "process_resident_memory_bytes") > 0.0,
            "{text}"
        );
        assert!(sample(&samples, "process_open_fds") >= 3.0, "{text}");
    }
    for private in ["alice", "bob", "carol", "sesame", "#ops", "127.0.0.1"] {
        assert!(!text.contains(private), "{private} in the metrics:\n{text}");
    }

    // Only GET /metrics is served.
    let mut other = std::net::TcpStream::connect(metrics).expect("connect");
    std::io::Write::write_all(&mut other, b"GET / HTTP/1.1\r\n\r\n").expect("send");
    let mut answer = String::new();
    other.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    drop((alice, bob, carol, newcomer));
    natter.stop();
}

// Operations: the configuration file and reloads.

/// Runs `natter <args>` to its end: (success, stdout, stderr).
fn run_natter(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run natter");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new client's welcome text: the INFO lines between WELCOME and JOIN.
fn motd_seen(addr: SocketAddr, nick: &str) -> Vec<String> {
    welcomed(addr, nick).1
}

/// A client registered as `nick`, and the welcome text it was sent.
fn welcomed(addr: SocketAddr, nick: &str) -> (Client, Vec<String>) {
    let mut client = Client::connect(addr);
    client.expect("HELLO natter/1.1 ");
    client.send_line(&format!("NICK {nick}"));
    client.expect(&format!("WELCOME {nick} "));
    let mut motd = Vec::new();
    loop {
        let line = client.line();
        if line.starts_with("JOIN ") {
            return (client, motd);
        }
        motd.push(line);
    }
}

// An operator keeps the settings in a file and overrides one on the command
// line: the file's MOTD is sent, and the flag's --motd-max wins over the
// file's (which would refuse this MOTD).
#[test]
fn a_config_file_sets_what_the_flags_do_not() {
    let dir = test_dir("config");
    let motd = dir.join("motd.txt");
    std::fs::write(&motd, "Hello from the file, at some length.\n").expect("write the motd");
    let file = dir.join("natter.toml");
    std::fs::write(
        &file,
        format!(
            "# the welcome text\nmotd = {:?}\nmotd-max = 10\nreplay = 5\n",
            motd.to_string_lossy()
        ),
    )
    .expect("write the config");
    let file = file.to_string_lossy().into_owned();
    let natter = Natter::start_in(dir, &["--config", &file, "--motd-max", "4096"], &[]);
    assert_eq!(
        motd_seen(natter.addr, "alice"),
        ["INFO Hello from the file, at some length."]
    );
    natter.stop();
}

// A mistake in the file stops the start with the file, the line and the
// key: a misspelt key, a value of the wrong kind, a value the flag refuses.
#[test]
fn a_broken_config_file_is_refused_naming_the_line_and_the_key() {
    let dir = test_dir("config-broken");
    let file = dir.join("natter.toml");
    let path = file.to_string_lossy().into_owned();
    for (text, expected) in [
        (
            "rate = 10\n\nmax-clientz = 3\n",
            "line 3: max-clientz: no such setting",
        ),
        (
            "rate = \"fast\"\n",
            "line 1: rate: Error parsing option '--rate'",
        ),
        (
            "rate = 10\nno-web = \"yes\"\n",
            "line 2: no-web: is true or false",
        ),
        ("history = \"floppy\"\n", "line 1: history: "),
        ("rate = [1, 2]\n", "line 1: rate: takes one value"),
        ("rate = \n", "TOML parse error"),
    ] {
        std::fs::write(&file, text).expect("write the config");
        let bind = free_addr().to_string();
        let (ok, _, stderr) =
            run_natter(&["serve", "--bind", &bind, "--no-web", "--config", &path]);
        assert!(!ok, "started with {text:?}:\n{stderr}");
        assert!(stderr.contains(&path), "{text:?}: {stderr}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `--flag`s that `natter serve --help` lists.
fn help_flags() -> Vec<String> {
    let (_, stdout, _) = run_natter(&["serve", "--help"]);
    stdout
        .lines()
        .filter(|line| line.starts_with("  --"))
        .filter_map(|line| line.split_whitespace().next())
        .map(|flag| flag.trim_end_matches(',').to_owned())
        .collect()
}

// `natter config` prints a file with every flag as a key (set to its
// default, or commented out when it has none) and nothing else; the file
// it prints runs a server.
#[test]
fn natter_config_has_every_flag_and_only_them() {
    let (ok, example, stderr) = run_natter(&["config"]);
    assert!(ok, "{stderr}");
    let keys: Vec<String> = example
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| format!("--{key}")))
        .collect();
    let mut flags = help_flags();
    flags.retain(|flag| flag != "--help" && flag != "--config");
    assert!(flags.len() > 30, "too few flags in the help: {flags:?}");
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    flags.sort();
    assert_eq!(
        sorted_keys, flags,
        "the example's keys and the flags differ"
    );
    // Every default in it is a value the server accepts.
    let dir = test_dir("config-example");
    let file = dir.join("natter.toml");
    std::fs::write(&file, &example).expect("write the example");
    let file = file.to_string_lossy().into_owned();
    let natter = Natter::start_in(dir, &["--config", &file], &[]);
    Client::register(natter.addr, "alice");
    natter.stop();
}

// The operator edits the MOTD and the file, then reloads (SIGHUP, or
// `natter admin reload`): newcomers get the new text, nobody is cut off,
// and the log says what changed and what waits for a restart. A broken
// file then changes nothing.
#[cfg(unix)]
#[test]
fn a_reload_changes_the_motd_and_says_what_needs_a_restart() {
    let dir = test_dir("reload-motd");
    let motd = dir.join("motd.txt");
    std::fs::write(&motd, "First welcome.\n").expect("write the motd");
    let file = dir.join("natter.toml");
    let settings = |rate: u32| format!("motd = {:?}\nrate = {rate}\n", motd.to_string_lossy());
    std::fs::write(&file, format!("log-level = \"warn\"\n{}", settings(10))).expect("write");
    let path = file.to_string_lossy().into_owned();
    let data_dir = dir.to_string_lossy().into_owned();
    let natter = Natter::start_in(dir.clone(), &["--config", &path], &[]);
    let (mut alice, motd_then) = welcomed(natter.addr, "alice");
    assert_eq!(motd_then, ["INFO First welcome."]);

    std::fs::write(&motd, "Second welcome.\n").expect("write the motd");
    std::fs::write(&file, format!("log-level = \"info\"\n{}", settings(20))).expect("write");
    natter.signal("HUP");
    common::retry("the new motd", 50, Duration::from_millis(100), || {
        (motd_seen(natter.addr, "carol") == ["INFO Second welcome."]).then_some(())
    });

    // Without a signal at hand: the pid file in the data directory.
    std::fs::write(&motd, "Third welcome.\n").expect("write the motd");
    let (ok, stdout, stderr) = run_natter(&["admin", "--data-dir", &data_dir, "reload"]);
    assert!(ok, "natter admin reload: {stdout}{stderr}");
    common::retry("the third motd", 50, Duration::from_millis(100), || {
        (motd_seen(natter.addr, "dave") == ["INFO Third welcome."]).then_some(())
    });

    // A broken file changes nothing, the MOTD included.
    std::fs::write(&motd, "Fourth welcome.\n").expect("write the motd");
    std::fs::write(&file, format!("{}max-clientz = 2\n", settings(20))).expect("write");
    natter.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(motd_seen(natter.addr, "erin"), ["INFO Third welcome."]);

    // Alice, here all along, is still connected.
    alice.send_line("WHO #lobby");
    alice.until("USERS ");
    let log = natter.stop();
    assert!(log.contains("reloaded"), "{log}");
    // At warn, the first connections were not logged; at info, later ones.
    let (early, late) = log.split_once("changed=").expect("a reload logged");
    assert!(!early.contains("connected"), "logged at warn:\n{early}");
    assert!(late.contains("connected"), "not logged at info:\n{late}");
    assert!(log.contains("changed=motd, log-level"), "{log}");
    assert!(log.contains("change only with a restart"), "{log}");
    assert!(log.contains("settings=rate"), "{log}");
    assert!(log.contains("reload refused; nothing changed"), "{log}");
    assert!(log.contains("line 3: max-clientz"), "{log}");
}

/// A certificate for localhost written as PEM to `dir/name.{crt,key}`,
/// and its fingerprint.
#[cfg(all(unix, feature = "tls"))]
fn write_certificate(dir: &Path, cert: &Path, key: &Path) -> String {
    let _ = dir;
    let rcgen::CertifiedKey {
        cert: c,
        signing_key,
    } = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    std::fs::write(cert, c.pem()).expect("write the certificate");
    std::fs::write(key, signing_key.serialize_pem()).expect("write the key");
    natter::tls::fingerprint(c.der())
}

// A renewed certificate is put in place and the server reloaded: the TLS
// client already connected stays and keeps chatting, and a new one is
// shown the new certificate.
#[cfg(all(unix, feature = "tls"))]
#[test]
fn a_reload_swaps_the_tls_certificate_without_cutting_anyone() {
    let dir = test_dir("reload-tls");
    let (cert, key) = (dir.join("natter.crt"), dir.join("natter.key"));
    let first = write_certificate(&dir, &cert, &key);
    let tls = free_addr();
    let (cert_arg, key_arg) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let tls_arg = tls.to_string();
    let natter = Natter::start_in(
        dir.clone(),
        &[
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
            "--tls-bind",
            &tls_arg,
        ],
        &[],
    );
    let mut alice = Client::tls(tls, &first).expect("TLS").register_as("alice");
    assert_eq!(alice.server_fingerprint(), first);

    let second = write_certificate(&dir, &cert, &key);
    assert_ne!(first, second);
    natter.signal("HUP");
    let mut bob = common::retry(
        "the new certificate",
        50,
        Duration::from_millis(100),
        || Client::tls(tls, &second).ok(),
    )
    .register_as("bob");
    assert_eq!(bob.server_fingerprint(), second);
    // The old certificate is no longer presented.
    assert!(Client::tls(tls, &first).is_err());
    alice.until("JOIN ");
    alice.send_line("still here after the swap");
    let seen = bob.until("MSG ");
    assert!(seen.ends_with("still here after the swap"), "{seen}");
    let log = natter.stop();
    assert!(
        log.contains("new TLS certificate for new connections"),
        "{log}"
    );
    assert!(log.contains(&second), "{log}");
}

// An operator who already proxies the web listener scrapes it there
// (`--web-metrics`): the same metrics as --metrics-bind, moving with the
// load, without nicknames or text. Without the flag, /metrics there is
// not served.
#[test]
fn the_web_listener_serves_metrics_when_asked() {
    let web = free_addr();
    let web_arg = web.to_string();
    let natter = Natter::start_in(
        test_dir("web-metrics"),
        &["--web-bind", &web_arg, "--web-metrics"],
        &[],
    );
    let (status, before, _) = scrape(web);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut alice = Client::register(natter.addr, "alice");
    let mut bob = Client::register(natter.addr, "bob");
    alice.until("JOIN ");
    alice.send_line("the password is swordfish");
    bob.until("MSG ");
    let (samples, text) = common::retry(
        "the counters to move",
        50,
        Duration::from_millis(100),
        || {
            let (_, samples, text) = scrape(web);
            let grown = sample(&samples, "natter_messages_total")
                - sample(&before, "natter_messages_total");
            (grown == 1.0).then_some((samples, text))
        },
    );
    assert_eq!(
        sample(&samples, "natter_connections{transport=\"plain\"}"),
        2.0,
        "{text}"
    );
    // The scrapes themselves came in on the web listener.
    assert!(
        sample(
            &samples,
            "natter_connections_accepted_total{transport=\"web\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("natter_history_write_seconds_bucket"),
        "{text}"
    );
    for private in ["alice", "bob", "swordfish"] {
        assert!(!text.contains(private), "{private} in the metrics:\n{text}");
    }
    natter.stop();

    let web = free_addr();
    let web_arg = web.to_string();
    let natter = Natter::start_in(test_dir("web-no-metrics"), &["--web-bind", &web_arg], &[]);
    let (status, _, _) = scrape(web);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    natter.stop();
}
