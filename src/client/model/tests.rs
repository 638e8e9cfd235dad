//! The model's tests: server lines and typed lines in, what the user sees
//! and what is sent out.

use super::*;
use crate::client::connection::Event;
use crate::client::inbound;
use crate::client::Entry;
use crate::protocol::ServerLine;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs).unwrap_or_else(Timestamp::now)
}

fn line(s: &str) -> Event {
    match ServerLine::parse(s) {
        Ok(l) => Event::Line(l),
        Err(e) => panic!("bad test line {s:?}: {e}"),
    }
}

/// A model registered as alice with bob and carol in the lobby.
fn online() -> Model {
    let mut m = Model::new("host:1", "alice", 50);
    m.apply(Event::State(ConnState::Registering), t(0));
    m.apply(line("WELCOME alice Hello alice!"), t(0));
    m.apply(Event::State(ConnState::Online), t(0));
    m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby alice"), t(0));
    m.apply(line("USERS #lobby alice bob Carol"), t(0));
    m
}

fn render(e: &Entry) -> String {
    match &e.kind {
        EntryKind::Chat { nick, text, .. } => format!("<{nick}> {text}"),
        EntryKind::Whisper { from, to, text, .. } => format!("[{from}->{to}] {text}"),
        EntryKind::System { text, .. } => format!("* {text}"),
    }
}

fn texts(m: &Model) -> Vec<String> {
    m.scrollback().iter().map(render).collect()
}

fn pane_texts(m: &Model, target: Target) -> Vec<String> {
    m.pane(&target)
        .map(|p| p.scrollback().iter().map(render).collect())
        .unwrap_or_default()
}

fn ends_with(got: &[String], want: &[&str]) -> bool {
    got.len() >= want.len()
        && got[got.len() - want.len()..]
            .iter()
            .zip(want)
            .all(|(a, b)| a == b)
}

fn room(name: &str) -> Target {
    Target::Room(name.into())
}

fn private(nick: &str) -> Target {
    Target::Private(nick.into())
}

fn send(command: Command) -> Action {
    Action::Send(Outgoing::Command(command))
}

fn hist(target: &str, query: HistoryQuery) -> Outgoing {
    history(target, query)
}

#[test]
fn replayed_history_is_shown_once_in_id_order() {
    // Story: joining shows the recent conversation in order, and reconnecting does not repeat it.
    let mut m = online();
    // A live line overtakes the replay, which still goes above it.
    m.apply(line("MSG 2026-11-26T09:02:00Z 3 #lobby bob live"), t(1));
    m.apply(
        line("HIST MSG 2026-11-26T09:00:00Z 1 #lobby bob first"),
        t(1),
    );
    m.apply(
        line("HIST MSG 2026-11-26T09:01:00Z 2 #lobby Carol second alice"),
        t(1),
    );
    m.apply(
        line("HIST MSG 2026-11-26T09:01:00Z 2 #lobby Carol second alice"),
        t(1),
    );
    m.apply(line("HIST END #lobby 3"), t(1));
    let expected = [
        "<bob> first",
        "<Carol> second alice",
        "* Above: 2 earlier messages of #lobby.",
        "<bob> live",
    ];
    assert!(ends_with(&texts(&m), &expected), "{:#?}", texts(&m));
    let mention = m.scrollback().iter().rev().nth(2).map(|e| e.kind.clone());
    assert!(matches!(
        mention,
        Some(EntryKind::Chat { mention: true, .. })
    ));
    // Reconnected: the server replays 1 to 4; only 4 is new.
    for l in [
        "HIST MSG 2026-11-26T09:00:00Z 1 #lobby bob first",
        "HIST MSG 2026-11-26T09:02:00Z 3 #lobby bob live",
        "HIST MSG 2026-11-26T09:03:00Z 4 #lobby bob while you were away",
        "HIST END #lobby 3",
    ] {
        m.apply(line(l), t(3));
    }
    let expected = [
        "<bob> live",
        "<bob> while you were away",
        "* Above: 1 message you missed.",
    ];
    assert!(ends_with(&texts(&m), &expected), "{:#?}", texts(&m));
}

#[test]
fn each_room_has_its_own_pane_users_and_unread_count() {
    // Story: after /join the chat panel, title and user list follow the shown room; other rooms count unread lines.
    let mut m = online();
    let sent = m.submit("/join rust", t(1));
    assert_eq!(sent.action, send(Command::Join("#rust".into())));
    assert_eq!(m.room(), "#lobby", "shown once the server confirms");
    let c = m.apply(line("JOIN 2026-11-26T09:30:00Z #rust alice"), t(1));
    assert!(c.status && c.users && c.panes && c.scrollback);
    assert_eq!(m.room(), "#rust");
    m.apply(
        line("TOPIC 2026-11-26T09:30:00Z #rust bob all about crabs"),
        t(1),
    );
    m.apply(line("USERS #rust alice bob"), t(1));
    assert_eq!(m.users(), ["alice", "bob"]);
    assert_eq!(m.topic(), "all about crabs");
    let c = m.apply(line("JOIN 2026-11-26T09:31:00Z #lobby dave"), t(2));
    assert!(
        !c.users && !c.scrollback,
        "a join elsewhere leaves this pane alone"
    );
    let c = m.apply(
        line("MSG 2026-11-26T09:31:00Z 5 #lobby bob over here alice"),
        t(2),
    );
    assert!(c.panes && !c.scrollback);
    let lobby = m.pane(&room("#lobby")).map(|p| (p.unread(), p.alert()));
    assert_eq!(lobby, Some((1, true)));
    assert!(!texts(&m).iter().any(|l| l.contains("over here")));
    // Plain lines go to the shown room, by name.
    let sent = m.submit("hello crabs", t(3));
    assert_eq!(
        sent.action,
        send(Command::Msg {
            room: Some("#rust".into()),
            text: "hello crabs".into()
        })
    );
    m.apply(line("QUIT 2026-11-26T09:32:00Z bob gone"), t(3));
    assert_eq!(m.users(), ["alice"]);
    assert!(pane_texts(&m, room("#lobby")).contains(&"* bob left (gone)".to_owned()));
    // Switching back marks the lobby read.
    let c = m.show(0);
    assert!(c.scrollback && c.users && c.status);
    assert_eq!(m.shown().unread(), 0);
    assert_eq!(m.users(), ["alice", "Carol", "dave"]);
    m.show(1);
    assert_eq!(
        m.submit("/part", t(4)).action,
        send(Command::Part {
            room: Some("#rust".into()),
            reason: String::new()
        })
    );
    m.apply(line("PART 2026-11-26T09:33:00Z #rust alice"), t(4));
    m.apply(line("INFO Messages without a room now go to #lobby."), t(4));
    assert_eq!(m.room(), "#lobby");
    assert_eq!(m.rooms().collect::<Vec<_>>(), ["#lobby"]);
    assert_eq!(m.panes().len(), 1);
    assert_eq!(
        texts(&m).last().map(String::as_str),
        Some("* You left #rust")
    );
}

#[test]
fn private_conversations_get_their_own_pane() {
    // Story: a whisper opens a private pane; lines typed there stay private; nobody else's pane shows them.
    let mut m = online();
    let c = m.apply(line("WHISPER 2026-11-26T09:30:00Z 9 bob alice psst"), t(1));
    assert!(c.panes && !c.scrollback);
    let bob = m
        .pane(&private("bob"))
        .map(|p| (p.unread(), p.alert(), p.users().to_vec()));
    assert_eq!(
        bob,
        Some((1, true, vec!["alice".to_owned(), "bob".to_owned()]))
    );
    assert!(!texts(&m).iter().any(|l| l.contains("psst")));
    // /msg from the lobby: sent privately, echoed in bob's pane and here.
    let sent = m.submit("/msg bob hi there", t(2));
    assert_eq!(
        sent.action,
        send(Command::Whisper {
            nick: "bob".into(),
            text: "hi there".into()
        })
    );
    assert_eq!(
        texts(&m).last().map(String::as_str),
        Some("[alice->bob] hi there")
    );
    m.show_next();
    assert_eq!(m.shown().name(), "bob");
    assert_eq!(m.room(), "");
    assert_eq!(texts(&m), ["[bob->alice] psst", "[alice->bob] hi there"]);
    let sent = m.submit("plain line", t(3));
    assert_eq!(
        sent.action,
        send(Command::Whisper {
            nick: "bob".into(),
            text: "plain line".into()
        })
    );
    assert!(!m.submit("/topic x", t(3)).clear_input, "no topics here");
    m.apply(line("NICK 2026-11-26T09:31:00Z bob robert"), t(4));
    assert_eq!(
        m.shown().name(),
        "robert",
        "the conversation follows the rename"
    );
    let c = m.submit("/close", t(5)).changes;
    assert!(c.panes && c.scrollback);
    assert_eq!(m.room(), "#lobby");
    // /query opens and shows a pane and asks for its history.
    let opened = m.submit("/query carol", t(6));
    assert_eq!(m.shown().name(), "carol");
    assert_eq!(
        opened.changes.requests,
        [hist("carol", HistoryQuery::Last(HISTORY_DEFAULT))]
    );
}

#[test]
fn private_panes_are_bounded() {
    // Story: a flood of whisperers cannot grow the client without bound.
    let mut m = online();
    for i in 0..(MAX_PRIVATE + 5) {
        let l = format!("WHISPER 2026-11-26T09:30:00Z {} u{i} alice hey", i + 1);
        m.apply(line(&l), t(1));
    }
    let private = m.panes().iter().filter(|p| p.is_private()).count();
    assert_eq!(private, MAX_PRIVATE);
    assert!(
        m.pane(&Target::Private("u0".into())).is_none(),
        "the quietest went"
    );
    assert!(m
        .pane(&Target::Private(format!("u{}", MAX_PRIVATE + 4)))
        .is_some());
    assert_eq!(m.shown().name(), "#lobby");
}

#[test]
fn scrolling_past_the_top_asks_for_the_page_before() {
    // Story: scrolling up past the oldest line fetches older history, once at a time, until there is none.
    let mut m = online();
    m.apply(
        line("HIST MSG 2026-11-26T09:00:00Z 40 #lobby bob forty"),
        t(1),
    );
    m.apply(line("HIST END #lobby 1"), t(1));
    assert_eq!(m.older(), Some(hist("#lobby", HistoryQuery::Before(40))));
    assert_eq!(m.older(), None, "one request at a time");
    m.apply(
        line("HIST MSG 2026-11-26T08:00:00Z 12 #lobby bob twelve"),
        t(2),
    );
    m.apply(line("HIST END #lobby 1"), t(2));
    let older: Vec<String> = texts(&m)
        .into_iter()
        .filter(|l| l.starts_with("<bob>"))
        .collect();
    assert_eq!(older, ["<bob> twelve", "<bob> forty"]);
    assert_eq!(m.older(), Some(hist("#lobby", HistoryQuery::Before(12))));
    m.apply(line("HIST END #lobby 0"), t(3));
    assert_eq!(m.older(), None, "nothing older");
    // A private pane without any id asks for the newest page.
    m.apply(line("WHISPER 2026-11-26T09:30:00Z 50 bob alice hi"), t(4));
    m.show_next();
    assert_eq!(m.older(), Some(hist("bob", HistoryQuery::Before(50))));
}

#[test]
fn reconnecting_fetches_what_was_missed_and_own_echoes_get_their_ids() {
    // Story: back after a drop, each conversation fetches exactly what it missed, and my own lines are not repeated.
    let mut m = online();
    m.apply(line("HIST END #lobby 0"), t(1));
    m.apply(line("TOPIC 2026-11-26T09:30:00Z #lobby bob old news"), t(1));
    m.apply(line("MSG 2026-11-26T09:31:00Z 10 #lobby bob before"), t(1));
    m.submit("mine", t(2));
    m.apply(
        line("WHISPER 2026-11-26T09:31:00Z 11 bob alice private"),
        t(2),
    );
    m.apply(
        Event::State(ConnState::Offline {
            reason: "gone".into(),
            retry_in: std::time::Duration::from_secs(1),
        }),
        t(3),
    );
    assert_eq!(m.rooms().count(), 0);
    m.apply(Event::State(ConnState::Registering), t(4));
    let c = m.apply(line("WELCOME alice Hello again!"), t(4));
    assert_eq!(c.requests, [hist("bob", HistoryQuery::Since(11))]);
    m.apply(Event::State(ConnState::Online), t(4));
    let c = m.apply(line("JOIN 2026-11-26T09:40:00Z #lobby alice"), t(4));
    assert_eq!(c.requests, [hist("#lobby", HistoryQuery::Since(10))]);
    assert_eq!(m.topic(), "", "the room was made again without one");
    for l in [
        "HIST MSG 2026-11-26T09:31:00Z 10 #lobby bob before",
        "HIST MSG 2026-11-26T09:32:00Z 12 #lobby alice mine",
        "HIST MSG 2026-11-26T09:35:00Z 13 #lobby bob while away",
        "HIST END #lobby 3",
        "HIST MSG 2026-11-26T09:32:00Z 12 #lobby alice mine",
        "HIST MSG 2026-11-26T09:35:00Z 13 #lobby bob while away",
        "HIST END #lobby 2",
    ] {
        m.apply(line(l), t(5));
    }
    let chat: Vec<String> = texts(&m)
        .into_iter()
        .filter(|l| l.starts_with('<'))
        .collect();
    assert_eq!(chat, ["<bob> before", "<alice> mine", "<bob> while away"]);
    let ids: Vec<Option<u64>> = m
        .scrollback()
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Chat { .. }))
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [Some(10), Some(12), Some(13)]);
    assert!(texts(&m).contains(&"* Above: 1 message you missed.".to_owned()));
}

#[test]
fn a_long_outage_is_one_line_not_many() {
    // Story: while the server is down the chat says so once; the status line counts attempts.
    let mut m = online();
    let offline = |reason: &str| {
        Event::State(ConnState::Offline {
            reason: reason.into(),
            retry_in: std::time::Duration::from_secs(1),
        })
    };
    m.apply(offline("the server closed the connection"), t(1));
    for attempt in 2..6 {
        m.apply(Event::State(ConnState::Connecting { attempt }), t(2));
        m.apply(offline("connection refused"), t(2));
    }
    let drops = texts(&m)
        .iter()
        .filter(|l| l.starts_with("* Disconnected"))
        .count();
    assert_eq!(drops, 1, "{:#?}", texts(&m));
    assert_eq!(
        *m.state(),
        ConnState::Offline {
            reason: "connection refused".into(),
            retry_in: std::time::Duration::from_secs(1),
        }
    );
}

#[test]
fn unknown_error_codes_are_shown_as_errors() {
    // Story: a newer server's error still reaches the user as words.
    let mut m = online();
    m.apply(
        Event::Unparsed {
            line: "ERR slow-down Please wait a moment.".into(),
            error: "malformed ERR line".into(),
        },
        t(1),
    );
    assert_eq!(
        texts(&m).last().map(String::as_str),
        Some("* Please wait a moment.")
    );
}

#[test]
fn user_list_follows_joins_leaves_and_nick_changes() {
    // Story: the user list shows who is in the room right now, sorted.
    let mut m = online();
    assert_eq!(m.users(), ["alice", "bob", "Carol"]);
    assert!(
        m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby Bea"), t(1))
            .users
    );
    assert_eq!(m.users(), ["alice", "Bea", "bob", "Carol"]);
    assert!(
        m.apply(line("QUIT 2026-11-26T09:31:00Z bob gone"), t(2))
            .users
    );
    assert!(
        m.apply(line("NICK 2026-11-26T09:32:00Z Carol zed"), t(3))
            .users
    );
    assert_eq!(m.users(), ["alice", "Bea", "zed"]);
    assert_eq!(
        texts(&m).last().map(String::as_str),
        Some("* Carol is now known as zed")
    );
}

#[test]
fn own_nick_change_and_mentions() {
    // Story: lines that mention me stand out, even after I change nickname.
    let mut m = online();
    m.apply(line("NICK 2026-11-26T09:32:00Z alice Al"), t(1));
    assert_eq!(m.nick(), Some("Al"));
    m.apply(
        line("MSG 2026-11-26T09:33:00Z 7 #lobby bob hi al, how are you"),
        t(2),
    );
    m.apply(line("MSG 2026-11-26T09:33:00Z 8 #lobby bob hi alice"), t(2));
    let mentions: Vec<bool> = m
        .scrollback()
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Chat { mention, .. } => Some(*mention),
            _ => None,
        })
        .collect();
    assert_eq!(mentions, [true, false]);
    assert!(inbound::mentions("@bob: hi", "bob"));
    assert!(!inbound::mentions("bobby", "bob"));
    assert!(!inbound::mentions("bob-2", "bob"));
}

#[test]
fn chat_is_echoed_and_refused_when_offline() {
    // Story: my messages appear at once, and typing while disconnected is refused visibly.
    let mut m = online();
    let sent = m.submit("hello  ", t(1));
    assert_eq!(
        sent.action,
        send(Command::Msg {
            room: Some("#lobby".into()),
            text: "hello".into()
        })
    );
    assert!(sent.clear_input);
    assert_eq!(texts(&m).last().map(String::as_str), Some("<alice> hello"));
    m.apply(
        Event::State(ConnState::Offline {
            reason: "gone".into(),
            retry_in: std::time::Duration::from_secs(1),
        }),
        t(2),
    );
    assert!(m.users().is_empty());
    let refused = m.submit("are you there", t(3));
    assert_eq!(refused.action, Action::None);
    assert!(!refused.clear_input);
    assert!(texts(&m).last().is_some_and(|l| l.contains("Not sent")));
}

#[test]
fn passwords_stay_out_of_the_input_history() {
    // Story: /login and /register go to the server, and Up never brings a password back.
    let mut m = online();
    assert_eq!(
        m.submit("/register secret-pass", t(1)).action,
        send(Command::Register(crate::protocol::Secret::new(
            "secret-pass"
        )))
    );
    m.submit("hello", t(1));
    m.submit("/login alice other-secret", t(1));
    m.submit("/password old-secret new-secret", t(1));
    let mut seen = Vec::new();
    while let Some(line) = m.history_up("") {
        if seen.last() == Some(&line) {
            break;
        }
        seen.push(line);
    }
    assert_eq!(seen, ["hello"]);
}

#[test]
fn slash_commands() {
    // Story: /nick, /users, /quit and unknown commands do what a chat user expects.
    let mut m = online();
    assert_eq!(
        m.submit("/nick bobby", t(1)).action,
        send(Command::Nick("bobby".into()))
    );
    assert_eq!(
        m.submit("/users", t(1)).action,
        send(Command::Users {
            room: Some("#lobby".into())
        })
    );
    assert_eq!(
        m.submit("/exit bye all", t(1)).action,
        Action::Quit("bye all".into())
    );
    assert_eq!(
        m.submit("/dance wildly", t(1)).action,
        Action::Send(Outgoing::Raw("/dance wildly".into())),
        "unknown commands go to the server as typed"
    );
    assert_eq!(
        m.submit("//shrug", t(1)).action,
        send(Command::Msg {
            room: Some("#lobby".into()),
            text: "/shrug".into()
        })
    );
    assert_eq!(
        m.submit("/join #lobby", t(1)).action,
        Action::None,
        "already there: just shown"
    );
    let bad = m.submit("/nick", t(1));
    assert_eq!(bad.action, Action::None);
    assert!(!bad.clear_input);
    let me = m.submit("/w alice", t(1));
    assert!(!me.clear_input, "no conversation with myself");
}

#[test]
fn taken_nick_prompts_with_the_suggestion() {
    // Story: a taken nickname re-prompts with the server's suggestion.
    let mut m = Model::new("host:1", "bob", 10);
    m.apply(Event::State(ConnState::Registering), t(0));
    let c = m.apply(
        line("ERR nick-taken Someone already uses the nickname bob; try bob2"),
        t(0),
    );
    assert_eq!(c.nick_prompt.map(|p| p.suggestion), Some("bob2".to_owned()));
    // Once registered, a refused /nick is just an error line.
    let mut m = online();
    let c = m.apply(
        line("ERR nick-taken Someone already uses the nickname bob; try bob2"),
        t(0),
    );
    assert_eq!(c.nick_prompt, None);
}

#[test]
fn history_walks_back_and_returns_to_the_draft() {
    // Story: Up/Down recall what I typed before without losing what I was typing.
    let mut m = online();
    m.submit("one", t(1));
    m.submit("two", t(1));
    assert_eq!(m.history_up("dra").as_deref(), Some("two"));
    assert_eq!(m.history_up("two").as_deref(), Some("one"));
    assert_eq!(m.history_up("one"), None);
    assert_eq!(m.history_down().as_deref(), Some("two"));
    assert_eq!(m.history_down().as_deref(), Some("dra"));
    assert_eq!(m.history_down(), None);
}

#[test]
fn tab_completes_and_cycles() {
    // Story: Tab completes nicknames so I can address people quickly.
    let mut m = online();
    m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby bea"), t(1));
    assert_eq!(m.complete("b", 1), Some(("bea: ".to_owned(), 5)));
    assert_eq!(m.complete("bea: ", 5), Some(("bob: ".to_owned(), 5)));
    assert_eq!(m.complete("bob: ", 5), Some(("bea: ".to_owned(), 5)));
    assert_eq!(m.complete("hi ca", 5), Some(("hi Carol ".to_owned(), 9)));
    assert_eq!(m.complete("hi al", 5), None, "never completes my own nick");
    assert_eq!(m.complete("/ni", 3), Some(("/nick ".to_owned(), 6)));
}

#[test]
fn unparsed_lines_are_shown_raw() {
    // Story: a newer or broken server never crashes the client; its odd lines are shown.
    let mut m = online();
    m.apply(
        Event::Unparsed {
            line: "TOPIC #lobby hi".into(),
            error: "unknown".into(),
        },
        t(1),
    );
    assert!(texts(&m)
        .last()
        .is_some_and(|l| l.starts_with("* TOPIC #lobby hi")));
}

#[test]
fn a_big_rooms_list_and_its_joins_and_parts_keep_the_users_exact() {
    let mut m = Model::new("host:1", "alice", 50);
    m.apply(Event::State(ConnState::Registering), t(0));
    m.apply(line("WELCOME alice Hello alice!"), t(0));
    m.apply(Event::State(ConnState::Online), t(0));
    m.apply(line("JOIN 2026-11-26T09:30:00Z #lobby alice"), t(0));
    // A message may come before its sender is listed.
    m.apply(line("MSG 2026-11-26T09:30:00Z 3 #lobby zed early"), t(0));
    m.apply(line("USERS #lobby alice bob"), t(0));
    let said = texts(&m).len();
    m.apply(line("JOINS #lobby Carol dave"), t(0));
    m.apply(line("JOINS #lobby zed"), t(0));
    assert_eq!(m.users(), ["alice", "bob", "Carol", "dave", "zed"]);
    assert_eq!(texts(&m).len(), said, "the rest of a list is not news");
    // A QUIT through another room came first; the PARTS removes the rest.
    m.apply(line("QUIT 2026-11-26T09:30:01Z dave gone"), t(1));
    m.apply(line("PARTS #lobby Carol dave"), t(1));
    m.apply(line("JOINS #lobby dave erin"), t(1));
    assert_eq!(m.users(), ["alice", "bob", "dave", "erin", "zed"]);
    assert!(ends_with(
        &texts(&m),
        &["* Carol left #lobby", "* dave, erin joined #lobby"]
    ));
}
