//! The terminal client in memory: Cursive's puppet backend renders it, the
//! test steps its event loop, types into it and reads the screen as text.
//! Every wait has the deadline [`super::TIMEOUT`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cursive::backends::puppet::observed::{GraphemePart, ObservedScreen};
use cursive::backends::puppet::Backend;
use cursive::event::{Event, Key};
use cursive::style::Effect;
use cursive::{Cursive, CursiveRunner, Vec2};
use natter::tui::{self, Options};

use super::TIMEOUT;

/// A client running in memory: its event loop is stepped by the test, its
/// screen read from the puppet backend.
pub struct Ui {
    pub runner: CursiveRunner<Cursive>,
    frames: cursive::reexports::crossbeam_channel::Receiver<ObservedScreen>,
    input: cursive::reexports::crossbeam_channel::Sender<Option<Event>>,
    screen: Option<ObservedScreen>,
}

impl Ui {
    pub fn start(options: Options, size: (usize, usize)) -> Ui {
        let backend = Backend::init(Some(Vec2::new(size.0, size.1)));
        let frames = backend.stream();
        let input = backend.input();
        let mut siv = Cursive::new();
        tui::build(&mut siv, options);
        let mut runner = siv.into_runner(backend);
        runner.refresh();
        Ui {
            runner,
            frames,
            input,
            screen: None,
        }
    }

    /// A client of the server at `addr` registered as `nick`, in the lobby
    /// and online.
    pub fn connect(addr: SocketAddr, nick: &str) -> Ui {
        let mut ui = Ui::start(
            Options {
                server: Some(addr.to_string()),
                nick: Some(nick.to_owned()),
                scrollback: 1000,
                ..Options::default()
            },
            (80, 24),
        );
        ui.wait_for(&format!("{nick} joined #lobby"));
        ui.wait_for("online");
        ui
    }

    /// Runs the event loop once and keeps the newest frame.
    pub fn step(&mut self) {
        self.runner.step();
        while let Ok(frame) = self.frames.try_recv() {
            self.screen = Some(frame);
        }
    }

    /// The screen as text, one string per row (wide characters once).
    pub fn rows(&self) -> Vec<String> {
        let Some(screen) = &self.screen else {
            return Vec::new();
        };
        let size = screen.size();
        (0..size.y)
            .map(|y| {
                (0..size.x)
                    .filter_map(|x| match &screen[Vec2::new(x, y)] {
                        Some(cell) => match &cell.letter {
                            GraphemePart::Begin(s) => Some(s.clone()),
                            GraphemePart::Continuation => None,
                        },
                        None => Some(" ".to_owned()),
                    })
                    .collect::<String>()
            })
            .collect()
    }

    pub fn text(&self) -> String {
        self.rows().join("\n")
    }

    /// Steps until `done` holds for the screen; fails with the screen.
    pub fn until(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            self.step();
            if done(&self.rows()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                self.text()
            );
        }
    }

    /// Steps until a row contains `text`, and returns that row.
    pub fn wait_for(&mut self, text: &str) -> String {
        self.until(text, |rows| rows.iter().any(|r| r.contains(text)));
        self.rows()
            .into_iter()
            .find(|r| r.contains(text))
            .unwrap_or_default()
    }

    pub fn wait_gone(&mut self, text: &str) {
        self.until(&format!("{text} to go"), |rows| {
            !rows.iter().any(|r| r.contains(text))
        });
    }

    /// Steps for a while, for "nothing happens" checks.
    pub fn settle(&mut self) {
        let until = Instant::now() + Duration::from_millis(150);
        while Instant::now() < until {
            self.step();
        }
    }

    pub fn send(&mut self, event: Event) {
        self.input.send(Some(event)).expect("puppet input");
        self.step();
    }

    pub fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.send(Event::Char(c));
        }
    }

    pub fn key(&mut self, key: Key) {
        self.send(Event::Key(key));
    }

    /// The input line: the last row, after the "> " prompt.
    pub fn input_line(&self) -> String {
        let rows = self.rows();
        let last = rows.last().cloned().unwrap_or_default();
        last.strip_prefix("> ")
            .unwrap_or(&last)
            .trim_end()
            .to_owned()
    }

    /// The row holding `text`.
    pub fn row_of(&self, text: &str) -> Option<usize> {
        self.rows().iter().position(|r| r.contains(text))
    }

    /// The effects of the cell where `text` starts.
    pub fn effects_at(&self, text: &str) -> Vec<Effect> {
        let rows = self.rows();
        let Some(screen) = &self.screen else {
            return Vec::new();
        };
        for (y, row) in rows.iter().enumerate() {
            if let Some(byte) = row.find(text) {
                let x = row[..byte].chars().count();
                if let Some(cell) = &screen[Vec2::new(x, y)] {
                    return cell.style.effects.iter().collect();
                }
            }
        }
        Vec::new()
    }

    /// Ends the event loop as the binary does.
    pub fn finish(mut self) {
        tui::finish(&mut self.runner);
    }
}
