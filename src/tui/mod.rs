//! The Cursive terminal client: a thin layer over [`crate::client`].
//!
//! The network runs on the [`Connection`]'s threads; each event reaches the
//! UI thread as a closure sent through Cursive's callback sink, where it is
//! applied to the shared [`Model`]. The UI thread never touches a socket:
//! sending is a channel send. The chat panel, the room list and the status
//! line draw straight from the model, so only the user list and the chat
//! panel's title need updating by hand. History requests the model makes
//! (after a reconnection, when scrolling past the top) are sent the same way
//! as typed commands.
//!
//! The screen: the chat panel shows one conversation, a room or a private
//! one; the room list beside it numbers them all with their unread counts.
//! Ctrl-N/Ctrl-P (or Alt-Right/Alt-Left), Alt-1..9 and a click in the list
//! switch the chat panel to another conversation.
//!
//! Idle, nothing runs but the event loop waiting on the terminal, waking
//! about seven times a second to pick up network callbacks: the connection
//! threads block on their socket and channel, and there is no autorefresh.
//!
//! Stdout belongs to the UI. A panic restores the terminal and writes its
//! report to a file in the temporary directory, never to the screen.

mod chat_view;
mod views;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cursive::event::{Event, Key};
use cursive::theme::Theme;
use cursive::views::{EditView, TextView};
use cursive::Cursive;

use crate::client::{
    Action, Changes, Connection, Model, NickPrompt, Outgoing, Settings, DEFAULT_SCROLLBACK,
};
use crate::names;
use crate::protocol::Timestamp;

pub use crate::client::words::clock;
pub use chat_view::nick_color;

/// The server the login form offers.
pub const DEFAULT_SERVER: &str = "127.0.0.1:5555";

/// The port of a plain natter server, used when the address names none.
const DEFAULT_PORT: u16 = 5555;

/// How long quitting waits for the server to take the `QUIT`.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// How the terminal client was asked to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `host:port` of the server; asked for in a form when absent.
    pub server: Option<String>,
    /// The nickname to register; asked for in a form when absent.
    pub nick: Option<String>,
    /// How many chat lines to keep for scrolling back (0 means the default,
    /// [`DEFAULT_SCROLLBACK`]).
    pub scrollback: usize,
    /// Connect with TLS (feature `tls`); the status line then says "TLS"
    /// next to the server. The login form connects as these options say.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::client::TlsOptions>,
}

/// The model, shared by the views that draw it and the callbacks that feed
/// it; all of them run on the UI thread, the mutex only satisfies Cursive's
/// `Send + Sync` bound on views.
type Shared = Arc<Mutex<Model>>;

/// Locks the model. A panic while it was held has already been reported, so
/// a poisoned lock is used as it is rather than panicking again.
fn lock(model: &Shared) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The client's state inside Cursive (its user data).
struct App {
    scrollback: usize,
    #[cfg(feature = "tls")]
    tls: Option<crate::client::TlsOptions>,
    model: Option<Shared>,
    connection: Option<Connection>,
}

/// Runs the terminal client until the user quits.
pub fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let report = install_panic_hook();
    let mut siv = Cursive::new();
    build(&mut siv, options);
    let backend = cursive::backends::crossterm::Backend::init()?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        event_loop(siv.runner(backend));
    }));
    // The backend is dropped by now: the terminal is back to normal.
    finish(&mut siv);
    match outcome {
        Ok(()) => Ok(()),
        Err(_) => Err(format!("the client crashed; the report is in {}", report.display()).into()),
    }
}

/// While something happened this recently, network news is drawn within
/// [`BUSY_WAIT`]; after that within [`IDLE_WAIT`].
const BUSY_FOR: Duration = Duration::from_secs(2);
/// The longest wait for input while busy.
const BUSY_WAIT: Duration = Duration::from_millis(30);
/// The longest wait for input while idle: an idle client wakes about seven
/// times a second instead of Cursive's thirty-three.
const IDLE_WAIT: Duration = Duration::from_millis(150);

/// Cursive's event loop, except that it waits for input in the terminal
/// (so a key is handled at once) instead of sleeping between polls, and
/// waits longer when idle. Network events arrive as Cursive callbacks, which
/// the terminal wait cannot see; they wait for the next wake-up, at most
/// [`IDLE_WAIT`].
fn event_loop(mut runner: cursive::CursiveRunner<&mut Cursive>) {
    use cursive::backends::crossterm::crossterm::event;
    runner.refresh();
    let mut active = std::time::Instant::now();
    while runner.is_running() {
        if runner.process_events() {
            runner.post_events(true);
            active = std::time::Instant::now();
            continue;
        }
        let wait = match active.elapsed() < BUSY_FOR {
            true => BUSY_WAIT,
            false => IDLE_WAIT,
        };
        if event::poll(wait).is_err() {
            std::thread::sleep(wait);
        }
    }
}

/// Sets the client up inside `siv`: the theme, the keys, and either the
/// login form or (with both a server and a nickname) the chat screen and a
/// connection. [`run`] uses it with a real terminal; tests use it with
/// Cursive's puppet backend. Call [`finish`] after the event loop ends.
pub fn build(siv: &mut Cursive, options: Options) {
    siv.set_theme(Theme::terminal_default());
    siv.set_autorefresh(false);
    siv.clear_global_callbacks(Event::CtrlChar('c'));
    siv.set_on_pre_event(Event::CtrlChar('c'), |s| request_quit(s, ""));
    siv.set_on_pre_event(Key::Esc, on_escape);
    siv.set_user_data(App {
        scrollback: match options.scrollback {
            0 => DEFAULT_SCROLLBACK,
            n => n,
        },
        #[cfg(feature = "tls")]
        tls: options.tls.clone(),
        model: None,
        connection: None,
    });
    match (options.server, options.nick) {
        (Some(server), Some(nick)) => {
            let port = default_port(siv);
            start(siv, with_port(server, port), nick)
        }
        (server, nick) => {
            let server = server.unwrap_or_else(|| DEFAULT_SERVER.to_owned());
            let nick = nick.unwrap_or_else(default_nick);
            siv.add_layer(views::build_login_form(&server, &nick));
            if !server.is_empty() {
                siv.focus_name(views::FORM_NICK).ok();
            }
        }
    }
}

/// Says goodbye: sends `QUIT` if it has not been sent and waits briefly for
/// the connection to close, so the others see why we left.
pub fn finish(siv: &mut Cursive) {
    let connection = siv.user_data::<App>().and_then(|app| app.connection.take());
    if let Some(connection) = connection {
        connection.quit("");
        connection.wait(QUIT_WAIT);
    }
}

/// A nickname to offer in the login form: the login name, if valid.
fn default_nick() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|n| names::check_nick(n).is_ok())
        .unwrap_or_default()
}

/// The port to use when the server address names none: natter's TLS port
/// when connecting with TLS.
fn default_port(siv: &mut Cursive) -> u16 {
    #[cfg(feature = "tls")]
    if siv.user_data::<App>().is_some_and(|app| app.tls.is_some()) {
        return crate::client::DEFAULT_TLS_PORT;
    }
    let _ = siv;
    DEFAULT_PORT
}

/// `server` with `:port` added if it names no port (`host`, `[v6]`). A
/// bare IPv6 address is left alone: its colons make a port ambiguous.
fn with_port(server: String, port: u16) -> String {
    let bare = match server.strip_prefix('[') {
        Some(rest) => rest.ends_with(']'),
        None => !server.contains(':'),
    };
    match bare {
        true => format!("{server}:{port}"),
        false => server,
    }
}

/// Opens the chat screen and starts connecting.
fn start(siv: &mut Cursive, server: String, nick: String) {
    let Some(scrollback) = siv.user_data::<App>().map(|app| app.scrollback) else {
        return;
    };
    #[cfg(feature = "tls")]
    let tls = siv.user_data::<App>().and_then(|app| app.tls.clone());
    // The model's name for the server is what the status line shows.
    #[cfg(feature = "tls")]
    let label = match tls.is_some() {
        true => format!("{server} [TLS]"),
        false => server.clone(),
    };
    #[cfg(not(feature = "tls"))]
    let label = server.clone();
    let model = Arc::new(Mutex::new(Model::new(&label, &nick, scrollback)));
    siv.add_fullscreen_layer(views::build_main(model.clone()));
    siv.focus_name(views::INPUT).ok();
    views::refresh_users(siv, &lock(&model));
    let sink = siv.cb_sink().clone();
    let settings = Settings {
        #[cfg(feature = "tls")]
        tls,
        ..Settings::new(server, nick)
    };
    let connection = Connection::start(settings, move |event| {
        // Fails only once the UI has gone, when there is nobody to tell.
        let _ = sink.send(Box::new(move |s: &mut Cursive| on_network(s, event)));
    });
    match connection {
        Ok(connection) => {
            if let Some(app) = siv.user_data::<App>() {
                app.model = Some(model);
                app.connection = Some(connection);
            }
        }
        Err(err) => {
            siv.add_layer(cursive::views::Dialog::info(format!(
                "Cannot start the network thread: {err}"
            )));
        }
    }
}

fn model(s: &mut Cursive) -> Option<Shared> {
    s.user_data::<App>().and_then(|app| app.model.clone())
}

/// A connection event, on the UI thread.
fn on_network(s: &mut Cursive, event: crate::client::Event) {
    let Some(model) = model(s) else { return };
    let changes = lock(&model).apply(event, Timestamp::now());
    show(s, &model, changes);
}

/// Sends `out` on the connection, if there is one.
fn send(s: &mut Cursive, out: Outgoing) {
    if let Some(connection) = s.user_data::<App>().and_then(|app| app.connection.as_ref()) {
        connection.send(out);
    }
}

/// Updates what does not draw itself from the model, and sends the
/// requests the model made.
fn show(s: &mut Cursive, model: &Shared, changes: Changes) {
    for request in changes.requests {
        send(s, request);
    }
    if changes.users {
        views::refresh_users(s, &lock(model));
    }
    if changes.status {
        views::refresh_title(s, &lock(model));
    }
    if let Some(prompt) = changes.nick_prompt {
        prompt_nick(s, &prompt);
    }
}

/// Enter in the input line.
fn on_submit(s: &mut Cursive, text: &str) {
    let Some(model) = model(s) else { return };
    let submitted = lock(&model).submit(text, Timestamp::now());
    if submitted.clear_input {
        s.call_on_name(views::INPUT, |e: &mut EditView| e.set_content(""));
    }
    match submitted.action {
        Action::None => {}
        Action::Send(out) => send(s, out),
        Action::Quit(reason) => return request_quit(s, &reason),
    }
    // Whatever the user did, they want to see its outcome.
    views::on_chat(s, |chat| chat.follow());
    show(s, &model, submitted.changes);
}

/// Shows another conversation (`f` picks it), following its newest line.
fn switch(s: &mut Cursive, f: impl FnOnce(&mut Model) -> Changes) {
    let Some(model) = model(s) else { return };
    let changes = f(&mut lock(&model));
    if changes.scrollback {
        views::on_chat(s, |chat| chat.follow());
    }
    show(s, &model, changes);
}

/// If the chat panel shows the top of its conversation, asks the server
/// for the messages before it (the model says whether there is anything to
/// ask). Called after scrolling up.
fn fetch_older(s: &mut Cursive) {
    if !views::chat_at_top(s) {
        return;
    }
    let Some(model) = model(s) else { return };
    let request = lock(&model).older();
    if let Some(out) = request {
        send(s, out);
    }
}

/// Shows the nickname prompt, replacing an older one.
fn prompt_nick(s: &mut Cursive, prompt: &NickPrompt) {
    if let Some(pos) = s.screen_mut().find_layer_from_name(views::NICK_PROMPT) {
        s.screen_mut().remove_layer(pos);
    }
    s.add_layer(views::build_nick_prompt(prompt));
}

/// OK in the nickname prompt.
fn on_nick_prompt_submit(s: &mut Cursive, nick: &str) {
    let nick = nick.trim();
    if nick.is_empty() {
        return;
    }
    s.pop_layer();
    // A registered nickname's owner may answer with `/login nick password`.
    if nick.starts_with('/') {
        return on_submit(s, nick);
    }
    on_submit(s, &format!("/nick {nick}"));
}

/// Log in from the nickname prompt: the password is sent as `LOGIN` and
/// never shown.
fn on_prompt_login(s: &mut Cursive, nick: &str, password: &str) {
    let password = password.trim();
    if password.is_empty() {
        return;
    }
    s.pop_layer();
    on_submit(s, &format!("/login {nick} {password}"));
}

/// Connect in the login form.
fn on_login(s: &mut Cursive) {
    let field = |s: &mut Cursive, name: &str| {
        s.call_on_name(name, |e: &mut EditView| e.get_content().trim().to_owned())
            .unwrap_or_default()
    };
    let server = field(s, views::FORM_SERVER);
    let nick = field(s, views::FORM_NICK);
    let error = if server.is_empty() {
        Some("Enter the server as host:port.".to_owned())
    } else {
        names::check_nick(&nick)
            .err()
            .map(|err| format!("Nickname: {err}."))
    };
    if let Some(error) = error {
        s.call_on_name(views::FORM_ERROR, |t: &mut TextView| t.set_content(error));
        return;
    }
    let port = default_port(s);
    let server = with_port(server, port);
    s.pop_layer();
    start(s, server, nick);
}

/// Esc: asks whether to quit; Esc again cancels.
fn on_escape(s: &mut Cursive) {
    if let Some(pos) = s.screen_mut().find_layer_from_name(views::QUIT_CONFIRM) {
        s.screen_mut().remove_layer(pos);
    } else {
        s.add_layer(views::build_quit_confirm());
    }
}

/// Leaves: sends `QUIT` (on the network thread) and ends the event loop.
fn request_quit(s: &mut Cursive, reason: &str) {
    if let Some(connection) = s.user_data::<App>().and_then(|app| app.connection.as_ref()) {
        connection.quit(reason);
    }
    s.quit();
}

/// Installs a panic hook that puts the terminal back and writes the report
/// to a file, rather than printing over the UI. Returns the file's path.
fn install_panic_hook() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("natter-crash-{}.txt", std::process::id()));
    let report = path.clone();
    let ui_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let thread = std::thread::current();
        let text = format!(
            "natter {} crashed in thread {:?}\n{info}\n\n{backtrace}\n",
            env!("CARGO_PKG_VERSION"),
            thread.name().unwrap_or("unnamed"),
        );
        let _ = std::fs::write(&report, text);
        // Another thread's panic must not pull the terminal from under the
        // UI, which carries on and says the connection failed.
        if thread.id() == ui_thread {
            restore_terminal();
        }
    }));
    path
}

/// Leaves the alternate screen, shows the cursor and turns raw mode off.
fn restore_terminal() {
    use cursive::backends::crossterm::crossterm::{cursor, event, execute, terminal};
    fn restore(mut out: impl std::io::Write) {
        let _ = execute!(
            out,
            event::DisableMouseCapture,
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
    #[cfg(unix)]
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        restore(&mut tty);
    }
    #[cfg(not(unix))]
    restore(std::io::stdout());
    let _ = terminal::disable_raw_mode();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_port_gets_the_default() {
        // Story: `--server chat.example.org --tls` reaches the TLS port without typing it.
        assert_eq!(
            with_port("chat.example.org".into(), 5556),
            "chat.example.org:5556"
        );
        assert_eq!(
            with_port("chat.example.org:7000".into(), 5556),
            "chat.example.org:7000"
        );
        assert_eq!(with_port("[::1]".into(), 5555), "[::1]:5555");
        assert_eq!(with_port("[::1]:7000".into(), 5555), "[::1]:7000");
        assert_eq!(with_port("::1".into(), 5555), "::1");
    }
}
