//! Operators' tools: `KICK`, `MUTE`, `UNMUTE`, `BAN` and `UNBAN`.
//!
//! Every action is announced with a `MOD` line to each room its target is
//! in and to the operator's current room, and logged. Bans and mutes live
//! in the hub and are also kept by the accounts thread, so they outlast a
//! restart. A mute's end is told to its user by the tick that sees it run
//! out (or, if that user speaks first, then): the hub reads no clock. An
//! address ban is announced by the nicknames it closed, never by the
//! address: other users do not learn each other's addresses.

use std::net::IpAddr;

use super::cluster::Sanction;
use super::outbox::Outbox;
use super::words::{ban_text, because, left};
use super::Hub;
use crate::accounts::{AddressBans, Ban, BanTarget, Mute, Request};
use crate::ids::ClientId;
use crate::names;
use crate::protocol::encode;
use crate::protocol::{Command, ErrorCode, ModAction, ServerLine, Timestamp};

impl<O: Outbox> Hub<O> {
    pub(super) fn moderate(&mut self, id: ClientId, command: Command, now: Timestamp) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if !client.operator {
            return self.error(
                id,
                ErrorCode::NotOperator,
                "Only operators can do that; an operator is an account flagged by the server's \
                 administrator."
                    .into(),
            );
        }
        let op = client.nick.as_deref().unwrap_or_default().to_owned();
        match command {
            Command::Kick { nick, reason } => {
                if let Some(name) = self.remote_nick(&nick) {
                    // On another node: that node disconnects it.
                    let rooms = self.announce(id, None, ModAction::Kick, &name, None, &reason, now);
                    let sanction = Sanction::Kick { nick: name };
                    return self.share_moderation(&op, sanction, &reason, rooms);
                }
                let Some(target) = self.online(id, &nick) else {
                    return;
                };
                let name = self.nick_of(target).to_owned();
                let rooms =
                    self.announce(id, Some(target), ModAction::Kick, &name, None, &reason, now);
                self.share_moderation(&op, Sanction::Kick { nick: name.clone() }, &reason, rooms);
                self.error(
                    target,
                    ErrorCode::Kicked,
                    format!("You were kicked by {op}{}", because(&reason)),
                );
                self.send(target, &ServerLine::Bye("Goodbye.".into()));
                self.remove(target, &format!("kicked by {op}{}", because(&reason)), now);
            }
            Command::Mute { nick, secs, reason } => {
                if names::check_nick(&nick).is_err() {
                    return self.not_a_nick(id, &nick);
                }
                let key = names::fold(&nick);
                let target = self.nicks.get(&key).copied();
                if target == Some(id) {
                    return self.not_yourself(id);
                }
                let secs = secs.unwrap_or(self.config.mute_default_secs);
                let until = now
                    .unix()
                    .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
                self.mutes.insert(key.clone(), (until, op.clone()));
                self.requests.push(Request::SaveMute(Mute {
                    nick: key.clone(),
                    until,
                    by: op.clone(),
                }));
                let name = target.map_or(nick, |t| self.nick_of(t).to_owned());
                let at = Timestamp::from_unix(until);
                let rooms = self.announce(id, target, ModAction::Mute, &name, at, &reason, now);
                self.share_moderation(&op, Sanction::Mute { nick: key, until }, &reason, rooms);
            }
            Command::Unmute(nick) => {
                let key = names::fold(&nick);
                if self.mutes.remove(&key).is_none() {
                    return self.send(id, &ServerLine::Info(format!("{nick} is not muted.")));
                }
                self.requests.push(Request::RemoveMute(key.clone()));
                let target = self.nicks.get(&key).copied();
                let name = target.map_or(nick, |t| self.nick_of(t).to_owned());
                let rooms = self.announce(id, target, ModAction::Unmute, &name, None, "", now);
                self.share_moderation(&op, Sanction::Unmute { nick: key }, "", rooms);
            }
            Command::Ban {
                target,
                secs,
                reason,
            } => self.ban(id, &op, &target, secs, reason, now),
            Command::Bans => self.list_sanctions(id, now),
            Command::Unban(target) => {
                let parsed = BanTarget::parse(&target);
                if let BanTarget::Nick(_) = parsed {
                    if names::check_nick(&target).is_err() {
                        return self.not_a_nick(id, &target);
                    }
                }
                if self.bans.remove(&parsed).is_none() {
                    return self.send(id, &ServerLine::Info(format!("{target} is not banned.")));
                }
                self.publish_bans();
                self.requests.push(Request::RemoveBan(parsed.clone()));
                tracing::info!(op = %op, action = "unban", target = %parsed, "moderation");
                let shared = Sanction::Unban {
                    target: parsed.to_string(),
                };
                match parsed {
                    BanTarget::Nick(_) => {
                        let rooms =
                            self.announce(id, None, ModAction::Unban, &target, None, "", now);
                        self.share_moderation(&op, shared, "", rooms);
                    }
                    // In the operator's own words: `UNBAN 192.0.2.1` is
                    // answered about 192.0.2.1, not 192.0.2.1/32.
                    BanTarget::Addr(_) => {
                        self.send(
                            id,
                            &ServerLine::Info(format!("The ban on {target} is lifted.")),
                        );
                        self.share_moderation(&op, shared, "", Vec::new());
                    }
                }
            }
            _ => {}
        }
    }

    fn ban(
        &mut self,
        id: ClientId,
        op: &str,
        target: &str,
        secs: Option<u64>,
        reason: String,
        now: Timestamp,
    ) {
        let parsed = BanTarget::parse(target);
        let victims: Vec<ClientId> = match &parsed {
            BanTarget::Nick(key) => {
                if names::check_nick(target).is_err() {
                    return self.not_a_nick(id, target);
                }
                self.nicks.get(key).copied().into_iter().collect()
            }
            BanTarget::Addr(range) => self
                .clients
                .iter()
                .filter(|(_, c)| range.contains(c.addr))
                .map(|(&cid, _)| cid)
                .collect(),
        };
        if victims.contains(&id) {
            return self.not_yourself(id);
        }
        let secs = secs.unwrap_or(self.config.ban_default_secs);
        let until = now
            .unix()
            .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
        let ban = Ban {
            target: parsed.clone(),
            until,
            by: op.to_owned(),
            reason: reason.clone(),
        };
        self.bans.insert(parsed.clone(), ban.clone());
        self.publish_bans();
        self.requests.push(Request::SaveBan(ban.clone()));
        // Every other node applies it too; a nickname's ban is announced
        // there in its holder's rooms.
        let rooms = match &parsed {
            BanTarget::Nick(key) => self
                .remote
                .get(key)
                .map(|u| u.rooms.clone())
                .unwrap_or_default(),
            BanTarget::Addr(_) => Vec::new(),
        };
        self.share_moderation(
            op,
            Sanction::Ban {
                target: parsed.to_string(),
                until,
            },
            &reason,
            rooms,
        );
        let until_time = Timestamp::from_unix(until);
        let text = ban_text(&ban, now);
        let mut closed = 0;
        for victim in &victims {
            if let Some(name) = self.nick(*victim).map(str::to_owned) {
                self.announce(
                    id,
                    Some(*victim),
                    ModAction::Ban,
                    &name,
                    until_time,
                    &reason,
                    now,
                );
            }
            self.error(*victim, ErrorCode::Banned, text.clone());
            self.send(*victim, &ServerLine::Bye("Goodbye.".into()));
            self.remove(*victim, &format!("banned by {op}{}", because(&reason)), now);
            closed += 1;
        }
        match parsed {
            BanTarget::Nick(_) if victims.is_empty() => {
                self.announce(id, None, ModAction::Ban, target, until_time, &reason, now);
            }
            BanTarget::Nick(_) => {}
            BanTarget::Addr(range) => {
                tracing::info!(op = %op, action = "ban", target = %range, until, reason, "moderation");
                let until = until_time.map_or_else(String::new, |t| format!(" until {t}"));
                // The operator's words, and the range they stand for when
                // that says more (a bare IPv6 address means its /64, and
                // `::ffff:192.0.2.0/120` is 192.0.2.0/24).
                let canonical = range.to_string();
                let what = if target == canonical
                    || (range.is_single_address() && !target.contains('/'))
                {
                    target.to_owned()
                } else {
                    format!("{target} ({range})")
                };
                self.send(
                    id,
                    &ServerLine::Info(format!(
                        "{what} is banned{until}; {closed} connection(s) closed."
                    )),
                );
            }
        }
    }

    /// Tells operator `id` the bans and mutes in force, soonest to end
    /// first, as `INFO` lines (addresses included: operators may see them).
    fn list_sanctions(&mut self, id: ClientId, now: Timestamp) {
        let t = now.unix();
        let mut lines: Vec<(i64, String)> = self
            .bans
            .values()
            .filter(|ban| ban.until > t)
            .map(|ban| {
                let what = match &ban.target {
                    BanTarget::Nick(nick) => format!("nick {nick}"),
                    BanTarget::Addr(addr) => format!("address {addr}"),
                };
                (
                    ban.until,
                    format!("ban {what}"),
                    ban.by.clone(),
                    ban.reason.clone(),
                )
            })
            .chain(self.mutes.iter().filter(|(_, (until, _))| *until > t).map(
                |(nick, (until, by))| (*until, format!("mute {nick}"), by.clone(), String::new()),
            ))
            .map(|(until, what, by, reason)| {
                let at = Timestamp::from_unix(until).map_or_else(String::new, |t| t.to_string());
                (
                    until,
                    format!(
                        "{what} until {at} ({} left) by {by}{}",
                        left(until - t),
                        because(&reason)
                    ),
                )
            })
            .collect();
        lines.sort();
        let count = lines.len();
        for (_, text) in lines {
            self.send(id, &ServerLine::Info(text));
        }
        self.send(
            id,
            &ServerLine::Info(format!("{count} ban(s) and mute(s) in force.")),
        );
    }

    /// The connection holding `nick`, or an error to `id` and `None`.
    fn online(&mut self, id: ClientId, nick: &str) -> Option<ClientId> {
        match self.nicks.get(&names::fold(nick)).copied() {
            Some(target) if target == id => {
                self.not_yourself(id);
                None
            }
            Some(target) => Some(target),
            None => {
                self.error(
                    id,
                    ErrorCode::NoSuchNick,
                    format!("Nobody called {nick} is online."),
                );
                None
            }
        }
    }

    fn not_yourself(&mut self, id: ClientId) {
        self.error(
            id,
            ErrorCode::BadArgument,
            "Operators cannot do that to themselves.".into(),
        );
    }

    fn not_a_nick(&mut self, id: ClientId, text: &str) {
        self.error(
            id,
            ErrorCode::BadArgument,
            format!("{text} is neither a nickname nor an IP address or range."),
        );
    }

    /// Sends the `MOD` line to the rooms of `target` (if online here, or
    /// of the user on another node called `name`) and to the operator's
    /// current room, once per room, and logs the action. Returns those rooms.
    #[allow(clippy::too_many_arguments)]
    fn announce(
        &mut self,
        op: ClientId,
        target: Option<ClientId>,
        action: ModAction,
        name: &str,
        until: Option<Timestamp>,
        reason: &str,
        now: Timestamp,
    ) -> Vec<String> {
        let by = self.nick_of(op).to_owned();
        tracing::info!(
            op = %by,
            action = action.as_str(),
            target = %name,
            until = %until.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            reason,
            "moderation"
        );
        let mut rooms: Vec<String> = match target {
            Some(t) => self
                .clients
                .get(&t)
                .map(|c| c.rooms.clone())
                .unwrap_or_default(),
            // A user on another node: its rooms as mirrored here.
            None => self
                .remote
                .get(&names::fold(name))
                .map(|u| u.rooms.clone())
                .unwrap_or_default(),
        };
        if let Some(current) = self.clients.get(&op).and_then(|c| c.rooms.last()) {
            if !rooms.contains(current) {
                rooms.push(current.clone());
            }
        }
        if rooms.is_empty() {
            // An operator in no room still hears what it did.
            let line = ServerLine::Info(format!(
                "{} {name}{}.",
                action.as_str(),
                until.map_or_else(String::new, |t| format!(" until {t}"))
            ));
            self.send(op, &line);
            return rooms;
        }
        self.mod_lines(&by, &rooms, action, name, until, reason, now);
        rooms
    }

    /// Sends a `MOD` line to this node's members of each of `rooms` (folded
    /// names) that exists here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mod_lines(
        &mut self,
        by: &str,
        rooms: &[String],
        action: ModAction,
        name: &str,
        until: Option<Timestamp>,
        reason: &str,
        now: Timestamp,
    ) {
        for key in rooms {
            let Some(room) = self.rooms.get(key).map(|r| r.name.clone()) else {
                continue;
            };
            let line = encode(&ServerLine::Mod {
                time: now,
                room,
                by: by.to_owned(),
                action,
                target: name.to_owned(),
                until,
                reason: reason.to_owned(),
            });
            self.broadcast_room(key, &line, None);
        }
    }

    /// Why client `id` may not talk now, if it is muted.
    pub(super) fn muted(&mut self, id: ClientId, now: Timestamp) -> Option<String> {
        // Asked for every message: no folding while nobody is muted.
        if self.mutes.is_empty() {
            return None;
        }
        let key = names::fold(self.nick(id)?);
        let (until, by) = self.mutes.get(&key)?.clone();
        if until <= now.unix() {
            self.end_mute(&key);
            return None;
        }
        Some(format!(
            "You are muted by {by} until {} ({} left).",
            Timestamp::from_unix(until).map_or_else(String::new, |t| t.to_string()),
            left(until - now.unix())
        ))
    }

    /// The ban on `target` in force at `now`, if any.
    pub(super) fn ban_on(&self, target: &BanTarget, now: Timestamp) -> Option<Ban> {
        self.bans
            .get(target)
            .filter(|ban| ban.until > now.unix())
            .cloned()
    }

    /// The address bans in force, as a handle the accept loops can read
    /// from any thread: kept up to date by this hub as bans change, so a
    /// banned newcomer is turned away before a session is started for it.
    pub fn address_bans(&self) -> AddressBans {
        self.address_bans.clone()
    }

    /// Copies the address bans into the shared set.
    pub(super) fn publish_bans(&self) {
        self.address_bans.replace(self.bans.values());
    }

    /// A mute on folded nickname `key` has run out: it is forgotten (here
    /// and in the database), and whoever holds the nickname is told.
    fn end_mute(&mut self, key: &str) {
        let Some((_, by)) = self.mutes.remove(key) else {
            return;
        };
        self.requests.push(Request::RemoveMute(key.to_owned()));
        tracing::info!(target = %key, by = %by, "mute ended");
        if let Some(&holder) = self.nicks.get(key) {
            self.send(
                holder,
                &ServerLine::Info(format!("Your mute by {by} has ended; you can talk again.")),
            );
        }
    }

    /// Drops mutes and bans that have run out (telling the muted), and old
    /// login failures.
    pub(super) fn expire_sanctions(&mut self, now: Timestamp) {
        let t = now.unix();
        if !self.mutes.is_empty() {
            let ended: Vec<String> = self
                .mutes
                .iter()
                .filter(|(_, (until, _))| *until <= t)
                .map(|(key, _)| key.clone())
                .collect();
            for key in ended {
                self.end_mute(&key);
            }
        }
        let before = self.bans.len();
        self.bans.retain(|_, ban| ban.until > t);
        if self.bans.len() != before {
            self.publish_bans();
        }
        self.failed_by_addr.prune(t);
        self.failed_by_account.prune(t);
        self.registrations.prune(t);
    }
}

/// What a newcomer from `addr` is told at `now` if a ban in `bans` keeps it
/// out: the ban's `ERR banned` line and a `BYE`, encoded; `None` if it may
/// come in. The accept loops call it before any other work on a newcomer.
pub fn ban_refusal(bans: &AddressBans, addr: IpAddr, now: Timestamp) -> Option<Vec<u8>> {
    let ban = bans.find(addr, now.unix())?;
    let mut bytes = Vec::new();
    ServerLine::Err {
        code: ErrorCode::Banned,
        text: ban_text(&ban, now),
    }
    .encode(&mut bytes);
    ServerLine::Bye("Goodbye.".into()).encode(&mut bytes);
    Some(bytes)
}
