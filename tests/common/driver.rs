//! The client core as a user interface drives it, against a real or a
//! scripted server: connection events feed the model, typed lines go
//! through the model to the connection. Every wait has the deadline
//! [`super::TIMEOUT`].

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use natter::client::{
    Action, Backoff, ConnState, Connection, EntryKind, Event, Model, NickPrompt, Settings,
    Submitted, Target,
};
use natter::protocol::{ServerLine, Timestamp};

use super::TIMEOUT;

/// A client core as a user interface would drive it: events from the
/// connection feed the model; typed lines go through the model to the
/// connection.
pub struct Driver {
    pub conn: Connection,
    pub events: Receiver<Event>,
    pub model: Model,
    pub prompts: Vec<NickPrompt>,
    /// The targets of the `HIST END` lines applied so far, in order.
    pub hist_ends: Vec<String>,
}

impl Driver {
    /// A client of the server at `addr` as `nick`, reconnecting quickly.
    pub fn start(addr: SocketAddr, nick: &str) -> Driver {
        Driver::with(settings(addr.to_string(), nick))
    }

    /// A client with these settings, keeping 100 lines per pane.
    pub fn with(settings: Settings) -> Driver {
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
            hist_ends: Vec::new(),
        }
    }

    /// Feeds events to the model, and sends the requests it makes, until
    /// `done` holds; fails after TIMEOUT.
    pub fn until(&mut self, what: &str, mut done: impl FnMut(&Model) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done(&self.model) {
            let event = self.next(deadline, what);
            self.feed(event);
        }
    }

    /// The next event from the connection; panics at `deadline`, showing
    /// the chat so far.
    fn next(&self, deadline: Instant, what: &str) -> Event {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(event) => event,
            Err(_) => panic!("timed out waiting for {what}; lines: {:#?}", self.lines()),
        }
    }

    /// Applies `event` to the model as a user interface would: notes nick
    /// prompts and `HIST END`s, and sends the requests the model makes.
    fn feed(&mut self, event: Event) {
        if let Event::Line(ServerLine::HistoryEnd { target, .. }) = &event {
            self.hist_ends.push(target.clone());
        }
        let changes = self.model.apply(event, Timestamp::now());
        self.prompts.extend(changes.nick_prompt);
        for request in changes.requests {
            self.conn.send(request);
        }
    }

    /// Feeds events until one matches `done`, and returns it; fails after
    /// TIMEOUT.
    pub fn until_event(&mut self, what: &str, mut done: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let event = self.next(deadline, what);
            self.feed(event.clone());
            if done(&event) {
                return event;
            }
        }
    }

    /// Waits for the connection to stop for good and returns why.
    pub fn closed(&mut self) -> String {
        let event = self.until_event("the connection to close", |e| {
            matches!(e, Event::State(ConnState::Closed { .. }))
        });
        assert!(self.conn.wait(TIMEOUT), "the connection thread ends");
        match event {
            Event::State(ConnState::Closed { reason }) => reason,
            _ => unreachable!(),
        }
    }

    /// A mark for [`Driver::replays`]: the `HIST END` lines so far.
    pub fn mark(&self) -> usize {
        self.hist_ends.len()
    }

    /// Waits until `n` `HIST END` lines for `target` have come since `mark`.
    pub fn replays(&mut self, mark: usize, target: &str, n: usize) {
        let count = |ends: &[String]| {
            ends.iter()
                .skip(mark)
                .filter(|t| t.as_str() == target)
                .count()
        };
        let deadline = Instant::now() + TIMEOUT;
        while count(&self.hist_ends) < n {
            let event = self.next(deadline, &format!("HIST END {target}"));
            self.feed(event);
        }
    }

    /// The chat and private lines of a conversation's pane, with their ids.
    pub fn said(&self, target: Target) -> Vec<(Option<u64>, String)> {
        let Some(pane) = self.model.pane(&target) else {
            return Vec::new();
        };
        pane.scrollback()
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Chat { nick, text, .. } => Some((e.id, format!("<{nick}> {text}"))),
                EntryKind::Whisper { from, to, text, .. } => {
                    Some((e.id, format!("[{from}->{to}] {text}")))
                }
                EntryKind::System { .. } => None,
            })
            .collect()
    }

    /// Like [`Driver::said`] without the ids.
    pub fn said_texts(&self, target: Target) -> Vec<String> {
        self.said(target).into_iter().map(|(_, t)| t).collect()
    }

    /// Waits until the connection is registered.
    pub fn online(&mut self) {
        self.until("registration", |m| *m.state() == ConnState::Online);
    }

    /// Types a line and presses Enter.
    pub fn enter(&mut self, line: &str) -> Submitted {
        let submitted = self.model.submit(line, Timestamp::now());
        if let Action::Send(out) = &submitted.action {
            self.conn.send(out.clone());
        }
        for request in &submitted.changes.requests {
            self.conn.send(request.clone());
        }
        submitted
    }

    /// The shown pane's lines as the user reads them.
    pub fn lines(&self) -> Vec<String> {
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

    /// Whether the user can read `text` in the chat.
    pub fn shows(&self, text: &str) -> bool {
        self.lines().iter().any(|l| l.contains(text))
    }

    /// Whether the chat shows exactly the line `want`.
    pub fn has_line(&self, want: &str) -> bool {
        self.lines().iter().any(|l| l == want)
    }
}

/// Settings for `nick` at `server` with a short back-off, so reconnection
/// tests are quick.
pub fn settings(server: String, nick: &str) -> Settings {
    Settings {
        backoff: Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        ..Settings::new(server, nick)
    }
}
