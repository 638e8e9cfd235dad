//! The terminal client's views, rendered in memory by Cursive's puppet
//! backend, against a real server on 127.0.0.1:0 with raw sockets as the
//! other users.
#![cfg(feature = "tui")]

mod common;

use std::time::Instant;

use common::raw::Client;
use common::screen::Ui;
use common::TIMEOUT;
use cursive::event::{Event, Key};
use cursive::style::Effect;
use cursive::Vec2;
use natter::tui::Options;

/// The chat panel's part of a row: between the left border and the user list.
fn chat_part(row: &str) -> String {
    row.chars().skip(1).take(58).collect()
}

#[test]
fn messages_from_a_raw_socket_appear_in_the_chat_panel() {
    // Story: what an nc user says shows in the chat panel with local time, sender and text.
    let server = common::start(common::config());
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    ui.wait_for("bob joined #lobby");
    bob.send_line("hello from nc: 日本語 and 🎉 fit");
    ui.wait_for("<bob> hello from nc: 日本語 and 🎉 fit");
    let row = ui.row_of("<bob>").expect("bob's line");
    let line = chat_part(&ui.rows()[row]);
    let now = natter::tui::clock(natter::protocol::Timestamp::now());
    assert!(
        line.starts_with(&now[..3]),
        "local time first: {line:?} vs {now}"
    );
    // The panel's right border is still where it belongs despite wide characters.
    let border: Vec<usize> = ui
        .rows()
        .iter()
        .skip(1)
        .take(5)
        .map(|r| r.chars().position(|c| c == '│').unwrap_or(0))
        .collect();
    assert!(border.iter().all(|&x| x == 0), "left borders {border:?}");
    assert!(
        ui.rows()[row].chars().filter(|&c| c == '│').count() >= 3,
        "chat and user list borders intact: {:?}",
        ui.rows()[row]
    );
    ui.finish();
}

#[test]
fn the_user_list_follows_joins_renames_and_leaves() {
    // Story: the user list on the right is sorted, live, and counts who is here.
    let server = common::start(common::config());
    let mut ui = Ui::connect(server.addr, "mallory");
    ui.wait_for("Users (1)");
    let mut bob = Client::register(server.addr, "bob");
    let _zed = Client::register(server.addr, "Zed");
    ui.wait_for("Users (3)");
    let list = |ui: &Ui| -> Vec<String> {
        let top = ui.row_of("Users (").expect("the user list's title");
        ui.rows()
            .iter()
            .skip(top + 1)
            .take(5)
            .map(|r| {
                r.chars()
                    .skip(61)
                    .take(16)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
            .collect()
    };
    assert_eq!(list(&ui), ["bob", "mallory", "Zed"]);
    bob.send_line("NICK zara");
    ui.wait_for("bob is now known as zara");
    assert_eq!(
        list(&ui),
        ["mallory", "zara", "Zed"],
        "sorted ignoring case"
    );
    bob.send_line("QUIT bye");
    ui.wait_for("Users (2)");
    assert_eq!(list(&ui), ["mallory", "Zed"]);
    assert!(ui.text().contains("zara left (bye)"));
    ui.finish();
}

#[test]
fn input_history_and_tab_completion() {
    // Story: Tab completes nicknames, Enter sends with local echo, Up/Down recall what I typed.
    let server = common::start(common::config());
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bobcat");
    ui.wait_for("Users (2)");
    ui.type_text("hi bo");
    ui.key(Key::Tab);
    assert_eq!(ui.input_line(), "hi bobcat");
    ui.type_text("how are you");
    ui.key(Key::Enter);
    ui.wait_for("<alice> hi bobcat how are you");
    assert_eq!(ui.input_line(), "", "the input line is emptied");
    let line = bob.until("MSG ");
    assert!(line.ends_with(" alice hi bobcat how are you"), "{line}");

    ui.type_text("second");
    ui.key(Key::Enter);
    ui.wait_for("<alice> second");
    ui.type_text("draft");
    ui.key(Key::Up);
    assert_eq!(ui.input_line(), "second");
    ui.key(Key::Up);
    assert_eq!(ui.input_line(), "hi bobcat how are you");
    ui.key(Key::Down);
    ui.key(Key::Down);
    assert_eq!(ui.input_line(), "draft", "back to what I was typing");
    ui.finish();
}

#[test]
fn mentions_stand_out_and_long_lines_wrap() {
    // Story: lines that mention me stand out, and long lines wrap under the text.
    let server = common::start(common::config());
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    ui.wait_for("bob joined");
    bob.send_line("plain line");
    bob.send_line("alice: look at this");
    ui.wait_for("look at this");
    assert!(
        ui.effects_at("look at this").contains(&Effect::Bold),
        "mention text is bold"
    );
    assert!(!ui.effects_at("plain line").contains(&Effect::Bold));
    let words: Vec<String> = (1..=30).map(|i| format!("w{i:02}")).collect();
    bob.send_line(&words.join(" "));
    ui.wait_for("w30");
    let first = ui.row_of("w01").expect("first row");
    let next = chat_part(&ui.rows()[first + 1]);
    let indent = chat_part(&ui.rows()[first]).find("w01").expect("w01");
    assert_eq!(
        next.find('w'),
        Some(indent),
        "continuation rows start under the text: {next:?}"
    );
    ui.finish();
}

#[test]
fn scrolling_back_holds_still_and_marks_new_lines() {
    // Story: PgUp reads older lines without being yanked down; a marker says new lines came.
    let server = common::start(natter::Config {
        rate: 0,
        ..common::config()
    });
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    for i in 0..60 {
        bob.send_line(&format!("line {i:02}"));
    }
    ui.wait_for("line 59");
    ui.key(Key::PageUp);
    ui.wait_gone("line 59");
    ui.wait_for("more below");
    let top = ui.rows()[1].clone();
    bob.send_line("fresh news");
    ui.wait_for("1 new line below");
    assert_eq!(ui.rows()[1], top, "the view stays put");
    assert!(!ui.text().contains("fresh news"));
    ui.send(Event::Mouse {
        offset: Vec2::zero(),
        position: Vec2::new(10, 10),
        event: cursive::event::MouseEvent::WheelUp,
    });
    ui.settle();
    assert_ne!(ui.rows()[1], top, "the wheel scrolls too");
    for _ in 0..5 {
        ui.key(Key::PageDown);
    }
    ui.wait_for("fresh news");
    ui.wait_gone("new line");
    bob.send_line("and more");
    ui.wait_for("and more");
    ui.finish();
}

#[test]
fn a_taken_nick_reprompts_with_the_suggestion() {
    // Story: a taken nickname re-prompts with the server's suggestion, prefilled.
    let server = common::start(common::config());
    let _bob = Client::register(server.addr, "bob");
    let mut ui = Ui::start(
        Options {
            server: Some(server.addr.to_string()),
            nick: Some("bob".into()),
            scrollback: 0,
            ..Options::default()
        },
        (80, 24),
    );
    ui.wait_for("Pick another nickname");
    ui.wait_for("bob2");
    ui.key(Key::Enter);
    ui.wait_gone("Pick another nickname");
    ui.wait_for("bob2 joined #lobby");
    ui.wait_for("bob2 │ online");
    ui.finish();
}

#[test]
fn a_registered_nick_asks_for_its_password_without_showing_it() {
    // Story: my nickname is registered; the client asks for my password (hidden), and a wrong one asks again.
    let server = common::start(common::config());
    let mut first = Client::register(server.addr, "carol");
    first.send_line("REGISTER carols-secret");
    first.expect("ACCOUNT carol ");
    first.send_line("QUIT");
    first.expect("BYE ");
    let mut ui = Ui::start(
        Options {
            server: Some(server.addr.to_string()),
            nick: Some("carol".into()),
            scrollback: 0,
            ..Options::default()
        },
        (80, 24),
    );
    ui.wait_for("carol is registered");
    ui.wait_for("Password for carol:");
    ui.type_text("wrong-secret");
    assert!(!ui.text().contains("wrong-secret"), "{}", ui.text());
    ui.key(Key::Enter);
    ui.wait_for("Wrong password for carol.");
    ui.wait_for("Password for carol:");
    ui.type_text("carols-secret");
    ui.key(Key::Enter);
    ui.wait_for("You are logged in as carol.");
    ui.wait_for("carol │ online");
    assert!(!ui.text().contains("carols-secret"), "{}", ui.text());
    // Up does not bring the password back.
    ui.key(Key::Up);
    ui.settle();
    assert!(!ui.input_line().contains("secret"), "{}", ui.input_line());
    ui.finish();
}

#[test]
fn typing_while_disconnected_is_refused_visibly() {
    // Story: when the server goes away the client says so and does not lose what I type.
    let server = common::start(common::config());
    let mut ui = Ui::connect(server.addr, "alice");
    server.stop();
    ui.wait_for("offline");
    ui.wait_for("Disconnected");
    ui.type_text("are you there");
    ui.key(Key::Enter);
    ui.wait_for("Not sent");
    assert_eq!(ui.input_line(), "are you there", "the text is kept");
    ui.finish();
}

#[test]
fn the_login_form_asks_for_server_and_nickname() {
    // Story: started without flags, a small form asks for the server and a nickname.
    let server = common::start(common::config());
    let mut ui = Ui::start(Options::default(), (80, 24));
    ui.wait_for("Server");
    ui.wait_for("127.0.0.1:5555");
    // Replace the server and type an invalid nickname first.
    ui.key(Key::Up);
    for _ in 0..20 {
        ui.key(Key::Backspace);
    }
    ui.type_text(&server.addr.to_string());
    ui.key(Key::Enter);
    for _ in 0..20 {
        ui.key(Key::Backspace);
    }
    ui.type_text("9lives");
    ui.key(Key::Enter);
    ui.wait_for("starts with a letter");
    for _ in 0..6 {
        ui.key(Key::Backspace);
    }
    ui.type_text("carol");
    ui.key(Key::Enter);
    ui.wait_for("carol joined #lobby");
    ui.finish();
}

#[test]
fn esc_asks_before_quitting_and_quit_tells_the_others() {
    // Story: Esc asks before leaving; leaving sends QUIT so the others see me go.
    let server = common::start(common::config());
    let mut bob = Client::register(server.addr, "bob");
    let mut ui = Ui::connect(server.addr, "alice");
    bob.until("JOIN ");
    ui.key(Key::Esc);
    ui.wait_for("Leave the chat?");
    ui.key(Key::Esc);
    ui.wait_gone("Leave the chat?");
    assert!(ui.runner.is_running());
    ui.key(Key::Esc);
    ui.wait_for("Leave the chat?");
    ui.key(Key::Enter);
    assert!(!ui.runner.is_running(), "Quit ends the event loop");
    ui.finish();
    let line = bob.until("QUIT ");
    assert!(line.contains(" alice"), "{line}");
}

/// A server with history kept in memory, so joins replay and `HISTORY`
/// answers.
fn history_config() -> natter::Config {
    natter::Config {
        history: natter::store::HistoryMode::Memory,
        rate: 0,
        ..common::config()
    }
}

/// The room list's rows: the right-hand column between its title and the
/// user list's title, trimmed.
fn room_list(rows: &[String]) -> Vec<String> {
    let Some(top) = rows.iter().position(|r| r.contains("Rooms")) else {
        return Vec::new();
    };
    let bottom = rows
        .iter()
        .position(|r| r.contains("Users ("))
        .unwrap_or(top + 1);
    rows[top + 1..bottom.saturating_sub(1).max(top + 1)]
        .iter()
        .map(|r| {
            let cell: String = r.chars().skip(61).take(18).collect();
            cell.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The chat panel's rows, trimmed.
fn chat_rows(rows: &[String]) -> Vec<String> {
    rows.iter()
        .skip(1)
        .map(|r| chat_part(r).trim_end().to_owned())
        .collect()
}

/// True if some chat panel row contains `text`.
fn chat_shows(rows: &[String], text: &str) -> bool {
    chat_rows(rows).iter().any(|r| r.contains(text))
}

#[test]
fn the_room_list_counts_unread_lines_of_rooms_not_shown() {
    // Story: while I read one room, the room list tells me how many lines came in the others.
    let server = common::start(history_config());
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    ui.wait_for("bob joined #lobby");
    assert_eq!(room_list(&ui.rows()), ["1 #lobby"]);
    ui.type_text("/join #rust");
    ui.key(Key::Enter);
    ui.wait_for("alice joined #rust");
    ui.until("both rooms listed", |rows| {
        room_list(rows) == ["1 #lobby", "2 #rust"]
    });
    bob.send_line("one for the lobby");
    bob.send_line("two for the lobby");
    ui.until("an unread count of 2", |rows| {
        room_list(rows) == ["1 #lobby 2", "2 #rust"]
    });
    assert!(!chat_shows(&ui.rows(), "for the lobby"), "{}", ui.text());
    assert!(
        ui.effects_at("1 #lobby").contains(&Effect::Bold),
        "unread rooms stand out"
    );
    ui.send(Event::AltChar('1'));
    ui.until("the lobby shown and read", |rows| {
        chat_shows(rows, "<bob> two for the lobby") && room_list(rows) == ["1 #lobby", "2 #rust"]
    });
    assert!(ui.rows()[0].contains("#lobby"), "{}", ui.rows()[0]);
    ui.finish();
}

#[test]
fn switching_rooms_switches_the_panel_and_where_lines_go() {
    // Story: Ctrl-N/Ctrl-P move between rooms; the panel shows that room and what I type goes there.
    let server = common::start(history_config());
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    bob.send_line("JOIN #rust");
    bob.until("HIST END #rust");
    ui.type_text("/join #rust");
    ui.key(Key::Enter);
    ui.wait_for("alice joined #rust");
    bob.send_line("MSG #rust in rust");
    bob.send_line("MSG #lobby in the lobby");
    ui.until("rust's line", |rows| chat_shows(rows, "<bob> in rust"));
    ui.until("the lobby's count", |rows| {
        room_list(rows)[0] == "1 #lobby 1"
    });
    assert!(!chat_shows(&ui.rows(), "in the lobby"));
    ui.send(Event::CtrlChar('p'));
    ui.until("the lobby", |rows| {
        chat_shows(rows, "<bob> in the lobby") && !chat_shows(rows, "in rust")
    });
    ui.type_text("hello lobby");
    ui.key(Key::Enter);
    let line = bob.until("MSG ");
    assert!(line.ends_with(" #lobby alice hello lobby"), "{line}");
    ui.send(Event::CtrlChar('n'));
    ui.until("rust again", |rows| {
        chat_shows(rows, "<bob> in rust") && !chat_shows(rows, "hello lobby")
    });
    assert!(ui.rows()[0].contains("#rust"), "{}", ui.rows()[0]);
    ui.type_text("hello rust");
    ui.key(Key::Enter);
    let line = bob.until("MSG ");
    assert!(line.ends_with(" #rust alice hello rust"), "{line}");
    // A click in the room list switches too.
    let row = ui.row_of("1 #lobby").expect("the lobby in the list");
    ui.send(Event::Mouse {
        offset: Vec2::zero(),
        position: Vec2::new(64, row),
        event: cursive::event::MouseEvent::Press(cursive::event::MouseButton::Left),
    });
    ui.until("the lobby by mouse", |rows| {
        chat_shows(rows, "<alice> hello lobby") && !chat_shows(rows, "hello rust")
    });
    ui.finish();
}

#[test]
fn a_whisper_opens_a_private_pane() {
    // Story: a private message gets its own entry in the room list and its own pane, where I answer privately.
    let server = common::start(history_config());
    let mut ui = Ui::connect(server.addr, "alice");
    let mut bob = Client::register(server.addr, "bob");
    ui.wait_for("bob joined #lobby");
    bob.send_line("WHISPER alice psst, a secret");
    ui.until("bob's pane", |rows| {
        room_list(rows) == ["1 #lobby", "2 *bob* 1"]
    });
    assert!(!chat_shows(&ui.rows(), "a secret"), "not in the lobby");
    ui.send(Event::AltChar('2'));
    ui.until("the private pane", |rows| {
        chat_shows(rows, "*bob* psst, a secret")
    });
    assert!(ui.rows()[0].contains("bob (private)"), "{}", ui.rows()[0]);
    ui.type_text("tell me");
    ui.key(Key::Enter);
    let line = bob.until("WHISPER ");
    assert!(line.ends_with(" alice bob tell me"), "{line}");
    ui.wait_for("-> *bob* tell me");
    ui.type_text("/close");
    ui.key(Key::Enter);
    ui.until("the pane closed", |rows| room_list(rows) == ["1 #lobby"]);
    ui.finish();
}

#[test]
fn scrolling_past_the_top_fetches_older_history() {
    // Story: PgUp past the oldest line shown fetches the messages before it, in order, without repeats.
    let server = common::start(history_config());
    let mut bob = Client::register(server.addr, "bob");
    for i in 1..=120 {
        bob.send_line(&format!("line {i:03}"));
    }
    bob.send_line("PING sync");
    bob.until("PONG sync");
    let mut ui = Ui::start(
        Options {
            server: Some(server.addr.to_string()),
            nick: Some("alice".into()),
            scrollback: 1000,
            ..Options::default()
        },
        (80, 24),
    );
    ui.wait_for("line 120");
    ui.wait_for("online");
    // The replay on joining holds the last 50: line 071 to line 120.
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    while !chat_shows(&ui.rows(), "line 001") {
        assert!(
            Instant::now() < deadline,
            "never reached line 001; screen:\n{}",
            ui.text()
        );
        seen.extend(chat_rows(&ui.rows()));
        ui.key(Key::PageUp);
        ui.settle();
    }
    seen.extend(chat_rows(&ui.rows()));
    let mut numbers: Vec<u32> = seen
        .iter()
        .filter_map(|r| r.split("<bob> line ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(
        numbers,
        (1..=120).collect::<Vec<u32>>(),
        "every line, fetched page by page"
    );
    // In order: each line sits right above the next.
    let rows = chat_rows(&ui.rows());
    let at = |text: &str| rows.iter().position(|r| r.contains(text));
    assert_eq!(at("line 001").map(|i| i + 1), at("line 002"), "{rows:#?}");
    for _ in 0..20 {
        ui.key(Key::PageDown);
    }
    ui.wait_for("line 120");
    ui.finish();
}
