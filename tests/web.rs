//! The web listener against a real server on 127.0.0.1: the page over
//! plain HTTP, hostile heads, and the chat over WebSocket next to raw TCP
//! users, with every limit of the plain port.
#![cfg(feature = "web")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use common::raw::Client;
use common::TIMEOUT;
use futures_lite::{future, StreamExt};

/// A server with a plain listener and a web listener on fresh ports.
struct WebServer {
    plain: SocketAddr,
    web: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start(config: natter::Config) -> WebServer {
    let bind =
        || smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
    let (plain, web) = (bind(), bind());
    let addrs = (
        plain.local_addr().expect("address"),
        web.local_addr().expect("address"),
    );
    let mut listeners = natter::server::Listeners::plain(plain);
    listeners.web = Some(web);
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        smol::block_on(natter::server::serve_with(listeners, config, async move {
            let _ = stopped.recv().await;
        }))
    });
    WebServer {
        plain: addrs.0,
        web: addrs.1,
        stop: Some(stop),
        thread: Some(thread),
    }
}

type Ws = WebSocketStream<smol::net::TcpStream>;

/// Opens the WebSocket, with `origin` if given.
async fn ws_connect(addr: SocketAddr, origin: Option<&str>) -> Ws {
    let stream = smol::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    if let Some(origin) = origin {
        let value = HeaderValue::from_str(origin).expect("origin");
        request.headers_mut().insert("Origin", value);
    }
    let (ws, _) = async_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake");
    ws
}

/// The next text frame, within [`TIMEOUT`]; `None` once closed.
async fn ws_line(ws: &mut Ws) -> Option<String> {
    let next = future::or(async { Some(ws.next().await) }, async {
        smol::Timer::after(TIMEOUT).await;
        None
    })
    .await;
    match next.expect("a WebSocket frame within the timeout") {
        Some(Ok(Message::Text(text))) => Some(text.as_str().to_owned()),
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
    }
}

/// Skips frames until one starts with `prefix`.
async fn ws_until(ws: &mut Ws, prefix: &str) -> String {
    for _ in 0..1000 {
        match ws_line(ws).await {
            Some(line) if line.starts_with(prefix) => return line,
            Some(_) => continue,
            None => panic!("closed while waiting for {prefix:?}"),
        }
    }
    panic!("no {prefix:?}")
}

async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}

/// Registers `nick` over WebSocket.
async fn ws_register(addr: SocketAddr, nick: &str) -> Ws {
    let mut ws = ws_connect(addr, None).await;
    ws_until(&mut ws, "HELLO natter/1.1 ").await;
    ws_send(&mut ws, &format!("NICK {nick}")).await;
    ws_until(&mut ws, &format!("WELCOME {nick} ")).await;
    ws_until(&mut ws, "USERS #lobby").await;
    ws
}

/// Sends raw bytes over HTTP and reads the whole answer until the server
/// closes (at most [`TIMEOUT`]).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn config() -> natter::Config {
    common::config()
}

#[test]
fn a_websocket_user_and_a_tcp_user_chat_both_ways() {
    // Story: someone in the browser and someone at nc are in the same chat, and hear each other.
    let server = start(config());
    smol::block_on(async {
        let mut web = ws_register(server.web, "webby").await;
        let mut tcp = Client::register(server.plain, "nc_user");
        ws_until(&mut web, "JOIN ").await;
        ws_send(&mut web, "hello from the browser").await;
        let line = tcp.until("MSG ");
        assert!(
            line.ends_with(" #lobby webby hello from the browser"),
            "{line}"
        );
        tcp.send_line("hello from nc");
        let line = ws_until(&mut web, "MSG ").await;
        assert!(line.ends_with(" #lobby nc_user hello from nc"), "{line}");
        assert!(!line.ends_with('\n'), "frames carry no line end");
        ws_send(&mut web, "WHISPER nc_user psst").await;
        let line = tcp.until("WHISPER ");
        assert!(line.ends_with(" webby nc_user psst"), "{line}");
    });
}

#[test]
fn the_rate_limit_applies_to_websocket_users() {
    // Story: a browser cannot flood the room any faster than a TCP client can.
    let server = start(natter::Config {
        rate: 5,
        burst: 2,
        ..config()
    });
    smol::block_on(async {
        let mut web = ws_register(server.web, "flood").await;
        let mut tcp = Client::register(server.plain, "watch");
        ws_until(&mut web, "JOIN ").await;
        let start = Instant::now();
        for i in 0..7 {
            ws_send(&mut web, &format!("line {i}")).await;
        }
        for i in 0..7 {
            let line = tcp.until("MSG ");
            assert!(line.ends_with(&format!("line {i}")), "{line}");
        }
        // Two at once, then five at 5 per second.
        assert!(
            start.elapsed() >= Duration::from_millis(800),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn a_message_over_max_line_gets_an_error_and_closes_and_a_binary_frame_is_refused() {
    // Story: an oversize frame cannot make the server buffer more than a line; a binary frame is answered, not obeyed.
    let server = start(natter::Config {
        max_line: 64,
        ..config()
    });
    smol::block_on(async {
        let mut web = ws_register(server.web, "big").await;
        let mut tcp = Client::register(server.plain, "watch");
        ws_until(&mut web, "JOIN ").await;
        web.send(Message::binary(vec![1, 2, 3]))
            .await
            .expect("send");
        let line = ws_until(&mut web, "ERR ").await;
        assert!(line.starts_with("ERR bad-argument "), "{line}");
        let exact = "x".repeat(64);
        ws_send(&mut web, &exact).await;
        assert!(tcp.until("MSG ").ends_with(&exact));
        ws_send(&mut web, &"y".repeat(65)).await;
        let line = ws_until(&mut web, "ERR ").await;
        assert!(line.starts_with("ERR line-too-long "), "{line}");
        let mut closed = false;
        for _ in 0..10 {
            if ws_line(&mut web).await.is_none() {
                closed = true;
                break;
            }
        }
        assert!(closed, "the connection ends after an oversize message");
        tcp.until("QUIT ");
    });
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[test]
fn the_websocket_refuses_pages_of_other_origins_unless_allowed() {
    // Story: a page on another site cannot open a chat connection in its visitor's name.
    let server = start(config());
    let host = format!("Host: {}\r\n", server.web);
    let foreign = format!("{UPGRADE}{host}Origin: https://evil.example\r\n\r\n");
    let answer = http(server.web, foreign.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    let own = format!("{UPGRADE}{host}Origin: http://{}\r\n\r\n", server.web);
    let mut stream = TcpStream::connect(server.web).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.write_all(own.as_bytes()).expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("answer");
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(server);

    let server = start(natter::Config {
        web_origins: vec!["https://evil.example".into()],
        ..config()
    });
    smol::block_on(async {
        let mut ws_conn = ws_connect(server.web, Some("https://evil.example")).await;
        ws_until(&mut ws_conn, "HELLO ").await;
    });
}

#[test]
fn a_plain_http_client_gets_the_page_404_405_and_431() {
    // Story: a browser loads the page with its security headers; anything else gets a clear status and a closed connection.
    let server = start(config());
    let page = http(server.web, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("\r\nContent-Security-Policy: default-src 'self'; script-src 'self';"));
    assert!(page.contains("\r\nX-Content-Type-Options: nosniff\r\n"));
    assert!(page.contains("\r\nCache-Control: no-cache\r\n"));
    assert!(page.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("<!doctype html>"));
    let missing = http(server.web, b"GET /etc/passwd HTTP/1.1\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = http(server.web, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
    while huge.len() < 9 * 1024 {
        huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    huge.extend_from_slice(b"\r\n");
    let answer = http(server.web, &huge);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[test]
fn garbage_on_the_web_port_is_closed_promptly() {
    // Story: a peer that does not speak HTTP is hung up on at once, not left holding a slot.
    let server = start(config());
    let start = Instant::now();
    let answer = http(server.web, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");
    assert!(answer.is_empty(), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_head_that_trickles_forever_is_closed_by_the_deadline() {
    // Story: a peer dribbling one header byte at a time cannot hold a connection past the head deadline.
    let server = start(config());
    let mut stream = TcpStream::connect(server.web).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .expect("write");
    let start = Instant::now();
    let closed = loop {
        std::thread::sleep(Duration::from_millis(250));
        if stream.write_all(b"a").is_err() {
            break start.elapsed();
        }
        stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => break start.elapsed(),
            Err(err)
                if err.kind() != std::io::ErrorKind::WouldBlock
                    && err.kind() != std::io::ErrorKind::TimedOut =>
            {
                break start.elapsed()
            }
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never closed");
    };
    assert!(
        closed >= Duration::from_secs(8),
        "closed too early: {closed:?}"
    );
}

#[test]
fn a_slow_websocket_reader_is_dropped_without_hurting_others() {
    // Story: a phone that stops reading is disconnected when its outbox fills; everyone else keeps chatting.
    let server = start(natter::Config {
        outbox_bytes: 16 << 10,
        rate: 0,
        ..config()
    });
    smol::block_on(async {
        let mut slow = ws_register(server.web, "slow").await;
        let mut fast = ws_register(server.web, "fast").await;
        let mut tcp = Client::register(server.plain, "talker");
        ws_until(&mut slow, "JOIN ").await;
        ws_until(&mut fast, "JOIN ").await;
        // From here on `slow` reads nothing; `talker` sends from a thread
        // of its own, paced so that `fast` keeps up.
        let writer = std::thread::spawn(move || {
            let text = "z".repeat(900);
            for i in 0..8000 {
                tcp.send_line(&text);
                if i % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            tcp
        });
        let mut got = 0;
        let mut slow_left = false;
        while got < 8000 && !slow_left {
            let line = ws_line(&mut fast).await.expect("fast stays connected");
            if line.starts_with("MSG ") {
                got += 1;
            } else if line.starts_with("QUIT ") && line.contains(" slow ") {
                slow_left = true;
            }
        }
        assert!(
            slow_left,
            "the slow reader was dropped ({got} lines went by)"
        );
        ws_send(&mut fast, "still here").await;
        let mut tcp = writer.join().expect("writer");
        let mut line = tcp.until("MSG ");
        while line.ends_with(&"z".repeat(900)) {
            line = tcp.until("MSG ");
        }
        assert!(line.ends_with(" #lobby fast still here"), "{line}");
        drop(slow);
    });
}

#[test]
fn a_taken_web_port_stops_the_server_with_a_sentence_naming_the_flags() {
    // Story: whoever starts natter where 8080 is busy is told which port and how to move or drop it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--bind", "127.0.0.1:0", "--history", "off"])
        .args(["--accounts", "memory", "--web-bind", &address.to_string()])
        .output()
        .expect("run natter serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address.to_string()), "{stderr}");
    assert!(
        stderr.contains("--web-bind") && stderr.contains("--no-web"),
        "{stderr}"
    );
}

#[test]
fn the_start_up_log_gives_the_web_client_url() {
    // Story: the person starting the server reads the address to open in a browser.
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--bind", "127.0.0.1:0", "--history", "off"])
        .args(["--accounts", "memory", "--web-bind", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start natter serve");
    let stderr = child.stderr.take().expect("stderr");
    let (found, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("web client") && line.contains("url=http://127.0.0.1:") {
                let _ = found.send(line);
                return;
            }
        }
    });
    let line = lines.recv_timeout(TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a `web client url=...` line");
    let url = line
        .split("url=")
        .nth(1)
        .expect("url")
        .split_whitespace()
        .next()
        .expect("url");
    assert!(url.ends_with('/'), "{url}");
}

/// Opens the WebSocket by hand on a plain socket, so the test decides what
/// is answered: this peer never answers a ping. Returns the socket after
/// the 101.
fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read the 101"), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    stream
}

#[test]
fn a_websocket_peer_that_answers_no_ping_is_closed_and_one_that_does_stays() {
    // Story: a phone that vanished without a goodbye is noticed by the next ping; a live one is kept.
    let server = start(natter::Config {
        web_ping: Duration::from_secs(1),
        ..config()
    });
    let mut mute = raw_ws(server.web);
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match mute.read(&mut buf) {
            Ok(0) | Err(_) => break start.elapsed(),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never closed");
    };
    // A ping frame (opcode 9) came before the close.
    assert!(seen.contains(&0x89), "no ping in {seen:?}");
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_secs(5),
        "closed after {closed:?}"
    );
    smol::block_on(async {
        // async-tungstenite answers pings as it reads.
        let mut live = ws_register(server.web, "alive").await;
        let mut tcp = Client::register(server.plain, "witness");
        let until = Instant::now() + Duration::from_millis(3500);
        while Instant::now() < until {
            let next = future::or(async { Some(live.next().await) }, async {
                smol::Timer::at(until).await;
                None
            })
            .await;
            if let Some(frame) = next {
                assert!(matches!(frame, Some(Ok(_))), "closed: {frame:?}");
            }
        }
        ws_send(&mut live, "still here after three pings").await;
        let line = tcp.until("MSG ");
        assert!(
            line.ends_with(" alive still here after three pings"),
            "{line}"
        );
    });
}

/// An address ban made by an operator over TCP, then WebSocket connections
/// through a proxy on loopback that forwards for that address.
#[test]
fn behind_the_trusted_proxy_bans_see_the_forwarded_address_and_only_there() {
    // Story: behind nginx, a banned visitor is turned away although every connection comes from the proxy.
    let dir = std::env::temp_dir().join(format!("natter-web-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    natter::accounts::admin::Admin::open(&dir)
        .expect("open accounts")
        .create(
            "owner",
            &natter::protocol::Secret::new("owner-password"),
            true,
        )
        .expect("create operator");
    let with_proxy = |proxy: &str| natter::Config {
        accounts: natter::accounts::AccountsMode::Sqlite(dir.clone()),
        web_trust_proxy: Some(proxy.parse().expect("address")),
        ..config()
    };
    // What the server sends in its first 1.5 s (or until it closes).
    let forwarded = |addr: SocketAddr, from: &str| {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             X-Forwarded-For: {from}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let server = start(with_proxy("127.0.0.1"));
    let mut op = Client::connect(server.plain);
    op.expect("HELLO ");
    op.send_line("LOGIN owner owner-password");
    op.until("ACCOUNT owner op ");
    op.send_line("BAN 203.0.113.7 10m");
    let info = op.until("INFO ");
    assert!(info.contains("203.0.113.7 is banned"), "{info}");
    // Through the proxy, for the banned address: turned away at once.
    let banned = forwarded(server.web, "198.51.100.1, 203.0.113.7");
    assert!(banned.contains("ERR banned "), "{banned}");
    assert!(banned.contains("BYE "), "{banned}");
    // Through the proxy, for someone else: in.
    let other = forwarded(server.web, "198.51.100.9");
    assert!(other.contains("HELLO natter/1.1 "), "{other}");
    assert!(!other.contains("ERR banned "), "{other}");
    drop(op);
    drop(server);
    // From a peer that is not the trusted proxy, the header is ignored.
    let server = start(with_proxy("192.0.2.99"));
    let ignored = forwarded(server.web, "203.0.113.7");
    assert!(ignored.contains("HELLO natter/1.1 "), "{ignored}");
    assert!(!ignored.contains("ERR banned "), "{ignored}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_web_serves_no_web_client_and_leaves_its_port_alone() {
    // Story: an operator who wants only nc and the TUI turns the web client off, and its port stays free.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--bind", "127.0.0.1:0", "--history", "off"])
        .args(["--accounts", "memory", "--no-web"])
        .args(["--web-bind", &address.to_string()])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start natter serve");
    let stderr = child.stderr.take().expect("stderr");
    let (found, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = found.send(line);
        }
    });
    // It starts although --web-bind's port is taken, and names no web URL.
    let mut log = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !log.iter().any(|l: &String| l.contains("accounts loaded")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "natter exited: {log:?}");
    assert!(log.iter().any(|l| l.contains("listening")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("web client")), "{log:?}");
    drop(taken);
}

#[test]
fn the_web_listener_turns_away_an_address_past_its_limit_with_a_429() {
    // Story: a script that opens page after page from one address is told "Too Many Requests", and the
    // connections it already holds keep working.
    let server = start(natter::Config {
        max_per_address: 2,
        ..config()
    });
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.web).expect("connect"))
        .collect();
    let answer = http(server.web, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    let mut first = &held[0];
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    first.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut page = Vec::new();
    let _ = first.read_to_end(&mut page);
    assert!(
        page.starts_with(b"HTTP/1.1 200 "),
        "the held connection is served"
    );
    drop(held);
    // Once they are closed, the address is welcome again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = http(
            server.web,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn page_loads_do_not_spend_the_connection_rate_and_websocket_sessions_do() {
    // Story: someone reloads the page again and again (a connection per file each time) and still gets
    // in; a script that opens WebSocket after WebSocket is told "Too Many Requests" past the burst.
    let server = start(natter::Config {
        max_per_address: 16,
        connect_rate: 30,
        connect_burst: 3,
        ..config()
    });
    for _ in 0..40 {
        let page = http(
            server.web,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    }
    let sessions: Vec<TcpStream> = (0..3).map(|_| raw_ws(server.web)).collect();
    let refused = http(
        server.web,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    // Files are still served to that address.
    let page = http(
        server.web,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    drop(sessions);
}

#[test]
fn behind_the_trusted_proxy_each_forwarded_client_has_its_own_connection_limits() {
    // Story: behind nginx every connection comes from the proxy; one visitor's reconnect loop is
    // throttled, and the other visitors are not.
    let server = start(natter::Config {
        max_per_address: 2,
        connect_rate: 30,
        connect_burst: 2,
        web_trust_proxy: Some("127.0.0.1".parse().expect("address")),
        ..config()
    });
    let through_proxy = |from: &str| {
        let mut stream = TcpStream::connect(server.web).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             X-Forwarded-For: {from}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write");
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).expect("a status line");
        (String::from_utf8_lossy(&first).into_owned(), stream)
    };
    // More sessions than --max-per-address through the one proxy address.
    let held: Vec<(String, TcpStream)> = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .map(|from| through_proxy(from))
        .collect();
    for (status, _) in &held {
        assert_eq!(status, "HTTP/1.1 101", "each visitor counts alone");
    }
    // One visitor past its own burst is refused; another is still welcome.
    let (second, _kept) = through_proxy("198.51.100.1");
    assert_eq!(second, "HTTP/1.1 101");
    let (third, _) = through_proxy("198.51.100.1");
    assert_eq!(third, "HTTP/1.1 429");
    let (other, _) = through_proxy("198.51.100.4");
    assert_eq!(other, "HTTP/1.1 101");
}
