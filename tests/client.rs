//! The client core (connection + model, no terminal) against a real server
//! on 127.0.0.1:0, with raw sockets as the other users, and against fake
//! servers that misbehave.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::driver::{settings, Driver};
use common::raw::Client;
use common::TIMEOUT;
use natter::client::{Action, Backoff, ConnState, EntryKind, Settings, SystemKind, Target};
use natter::protocol::Timestamp;
use natter::store::HistoryMode;

/// A server that can be stopped and started again on the same address.
struct Restartable {
    addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Restartable {
    fn start(addr: &str) -> Restartable {
        Restartable::with(addr, common::config())
    }

    fn with(addr: &str, config: natter::Config) -> Restartable {
        let listener = smol::block_on(smol::net::TcpListener::bind(addr)).expect("bind");
        let addr = listener.local_addr().expect("listener address");
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            smol::block_on(natter::serve(listener, config, async move {
                let _ = stopped.recv().await;
            }))
        });
        Restartable {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn chat_users_and_mentions_with_a_real_server() {
    // Story: a client user and an nc user chat; the client shows who is here and what they say.
    let server = common::start(common::config());
    let mut alice = Driver::start(server.addr, "alice");
    alice.online();
    assert_eq!(alice.model.nick(), Some("alice"));
    alice.until("own user list", |m| m.users() == ["alice"]);

    let mut bob = Client::register(server.addr, "bob");
    alice.until("bob's join", |m| m.users() == ["alice", "bob"]);
    bob.send_line("hi alice, welcome");
    alice.until("bob's message", |m| {
        m.scrollback().iter().any(|e| {
            matches!(&e.kind, EntryKind::Chat { nick, text, mention: true, own: false, room }
                if nick == "bob" && text == "hi alice, welcome" && room == "#lobby")
        })
    });

    let sent = alice.enter("hello bob");
    assert!(sent.clear_input);
    assert!(alice.has_line("<alice> hello bob"), "local echo");
    let line = bob.until("MSG ");
    assert!(line.ends_with(" #lobby alice hello bob"), "{line}");

    bob.send_line("NICK bobby");
    alice.until("bob's rename", |m| m.users() == ["alice", "bobby"]);
    bob.send_line("QUIT off to lunch");
    alice.until("bob's leave", |m| m.users() == ["alice"]);
    assert!(alice.has_line("* bobby left (off to lunch)"));
}

#[test]
fn a_taken_nick_prompts_with_the_servers_suggestion() {
    // Story: a taken nickname re-prompts with the server's suggestion, which then works.
    let server = common::start(common::config());
    let _bob = Client::register(server.addr, "bob");
    let mut other = Driver::start(server.addr, "bob");
    let deadline = Instant::now() + TIMEOUT;
    while other.prompts.is_empty() && Instant::now() < deadline {
        if let Ok(event) = other.events.recv_timeout(Duration::from_millis(50)) {
            let changes = other.model.apply(event, Timestamp::now());
            other.prompts.extend(changes.nick_prompt);
        }
    }
    let prompt = other.prompts.first().cloned().expect("a nick prompt");
    assert_eq!(prompt.suggestion, "bob2");
    assert!(prompt.message.contains("bob"), "{}", prompt.message);
    assert_eq!(*other.model.state(), ConnState::Registering);

    // Chat before having a nickname is refused, visibly.
    let refused = other.enter("hello?");
    assert_eq!(refused.action, Action::None);
    assert!(!refused.clear_input);

    other.enter(&format!("/nick {}", prompt.suggestion));
    other.online();
    assert_eq!(other.model.nick(), Some("bob2"));
}

#[test]
fn reconnects_and_registers_again_after_a_server_restart() {
    // Story: if the connection drops, the client says so, retries, re-registers, re-joins and carries on.
    let mut server = Restartable::start("127.0.0.1:0");
    let addr = server.addr;
    let mut alice = Driver::start(addr, "alice");
    alice.online();
    alice.enter("/nick alice2");
    alice.until("the rename", |m| m.nick() == Some("alice2"));
    alice.enter("/join #rust");
    alice.until("the join", |m| m.room() == "#rust");

    server.stop();
    alice.until("the drop", |m| {
        matches!(m.state(), ConnState::Offline { .. })
    });
    assert!(
        alice.model.users().is_empty(),
        "nobody is known while offline"
    );
    assert!(
        alice
            .lines()
            .iter()
            .any(|l| l.starts_with("* Disconnected: ")),
        "{:#?}",
        alice.lines()
    );
    let refused = alice.enter("anyone there?");
    assert_eq!(
        refused.action,
        Action::None,
        "typing while offline is refused"
    );
    assert!(alice
        .lines()
        .last()
        .is_some_and(|l| l.contains("Not sent") && l.contains("still in the input line")));

    let _server = Restartable::start(&addr.to_string());
    alice.online();
    assert_eq!(
        alice.model.nick(),
        Some("alice2"),
        "the current nick, not the first"
    );
    alice.until("#rust again", |m| {
        m.room() == "#rust" && m.rooms().count() == 2
    });
    let mut bob = Client::register(addr, "bob");
    bob.send_line("JOIN #rust");
    alice.until("bob in #rust", |m| m.users() == ["alice2", "bob"]);
    alice.enter("back again");
    let line = bob.until("MSG ");
    assert!(line.ends_with(" #rust alice2 back again"), "{line}");
}

#[test]
fn a_logged_in_user_logs_in_again_after_a_reconnect() {
    // Story: I registered my nickname; after the server restarts, my client takes it back by itself.
    let dir = std::env::temp_dir().join(format!("natter-client-login-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = || natter::Config {
        accounts: natter::accounts::AccountsMode::Sqlite(dir.clone()),
        ..common::config()
    };
    let mut server = Restartable::with("127.0.0.1:0", config());
    let addr = server.addr;
    let mut alice = Driver::start(addr, "alice");
    alice.online();
    alice.enter("/register first-password");
    alice.until("the account", |m| {
        m.scrollback().iter().any(|e| {
            matches!(&e.kind, EntryKind::System { text, .. } if text.starts_with("alice is now registered"))
        })
    });
    alice.enter("/password first-password second-password");
    alice.until("the change", |m| {
        m.scrollback().iter().any(|e| {
            matches!(&e.kind, EntryKind::System { text, .. } if text == "Your password is changed.")
        })
    });

    server.stop();
    alice.until("the drop", |m| {
        matches!(m.state(), ConnState::Offline { .. })
    });
    // Meanwhile someone tries to take the nickname: refused.
    let _server = Restartable::with(&addr.to_string(), config());
    let mut mallory = Client::connect(addr);
    mallory.expect("HELLO ");
    mallory.send_line("NICK alice");
    mallory.expect("ERR nick-registered ");
    alice.online();
    assert_eq!(alice.model.nick(), Some("alice"));
    assert!(
        alice.prompts.is_empty(),
        "no nickname prompt: {:?}",
        alice.prompts
    );
    alice.until("the login", |m| {
        m.scrollback().iter().any(|e| {
            matches!(&e.kind, EntryKind::System { text, .. } if text == "You are logged in as alice.")
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quitting_sends_the_reason_and_ends_the_thread() {
    // Story: quitting tells the others why I left, and does not reconnect.
    let server = common::start(common::config());
    let mut bob = Client::register(server.addr, "bob");
    let mut alice = Driver::start(server.addr, "alice");
    alice.online();
    bob.until("JOIN ");
    let submitted = alice.enter("/quit see you tomorrow");
    let Action::Quit(reason) = submitted.action else {
        panic!("not a quit: {submitted:?}");
    };
    alice.conn.quit(&reason);
    assert!(alice.conn.wait(TIMEOUT), "the connection thread ends");
    let line = bob.until("QUIT ");
    assert!(line.ends_with(" alice see you tomorrow"), "{line}");
    alice.until("closed", |m| matches!(m.state(), ConnState::Closed { .. }));
}

/// A fake server: accepts one connection and hands it over.
fn fake_server() -> (
    SocketAddr,
    impl FnOnce() -> (BufReader<TcpStream>, TcpStream),
) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    (addr, move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        (reader, stream)
    })
}

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line from the client");
    line
}

#[test]
fn garbage_from_the_server_is_shown_raw_and_never_fatal() {
    // Story: a broken or newer server never crashes the client; malformed lines are shown as they came.
    let (addr, accept) = fake_server();
    let mut alice = Driver::start(addr, "alice");
    let (mut reader, mut stream) = accept();
    assert_eq!(read_line(&mut reader), "NICK alice\r\n");
    let mut garbage = Vec::new();
    garbage.extend_from_slice(b"WELCOME alice hi\r\n");
    garbage.extend_from_slice(b"FROB the widget\r\n");
    garbage.extend_from_slice(b"MSG yesterday 1 #lobby bob hi\r\n");
    garbage.extend_from_slice(b"INFO bad \xff utf-8 \x1b[2J escape\r\n");
    garbage.extend_from_slice(b"USERS\r\n");
    garbage.extend_from_slice(b"ERR slow-down Please wait a moment.\r\n");
    garbage.extend_from_slice(&vec![b'x'; 20_000]);
    garbage.extend_from_slice(b"\r\nINFO still here\r\n");
    stream.write_all(&garbage).expect("write");
    alice.until("the last line", |m| {
        m.scrollback().iter().any(|e| {
            matches!(&e.kind,
            EntryKind::System { text, .. } if text == "still here")
        })
    });
    let lines = alice.lines();
    let raw: Vec<&str> = alice
        .model
        .scrollback()
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::System {
                kind: SystemKind::Raw,
                text,
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(raw.len(), 3, "bad MSG, bare USERS, long line: {lines:#?}");
    assert!(raw[0].starts_with("MSG yesterday"), "{raw:?}");
    assert!(raw[2].len() < 400, "the long line is shortened");
    assert!(
        !lines.iter().any(|l| l.contains("FROB")),
        "unknown keywords are ignored, as PROTOCOL.md says"
    );
    assert!(
        lines.iter().any(|l| l == "* Please wait a moment."),
        "an unknown error code still shows: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "* bad \u{fffd} utf-8 \u{fffd}[2J escape"),
        "no raw escape reaches the screen: {lines:#?}"
    );
    drop((reader, stream));
    alice.until("the drop", |m| {
        matches!(m.state(), ConnState::Offline { .. })
    });
}

#[test]
fn a_silent_server_is_pinged_then_given_up() {
    // Story: a connection that died without a word is noticed and replaced.
    let (addr, accept) = fake_server();
    let mut alice = Driver::with(Settings {
        keepalive: Duration::from_millis(300),
        ..settings(addr.to_string(), "alice")
    });
    let (mut reader, mut stream) = accept();
    assert_eq!(read_line(&mut reader), "NICK alice\r\n");
    stream.write_all(b"WELCOME alice hi\r\n").expect("write");
    alice.online();
    let started = Instant::now();
    assert_eq!(read_line(&mut reader), "PING natter-keepalive\r\n");
    assert!(started.elapsed() >= Duration::from_millis(200));
    alice.until("giving up", |m| {
        matches!(m.state(), ConnState::Offline { reason, .. } if reason.contains("stopped answering"))
    });
}

/// A server with history kept in memory, so joins replay and `HISTORY`
/// answers.
fn history_config() -> natter::Config {
    natter::Config {
        history: HistoryMode::Memory,
        rate: 0,
        ..common::config()
    }
}

/// Whether a relay connects new clients through (false: it holds them,
/// connected but unanswered, as a slow network would).
type Gate = Arc<(Mutex<bool>, Condvar)>;

/// A TCP relay between clients and a server: it can cut every connection
/// through it, as a network drop would (the server sees the client go), hold
/// new ones back for a while, and records every line the clients sent.
struct Relay {
    addr: SocketAddr,
    /// Both ends of every relayed connection, to cut them.
    streams: Arc<Mutex<Vec<TcpStream>>>,
    /// Lines from the clients, without their endings.
    sent: Arc<Mutex<Vec<String>>>,
    gate: Gate,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let relay = Relay {
            addr,
            streams: Arc::default(),
            sent: Arc::default(),
            gate: Arc::new((Mutex::new(true), Condvar::new())),
        };
        let (streams, sent, gate) = (
            relay.streams.clone(),
            relay.sent.clone(),
            relay.gate.clone(),
        );
        // Ends with the test process; it only ever blocks in accept.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (streams, sent, gate) = (streams.clone(), sent.clone(), gate.clone());
                std::thread::spawn(move || relay_one(client, server, &streams, &sent, &gate));
            }
        });
        relay
    }

    /// Cuts every connection through the relay.
    fn cut(&self) {
        for stream in self.streams.lock().expect("streams").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Holds (false) or lets through (true) new connections.
    fn open(&self, open: bool) {
        let (lock, wake) = &*self.gate;
        *lock.lock().expect("gate") = open;
        wake.notify_all();
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().expect("sent").clone()
    }
}

fn relay_one(
    client: TcpStream,
    server: SocketAddr,
    streams: &Mutex<Vec<TcpStream>>,
    sent: &Arc<Mutex<Vec<String>>>,
    gate: &Gate,
) {
    let (lock, wake) = &**gate;
    let mut open = lock.lock().expect("gate");
    while !*open {
        open = wake.wait(open).expect("gate");
    }
    drop(open);
    let Ok(upstream) = TcpStream::connect(server) else {
        return;
    };
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    streams.lock().expect("streams").extend([c3, u3]);
    let sent = sent.clone();
    std::thread::spawn(move || {
        let mut to_server = u2;
        for line in BufReader::new(client).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            sent.lock().expect("sent").push(text);
            let mut bytes = line;
            bytes.push(b'\n');
            if to_server.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to_server.shutdown(Shutdown::Both);
    });
    let mut from_server = upstream;
    let mut to_client = c2;
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = from_server.read(&mut buf) {
        if to_client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
}

/// True if the ids are all present and strictly increasing.
fn in_id_order(said: &[(Option<u64>, String)]) -> bool {
    said.windows(2)
        .all(|w| matches!((w[0].0, w[1].0), (Some(a), Some(b)) if a < b))
        && said.iter().all(|(id, _)| id.is_some())
}

#[test]
fn the_replay_on_join_is_in_id_order_without_duplicates() {
    // Story: joining a room shows what was said before, in order, even while people keep talking, and never twice.
    let server = common::start(history_config());
    let mut bob = Client::register(server.addr, "bob");
    bob.send_line("JOIN #rust");
    bob.until("HIST END #rust");
    for i in 1..=5 {
        bob.send_line(&format!("MSG #rust earlier {i}"));
    }
    let mut alice = Driver::start(server.addr, "alice");
    alice.online();
    let mark = alice.mark();
    alice.enter("/join #rust");
    // Live lines race the replay: whichever comes first, the order is by id.
    for i in 1..=20 {
        bob.send_line(&format!("MSG #rust live {i}"));
    }
    alice.until("the last live line", |m| {
        m.room() == "#rust"
            && m.scrollback()
                .iter()
                .any(|e| matches!(&e.kind, EntryKind::Chat { text, .. } if text == "live 20"))
    });
    alice.replays(mark, "#rust", 1);
    let rust = Target::Room("#rust".into());
    let said = alice.said(rust.clone());
    let want: Vec<String> = (1..=5)
        .map(|i| format!("<bob> earlier {i}"))
        .chain((1..=20).map(|i| format!("<bob> live {i}")))
        .collect();
    assert_eq!(alice.said_texts(rust.clone()), want);
    assert!(in_id_order(&said), "{said:?}");
    // How many came as history depends on when the server took the JOIN.
    assert!(
        alice
            .lines()
            .iter()
            .any(|l| l.starts_with("* Above: ") && l.ends_with(" earlier messages of #rust.")),
        "{:#?}",
        alice.lines()
    );
    // Asking for the newest page again brings only what is shown already.
    let mark = alice.mark();
    alice.enter("/history #rust 50");
    alice.replays(mark, "#rust", 1);
    assert_eq!(alice.said(rust), said, "nothing shown twice");
}

#[test]
fn after_a_reconnect_since_fetches_exactly_what_was_missed() {
    // Story: after a network drop each room and private conversation gets what it missed, once, my own lines included.
    let server = common::start(history_config());
    let relay = Relay::start(server.addr);
    let mut bob = Client::register(server.addr, "bob");
    bob.send_line("JOIN #rust");
    bob.until("HIST END #rust");
    let mut alice = Driver::with(Settings {
        backoff: Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_millis(400),
        },
        ..settings(relay.addr.to_string(), "alice")
    });
    alice.online();
    let mark = alice.mark();
    alice.enter("/join #rust");
    alice.until("#rust", |m| m.room() == "#rust");
    alice.replays(mark, "#rust", 1);
    bob.send_line("MSG #lobby lobby before");
    bob.send_line("MSG #rust rust before");
    bob.send_line("WHISPER alice psst");
    alice.until("bob's lines", |m| {
        m.panes().iter().any(|p| p.is_private() && p.unread() == 1)
            && m.scrollback()
                .iter()
                .any(|e| matches!(&e.kind, EntryKind::Chat { text, .. } if text == "rust before"))
    });
    alice.enter("mine before");
    let mine = bob.until("MSG ");
    assert!(mine.ends_with(" #rust alice mine before"), "{mine}");

    let rust = Target::Room("#rust".into());
    let lobby = Target::Room("#lobby".into());
    let bob_pane = Target::Private("bob".into());
    let newest = |said: Vec<(Option<u64>, String)>| said.iter().filter_map(|(id, _)| *id).max();
    let rust_newest = newest(alice.said(rust.clone())).expect("an id in #rust");
    let lobby_newest = newest(alice.said(lobby.clone())).expect("an id in #lobby");
    let bob_newest = newest(alice.said(bob_pane.clone())).expect("an id with bob");

    // The network drops; while alice is away bob keeps talking.
    relay.open(false);
    relay.cut();
    alice.until("the drop", |m| {
        matches!(m.state(), ConnState::Offline { .. })
    });
    let quit = bob.until("QUIT ");
    assert!(quit.contains(" alice "), "{quit}");
    bob.send_line("MSG #rust missed 1");
    bob.send_line("MSG #rust missed 2");
    bob.send_line("MSG #lobby missed in the lobby");
    bob.send_line("PING sync");
    bob.until("PONG sync");
    let mark = alice.mark();
    relay.open(true);

    alice.online();
    alice.until("back in #rust", |m| m.rooms().count() == 2);
    // The replay on joining, then the answer to `since`.
    alice.replays(mark, "#rust", 2);
    alice.replays(mark, "#lobby", 2);
    alice.replays(mark, "bob", 1);
    let sent = relay.sent();
    for want in [
        format!("HISTORY #rust since {rust_newest}"),
        format!("HISTORY #lobby since {lobby_newest}"),
        format!("HISTORY bob since {bob_newest}"),
    ] {
        assert!(sent.contains(&want), "{want:?} not in {sent:#?}");
    }
    assert_eq!(
        alice.said_texts(rust.clone()),
        [
            "<bob> rust before",
            "<alice> mine before",
            "<bob> missed 1",
            "<bob> missed 2"
        ]
    );
    let said = alice.said(rust);
    assert!(in_id_order(&said), "my echo got its id: {said:?}");
    assert_eq!(
        alice.said_texts(lobby),
        ["<bob> lobby before", "<bob> missed in the lobby"]
    );
    assert_eq!(alice.said_texts(bob_pane), ["[bob->alice] psst"]);
    assert_eq!(alice.model.room(), "#rust", "still showing #rust");
}

#[test]
fn private_conversations_are_routed_to_their_own_pane() {
    // Story: a whisper opens its own pane; what I type there reaches only that person.
    let server = common::start(history_config());
    let mut bob = Client::register(server.addr, "bob");
    let mut carol = Client::register(server.addr, "carol");
    // With history on, an (empty) replay follows registration.
    bob.until("HIST END #lobby");
    carol.until("HIST END #lobby");
    let mut alice = Driver::start(server.addr, "alice");
    alice.online();
    for other in [&mut bob, &mut carol] {
        while !other.until("JOIN ").ends_with(" #lobby alice") {}
    }
    bob.send_line("WHISPER alice are you free?");
    let bob_pane = Target::Private("bob".into());
    alice.until("bob's pane", |m| m.pane(&bob_pane).is_some());
    assert_eq!(alice.model.room(), "#lobby", "the lobby is still shown");
    assert_eq!(
        alice.said_texts(bob_pane.clone()),
        ["[bob->alice] are you free?"]
    );
    assert!(alice.said_texts(Target::Room("#lobby".into())).is_empty());
    let index = alice
        .model
        .panes()
        .iter()
        .position(|p| p.is_private())
        .expect("a private pane");
    alice.model.show(index);
    assert_eq!(alice.model.users(), ["alice", "bob"]);
    alice.enter("yes, lunch?");
    let line = bob.until("WHISPER ");
    assert!(line.ends_with(" alice bob yes, lunch?"), "{line}");
    carol.silent(300);
    assert_eq!(
        alice.said_texts(bob_pane),
        ["[bob->alice] are you free?", "[alice->bob] yes, lunch?"]
    );
    // A /msg to someone else, typed here, opens (but does not show) their pane.
    alice.enter("/msg carol hello");
    let line = carol.until("WHISPER ");
    assert!(line.ends_with(" alice carol hello"), "{line}");
    assert_eq!(alice.model.shown().name(), "bob");
    assert_eq!(
        alice.said_texts(Target::Private("carol".into())),
        ["[alice->carol] hello"]
    );
    bob.silent(300);
}
