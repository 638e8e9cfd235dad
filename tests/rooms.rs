//! Rooms, private messages and history, over real sockets as nc sends them.

mod common;

use std::time::{Duration, Instant};

use common::raw::Client;
use common::start;
use common::TempDir;
use natter::protocol::ServerLine;
use natter::store::HistoryMode;

/// A test server with history in memory and no rate limit.
fn with_history(history: HistoryMode) -> natter::Config {
    natter::Config {
        history,
        rate: 0,
        ..common::config()
    }
}

/// Reads `HIST` lines up to `HIST END`, returning the replayed ids and the
/// end line's count; checks the end names `target`.
fn replay(client: &mut Client, target: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        match client.parsed() {
            ServerLine::History(line) => match *line {
                ServerLine::Msg { id, .. } | ServerLine::Whisper { id, .. } => ids.push(id),
                other => panic!("{}: HIST of {other:?}", client.name()),
            },
            ServerLine::HistoryEnd { target: t, count } => {
                assert_eq!(t, target, "{}: HIST END target", client.name());
                assert_eq!(
                    count as usize,
                    ids.len(),
                    "{}: HIST END count",
                    client.name()
                );
                return ids;
            }
            other => panic!("{}: expected HIST, got {other:?}", client.name()),
        }
    }
}

/// Sends `n` numbered chat lines from `client` and returns their ids as
/// `listener` receives them.
fn chat(client: &mut Client, listener: &mut Client, room: &str, n: usize) -> Vec<u64> {
    for i in 0..n {
        client.send_line(&format!("MSG {room} line {i}"));
    }
    (0..n)
        .map(|i| {
            let (_, id, got_room, _, text) = common::parse_msg(&listener.until("MSG "));
            assert_eq!((got_room.as_str(), text), (room, format!("line {i}")));
            id
        })
        .collect()
}

/// alice, bob and carol registered, each having read the others' joins.
fn three_in_the_lobby(server: &common::Server) -> [Client; 3] {
    let mut alice = Client::register(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    let carol = Client::register(server.addr, "carol");
    alice.until("JOIN ");
    alice.until("JOIN ");
    bob.until("JOIN ");
    [alice, bob, carol]
}

#[test]
fn rooms_route_messages_to_their_members_only() {
    // Story: people make a room for a topic, and only its members hear it.
    let server = start(common::config());
    let [mut alice, mut bob, mut carol] = three_in_the_lobby(&server);

    alice.send_line("/join Rust");
    let join = alice.expect("JOIN ");
    assert!(join.ends_with(" #Rust alice"), "{join}");
    alice.expect_exact("USERS #Rust alice");
    alice.expect_exact("INFO Messages without a room now go to #Rust.");
    bob.send_line("JOIN #rust");
    assert!(bob.expect("JOIN ").ends_with(" #Rust bob"));
    bob.expect_exact("USERS #Rust alice bob");
    bob.expect("INFO ");
    assert!(alice.expect("JOIN ").ends_with(" #Rust bob"));

    alice.send_line("anyone tried the new borrow checker?");
    let (_, _, room, nick, text) = common::parse_msg(&bob.expect("MSG "));
    assert_eq!(
        (room.as_str(), nick.as_str(), text.as_str()),
        ("#Rust", "alice", "anyone tried the new borrow checker?")
    );
    carol.silent(200);

    alice.send_line("MSG #lobby lunch?");
    assert!(bob.expect("MSG ").contains(" #lobby alice lunch?"));
    assert!(carol.expect("MSG ").contains(" #lobby alice lunch?"));

    carol.send_line("MSG #rust let me in");
    carol.expect("ERR not-in-room ");
    carol.send_line("USERS #nowhere");
    carol.expect("ERR no-such-room ");

    carol.send_line("/rooms");
    carol.expect_exact("ROOM #lobby 3");
    carol.expect_exact("ROOM #Rust 2");
    carol.expect_exact("ROOMS 2");

    bob.send_line("/topic The borrow checker is your friend");
    let topic = bob.expect("TOPIC ");
    assert!(topic.ends_with(" #Rust bob The borrow checker is your friend"));
    assert_eq!(alice.expect("TOPIC "), topic);
    carol.silent(200);

    bob.send_line("/part #rust off to lunch");
    let part = alice.expect("PART ");
    assert!(part.ends_with(" #Rust bob off to lunch"), "{part}");
    assert_eq!(bob.expect("PART "), part);
    bob.expect_exact("INFO Messages without a room now go to #lobby.");
    bob.send_line("back in the lobby");
    assert!(carol
        .expect("MSG ")
        .ends_with(" #lobby bob back in the lobby"));
    alice.expect("MSG ");

    // Leaving the chat is announced once to everyone who shared a room.
    alice.send_line("QUIT bye");
    alice.until("BYE ");
    assert!(bob.expect("QUIT ").ends_with(" alice bye"));
    assert!(carol.expect("QUIT ").ends_with(" alice bye"));
    bob.silent(200);
    server.stop();
}

#[test]
fn whispers_reach_only_their_recipient() {
    // Story: a private word reaches one person and nobody else ever sees it.
    let server = start(common::config());
    let [mut alice, mut bob, mut carol] = three_in_the_lobby(&server);

    alice.send_line("/w Bob meet me at five");
    let whisper = bob.expect("WHISPER ");
    match ServerLine::parse(&whisper) {
        Ok(ServerLine::Whisper { from, to, text, .. }) => {
            assert_eq!((from.as_str(), to.as_str()), ("alice", "bob"));
            assert_eq!(text, "meet me at five");
        }
        other => panic!("{other:?}"),
    }
    bob.send_line("/msg alice ok");
    assert!(alice.expect("WHISPER ").ends_with(" bob alice ok"));
    alice.send_line("WHISPER dave hello?");
    alice.expect("ERR no-such-nick ");
    carol.silent(300);
    server.stop();
}

#[test]
fn joining_replays_recent_history_and_history_pages_back() {
    // Story: someone joining late sees what was said, and can scroll back further.
    let server = start(with_history(HistoryMode::Memory));
    let mut alice = Client::register(server.addr, "alice");
    assert_eq!(replay(&mut alice, "#lobby"), Vec::<u64>::new());
    let mut echo = Client::register(server.addr, "echo");
    replay(&mut echo, "#lobby");
    alice.expect("JOIN ");
    let ids = chat(&mut alice, &mut echo, "#lobby", 60);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");

    let mut bob = Client::register(server.addr, "bob");
    assert_eq!(replay(&mut bob, "#lobby"), ids[10..], "the last 50 on join");

    bob.send_line(&format!("HISTORY #lobby before {}", ids[10]));
    assert_eq!(replay(&mut bob, "#lobby"), ids[..10]);
    bob.send_line(&format!("/history #lobby since {}", ids[54]));
    assert_eq!(replay(&mut bob, "#lobby"), ids[55..]);
    bob.send_line("HISTORY #lobby 3");
    assert_eq!(replay(&mut bob, "#lobby"), ids[57..]);
    bob.send_line("HISTORY #lobby 0");
    bob.expect("ERR bad-argument ");
    bob.send_line("HISTORY #elsewhere");
    bob.expect("ERR no-such-room ");
    server.stop();
}

#[test]
fn private_history_is_only_for_its_participants() {
    // Story: whispers stay private in history too, even from a later owner of the nickname.
    let server = start(with_history(HistoryMode::Memory));
    let mut alice = Client::register(server.addr, "alice");
    replay(&mut alice, "#lobby");
    let mut bob = Client::register(server.addr, "bob");
    replay(&mut bob, "#lobby");
    let mut carol = Client::register(server.addr, "carol");
    replay(&mut carol, "#lobby");
    alice.until("JOIN ");
    alice.until("JOIN ");
    bob.until("JOIN ");

    alice.send_line("/w bob the password is swordfish");
    let whisper = bob.until("WHISPER ");
    let (id, _) = match ServerLine::parse(&whisper).expect("a WHISPER line") {
        ServerLine::Whisper { id, text, .. } => (id, text),
        other => panic!("{other:?}"),
    };
    bob.send_line("HISTORY alice");
    assert_eq!(replay(&mut bob, "alice"), [id]);
    alice.send_line("HISTORY bob");
    assert_eq!(replay(&mut alice, "bob"), [id]);
    carol.send_line("HISTORY alice");
    assert_eq!(replay(&mut carol, "alice"), Vec::<u64>::new());
    carol.send_line("HISTORY bob");
    assert_eq!(replay(&mut carol, "bob"), Vec::<u64>::new());

    bob.send_line("QUIT");
    bob.until("BYE ");
    let mut mallory = Client::register(server.addr, "bob");
    replay(&mut mallory, "#lobby");
    mallory.send_line("HISTORY alice");
    assert_eq!(
        replay(&mut mallory, "alice"),
        Vec::<u64>::new(),
        "a nickname's next owner does not read the last one's whispers"
    );
    server.stop();
}

#[test]
fn history_survives_a_restart() {
    // Story: the server restarts and the room's history is still there, with ids still growing.
    let dir = TempDir::new("restart");
    let config = || with_history(HistoryMode::Sqlite(dir.0.clone()));
    let server = start(config());
    let mut alice = Client::register(server.addr, "alice");
    replay(&mut alice, "#lobby");
    alice.send_line("JOIN #ops");
    alice.until("HIST END #ops 0");
    let mut bob = Client::register(server.addr, "bob");
    replay(&mut bob, "#lobby");
    bob.send_line("JOIN #ops");
    bob.until("HIST END #ops 0");
    let before = chat(&mut alice, &mut bob, "#ops", 5);
    server.stop();

    let server = start(config());
    let mut carol = Client::register(server.addr, "carol");
    replay(&mut carol, "#lobby");
    carol.send_line("JOIN #ops");
    carol.until("INFO ");
    assert_eq!(replay(&mut carol, "#ops"), before);
    let mut dave = Client::register(server.addr, "dave");
    replay(&mut dave, "#lobby");
    dave.send_line("JOIN #ops");
    dave.until("HIST END #ops");
    carol.until("JOIN ");
    let after = chat(&mut carol, &mut dave, "#ops", 1);
    assert!(
        after[0] > before[4],
        "ids keep growing: {after:?} after {before:?}"
    );
    server.stop();
}

#[test]
fn a_killed_server_loses_at_most_the_last_batch() {
    // Story: the machine's process dies mid-flood; the history database opens, is whole, and lost at most ~200 ms.
    let dir = TempDir::new("kill9");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "serve",
            "--no-web",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--rate",
            "0",
        ])
        .args(["--history", "sqlite", "--data-dir"])
        .arg(&dir.0)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start natter serve");
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    common::retry("the server accepts", 100, Duration::from_millis(50), || {
        std::net::TcpStream::connect(addr).ok()
    });
    let mut flooder = Client::register(addr, "flooder");
    replay(&mut flooder, "#lobby");
    let mut listener = Client::register(addr, "listener");
    replay(&mut listener, "#lobby");

    // Flood for about a second, noting when each message came back.
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(1) && sent < 200_000 {
        let batch: String = (0..100).map(|i| format!("flood {}\n", sent + i)).collect();
        flooder.send(batch.as_bytes());
        sent += 100;
        for _ in 0..100 {
            let (_, id, ..) = common::parse_msg(&listener.until("MSG "));
            seen.push((id, Instant::now()));
        }
    }
    let killed = Instant::now();
    child.kill().expect("kill -9 the server");
    let _ = child.wait();

    let (store, last_id) = natter::store::thread::Store::open(
        &HistoryMode::Sqlite(dir.0.clone()),
        // Keep every message: a fast server floods past the default
        // 100,000 per room in the second this test runs.
        natter::store::Retention {
            max_per_room: None,
            ..natter::store::Retention::default()
        },
    )
    .expect("the database opens after a kill");
    let mut store = store.expect("a store");
    let (tx, rx) = std::sync::mpsc::channel();
    store.fetch(
        natter::store::Scope::Room("#lobby".into()),
        natter::store::Range::Since(0),
        usize::MAX,
        Box::new(move |records| {
            let _ = tx.send(records.iter().map(|r| r.id).collect::<Vec<u64>>());
        }),
    );
    let stored = rx.recv_timeout(Duration::from_secs(30)).expect("fetch");
    store.close();
    assert_eq!(stored.last().copied().unwrap_or(0), last_id);
    assert!(
        stored.windows(2).all(|w| w[1] > w[0]),
        "the stored ids only grow"
    );
    let window = Duration::from_millis(250);
    let must_have: Vec<u64> = seen
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > window)
        .map(|(id, _)| *id)
        .collect();
    assert!(must_have.len() > 100, "the flood ran long enough to matter");
    let missing: Vec<u64> = must_have
        .iter()
        .filter(|id| stored.binary_search(id).is_err())
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages delivered more than {window:?} before the kill were lost (first {:?}); stored {} of {}",
        missing.len(),
        missing.first(),
        stored.len(),
        seen.len()
    );
}

/// One client of a big room and the lists it keeps, replayed from its
/// lines as the clients do.
struct Member {
    client: Client,
    me: String,
    /// Folded room -> folded nicks.
    rooms: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Every line read, as nc shows it.
    lines: Vec<String>,
}

impl Member {
    fn arrive(server: &common::Server, nick: &str) -> Member {
        let mut client = Client::connect(server.addr);
        client.set_name(nick);
        client.expect("HELLO natter/1.1 ");
        client.send_line(&format!("NICK {nick}"));
        // One at a time, so that they register in this order.
        client.expect(&format!("WELCOME {nick} "));
        Member {
            client,
            me: nick.to_owned(),
            rooms: Default::default(),
            lines: Vec::new(),
        }
    }

    /// Waits past a few presence intervals, then reads everything sent
    /// before a PING's answer.
    fn sync(&mut self, token: &str) {
        std::thread::sleep(Duration::from_millis(300));
        self.client.send_line(&format!("PING {token}"));
        let fold = natter::names::fold;
        loop {
            let raw = self.client.line_bytes();
            assert!(
                raw.iter().all(|&b| (0x20..0x7f).contains(&b)),
                "{}: not plain text: {raw:?}",
                self.me
            );
            let text = String::from_utf8(raw).expect("ASCII");
            assert!(text.len() + 2 <= natter::hub::LIST_LINE, "{text:?}");
            self.lines.push(text.clone());
            let rooms = &mut self.rooms;
            match ServerLine::parse(&text).expect("parses") {
                ServerLine::Pong(t) if t == token => return,
                ServerLine::Welcome { nick, .. } => self.me = nick,
                ServerLine::Join { room, nick, .. } if fold(&nick) == fold(&self.me) => {
                    rooms.insert(fold(&room), [fold(&nick)].into());
                }
                ServerLine::Join { room, nick, .. } => {
                    rooms
                        .get_mut(&fold(&room))
                        .expect("in the room")
                        .insert(fold(&nick));
                }
                ServerLine::Part { room, nick, .. } if fold(&nick) == fold(&self.me) => {
                    rooms.remove(&fold(&room));
                }
                ServerLine::Part { room, nick, .. } => {
                    rooms
                        .get_mut(&fold(&room))
                        .expect("in the room")
                        .remove(&fold(&nick));
                }
                ServerLine::Quit { nick, .. } => {
                    for list in rooms.values_mut() {
                        list.remove(&fold(&nick));
                    }
                }
                ServerLine::Nick { old, new, .. } => {
                    if fold(&old) == fold(&self.me) {
                        self.me = new.clone();
                    }
                    for list in rooms.values_mut() {
                        if list.remove(&fold(&old)) {
                            list.insert(fold(&new));
                        }
                    }
                }
                ServerLine::Users { room, nicks } => {
                    let list = rooms.get_mut(&fold(&room)).expect("in the room");
                    *list = nicks.iter().map(|n| fold(n)).collect();
                }
                ServerLine::Joins { room, nicks } => {
                    let list = rooms.get_mut(&fold(&room)).expect("in the room");
                    list.extend(nicks.iter().map(|n| fold(n)));
                }
                ServerLine::Parts { room, nicks } => {
                    let list = rooms.get_mut(&fold(&room)).expect("in the room");
                    for n in nicks {
                        list.remove(&fold(&n));
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn big_rooms_tell_joins_and_parts_gathered_and_every_list_ends_exact() {
    // Story: a crowd fills the lobby; past --big-room 3 nobody is sent a
    // line per arrival, yet everyone's member list ends up right.
    let server = start(natter::Config {
        big_room: 3,
        presence_interval: Duration::from_millis(50),
        rate: 0,
        ..common::config()
    });
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut crowd: Vec<Member> = names.iter().map(|n| Member::arrive(&server, n)).collect();
    for m in &mut crowd {
        m.sync("1");
    }
    let all: std::collections::BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    for m in &crowd {
        assert_eq!(m.rooms["#lobby"], all, "{}: the lobby after arriving", m.me);
    }
    // alice, there first, heard the small room's JOINs, then JOINS lines.
    let alice = &crowd[0].lines;
    assert!(alice
        .iter()
        .any(|l| l.ends_with(" #lobby bob") && l.starts_with("JOIN ")));
    assert!(
        alice.iter().any(|l| l.starts_with("JOINS #lobby ")),
        "{alice:?}"
    );
    assert!(!alice
        .iter()
        .any(|l| l.starts_with("JOIN ") && l.ends_with(" frank")));
    // The last to come got a list at once, and the rest at a flush.
    assert!(crowd[5]
        .lines
        .iter()
        .any(|l| l.starts_with("USERS #lobby ")));

    // Within about one interval: a quit, a rename, a leave and come back,
    // a leave for another room, and someone taking the quitter's name.
    crowd[2].client.send_line("QUIT off");
    crowd[2].client.until("BYE ");
    crowd[3].client.send_line("NICK dan");
    crowd[4].client.send_line("PART #lobby");
    crowd[4].client.send_line("JOIN #lobby");
    crowd[5].client.send_line("JOIN #side");
    crowd[5].client.send_line("PART #lobby");
    let mut newcomer = Member::arrive(&server, "Carol");
    let _ = crowd.remove(2);
    for m in crowd.iter_mut().chain([&mut newcomer]) {
        m.sync("2");
    }
    let lobby: std::collections::BTreeSet<String> = ["alice", "bob", "carol", "dan", "erin"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    for m in crowd.iter().chain([&newcomer]) {
        if m.me == "frank" {
            assert!(!m.rooms.contains_key("#lobby"), "frank left the lobby");
            assert_eq!(m.rooms["#side"], ["frank".to_string()].into());
        } else {
            assert_eq!(m.rooms["#lobby"], lobby, "{}: the lobby at the end", m.me);
        }
    }
    assert!(crowd[0]
        .lines
        .iter()
        .any(|l| l.starts_with("PARTS #lobby ")));
}

#[test]
fn a_newcomer_to_a_big_room_gets_its_list_at_once_not_at_the_flush() {
    // Story: the flush is a minute away, yet dave, arriving in a big lobby,
    // is sent straight after his JOIN a list that holds himself and what
    // the members were told; the others hear of him at the flush.
    let server = start(natter::Config {
        big_room: 3,
        presence_interval: Duration::from_secs(60),
        rate: 0,
        ..common::config()
    });
    let mut crowd: Vec<Client> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| Member::arrive(&server, n).client)
        .collect();
    let mut dave = Member::arrive(&server, "dave").client;
    dave.until("JOIN ");
    dave.expect_exact("USERS #lobby dave");
    // carol's arrival made the lobby big: the members hold alice and bob,
    // and will hear of carol and dave at the flush.
    dave.expect_exact("JOINS #lobby alice bob");
    // alice has heard of bob and carol, and not of dave yet.
    let alice = &mut crowd[0];
    alice.send_line("PING p");
    let mut heard = Vec::new();
    loop {
        let line = alice.line();
        if line == "PONG p" {
            break;
        }
        heard.push(line);
    }
    assert!(!heard.iter().any(|l| l.contains("dave")), "{heard:?}");
}
