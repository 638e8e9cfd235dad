//! Server lines and connection news into the model: which pane a line
//! belongs to, who is in each room, unread counts and mentions, and the
//! history requests that fill gaps after a reconnection.

use super::connection::{ConnState, Event};
use super::model::{history, Changes, Model, NickPrompt};
use super::pane::{Added, Batch, EntryKind, SystemKind, Target};
use super::words::{self, CURRENT_ROOM_INFO};
use crate::names;
use crate::protocol::{ErrorCode, HistoryQuery, ServerLine, Timestamp};

impl Model {
    /// Applies one event from the connection, received at `now`.
    pub fn apply(&mut self, event: Event, now: Timestamp) -> Changes {
        self.tick += 1;
        match event {
            Event::State(state) => self.set_state(state, now),
            Event::Line(line) => self.receive(line, now),
            Event::Unparsed { line, error } => match line.strip_prefix("ERR ") {
                // PROTOCOL.md: clients accept error codes they do not know.
                Some(rest) => {
                    let text = rest.split_once(' ').map_or("", |(_, text)| text);
                    self.system(now, SystemKind::Error, text.to_owned())
                }
                None => self.system(now, SystemKind::Raw, format!("{line}  [{error}]")),
            },
            Event::Refused(out) => self.system(
                now,
                SystemKind::Error,
                words::not_sent_offline(&out.to_line()),
            ),
        }
    }

    fn set_state(&mut self, state: ConnState, now: Timestamp) -> Changes {
        let mut changes = Changes {
            status: true,
            ..Changes::default()
        };
        // (to every pane, kind, text)
        let text = match &state {
            ConnState::Connecting { attempt: 1 } => {
                Some((false, SystemKind::Info, words::connecting(&self.server)))
            }
            // Only the first failure of a streak; the status line counts
            // the attempts, so a long outage does not fill the chat.
            ConnState::Offline { .. } if matches!(self.state, ConnState::Connecting { attempt } if attempt > 1) => {
                None
            }
            // In every pane, to mark the gap in each conversation.
            ConnState::Offline { reason, retry_in } => Some((
                true,
                SystemKind::Error,
                words::disconnected(reason, retry_in.as_secs_f32()),
            )),
            ConnState::Closed { reason } => Some((false, SystemKind::Info, words::closed(reason))),
            _ => None,
        };
        if !matches!(state, ConnState::Online | ConnState::Registering) {
            // Who is where is unknown until we are back (and have joined
            // again; the connection does that).
            for (i, pane) in self.panes.iter_mut().enumerate() {
                if !pane.is_private() {
                    changes.users |= i == self.shown && !pane.users.is_empty();
                    changes.panes |= pane.joined;
                    pane.joined = false;
                    pane.users.clear();
                }
                pane.fetching = false;
                pane.batch = Batch::default();
            }
            self.switch_to = None;
            if let Some(nick) = self.nick.take() {
                self.wanted = nick;
            }
        }
        self.state = state;
        match text {
            Some((true, kind, text)) => changes.merge(self.line_to_all(now, kind, &text)),
            Some((false, kind, text)) => changes.merge(self.system(now, kind, text)),
            None => {}
        }
        changes
    }

    fn receive(&mut self, line: ServerLine, now: Timestamp) -> Changes {
        let listing = self.listing.take();
        match line {
            ServerLine::Hello { version, .. } => self.system(
                now,
                SystemKind::Info,
                words::connected(&self.server, &version),
            ),
            ServerLine::Welcome { nick, text } => {
                self.wanted = nick.clone();
                self.nick = Some(nick);
                let mut changes = self.system(now, SystemKind::Info, text);
                changes.status = true;
                changes.users = true;
                let reconnected = std::mem::replace(&mut self.welcomed_before, true);
                for i in 0..self.panes.len() {
                    let Target::Private(partner) = self.panes[i].target.clone() else {
                        continue;
                    };
                    self.panes[i].users = self.pair(&partner);
                    // What was said while we were away.
                    let newest = self.panes[i].newest_id;
                    if reconnected && newest > 0 && !self.history_off {
                        changes
                            .requests
                            .push(history(&partner, HistoryQuery::Since(newest)));
                    }
                }
                changes
            }
            ServerLine::Msg { .. } | ServerLine::Whisper { .. } => self.message(line, false, now),
            ServerLine::History(line) => self.message(*line, true, now),
            ServerLine::HistoryEnd { target, count } => self.history_end(&target, count, now),
            ServerLine::Join { time, room, nick } => self.join(time, room, nick, now),
            ServerLine::Part {
                time,
                room,
                nick,
                reason,
            } => {
                let who = (!self.is_me(&nick)).then_some(nick.as_str());
                let text = words::left(who, &room, &reason);
                let index = self.room_index(&room);
                if !self.is_me(&nick) {
                    let Some(i) = index else {
                        return self.system(time, SystemKind::Leave, text);
                    };
                    let mut changes = Changes::default();
                    if remove_nick(&mut self.panes[i].users, &nick) {
                        changes.users = i == self.shown;
                    }
                    changes.merge(self.line_to(i, time, SystemKind::Leave, text));
                    return changes;
                }
                let mut changes = Changes::default();
                if let Some(i) = index {
                    if self.panes.len() > 1 {
                        changes.merge(self.remove(i));
                    } else {
                        // The last pane stays, to show something.
                        self.panes[i].joined = false;
                        self.panes[i].users.clear();
                        changes.users = true;
                        changes.panes = true;
                    }
                }
                changes.merge(self.system(time, SystemKind::Leave, text));
                changes
            }
            ServerLine::Quit { time, nick, reason } => {
                let text = words::quit(&nick, &reason);
                let mut changes = Changes::default();
                let mut anywhere = false;
                for i in 0..self.panes.len() {
                    let pane = &mut self.panes[i];
                    let here = match &pane.target {
                        Target::Room(_) => remove_nick(&mut pane.users, &nick),
                        Target::Private(partner) => partner.eq_ignore_ascii_case(&nick),
                    };
                    if here {
                        anywhere = true;
                        changes.users |= i == self.shown;
                        changes.merge(self.line_to(i, time, SystemKind::Leave, text.clone()));
                    }
                }
                if !anywhere {
                    changes.merge(self.system(time, SystemKind::Leave, text));
                }
                changes
            }
            ServerLine::Nick { time, old, new } => self.renamed(time, old, new),
            ServerLine::Joins { room, nicks } => {
                let folded = names::fold(&room);
                let continued = listing.as_deref() == Some(folded.as_str());
                let Some(i) = self.room_index(&room) else {
                    return Changes::default();
                };
                let mut changes = Changes::default();
                for nick in &nicks {
                    if insert_sorted(&mut self.panes[i].users, nick) {
                        changes.users = i == self.shown;
                    }
                }
                if continued {
                    // The rest of a member list: more may follow.
                    self.listing = Some(folded);
                    return changes;
                }
                let others: Vec<String> = nicks.into_iter().filter(|n| !self.is_me(n)).collect();
                if !others.is_empty() {
                    let text = words::joined_many(&others, &room);
                    changes.merge(self.line_to(i, now, SystemKind::Join, text));
                }
                changes
            }
            ServerLine::Parts { room, nicks } => {
                let Some(i) = self.room_index(&room) else {
                    return Changes::default();
                };
                let mut changes = Changes::default();
                let mut gone = Vec::new();
                for nick in nicks {
                    if !self.is_me(&nick) && remove_nick(&mut self.panes[i].users, &nick) {
                        changes.users = i == self.shown;
                        gone.push(nick);
                    }
                }
                if !gone.is_empty() {
                    let text = words::left_many(&gone, &room);
                    changes.merge(self.line_to(i, now, SystemKind::Leave, text));
                }
                changes
            }
            ServerLine::Users { room, mut nicks } => {
                self.listing = Some(names::fold(&room));
                let text = words::members(&room, &nicks);
                nicks.sort_by_key(|n| names::fold(n));
                nicks.dedup_by_key(|n| names::fold(n));
                let Some(i) = self.room_index(&room) else {
                    return self.system(now, SystemKind::Info, text);
                };
                let mut changes = Changes::default();
                if self.panes[i].users != nicks {
                    self.panes[i].users = nicks;
                    changes.users = i == self.shown;
                }
                changes.merge(self.line_to(i, now, SystemKind::Info, text));
                changes
            }
            ServerLine::Topic {
                time,
                room,
                nick,
                text,
            } => {
                let line = words::topic(&room, &text, &nick);
                let Some(i) = self.room_index(&room) else {
                    return self.system(time, SystemKind::Info, line);
                };
                self.panes[i].topic = text;
                let mut changes = self.line_to(i, time, SystemKind::Info, line);
                changes.status = i == self.shown;
                changes
            }
            // This client names the room in everything it sends.
            ServerLine::Info(text) if text.starts_with(CURRENT_ROOM_INFO) => Changes::default(),
            ServerLine::Info(text) => self.system(now, SystemKind::Info, text),
            ServerLine::Err { code, text } => {
                if code == ErrorCode::HistoryOff {
                    self.history_off = true;
                }
                // It may answer a history request or a JOIN: let the user
                // ask again, and do not switch to a room later.
                for pane in &mut self.panes {
                    pane.fetching = false;
                }
                self.switch_to = None;
                let registering = self.nick.is_none();
                let nick_refused = matches!(
                    code,
                    ErrorCode::NickTaken | ErrorCode::NickInvalid | ErrorCode::NickRegistered
                );
                // A login tried from the prompt failed: ask again.
                let login_refused = matches!(
                    code,
                    ErrorCode::LoginFailed | ErrorCode::LoginThrottled | ErrorCode::Busy
                );
                let mut changes = self.system(now, SystemKind::Error, text.clone());
                if nick_refused && registering {
                    changes.nick_prompt = Some(NickPrompt {
                        suggestion: suggestion(&text),
                        message: text,
                        registered: (code == ErrorCode::NickRegistered)
                            .then(|| self.wanted.clone()),
                    });
                } else if login_refused && registering {
                    changes.nick_prompt = Some(NickPrompt {
                        suggestion: String::new(),
                        message: text,
                        registered: Some(self.wanted.clone()),
                    });
                }
                changes
            }
            ServerLine::Bye(text) => self.system(now, SystemKind::Info, words::goodbye(&text)),
            ServerLine::Pong(token) => self.system(now, SystemKind::Info, words::pong(&token)),
            ServerLine::Room {
                room,
                members,
                topic,
            } => {
                let joined = self.room_index(&room).is_some_and(|i| self.panes[i].joined);
                let text = words::room_entry(&room, members, joined, &topic);
                self.system(now, SystemKind::Info, text)
            }
            ServerLine::Rooms(count) => {
                self.system(now, SystemKind::Info, words::rooms_listed(count))
            }
            ServerLine::Account { text, .. } => {
                let mut changes = self.system(now, SystemKind::Info, text);
                changes.status = true;
                changes
            }
            ServerLine::Mod {
                time,
                room,
                by,
                action,
                target,
                until,
                reason,
            } => {
                let text = words::moderation(&by, action, &target, until, &reason);
                match self.room_index(&room) {
                    Some(i) => self.line_to(i, time, SystemKind::Error, text),
                    None => self.system(time, SystemKind::Error, text),
                }
            }
        }
    }

    fn join(&mut self, time: Timestamp, room: String, nick: String, now: Timestamp) -> Changes {
        let text = words::joined(&nick, &room);
        let mut changes = Changes::default();
        if !self.is_me(&nick) {
            let Some(i) = self.room_index(&room) else {
                return self.system(time, SystemKind::Join, text);
            };
            if insert_sorted(&mut self.panes[i].users, &nick) {
                changes.users = i == self.shown;
            }
            changes.merge(self.line_to(i, time, SystemKind::Join, text));
            return changes;
        }
        let Some(i) = self.open(Target::Room(room.clone())) else {
            let text = words::too_many_rooms(&room);
            return self.system(now, SystemKind::Error, text);
        };
        let pane = &mut self.panes[i];
        pane.target = Target::Room(room.clone());
        pane.joined = true;
        // A TOPIC line follows if the room has one (it may have been
        // emptied and made again while we were away).
        pane.topic.clear();
        // Back after a reconnection (or a PART of the last room): fetch
        // what was said meanwhile. The server's replay may bring some of it
        // too; nothing shows twice.
        if pane.newest_id > 0 && !self.history_off {
            changes
                .requests
                .push(history(&room, HistoryQuery::Since(pane.newest_id)));
        }
        changes.panes = true;
        changes.users = i == self.shown;
        changes.status = i == self.shown;
        if self.switch_to.as_deref() == Some(names::fold(&room).as_str()) {
            self.switch_to = None;
            changes.merge(self.show(i));
        }
        changes.merge(self.line_to(i, time, SystemKind::Join, text));
        changes
    }

    fn renamed(&mut self, time: Timestamp, old: String, new: String) -> Changes {
        let mut changes = Changes::default();
        if self.is_me(&old) {
            self.nick = Some(new.clone());
            self.wanted = new.clone();
            changes.status = true;
            for i in 0..self.panes.len() {
                match self.panes[i].target.clone() {
                    Target::Room(_) => {
                        let users = &mut self.panes[i].users;
                        if remove_nick(users, &old) {
                            insert_sorted(users, &new);
                        }
                    }
                    Target::Private(partner) => self.panes[i].users = self.pair(&partner),
                }
            }
            changes.users = true;
            let text = words::renamed(None, &new);
            changes.merge(self.line_to_all(time, SystemKind::Nick, &text));
            return changes;
        }
        let text = words::renamed(Some(&old), &new);
        let mut anywhere = false;
        for i in 0..self.panes.len() {
            let here = match self.panes[i].target.clone() {
                Target::Room(_) => {
                    let users = &mut self.panes[i].users;
                    let here = remove_nick(users, &old);
                    if here {
                        insert_sorted(users, &new);
                    }
                    here
                }
                Target::Private(partner) if partner.eq_ignore_ascii_case(&old) => {
                    // The conversation follows the person, unless one with
                    // the new name is open already.
                    if self.private_index(&new).is_none() {
                        self.panes[i].target = Target::Private(new.clone());
                        self.panes[i].users = self.pair(&new);
                        changes.panes = true;
                        changes.status |= i == self.shown;
                    }
                    true
                }
                Target::Private(_) => false,
            };
            if here {
                anywhere = true;
                changes.users |= i == self.shown;
                changes.merge(self.line_to(i, time, SystemKind::Nick, text.clone()));
            }
        }
        if !anywhere {
            changes.merge(self.system(time, SystemKind::Nick, text));
        }
        changes
    }

    /// Shows a chat or private message, live or replayed, in its pane: once,
    /// in id order.
    fn message(&mut self, line: ServerLine, replayed: bool, now: Timestamp) -> Changes {
        let (time, id, index, kind, own, alert) = match line {
            ServerLine::Msg {
                time,
                id,
                room,
                nick,
                text,
            } => {
                let own = self.is_me(&nick);
                let mention = !own && self.nick.as_deref().is_some_and(|me| mentions(&text, me));
                let index = match self.room_index(&room) {
                    Some(i) => i,
                    // History of a room we have no pane for: not asked for.
                    None if replayed => return Changes::default(),
                    // Shown with its room's name.
                    None => self.shown,
                };
                let kind = EntryKind::Chat {
                    room,
                    nick,
                    text,
                    own,
                    mention,
                };
                (time, id, index, kind, own, mention)
            }
            ServerLine::Whisper {
                time,
                id,
                from,
                to,
                text,
            } => {
                let own = self.is_me(&from);
                let partner = if own { &to } else { &from };
                let Some(index) = self.open(Target::Private(partner.clone())) else {
                    return Changes::default();
                };
                let kind = EntryKind::Whisper {
                    from,
                    to,
                    text,
                    own,
                };
                (time, id, index, kind, own, !own)
            }
            // HIST holds only MSG and WHISPER lines; anything else is shown
            // as it came.
            other => {
                let text = other.to_line().trim_end().to_owned();
                return self.system(now, SystemKind::Raw, text);
            }
        };
        let shown = index == self.shown;
        let tick = self.tick;
        let Some(pane) = self.panes.get_mut(index) else {
            return Changes::default();
        };
        if replayed && !pane.batch.started {
            pane.batch.started = true;
            pane.batch.fresh = !pane.replayed;
        }
        let mut changes = Changes::default();
        match pane.add_message(id, time, kind) {
            Added::Duplicate => return changes,
            Added::Matched => {}
            Added::Inserted { newer, seq } => {
                if replayed {
                    let batch = &mut pane.batch;
                    batch.inserted = batch.inserted.saturating_add(1);
                    batch.newer = batch.newer.saturating_add(u32::from(newer));
                    if let Some(seq) = seq.filter(|_| batch.last.is_none_or(|(last, _)| id > last))
                    {
                        batch.last = Some((id, seq));
                    }
                }
                // Live lines are news even under an id seen before (a
                // server that reused it); replayed ones only if newer.
                if (newer || !replayed) && !own && !shown {
                    pane.unread = pane.unread.saturating_add(1);
                    pane.alert |= alert;
                    changes.panes = true;
                }
            }
        }
        if !replayed {
            pane.active = tick;
        }
        changes.scrollback = shown;
        changes
    }

    /// The end of a replay: sums it up below its newest line, and asks for
    /// more when a `since` answer was full.
    fn history_end(&mut self, target: &str, count: u32, now: Timestamp) -> Changes {
        let target = match names::is_room(target) {
            true => Target::Room(target.to_owned()),
            false => Target::Private(target.to_owned()),
        };
        let Some(index) = self.find(&target) else {
            return Changes::default();
        };
        let history_off = self.history_off;
        let pane = &mut self.panes[index];
        let batch = std::mem::take(&mut pane.batch);
        pane.replayed = true;
        let mut changes = Changes::default();
        if std::mem::take(&mut pane.fetching) && count == 0 {
            pane.exhausted = true;
        }
        if count >= crate::protocol::HISTORY_MAX && pane.joined && !history_off {
            // A full page of what we missed: there may be more.
            changes
                .requests
                .push(history(pane.name(), HistoryQuery::Since(pane.newest_id)));
        }
        let n = batch.inserted;
        let text = match &pane.target {
            Target::Room(room) if batch.fresh => words::history_above(true, n, room, true),
            Target::Private(nick) if batch.fresh => words::history_above(true, n, nick, false),
            _ => words::history_above(false, batch.newer, "", false),
        };
        let worth_saying = n > 0 && (batch.fresh || batch.newer > 0);
        if let (true, Some((_, seq))) = (worth_saying, batch.last) {
            let kind = EntryKind::System {
                kind: SystemKind::Info,
                text,
            };
            pane.add_below(seq, now, kind);
            changes.scrollback = index == self.shown;
        }
        changes
    }
}

/// True if `text` mentions `nick` as a whole word, ignoring ASCII case:
/// `bob:` and `@bob` do, `bobby` does not.
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let hay = text.to_ascii_lowercase();
    let needle = nick.to_ascii_lowercase();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let bytes = hay.as_bytes();
    hay.match_indices(&needle).any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + needle.len()).copied();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// The nickname an `ERR nick-taken` or `ERR nick-invalid` suggests: its last
/// word, if that is a valid nickname.
pub fn suggestion(text: &str) -> String {
    let word = text
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .trim_end_matches(['.', '!', ',', ';']);
    match names::check_nick(word) {
        Ok(()) => word.to_owned(),
        Err(_) => String::new(),
    }
}

/// Inserts `nick` in case-insensitive order unless present; true if added.
fn insert_sorted(users: &mut Vec<String>, nick: &str) -> bool {
    let key = names::fold(nick);
    match users.binary_search_by(|n| names::fold(n).cmp(&key)) {
        Ok(_) => false,
        Err(i) => {
            users.insert(i, nick.to_owned());
            true
        }
    }
}

/// Removes `nick` (ignoring case); true if it was there.
fn remove_nick(users: &mut Vec<String>, nick: &str) -> bool {
    let before = users.len();
    users.retain(|n| !n.eq_ignore_ascii_case(nick));
    users.len() != before
}
