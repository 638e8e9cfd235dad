//! The server at its limits: the operating system's (out of file
//! descriptors), its own per address (connections open at once, new
//! connections per minute), and a history answer larger than a client's
//! outbox.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::Client;
use common::{config, start};

/// A `natter serve` child allowed only `fds` open file descriptors.
struct Limited(Child);

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_with_fd_limit(fds: u32) -> (Limited, std::net::SocketAddr) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let script = format!(
        "ulimit -n {fds} && exec \"$0\" serve --no-web --bind 127.0.0.1:{port} --history off --accounts memory --threads 1 --max-per-address 0 --connect-rate 0"
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_natter"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start natter serve under ulimit");
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    common::retry("the server accepts", 100, Duration::from_millis(50), || {
        std::net::TcpStream::connect(addr).ok()
    });
    (Limited(child), addr)
}

#[test]
fn out_of_descriptors_refuses_newcomers_politely_and_serves_the_rest() {
    // Story: at the process's descriptor limit a newcomer is told the server is full, and everyone inside keeps chatting.
    let (_server, addr) = serve_with_fd_limit(48);
    let mut inside = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let mut client = Client::connect(addr);
        let first = client.line();
        if first.starts_with("ERR server-full ") {
            client.expect("BYE ");
            client.expect_eof();
            refused = Some(i);
            break;
        }
        assert!(first.starts_with("HELLO "), "{first}");
        client.send_line(&format!("NICK user{i}"));
        client.expect("WELCOME ");
        inside.push(client);
    }
    let refused = refused.expect("the descriptor limit was reached within 100 clients");
    assert!(
        refused > 10,
        "only {refused} clients fit under 48 descriptors"
    );

    // Everyone inside is still served.
    let (first, rest) = inside.split_first_mut().expect("clients inside");
    let last = rest.last_mut().expect("more than one client inside");
    last.send_line("PING still-here");
    last.until("PONG still-here");
    first.send_line("hello from the first");
    assert!(last.until("MSG ").ends_with(" user0 hello from the first"));

    // When someone leaves, a newcomer gets in again.
    let mut leaver = inside.pop().expect("a client to leave");
    leaver.send_line("QUIT");
    leaver.until("BYE ");
    drop(leaver);
    let newcomer = common::retry(
        "a newcomer is accepted again",
        50,
        Duration::from_millis(100),
        || {
            let mut client = Client::connect(addr);
            client.line().starts_with("HELLO ").then_some(client)
        },
    );
    drop(newcomer);
}

/// A `natter serve` child on a plain and a TLS port, with a self-signed
/// certificate, allowed only `fds` open file descriptors; returns both
/// addresses and the certificate's fingerprint.
#[cfg(feature = "tls")]
fn serve_tls_with_fd_limit(
    fds: u32,
) -> (Limited, std::net::SocketAddr, std::net::SocketAddr, String) {
    use std::io::BufRead;
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (plain, tls) = (free(), free());
    let script = format!(
        "ulimit -n {fds} && exec \"$0\" serve --no-web --bind {plain} --tls-bind {tls} --tls-self-signed \
         --history off --accounts memory --threads 1 --max-per-address 0 --connect-rate 0"
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_natter"))
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start natter serve under ulimit");
    let stderr = child.stderr.take().expect("stderr");
    let limited = Limited(child);
    // The server logs every connection: read its stderr to the end, so it
    // never blocks on a full pipe, and hand over the fingerprint.
    let (found, fingerprint) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("self-signed TLS certificate") {
                let last = line.rsplit(' ').next().unwrap_or_default().to_owned();
                let _ = found.send(last);
            }
        }
    });
    let fingerprint = fingerprint
        .recv_timeout(Duration::from_secs(10))
        .expect("natter serve prints its fingerprint");
    common::retry("the server accepts", 100, Duration::from_millis(50), || {
        std::net::TcpStream::connect(tls).ok()
    });
    (limited, plain, tls, fingerprint)
}

#[cfg(feature = "tls")]
#[test]
fn out_of_descriptors_refuses_tls_newcomers_in_words() {
    // Story: at the descriptor limit a TLS newcomer is told inside TLS that the server is full, not cut off mid-handshake.
    let (_server, _plain, tls, fingerprint) = serve_tls_with_fd_limit(48);
    let mut inside = Vec::new();
    for i in 0..100 {
        let mut client = Client::tls(tls, &fingerprint)
            .unwrap_or_else(|e| panic!("client {i}: the handshake failed: {e}"));
        let first = client.line();
        if first.starts_with("ERR server-full ") {
            client.expect("BYE ");
            assert!(i > 10, "only {i} clients fit under 48 descriptors");
            return;
        }
        assert!(first.starts_with("HELLO "), "{first}");
        inside.push(client);
    }
    panic!("the descriptor limit was not reached within 100 clients");
}

/// The server's configuration with the per-address limits as `natter serve`
/// has them by default.
fn default_limits() -> natter::Config {
    let defaults = natter::Config::default();
    natter::Config {
        max_per_address: defaults.max_per_address,
        connect_rate: defaults.connect_rate,
        connect_burst: defaults.connect_burst,
        ..config()
    }
}

/// Connects to `addr` and checks that the server refuses at once with
/// `ERR <code>`, `BYE` and a clean close; returns the `ERR` line.
fn refused(addr: std::net::SocketAddr, code: &str) -> String {
    let mut client = Client::connect(addr);
    let err = client.line();
    assert!(err.starts_with(&format!("ERR {code} ")), "{err}");
    client.expect("BYE ");
    client.expect_eof();
    err
}

#[test]
fn the_seventeenth_connection_from_one_address_is_refused_while_sixteen_chat_on() {
    // Story: one host cannot take every seat: its 17th connection is told why and closed; its 16 others chat on.
    let config = default_limits();
    assert_eq!(config.max_per_address, 16, "the documented default");
    let server = start(config);
    let mut inside: Vec<Client> = (0..16)
        .map(|i| Client::register(server.addr, &format!("user{i}")))
        .collect();
    let err = refused(server.addr, "too-many-connections");
    assert!(err.contains("16"), "the sentence names the limit: {err}");

    // The sixteen are served as before.
    let (first, rest) = inside.split_first_mut().expect("clients inside");
    first.send_line("still here, all of us");
    for client in rest.iter_mut() {
        assert!(client
            .until("MSG ")
            .ends_with(" user0 still here, all of us"));
    }

    // One leaves, and its seat is free again.
    let mut leaver = inside.pop().expect("a client to leave");
    leaver.send_line("QUIT");
    leaver.until("BYE ");
    leaver.expect_eof();
    let newcomer = common::retry(
        "a newcomer gets the seat",
        50,
        Duration::from_millis(50),
        || {
            let mut client = Client::connect(server.addr);
            client.line().starts_with("HELLO ").then_some(client)
        },
    );
    drop(newcomer);
    server.stop();
}

#[test]
fn max_per_address_zero_turns_the_limit_off() {
    // Story: an operator whose users share one address (a gateway, a benchmark) switches the limit off.
    let server = start(natter::Config {
        max_per_address: 0,
        connect_rate: 0,
        ..default_limits()
    });
    let clients: Vec<Client> = (0..24)
        .map(|i| Client::register(server.addr, &format!("user{i}")))
        .collect();
    assert_eq!(clients.len(), 24);
    server.stop();
}

#[cfg(feature = "tls")]
#[test]
fn the_per_address_limit_counts_both_listeners_and_refuses_inside_tls() {
    // Story: a host over its share is told so on the TLS port too, in TLS, where its client can show it.
    let tls = common::start_tls(
        natter::Config {
            max_per_address: 1,
            ..default_limits()
        },
        true,
    );
    let _alice = Client::register(tls.server.addr, "alice");
    let mut late = Client::tls(tls.tls_addr, &tls.fingerprint).expect("the handshake completes");
    let err = late.line();
    assert!(err.starts_with("ERR too-many-connections "), "{err}");
    late.expect("BYE ");
}

#[test]
fn connections_beyond_the_burst_are_refused_until_the_rate_allows() {
    // Story: a client reconnecting in a loop is turned away with a reason, and gets in again at the rate.
    let server = start(natter::Config {
        max_per_address: 0,
        connect_rate: 60,
        connect_burst: 3,
        ..config()
    });
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(server.addr);
        client.expect("HELLO ");
        held.push(client);
    }
    let err = refused(server.addr, "connect-throttled");
    assert!(err.ends_with("try again in 1 s."), "{err}");
    // Closing connections does not refill the bucket; time does.
    drop(held);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "too slow to test"
    );
    let mut again = Client::connect(server.addr);
    assert!(again.line().starts_with("ERR connect-throttled "));
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(started.elapsed()));
    let mut later = Client::connect(server.addr);
    later.expect("HELLO ");
    server.stop();
}

#[test]
fn a_history_answer_arrives_whole_or_its_client_is_dropped() {
    // Story: a client that asks for more history than its outbox holds, and does not read, is dropped like any slow reader, never left with a cut-off replay.
    const MESSAGES: usize = 500;
    let server = start(natter::Config {
        history: natter::store::HistoryMode::Memory,
        replay: 0,
        outbox_bytes: 128 << 10,
        max_line: 16 * 1024,
        rate: 0,
        ..config()
    });
    // 8 MB of history: more than the kernel buffers between the server and
    // a client that does not read.
    let mut writer = Client::register(server.addr, "writer");
    let padding = "h".repeat(16_000);
    for i in 0..MESSAGES {
        writer.send_line(&format!("{i} {padding}"));
    }
    writer.send_line("PING written");
    writer.until("PONG written");

    let mut slow = std::net::TcpStream::connect(server.addr).expect("connect");
    slow.write_all(format!("NICK slow\r\nHISTORY #lobby {MESSAGES}\r\n").as_bytes())
        .expect("send");
    // `slow` reads nothing until the server has judged it.
    let quit = writer.until("QUIT ");
    assert!(quit.ends_with(" slow too slow: stopped reading"), "{quit}");

    slow.set_read_timeout(Some(common::TIMEOUT))
        .expect("timeout");
    let mut bytes = Vec::new();
    slow.read_to_end(&mut bytes)
        .expect("the server closes the connection");
    let text = String::from_utf8_lossy(&bytes);
    let hist = text.lines().filter(|l| l.starts_with("HIST MSG ")).count();
    match text.lines().find(|l| l.starts_with("HIST END ")) {
        // Had it fitted after all, it would be whole.
        Some(end) => assert_eq!(
            (end, hist),
            (&*format!("HIST END #lobby {MESSAGES}"), MESSAGES)
        ),
        None => assert!(hist < MESSAGES, "{hist} lines and no end"),
    }
    // Everyone else is served as before.
    writer.send_line("PING after");
    writer.until("PONG after");
    server.stop();
}
