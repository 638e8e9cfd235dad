//! Several nodes as one chat through a real Redis (`--cluster`): each test
//! starts its own `redis-server` on a free loopback port, with no
//! persistence and a private directory, and stops it by PID. Nodes are
//! in-process servers, or `natter serve` child processes where a test kills
//! one. Without redis-server installed the tests say so and pass, except
//! under `CI=true`, where that is a failure.

mod common;
mod operators;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::raw::Client;
use common::{parse_msg, TempDir};

/// A redis-server of the test's own, killed by PID when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: TempDir,
    /// Whether it writes every command to its append-only file before
    /// answering (`--appendfsync always`), so a restart keeps it all.
    aof: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("pick a free port")
}

impl Redis {
    /// Starts one, or `None` (having said why) if redis-server is missing
    /// outside CI.
    fn start(name: &str) -> Option<Redis> {
        Self::start_with(name, false)
    }

    /// Like [`Redis::start`], keeping everything across restarts if `aof`.
    fn start_with(name: &str, aof: bool) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server is not installed, and CI must run the cluster tests");
            }
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let dir = TempDir::new(&format!("redis-{name}"));
        let port = free_port();
        let child = Self::spawn(port, &dir, aof);
        let redis = Redis {
            child,
            port,
            dir,
            aof,
        };
        redis.wait_ready();
        Some(redis)
    }

    fn spawn(port: u16, dir: &TempDir, aof: bool) -> Child {
        let persistence: &[&str] = if aof {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(persistence)
            .arg("--dir")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    /// Waits (at most 10 s) until it answers PING.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(b"PING\r\n");
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (by PID) and waits for it to go.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty.
    fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.dir, self.aof);
        self.wait_ready();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-process node called `node`.
fn node(redis: &Redis, node: &str) -> common::Server {
    node_at(&redis.url(), node)
}

/// An in-process node called `node` that reaches Redis at `url`.
fn node_at(url: &str, node: &str) -> common::Server {
    common::start(natter::Config {
        cluster: Some(url.to_owned()),
        node_id: Some(node.to_owned()),
        node_ttl: Duration::from_secs(2),
        ..common::config()
    })
}

/// A loopback TCP proxy in front of a Redis, which a test cuts to take one
/// node (and only it) away from Redis: its connections are shut down and
/// new ones closed at once until it is restored. Its threads end when it
/// is dropped.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(redis: &Redis) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let port = listener.local_addr().expect("proxy address").port();
        let target = redis.port;
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (up, stop, live) = (up.clone(), stop.clone(), live.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let pipe = |mut from: TcpStream, mut to: TcpStream| {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = from.shutdown(Shutdown::Both);
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    };
                    let (Ok(c2), Ok(s2), Ok(c3)) =
                        (client.try_clone(), server.try_clone(), client.try_clone())
                    else {
                        continue;
                    };
                    if let Ok(mut live) = live.lock() {
                        live.push(c3);
                    }
                    pipe(client, server);
                    pipe(s2, c2);
                }
            })
        };
        Proxy {
            port,
            up,
            stop,
            live,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Cuts every connection through it, and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut live) = self.live.lock() {
            for stream in live.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Lets connections through again.
    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `HIST` lines up to the next `HIST END <target>`, as (id, nick,
/// text), and the count that line gives.
fn history(client: &mut Client, target: &str) -> (Vec<(u64, String, String)>, u32) {
    let mut got = Vec::new();
    for _ in 0..2000 {
        let line = client.until("HIST ");
        match natter::protocol::ServerLine::parse(&line) {
            Ok(natter::protocol::ServerLine::HistoryEnd { target: t, count }) if t == target => {
                return (got, count);
            }
            Ok(natter::protocol::ServerLine::History(inner)) => {
                if let natter::protocol::ServerLine::Msg { id, nick, text, .. } = *inner {
                    got.push((id, nick, text));
                }
            }
            other => panic!(
                "{}: not a history line: {line:?} ({other:?})",
                client.name()
            ),
        }
    }
    panic!("{}: no HIST END {target}", client.name());
}

/// Connects to `addr` as `nick`, retrying (at most 5 s) while the nickname
/// is still held elsewhere.
fn register_when_free(addr: SocketAddr, nick: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = Client::connect(addr);
        client.expect("HELLO ");
        client.send_line(&format!("NICK {nick}"));
        let answer = client.line();
        if answer.starts_with("WELCOME ") {
            client.set_name(nick);
            client.expect("JOIN ");
            client.expect("USERS #lobby");
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "{nick} never became free: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `natter serve` child process, killed by PID when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
    _data: TempDir,
}

impl Process {
    fn start(redis: &Redis, node: &str) -> Process {
        let data = TempDir::new(&format!("node-{node}"));
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let child = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["serve", "--no-web", "--bind", &addr.to_string()])
            .args(["--threads", "2", "--history", "off", "--accounts", "memory"])
            .args(["--max-per-address", "0", "--connect-rate", "0"])
            .args([
                "--cluster",
                &redis.url(),
                "--node-id",
                node,
                "--node-ttl",
                "2",
            ])
            .env_remove("RUST_LOG")
            .env("XDG_DATA_HOME", &data.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start natter serve");
        let mut process = Process {
            child,
            addr,
            _data: data,
        };
        common::process::wait_until_listening(&mut process.child, addr);
        process
    }

    /// `kill -9`, by PID.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asks `USERS` until `nick` is listed (or `listed` is false and it is
/// not), at most 5 s.
fn wait_users(client: &mut Client, nick: &str, listed: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        client.send_line("USERS #lobby");
        let line = client.until("USERS #lobby");
        let has = line.split(' ').skip(2).any(|n| n == nick);
        if has == listed {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {nick} listed={has}, wanted {listed}: {line}",
            client.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn messages_cross_nodes_in_one_order_with_the_same_ids() {
    let Some(redis) = Redis::start("messages") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let mut carol = Client::register(a.addr, "carol");
    alice.until("JOIN ");
    let mut bob = Client::register(b.addr, "bob");
    let users = wait_users(&mut bob, "alice", true);
    assert!(users.contains("carol"), "{users}");
    alice.until("JOIN ");
    carol.until("JOIN ");

    alice.send_line("hello from a");
    let (_, id_b, room, nick, text) = parse_msg(&bob.until("MSG "));
    assert_eq!((room.as_str(), nick.as_str()), ("#lobby", "alice"));
    assert_eq!(text, "hello from a");
    let (_, id_c, ..) = parse_msg(&carol.until("MSG "));
    assert_eq!(id_b, id_c, "one id on every node");

    // Interleaved senders on both nodes: every receiver sees the same ids
    // in the same, growing, order.
    for i in 0..10 {
        bob.send_line(&format!("b{i}"));
        alice.send_line(&format!("a{i}"));
    }
    let mut seen_by_carol = Vec::new();
    for _ in 0..20 {
        let (_, id, _, nick, text) = parse_msg(&carol.until("MSG "));
        seen_by_carol.push((id, nick, text));
    }
    let ids: Vec<u64> = seen_by_carol.iter().map(|m| m.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert!(ids[0] > id_b);
    // alice gets bob's ten, bob alice's ten: each in carol's order.
    let from = |who: &str| -> Vec<u64> {
        seen_by_carol
            .iter()
            .filter(|m| m.1 == who)
            .map(|m| m.0)
            .collect()
    };
    let alice_got: Vec<u64> = (0..10).map(|_| parse_msg(&alice.until("MSG ")).1).collect();
    let bob_got: Vec<u64> = (0..10).map(|_| parse_msg(&bob.until("MSG ")).1).collect();
    assert_eq!(alice_got, from("bob"));
    assert_eq!(bob_got, from("alice"));

    // ROOMS counts everyone; whispers cross nodes.
    bob.send_line("ROOMS");
    assert_eq!(bob.until("ROOM #lobby"), "ROOM #lobby 3");
    alice.send_line("WHISPER bob psst");
    let whisper = bob.until("WHISPER ");
    assert!(whisper.ends_with(" alice bob psst"), "{whisper}");

    // A remote part and quit are announced.
    bob.send_line("QUIT bye");
    let quit = alice.until("QUIT ");
    assert!(quit.ends_with(" bob bye"), "{quit}");
    wait_users(&mut alice, "bob", false);
}

#[test]
fn nicknames_are_unique_across_nodes() {
    let Some(redis) = Redis::start("nicks") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    for round in 0..20 {
        let nick = format!("racer{round}");
        let mut x = Client::connect(a.addr);
        let mut y = Client::connect(b.addr);
        x.expect("HELLO ");
        y.expect("HELLO ");
        x.send_line(&format!("NICK {nick}"));
        y.send_line(&format!("NICK {nick}"));
        let answers = [x.line(), y.line()];
        let won = answers.iter().filter(|l| l.starts_with("WELCOME ")).count();
        let lost = answers
            .iter()
            .filter(|l| l.starts_with("ERR nick-taken "))
            .count();
        assert_eq!((won, lost), (1, 1), "round {round}: {answers:?}");
    }
    // A taken nickname on another node is refused with a free suggestion.
    let _holder = Client::register(a.addr, "dora");
    let mut other = Client::connect(b.addr);
    other.expect("HELLO ");
    other.send_line("NICK dora");
    let refusal = other.expect("ERR nick-taken ");
    let suggestion = refusal.rsplit(' ').next().unwrap_or_default().to_owned();
    other.send_line(&format!("NICK {suggestion}"));
    other.expect(&format!("WELCOME {suggestion} "));
    // Once its holder leaves, the nickname is free everywhere.
    drop(_holder);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Client::connect(b.addr);
        again.expect("HELLO ");
        again.send_line("NICK dora");
        if again.line().starts_with("WELCOME dora ") {
            break;
        }
        assert!(Instant::now() < deadline, "dora was never released");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_node_s_users_quit_once_and_no_ghost_comes_back() {
    let Some(redis) = Redis::start("kill") else {
        return;
    };
    let a = node(&redis, "a");
    let mut alice = Client::register(a.addr, "alice");
    let mut c = Process::start(&redis, "c");
    let _dave = Client::register(c.addr, "dave");
    alice.until("JOIN ");
    wait_users(&mut alice, "dave", true);
    let killed = Instant::now();
    c.kill();
    let quit = alice.until("QUIT ");
    assert!(quit.contains(" dave "), "{quit}");
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "the leave took {:?}",
        killed.elapsed()
    );
    alice.silent(500);
    // dave's nickname is free again, on a's node.
    let _dave_again = Client::register(a.addr, "dave");
    // A node restarted under the same name brings no ghosts back.
    drop(_dave_again);
    let c = Process::start(&redis, "c");
    let mut erin = Client::register(c.addr, "erin");
    let users = wait_users(&mut erin, "alice", true);
    assert!(!users.contains("dave"), "{users}");
}

#[test]
fn redis_trouble_is_said_and_refused_then_chat_resumes() {
    let Some(mut redis) = Redis::start("trouble") else {
        return;
    };
    let a = node(&redis, "a");
    let mut alice = Client::register(a.addr, "alice");
    redis.kill();
    let info = alice.until("INFO ");
    assert!(info.contains("lost touch"), "{info}");
    alice.send_line("anyone?");
    alice.expect("ERR cluster-unavailable ");
    let mut newcomer = Client::connect(a.addr);
    newcomer.expect("HELLO ");
    newcomer.send_line("NICK frank");
    newcomer.expect("ERR cluster-unavailable ");
    redis.restart();
    let info = alice.until("INFO ");
    assert!(info.contains("again"), "{info}");
    newcomer.send_line("NICK frank");
    newcomer.expect("WELCOME frank ");
    // Redis came back empty: the node told it again who is here, so a
    // newcomer on another node sees alice, and alice's nickname is still
    // hers.
    let b = node(&redis, "b");
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut bob, "alice", true);
    let mut thief = Client::connect(b.addr);
    thief.expect("HELLO ");
    thief.send_line("NICK alice");
    thief.expect("ERR nick-taken ");
    alice.send_line("back?");
    let (_, _, _, nick, text) = parse_msg(&bob.until("MSG "));
    assert_eq!((nick.as_str(), text.as_str()), ("alice", "back?"));
}

#[test]
fn a_client_that_moves_to_another_node_resumes_with_since() {
    let Some(redis) = Redis::start("since") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let mut mia = Client::register(a.addr, "mia");
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut alice, "bob", true);
    wait_users(&mut bob, "mia", true);
    bob.send_line("m1");
    let (_, seen, ..) = parse_msg(&mia.until("MSG "));
    let (_, first, ..) = parse_msg(&alice.until("MSG "));
    assert_eq!(seen, first);
    drop(mia);
    alice.until("QUIT ");
    let mut said = Vec::new();
    for i in 2..=4 {
        bob.send_line(&format!("m{i}"));
        let (_, id, _, nick, text) = parse_msg(&alice.until("MSG "));
        said.push((id, nick, text));
    }
    // mia comes back on the other node: the join replays the room from the
    // cluster's stream, and `since` gives exactly what she missed.
    let mut mia = register_when_free(b.addr, "mia");
    let (replay, _) = history(&mut mia, "#lobby");
    let replayed: Vec<&str> = replay.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(replayed, ["m1", "m2", "m3", "m4"]);
    mia.send_line(&format!("HISTORY #lobby since {seen}"));
    let (missed, count) = history(&mut mia, "#lobby");
    assert_eq!(missed, said);
    assert_eq!(count, 3);
    mia.send_line("HISTORY #lobby 2");
    let (last, _) = history(&mut mia, "#lobby");
    assert_eq!(last, said[1..]);
    mia.send_line(&format!("HISTORY #lobby before {}", said[0].0));
    let (before, _) = history(&mut mia, "#lobby");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].0, seen);
    // A room one is not in stays closed.
    mia.send_line("HISTORY #elsewhere");
    mia.expect("ERR ");
}

#[test]
fn a_node_cut_off_from_redis_catches_up_in_order_and_never_twice() {
    let Some(redis) = Redis::start("catchup") else {
        return;
    };
    let proxy = Proxy::start(&redis);
    let a = node_at(&proxy.url(), "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let mut bob = Client::register(b.addr, "bob");
    let mut carol = Client::register(b.addr, "carol");
    wait_users(&mut alice, "carol", true);
    wait_users(&mut bob, "alice", true);
    bob.send_line("before");
    let (_, before, ..) = parse_msg(&alice.until("MSG "));
    assert_eq!(parse_msg(&carol.until("MSG ")).1, before);
    proxy.cut();
    let info = alice.until("INFO ");
    assert!(info.contains("lost touch"), "{info}");
    let mut said = Vec::new();
    for i in 0..5 {
        bob.send_line(&format!("x{i}"));
        let (_, id, _, nick, text) = parse_msg(&carol.until("MSG "));
        said.push((id, nick, text));
    }
    assert!(said[0].0 > before);
    proxy.restore();
    let info = alice.until("INFO ");
    assert!(info.contains("again"), "{info}");
    let got: Vec<(u64, String, String)> = (0..5)
        .map(|_| {
            let (_, id, _, nick, text) = parse_msg(&alice.until("MSG "));
            (id, nick, text)
        })
        .collect();
    assert_eq!(got, said, "what alice missed, in order");
    bob.send_line("after");
    let (_, _, _, _, text) = parse_msg(&alice.until("MSG "));
    assert_eq!(text, "after", "nothing comes twice");
}

#[test]
fn parts_and_quits_during_an_outage_reach_the_others_once_it_is_over() {
    let Some(redis) = Redis::start("resync") else {
        return;
    };
    let proxy = Proxy::start(&redis);
    let a = node_at(&proxy.url(), "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let quinn = Client::register(a.addr, "quinn");
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut bob, "quinn", true);
    bob.send_line("JOIN #side");
    bob.until("USERS #side");
    alice.send_line("JOIN #side");
    alice.until("USERS #side");
    let join = bob.until("JOIN ");
    assert!(join.ends_with(" #side alice"), "{join}");
    proxy.cut();
    alice.until("INFO ");
    alice.send_line("PART #side");
    alice.until("PART ");
    drop(quinn);
    alice.until("QUIT ");
    proxy.restore();
    alice.until("INFO ");
    let mut part = 0;
    let mut quit = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (part, quit) != (1, 1) {
        assert!(Instant::now() < deadline, "part {part}, quit {quit}");
        let line = bob.line();
        if line.starts_with("PART ") && line.contains(" #side alice ") {
            part += 1;
        }
        if line.starts_with("QUIT ") && line.contains(" quinn ") {
            quit += 1;
        }
        assert!(!line.starts_with("JOIN "), "{line}");
    }
    bob.silent(500);
    let users = wait_users(&mut bob, "quinn", false);
    assert!(users.contains("alice"), "{users}");
    bob.send_line("USERS #side");
    let side = bob.until("USERS #side");
    assert!(!side.contains("alice"), "{side}");
}

#[test]
fn a_node_cut_off_longer_than_the_ttl_comes_back_once() {
    let Some(redis) = Redis::start("ttl") else {
        return;
    };
    let proxy = Proxy::start(&redis);
    let a = node_at(&proxy.url(), "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut bob, "alice", true);
    proxy.cut();
    // The others take node a for dead after its TTL (2 s).
    let quit = bob.until("QUIT ");
    assert!(quit.contains(" alice "), "{quit}");
    proxy.restore();
    alice.until("INFO ");
    let join = bob.until("JOIN ");
    assert!(join.ends_with(" #lobby alice"), "{join}");
    bob.silent(1000);
    wait_users(&mut bob, "alice", true);
    // And alice's nickname is hers again across the cluster.
    let mut thief = Client::connect(b.addr);
    thief.expect("HELLO ");
    thief.send_line("NICK alice");
    thief.expect("ERR nick-taken ");
    alice.send_line("back");
    let (_, _, _, nick, text) = parse_msg(&bob.until("MSG "));
    assert_eq!((nick.as_str(), text.as_str()), ("alice", "back"));
}

#[test]
fn redis_restarted_mid_chat_loses_nothing_it_accepted() {
    let Some(mut redis) = Redis::start_with("aof", true) else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut bob, "alice", true);
    bob.send_line("r0");
    let (_, start, ..) = parse_msg(&alice.until("MSG "));
    let mut said = Vec::new();
    for i in 1..=3 {
        bob.send_line(&format!("r{i}"));
        let (_, id, _, nick, text) = parse_msg(&alice.until("MSG "));
        said.push((id, nick, text));
    }
    redis.kill();
    alice.until("INFO ");
    redis.restart();
    let info = alice.until("INFO ");
    assert!(info.contains("again"), "{info}");
    alice.send_line(&format!("HISTORY #lobby since {start}"));
    let (kept, _) = history(&mut alice, "#lobby");
    assert_eq!(kept, said);
    // Once bob's node is back too, chat goes on: no message twice, and
    // ids keep growing.
    let info = bob.until("INFO ");
    assert!(info.contains("lost touch"), "{info}");
    let info = bob.until("INFO ");
    assert!(info.contains("again"), "{info}");
    bob.send_line("r4");
    let (_, id, _, _, text) = parse_msg(&alice.until("MSG "));
    assert_eq!(text, "r4");
    assert!(id > said[2].0);
}

/// Connects to `server` from the loopback address `127.0.0.<last>`.
fn connect_from(server: SocketAddr, last: u8) -> Client {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let local = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, last), 0);
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    bind(&fd, &local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    connect(&fd, &server).unwrap_or_else(|e| panic!("connect {server} from {local}: {e}"));
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true).expect("set_nodelay");
    Client::over(stream, format!("client from 127.0.0.{last}"))
}

#[test]
fn an_operator_on_one_node_kicks_mutes_and_bans_users_on_another() {
    let Some(redis) = Redis::start("ops") else {
        return;
    };
    let dir = operators::temp_dir("cluster-ops");
    operators::make_operator(&dir);
    let a = common::start(natter::Config {
        cluster: Some(redis.url()),
        node_id: Some("a".into()),
        node_ttl: Duration::from_secs(2),
        ..operators::sqlite_config(&dir)
    });
    let b = node(&redis, "b");
    // In cluster mode the nickname is claimed after the password check:
    // ACCOUNT comes first, WELCOME once the cluster agreed.
    let mut op = Client::connect(a.addr);
    op.set_name("oper");
    op.expect("HELLO ");
    op.send_line("LOGIN oper operator-password");
    op.until("ACCOUNT oper op ");
    op.until("WELCOME oper ");
    op.until("USERS #lobby");
    let mut dave = Client::register(b.addr, "dave");
    let mut erin = Client::register(b.addr, "erin");
    let mut sam = connect_from(b.addr, 2).register_as("sam");
    wait_users(&mut op, "sam", true);

    // A kick reaches the node dave is on, which closes him.
    op.send_line("KICK dave enough");
    let line = op.until("MOD ");
    assert!(line.contains(" #lobby oper kick dave "), "{line}");
    let line = erin.until("MOD ");
    assert!(line.contains(" #lobby oper kick dave "), "{line}");
    let err = dave.until("ERR ");
    assert!(
        err.starts_with("ERR kicked You were kicked by oper"),
        "{err}"
    );
    dave.until("BYE ");
    let quit = op.until("QUIT ");
    assert!(quit.contains(" dave kicked by oper"), "{quit}");

    // A mute holds on erin's node.
    op.send_line("MUTE erin 10m calm down");
    let line = erin.until("MOD ");
    assert!(line.contains(" #lobby oper mute erin "), "{line}");
    erin.send_line("but");
    erin.until("ERR muted ");
    op.send_line("UNMUTE erin");
    erin.until("MOD ");
    erin.send_line("thanks");
    let (_, _, _, nick, text) = parse_msg(&op.until("MSG "));
    assert_eq!((nick.as_str(), text.as_str()), ("erin", "thanks"));

    // An address ban closes who it matches on every node, and keeps
    // newcomers from that address out there too.
    op.send_line("BAN 127.0.0.2 1h spam");
    let err = sam.until("ERR ");
    assert!(err.starts_with("ERR banned "), "{err}");
    sam.until("BYE ");
    let quit = erin.until("QUIT ");
    assert!(quit.contains(" sam banned by oper"), "{quit}");
    let mut again = connect_from(b.addr, 2);
    let err = again.line();
    assert!(err.starts_with("ERR banned "), "{err}");

    // A nickname ban holds on the other node: its holder goes, and the
    // nickname cannot be taken there.
    op.send_line("BAN erin 1h");
    let err = erin.until("ERR ");
    assert!(err.starts_with("ERR banned "), "{err}");
    let mut erin = Client::connect(b.addr);
    erin.expect("HELLO ");
    erin.send_line("NICK erin");
    erin.expect("ERR banned ");

    // A node that starts later knows the bans made before it.
    let c = node(&redis, "c");
    let mut erin = Client::connect(c.addr);
    erin.expect("HELLO ");
    erin.send_line("NICK erin");
    erin.expect("ERR banned ");
    let mut again = connect_from(c.addr, 2);
    let err = again.line();
    assert!(err.starts_with("ERR banned "), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_nickname_registered_on_one_node_is_registered_on_every_node() {
    let Some(redis) = Redis::start("accounts") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    alice.send_line("REGISTER alices-password");
    alice.until("ACCOUNT alice ");
    drop(alice);
    // Once alice has gone, a guest on the other node still cannot take her
    // nickname (the nodes reload the cluster's accounts within a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut guest = Client::connect(b.addr);
        guest.expect("HELLO ");
        guest.send_line("NICK alice");
        let answer = guest.line();
        if answer.starts_with("ERR nick-registered ") {
            break;
        }
        assert!(
            answer.starts_with("ERR nick-taken ") || answer.starts_with("WELCOME "),
            "{answer}"
        );
        assert!(
            Instant::now() < deadline,
            "b never learnt that alice is registered: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Her password works there, and a wrong one does not.
    let mut wrong = Client::connect(b.addr);
    wrong.expect("HELLO ");
    wrong.send_line("LOGIN alice not-her-password");
    wrong.until("ERR ");
    let mut alice = Client::connect(b.addr);
    alice.expect("HELLO ");
    alice.send_line("LOGIN alice alices-password");
    let account = alice.until("ACCOUNT alice ");
    assert!(!account.starts_with("ACCOUNT alice op "), "{account}");
    alice.until("WELCOME alice ");
    // Nobody registers it again on the first node.
    let mut other = Client::register(a.addr, "ally");
    other.send_line("NICK alice");
    other.until("ERR ");
    // A password changed on one node is the one every node checks.
    alice.send_line("PASSWORD alices-password a-new-password");
    alice.until("INFO ");
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Client::connect(a.addr);
        again.expect("HELLO ");
        again.send_line("LOGIN alice a-new-password");
        if again.line().starts_with("ACCOUNT alice ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new password never worked on a"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_login_on_another_node_ends_the_first_session() {
    let Some(redis) = Redis::start("relogin") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut first = Client::register(a.addr, "alice");
    first.send_line("REGISTER alices-password");
    first.until("ACCOUNT alice ");
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut bob, "alice", true);
    let mut second = Client::connect(b.addr);
    second.set_name("second alice");
    second.expect("HELLO ");
    second.send_line("LOGIN alice alices-password");
    second.until("ACCOUNT alice ");
    let bye = first.until("BYE ");
    assert!(bye.contains("logged in from another connection"), "{bye}");
    second.until("WELCOME alice ");
    let quit = bob.until("QUIT ");
    assert!(
        quit.contains(" alice logged in from another connection"),
        "{quit}"
    );
    let join = bob.until("JOIN ");
    assert!(join.ends_with(" #lobby alice"), "{join}");
}

/// Runs `natter admin --cluster <redis> <args>`, with `password` on its
/// standard input; returns what it printed, and fails the test if it did.
fn admin(redis: &Redis, args: &[&str], password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["admin", "--cluster", &redis.url()])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start natter admin");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{password}");
    }
    let out = child.wait_with_output().expect("natter admin ran");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "natter admin {args:?}: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

/// Logs in to `addr` as `nick` until the answer starts with `want` (the
/// node reloads the cluster's accounts within a second), at most 5 s;
/// returns the client and that answer.
fn login_until(addr: SocketAddr, nick: &str, password: &str, want: &str) -> (Client, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = Client::connect(addr);
        client.set_name(nick);
        client.expect("HELLO ");
        client.send_line(&format!("LOGIN {nick} {password}"));
        let answer = client.line();
        if answer.starts_with(want) {
            return (client, answer);
        }
        assert!(
            Instant::now() < deadline,
            "LOGIN {nick} on {addr} never gave {want:?}: {answer}"
        );
        drop(client);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn natter_admin_works_on_the_cluster_s_store() {
    let Some(redis) = Redis::start("admin") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    // An account made with admin logs in on every node.
    let made = admin(&redis, &["create", "alice"], "alices-password");
    assert!(made.contains("alice is registered"), "{made}");
    let (alice, account) = login_until(a.addr, "alice", "alices-password", "ACCOUNT alice ");
    assert!(!account.starts_with("ACCOUNT alice op "), "{account}");
    drop(alice);
    let (mut alice, _) = login_until(b.addr, "alice", "alices-password", "ACCOUNT alice ");
    alice.until("WELCOME alice ");
    alice.until("USERS #lobby");
    // An operator made with admin is one on every node: alice, on b, kicks
    // bob off a, once b has reloaded.
    let mut bob = Client::register(a.addr, "bob");
    wait_users(&mut alice, "bob", true);
    admin(&redis, &["op", "alice"], "");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        alice.send_line("KICK bob enough");
        let line = loop {
            let line = alice.line();
            if line.starts_with("MOD ") || line.starts_with("ERR ") {
                break line;
            }
        };
        if line.starts_with("MOD ") {
            assert!(line.contains(" #lobby alice kick bob "), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice never became an operator: {line}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = bob.until("ERR ");
    assert!(err.starts_with("ERR kicked "), "{err}");
    // A ban made on a node is listed, and lifted everywhere by admin.
    alice.send_line("BAN carol 1h spam");
    let deadline = Instant::now() + Duration::from_secs(5);
    let listed = loop {
        let listed = admin(&redis, &["list"], "");
        if listed.contains("1 ban(s) in force") {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the ban never reached Redis: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        listed.starts_with("1 account(s) in the cluster"),
        "{listed}"
    );
    assert!(listed.contains("  alice  operator\n"), "{listed}");
    assert!(listed.contains("  nick carol until "), "{listed}");
    let lifted = admin(&redis, &["unban", "carol"], "");
    assert!(lifted.contains("The ban on carol is lifted"), "{lifted}");
    for addr in [a.addr, b.addr] {
        register_when_free(addr, "carol");
    }
    // A password set with admin is the one every node checks.
    admin(&redis, &["passwd", "alice"], "a-new-password");
    drop(alice);
    for addr in [a.addr, b.addr] {
        login_until(addr, "alice", "a-new-password", "ACCOUNT alice ");
    }
    // A deleted account logs in nowhere, and its nickname is free.
    let deleted = admin(&redis, &["delete", "alice"], "");
    assert!(deleted.contains("alice is deleted"), "{deleted}");
    for addr in [a.addr, b.addr] {
        login_until(addr, "alice", "a-new-password", "ERR ");
        register_when_free(addr, "alice");
    }
    let listed = admin(&redis, &["list"], "");
    assert!(
        listed.starts_with("0 account(s) in the cluster"),
        "{listed}"
    );
}

#[test]
fn a_node_s_own_accounts_join_the_cluster_and_the_cluster_s_win() {
    let Some(redis) = Redis::start("migrate") else {
        return;
    };
    // Before the cluster: carol and dave have accounts on a's database;
    // the cluster has another dave already.
    let dir = operators::temp_dir("cluster-migrate");
    let mut local = natter::accounts::admin::Admin::open(&dir).expect("a's database");
    for (nick, password) in [("carol", "carols-password"), ("dave", "a-dave-password")] {
        local
            .create(nick, &natter::protocol::Secret::new(password), false)
            .expect("a local account");
    }
    drop(local);
    admin(&redis, &["create", "dave"], "the-cluster-dave");
    let proxy = Proxy::start(&redis);
    let a = common::start(natter::Config {
        cluster: Some(proxy.url()),
        node_id: Some("a".into()),
        node_ttl: Duration::from_secs(2),
        ..operators::sqlite_config(&dir)
    });
    let b = node(&redis, "b");
    // carol's account is the cluster's: it logs in on b too.
    for addr in [b.addr, a.addr] {
        let (carol, _) = login_until(addr, "carol", "carols-password", "ACCOUNT carol ");
        drop(carol);
    }
    // The nickname dave belongs to the cluster's dave, on a as well.
    login_until(a.addr, "dave", "the-cluster-dave", "ACCOUNT dave ");
    let mut other = Client::connect(a.addr);
    other.expect("HELLO ");
    other.send_line("LOGIN dave a-dave-password");
    other.expect("ERR ");
    // carol left a's database (a delete in the cluster is for good); the
    // other dave stayed there, unused.
    let left = natter::accounts::admin::Admin::open(&dir)
        .and_then(|mut local| local.snapshot())
        .expect("a's database");
    let nicks: Vec<&str> = left.accounts.iter().map(|a| a.nick.as_str()).collect();
    assert_eq!(nicks, ["dave"]);
    // An account made later with admin on a's directory, without
    // --cluster, joins the cluster too.
    natter::accounts::admin::Admin::open(&dir)
        .and_then(|mut local| {
            local.create(
                "erin",
                &natter::protocol::Secret::new("erins-password"),
                false,
            )
        })
        .expect("a local account");
    // (Asked for until it is there: failed logins would be throttled.)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = admin(&redis, &["list"], "");
        if listed.contains("  erin\n") {
            assert!(
                listed.starts_with("3 account(s) in the cluster"),
                "{listed}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "erin never moved: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
    login_until(b.addr, "erin", "erins-password", "ACCOUNT erin ");
    // One made while a cannot reach Redis moves once it can.
    proxy.cut();
    natter::accounts::admin::Admin::open(&dir)
        .and_then(|mut local| {
            local.create(
                "fred",
                &natter::protocol::Secret::new("freds-password"),
                false,
            )
        })
        .expect("a local account");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!admin(&redis, &["list"], "").contains("  fred\n"));
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !admin(&redis, &["list"], "").contains("  fred\n") {
        assert!(Instant::now() < deadline, "fred never moved");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whispers of a private history answer up to `HIST END <target>`, as
/// (id, from, to, text).
fn private_history(client: &mut Client, target: &str) -> Vec<(u64, String, String, String)> {
    let mut got = Vec::new();
    for _ in 0..2000 {
        let line = client.until("HIST ");
        match natter::protocol::ServerLine::parse(&line) {
            Ok(natter::protocol::ServerLine::HistoryEnd { target: t, count }) if t == target => {
                assert_eq!(count as usize, got.len(), "{line}");
                return got;
            }
            // A room's replay on joining.
            Ok(natter::protocol::ServerLine::HistoryEnd { .. }) => {}
            Ok(natter::protocol::ServerLine::History(inner)) => {
                if let natter::protocol::ServerLine::Whisper {
                    id, from, to, text, ..
                } = *inner
                {
                    got.push((id, from, to, text));
                }
            }
            other => panic!(
                "{}: not a history line: {line:?} ({other:?})",
                client.name()
            ),
        }
    }
    panic!("{}: no HIST END {target}", client.name());
}

/// The id of the next `WHISPER` line `client` is sent.
fn whisper_id(client: &mut Client) -> u64 {
    let line = client.until("WHISPER ");
    match natter::protocol::ServerLine::parse(&line) {
        Ok(natter::protocol::ServerLine::Whisper { id, .. }) => id,
        other => panic!("{}: {line:?} ({other:?})", client.name()),
    }
}

#[test]
fn private_history_is_the_cluster_s_and_keeps_its_privacy() {
    let Some(redis) = Redis::start("private") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = Client::register(a.addr, "alice");
    let mut bob = Client::register(b.addr, "bob");
    bob.send_line("REGISTER bobs-password");
    bob.until("ACCOUNT bob ");
    wait_users(&mut alice, "bob", true);
    alice.send_line("WHISPER bob hi bob");
    let first = whisper_id(&mut bob);
    bob.send_line("WHISPER alice hi alice");
    let second = whisper_id(&mut alice);
    assert!(second > first);
    let both = vec![
        (first, "alice".into(), "bob".into(), "hi bob".into()),
        (second, "bob".into(), "alice".into(), "hi alice".into()),
    ];
    // Each side reads the conversation from its own node, with the ids it
    // was delivered with, and bob reads it from the other node too.
    alice.send_line("HISTORY bob");
    assert_eq!(private_history(&mut alice, "bob"), both);
    bob.send_line("HISTORY alice");
    assert_eq!(private_history(&mut bob, "alice"), both);
    drop(bob);
    let (mut bob, _) = login_until(a.addr, "bob", "bobs-password", "ACCOUNT bob ");
    bob.until("WELCOME bob ");
    bob.send_line("HISTORY alice");
    assert_eq!(private_history(&mut bob, "alice"), both);
    bob.send_line(&format!("HISTORY alice since {first}"));
    assert_eq!(private_history(&mut bob, "alice"), both[1..]);
    bob.send_line(&format!("HISTORY alice before {second}"));
    assert_eq!(private_history(&mut bob, "alice"), both[..1]);
    // A guest's whispers are for it alone: the next guest to take its
    // nickname, on a node that numbered none of them, reads none.
    let mut carol = Client::register(b.addr, "carol");
    wait_users(&mut alice, "carol", true);
    alice.send_line("WHISPER carol for the first carol");
    whisper_id(&mut carol);
    drop(carol);
    let mut carol = register_when_free(a.addr, "carol");
    carol.send_line("HISTORY alice");
    assert_eq!(private_history(&mut carol, "alice"), []);
    // Nor does anyone else read a conversation they are not in.
    carol.send_line("HISTORY bob");
    assert_eq!(private_history(&mut carol, "bob"), []);
}

/// Asks the test's Redis one command (each argument a bulk string) and
/// gives the first integer in its reply: `PUBSUB NUMSUB`'s count, `SCARD`.
fn redis_int(redis: &Redis, args: &[&str]) -> i64 {
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).expect("reach redis");
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).expect("ask redis");
    let mut reader = BufReader::new(s);
    for _ in 0..16 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("redis answers");
        if let Some(n) = line.strip_prefix(':') {
            return n.trim().parse().expect("an integer");
        }
    }
    panic!("no integer in redis's reply to {args:?}");
}

/// Waits (at most 5 s) until `PUBSUB NUMSUB` counts `want` nodes listening
/// to the room's channel.
fn wait_listeners(redis: &Redis, room: &str, want: i64) {
    let channel = format!("natter:room:{room}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = redis_int(redis, &["PUBSUB", "NUMSUB", &channel]);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} nodes listen to {channel}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_nodes_with_members_in_a_room_listen_to_it_and_a_newcomer_misses_nothing() {
    let Some(redis) = Redis::start("rooms") else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut alice = Client::register(a.addr, "alice");
    let mut bob = Client::register(b.addr, "bob");
    let mut carol = Client::register(c.addr, "carol");
    wait_users(&mut carol, "alice", true);
    wait_users(&mut carol, "bob", true);
    wait_listeners(&redis, "#lobby", 3);
    alice.send_line("JOIN #side");
    alice.until("USERS #side");
    bob.send_line("JOIN #side");
    bob.until("USERS #side");
    let join = alice.until("JOIN ");
    assert!(join.ends_with(" #side bob"), "{join}");
    // Presence still reaches every node: carol's ROOMS counts #side.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        carol.send_line("ROOMS");
        let mut rooms = Vec::new();
        loop {
            let line = carol.line();
            if line.starts_with("ROOMS ") {
                break;
            }
            if line.starts_with("ROOM ") {
                rooms.push(line);
            }
        }
        if rooms.iter().any(|r| r.starts_with("ROOM #side 2")) {
            break;
        }
        assert!(Instant::now() < deadline, "{rooms:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its messages reach only the two nodes with members there.
    wait_listeners(&redis, "#side", 2);
    let mut said = Vec::new();
    for i in 0..3 {
        alice.send_line(&format!("MSG #side s{i}"));
        let (_, id, _, _, text) = parse_msg(&bob.until("MSG "));
        said.push((id, text));
    }
    assert_eq!(
        redis_int(&redis, &["PUBSUB", "NUMSUB", "natter:room:#side"]),
        2
    );
    // carol joins on the third node: the room's next messages reach her,
    // and its history is the cluster's.
    carol.send_line("JOIN #side");
    let (replay, _) = history(&mut carol, "#side");
    let replayed: Vec<&str> = replay.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(replayed, ["s0", "s1", "s2"]);
    wait_listeners(&redis, "#side", 3);
    bob.send_line("MSG #side next");
    let (_, id, room, nick, text) = parse_msg(&carol.until("MSG "));
    assert_eq!(
        (room.as_str(), nick.as_str(), text.as_str()),
        ("#side", "bob", "next")
    );
    assert!(id > said[2].0);
    carol.send_line(&format!("HISTORY #side since {}", said[0].0));
    let (since, count) = history(&mut carol, "#side");
    let texts: Vec<&str> = since.iter().map(|m| m.2.as_str()).collect();
    assert_eq!((texts, count), (vec!["s1", "s2", "next"], 3));
    carol.silent(300);
    // Once its last member here leaves, the node stops listening.
    carol.send_line("PART #side");
    carol.until("PART ");
    wait_listeners(&redis, "#side", 2);
    alice.send_line("PART #side");
    alice.until("PART ");
    wait_listeners(&redis, "#side", 1);
}

#[test]
fn a_node_cut_off_with_hundreds_of_users_reclaims_their_nicknames_at_once() {
    let Some(redis) = Redis::start("reclaim") else {
        return;
    };
    let proxy = Proxy::start(&redis);
    let a = node_at(&proxy.url(), "a");
    let b = node(&redis, "b");
    // More than a big room's worth: the lobby's joins are not listed to
    // each newcomer, so each just waits for its welcome.
    let users: Vec<Client> = (0..300)
        .map(|i| {
            let mut user = Client::connect(a.addr);
            user.expect("HELLO ");
            user.send_line(&format!("NICK user{i}"));
            user.until("WELCOME ");
            user
        })
        .collect();
    let mut bob = Client::register(b.addr, "bob");
    wait_users(&mut bob, "user0", true);
    assert_eq!(redis_int(&redis, &["SCARD", "natter:node:a:nicks"]), 300);
    proxy.cut();
    // Taken for dead after its TTL (2 s): its nicknames are free meanwhile.
    wait_users(&mut bob, "user0", false);
    assert_eq!(redis_int(&redis, &["EXISTS", "natter:nick:user150"]), 0);
    assert_eq!(redis_int(&redis, &["SCARD", "natter:node:a:nicks"]), 0);
    proxy.restore();
    wait_users(&mut bob, "user0", true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis_int(&redis, &["SCARD", "natter:node:a:nicks"]) != 300 {
        assert!(Instant::now() < deadline, "node a's nicknames came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(redis_int(&redis, &["SCARD", "natter:members:#lobby"]), 301);
    for nick in ["user0", "user150", "user299"] {
        let mut thief = Client::connect(b.addr);
        thief.expect("HELLO ");
        thief.send_line(&format!("NICK {nick}"));
        thief.expect("ERR nick-taken ");
    }
    drop(users);
}
