//! Message ids are a promise: never handed out twice, always growing, across
//! restarts (clean, or `kill -9` mid-flood) in every history mode; a new
//! account never reads an earlier guest's whispers; the client never hides a
//! message it has not seen; a plain chat line goes to the current room as
//! it was typed. Real servers (the `natter` binary where a process must
//! die), real sockets, loopback only.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::driver::Driver;
use common::raw::Client;
use common::TempDir;
use common::TIMEOUT;
use natter::client::Target;
use natter::protocol::ServerLine;

/// A `natter serve` process on a fixed loopback port, its log in a file;
/// killed if a test fails before it stops.
struct Natter {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

/// A port that was free a moment ago, to restart servers on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port()
}

impl Natter {
    /// `natter serve` on `port` with history `mode`, data in `data`, no rate
    /// limit, and `extra` flags; returns once it greets a connection.
    fn start(port: u16, mode: &str, data: &Path, extra: &[&str]) -> Natter {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let log =
            std::env::temp_dir().join(format!("natter-ids-{port}-{}.log", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args([
                "serve",
                "--no-web",
                "--bind",
                &addr.to_string(),
                "--threads",
                "2",
            ])
            .args([
                "--rate",
                "0",
                "--outbox-bytes",
                "67108864",
                "--history",
                mode,
            ])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the log file"))
            .spawn()
            .expect("start natter serve");
        let mut natter = Natter { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = natter.child.try_wait() {
                panic!(
                    "natter serve exited before listening: {status}\n{}",
                    natter.log()
                );
            }
            if TcpStream::connect(addr).is_ok() {
                Client::connect(addr).expect("HELLO natter/1.1 ");
                return natter;
            }
            assert!(Instant::now() < deadline, "natter serve is not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no goodbye, no last batch.
    fn kill9(mut self) {
        self.child.kill().expect("kill -9 the server");
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for it to exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "natter serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Natter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The clock in microseconds since the Unix epoch.
fn now_micros() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_micros()).expect("micros fit")
}

/// `nick` registered on `addr`, past the lobby's replay if history is kept.
fn join(addr: SocketAddr, nick: &str, history: bool) -> Client {
    let mut client = Client::register(addr, nick);
    if history {
        client.until("HIST END #lobby ");
    }
    client
}

/// `speaker` says `n` lines tagged `tag` in the lobby; their ids as
/// `listener` gets them.
fn say(speaker: &mut Client, listener: &mut Client, tag: &str, n: usize) -> Vec<u64> {
    for i in 0..n {
        speaker.send_line(&format!("{tag} {i}"));
    }
    (0..n)
        .map(|i| {
            let (_, id, _, _, text) = common::parse_msg(&listener.until("MSG "));
            assert_eq!(text, format!("{tag} {i}"));
            id
        })
        .collect()
}

/// The ids of a `HIST` replay up to its `HIST END`; live messages that
/// come meanwhile are skipped.
fn replay(client: &mut Client) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        match client.parsed() {
            ServerLine::Msg { .. } | ServerLine::Whisper { .. } => {}
            // Others coming and going meanwhile (the viewer joining).
            ServerLine::Join { .. }
            | ServerLine::Part { .. }
            | ServerLine::Quit { .. }
            | ServerLine::Joins { .. }
            | ServerLine::Parts { .. } => {}
            ServerLine::History(line) => match *line {
                ServerLine::Msg { id, .. } | ServerLine::Whisper { id, .. } => ids.push(id),
                other => panic!("HIST of {other:?}"),
            },
            ServerLine::HistoryEnd { count, .. } => {
                assert_eq!(count as usize, ids.len(), "HIST END count");
                return ids;
            }
            other => panic!("{}: expected HIST, got {other:?}", client.name()),
        }
    }
}

/// Floods the lobby from `flooder` for `how_long`; returns the largest id
/// `listener` received.
fn flood(flooder: &mut Client, listener: &mut Client, how_long: Duration) -> u64 {
    let start = Instant::now();
    let mut sent = 0;
    let mut top = 0;
    while start.elapsed() < how_long {
        let batch: String = (0..100).map(|i| format!("flood {}\n", sent + i)).collect();
        flooder.send(batch.as_bytes());
        sent += 100;
        for _ in 0..100 {
            let (_, id, ..) = common::parse_msg(&listener.until("MSG "));
            assert!(id > top, "ids grow: {id} after {top}");
            top = id;
        }
    }
    top
}

fn kill_mid_flood_then_ids_stay_above_every_id_sent(mode: &str) {
    let dir = TempDir::new(&format!("kill-{mode}"));
    let port = free_port();
    let history = mode != "off";
    let server = Natter::start(port, mode, &dir.0, &[]);
    let mut flooder = join(server.addr, "flooder", history);
    let mut listener = join(server.addr, "listener", history);
    let mut viewer = Driver::start(server.addr, "viewer");
    viewer.online();
    listener.until("JOIN ");
    let top = flood(&mut flooder, &mut listener, Duration::from_millis(700));
    server.kill9();

    let server = Natter::start(port, mode, &dir.0, &[]);
    let mut alice = join(server.addr, "alice", history);
    let mut bob = join(server.addr, "bob", history);
    viewer.online();
    alice.until("JOIN ");
    let new = say(&mut alice, &mut bob, "after the kill", 10);
    assert!(
        new.iter().all(|&id| id > top),
        "{mode}: ids after the restart {new:?} must be above every id sent before the kill ({top})"
    );
    bob.send_line(&format!("HISTORY #lobby since {top}"));
    let since = replay(&mut bob);
    assert!(
        since.ends_with(&new),
        "{mode}: HISTORY since {top} has the new messages {new:?}: {since:?}"
    );
    // The client that watched the flood shows every new message. It may
    // still be working through the flood (thousands of lines, slow on a
    // busy machine): it fails if it stalls (no event for TIMEOUT) or takes
    // far longer than that.
    let lobby = Target::Room("#lobby".into());
    let deadline = Instant::now() + 12 * TIMEOUT;
    loop {
        let shown = viewer.said_texts(lobby.clone());
        let missing: Vec<usize> = (0..10)
            .filter(|i| !shown.contains(&format!("<alice> after the kill {i}")))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: the client never showed messages {missing:?}: {shown:?}"
        );
        viewer.until_event("more lines", |_| true);
    }
    drop(server);
}

#[test]
fn kill_9_mid_flood_sqlite_then_new_ids_are_above_every_id_sent() {
    // Story: the server dies mid-flood; after it restarts, no id is reused, `HISTORY since` finds the new messages, the TUI shows them.
    kill_mid_flood_then_ids_stay_above_every_id_sent("sqlite");
}

#[test]
fn kill_9_mid_flood_memory_then_new_ids_are_above_every_id_sent() {
    // Story: the same with history in memory only: the ids still never go back.
    kill_mid_flood_then_ids_stay_above_every_id_sent("memory");
}

#[test]
fn ids_keep_growing_across_restarts_in_every_history_mode() {
    // Story: whatever --history says, a restarted server (stopped or killed) numbers messages above all it sent.
    for mode in ["sqlite", "memory", "off"] {
        let dir = TempDir::new(&format!("restart-{mode}"));
        let port = free_port();
        let history = mode != "off";
        let mut top = 0;
        for (round, how) in ["stop", "kill", "stop"].into_iter().enumerate() {
            let server = Natter::start(port, mode, &dir.0, &[]);
            let mut alice = join(server.addr, "alice", history);
            let mut bob = join(server.addr, "bob", history);
            alice.until("JOIN ");
            let ids = say(&mut alice, &mut bob, &format!("round {round}"), 3);
            assert!(
                ids.iter().all(|&id| id > top),
                "{mode}, round {round}: ids {ids:?} after a restart must be above {top}"
            );
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
            top = ids[2];
            drop((alice, bob));
            match how {
                "kill" => server.kill9(),
                _ => server.stop(),
            }
        }
    }
}

#[test]
fn ids_stay_above_the_floor_when_the_clock_is_behind_it() {
    // Story: the clock was set back an hour across a restart (here: the floor is an hour ahead); ids still grow.
    let dir = TempDir::new("clock-back");
    let ahead = now_micros() + 3_600_000_000;
    std::fs::write(dir.0.join("ids.floor"), format!("{ahead}\n")).expect("write the floor");
    let server = Natter::start(free_port(), "off", &dir.0, &["--accounts", "memory"]);
    let mut alice = join(server.addr, "alice", false);
    let mut bob = join(server.addr, "bob", false);
    alice.until("JOIN ");
    let ids = say(&mut alice, &mut bob, "late", 2);
    assert!(
        ids[0] > ahead && ids[1] > ids[0],
        "ids {ids:?} above the floor {ahead}"
    );
    let floor: u64 = std::fs::read_to_string(dir.0.join("ids.floor"))
        .expect("the floor is kept")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        floor >= ids[1],
        "the floor {floor} covers the ids handed out"
    );
}

#[test]
fn an_unwritable_data_directory_is_reported_and_ids_come_from_the_clock() {
    // Story: the data directory cannot be written; the server says so at start and ids still follow the clock.
    let dir = TempDir::new("unwritable");
    let blocker = dir.0.join("a-file");
    std::fs::write(&blocker, "not a directory").expect("write a file");
    let data = blocker.join("data");
    let started = now_micros();
    let server = Natter::start(free_port(), "memory", &data, &["--accounts", "memory"]);
    let mut alice = join(server.addr, "alice", true);
    let mut bob = join(server.addr, "bob", true);
    alice.until("JOIN ");
    let ids = say(&mut alice, &mut bob, "anyway", 2);
    assert!(
        ids[0] >= started && ids[1] > ids[0],
        "ids {ids:?} come from the clock (started at {started})"
    );
    let log = server.log();
    assert!(
        log.contains("cannot keep the id floor") && log.contains("clock alone"),
        "the start says why ids come from the clock alone: {log}"
    );
    drop((alice, bob));
    server.stop();
}

/// Runs `natter admin --data-dir <data> create <nick>` with `password` on
/// standard input.
fn admin_create(data: &Path, nick: &str, password: &str) {
    let mut admin = Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(["create", nick])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start natter admin");
    if let Some(mut stdin) = admin.stdin.take() {
        writeln!(stdin, "{password}").expect("write the password");
    }
    let out = admin.wait_with_output().expect("natter admin ends");
    assert!(
        out.status.success(),
        "natter admin create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whispers to `to` from `client` as fast as the socket takes them, until
/// `stop`.
fn whisper_flood(client: &Client, to: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut stream = client.stream().try_clone().expect("clone the socket");
    let to = to.to_owned();
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: String = (0..50)
                .map(|i| format!("WHISPER {to} w{}\n", n + i))
                .collect();
            n += 50;
            if stream.write_all(batch.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// Reads `client`'s lines on a thread, keeping the largest whisper id seen
/// in `top` and noting in `renamed` when it is made a guest, until the
/// connection ends.
fn whisper_reader(
    mut client: Client,
    top: Arc<AtomicU64>,
    renamed: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        let line = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            client.line_within(Duration::from_secs(20))
        }));
        let Ok(line) = line else {
            return;
        };
        if let Ok(ServerLine::Whisper { id, .. }) = ServerLine::parse(&line) {
            top.fetch_max(id, Ordering::SeqCst);
        }
        if line.starts_with("ERR nick-registered ") {
            renamed.store(true, Ordering::SeqCst);
        }
        if line.starts_with("BYE") {
            return;
        }
    })
}

fn a_new_account_never_reads_an_earlier_guests_whispers(mode: &str) {
    let dir = TempDir::new(&format!("privacy-{mode}"));
    let server = Natter::start(free_port(), mode, &dir.0, &[]);
    let history = mode != "off";
    let mut alice = join(server.addr, "alice", history);
    let guest = join(server.addr, "bob", history);
    alice.until("JOIN ");
    // alice whispers to the guest bob without pause while the account is
    // made: what reached the guest before `natter admin` ran is the
    // guest's, whether or not it is on disk yet.
    let top = Arc::new(AtomicU64::new(0));
    let renamed = Arc::new(AtomicBool::new(false));
    let reader = whisper_reader(guest, Arc::clone(&top), Arc::clone(&renamed));
    let stop = Arc::new(AtomicBool::new(false));
    let flood = whisper_flood(&alice, "bob", Arc::clone(&stop));
    common::retry(
        "the guest gets whispers",
        500,
        Duration::from_millis(10),
        || (top.load(Ordering::SeqCst) > 0).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let guests = top.load(Ordering::SeqCst);
    admin_create(&dir.0, "bob", "long-enough-password");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();

    // The owner logs in once the server has the account (within a second):
    // the guest is renamed then.
    common::retry(
        "the guest is renamed",
        200,
        Duration::from_millis(25),
        || renamed.load(Ordering::SeqCst).then_some(()),
    );
    let mut owner = Client::connect(server.addr);
    owner.set_name("owner");
    owner.expect("HELLO ");
    owner.send_line("LOGIN bob long-enough-password");
    owner.until("ACCOUNT bob ");
    if history {
        owner.until("HIST END #lobby ");
    }
    owner.send_line("HISTORY alice 500");
    if !history {
        owner.until("ERR history-off ");
        return;
    }
    let mut read = replay(&mut owner);
    read.retain(|&id| id <= guests);
    assert!(
        read.is_empty(),
        "{mode}: the new owner of bob read {} whispers said to the guest before the account existed \
         (ids up to {guests}), e.g. {:?}",
        read.len(),
        read.first()
    );
    drop(reader);
    drop(server);
}

#[test]
fn a_new_account_never_reads_an_earlier_guests_whispers_sqlite() {
    // Story: `natter admin create bob` while a guest bob is being whispered to: the owner cannot read those whispers.
    a_new_account_never_reads_an_earlier_guests_whispers("sqlite");
}

#[test]
fn a_new_account_never_reads_an_earlier_guests_whispers_memory() {
    // Story: the same with history in memory, where the account's start used to be 0.
    a_new_account_never_reads_an_earlier_guests_whispers("memory");
}

#[test]
fn a_new_account_never_reads_an_earlier_guests_whispers_off() {
    // Story: the same without history: there is nothing to read, and HISTORY says so.
    a_new_account_never_reads_an_earlier_guests_whispers("off");
}

#[test]
fn an_owner_keeps_whispers_said_after_a_restart_in_memory_mode() {
    // Story: with --history memory, bob registers, the server restarts, and whispers to bob after it are his to read.
    let dir = TempDir::new("owner-memory");
    let port = free_port();
    let server = Natter::start(port, "memory", &dir.0, &[]);
    let mut alice = join(server.addr, "alice", true);
    let mut carol = join(server.addr, "carol", true);
    alice.until("JOIN ");
    say(&mut alice, &mut carol, "before bob", 5);
    let mut bob = join(server.addr, "bob", true);
    bob.send_line("REGISTER long-enough-password");
    bob.until("ACCOUNT bob ");
    drop((alice, carol, bob));
    server.stop();

    let server = Natter::start(port, "memory", &dir.0, &[]);
    let mut bob = Client::connect(server.addr);
    bob.expect("HELLO ");
    bob.send_line("LOGIN bob long-enough-password");
    bob.until("ACCOUNT bob ");
    bob.until("HIST END #lobby ");
    let mut alice = join(server.addr, "alice", true);
    alice.send_line("WHISPER bob after the restart");
    let whisper = bob.until("WHISPER ");
    assert!(
        whisper.ends_with(" alice bob after the restart"),
        "{whisper}"
    );
    bob.send_line("HISTORY alice");
    let read = replay(&mut bob);
    assert_eq!(
        read.len(),
        1,
        "the owner reads the whisper said after the restart"
    );
}

#[test]
fn a_different_message_under_a_known_id_is_shown_by_the_client() {
    // Story: a server that reuses ids (an old one after kill -9) sends new messages under them; the client shows them all, once.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut alice = Driver::start(addr, "alice");
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("NICK");
    assert_eq!(first, "NICK alice\r\n");
    let t = "2026-12-07T06:00:00Z";
    let script = [
        "WELCOME alice hi".to_owned(),
        format!("JOIN {t} #lobby alice"),
        "USERS #lobby alice bob carol".to_owned(),
        format!("MSG {t} 791 #lobby bob before the crash"),
        format!("MSG {t} 792 #lobby bob also before"),
        format!("MSG {t} 791 #lobby carol after the restart"),
        format!("HIST MSG {t} 791 #lobby bob before the crash"),
        format!("MSG {t} 792 #lobby carol reused again"),
        format!("HIST MSG {t} 792 #lobby carol reused again"),
        "HIST END #lobby 2".to_owned(),
        "INFO done".to_owned(),
    ];
    let mut out = stream;
    for line in &script {
        out.write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
    }
    alice.until("the script", |m| {
        m.scrollback().iter().any(
            |e| matches!(&e.kind, natter::client::EntryKind::System { text, .. } if text == "done"),
        )
    });
    let said = alice.said(Target::Room("#lobby".into()));
    assert_eq!(
        said,
        [
            (Some(791), "<bob> before the crash".to_owned()),
            (Some(791), "<carol> after the restart".to_owned()),
            (Some(792), "<bob> also before".to_owned()),
            (Some(792), "<carol> reused again".to_owned()),
        ],
        "each message once, in id order"
    );
}

#[test]
fn a_plain_line_goes_to_the_current_room_as_typed() {
    // Story: an nc user in #lobby types `#b hi`; it is said in #lobby, verbatim, not sent to #b.
    let server = common::start(common::config());
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    alice.until("JOIN ");
    for who in [&mut alice, &mut bob] {
        who.send_line("JOIN #b");
        who.until("INFO Messages without a room now go to #b");
    }
    alice.until("JOIN ");
    alice.send_line("JOIN #lobby");
    alice.until("INFO Messages without a room now go to #lobby");
    alice.send_line("#b hi");
    let (_, _, room, nick, text) = common::parse_msg(&bob.until("MSG "));
    assert_eq!(
        (room.as_str(), nick.as_str(), text.as_str()),
        ("#lobby", "alice", "#b hi")
    );
    alice.send_line("MSG #b hi");
    let (_, _, room, _, text) = common::parse_msg(&bob.until("MSG "));
    assert_eq!(
        (room.as_str(), text.as_str()),
        ("#b", "hi"),
        "MSG names the room"
    );
    server.stop();
}
