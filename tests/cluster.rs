//! Several nodes as one chat through a real Redis (`--cluster`): each test
//! starts its own `redis-server` on a free loopback port, with no
//! persistence and a private directory, and stops it by PID. Nodes are
//! in-process servers, or `natter serve` child processes where a test kills
//! one. Without redis-server installed the tests say so and pass, except
//! under `CI=true`, where that is a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::Client;
use common::{parse_msg, TempDir};

/// A redis-server of the test's own, killed by PID when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: TempDir,
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
        let child = Self::spawn(port, &dir);
        let redis = Redis { child, port, dir };
        redis.wait_ready();
        Some(redis)
    }

    fn spawn(port: u16, dir: &TempDir) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
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
        self.child = Self::spawn(self.port, &self.dir);
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
    common::start(natter::Config {
        cluster: Some(redis.url()),
        node_id: Some(node.to_owned()),
        node_ttl: Duration::from_secs(2),
        ..common::config()
    })
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("natter serve exited at once: {status}");
            }
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "natter serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
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
