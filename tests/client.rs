//! The client core (connection + model, no terminal) against a real server
//! on 127.0.0.1:0, with raw sockets as the other users, and against fake
//! servers that misbehave.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{Client, TIMEOUT};
use natter::client::{
    Action, Backoff, ConnState, Connection, EntryKind, Event, Model, NickPrompt, Settings,
    Submitted, SystemKind,
};
use natter::protocol::Timestamp;

/// A client core as a user interface would drive it: events from the
/// connection feed the model; typed lines go through the model to the
/// connection.
struct Driver {
    conn: Connection,
    events: Receiver<Event>,
    model: Model,
    prompts: Vec<NickPrompt>,
}

impl Driver {
    fn start(addr: SocketAddr, nick: &str) -> Driver {
        Driver::with(settings(addr, nick))
    }

    fn with(settings: Settings) -> Driver {
        let model = Model::new(&settings.server, &settings.nick, 100);
        let (tx, events) = mpsc::channel();
        let conn = Connection::start(settings, move |event| {
            let _ = tx.send(event);
        })
        .expect("start the connection thread");
        Driver {
            conn,
            events,
            model,
            prompts: Vec::new(),
        }
    }

    /// Feeds events to the model until `done` holds; fails after TIMEOUT.
    fn until(&mut self, what: &str, mut done: impl FnMut(&Model) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done(&self.model) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    let changes = self.model.apply(event, Timestamp::now());
                    self.prompts.extend(changes.nick_prompt);
                }
                Err(_) => panic!("timed out waiting for {what}; lines: {:#?}", self.lines()),
            }
        }
    }

    fn online(&mut self) {
        self.until("registration", |m| *m.state() == ConnState::Online);
    }

    /// Types a line and presses Enter.
    fn enter(&mut self, line: &str) -> Submitted {
        let submitted = self.model.submit(line, Timestamp::now());
        if let Action::Send(out) = &submitted.action {
            self.conn.send(out.clone());
        }
        submitted
    }

    fn lines(&self) -> Vec<String> {
        self.model
            .scrollback()
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Chat { nick, text, .. } => format!("<{nick}> {text}"),
                EntryKind::Whisper { from, to, text, .. } => format!("[{from}->{to}] {text}"),
                EntryKind::System { text, .. } => format!("* {text}"),
            })
            .collect()
    }

    fn has_line(&self, want: &str) -> bool {
        self.lines().iter().any(|l| l == want)
    }
}

fn settings(addr: SocketAddr, nick: &str) -> Settings {
    Settings {
        backoff: Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        ..Settings::new(addr.to_string(), nick)
    }
}

/// A server that can be stopped and started again on the same address.
struct Restartable {
    addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Restartable {
    fn start(addr: &str) -> Restartable {
        let listener = smol::block_on(smol::net::TcpListener::bind(addr)).expect("bind");
        let addr = listener.local_addr().expect("listener address");
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            smol::block_on(natter::serve(listener, common::config(), async move {
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
        ..settings(addr, "alice")
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
