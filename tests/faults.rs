//! The real `natter serve` when its disk or databases misbehave: a full disk
//! under the history, an accounts database locked by another process, and
//! `kill -9` in the middle of a burst of registrations. In each, the chat goes
//! on, nothing hangs, the log says what happened once, and the data is whole
//! afterwards.
//!
//! Unix only: they mount file systems, lock files and send signals.
#![cfg(all(unix, feature = "sqlite"))]

mod common;

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::Client;
use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_natter");

/// A `natter serve` child process with its log in a file, killed on drop.
struct Natter {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Natter {
    /// Starts `natter serve` on a port of 127.0.0.1 it picks itself (so no
    /// other process can take it between choosing and binding) with its
    /// data in `data` and `extra` flags, logging to `log`; waits until it
    /// listens and reads the port from its log.
    fn start(data: &Path, log: &Path, extra: &[&str]) -> Natter {
        let log_file = File::create(log).expect("create the log file");
        let data = data.to_str().expect("a UTF-8 path");
        let child = Command::new(BIN)
            .args(["serve", "--no-web", "--bind", "127.0.0.1:0"])
            .args(["--threads", "2", "--rate", "0", "--data-dir", data])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start natter serve");
        let mut natter = Natter {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
        };
        let text = natter.wait_log(" listening address=");
        natter.addr = text
            .lines()
            .find_map(|line| line.split(" listening address=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no listening address in the log:\n{text}"));
        natter
    }

    /// What it has logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing `text` (at most 10 s).
    fn wait_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {text:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`, and waits for the process to be gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Natter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether this process may mount file systems (root, with the right).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A small tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it) on `dir`, or
    /// says why it cannot.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("mounting a small file system needs root".into());
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with one file, until it is full.
fn fill(path: &Path) {
    let mut file = File::create(path).expect("create the filler");
    let chunk = vec![b'x'; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // Whatever fits in less than a chunk, too.
    while file.write_all(b"x").is_ok() {}
    let _ = file.sync_all();
}

/// Sends `HISTORY #lobby 500` and returns its `HIST` lines (which end with
/// the message's text).
fn lobby_history(client: &mut Client) -> Vec<String> {
    client.send_line("HISTORY #lobby 500");
    let mut lines = Vec::new();
    loop {
        let line = client.until("HIST ");
        if line.starts_with("HIST END ") {
            return lines;
        }
        lines.push(line);
    }
}

/// Story: the disk under the history fills up; people keep chatting, the
/// log says so once, and history picks up again when space is freed.
#[test]
fn a_full_disk_stops_history_not_the_chat() {
    let dir = TempDir::new("faults-full");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("create the mount point");
    let _tmpfs = match Tmpfs::mount(&data, "1m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "on CI this test must run: {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let log = dir.0.join("natter.log");
    let server = Natter::start(&data, &log, &["--accounts", "memory", "--replay", "0"]);
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    alice.send_line("before the disk filled");
    bob.expect("MSG ");
    assert!(lobby_history(&mut bob)
        .iter()
        .any(|l| l.ends_with("before the disk filled")));

    fill(&data.join("filler"));
    // Many batches, each too big for the room left: every one fails.
    let text = "x".repeat(900);
    for round in 0..20 {
        for n in 0..5 {
            alice.send_line(&format!("full {round} {n} {text}"));
        }
        for n in 0..5 {
            let line = bob.expect("MSG ");
            assert!(
                line.contains(&format!("full {round} {n} ")),
                "bob got {line:?} while the disk was full"
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    server.wait_log("cannot write history");
    // Let every batch reach the disk and fail, then count the log's lines.
    std::thread::sleep(Duration::from_millis(300));
    let log_now = server.log();
    let failures = log_now.matches("cannot write history").count();
    assert_eq!(failures, 1, "one line for the outage:\n{log_now}");

    std::fs::remove_file(data.join("filler")).expect("free the space");
    alice.send_line("after the disk recovered");
    bob.expect("MSG ");
    let recovered = server.wait_log("history writes work again");
    assert!(
        recovered.contains("lost="),
        "the recovery line counts what was lost:\n{recovered}"
    );
    let history = lobby_history(&mut bob);
    assert!(
        history
            .iter()
            .any(|l| l.ends_with("after the disk recovered")),
        "new messages are in the history again: {history:?}"
    );
    assert!(
        history
            .iter()
            .any(|l| l.ends_with("before the disk filled")),
        "what was stored before is still there: {history:?}"
    );
    let log_end = server.log();
    assert_eq!(
        log_end.matches("cannot write history").count(),
        1,
        "{log_end}"
    );
}

/// Story: an operator's long `natter admin` transaction (here, a test
/// holding `BEGIN EXCLUSIVE` on the accounts file) locks the accounts
/// database. Registrations get `ERR busy` within the 2 s deadline, queued
/// ones too, the chat goes on meanwhile, and once the lock is gone
/// registering and logging in work again.
#[test]
fn a_locked_accounts_database_answers_busy_promptly() {
    let dir = TempDir::new("faults-locked");
    let log = dir.0.join("natter.log");
    let server = Natter::start(&dir.0, &log, &["--history", "off", "--accounts", "sqlite"]);
    let mut alice = Client::register(server.addr, "alice");
    alice.send_line("REGISTER correct-horse");
    alice.expect("ACCOUNT alice user ");

    let db = rusqlite::Connection::open(dir.0.join("accounts.sqlite3")).expect("open the file");
    db.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the database");

    // Three registrations at once: each is answered within its deadline,
    // not one after another's.
    let mut waiting: Vec<Client> = ["bob", "carol", "dave"]
        .into_iter()
        .map(|nick| Client::register(server.addr, nick))
        .collect();
    let sent = Instant::now();
    for client in &mut waiting {
        client.send_line("REGISTER battery-staple");
    }
    // Meanwhile the chat goes on.
    let mut erin = Client::register(server.addr, "erin");
    let start = Instant::now();
    erin.send_line("still chatting");
    let line = waiting[0].until("MSG ");
    let took = start.elapsed();
    assert!(line.ends_with("still chatting"), "bob got {line:?}");
    assert!(took < Duration::from_secs(1), "the chat waited {took:?}");
    for client in &mut waiting {
        let line = client.until("ERR ");
        let took = sent.elapsed();
        assert!(line.starts_with("ERR busy "), "{}: {line:?}", client.name());
        assert!(
            took < Duration::from_millis(3500),
            "{}: ERR busy came after {took:?}",
            client.name()
        );
    }
    // A login needs only to read, which the lock allows.
    let mut again = Client::connect(server.addr);
    again.expect("HELLO ");
    again.send_line("LOGIN alice correct-horse");
    let start = Instant::now();
    let line = again.until("ACCOUNT alice ");
    assert!(
        start.elapsed() < Duration::from_millis(3500),
        "login took {:?}: {line:?}",
        start.elapsed()
    );

    db.execute_batch("ROLLBACK").expect("unlock the database");
    drop(db);
    for client in &mut waiting {
        client.send_line("REGISTER battery-staple");
        client.until(&format!("ACCOUNT {} user ", client.name()));
    }
    let mut fresh = Client::connect(server.addr);
    fresh.expect("HELLO ");
    fresh.send_line("LOGIN bob battery-staple");
    fresh.until("ACCOUNT bob user ");
}

/// The password each test account gets.
fn password_of(nick: &str) -> String {
    format!("pw-{nick}-secret")
}

/// On a thread of its own: connects, takes `nick` by `REGISTER` (or, if
/// `login`, by `LOGIN`) and says whether the server confirmed it with
/// `ACCOUNT` before the connection ended. Never panics on a dead server.
fn account_attempt(addr: SocketAddr, nick: String, login: bool) -> bool {
    use std::io::{BufRead, BufReader};
    let Ok(stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return false;
    };
    let lines = if login {
        format!("LOGIN {nick} {}\n", password_of(&nick))
    } else {
        format!("NICK {nick}\nREGISTER {}\n", password_of(&nick))
    };
    if writer.write_all(lines.as_bytes()).is_err() {
        return false;
    }
    // The answer is an ACCOUNT line or an ERR (wrong password, busy).
    let account = format!("ACCOUNT {nick} ");
    BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with(&account) || line.starts_with("ERR "))
        .is_some_and(|line| line.starts_with(&account))
}

/// Story: the server is killed with SIGKILL in the middle of a burst of
/// registrations and logins. Afterwards the accounts database opens and
/// passes SQLite's integrity check, every registration the server confirmed
/// is there, and no account is half-made: an account is one row written by
/// one statement (nickname and argon2id hash together), so "half" would be a
/// row whose password does not log in, or a confirmed one that is missing;
/// every account listed logs in with its password after the restart.
#[test]
fn sigkill_during_a_registration_burst_leaves_whole_accounts() {
    let dir = TempDir::new("faults-kill");
    let log = dir.0.join("natter.log");
    let flags = ["--history", "off", "--accounts", "sqlite"];
    let mut server = Natter::start(&dir.0, &log, &flags);
    let old: Vec<String> = (0..4).map(|n| format!("old{n}")).collect();
    for nick in &old {
        assert!(
            account_attempt(server.addr, nick.clone(), false),
            "{nick} registers before the burst"
        );
    }

    // Twelve connections at once (under any per-address limit): eight
    // registering, four logging in.
    let fresh: Vec<String> = (0..8).map(|n| format!("new{n}")).collect();
    let (done, confirmations) = std::sync::mpsc::channel();
    let start = std::sync::Arc::new(std::sync::Barrier::new(12));
    let attempts: Vec<_> = fresh
        .iter()
        .map(|nick| (nick.clone(), false))
        .chain(old.iter().map(|nick| (nick.clone(), true)))
        .map(|(nick, login)| {
            let (addr, done, start) = (server.addr, done.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let confirmed = account_attempt(addr, nick.clone(), login);
                let _ = done.send((nick, login, confirmed));
            })
        })
        .collect();
    drop(done);
    // Kill it once the burst is under way: after the first confirmation.
    let first = confirmations
        .recv_timeout(Duration::from_secs(20))
        .expect("a first answer");
    server.kill();
    let mut results = vec![first];
    results.extend(confirmations.iter());
    for attempt in attempts {
        attempt.join().expect("an attempt thread");
    }
    let confirmed: Vec<&String> = results
        .iter()
        .filter(|(_, login, confirmed)| !login && *confirmed)
        .map(|(nick, _, _)| nick)
        .collect();
    assert!(
        results.iter().any(|(_, _, confirmed)| !confirmed),
        "the kill came after the whole burst: {results:?}"
    );

    let db = rusqlite::Connection::open(dir.0.join("accounts.sqlite3")).expect("open the file");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("run the integrity check");
    assert_eq!(check, "ok");
    drop(db);

    let listing = Command::new(BIN)
        .args(["admin", "--data-dir"])
        .arg(&dir.0)
        .arg("list")
        .output()
        .expect("run natter admin list");
    assert!(listing.status.success(), "natter admin list: {listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let listed: Vec<String> = listing
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(|line| line.trim().to_owned())
        .collect();
    for nick in old.iter().chain(confirmed.iter().copied()) {
        assert!(listed.contains(nick), "{nick} is missing:\n{listing}");
    }

    let restarted = Natter::start(&dir.0, &dir.0.join("natter-2.log"), &flags);
    for nick in &listed {
        assert!(
            account_attempt(restarted.addr, nick.clone(), true),
            "{nick} is listed but cannot log in with its password"
        );
    }
}
