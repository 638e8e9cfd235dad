//! Hostile and clumsy input: telnet negotiation and editing, control
//! characters, broken UTF-8, endless lines, peers that are not chat clients,
//! clients that stop reading, and the server's limits. Every case runs over a
//! real socket with the raw bytes a real client sends.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::Client;
use common::{config, parse_msg, start};

/// Telnet: Interrupt Process, then DO TIMING-MARK, as telnet sends on Ctrl-C.
const CTRL_C: &[u8] = b"\xff\xf4\xff\xfd\x06";
/// The answer that unblocks telnet after Ctrl-C: WONT TIMING-MARK.
const WONT_TIMING_MARK: &[u8] = b"\xff\xfc\x06";

/// Two registered clients that have seen each other join.
fn pair(server: &common::Server) -> (Client, Client) {
    let mut alice = Client::register(server.addr, "alice");
    let bob = Client::register(server.addr, "bob");
    alice.expect("JOIN ");
    (alice, bob)
}

/// The text of the next chat line `client` receives, checking its sender.
fn chat_from(client: &mut Client, sender: &str) -> String {
    let (_, _, _, nick, text) = parse_msg(&client.line());
    assert_eq!(nick, sender);
    text
}

// telnet asks for options on connect; each is refused so it settles into
// plain line mode: DO → WONT, WILL → DONT.
#[test]
fn telnet_options_are_refused() {
    let server = start(config());
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send(b"\xff\xfd\x18"); // DO TERMINAL-TYPE
    assert_eq!(c.bytes(3), b"\xff\xfc\x18", "WONT TERMINAL-TYPE");
    c.send(b"\xff\xfb\x01"); // WILL ECHO
    assert_eq!(c.bytes(3), b"\xff\xfe\x01", "DONT ECHO");
    c.send(b"\xff\xfd\x1f\xff\xfb\x03"); // DO NAWS, WILL SUPPRESS-GO-AHEAD
    assert_eq!(c.bytes(6), b"\xff\xfc\x1f\xff\xfe\x03");
    // Refusals are never answered, so no negotiation loop can start.
    c.send(b"\xff\xfc\x18\xff\xfe\x01");
    c.silent(300);
    c.send(b"NICK tel\r\n");
    c.expect("WELCOME tel ");
}

// A telnet command split across TCP segments is still understood, and the
// text around it is intact.
#[test]
fn telnet_sequences_split_across_reads() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    let pause = Duration::from_millis(60);
    for part in [&b"\xff"[..], b"\xfd", b"\x18"] {
        alice.send(part);
        std::thread::sleep(pause);
    }
    assert_eq!(alice.bytes(3), b"\xff\xfc\x18");
    for part in [&b"hel"[..], b"\xff", b"\xfb", b"\x01lo", b"\r", b"\n"] {
        alice.send(part);
        std::thread::sleep(pause);
    }
    assert_eq!(alice.bytes(3), b"\xff\xfe\x01");
    assert_eq!(chat_from(&mut bob, "alice"), "hello");
    // A subnegotiation split up the same way is skipped whole.
    for part in [&b"a\xff"[..], b"\xfa\x18", b"\x00xterm\xff", b"\xf0b\r\n"] {
        alice.send(part);
        std::thread::sleep(pause);
    }
    assert_eq!(chat_from(&mut bob, "alice"), "ab");
    alice.silent(200);
    bob.silent(200);
}

// Ctrl-C in telnet clears the line being typed and is answered, so telnet
// does not hang and the user stays connected.
#[test]
fn telnet_ctrl_c_clears_the_line_and_is_answered() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"hel");
    std::thread::sleep(Duration::from_millis(50));
    alice.send(CTRL_C);
    assert_eq!(alice.bytes(3), WONT_TIMING_MARK);
    alice.send(b"lo\r\n");
    assert_eq!(chat_from(&mut bob, "alice"), "lo");
    // All in one write too.
    alice.send(b"secret\xff\xf4\xff\xfd\x06ok\r\n");
    assert_eq!(alice.bytes(3), WONT_TIMING_MARK);
    assert_eq!(chat_from(&mut bob, "alice"), "ok");
    alice.send_crlf("PING still-here");
    alice.expect_exact("PONG still-here");
    bob.silent(200);
}

// IAC IAC is a literal 0xFF byte, which is never valid UTF-8: the line is
// refused and the session goes on.
#[test]
fn telnet_iac_iac_is_a_literal_ff() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"caf\xff\xff\r\n");
    alice.expect("ERR bad-utf8 ");
    bob.silent(300);
    alice.send_crlf("fine");
    assert_eq!(chat_from(&mut bob, "alice"), "fine");
}

// Backspace and DEL erase the previous character, as a person expects.
#[test]
fn backspace_and_delete_edit_the_line() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"helo\x08lo\r\n");
    assert_eq!(chat_from(&mut bob, "alice"), "hello");
    alice.send(b"wordx\x7f!\n");
    assert_eq!(chat_from(&mut bob, "alice"), "word!");
    // One backspace erases a whole multi-byte character.
    alice.send("caf\u{e9}\x08e\n".as_bytes());
    assert_eq!(chat_from(&mut bob, "alice"), "cafe");
    // Telnet's Erase Character does the same.
    alice.send(b"ab\xff\xf7c\r\n");
    assert_eq!(chat_from(&mut bob, "alice"), "ac");
    bob.silent(200);
}

// Every line end a client might send ends a line, and none makes an extra
// (empty) line: CR NUL, lone CR, CRLF and LF.
#[test]
fn every_line_end_is_understood() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"one\r\0two\rthree\r\nfour\n");
    for want in ["one", "two", "three", "four"] {
        assert_eq!(chat_from(&mut bob, "alice"), want);
    }
    // The same, with each line end split across writes.
    for part in [&b"five\r"[..], b"\0six\r", b"\nseven\r", b"eight\n"] {
        alice.send(part);
        std::thread::sleep(Duration::from_millis(50));
    }
    for want in ["five", "six", "seven", "eight"] {
        assert_eq!(chat_from(&mut bob, "alice"), want);
    }
    alice.send_line("PING end");
    alice.expect_exact("PONG end");
    bob.silent(300);
}

// Nobody can move another user's cursor, recolour their terminal or ring
// their bell: control characters, ESC and C1 codes are never relayed.
#[test]
fn control_characters_are_never_relayed() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    alice.send("\x1b[2J\x07red\x1b[31m \u{9b}x\n".as_bytes());
    alice.send("\x1b]0;pwned\x07\u{85}tab\there\u{8d}\n".as_bytes());
    for _ in 0..2 {
        let line = bob.line_bytes();
        assert!(
            line.iter().all(|&b| b >= 0x20 && b != 0x7f),
            "control byte relayed: {line:?}"
        );
        let text = String::from_utf8(line).expect("UTF-8");
        assert!(
            !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
            "C1 code relayed: {text:?}"
        );
        let (_, _, _, nick, text) = parse_msg(&text);
        assert_eq!(nick, "alice");
        assert!(
            (text.contains("red") && text.ends_with('x')) || text.contains("tab here"),
            "the printable text survives: {text:?}"
        );
    }
    // A line of nothing but control characters says nothing at all.
    alice.send(b"\x1b\x07\x1b\n");
    bob.silent(300);
    // Names and reasons cannot carry them either.
    alice.send(b"QUIT \x1b[5mblink\x07\n");
    alice.expect("BYE ");
    let quit = bob.line_bytes();
    assert!(quit.iter().all(|&b| b >= 0x20 && b != 0x7f), "{quit:?}");
    assert!(String::from_utf8(quit)
        .unwrap()
        .ends_with(" alice [5mblink"));
}

// Invalid UTF-8 gets an error, the line is dropped and the session goes on.
#[test]
fn invalid_utf8_is_refused_and_the_session_kept() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    for bad in [
        &b"\xc3\x28 oops\n"[..],
        b"\xed\xa0\x80\n",
        b"\xc0\xaf\n",
        b"ok\x80\n",
    ] {
        alice.send(bad);
        let err = alice.expect("ERR bad-utf8 ");
        assert!(err.len() > "ERR bad-utf8 ".len(), "with a sentence");
    }
    bob.silent(300);
    alice.send("gr\u{fc}\u{df}e \u{1f600}\n".as_bytes());
    assert_eq!(chat_from(&mut bob, "alice"), "gr\u{fc}\u{df}e \u{1f600}");
    // Before registration too.
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send(b"NICK \xfe\n");
    c.expect("ERR bad-utf8 ");
    c.send_line("NICK carol");
    c.expect("WELCOME carol ");
}

// A line over the default limit of 1024 bytes gets an error; the rest of it
// is discarded and the session goes on. 1024 bytes exactly is fine.
#[test]
fn over_long_line_is_refused_and_the_session_kept() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    let exact = "x".repeat(1024);
    alice.send_line(&exact);
    assert_eq!(chat_from(&mut bob, "alice"), exact);
    let long = format!("{}TAIL", "y".repeat(1025));
    alice.send_line(&long);
    let err = alice.expect("ERR line-too-long ");
    assert!(err.contains("1024"), "{err}");
    bob.silent(300);
    alice.send_line("short again");
    assert_eq!(chat_from(&mut bob, "alice"), "short again");
    alice.silent(200);
}

// The line limit is configurable.
#[test]
fn custom_line_limit() {
    let server = start(natter::Config {
        max_line: 64,
        ..config()
    });
    let (mut alice, mut bob) = pair(&server);
    alice.send_line(&"a".repeat(64));
    assert_eq!(chat_from(&mut bob, "alice"), "a".repeat(64));
    alice.send_line(&"b".repeat(65));
    let err = alice.expect("ERR line-too-long ");
    assert!(err.contains("64"), "{err}");
    // The long line is split across writes: still one error, nothing relayed.
    alice.send(&[b'c'; 50]);
    std::thread::sleep(Duration::from_millis(50));
    alice.send(&[b'c'; 50]);
    std::thread::sleep(Duration::from_millis(50));
    alice.send(b"cc\r\n");
    alice.expect("ERR line-too-long ");
    alice.send_line("PING after");
    alice.expect_exact("PONG after");
    bob.silent(300);
}

// An empty line gets no reply, before or after registration.
#[test]
fn empty_lines_are_ignored() {
    let server = start(config());
    let mut c = Client::connect(server.addr);
    c.expect("HELLO ");
    c.send(b"\n\r\n\r\0   \n\t\n");
    c.silent(300);
    c.send_line("NICK alice");
    c.until("USERS ");
    let mut bob = Client::register(server.addr, "bob");
    c.expect("JOIN ");
    c.send(b"\n\r\n   \r\n");
    c.silent(300);
    bob.silent(300);
}

// A web browser pointed at the chat port gets a one-line explanation and is
// disconnected.
#[test]
fn http_request_is_not_chat() {
    let server = start(config());
    let mut bob = Client::register(server.addr, "bob");
    let mut web = Client::connect(server.addr);
    web.send(b"GET / HTTP/1.1\r\nHost: localhost:5555\r\nUser-Agent: test\r\n\r\n");
    web.expect("HELLO ");
    let err = web.expect("ERR not-chat ");
    assert!(err.contains("web"), "{err}");
    web.expect("BYE ");
    web.expect_eof();
    bob.silent(300);
}

// A TLS client (https:// or openssl s_client) gets the same treatment.
#[test]
fn tls_client_hello_is_not_chat() {
    let server = start(config());
    let mut tls = Client::connect(server.addr);
    // The start of a TLS 1.2 ClientHello record.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc4, 0x01, 0x00, 0x00, 0xc0, 0x03, 0x03,
    ];
    hello.extend((0u8..32).map(|i| i.wrapping_mul(37)));
    tls.send(&hello);
    tls.expect("HELLO ");
    let err = tls.expect("ERR not-chat ");
    assert!(err.contains("TLS"), "{err}");
    tls.expect("BYE ");
    tls.expect_eof();
}

// A chat line that merely mentions HTTP is chat, not a web request.
#[test]
fn chat_that_looks_like_http_is_chat() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    alice.send_line("GET / HTTP/1.1");
    assert_eq!(chat_from(&mut bob, "alice"), "GET / HTTP/1.1");
}

/// `sender` says lines `first..first + n` (each padded with `padding`) in one
/// write, and `reader` must get every one of them, in order; returns the
/// `QUIT` lines that came meanwhile.
fn relay_batch(
    sender: &mut Client,
    reader: &mut Client,
    first: usize,
    n: usize,
    padding: &str,
) -> Vec<String> {
    let bytes: String = (first..first + n)
        .map(|i| format!("{i} {padding}\n"))
        .collect();
    sender.send(bytes.as_bytes());
    let mut quits = Vec::new();
    let mut got = 0;
    while got < n {
        let line = reader.line();
        if line.starts_with("QUIT ") {
            quits.push(line);
            continue;
        }
        let (_, _, _, nick, text) = parse_msg(&line);
        assert_eq!(nick, "sender");
        assert_eq!(text, format!("{} {padding}", first + got), "no line lost");
        got += 1;
    }
    quits
}

// A client that stops reading never delays anyone else: everyone gets every
// message promptly, and the slow one is disconnected once its outbox is full.
#[test]
fn slow_reader_is_dropped_and_delays_nobody() {
    let server = start(natter::Config {
        outbox_bytes: 64 << 10,
        rate: 0,
        shutdown_grace: Duration::from_millis(500),
        ..config()
    });
    let mut sender = Client::register(server.addr, "sender");
    let mut reader = Client::register(server.addr, "reader");
    let slow = Client::register(server.addr, "slow");
    sender.expect("JOIN ");
    sender.expect("JOIN ");
    reader.expect("JOIN ");
    // `slow` never reads again.

    const BATCH: usize = 16;
    const MAX_BATCHES: usize = 2_000; // ~30 MB: far more than the kernel buffers
    let padding = "p".repeat(900);
    let mut sent = 0usize;
    let mut quit_seen_at = None;
    let started = Instant::now();
    for batch in 0..MAX_BATCHES {
        for quit in relay_batch(&mut sender, &mut reader, sent, BATCH, &padding) {
            assert!(quit.contains(" slow too slow"), "{quit}");
            assert!(quit_seen_at.is_none(), "one QUIT only");
            quit_seen_at = Some(batch);
        }
        sent += BATCH;
        if quit_seen_at.is_some_and(|at| batch >= at + 10) {
            break;
        }
    }
    let at = quit_seen_at.unwrap_or_else(|| {
        panic!(
            "slow was never dropped after {sent} lines in {:?}",
            started.elapsed()
        )
    });
    // The batches after the drop went through just as well; the sender heard
    // of it too, once.
    assert!(sent >= (at + 10) * BATCH);
    let quit = sender.until("QUIT ");
    assert!(quit.ends_with(" slow too slow: stopped reading"), "{quit}");
    sender.silent(200);
    reader.silent(200);
    let mut slow = slow;
    slow.set_name("slow");
    slow.drain_to_eof(1 << 30);
    sender.send_line("USERS");
    sender.expect_exact("USERS #lobby reader sender");
}

// Stalled clients together cannot hold more than the server-wide bound: with
// a per-client bound no test could reach, the stalled ones are still cut off
// once they are behind and all outboxes hold `outbox_total_bytes`, while the
// client that keeps up loses nothing.
#[test]
fn stalled_clients_are_cut_off_at_the_server_wide_bound() {
    let server = start(natter::Config {
        outbox_bytes: 1 << 30,
        outbox_total_bytes: 256 << 10,
        rate: 0,
        shutdown_grace: Duration::from_millis(500),
        ..config()
    });
    let mut sender = Client::register(server.addr, "sender");
    let mut reader = Client::register(server.addr, "reader");
    let stalled: Vec<Client> = (0..3)
        .map(|i| Client::register(server.addr, &format!("stalled{i}")))
        .collect();
    for _ in 0..3 {
        reader.expect("JOIN ");
    }
    const BATCH: usize = 16;
    const MAX_BATCHES: usize = 4_000; // ~60 MB each: far more than the kernel buffers
    let padding = "p".repeat(900);
    let mut quits = 0;
    let mut sent = 0;
    let started = Instant::now();
    while quits < 3 && sent < BATCH * MAX_BATCHES {
        for quit in relay_batch(&mut sender, &mut reader, sent, BATCH, &padding) {
            assert!(quit.contains(" too slow: stopped reading"), "{quit}");
            quits += 1;
        }
        sent += BATCH;
    }
    assert_eq!(
        quits,
        3,
        "after {sent} lines in {:?} the stalled clients were not all dropped",
        started.elapsed()
    );
    drop(stalled);
    sender.send_line("USERS");
    sender.until("USERS #lobby reader sender");
}

// Past the client limit a newcomer is refused politely; those already in are
// unaffected, and once someone leaves a newcomer gets in.
#[test]
fn max_clients_refuses_politely() {
    let server = start(natter::Config {
        max_clients: 2,
        ..config()
    });
    let (mut alice, mut bob) = pair(&server);
    let mut extra = Client::connect(server.addr);
    let err = extra.expect("ERR server-full ");
    assert!(err.contains('2'), "{err}");
    extra.expect("BYE ");
    extra.expect_eof();
    alice.send_line("still here");
    assert_eq!(chat_from(&mut bob, "alice"), "still here");
    alice.silent(200);
    bob.send_line("QUIT making room");
    bob.expect("BYE ");
    bob.expect_eof();
    alice.expect("QUIT ");
    // The seat is free once bob's session has ended, a moment after its EOF.
    let mut carol = common::retry(
        "a newcomer is accepted",
        50,
        Duration::from_millis(100),
        || {
            let mut c = Client::connect(server.addr);
            let first = c.line();
            if first.starts_with("ERR server-full ") {
                return None;
            }
            assert!(first.starts_with("HELLO "), "{first}");
            Some(c)
        },
    );
    carol.send_line("NICK carol");
    carol.expect("WELCOME carol ");
    alice.expect("JOIN ");
}

// A connection that never picks a nickname is closed after the registration
// timeout; registered users stay and hear nothing of it.
#[test]
fn register_timeout_closes_idle_connections() {
    let server = start(natter::Config {
        register_timeout: Duration::from_secs(1),
        ..config()
    });
    let mut alice = Client::register(server.addr, "alice");
    let mut idle = Client::connect(server.addr);
    idle.expect("HELLO ");
    // The deadline is kept in whole seconds, so it may come a little early
    // or late; `line` waits 5 s.
    let err = idle.expect("ERR timeout ");
    assert!(err.contains("nickname"), "{err}");
    idle.expect("BYE ");
    idle.expect_eof();
    alice.silent(300);
    std::thread::sleep(Duration::from_millis(1500));
    alice.send_line("PING still-registered");
    alice.expect_exact("PONG still-registered");
}

/// Pastes 30 lines at once from alice and returns how long bob took to get
/// them all; each must arrive, in order.
fn paste_30(alice: &mut Client, bob: &mut Client) -> Duration {
    let paste: String = (0..30).map(|i| format!("pasted line {i}\n")).collect();
    let started = Instant::now();
    alice.send(paste.as_bytes());
    for i in 0..30 {
        let line = bob.line_within(Duration::from_secs(20));
        let (_, _, _, nick, text) = parse_msg(&line);
        assert_eq!(
            (nick.as_str(), text.as_str()),
            ("alice", &*format!("pasted line {i}"))
        );
    }
    started.elapsed()
}

// The rate limit slows a flood down without losing any of it.
#[test]
fn rate_limit_slows_a_paste_but_loses_nothing() {
    let server = start(natter::Config {
        rate: 5,
        burst: 5,
        ..config()
    });
    let (mut alice, mut bob) = pair(&server);
    let took = paste_30(&mut alice, &mut bob);
    // 5 at once, then 25 at 5 per second: about 5 s.
    assert!(took >= Duration::from_secs(3), "took only {took:?}");
    bob.silent(300);
}

// With the rate limit off, a paste goes through at once.
#[test]
fn rate_limit_can_be_switched_off() {
    let server = start(natter::Config {
        rate: 0,
        ..config()
    });
    let (mut alice, mut bob) = pair(&server);
    let took = paste_30(&mut alice, &mut bob);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    bob.silent(300);
}

// The default burst lets an ordinary paste through at full speed.
#[test]
fn default_rate_lets_a_normal_paste_through() {
    let server = start(config());
    let (mut alice, mut bob) = pair(&server);
    let took = paste_30(&mut alice, &mut bob);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

// Lines that fail to parse pay the rate limit too: 50,000 unknown commands
// as fast as a socket takes them get about rate × seconds + burst answers,
// and the others' chat still arrives promptly.
#[test]
fn failing_lines_pay_the_rate_limit_too() {
    use std::io::{BufRead, BufReader};
    let server = start(natter::Config {
        rate: 10,
        burst: 50,
        ..config()
    });
    let (mut alice, mut bob) = pair(&server);
    let flooder = TcpStream::connect(server.addr).expect("connect");
    let mut writer = flooder.try_clone().expect("clone");
    writer.write_all(b"NICK flooder\n").expect("nick");
    // Writes block once the server reads this client slowly: bounded.
    writer
        .set_write_timeout(Some(Duration::from_secs(4)))
        .expect("timeout");
    let flood = std::thread::spawn(move || {
        let lines = b"/zzz\n".repeat(50_000);
        let _ = writer.write_all(&lines);
    });
    let started = Instant::now();
    alice.send_line("hello through the flood");
    // The flooder's arrival may be announced first.
    let mut got = bob.line_within(Duration::from_secs(2));
    while got.starts_with("JOIN ") {
        got = bob.line_within(Duration::from_secs(2));
    }
    assert!(got.contains("hello through the flood"), "{got}");
    // Count the flooder's answers for 3 s.
    flooder
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut reader = BufReader::new(flooder);
    let mut answers = 0u64;
    let mut line = String::new();
    while started.elapsed() < Duration::from_secs(3) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.starts_with("ERR unknown-command") => answers += 1,
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs() + 1;
    let allowed = 50 + 10 * secs + 20;
    assert!(answers >= 40, "the flooder was answered: {answers}");
    assert!(
        answers <= allowed,
        "{answers} answers in about {secs} s, more than {allowed}"
    );
    drop(reader);
    let _ = flood.join();
}

// A raw socket that connects and leaves without a word costs nothing and
// bothers nobody.
#[test]
fn connect_and_leave_silently() {
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    for _ in 0..20 {
        drop(TcpStream::connect(server.addr).expect("connect"));
    }
    alice.silent(300);
    alice.send_line("PING ok");
    alice.expect_exact("PONG ok");
}
