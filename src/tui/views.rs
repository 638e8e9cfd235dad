//! The screens: the main chat screen, the login form, the nickname prompt
//! and the quit confirmation. Each `build_*` function returns a view; the
//! callbacks they wire up live in the parent module.

use std::sync::{Arc, Mutex};

use cursive::event::{Event, EventResult, EventTrigger, Key, MouseButton, MouseEvent};
use cursive::style::{BaseColor, Color, ColorStyle, Effect, Style};
use cursive::traits::{Nameable, Resizable};
use cursive::utils::markup::StyledString;
use cursive::views::{
    Dialog, EditView, LinearLayout, ListView, NamedView, OnEventView, Panel, ScrollView, TextView,
};
use cursive::{Cursive, Printer, Vec2, View};

use super::chat_view::{nick_style, ChatView, WHEEL_ROWS};
use super::{lock, Shared};
use crate::client::{ConnState, Model, NickPrompt, Target};

/// The chat panel.
pub const CHAT: &str = "chat";
/// The chat panel's frame, whose title names the shown conversation.
pub const CHAT_PANEL: &str = "chat_panel";
/// The user list's text.
pub const USERS: &str = "users";
/// The user list's panel, whose title holds the count.
pub const USERS_PANEL: &str = "users_panel";
/// The input line.
pub const INPUT: &str = "input";
/// The login form's server field.
pub const FORM_SERVER: &str = "form_server";
/// The login form's nickname field.
pub const FORM_NICK: &str = "form_nick";
/// The login form's error line.
pub const FORM_ERROR: &str = "form_error";
/// The nickname prompt.
pub const NICK_PROMPT: &str = "nick_prompt";
/// The nickname prompt's field.
pub const NICK_PROMPT_EDIT: &str = "nick_prompt_edit";
/// The password field of the nickname prompt, for a registered nickname.
pub const NICK_PROMPT_PASSWORD: &str = "nick_prompt_password";
/// The quit confirmation.
pub const QUIT_CONFIRM: &str = "quit_confirm";

/// Width of the user list, borders included: a 16-character nickname fits.
const USERS_WIDTH: usize = 20;

/// The chat panel frame's concrete type, for `call_on_name`.
pub type ChatPanel = Panel<NamedView<ChatView>>;

/// The user list panel's concrete type, for `call_on_name`.
pub type UsersPanel = Panel<ScrollView<NamedView<TextView>>>;

/// The main screen: chat on the left; on the right the conversations
/// (rooms and private) above the shown one's users; the status line; the
/// input line. Scrolling keys and the mouse wheel reach the chat panel
/// whichever view has the focus, and so do the keys that switch
/// conversations.
pub fn build_main(model: Shared) -> impl View {
    let title = chat_title(&lock(&model));
    let chat = Panel::new(ChatView::new(model.clone()).with_name(CHAT))
        .title(title)
        .with_name(CHAT_PANEL)
        .full_screen();
    let geometry = Arc::new(Mutex::new(ListGeometry::default()));
    let rooms = Panel::new(RoomList {
        model: model.clone(),
        geometry: geometry.clone(),
    })
    .title("Rooms");
    let users = Panel::new(ScrollView::new(TextView::empty().with_name(USERS)))
        .title("Users")
        .with_name(USERS_PANEL)
        .full_height();
    let side = LinearLayout::vertical()
        .child(rooms)
        .child(users)
        .fixed_width(USERS_WIDTH);
    let input = LinearLayout::horizontal()
        .child(TextView::new("> "))
        .child(build_input(model.clone()).full_width());
    let layout = LinearLayout::vertical()
        .child(LinearLayout::horizontal().child(chat).child(side))
        .child(StatusBar { model }.fixed_height(1))
        .child(input);
    let mut view = OnEventView::new(layout)
        .on_pre_event(Key::PageUp, |s| {
            on_chat(s, ChatView::page_up);
            super::fetch_older(s);
        })
        .on_pre_event(Key::PageDown, |s| on_chat(s, ChatView::page_down))
        .on_pre_event(Event::CtrlChar('n'), |s| super::switch(s, Model::show_next))
        .on_pre_event(Event::CtrlChar('p'), |s| super::switch(s, Model::show_prev))
        .on_pre_event(Event::Alt(Key::Right), |s| {
            super::switch(s, Model::show_next)
        })
        .on_pre_event(Event::Alt(Key::Left), |s| {
            super::switch(s, Model::show_prev)
        });
    for (n, digit) in ('1'..='9').enumerate() {
        view = view.on_pre_event(Event::AltChar(digit), move |s| {
            super::switch(s, |m| m.show(n))
        });
    }
    view.on_pre_event_inner(EventTrigger::mouse(), move |_, event| {
        let Event::Mouse {
            event, position, ..
        } = event
        else {
            return None;
        };
        match event {
            MouseEvent::WheelUp => Some(EventResult::with_cb(|s| {
                on_chat(s, |c| c.scroll_up(WHEEL_ROWS));
                super::fetch_older(s);
            })),
            MouseEvent::WheelDown => Some(EventResult::with_cb(|s| {
                on_chat(s, |c| c.scroll_down(WHEEL_ROWS))
            })),
            MouseEvent::Press(MouseButton::Left) => {
                let index = lock_geometry(&geometry).pane_at(*position)?;
                Some(EventResult::with_cb(move |s| {
                    super::switch(s, |m| m.show(index))
                }))
            }
            _ => None,
        }
    })
}

/// Runs `f` on the chat panel.
pub fn on_chat(s: &mut Cursive, f: impl FnOnce(&mut ChatView)) {
    s.call_on_name(CHAT, f);
}

/// True if the chat panel shows the top of its conversation.
pub fn chat_at_top(s: &mut Cursive) -> bool {
    s.call_on_name(CHAT, |c: &mut ChatView| c.at_top())
        .unwrap_or(false)
}

/// The input line: Enter sends, Up/Down walk the history, Tab completes.
fn build_input(model: Shared) -> impl View {
    let up = model.clone();
    let down = model.clone();
    let tab = model;
    let edit = EditView::new()
        .filler(" ")
        .on_submit(super::on_submit)
        .with_name(INPUT);
    OnEventView::new(edit)
        .on_pre_event_inner(Key::Up, move |edit, _| {
            let mut edit = edit.get_mut();
            let content = edit.get_content();
            if let Some(line) = lock(&up).history_up(&content) {
                let _ = edit.set_content(line);
            }
            Some(EventResult::Consumed(None))
        })
        .on_pre_event_inner(Key::Down, move |edit, _| {
            let mut edit = edit.get_mut();
            if let Some(line) = lock(&down).history_down() {
                let _ = edit.set_content(line);
            }
            Some(EventResult::Consumed(None))
        })
        .on_pre_event_inner(Key::Tab, move |edit, _| {
            let mut edit = edit.get_mut();
            let content = edit.get_content();
            let cursor = edit.get_cursor();
            if let Some((line, cursor)) = lock(&tab).complete(&content, cursor) {
                let _ = edit.set_content(line);
                edit.set_cursor(cursor);
            }
            // Tab never moves the focus away from the input line.
            Some(EventResult::Consumed(None))
        })
}

/// The chat panel's title: the shown room and its topic, or whom the
/// private conversation is with.
fn chat_title(model: &Model) -> String {
    let pane = model.shown();
    match (&pane.target(), pane.topic()) {
        (Target::Private(nick), _) => format!("{nick} (private)"),
        (Target::Room(room), _) if !pane.joined() && *model.state() == ConnState::Online => {
            format!("{room} (not in it)")
        }
        (Target::Room(room), "") => room.clone(),
        (Target::Room(room), topic) => format!("{room}: {topic}"),
    }
}

/// Shows the shown conversation and its topic in the chat panel's title.
pub fn refresh_title(s: &mut Cursive, model: &Model) {
    let title = chat_title(model);
    s.call_on_name(CHAT_PANEL, |p: &mut ChatPanel| p.set_title(title));
}

/// Shows the shown conversation's members and their count.
pub fn refresh_users(s: &mut Cursive, model: &Model) {
    let mut text = StyledString::new();
    for nick in model.users() {
        let mut style = nick_style(nick);
        if model.nick().is_some_and(|me| me.eq_ignore_ascii_case(nick)) {
            style = style.combine(Effect::Bold);
        }
        text.append_styled(nick.as_str(), style);
        text.append_plain("\n");
    }
    if model.users().is_empty() {
        text.append_styled("(nobody)", super::chat_view::dim());
    }
    let title = format!("Users ({})", model.users().len());
    s.call_on_name(USERS, |v: &mut TextView| v.set_content(text));
    s.call_on_name(USERS_PANEL, |p: &mut UsersPanel| p.set_title(title));
}

/// Where the room list was drawn, for mouse clicks.
#[derive(Debug, Clone, Copy, Default)]
struct ListGeometry {
    /// The screen position of its first row.
    origin: Vec2,
    /// Its size on screen.
    size: Vec2,
    /// The pane on its first row.
    first: usize,
    /// How many panes it showed.
    shown: usize,
}

impl ListGeometry {
    /// The pane listed at screen position `at`, if any.
    fn pane_at(&self, at: Vec2) -> Option<usize> {
        let x = at.x.checked_sub(self.origin.x)?;
        let y = at.y.checked_sub(self.origin.y)?;
        (x < self.size.x && y < self.shown).then_some(self.first + y)
    }
}

fn lock_geometry(g: &Mutex<ListGeometry>) -> std::sync::MutexGuard<'_, ListGeometry> {
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most rows the room list takes; with more conversations it scrolls
/// to keep the shown one in view.
const LIST_ROWS: usize = 10;

/// The room list: every conversation, numbered for Alt-1..9, with its
/// unread count; the shown one reversed, unread ones bold, ones that
/// mention us or are private and unread in yellow. It reads the model when
/// drawn, so it needs no updating.
struct RoomList {
    model: Shared,
    geometry: Arc<Mutex<ListGeometry>>,
}

impl View for RoomList {
    fn draw(&self, printer: &Printer<'_, '_>) {
        let model = lock(&self.model);
        let panes = model.panes();
        let rows = printer.size.y;
        let width = printer.size.x;
        let shown = model.shown_index();
        let first = match panes.len() <= rows {
            true => 0,
            false => shown
                .saturating_sub(rows / 2)
                .min(panes.len().saturating_sub(rows)),
        };
        let mut drawn = 0;
        for (y, (index, pane)) in panes.iter().enumerate().skip(first).take(rows).enumerate() {
            let number = match index {
                0..=8 => format!("{} ", index + 1),
                _ => "  ".to_owned(),
            };
            let name = match pane.is_private() {
                true => format!("*{}*", pane.name()),
                false => pane.name().to_owned(),
            };
            let count = match pane.unread() {
                0 => String::new(),
                n if n > 999 => " 999+".to_owned(),
                n => format!(" {n}"),
            };
            let room = width.saturating_sub(number.len() + count.len());
            let name = fit(&name, room);
            let pad = room.saturating_sub(StyledString::plain(name.as_str()).width());
            let text = format!("{number}{name}{}{count}", " ".repeat(pad));
            let mut style = match (pane.alert(), pane.unread() > 0) {
                (true, _) => Style::from(ColorStyle::front(Color::Light(BaseColor::Yellow)))
                    .combine(Effect::Bold),
                (false, true) => Style::from(Effect::Bold),
                (false, false) if !pane.joined() => super::chat_view::dim(),
                (false, false) => Style::default(),
            };
            if index == shown {
                style = style.combine(Effect::Reverse);
            }
            printer.with_style(style, |p| p.print((0, y), &text));
            drawn += 1;
        }
        *lock_geometry(&self.geometry) = ListGeometry {
            origin: printer.offset,
            size: printer.size,
            first,
            shown: drawn,
        };
    }

    fn required_size(&mut self, constraint: Vec2) -> Vec2 {
        let n = lock(&self.model).panes().len();
        Vec2::new(constraint.x, n.clamp(1, LIST_ROWS))
    }
}

/// `text` cut to `width` columns, with an ellipsis if cut.
fn fit(text: &str, width: usize) -> String {
    let styled = StyledString::plain(text);
    if styled.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = StyledString::plain(c.to_string()).width();
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// The status line: server, nickname, connection state. It reads the model
/// when drawn, so it needs no updating.
struct StatusBar {
    model: Shared,
}

impl View for StatusBar {
    fn draw(&self, printer: &Printer<'_, '_>) {
        let bar = ColorStyle::new(Color::Light(BaseColor::White), Color::Dark(BaseColor::Blue));
        let (server, nick, state) = {
            let model = lock(&self.model);
            (
                model.server().to_owned(),
                model.display_nick().to_owned(),
                model.state().clone(),
            )
        };
        let (state_text, state_color) = match state {
            ConnState::Online => ("online".to_owned(), BaseColor::Green),
            ConnState::Registering => ("registering nickname…".to_owned(), BaseColor::Yellow),
            ConnState::Connecting { attempt: 1 } => ("connecting…".to_owned(), BaseColor::Yellow),
            ConnState::Connecting { attempt } => (
                format!("connecting (attempt {attempt})…"),
                BaseColor::Yellow,
            ),
            ConnState::Offline { reason, .. } => {
                (format!("offline, reconnecting ({reason})"), BaseColor::Red)
            }
            ConnState::Closed { .. } => ("closed".to_owned(), BaseColor::Red),
        };
        let mut line = StyledString::styled(" natter ", Style::from(bar).combine(Effect::Bold));
        line.append_styled(format!("│ {server} │ {nick} │ "), bar);
        line.append_styled(
            state_text,
            Style::from(ColorStyle::new(
                Color::Light(state_color),
                Color::Dark(BaseColor::Blue),
            ))
            .combine(Effect::Bold),
        );
        printer.with_style(bar, |p| p.print_hline((0, 0), printer.size.x, " "));
        let mut x = 0;
        for span in line.spans() {
            printer.with_style(*span.attr, |p| p.print((x, 0), span.content));
            x += span.width;
        }
    }

    fn required_size(&mut self, constraint: Vec2) -> Vec2 {
        Vec2::new(constraint.x, 1)
    }
}

/// Asks for the server and the nickname.
pub fn build_login_form(server: &str, nick: &str) -> impl View {
    let fields = ListView::new()
        .child(
            "Server",
            EditView::new()
                .content(server)
                .on_submit(|s, _| {
                    s.focus_name(FORM_NICK).ok();
                })
                .with_name(FORM_SERVER)
                .fixed_width(28),
        )
        .child(
            "Nickname",
            EditView::new()
                .content(nick)
                .on_submit(|s, _| super::on_login(s))
                .with_name(FORM_NICK)
                .fixed_width(28),
        );
    let error = TextView::empty()
        .style(ColorStyle::front(Color::Dark(BaseColor::Red)))
        .with_name(FORM_ERROR);
    Dialog::around(LinearLayout::vertical().child(fields).child(error))
        .title("natter: connect to a chat")
        .button("Connect", super::on_login)
        .button("Quit", |s| super::request_quit(s, ""))
}

/// Asks for another nickname after the server refused one, offering its
/// suggestion.
pub fn build_nick_prompt(prompt: &NickPrompt) -> impl View {
    let edit = EditView::new()
        .content(prompt.suggestion.as_str())
        .on_submit(super::on_nick_prompt_submit)
        .with_name(NICK_PROMPT_EDIT)
        .fixed_width(20);
    let mut body = LinearLayout::vertical()
        .child(TextView::new(prompt.message.as_str()))
        .child(TextView::new(" "));
    // A registered nickname: its owner types the password here (hidden),
    // anyone else takes the suggested nickname below.
    if let Some(nick) = &prompt.registered {
        let login = {
            let nick = nick.clone();
            move |s: &mut Cursive, password: &str| super::on_prompt_login(s, &nick, password)
        };
        body = body
            .child(TextView::new(format!("Password for {nick}:")))
            .child(
                EditView::new()
                    .secret()
                    .on_submit(login)
                    .with_name(NICK_PROMPT_PASSWORD)
                    .fixed_width(30),
            )
            .child(TextView::new(" "))
            .child(TextView::new("Or another nickname:"));
    }
    body = body.child(edit);
    let mut dialog = Dialog::around(body).title(match &prompt.registered {
        Some(nick) => format!("{nick} is registered"),
        None => "Pick another nickname".to_owned(),
    });
    if let Some(nick) = &prompt.registered {
        let nick = nick.clone();
        dialog = dialog.button("Log in", move |s| {
            let password = s
                .call_on_name(NICK_PROMPT_PASSWORD, |e: &mut EditView| e.get_content())
                .map(|c| c.to_string())
                .unwrap_or_default();
            super::on_prompt_login(s, &nick, &password);
        });
    }
    dialog
        .button("Use nickname", |s| {
            let nick = s
                .call_on_name(NICK_PROMPT_EDIT, |e: &mut EditView| e.get_content())
                .map(|c| c.to_string())
                .unwrap_or_default();
            super::on_nick_prompt_submit(s, &nick);
        })
        .button("Later", |s| {
            s.pop_layer();
        })
        .max_width(60)
        .with_name(NICK_PROMPT)
}

/// Asks whether to quit (after Esc).
pub fn build_quit_confirm() -> impl View {
    Dialog::text("Leave the chat?")
        .title("Quit natter")
        .button("Quit", |s| super::request_quit(s, ""))
        .button("Cancel", |s| {
            s.pop_layer();
        })
        .with_name(QUIT_CONFIRM)
}
