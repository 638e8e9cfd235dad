//! Typed lines into the model: plain text is chat in the shown
//! conversation, slash commands are parsed as PROTOCOL.md says, and the
//! few the client handles itself (`/query`, `/close`, `/history`) never
//! reach the server. Up/Down and Tab are here too, over [`super::recall`].

use super::connection::{ConnState, Outgoing};
use super::model::{Action, Changes, Model, Submitted};
use super::pane::{EntryKind, SystemKind, Target};
use super::recall::{Completion, SLASH_COMMANDS};
use super::words::{
    self, not_sent, LOCAL_HELP, NO_PRIVATE_TOPIC, ONLY_PANE, QUERY_NEEDS_NICK, QUERY_SELF,
    SERVER_HELP_FOLLOWS, TOO_MANY_PRIVATE,
};
use crate::names;
use crate::protocol::{parse_command, Command, CommandError, Timestamp};
use crate::text::capitalise;

impl Model {
    /// Handles a line the user typed and pressed Enter on, at `now`.
    ///
    /// Plain text is chat in the shown conversation: `MSG #room text` in a
    /// room, `WHISPER nick text` in a private one, echoed at once (the
    /// server does not send us our own messages). Slash commands are parsed
    /// as PROTOCOL.md says (`/nick`, `/users`, `/join`, `/msg nick text`,
    /// `/quit`, ...), with the shown room filled in where the server would
    /// take its "current room"; `/query nick` and `/w nick` without text
    /// open a private conversation, `/close` closes the shown one, and
    /// `/history` alone fetches older messages. `//text` sends `/text`;
    /// unknown slash commands go to the server as typed, so commands added
    /// to the server later work without a new client. Anything needing a
    /// connection is refused, with a line saying so, while there is none.
    pub fn submit(&mut self, input: &str, now: Timestamp) -> Submitted {
        let line: String = input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = line.trim_matches(' ');
        self.completion = None;
        self.tick += 1;
        if line.is_empty() {
            return self.done(Action::None, true, Changes::default());
        }
        // Lines with a password are never kept for Up to bring back.
        let secret = matches!(
            parse_command(line),
            Ok(Command::Register(_) | Command::Login { .. } | Command::Password { .. })
        );
        if !secret {
            self.recall.push(line);
        }
        if let Some(submitted) = self.local(line, now) {
            return submitted;
        }
        let command = if line.starts_with('/') {
            match parse_command(line) {
                Ok(command) => command,
                Err(CommandError::Unknown(_)) => {
                    return self.send_if(Outgoing::Raw(line.to_owned()), false, now)
                }
                Err(CommandError::Empty) => {
                    return self.done(Action::None, true, Changes::default())
                }
                Err(err) => return self.refuse(capitalise(&err.to_string()), now),
            }
        } else {
            Command::Msg {
                room: None,
                text: line.to_owned(),
            }
        };
        let shown = self.shown().target.clone();
        match command {
            Command::Quit(reason) => self.done(Action::Quit(reason), true, Changes::default()),
            Command::Help => {
                let mut changes = Changes::default();
                for text in LOCAL_HELP {
                    changes.merge(self.system(now, SystemKind::Info, text.to_owned()));
                }
                if self.connected() {
                    changes.merge(self.system(
                        now,
                        SystemKind::Info,
                        SERVER_HELP_FOLLOWS.to_owned(),
                    ));
                    let mut sent = self.send_if(Outgoing::Command(Command::Help), false, now);
                    sent.changes.merge(changes);
                    return sent;
                }
                self.done(Action::None, true, changes)
            }
            Command::Msg { room, text } => match (room, shown) {
                (Some(room), _) | (None, Target::Room(room)) => self.say(room, text, now),
                (None, Target::Private(nick)) => self.whisper(nick, text, now),
            },
            Command::Whisper { nick, text } => self.whisper(nick, text, now),
            Command::Join(room) => {
                if let Some(i) = self.room_index(&room).filter(|&i| self.panes[i].joined) {
                    let changes = self.show(i);
                    return self.done(Action::None, true, changes);
                }
                let sent = self.send_if(Outgoing::Command(Command::Join(room.clone())), true, now);
                if matches!(sent.action, Action::Send(_)) {
                    self.switch_to = Some(names::fold(&room));
                }
                sent
            }
            Command::Part { room: None, reason } => match shown {
                Target::Private(_) => self.close_shown(now),
                Target::Room(room) => self.send_command(
                    Command::Part {
                        room: Some(room),
                        reason,
                    },
                    now,
                ),
            },
            Command::Topic { room: None, text } => match shown {
                Target::Private(_) => self.refuse(NO_PRIVATE_TOPIC.into(), now),
                Target::Room(room) => self.send_command(
                    Command::Topic {
                        room: Some(room),
                        text,
                    },
                    now,
                ),
            },
            Command::Users { room: None } => match shown {
                Target::Private(partner) => {
                    let text = words::private_between(self.display_nick(), &partner);
                    let changes = self.system(now, SystemKind::Info, text);
                    self.done(Action::None, true, changes)
                }
                Target::Room(room) => self.send_command(Command::Users { room: Some(room) }, now),
            },
            Command::Nick(ref nick) => {
                if self.nick.is_none() {
                    self.wanted = nick.clone();
                }
                self.send_if(Outgoing::Command(command), false, now)
            }
            // USERS, PING, PART, ROOMS, TOPIC, HISTORY and what comes next:
            // sent as parsed, shown when the server answers.
            other => {
                // LOGIN is a way to register, so it needs no nickname.
                let needs_nick = !matches!(other, Command::Ping(_) | Command::Login { .. });
                self.send_if(Outgoing::Command(other), needs_nick, now)
            }
        }
    }

    /// The commands this client handles itself, or `None`.
    fn local(&mut self, line: &str, now: Timestamp) -> Option<Submitted> {
        let rest = line.strip_prefix('/').filter(|r| !r.starts_with('/'))?;
        let (verb, arg) = match rest.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim_matches(' ')),
            None => (rest, ""),
        };
        let verb = verb.to_ascii_lowercase();
        let one_word = !arg.is_empty() && !arg.contains(' ');
        match verb.as_str() {
            "w" | "msg" | "whisper" | "query" if one_word => Some(self.converse(arg, now)),
            "query" if arg.is_empty() => Some(self.refuse(QUERY_NEEDS_NICK.to_owned(), now)),
            "query" => {
                let (nick, text) = arg.split_once(' ').unwrap_or((arg, ""));
                let opened = self.converse(nick, now);
                if !opened.clear_input {
                    return Some(opened);
                }
                let mut sent = self.whisper(nick.to_owned(), text.trim().to_owned(), now);
                sent.changes.merge(opened.changes);
                Some(sent)
            }
            "close" => Some(self.close_shown(now)),
            "history" if arg.is_empty() => Some(match self.older() {
                Some(out) => self.done(Action::Send(out), true, Changes::default()),
                None => {
                    let why = words::nothing_to_fetch(self.history_off, self.shown().exhausted);
                    let changes = self.system(now, SystemKind::Info, why.to_owned());
                    self.done(Action::None, true, changes)
                }
            }),
            _ => None,
        }
    }

    /// Opens (or shows) the private conversation with `nick`; a new one
    /// asks the server for its recent history.
    fn converse(&mut self, nick: &str, now: Timestamp) -> Submitted {
        if let Err(err) = names::check_nick(nick) {
            return self.refuse(words::not_a_nick(nick, &err.to_string()), now);
        }
        if self.is_me(nick) {
            return self.refuse(QUERY_SELF.into(), now);
        }
        let existed = self.private_index(nick).is_some();
        let Some(index) = self.open(Target::Private(nick.to_owned())) else {
            return self.refuse(TOO_MANY_PRIVATE.into(), now);
        };
        let mut changes = self.set_shown(index);
        if !existed && self.state == ConnState::Online && !self.history_off {
            if let Some(out) = self.older() {
                changes.requests.push(out);
            }
        }
        self.done(Action::None, true, changes)
    }

    /// `/close`: a private pane closes here; a room is left.
    fn close_shown(&mut self, now: Timestamp) -> Submitted {
        match self.shown().target.clone() {
            Target::Room(room) => self.send_command(
                Command::Part {
                    room: Some(room),
                    reason: String::new(),
                },
                now,
            ),
            Target::Private(_) if self.panes.len() == 1 => self.refuse(ONLY_PANE.into(), now),
            Target::Private(_) => {
                let changes = self.remove(self.shown);
                self.done(Action::None, true, changes)
            }
        }
    }

    /// Chat in `room`, echoed in its pane.
    fn say(&mut self, room: String, text: String, now: Timestamp) -> Submitted {
        let index = self.room_index(&room);
        if self.state == ConnState::Online && index.is_some_and(|i| !self.panes[i].joined) {
            return self.refuse(words::not_in_room(&room), now);
        }
        let out = Outgoing::Command(Command::Msg {
            room: Some(room.clone()),
            text: text.clone(),
        });
        let mut sent = self.send_if(out, true, now);
        if matches!(sent.action, Action::Send(_)) {
            let index = index.unwrap_or(self.shown);
            let chat = EntryKind::Chat {
                room,
                nick: self.display_nick().to_owned(),
                text,
                own: true,
                mention: false,
            };
            sent.changes.merge(self.echo(index, now, chat));
        }
        sent
    }

    /// A private message, echoed in the conversation's pane (opened if
    /// needed) and, if another pane is shown, there too.
    fn whisper(&mut self, nick: String, text: String, now: Timestamp) -> Submitted {
        let out = Outgoing::Command(Command::Whisper {
            nick: nick.clone(),
            text: text.clone(),
        });
        let mut sent = self.send_if(out, true, now);
        if !matches!(sent.action, Action::Send(_)) {
            return sent;
        }
        let whisper = EntryKind::Whisper {
            from: self.display_nick().to_owned(),
            to: nick.clone(),
            text,
            own: true,
        };
        let index = self.open(Target::Private(nick)).unwrap_or(self.shown);
        if index != self.shown {
            sent.changes.panes = true;
            sent.changes
                .merge(self.echo(self.shown, now, whisper.clone()));
        }
        sent.changes.merge(self.echo(index, now, whisper));
        sent
    }

    fn echo(&mut self, index: usize, now: Timestamp, kind: EntryKind) -> Changes {
        let tick = self.tick;
        let Some(pane) = self.panes.get_mut(index) else {
            return Changes::default();
        };
        pane.lines.push(now, kind);
        pane.active = tick;
        Changes {
            scrollback: index == self.shown,
            ..Changes::default()
        }
    }

    /// True if there is a connection to send on (registered or not).
    fn connected(&self) -> bool {
        matches!(self.state, ConnState::Online | ConnState::Registering)
    }

    fn send_command(&mut self, command: Command, now: Timestamp) -> Submitted {
        self.send_if(Outgoing::Command(command), true, now)
    }

    /// Sends `out` if the connection allows it (`needs_nick`: only once
    /// registered); otherwise refuses it visibly and keeps the input.
    fn send_if(&mut self, out: Outgoing, needs_nick: bool, now: Timestamp) -> Submitted {
        let why = match self.state {
            ConnState::Online => None,
            ConnState::Registering if !needs_nick => None,
            ConnState::Registering => Some(not_sent::NO_NICK),
            ConnState::Connecting { .. } => Some(not_sent::CONNECTING),
            ConnState::Offline { .. } => Some(not_sent::OFFLINE),
            ConnState::Closed { .. } => Some(not_sent::CLOSED),
        };
        match why {
            None => self.done(Action::Send(out), true, Changes::default()),
            Some(why) => self.refuse(words::kept_in_input(why), now),
        }
    }

    /// Refuses the typed line with `why`, keeping it in the input line.
    fn refuse(&mut self, why: String, now: Timestamp) -> Submitted {
        let changes = self.system(now, SystemKind::Error, why);
        self.done(Action::None, false, changes)
    }

    fn done(&mut self, action: Action, clear_input: bool, changes: Changes) -> Submitted {
        Submitted {
            action,
            clear_input,
            changes,
        }
    }

    /// The previous line typed (Up). `current` is the input line, kept as a
    /// draft to come back to with Down.
    pub fn history_up(&mut self, current: &str) -> Option<String> {
        self.recall.up(current)
    }

    /// The next line typed (Down), ending with the draft.
    pub fn history_down(&mut self) -> Option<String> {
        self.recall.down()
    }

    /// Completes the word before byte offset `cursor` of `input` (Tab):
    /// a nickname of someone in the shown conversation, or a slash command
    /// at the start. Pressed again, it cycles through the other matches.
    /// Returns the new input and cursor, or `None` if nothing matches.
    pub fn complete(&mut self, input: &str, cursor: usize) -> Option<(String, usize)> {
        let cursor = cursor.min(input.len());
        if !input.is_char_boundary(cursor) {
            return None;
        }
        if let Some(next) = self
            .completion
            .as_mut()
            .and_then(|c| c.cycle(input, cursor))
        {
            return Some(next);
        }
        let start = input[..cursor].rfind(' ').map_or(0, |i| i + 1);
        let word = &input[start..cursor];
        if word.is_empty() {
            return None;
        }
        let folded = names::fold(word);
        let matches: Vec<String> = if start == 0 && word.starts_with('/') {
            SLASH_COMMANDS
                .iter()
                .filter(|c| c.starts_with(&folded))
                .map(|c| c.to_string())
                .collect()
        } else {
            self.users()
                .iter()
                .filter(|n| !self.is_me(n) && names::fold(n).starts_with(&folded))
                .cloned()
                .collect()
        };
        if matches.is_empty() {
            return None;
        }
        let suffix = if start == 0 && !word.starts_with('/') {
            ": "
        } else {
            " "
        };
        let (completion, out) = Completion::start(input, start, cursor, suffix, matches);
        self.completion = Some(completion);
        Some(out)
    }
}
