//! Unit tests of the hub: many clients, one thread, every line checked.

use super::*;
use crate::accounts::Answer;
use crate::protocol::HistoryQuery;
use crate::store::{Range, Scope};
use std::cell::RefCell;
use std::rc::Rc;

/// A test outbox: a shared list of received lines with a capacity.
#[derive(Clone)]
struct Inbox {
    lines: Rc<RefCell<Vec<String>>>,
    /// Of those, the ones pushed as shared (`Outbox::push_shared`).
    shared: Rc<RefCell<Vec<String>>>,
    cap: usize,
    closed: Rc<RefCell<bool>>,
}

impl Inbox {
    fn new(cap: usize) -> Self {
        Self {
            lines: Rc::default(),
            shared: Rc::default(),
            cap,
            closed: Rc::default(),
        }
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.borrow_mut())
    }
}

impl Outbox for Inbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        if *self.closed.borrow() {
            return Err(Rejected::Closed);
        }
        let mut lines = self.lines.borrow_mut();
        if lines.len() >= self.cap {
            return Err(Rejected::Full);
        }
        lines.push(String::from_utf8_lossy(line).trim_end().to_owned());
        Ok(())
    }
    fn push_shared(&mut self, line: &Line) -> Result<(), Rejected> {
        self.push(line)?;
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        self.shared.borrow_mut().push(text);
        Ok(())
    }
    fn close(&mut self) {
        *self.closed.borrow_mut() = true;
    }
}

fn t() -> Timestamp {
    Timestamp::from_unix(1_795_000_000).unwrap()
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix(t().unix() + secs).unwrap()
}

fn account(nick: &str, operator: bool) -> AccountInfo {
    AccountInfo {
        nick: nick.into(),
        operator,
        since: 0,
    }
}

fn login(nick: &str) -> Command {
    Command::Login {
        nick: nick.into(),
        password: crate::protocol::Secret::new("whatever-it-is"),
    }
}

#[test]
fn failed_logins_are_limited_per_address_and_per_account() {
    let mut hub: Hub<Inbox> = Hub::new(60);
    let snapshot = crate::accounts::Snapshot {
        accounts: vec![account("alice", false), account("bob", false)],
        bans: Vec::new(),
        mutes: Vec::new(),
    };
    hub.load(snapshot, t());
    let one: IpAddr = "192.0.2.1".parse().unwrap();
    let two: IpAddr = "192.0.2.2".parse().unwrap();
    let thief = Inbox::new(100);
    hub.connect_from(1, thief.clone(), one, t());
    for _ in 0..6 {
        hub.command(1, login("alice"), t());
        assert_eq!(hub.take_requests().len(), 1, "{:?}", thief.take());
        hub.account(
            Answer::WrongPassword {
                client: 1,
                nick: "alice".into(),
            },
            t(),
        );
    }
    assert!(thief.take().last().unwrap().ends_with("try again in 30 s."));
    // The address is locked, for every account...
    hub.command(1, login("bob"), t());
    assert!(hub.take_requests().is_empty());
    let err = thief.take().pop().unwrap();
    assert!(
        err.starts_with(
            "ERR login-throttled Too many failed logins from your address and for this account"
        ) || err.starts_with("ERR login-throttled Too many failed logins from your address;"),
        "{err}"
    );
    // ...and the account, from every address; other accounts are fine.
    let other = Inbox::new(100);
    hub.connect_from(2, other.clone(), two, t());
    other.take();
    hub.command(2, login("ALICE"), t());
    assert!(hub.take_requests().is_empty());
    let err = other.take().pop().unwrap();
    assert!(err.contains("for ALICE; try again in 30 s"), "{err}");
    hub.command(2, login("bob"), t());
    assert_eq!(hub.take_requests().len(), 1);
    hub.account(
        Answer::LoggedIn {
            client: 2,
            account: account("bob", false),
        },
        t(),
    );
    assert!(other
        .take()
        .iter()
        .any(|l| l.starts_with("ACCOUNT bob user ")));
    // The lock runs out.
    hub.command(1, login("alice"), at(31));
    assert_eq!(hub.take_requests().len(), 1);
}

#[test]
fn one_password_check_at_a_time_and_busy_when_the_queue_is_full() {
    let mut hub: Hub<Inbox> = Hub::new(60);
    hub.load(
        crate::accounts::Snapshot {
            accounts: vec![account("alice", false)],
            bans: Vec::new(),
            mutes: Vec::new(),
        },
        t(),
    );
    let c = Inbox::new(100);
    hub.connect(1, c.clone(), t());
    c.take();
    hub.command(1, login("alice"), t());
    hub.command(1, login("alice"), t());
    assert!(c
        .take()
        .pop()
        .unwrap()
        .starts_with("ERR busy Still checking"));
    let requests = hub.take_requests();
    assert_eq!(requests.len(), 1);
    for request in requests {
        hub.refused(request, t());
    }
    assert!(c
        .take()
        .pop()
        .unwrap()
        .starts_with("ERR busy The server is checking many"));
    // Not pending any more: it may try again.
    hub.command(1, login("alice"), t());
    assert_eq!(hub.take_requests().len(), 1);
    // One address has at most four checks under way, however many
    // connections it opens; one leaving makes room.
    let others: Vec<Inbox> = (2..=5)
        .map(|id| {
            let inbox = Inbox::new(100);
            hub.connect(id, inbox.clone(), t());
            hub.command(id, login("alice"), t());
            inbox
        })
        .collect();
    assert_eq!(hub.take_requests().len(), 3);
    assert!(others[3]
        .take()
        .pop()
        .unwrap()
        .starts_with("ERR busy Too many password checks"));
    hub.disconnect(2, "gone", t());
    hub.command(5, login("alice"), t());
    assert_eq!(hub.take_requests().len(), 1);
}

#[test]
fn an_owner_reads_private_history_from_the_account_start() {
    let mut hub: Hub<Inbox> = Hub::with_config(HubConfig {
        history: true,
        ..HubConfig::default()
    });
    let guest = join(&mut hub, 1, "bob");
    guest.take();
    hub.load(
        crate::accounts::Snapshot {
            accounts: vec![AccountInfo {
                nick: "alice".into(),
                operator: false,
                since: 7,
            }],
            bans: Vec::new(),
            mutes: Vec::new(),
        },
        t(),
    );
    hub.command(
        1,
        Command::History {
            target: "alice".into(),
            query: HistoryQuery::Last(10),
        },
        t(),
    );
    let c = Inbox::new(100);
    hub.connect(2, c.clone(), t());
    hub.command(2, login("alice"), t());
    hub.take_requests();
    hub.account(
        Answer::LoggedIn {
            client: 2,
            account: AccountInfo {
                nick: "alice".into(),
                operator: false,
                since: 7,
            },
        },
        t(),
    );
    hub.command(
        2,
        Command::History {
            target: "bob".into(),
            query: HistoryQuery::Last(10),
        },
        t(),
    );
    let fetches = hub.take_fetches();
    let afters: Vec<u64> = fetches
        .iter()
        .filter_map(|f| match f.scope {
            Scope::Private { after, .. } => Some(after),
            _ => None,
        })
        .collect();
    // bob took his nickname at message 0; alice's account began at 7.
    assert_eq!(afters, [0, 7]);
}

fn join(hub: &mut Hub<Inbox>, id: ClientId, nick: &str) -> Inbox {
    let inbox = Inbox::new(100);
    hub.connect(id, inbox.clone(), t());
    hub.command(id, Command::Nick(nick.into()), t());
    inbox
}

fn chat(text: &str) -> Command {
    Command::Msg {
        room: None,
        text: text.into(),
    }
}

#[test]
fn registration_greets_joins_and_lists_users() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let got = a.take();
    assert!(got[0].starts_with("HELLO natter/1.1 "));
    assert!(got[1].starts_with("WELCOME alice "));
    assert_eq!(got[2], format!("JOIN {} #lobby alice", t()));
    assert_eq!(got[3], "USERS #lobby alice");
    let b = join(&mut hub, 2, "Bob");
    assert_eq!(a.take(), [format!("JOIN {} #lobby Bob", t())]);
    assert_eq!(b.take().last().unwrap(), "USERS #lobby alice Bob");
}

#[test]
fn chat_reaches_everyone_but_the_sender() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    let c = Inbox::new(10);
    hub.connect(3, c.clone(), t());
    a.take();
    b.take();
    c.take();
    hub.command(1, chat("hi all"), t());
    assert_eq!(a.take(), Vec::<String>::new());
    assert_eq!(b.take(), [format!("MSG {} 1 #lobby alice hi all", t())]);
    assert_eq!(c.take(), Vec::<String>::new(), "unregistered hear nothing");
}

#[test]
fn unregistered_may_only_nick_help_ping_quit() {
    let mut hub = Hub::new(60);
    let c = Inbox::new(100);
    hub.connect(1, c.clone(), t());
    c.take();
    hub.command(1, chat("hello"), t());
    hub.command(1, Command::Users { room: None }, t());
    let got = c.take();
    assert!(
        got.iter().all(|l| l.starts_with("ERR not-registered ")),
        "{got:?}"
    );
    hub.command(1, Command::Ping("x".into()), t());
    assert_eq!(c.take(), ["PONG x"]);
    hub.command(1, Command::Help, t());
    assert_eq!(c.take().len(), HELP.len());
}

#[test]
fn taken_and_invalid_nicks_get_a_free_suggestion() {
    let mut hub = Hub::new(60);
    let _a = join(&mut hub, 1, "alice");
    let b = Inbox::new(100);
    hub.connect(2, b.clone(), t());
    hub.command(2, Command::Nick("ALICE".into()), t());
    assert_eq!(
        b.take().last().unwrap(),
        "ERR nick-taken Someone already uses the nickname ALICE; try ALICE2"
    );
    hub.command(2, Command::Nick("9 lives".into()), t());
    assert_eq!(
        b.take(),
        ["ERR nick-invalid A nickname starts with a letter; try guest9lives"]
    );
}

#[test]
fn nick_change_is_announced_and_frees_the_old_name() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    a.take();
    b.take();
    hub.command(1, Command::Nick("Alicia".into()), t());
    let line = format!("NICK {} alice Alicia", t());
    assert_eq!(a.take(), std::slice::from_ref(&line));
    assert_eq!(b.take(), [line]);
    let _c = join(&mut hub, 3, "alice");
    assert_eq!(
        hub.nicknames().collect::<Vec<_>>(),
        ["alice", "Alicia", "bob"]
    );
    hub.command(1, Command::Nick("ALICIA".into()), t());
    assert_eq!(
        hub.nick(1),
        Some("ALICIA"),
        "case change of own nick is allowed"
    );
}

#[test]
fn quit_says_bye_and_announces_once() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    a.take();
    b.take();
    hub.command(1, Command::Quit("lunch".into()), t());
    hub.disconnect(1, "connection closed", t());
    assert_eq!(a.take(), ["BYE Goodbye!"]);
    assert_eq!(b.take(), [format!("QUIT {} alice lunch", t())]);
    assert_eq!(hub.len(), 1);
}

#[test]
fn a_full_outbox_drops_only_that_client() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let slow = Inbox::new(6);
    hub.connect(2, slow.clone(), t());
    hub.command(2, Command::Nick("slow".into()), t());
    a.take();
    for i in 0..5 {
        hub.command(1, chat(&format!("line {i}")), t());
    }
    assert_eq!(hub.nicknames().collect::<Vec<_>>(), ["alice"]);
    assert!(*slow.closed.borrow());
    assert_eq!(
        a.take(),
        [format!("QUIT {} slow too slow: stopped reading", t())]
    );
}

fn cmd(hub: &mut Hub<Inbox>, id: ClientId, line: &str) {
    let command = crate::protocol::parse_command(line).unwrap();
    hub.command(id, command, t());
}

#[test]
fn rooms_carry_their_own_messages() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    let c = join(&mut hub, 3, "carol");
    cmd(&mut hub, 1, "JOIN #Rust");
    cmd(&mut hub, 2, "/join rust");
    a.take();
    b.take();
    c.take();
    cmd(&mut hub, 1, "borrowck!");
    assert_eq!(b.take(), [format!("MSG {} 1 #Rust alice borrowck!", t())]);
    assert_eq!(c.take(), Vec::<String>::new(), "carol is not in #Rust");
    cmd(&mut hub, 1, "MSG #lobby hi all");
    assert_eq!(b.take(), [format!("MSG {} 2 #lobby alice hi all", t())]);
    assert_eq!(c.take(), [format!("MSG {} 2 #lobby alice hi all", t())]);
    cmd(&mut hub, 3, "MSG #rust sneaky");
    assert!(c.take()[0].starts_with("ERR not-in-room "));
    cmd(&mut hub, 3, "MSG #nowhere hi");
    assert!(c.take()[0].starts_with("ERR no-such-room "));
    cmd(&mut hub, 1, "USERS");
    assert_eq!(a.take(), ["USERS #Rust alice bob"]);
    assert_eq!(hub.rooms_of(1), ["#lobby", "#Rust"]);
}

#[test]
fn join_announces_and_part_leaves_quietly_elsewhere() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    a.take();
    b.take();
    cmd(&mut hub, 1, "JOIN #rust");
    assert_eq!(
        a.take(),
        [
            format!("JOIN {} #rust alice", t()),
            "USERS #rust alice".to_string(),
            "INFO Messages without a room now go to #rust.".to_string(),
        ]
    );
    assert_eq!(b.take(), Vec::<String>::new(), "bob is not in #rust");
    cmd(&mut hub, 2, "JOIN #rust");
    assert_eq!(a.take(), [format!("JOIN {} #rust bob", t())]);
    b.take();
    cmd(&mut hub, 2, "PART #rust bored");
    let part = format!("PART {} #rust bob bored", t());
    assert_eq!(a.take(), std::slice::from_ref(&part));
    assert_eq!(
        b.take(),
        [
            part,
            "INFO Messages without a room now go to #lobby.".to_string()
        ]
    );
    cmd(&mut hub, 1, "PART");
    cmd(&mut hub, 1, "ROOMS");
    let got = a.take();
    assert_eq!(
        got[got.len() - 2..],
        ["ROOM #lobby 2 ", "ROOMS 1"].map(|s| s.trim_end())
    );
}

#[test]
fn whispers_reach_only_their_recipient() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    let c = join(&mut hub, 3, "carol");
    a.take();
    b.take();
    c.take();
    cmd(&mut hub, 1, "/w BOB meet at 5");
    assert_eq!(b.take(), [format!("WHISPER {} 1 alice bob meet at 5", t())]);
    assert_eq!(a.take(), Vec::<String>::new());
    assert_eq!(c.take(), Vec::<String>::new());
    cmd(&mut hub, 1, "/w dave hi");
    assert!(a.take()[0].starts_with("ERR no-such-nick "));
}

#[test]
fn topics_are_set_shown_and_listed() {
    let mut hub = Hub::new(60);
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    b.take();
    cmd(&mut hub, 1, "TOPIC Welcome all");
    a.take();
    let topic = format!("TOPIC {} #lobby alice Welcome all", t());
    assert_eq!(b.take(), std::slice::from_ref(&topic));
    cmd(&mut hub, 2, "/topic");
    assert_eq!(b.take(), std::slice::from_ref(&topic));
    cmd(&mut hub, 2, "ROOMS");
    assert_eq!(b.take(), ["ROOM #lobby 2 Welcome all", "ROOMS 1"]);
    let _c = join(&mut hub, 3, "carol");
    let c_lines = _c.take();
    assert!(c_lines.contains(&topic), "a newcomer is told the topic");
}

#[test]
fn history_is_recorded_and_fetched_only_when_on() {
    let mut hub: Hub<Inbox> = Hub::with_config(HubConfig {
        history: true,
        last_msg_id: 41,
        ..HubConfig::default()
    });
    let a = join(&mut hub, 1, "alice");
    let _b = join(&mut hub, 2, "bob");
    let fetches = hub.take_fetches();
    assert_eq!(fetches.len(), 2, "each registration replays the lobby");
    assert_eq!(fetches[1].range, Range::Before(42));
    cmd(&mut hub, 1, "hello");
    cmd(&mut hub, 1, "/w bob secret");
    let records = hub.take_records();
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [42, 43]);
    assert_eq!(records[1].place, Place::Private("bob".into()));
    cmd(&mut hub, 2, "HISTORY alice 10");
    let fetch = &hub.take_fetches()[0];
    assert_eq!(fetch.client, 2);
    assert_eq!(
        fetch.scope,
        Scope::Private {
            a: "bob".into(),
            b: "alice".into(),
            after: 41
        }
    );
    cmd(&mut hub, 1, "HISTORY #rust");
    assert!(a.take().last().unwrap().starts_with("ERR no-such-room "));

    let mut off = Hub::new(60);
    let x = join(&mut off, 1, "x");
    x.take();
    cmd(&mut off, 1, "HISTORY #lobby");
    assert!(x.take()[0].starts_with("ERR history-off "));
    assert!(off.take_fetches().is_empty());
}

#[test]
fn connections_without_a_nick_time_out() {
    let mut hub = Hub::new(60);
    let idle = Inbox::new(100);
    hub.connect(1, idle.clone(), t());
    let a = join(&mut hub, 2, "alice");
    idle.take();
    a.take();
    let later = |s| Timestamp::from_unix(t().unix() + s).unwrap();
    hub.tick(later(59));
    assert_eq!(hub.len(), 2);
    hub.tick(later(60));
    let got = idle.take();
    assert!(got[0].starts_with("ERR timeout "), "{got:?}");
    assert!(got[1].starts_with("BYE "));
    assert!(*idle.closed.borrow());
    assert_eq!(hub.len(), 1, "the registered client stays");
    assert_eq!(a.take(), Vec::<String>::new(), "nobody hears of it");
}

#[test]
fn message_ids_come_from_the_clock_and_never_pass_the_reservation() {
    // Story: ids only grow, follow the clock, and a message is refused rather than numbered beyond what is on disk.
    let mut hub: Hub<Inbox> = Hub::with_config(HubConfig {
        history: true,
        last_msg_id: 41,
        ..HubConfig::default()
    });
    let a = join(&mut hub, 1, "alice");
    let b = join(&mut hub, 2, "bob");
    a.take();
    b.take();
    let say = |hub: &mut Hub<Inbox>, text: &str| {
        hub.command(
            1,
            Command::Msg {
                room: None,
                text: text.into(),
            },
            t(),
        );
    };
    const T: u64 = 1_800_000_000_000_000;
    hub.clock_ids(T, T + 1);
    say(&mut hub, "one");
    say(&mut hub, "two");
    assert!(!hub.can_number());
    say(&mut hub, "three");
    assert_eq!(
        b.take(),
        [
            format!("MSG {} {T} #lobby alice one", t()),
            format!("MSG {} {} #lobby alice two", t(), T + 1),
        ]
    );
    let refused = a.take();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].starts_with("ERR busy "), "{refused:?}");
    let wanted = hub
        .take_id_reservation()
        .expect("a reservation is asked for");
    assert!(wanted > T + 1);
    // Reserved now, and the clock went back: ids still grow.
    hub.clock_ids(T - 1_000_000, wanted);
    say(&mut hub, "three");
    assert_eq!(
        b.take(),
        [format!("MSG {} {} #lobby alice three", t(), T + 2)]
    );
    // An account made elsewhere with a later start: ids go above it.
    hub.load(
        crate::accounts::Snapshot {
            accounts: vec![AccountInfo {
                nick: "carol".into(),
                operator: false,
                since: T + 100,
            }],
            bans: Vec::new(),
            mutes: Vec::new(),
        },
        t(),
    );
    say(&mut hub, "four");
    assert_eq!(
        b.take(),
        [format!("MSG {} {} #lobby alice four", t(), T + 101)]
    );
    assert_eq!(hub.last_id(), T + 101);
    let ids: Vec<u64> = hub.take_records().iter().map(|r| r.id).collect();
    assert_eq!(ids, [T, T + 1, T + 2, T + 101]);
}

/// Big rooms: a client's lists, replayed from the lines it got as the
/// clients do (`JOIN`, `PART`, `QUIT`, `NICK`, `USERS`, `JOINS`, `PARTS`).
struct Crowd {
    hub: Hub<Inbox>,
    inboxes: BTreeMap<ClientId, Inbox>,
    /// Per client: its nick, and folded room -> folded nicks.
    views: BTreeMap<ClientId, (String, BTreeMap<String, Vec<String>>)>,
    /// Every line each client got, in order.
    logs: BTreeMap<ClientId, Vec<String>>,
}

impl Crowd {
    fn new(big_room: usize) -> Self {
        Self {
            hub: Hub::with_config(HubConfig {
                big_room,
                ..HubConfig::default()
            }),
            inboxes: BTreeMap::new(),
            views: BTreeMap::new(),
            logs: BTreeMap::new(),
        }
    }

    fn arrive(&mut self, id: ClientId, nick: &str) {
        let inbox = Inbox::new(10_000);
        self.hub.connect(id, inbox.clone(), t());
        self.inboxes.insert(id, inbox);
        self.cmd(id, &format!("NICK {nick}"));
    }

    fn cmd(&mut self, id: ClientId, line: &str) {
        let command = crate::protocol::parse_command(line).unwrap();
        self.hub.command(id, command, t());
        self.read();
    }

    fn flush(&mut self) {
        self.hub.flush_presence(t());
        self.read();
    }

    /// Everyone reads what it was sent, into its view.
    fn read(&mut self) {
        for (&id, inbox) in &self.inboxes {
            let view = self.views.entry(id).or_default();
            for line in inbox.take() {
                self.logs.entry(id).or_default().push(line.clone());
                let (me, rooms) = &mut *view;
                let add = |list: &mut Vec<String>, n: &str| {
                    let n = names::fold(n);
                    if let Err(i) = list.binary_search(&n) {
                        list.insert(i, n);
                    }
                };
                match ServerLine::parse(&line).unwrap() {
                    ServerLine::Welcome { nick, .. } => *me = nick,
                    ServerLine::Join { room, nick, .. }
                        if names::fold(&nick) == names::fold(me) =>
                    {
                        rooms.insert(names::fold(&room), vec![names::fold(&nick)]);
                    }
                    ServerLine::Join { room, nick, .. } => {
                        add(rooms.get_mut(&names::fold(&room)).unwrap(), &nick)
                    }
                    ServerLine::Part { room, nick, .. }
                        if names::fold(&nick) == names::fold(me) =>
                    {
                        rooms.remove(&names::fold(&room));
                    }
                    ServerLine::Part { room, nick, .. } => rooms
                        .get_mut(&names::fold(&room))
                        .unwrap()
                        .retain(|n| *n != names::fold(&nick)),
                    ServerLine::Quit { nick, .. } => {
                        for list in rooms.values_mut() {
                            list.retain(|n| *n != names::fold(&nick));
                        }
                    }
                    ServerLine::Nick { old, new, .. } => {
                        if names::fold(&old) == names::fold(me) {
                            *me = new.clone();
                        }
                        for list in rooms.values_mut() {
                            if let Some(i) = list.iter().position(|n| *n == names::fold(&old)) {
                                list.remove(i);
                                add(list, &new);
                            }
                        }
                    }
                    ServerLine::Users { room, nicks } => {
                        let list = rooms.get_mut(&names::fold(&room)).unwrap();
                        *list = nicks.iter().map(|n| names::fold(n)).collect();
                    }
                    ServerLine::Joins { room, nicks } => {
                        let list = rooms.get_mut(&names::fold(&room)).unwrap();
                        for n in nicks {
                            add(list, &n);
                        }
                    }
                    ServerLine::Parts { room, nicks } => {
                        let list = rooms.get_mut(&names::fold(&room)).unwrap();
                        list.retain(|n| !nicks.iter().any(|p| names::fold(p) == *n));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every client's lists are the truth, in every room without news
    /// pending.
    fn check(&self) {
        for (&id, (_, rooms)) in &self.views {
            if self.hub.nick(id).is_none() {
                continue;
            }
            let truth: Vec<String> = self
                .hub
                .rooms_of(id)
                .iter()
                .map(|r| names::fold(r))
                .collect();
            let mut seen: Vec<String> = rooms.keys().cloned().collect();
            seen.sort();
            let mut truth_sorted = truth.clone();
            truth_sorted.sort();
            assert_eq!(seen, truth_sorted, "client {id}: rooms");
            for room in truth {
                if self.hub.presence_pending(&room) {
                    continue;
                }
                let members: Vec<String> = self
                    .hub
                    .members(&room)
                    .iter()
                    .map(|n| names::fold(n))
                    .collect();
                assert_eq!(rooms[&room], members, "client {id}: members of {room}");
            }
        }
    }

    fn lines_since(&mut self, id: ClientId) -> Vec<String> {
        std::mem::take(self.logs.entry(id).or_default())
    }
}

#[test]
fn a_big_room_gathers_joins_and_sends_newcomers_the_members_list_at_once() {
    let mut c = Crowd::new(3);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.check();
    assert_eq!(
        c.lines_since(1).last().unwrap(),
        &format!("JOIN {} #lobby bob", t())
    );
    // carol makes the lobby big: only she hears her JOIN, and she is sent
    // at once what the members hold, and her own name; dave, who comes
    // before the flush, is told what the members hold too, not carol.
    c.arrive(3, "carol");
    c.arrive(4, "dave");
    assert_eq!(c.lines_since(1), Vec::<String>::new());
    let carol = c.lines_since(3);
    let join = carol.iter().position(|l| l.starts_with("JOIN ")).unwrap();
    assert_eq!(carol[join], format!("JOIN {} #lobby carol", t()));
    assert_eq!(
        carol[join + 1..],
        ["USERS #lobby carol", "JOINS #lobby alice bob"]
    );
    let dave = c.lines_since(4);
    assert_eq!(
        dave[dave.len() - 2..],
        ["USERS #lobby dave", "JOINS #lobby alice bob"]
    );
    assert!(c.hub.presence_pending("#lobby"));
    // At the flush everyone, the newcomers too, gets the same deltas:
    // lines encoded once and shared, so the server's memory counts them
    // once (a storm of 10,000 arrivals in one interval is one list for
    // all), each client's own bound once per copy.
    c.flush();
    c.check();
    assert_eq!(c.lines_since(1), ["JOINS #lobby carol dave"]);
    assert_eq!(c.lines_since(3), ["JOINS #lobby carol dave"]);
    assert_eq!(
        c.inboxes[&1].shared.borrow().last().unwrap(),
        "JOINS #lobby carol dave"
    );
    assert!(!c.hub.presence_pending("#lobby"));
    // Nothing new: nothing sent.
    c.flush();
    assert_eq!(c.lines_since(1), Vec::<String>::new());
    // Departures, gathered; the leaver hears its own PART at once.
    c.lines_since(2);
    c.cmd(2, "PART #lobby");
    c.cmd(4, "QUIT bye");
    assert!(c.lines_since(2)[0].starts_with("PART "));
    assert_eq!(c.lines_since(1), Vec::<String>::new());
    c.flush();
    c.check();
    assert_eq!(c.lines_since(1), ["PARTS #lobby bob dave"]);
}

#[test]
fn join_then_leave_inside_one_interval_is_no_news() {
    let mut c = Crowd::new(2);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.flush();
    c.lines_since(1);
    c.arrive(3, "carol");
    c.cmd(3, "PART #lobby");
    c.arrive(4, "dave");
    c.cmd(4, "QUIT");
    c.flush();
    c.check();
    assert_eq!(c.lines_since(1), Vec::<String>::new());
    // carol, in no room now, is sent nothing at the flush.
    let carol = c.lines_since(3);
    let part = carol.iter().position(|l| l.starts_with("PART ")).unwrap();
    assert!(!carol[part..].iter().any(|l| l.starts_with("JOINS")));
}

#[test]
fn leave_then_rejoin_inside_one_interval_keeps_the_members_lists() {
    let mut c = Crowd::new(2);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.arrive(3, "carol");
    c.flush();
    c.lines_since(1);
    c.lines_since(2);
    c.cmd(2, "PART #lobby");
    c.cmd(2, "JOIN #lobby");
    c.flush();
    c.check();
    assert_eq!(c.lines_since(1), Vec::<String>::new(), "no news for alice");
    // bob, back, was sent the list the members hold, himself on it, and no
    // deltas since nothing changed for them.
    let bob = c.lines_since(2);
    let users = bob.iter().position(|l| l.starts_with("USERS")).unwrap();
    assert_eq!(
        bob[users..users + 2],
        ["USERS #lobby bob", "JOINS #lobby alice bob carol"]
    );
    assert!(
        !bob[users + 2..].iter().any(|l| l.starts_with("JOINS")),
        "{bob:?}"
    );
}

#[test]
fn a_nick_change_applies_to_exact_lists() {
    let mut c = Crowd::new(2);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.flush();
    // carol is still pending when she renames: the room is flushed first,
    // so alice learns of carol, then of the rename.
    c.arrive(3, "carol");
    c.lines_since(1);
    c.cmd(3, "NICK carla");
    c.check();
    assert!(!c.hub.presence_pending("#lobby"));
    let alice = c.lines_since(1);
    assert_eq!(alice[0], "JOINS #lobby carol");
    assert_eq!(alice[1], format!("NICK {} carol carla", t()));
    // bob leaves and renames while the flush is due: the PARTS comes first,
    // and nobody is told a rename of someone no longer listed.
    c.cmd(2, "PART #lobby");
    c.cmd(2, "NICK bobby");
    c.check();
    assert_eq!(c.lines_since(1), ["PARTS #lobby bob"]);
    // Someone takes the freed name and joins: one JOINS of it.
    c.arrive(4, "bob");
    c.flush();
    c.check();
    assert_eq!(c.lines_since(1), ["JOINS #lobby bob"]);
}

#[test]
fn a_disconnect_and_a_retaken_nick_inside_one_interval_part_before_they_join() {
    let mut c = Crowd::new(3);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.arrive(3, "carol");
    // alice and bob share a small room, where bob's QUIT is immediate.
    c.cmd(1, "JOIN #small");
    c.cmd(2, "JOIN #small");
    c.flush();
    c.check();
    c.lines_since(1);
    c.lines_since(3);
    c.hub.disconnect(2, "reset", t());
    c.read();
    assert!(
        c.lines_since(1)[0].starts_with("QUIT "),
        "immediate in #small"
    );
    assert_eq!(c.lines_since(3), Vec::<String>::new(), "gathered in #lobby");
    c.arrive(5, "Bob");
    c.flush();
    c.check();
    assert_eq!(c.lines_since(3), ["PARTS #lobby bob", "JOINS #lobby Bob"]);
    assert_eq!(c.lines_since(1), ["PARTS #lobby bob", "JOINS #lobby Bob"]);
}

#[test]
fn users_in_a_big_room_answers_at_once_with_what_the_members_hold() {
    let mut c = Crowd::new(2);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.flush();
    c.lines_since(1);
    c.lines_since(2);
    c.cmd(1, "USERS");
    assert_eq!(
        c.lines_since(1),
        ["USERS #lobby alice bob"],
        "nothing pending: at once"
    );
    // With carol's arrival pending, alice is answered the list as it was
    // told, and the flush brings her and bob up to date alike.
    c.arrive(3, "carol");
    c.cmd(1, "USERS");
    assert_eq!(
        c.lines_since(1),
        ["USERS #lobby alice", "JOINS #lobby alice bob"]
    );
    c.flush();
    c.check();
    assert_eq!(c.lines_since(1), ["JOINS #lobby carol"]);
    assert_eq!(c.lines_since(2), ["JOINS #lobby carol"]);
}

#[test]
fn long_member_lists_are_split_into_users_then_joins_lines() {
    let mut c = Crowd::new(2);
    for i in 0..300 {
        c.arrive(i, &format!("member{i:04}_xxxxx"));
    }
    c.flush();
    c.check();
    let last = c.lines_since(299);
    let users = last.iter().position(|l| l.starts_with("USERS ")).unwrap();
    let list = &last[users..];
    assert!(list.len() > 2, "{} lines", list.len());
    assert!(list[1..].iter().all(|l| l.starts_with("JOINS #lobby ")));
    assert!(list.iter().all(|l| l.len() + 2 <= LIST_LINE));
    let deltas = c.lines_since(0);
    assert!(deltas.iter().all(|l| l.len() + 2 <= LIST_LINE));
    // A room that shrinks below the threshold is immediate again.
    let mut c = Crowd::new(3);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.arrive(3, "carol");
    c.cmd(3, "QUIT");
    c.cmd(2, "QUIT");
    c.flush();
    c.lines_since(1);
    c.arrive(4, "dave");
    assert_eq!(c.lines_since(1), [format!("JOIN {} #lobby dave", t())]);
    c.check();
}

#[test]
fn a_rename_from_a_name_a_big_room_still_lists_for_someone_gone_flushes_it_first() {
    let mut c = Crowd::new(2);
    c.arrive(1, "alice");
    c.arrive(2, "bob");
    c.cmd(1, "JOIN #big");
    c.arrive(3, "carol");
    c.cmd(3, "JOIN #big");
    c.flush();
    c.check();
    // carol goes; #big still owes alice her PARTS when someone else takes
    // the name and renames: the NICK must not rename #big's stale entry.
    c.hub.disconnect(3, "reset", t());
    c.read();
    c.arrive(4, "carol");
    c.cmd(4, "NICK carla");
    c.flush();
    c.check();
    assert_eq!(c.views[&1].1["#big"], ["alice"]);
}
